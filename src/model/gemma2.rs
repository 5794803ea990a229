//! Gemma-2 (`Gemma2ForCausalLM`): HF config → TL config, HF-layout weights → TL state dict, as
//! TL's `convert_gemma_weights` does it:
//!
//! * `embed.W_E` is the embedding times `sqrt(d_model)` (so `hook_embed` is the scaled
//!   embedding); `unembed.W_U` is `lm_head` (or, tied, the *unscaled* embedding) transposed;
//! * every RMSNorm weight is stored as `1 + w` (GemmaRMSNorm's offset), so the norms are plain
//!   TL RMSNorms and `fold_ln` folds `1 + w`;
//! * `post_attention_layernorm` → `ln1_post`, `pre_feedforward_layernorm` → `ln2`,
//!   `post_feedforward_layernorm` → `ln2_post` (the `_post` norms are never folded);
//! * no biases (TL's zero biases are left absent: they change nothing).
use super::config::{
    ActFn, Architecture, AttnType, ModelConfig, Normalization, Positional, Processing,
};
use super::weights::{StateDict, TensorSource};
use crate::error::{Error, Result};
use candle_core::Tensor;
use serde_json::Value;

/// TL config for an HF Gemma-2 `config.json` (TL's `google/gemma-2-*` configs, read from the
/// file instead of hard-coded).
pub(crate) fn config(hf: &Value, model_name: &str) -> Result<ModelConfig> {
    let u = |k: &str| hf.get(k).and_then(|v| v.as_u64()).map(|v| v as usize);
    let f = |k: &str| hf.get(k).and_then(|v| v.as_f64());
    let need =
        |k: &str| u(k).ok_or_else(|| Error::Config(format!("gemma2 config.json lacks `{k}`")));
    let d_model = need("hidden_size")?;
    let n_heads = need("num_attention_heads")?;
    let n_layers = need("num_hidden_layers")?;
    let d_head = u("head_dim").unwrap_or(256);
    let act = hf
        .get("hidden_activation")
        .or_else(|| hf.get("hidden_act"))
        .and_then(|v| v.as_str())
        .unwrap_or("gelu_pytorch_tanh");
    let act_fn = match act {
        "gelu_pytorch_tanh" | "gelu_new" => ActFn::GeluNew,
        "gelu" => ActFn::Gelu,
        other => {
            return Err(Error::Config(format!(
                "gemma2 hidden_activation `{other}` is not supported"
            )))
        }
    };
    if hf
        .get("attention_bias")
        .and_then(|v| v.as_bool())
        .unwrap_or(false)
    {
        return Err(Error::Config(
            "gemma2 with `attention_bias: true` is not supported".into(),
        ));
    }
    let rope_theta = super::llama::default_rope_theta(hf, "gemma2")?;
    // Sliding-window layers: `layer_types` (newer configs), else HF's and TL's default of
    // even layers local, odd layers global.
    let window_size = u("sliding_window");
    let attn_types: Vec<AttnType> = match hf.get("layer_types").and_then(|v| v.as_array()) {
        Some(types) => types
            .iter()
            .map(|t| match t.as_str() {
                Some("sliding_attention") => Ok(AttnType::Local),
                Some("full_attention") => Ok(AttnType::Global),
                other => Err(Error::Config(format!(
                    "gemma2 layer type {other:?} is not supported"
                ))),
            })
            .collect::<Result<_>>()?,
        None => (0..n_layers)
            .map(|l| {
                if l % 2 == 0 {
                    AttnType::Local
                } else {
                    AttnType::Global
                }
            })
            .collect(),
    };
    let attn_types = if window_size.is_some() {
        Some(attn_types)
    } else {
        None
    };
    // A missing or null soft cap means none (as in HF).
    let cap = |k: &str| f(k).filter(|c| *c > 0.0);
    let cfg = ModelConfig {
        model_name: model_name.to_string(),
        architecture: Architecture::Gemma2,
        n_layers,
        d_model,
        n_heads,
        n_kv_heads: u("num_key_value_heads").unwrap_or(n_heads),
        d_head,
        d_mlp: need("intermediate_size")?,
        d_vocab: need("vocab_size")?,
        n_ctx: u("max_position_embeddings").unwrap_or(8192),
        eps: f("rms_norm_eps").unwrap_or(1e-6),
        act_fn,
        normalization: Normalization::RMS,
        positional: Positional::Rotary {
            base: rope_theta,
            dim: d_head,
        },
        gated_mlp: true,
        tied_embeddings: hf
            .get("tie_word_embeddings")
            .and_then(|v| v.as_bool())
            .unwrap_or(true),
        processing: Processing::none(),
        // HF scales queries by query_pre_attn_scalar^-0.5; TL divides the scores by its root.
        attn_scale: Some(f("query_pre_attn_scalar").unwrap_or(d_head as f64).sqrt()),
        attn_scores_soft_cap: cap("attn_logit_softcapping"),
        output_logits_soft_cap: cap("final_logit_softcapping"),
        window_size,
        attn_types,
        use_normalization_before_and_after: true,
    };
    cfg.validate()?;
    Ok(cfg)
}

