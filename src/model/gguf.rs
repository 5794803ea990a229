//! GGUF files (llama.cpp's format): config from the metadata, tensors dequantized to f32, and the
//! llama.cpp Q/K row permutation undone so weights are in the HF layout.
use super::config::{ActFn, Architecture, ModelConfig, Normalization, Positional, Processing};
use super::weights::TensorSource;
use crate::error::{Error, Result};
use candle_core::quantized::gguf_file;
use candle_core::{Device, Tensor};
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

/// An open GGUF file: its metadata and a reader for tensors.
pub(crate) struct GgufSource {
    pub content: gguf_file::Content,
    reader: BufReader<File>,
    path: PathBuf,
    n_heads: usize,
    n_kv_heads: usize,
}

impl GgufSource {
    pub fn open(path: &Path) -> Result<Self> {
        let content = crate::tokenizer::read_gguf_content(path)?;
        let file = File::open(path).map_err(|e| Error::model_file(path, e))?;
        let len = file
            .metadata()
            .map_err(|e| Error::model_file(path, e))?
            .len();
        let reader = BufReader::new(file);
        // A truncated file reads its header fine; check that every tensor's bytes are present
        // (in checked arithmetic: a corrupt shape can claim more than 2^64 elements).
        for (name, info) in &content.tensor_infos {
            let dims = info.shape.dims();
            let (block, size) = (
                info.ggml_dtype.block_size() as u64,
                info.ggml_dtype.type_size() as u64,
            );
            let end = dims
                .iter()
                .try_fold(1u64, |n, &d| n.checked_mul(d as u64))
                .filter(|n| n % block == 0)
                .and_then(|n| (n / block).checked_mul(size))
                .and_then(|b| {
                    content
                        .tensor_data_offset
                        .checked_add(info.offset)?
                        .checked_add(b)
                });
            let Some(end) = end else {
                return Err(Error::model_file(
                    path,
                    format!(
                        "corrupt header: tensor `{name}` has shape {dims:?}, impossible for {:?} at offset {}",
                        info.ggml_dtype, info.offset
                    ),
                ));
            };
            if end > len {
                return Err(Error::model_file(
                    path,
                    format!("truncated: tensor `{name}` ends at byte {end} but the file has {len} bytes"),
                ));
            }
        }
        let mut s = GgufSource {
            content,
            reader,
            path: path.to_path_buf(),
            n_heads: 0,
            n_kv_heads: 0,
        };
        let arch = s.meta_str("general.architecture")?;
        s.n_heads = s.meta_u32(&format!("{arch}.attention.head_count"))? as usize;
        s.n_kv_heads = s
            .meta_u32(&format!("{arch}.attention.head_count_kv"))
            .unwrap_or(s.n_heads as u32) as usize;
        Ok(s)
    }

    fn meta(&self, key: &str) -> Result<&gguf_file::Value> {
        self.content
            .metadata
            .get(key)
            .ok_or_else(|| Error::model_file(&self.path, format!("metadata key `{key}` missing")))
    }
    fn meta_str(&self, key: &str) -> Result<String> {
        Ok(self
            .meta(key)?
            .to_string()
            .map_err(|e| Error::model_file(&self.path, format!("{key}: {e}")))?
            .clone())
    }
    fn meta_u32(&self, key: &str) -> Result<u32> {
        self.meta(key)?
            .to_u32()
            .map_err(|e| Error::model_file(&self.path, format!("{key}: {e}")))
    }
    fn meta_f64(&self, key: &str) -> Result<f64> {
        let v = self.meta(key)?;
        v.to_f32()
            .map(|x| x as f64)
            .or_else(|_| v.to_f64())
            .map_err(|e| Error::model_file(&self.path, format!("{key}: {e}")))
    }

