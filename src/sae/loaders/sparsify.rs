//! EleutherAI sparsify: `<folder>/cfg.json` (`d_in`, `num_latents` or `expansion_factor`, `k`,
//! `normalize_decoder`, `signed`) + `<folder>/sae.safetensors`, and optionally the run's
//! `config.json` one level up (`model`, `dataset`, `ctx_len`).
//!
//! As SAELens's `sparsify` loader: a top-k SAE with `k`; `apply_b_dec_to_input =
//! !normalize_decoder`; `W_enc = W_enc | encoder.weightᵀ`, `W_dec` from `W_dec |
//! decoder.weightᵀ`, oriented `[d_sae, d_in]`; missing biases are zeros; folder
//! `layers.N` / `layers_N` → `blocks.N.hook_resid_post`, `embed_tokens` → `hook_embed`;
//! default dtype `bfloat16` (`from_pretrained` and `Sae::load` cast to float32 unless asked).
use super::files::{read_safetensors, t2, take_or_linear_t, TensorMap};
use super::{field_usize, find_number_after, obj, read_json_object, LoadCtx, RawSae};
use crate::error::{Error, Result};
use candle_core::{Device, Tensor};
use serde_json::Value;
use std::path::Path;

pub(crate) const CFG: &str = "cfg.json";
pub(crate) const WEIGHTS: &str = "sae.safetensors";

fn layer_of(name: &str) -> Option<usize> {
    find_number_after(name, "layers.").or_else(|| find_number_after(name, "layers_"))
}

pub(crate) fn load(ctx: &LoadCtx) -> Result<RawSae> {
    let cfg_path = ctx.src.require(&ctx.file(CFG))?;
    let old = read_json_object(&cfg_path)?;
    // The run's config.json, one level up (hub: `<parent folder>/config.json`).
    let parent_folder = Path::new(ctx.folder)
        .parent()
        .map(|p| p.to_string_lossy().replace('\\', "/"))
        .unwrap_or_default();
    let run_cfg = if ctx.folder.trim_matches('/').is_empty() {
        // Local folder: look beside it.
        cfg_path
            .parent()
            .and_then(|p| p.parent())
            .map(|p| p.join("config.json"))
            .filter(|p| p.is_file())
    } else {
        ctx.src
            .optional(&super::join(&parent_folder, "config.json"))?
    };
    let run = match run_cfg {
        Some(p) => read_json_object(&p).unwrap_or_default(),
        None => Default::default(),
    };
    let folder_name = Path::new(ctx.hint.trim_end_matches('/'))
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let (hook_name, layer) = if folder_name == "embed_tokens" {
        ("hook_embed".to_string(), 0)
    } else {
        let l = layer_of(&folder_name).ok_or_else(|| {
            Error::SaeConfig(format!(
                "unrecognized sparsify folder `{folder_name}` (expected `layers.N` or `embed_tokens`)"
            ))
        })?;
        (format!("blocks.{l}.hook_resid_post"), l)
    };
    let d_in = field_usize(&old, "d_in", &cfg_path)?;
    let d_sae = match old
        .get("num_latents")
        .filter(|v| !v.is_null() && v.as_u64() != Some(0))
    {
        Some(_) => field_usize(&old, "num_latents", &cfg_path)?,
        None => d_in.saturating_mul(field_usize(&old, "expansion_factor", &cfg_path)?),
    };
    let k = field_usize(&old, "k", &cfg_path)?;
    let normalize_decoder = old
        .get("normalize_decoder")
        .and_then(|v| v.as_bool())
        .unwrap_or(false);
    let model_name = run.get("model").cloned().unwrap_or_else(|| {
        Path::new(ctx.hint.trim_end_matches('/'))
            .parent()
            .and_then(|p| p.file_name())
            .map(|s| Value::from(s.to_string_lossy().into_owned()))
            .unwrap_or(Value::Null)
    });
    let mut cfg = obj(vec![
        ("architecture", "standard".into()),
        ("d_in", d_in.into()),
        ("d_sae", d_sae.into()),
        ("dtype", "bfloat16".into()),
        ("device", "cpu".into()),
        ("model_name", model_name),
        ("hook_name", hook_name.into()),
        ("hook_layer", layer.into()),
        ("hook_head_index", Value::Null),
        ("activation_fn_str", "topk".into()),
        (
            "activation_fn_kwargs",
            serde_json::json!({"k": k, "signed": old.get("signed").cloned().unwrap_or(Value::Bool(false))}),
        ),
        ("apply_b_dec_to_input", (!normalize_decoder).into()),
        (
            "dataset_path",
            run.get("dataset")
                .cloned()
                .unwrap_or_else(|| "togethercomputer/RedPajama-Data-1T-Sample".into()),
        ),
        (
            "context_size",
            run.get("ctx_len").cloned().unwrap_or_else(|| 2048.into()),
        ),
        ("finetuning_scaling_factor", false.into()),
        ("sae_lens_training_version", Value::Null),
        ("prepend_bos", true.into()),
        ("dataset_trust_remote_code", true.into()),
        ("normalize_activations", "none".into()),
        ("neuronpedia_id", Value::Null),
    ]);
    ctx.apply_overrides(&mut cfg);

    let weights_path = ctx.src.require(&ctx.file(WEIGHTS))?;
    let mut raw = read_safetensors(&weights_path, &Device::Cpu)?;
    let p = &weights_path;
    let w_enc = take_or_linear_t(&mut raw, "W_enc", "encoder.weight", p)?;
    let w_dec = take_or_linear_t(&mut raw, "W_dec", "decoder.weight", p)?;
    // sparsify keeps W_dec as [num_latents, d_in]; accept either orientation.
    let w_dec = match w_dec.dims2() {
        Ok((a, b)) if a == d_in && b == d_sae && a != b => t2(&w_dec, "W_dec", p)?,
        _ => w_dec,
    };
    // Missing biases are zeros as wide as the file's encoder (`[d_in, d_sae]`), not as the
    // config claims: a mismatch with cfg.json is reported when the SAE is built.
    let dt = w_enc.dtype();
    let width = |i: usize| w_enc.dims().get(i).copied().unwrap_or(0);
    let b_enc = match raw.remove("b_enc").or_else(|| raw.remove("encoder.bias")) {
        Some(b) => b,
        None => Tensor::zeros(width(1), dt, &Device::Cpu)?,
    };
    let b_dec = match raw.remove("b_dec").or_else(|| raw.remove("decoder.bias")) {
        Some(b) => b,
        None => Tensor::zeros(width(0), dt, &Device::Cpu)?,
    };
    let mut tensors = TensorMap::new();
    tensors.insert("W_enc".into(), w_enc);
    tensors.insert("b_enc".into(), b_enc);
    tensors.insert("W_dec".into(), w_dec);
    tensors.insert("b_dec".into(), b_dec);
    Ok(RawSae {
        cfg,
        tensors,
        sparsity: None,
        cfg_path: Some(cfg_path),
        weights_path,
    })
}