/// GemmaRMSNorm's `1 + w`, as TL stores it.
fn norm_w(src: &mut dyn TensorSource, name: &str) -> Result<Tensor> {
    Ok((src.tensor(name)? + 1.0)?)
}

/// HF-layout Gemma-2 tensors → TL state dict (TL's `convert_gemma_weights`).
pub(crate) fn convert(src: &mut dyn TensorSource, cfg: &ModelConfig) -> Result<StateDict> {
    let (d, h, hkv, dh) = (cfg.d_model, cfg.n_heads, cfg.n_kv_heads, cfg.d_head);
    let mut sd = StateDict::default();
    let emb = src.tensor("model.embed_tokens.weight")?;
    let w_u = if src.has("lm_head.weight") {
        src.tensor("lm_head.weight")?.t()?.contiguous()?
    } else {
        emb.t()?.contiguous()?
    };
    // TL multiplies by sqrt(d_model) as an f32 scalar (candle's affine casts it to f32 too).
    sd.insert("embed.W_E", (emb * (d as f64).sqrt() as f32 as f64)?);
    for l in 0..cfg.n_layers {
        let p = |s: &str| format!("model.layers.{l}.{s}");
        let t = |s: &str| format!("blocks.{l}.{s}");
        sd.insert(t("ln1.w"), norm_w(src, &p("input_layernorm.weight"))?);
        sd.insert(
            t("ln1_post.w"),
            norm_w(src, &p("post_attention_layernorm.weight"))?,
        );
        // q/k/v_proj [(n h), m] → '(n h) m -> n m h'.
        for (x, n, proj) in [
            ("Q", h, "q_proj"),
            ("K", hkv, "k_proj"),
            ("V", hkv, "v_proj"),
        ] {
            let w = src.tensor(&p(&format!("self_attn.{proj}.weight")))?;
            sd.insert(
                t(&format!("attn.W_{x}")),
                w.reshape((n, dh, d))?.transpose(1, 2)?,
            );
        }
        // o_proj [m, (n h)] → 'm (n h) -> n h m'.
        let wo = src.tensor(&p("self_attn.o_proj.weight"))?;
        sd.insert(t("attn.W_O"), wo.reshape((d, h, dh))?.permute((1, 2, 0))?);
        sd.insert(
            t("ln2.w"),
            norm_w(src, &p("pre_feedforward_layernorm.weight"))?,
        );
        sd.insert(
            t("ln2_post.w"),
            norm_w(src, &p("post_feedforward_layernorm.weight"))?,
        );
        sd.insert(t("mlp.W_in"), src.tensor(&p("mlp.up_proj.weight"))?.t()?);
        sd.insert(
            t("mlp.W_gate"),
            src.tensor(&p("mlp.gate_proj.weight"))?.t()?,
        );
        sd.insert(t("mlp.W_out"), src.tensor(&p("mlp.down_proj.weight"))?.t()?);
    }
    sd.insert("ln_final.w", norm_w(src, "model.norm.weight")?);
    sd.insert("unembed.W_U", w_u);
    Ok(sd)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base(json: &str) -> Result<ModelConfig> {
        let mut v: Value = serde_json::from_str(
            r#"{"hidden_size": 64, "num_attention_heads": 4, "num_key_value_heads": 2,
                "head_dim": 16, "num_hidden_layers": 3, "intermediate_size": 128,
                "vocab_size": 300, "query_pre_attn_scalar": 24, "sliding_window": 4,
                "attn_logit_softcapping": 50.0, "final_logit_softcapping": 30.0}"#,
        )
        .unwrap();
        let extra: Value = serde_json::from_str(json).unwrap();
        for (k, x) in extra.as_object().unwrap() {
            v[k] = x.clone();
        }
        config(&v, "t")
    }

    #[test]
    fn gemma2_config() {
        let c = base("{}").unwrap();
        assert_eq!(c.architecture, Architecture::Gemma2);
        assert_eq!((c.n_kv_heads, c.d_head), (2, 16));
        assert!((c.attn_scale() - 24f64.sqrt()).abs() < 1e-12);
        assert_eq!(c.attn_scores_soft_cap, Some(50.0));
        assert_eq!(c.output_logits_soft_cap, Some(30.0));
        assert_eq!(
            (c.window(0), c.window(1), c.window(2)),
            (Some(4), None, Some(4))
        );
        assert!(c.use_normalization_before_and_after && c.tied_embeddings);
        assert_eq!(c.act_fn, ActFn::GeluNew);
        let c = base(
            r#"{"layer_types": ["full_attention", "sliding_attention", "full_attention"],
                "final_logit_softcapping": null}"#,
        )
        .unwrap();
        assert_eq!((c.window(0), c.window(1)), (None, Some(4)));
        assert_eq!(c.output_logits_soft_cap, None);
        assert!(base(r#"{"layer_types": ["full_attention"]}"#).is_err());
        assert!(base(r#"{"hidden_activation": "relu"}"#).is_err());
    }
}