    /// The TL config of the model in this file (llama architecture only).
    pub fn config(&self, model_name: &str) -> Result<ModelConfig> {
        let arch = self.meta_str("general.architecture")?;
        if arch != "llama" {
            return Err(Error::model_file(
                &self.path,
                format!("GGUF architecture `{arch}` is not supported (only `llama`)"),
            ));
        }
        let k = |s: &str| format!("llama.{s}");
        let d_model = self.meta_u32(&k("embedding_length"))? as usize;
        let n_heads = self.n_heads;
        if n_heads == 0 {
            return Err(Error::model_file(
                &self.path,
                format!("metadata `{}` is 0", k("attention.head_count")),
            ));
        }
        let d_head = self
            .meta_u32(&k("attention.key_length"))
            .map(|x| x as usize)
            .unwrap_or(d_model / n_heads);
        let d_vocab = match self.meta_u32(&k("vocab_size")) {
            Ok(v) => v as usize,
            Err(_) => self
                .content
                .tensor_infos
                .get("token_embd.weight")
                .map(|i| i.shape.dims()[0])
                .ok_or_else(|| {
                    Error::model_file(&self.path, "no vocab_size and no token_embd.weight")
                })?,
        };
        let cfg = ModelConfig {
            model_name: model_name.to_string(),
            architecture: Architecture::Llama,
            n_layers: self.meta_u32(&k("block_count"))? as usize,
            d_model,
            n_heads,
            n_kv_heads: self.n_kv_heads,
            d_head,
            d_mlp: self.meta_u32(&k("feed_forward_length"))? as usize,
            d_vocab,
            n_ctx: self
                .meta_u32(&k("context_length"))
                .map(|x| x as usize)
                .unwrap_or(2048),
            eps: self.meta_f64(&k("attention.layer_norm_rms_epsilon"))?,
            act_fn: ActFn::Silu,
            normalization: Normalization::RMS,
            positional: Positional::Rotary {
                base: self.meta_f64(&k("rope.freq_base")).unwrap_or(10000.0),
                dim: self
                    .meta_u32(&k("rope.dimension_count"))
                    .map(|x| x as usize)
                    .unwrap_or(d_head),
            },
            gated_mlp: true,
            tied_embeddings: !self.content.tensor_infos.contains_key("output.weight"),
            processing: Processing::none(),
            ..ModelConfig::default()
        };
        cfg.validate()?;
        Ok(cfg)
    }

    /// GGUF name for an HF llama tensor name, plus the head count whose Q/K permutation to undo.
    fn gguf_name(&self, hf: &str) -> Option<(String, Option<usize>)> {
        let map_layer = |rest: &str| -> Option<(&'static str, Option<usize>)> {
            Some(match rest {
                "input_layernorm.weight" => ("attn_norm.weight", None),
                "self_attn.q_proj.weight" => ("attn_q.weight", Some(self.n_heads)),
                "self_attn.k_proj.weight" => ("attn_k.weight", Some(self.n_kv_heads)),
                "self_attn.v_proj.weight" => ("attn_v.weight", None),
                "self_attn.o_proj.weight" => ("attn_output.weight", None),
                "post_attention_layernorm.weight" => ("ffn_norm.weight", None),
                "mlp.gate_proj.weight" => ("ffn_gate.weight", None),
                "mlp.up_proj.weight" => ("ffn_up.weight", None),
                "mlp.down_proj.weight" => ("ffn_down.weight", None),
                _ => return None,
            })
        };
        match hf {
            "model.embed_tokens.weight" => Some(("token_embd.weight".into(), None)),
            "model.norm.weight" => Some(("output_norm.weight".into(), None)),
            "lm_head.weight" => Some(("output.weight".into(), None)),
            _ => {
                let rest = hf.strip_prefix("model.layers.")?;
                let (l, rest) = rest.split_once('.')?;
                let (name, perm) = map_layer(rest)?;
                Some((format!("blk.{l}.{name}"), perm))
            }
        }
    }
}

/// Undo llama.cpp's `permute` of Q/K rows: GGUF rows are `[n_head, d_head/2, 2]`-interleaved; HF
/// rows are `[n_head, 2, d_head/2]` (half-split rotary).
pub(crate) fn unpermute_qk(w: &Tensor, n_head: usize) -> Result<Tensor> {
    let (out, inp) = w.dims2()?;
    let dh = out / n_head;
    Ok(w.reshape((n_head, dh / 2, 2, inp))?
        .transpose(1, 2)?
        .contiguous()?
        .reshape((out, inp))?)
}

impl TensorSource for GgufSource {
    fn tensor(&mut self, name: &str) -> Result<Tensor> {
        let (g, perm) = self.gguf_name(name).ok_or_else(|| {
            Error::model_file(
                &self.path,
                format!("no GGUF tensor corresponds to `{name}`"),
            )
        })?;
        let q = self
            .content
            .tensor(&mut self.reader, &g, &Device::Cpu)
            .map_err(|e| Error::model_file(&self.path, format!("tensor `{g}`: {e}")))?;
        let t = q
            .dequantize(&Device::Cpu)
            .map_err(|e| Error::model_file(&self.path, format!("dequantize `{g}`: {e}")))?;
        match perm {
            Some(n) => unpermute_qk(&t, n),
            None => Ok(t),
        }
    }
    fn has(&self, name: &str) -> bool {
        self.gguf_name(name)
            .is_some_and(|(g, _)| self.content.tensor_infos.contains_key(&g))
    }
}
