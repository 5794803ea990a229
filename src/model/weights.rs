//! Weights in TransformerLens's state-dict layout (`blocks.{l}.attn.W_Q [n_heads, d_model, d_head]`,
//! `unembed.W_U [d_model, d_vocab]`, ...), and the sources they are converted from.
use super::config::ModelConfig;
use crate::error::{Error, Result};
use candle_core::Tensor;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// A TL-layout state dict. Biases that are absent are zero (as TL's llama conversion writes them).
#[derive(Default)]
pub struct StateDict {
    map: HashMap<String, Tensor>,
}

impl StateDict {
    pub fn insert(&mut self, name: impl Into<String>, t: Tensor) {
        self.map.insert(name.into(), t);
    }
    pub fn get(&self, name: &str) -> Option<&Tensor> {
        self.map.get(name)
    }
    pub fn contains(&self, name: &str) -> bool {
        self.map.contains_key(name)
    }
    pub fn remove(&mut self, name: &str) -> Option<Tensor> {
        self.map.remove(name)
    }
    /// Remove a required weight; a missing one is a bug in a converter, reported as a config error.
    pub fn take(&mut self, name: &str) -> Result<Tensor> {
        self.map
            .remove(name)
            .ok_or_else(|| Error::Config(format!("weight `{name}` missing after conversion")))
    }
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.map.keys().map(|s| s.as_str())
    }
    pub fn len(&self) -> usize {
        self.map.len()
    }
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Check every weight with a fixed TL shape against `cfg` (`W_Q [n_heads, d_model, d_head]`,
    /// `mlp.W_in [d_model, d_mlp]`, ...), so that a file whose tensors disagree with its config
    /// is refused at load time instead of failing (or panicking in a kernel) in the forward pass.
    pub fn check_shapes(&self, cfg: &ModelConfig) -> Result<()> {
        let mut names: Vec<&String> = self.map.keys().collect();
        names.sort();
        for name in names {
            let Some(want) = tl_shape(name, cfg) else {
                continue;
            };
            let got = self.map[name].dims();
            if got != want.as_slice() {
                return Err(Error::Config(format!(
                    "weight `{name}` has shape {got:?}, but the config (d_model = {}, n_heads = {}, \
                     n_kv_heads = {}, d_head = {}, d_mlp = {}, d_vocab = {}, n_ctx = {}) needs {want:?}",
                    cfg.d_model, cfg.n_heads, cfg.n_kv_heads, cfg.d_head, cfg.d_mlp, cfg.d_vocab, cfg.n_ctx
                )));
            }
        }
        Ok(())
    }
}

/// The shape TL gives a state-dict entry under `cfg`, for the names whose shape is fixed.
fn tl_shape(name: &str, cfg: &ModelConfig) -> Option<Vec<usize>> {
    let (d, h, hkv, dh) = (cfg.d_model, cfg.n_heads, cfg.n_kv_heads, cfg.d_head);
    let (m, v) = (cfg.d_mlp, cfg.d_vocab);
    let local = match name.strip_prefix("blocks.") {
        Some(rest) => rest.split_once('.')?.1,
        None => name,
    };
    Some(match local {
        "embed.W_E" => vec![v, d],
        "pos_embed.W_pos" => vec![cfg.n_ctx, d],
        "unembed.W_U" => vec![d, v],
        "unembed.b_U" => vec![v],
        "ln_final.w" | "ln_final.b" | "ln1.w" | "ln1.b" | "ln2.w" | "ln2.b" | "ln1_post.w"
        | "ln2_post.w" | "attn.b_O" | "mlp.b_out" => vec![d],
        "attn.W_Q" => vec![h, d, dh],
        "attn.W_K" | "attn.W_V" => vec![hkv, d, dh],
        "attn.W_O" => vec![h, dh, d],
        "attn.b_Q" => vec![h, dh],
        "attn.b_K" | "attn.b_V" => vec![hkv, dh],
        "mlp.W_in" | "mlp.W_gate" => vec![d, m],
        "mlp.W_out" => vec![m, d],
        "mlp.b_in" => vec![m],
        _ => return None,
    })
}

