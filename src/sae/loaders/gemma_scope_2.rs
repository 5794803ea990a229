//! Gemma Scope 2 (`gemma_3`): `params.safetensors` with `w_enc, w_dec, b_enc, b_dec, threshold`
//! (+ `affine_skip_connection` → `W_skip = affine_skip_connectionᵀ`), and a `config.json`
//! beside it when the repo has one (`architecture` must be `jump_relu`; `model_name`,
//! `hf_hook_point_in/out`).
//!
//! `d_in` / `d_sae` come from `w_enc`; the layer from `layer_(\d+)` in the folder name; the hook
//! from the folder name: `resid_post` → `blocks.L.hook_resid_post`, `attn_out` →
//! `blocks.L.attn.hook_z`, `mlp_out` → `blocks.L.hook_mlp_out`, `transcoder` / `clt` →
//! `jumprelu_skip_transcoder` from `blocks.L.hook_mlp_in` to `blocks.L.hook_mlp_out`. CLT
//! layers store a 3-D `w_dec`, summed over dim 1.
use super::files::{read_safetensors, t2, take, TensorMap};
use super::{find_number_after, obj, read_json_object, LoadCtx, RawSae};
use crate::error::{Error, Result};
use candle_core::Device;
use serde_json::Value;

pub(crate) fn load(ctx: &LoadCtx) -> Result<RawSae> {
    let folder = ctx.hint;
    let layer = find_number_after(folder, "layer_").ok_or_else(|| {
        Error::SaeConfig(format!(
            "Gemma Scope 2: could not extract the layer number from `{folder}`"
        ))
    })?;
    let is_clt = folder.contains("clt");
    let is_tc = folder.contains("transcoder") || is_clt;
    let (hook_name, hook_name_out) = if folder.contains("resid_post") {
        (format!("blocks.{layer}.hook_resid_post"), None)
    } else if folder.contains("attn_out") {
        (format!("blocks.{layer}.attn.hook_z"), None)
    } else if folder.contains("mlp_out") {
        (format!("blocks.{layer}.hook_mlp_out"), None)
    } else if is_tc {
        (
            format!("blocks.{layer}.hook_mlp_in"),
            Some(format!("blocks.{layer}.hook_mlp_out")),
        )
    } else {
        return Err(Error::SaeConfig(format!(
            "Gemma Scope 2: cannot tell the hook from the folder name `{folder}` (expected \
             resid_post, attn_out, mlp_out, transcoder or clt in it)"
        )));
    };
    // Optional raw config.
    let raw_cfg_path = ctx.src.optional(&ctx.file("config.json"))?;
    let raw_cfg = match &raw_cfg_path {
        Some(p) => {
            let m = read_json_object(p)?;
            if let Some(a) = m.get("architecture").and_then(|v| v.as_str()) {
                if a != "jump_relu" {
                    return Err(Error::sae_file(
                        p,
                        format!("unexpected architecture `{a}` in a Gemma Scope 2 config (expected jump_relu)"),
                    ));
                }
            }
            Some(m)
        }
        None => None,
    };
    let weights_path = ctx.src.require(&ctx.file("params.safetensors"))?;
    let mut raw = read_safetensors(&weights_path, &Device::Cpu)?;
    let w_enc = take(&mut raw, "w_enc", &weights_path)?;
    let mut w_dec = take(&mut raw, "w_dec", &weights_path)?;
    if w_dec.rank() == 3 {
        w_dec = w_dec.sum(1)?;
    }
    let (d_in, d_sae) = w_enc.dims2().map_err(|_| {
        Error::sae_file(
            &weights_path,
            format!("w_enc should be 2-D, has shape {:?}", w_enc.dims()),
        )
    })?;
    if d_in == 0 || d_sae == 0 {
        return Err(Error::sae_file(
            &weights_path,
            format!("w_enc has an empty dimension: shape {:?}", w_enc.dims()),
        ));
    }
    let d_out = w_dec.dims().last().copied().unwrap_or(0);
    let mut tensors = TensorMap::new();
    tensors.insert("W_enc".into(), w_enc);
    tensors.insert("W_dec".into(), w_dec);
    for (from, to) in [
        ("b_enc", "b_enc"),
        ("b_dec", "b_dec"),
        ("threshold", "threshold"),
    ] {
        tensors.insert(to.into(), take(&mut raw, from, &weights_path)?);
    }
    if let Some(s) = raw.remove("affine_skip_connection") {
        tensors.insert(
            "W_skip".into(),
            t2(&s, "affine_skip_connection", &weights_path)?,
        );
    }
    let model_name = raw_cfg
        .as_ref()
        .and_then(|m| m.get("model_name"))
        .and_then(|v| v.as_str())
        .map(|n| {
            let n = if n.contains("google") {
                n.to_string()
            } else {
                format!("google/{n}")
            };
            n.replace("-v3", "-3")
        })
        .unwrap_or_else(|| "google/gemma-3-1b-pt".to_string());
    let mut cfg = obj(vec![
        (
            "architecture",
            if is_tc {
                "jumprelu_skip_transcoder"
            } else {
                "jumprelu"
            }
            .into(),
        ),
        ("d_in", d_in.into()),
        ("d_sae", d_sae.into()),
        ("dtype", "float32".into()),
        ("model_name", model_name.into()),
        ("hook_name", hook_name.into()),
        ("hook_head_index", Value::Null),
        ("finetuning_scaling_factor", false.into()),
        ("sae_lens_training_version", Value::Null),
        ("prepend_bos", true.into()),
        ("dataset_path", "monology/pile-uncopyrighted".into()),
        ("context_size", 1024.into()),
        ("apply_b_dec_to_input", false.into()),
        ("normalize_activations", Value::Null),
    ]);
    if let Some(raw) = &raw_cfg {
        cfg.insert(
            "hf_hook_name".into(),
            raw.get("hf_hook_point_in").cloned().unwrap_or(Value::Null),
        );
    }
    if let Some(out) = hook_name_out {
        cfg.insert("hook_name_out".into(), out.into());
        cfg.insert("d_out".into(), d_out.into());
        if let Some(raw) = &raw_cfg {
            cfg.insert(
                "hf_hook_name_out".into(),
                raw.get("hf_hook_point_out").cloned().unwrap_or(Value::Null),
            );
        }
    }
    ctx.apply_overrides(&mut cfg);
    Ok(RawSae {
        cfg,
        tensors,
        sparsity: None,
        cfg_path: Some(raw_cfg_path.unwrap_or_else(|| weights_path.clone())),
        weights_path,
    })
}
