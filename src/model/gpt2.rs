//! GPT-2 (`GPT2LMHeadModel`): HF config → TL config, HF weights → TL state dict
//! (TL's `convert_gpt2_weights`).
use super::config::{ActFn, Architecture, ModelConfig, Normalization, Positional, Processing};
use super::weights::{StateDict, TensorSource};
use crate::error::{Error, Result};
use candle_core::Tensor;
use serde_json::Value;

/// TL config for an HF GPT-2 `config.json`.
pub(crate) fn config(hf: &Value, model_name: &str) -> Result<ModelConfig> {
    let u = |k: &str| hf.get(k).and_then(|v| v.as_u64()).map(|v| v as usize);
    let need =
        |k: &str| u(k).ok_or_else(|| Error::Config(format!("GPT-2 config.json lacks `{k}`")));
    let d_model = need("n_embd")?;
    let n_heads = need("n_head")?;
    let act = hf
        .get("activation_function")
        .and_then(|v| v.as_str())
        .unwrap_or("gelu_new");
    let act_fn = match act {
        "gelu_new" | "gelu_pytorch_tanh" => ActFn::GeluNew,
        "gelu" => ActFn::Gelu,
        "relu" => ActFn::Relu,
        "silu" | "swish" => ActFn::Silu,
        other => {
            return Err(Error::Config(format!(
                "GPT-2 activation_function `{other}` is not supported"
            )))
        }
    };
    let cfg = ModelConfig {
        model_name: model_name.to_string(),
        architecture: Architecture::Gpt2,
        n_layers: need("n_layer")?,
        d_model,
        n_heads,
        n_kv_heads: n_heads,
        d_head: d_model / n_heads,
        d_mlp: u("n_inner").unwrap_or(4 * d_model),
        d_vocab: need("vocab_size")?,
        n_ctx: need("n_positions")?,
        eps: hf
            .get("layer_norm_epsilon")
            .and_then(|v| v.as_f64())
            .unwrap_or(1e-5),
        act_fn,
        normalization: Normalization::LN,
        positional: Positional::Standard,
        gated_mlp: false,
        tied_embeddings: hf
            .get("tie_word_embeddings")
            .and_then(|v| v.as_bool())
            .unwrap_or(true),
        processing: Processing::none(),
        ..ModelConfig::default()
    };
    cfg.validate()?;
    Ok(cfg)
}

/// HF GPT-2 tensors → TL state dict.
pub(crate) fn convert(src: &mut dyn TensorSource, cfg: &ModelConfig) -> Result<StateDict> {
    let (d, h, dh) = (cfg.d_model, cfg.n_heads, cfg.d_head);
    let mut sd = StateDict::default();
    let wte = src.tensor("wte.weight")?;
    let w_u = if src.has("lm_head.weight") {
        src.tensor("lm_head.weight")?.t()?.contiguous()?
    } else {
        wte.t()?.contiguous()?
    };
    sd.insert("embed.W_E", wte);
    sd.insert("pos_embed.W_pos", src.tensor("wpe.weight")?);
    for l in 0..cfg.n_layers {
        let p = |s: &str| format!("h.{l}.{s}");
        let t = |s: &str| format!("blocks.{l}.{s}");
        sd.insert(t("ln1.w"), src.tensor(&p("ln_1.weight"))?);
        sd.insert(t("ln1.b"), src.tensor(&p("ln_1.bias"))?);
        // c_attn: [d, 3d] → Q|K|V, each 'm (i h) -> i m h' = [n_heads, d_model, d_head].
        let w = src.tensor(&p("attn.c_attn.weight"))?;
        let b = src.tensor(&p("attn.c_attn.bias"))?;
        for (i, x) in ["Q", "K", "V"].iter().enumerate() {
            let wx = w
                .narrow(1, i * d, d)?
                .reshape((d, h, dh))?
                .permute((1, 0, 2))?
                .contiguous()?;
            sd.insert(t(&format!("attn.W_{x}")), wx);
            sd.insert(
                t(&format!("attn.b_{x}")),
                b.narrow(0, i * d, d)?.reshape((h, dh))?,
            );
        }
        // c_proj: [(i h), m] → W_O [n_heads, d_head, d_model].
        sd.insert(
            t("attn.W_O"),
            src.tensor(&p("attn.c_proj.weight"))?.reshape((h, dh, d))?,
        );
        sd.insert(t("attn.b_O"), src.tensor(&p("attn.c_proj.bias"))?);
        sd.insert(t("ln2.w"), src.tensor(&p("ln_2.weight"))?);
        sd.insert(t("ln2.b"), src.tensor(&p("ln_2.bias"))?);
        sd.insert(t("mlp.W_in"), src.tensor(&p("mlp.c_fc.weight"))?);
        sd.insert(t("mlp.b_in"), src.tensor(&p("mlp.c_fc.bias"))?);
        sd.insert(t("mlp.W_out"), src.tensor(&p("mlp.c_proj.weight"))?);
        sd.insert(t("mlp.b_out"), src.tensor(&p("mlp.c_proj.bias"))?);
    }
    sd.insert("ln_final.w", src.tensor("ln_f.weight")?);
    sd.insert("ln_final.b", src.tensor("ln_f.bias")?);
    sd.insert(
        "unembed.b_U",
        Tensor::zeros(cfg.d_vocab, w_u.dtype(), w_u.device())?,
    );
    sd.insert("unembed.W_U", w_u);
    Ok(sd)
}