/// Where a converter reads source tensors from, one at a time (so that loading never holds two
/// copies of the model).
pub(crate) trait TensorSource {
    /// The tensor `name` (in the source's HF naming), as f32.
    fn tensor(&mut self, name: &str) -> Result<Tensor>;
    fn has(&self, name: &str) -> bool;
}

/// Safetensors files (one, or the shards of an index), memory-mapped.
pub(crate) struct SafetensorsSource {
    st: candle_core::safetensors::MmapedSafetensors,
    path: PathBuf,
    /// Prefix to strip, e.g. `transformer.` in GPT2LMHeadModel checkpoints.
    prefixes: Vec<String>,
}

impl SafetensorsSource {
    pub fn open(files: &[PathBuf], display_path: &Path, prefixes: &[&str]) -> Result<Self> {
        for f in files {
            check_safetensors_header(f)?;
        }
        // SAFETY: the files are opened read-only and not modified while mapped.
        let st =
            unsafe { candle_core::safetensors::MmapedSafetensors::multi(files) }.map_err(|e| {
                Error::model_file(display_path, format!("not a valid safetensors file: {e}"))
            })?;
        Ok(SafetensorsSource {
            st,
            path: display_path.to_path_buf(),
            prefixes: prefixes.iter().map(|s| s.to_string()).collect(),
        })
    }
    fn resolve(&self, name: &str) -> Option<String> {
        let mut cands = vec![name.to_string()];
        cands.extend(self.prefixes.iter().map(|p| format!("{p}{name}")));
        cands.into_iter().find(|c| self.st.get(c).is_ok())
    }
}

impl TensorSource for SafetensorsSource {
    fn tensor(&mut self, name: &str) -> Result<Tensor> {
        let full = self
            .resolve(name)
            .ok_or_else(|| Error::model_file(&self.path, format!("tensor `{name}` not found")))?;
        let t = self
            .st
            .load(&full, &candle_core::Device::Cpu)
            .map_err(|e| Error::model_file(&self.path, format!("tensor `{full}`: {e}")))?;
        Ok(t.to_dtype(candle_core::DType::F32)?)
    }
    fn has(&self, name: &str) -> bool {
        self.resolve(name).is_some()
    }
}

/// Validate a safetensors header and that the file is as long as the header says, so a
/// truncated file gives a clear error instead of a fault while mapped.
fn check_safetensors_header(path: &Path) -> Result<()> {
    safetensors_layout_problem(path).map_err(|reason| Error::model_file(path, reason))
}

/// Why `path` is not a complete safetensors file (unreadable, truncated, corrupt header), if it
/// is not; used before memory-mapping so that a bad file gives a message, not a fault.
pub(crate) fn safetensors_layout_problem(path: &Path) -> std::result::Result<(), String> {
    use std::io::Read;
    let mut f = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let len = f.metadata().map_err(|e| e.to_string())?.len();
    let mut n = [0u8; 8];
    f.read_exact(&mut n)
        .map_err(|_| format!("truncated: {len} bytes is shorter than a safetensors header"))?;
    let n = u64::from_le_bytes(n);
    if n > len.saturating_sub(8) || n > 100 << 20 {
        return Err(format!(
            "not a safetensors file, or truncated (header length {n}, file length {len})"
        ));
    }
    let mut buf = vec![0u8; n as usize];
    f.read_exact(&mut buf).map_err(|e| e.to_string())?;
    let header: serde_json::Value =
        serde_json::from_slice(&buf).map_err(|e| format!("corrupt safetensors header: {e}"))?;
    let end = header
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(k, _)| *k != "__metadata__")
        .filter_map(|(_, v)| v.get("data_offsets")?.as_array()?.get(1)?.as_u64())
        .max()
        .unwrap_or(0);
    if 8 + n + end > len {
        return Err(format!(
            "truncated: the header describes {end} bytes of tensor data but the file has {}",
            len - 8 - n
        ));
    }
    Ok(())
}
