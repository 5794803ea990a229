//! dictionary_learning (`dictionary_learning_1`): `<folder>/ae.pt` (a `torch.save`d state
//! dict) + `<folder>/config.json` (`trainer`: `dict_class`, `activation_dim`, `dict_size`,
//! `layer`, `lm_name`, `k`; `buffer.ctx_len`).
//!
//! Tensors: `W_enc | encoder.weightᵀ`, `W_dec | decoder.weightᵀ`, `b_dec | bias |
//! decoder_bias`, `b_enc | encoder.bias`, `mag_bias → b_mag`, `gate_bias → b_gate`, `r_mag`,
//! `threshold` (a scalar is broadcast to `[d_sae]`). Classes: `GatedAutoEncoder → gated`,
//! `BatchTopKSAE` / `MatryoshkaBatchTopKSAE → jumprelu`, `JumpReluAutoEncoder → jumprelu`
//! without `b_dec` subtraction, `AutoEncoderTopK → topk` (`k`), else `standard`. Hook
//! `blocks.L.hook_resid_post`.
use super::files::{read_pt, take_any, take_or_linear_t, TensorMap};
use super::{field, field_usize, obj, read_json_object, LoadCtx, RawSae};
use crate::error::{Error, Result};
use candle_core::Tensor;
use serde_json::Value;

pub(crate) fn load(ctx: &LoadCtx) -> Result<RawSae> {
    let cfg_path = ctx.src.require(&ctx.file("config.json"))?;
    let config = read_json_object(&cfg_path)?;
    let trainer = field(&config, "trainer", &cfg_path)?
        .as_object()
        .ok_or_else(|| Error::sae_file(&cfg_path, "`trainer` should be an object"))?;
    let ctx_len = config
        .get("buffer")
        .and_then(|b| b.get("ctx_len"))
        .cloned()
        .unwrap_or(Value::Null);
    let dict_class = trainer
        .get("dict_class")
        .and_then(|v| v.as_str())
        .unwrap_or("AutoEncoder")
        .to_string();
    let layer = field_usize(trainer, "layer", &cfg_path)?;
    let lm_name = trainer
        .get("lm_name")
        .and_then(|v| v.as_str())
        .map(|s| s.rsplit('/').next().unwrap_or(s).to_string());
    let (architecture, activation_fn, apply_b_dec) = match dict_class.as_str() {
        "GatedAutoEncoder" => ("gated", "relu", true),
        "BatchTopKSAE" | "MatryoshkaBatchTopKSAE" => ("jumprelu", "relu", true),
        "JumpReluAutoEncoder" => ("jumprelu", "relu", false),
        "AutoEncoderTopK" => ("standard", "topk", true),
        _ => ("standard", "relu", true),
    };
    let kwargs = if activation_fn == "topk" {
        serde_json::json!({"k": field(trainer, "k", &cfg_path)?.clone()})
    } else {
        serde_json::json!({})
    };
    let mut cfg = obj(vec![
        ("architecture", architecture.into()),
        ("d_in", field(trainer, "activation_dim", &cfg_path)?.clone()),
        ("d_sae", field(trainer, "dict_size", &cfg_path)?.clone()),
        ("dtype", "float32".into()),
        ("device", "cpu".into()),
        (
            "model_name",
            lm_name.map(Value::from).unwrap_or(Value::Null),
        ),
        (
            "hook_name",
            format!("blocks.{layer}.hook_resid_post").into(),
        ),
        ("hook_head_index", Value::Null),
        ("activation_fn", activation_fn.into()),
        ("activation_fn_kwargs", kwargs),
        ("apply_b_dec_to_input", apply_b_dec.into()),
        ("finetuning_scaling_factor", false.into()),
        ("sae_lens_training_version", Value::Null),
        ("prepend_bos", true.into()),
        ("dataset_path", "monology/pile-uncopyrighted".into()),
        ("context_size", ctx_len),
        ("normalize_activations", "none".into()),
        ("neuronpedia_id", Value::Null),
        ("dataset_trust_remote_code", true.into()),
    ]);
    ctx.apply_overrides(&mut cfg);

    let weights_path = ctx.src.require(&ctx.file("ae.pt"))?;
    let mut raw = read_pt(&weights_path, None)?;
    let p = &weights_path;
    let w_enc = take_or_linear_t(&mut raw, "W_enc", "encoder.weight", p)?;
    let w_dec = take_or_linear_t(&mut raw, "W_dec", "decoder.weight", p)?;
    let d_sae = w_enc.dims().get(1).copied().unwrap_or(0);
    let mut tensors = TensorMap::new();
    tensors.insert(
        "b_dec".into(),
        take_any(&mut raw, &["b_dec", "bias", "decoder_bias"], p)?,
    );
    if let Some(b) = raw.remove("encoder.bias") {
        tensors.insert("b_enc".into(), b);
    }
    if let Some(b) = raw.remove("b_enc") {
        tensors.insert("b_enc".into(), b);
    }
    for (from, to) in [
        ("mag_bias", "b_mag"),
        ("gate_bias", "b_gate"),
        ("r_mag", "r_mag"),
    ] {
        if let Some(t) = raw.remove(from) {
            tensors.insert(to.into(), t);
        }
    }
    if let Some(th) = raw.remove("threshold") {
        let th = if th.rank() == 0 || th.elem_count() == 1 {
            let v = th
                .flatten_all()?
                .to_dtype(candle_core::DType::F64)?
                .to_vec1::<f64>()?[0];
            Tensor::full(v, d_sae, th.device())?.to_dtype(th.dtype())?
        } else {
            th
        };
        tensors.insert("threshold".into(), th);
    }
    tensors.insert("W_enc".into(), w_enc);
    tensors.insert("W_dec".into(), w_dec);
    Ok(RawSae {
        cfg,
        tensors,
        sparsity: None,
        cfg_path: Some(cfg_path),
        weights_path,
    })
}
