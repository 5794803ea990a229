//! Llama (`LlamaForCausalLM`, and llama GGUF files): HF config → TL config, HF-layout weights →
//! TL state dict (TL's `convert_llama_weights`). Biases are all zero and left absent.
use super::config::{ActFn, Architecture, ModelConfig, Normalization, Positional, Processing};
use super::weights::{StateDict, TensorSource};
use crate::error::{Error, Result};
use serde_json::Value;

/// TL config for an HF llama `config.json`.
pub(crate) fn config(hf: &Value, model_name: &str) -> Result<ModelConfig> {
    let u = |k: &str| hf.get(k).and_then(|v| v.as_u64()).map(|v| v as usize);
    let need =
        |k: &str| u(k).ok_or_else(|| Error::Config(format!("llama config.json lacks `{k}`")));
    let d_model = need("hidden_size")?;
    let n_heads = need("num_attention_heads")?;
    let d_head = u("head_dim").unwrap_or(d_model / n_heads);
    let act = hf
        .get("hidden_act")
        .and_then(|v| v.as_str())
        .unwrap_or("silu");
    if act != "silu" {
        return Err(Error::Config(format!(
            "llama hidden_act `{act}` is not supported (only silu)"
        )));
    }
    for flag in ["attention_bias", "mlp_bias"] {
        if hf.get(flag).and_then(|v| v.as_bool()).unwrap_or(false) {
            return Err(Error::Config(format!(
                "llama with `{flag}: true` is not supported yet"
            )));
        }
    }
    let rope_theta = default_rope_theta(hf, "llama")?;
    let cfg = ModelConfig {
        model_name: model_name.to_string(),
        architecture: Architecture::Llama,
        n_layers: need("num_hidden_layers")?,
        d_model,
        n_heads,
        n_kv_heads: u("num_key_value_heads").unwrap_or(n_heads),
        d_head,
        d_mlp: need("intermediate_size")?,
        d_vocab: need("vocab_size")?,
        n_ctx: u("max_position_embeddings").unwrap_or(2048),
        eps: hf
            .get("rms_norm_eps")
            .and_then(|v| v.as_f64())
            .unwrap_or(1e-6),
        act_fn: ActFn::Silu,
        normalization: Normalization::RMS,
        positional: Positional::Rotary {
            base: rope_theta,
            dim: d_head,
        },
        gated_mlp: true,
        tied_embeddings: hf
            .get("tie_word_embeddings")
            .and_then(|v| v.as_bool())
            .unwrap_or(false),
        processing: Processing::none(),
        ..ModelConfig::default()
    };
    cfg.validate()?;
    Ok(cfg)
}

/// The RoPE base of an HF config; only default RoPE is supported. transformers >= 5 writes
/// `rope_parameters: {rope_type, rope_theta}`; older configs have `rope_theta` and
/// `rope_scaling` at the top level.
pub(crate) fn default_rope_theta(hf: &Value, arch: &str) -> Result<f64> {
    let rope = hf.get("rope_parameters").filter(|v| v.is_object());
    let rope_type = rope
        .and_then(|r| r.get("rope_type"))
        .or_else(|| {
            hf.get("rope_scaling")
                .and_then(|s| s.get("rope_type").or_else(|| s.get("type")))
        })
        .and_then(|v| v.as_str())
        .unwrap_or("default");
    if rope_type != "default" {
        return Err(Error::Config(format!(
            "{arch} rope type `{rope_type}` is not supported yet (only default RoPE)"
        )));
    }
    Ok(rope
        .and_then(|r| r.get("rope_theta"))
        .or_else(|| hf.get("rope_theta"))
        .and_then(|v| v.as_f64())
        .unwrap_or(10000.0))
}

/// HF-layout llama tensors → TL state dict. The TL-shaped tensors are strided views of the
/// source tensors (no copies); `HookedModel::build` lays them out once.
pub(crate) fn convert(src: &mut dyn TensorSource, cfg: &ModelConfig) -> Result<StateDict> {
    let (d, h, hkv, dh) = (cfg.d_model, cfg.n_heads, cfg.n_kv_heads, cfg.d_head);
    let mut sd = StateDict::default();
    let emb = src.tensor("model.embed_tokens.weight")?;
    let w_u = if src.has("lm_head.weight") {
        src.tensor("lm_head.weight")?.t()?.contiguous()?
    } else {
        emb.t()?.contiguous()?
    };
    sd.insert("embed.W_E", emb);
    for l in 0..cfg.n_layers {
        let p = |s: &str| format!("model.layers.{l}.{s}");
        let t = |s: &str| format!("blocks.{l}.{s}");
        sd.insert(t("ln1.w"), src.tensor(&p("input_layernorm.weight"))?);
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
            src.tensor(&p("post_attention_layernorm.weight"))?,
        );
        sd.insert(t("mlp.W_in"), src.tensor(&p("mlp.up_proj.weight"))?.t()?);
        sd.insert(
            t("mlp.W_gate"),
            src.tensor(&p("mlp.gate_proj.weight"))?.t()?,
        );
        sd.insert(t("mlp.W_out"), src.tensor(&p("mlp.down_proj.weight"))?.t()?);
    }
    sd.insert("ln_final.w", src.tensor("model.norm.weight")?);
    sd.insert("unembed.W_U", w_u);
    Ok(sd)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Positional;

    fn base(json: &str) -> Result<ModelConfig> {
        let mut v: Value = serde_json::from_str(
            r#"{"hidden_size": 64, "num_attention_heads": 4, "num_hidden_layers": 2,
                "intermediate_size": 128, "vocab_size": 300}"#,
        )
        .unwrap();
        let extra: Value = serde_json::from_str(json).unwrap();
        for (k, x) in extra.as_object().unwrap() {
            v[k] = x.clone();
        }
        config(&v, "t")
    }

    #[test]
    fn rope_theta_in_both_config_styles() {
        let rot = |c: ModelConfig| match c.positional {
            Positional::Rotary { base, .. } => base,
            _ => unreachable!(),
        };
        assert_eq!(rot(base(r#"{"rope_theta": 500000.0}"#).unwrap()), 500000.0);
        assert_eq!(
            rot(
                base(r#"{"rope_parameters": {"rope_type": "default", "rope_theta": 100000.0}}"#)
                    .unwrap()
            ),
            100000.0
        );
        assert_eq!(rot(base("{}").unwrap()), 10000.0);
        let e =
            base(r#"{"rope_parameters": {"rope_type": "llama3", "rope_theta": 1.0}}"#).unwrap_err();
        assert!(e.to_string().contains("llama3"));
        assert!(base(r#"{"attention_bias": true}"#).is_err());
        assert_eq!(base(r#"{"num_key_value_heads": 2}"#).unwrap().n_kv_heads, 2);
    }
}
