//! Gemma Scope (`gemma_2`) and Gemma Scope transcoders (`gemma_2_transcoder`): `params.npz`
//! with `w_enc, w_dec, b_enc, b_dec, threshold`.
//!
//! The config is derived from the repo id and folder name as SAELens does: width from
//! `width_16k…1m`, layer from `layer_(\d+)`, model and `d_in` from the repo id (`2b`, `9b`,
//! `27b`, `-it`), hook from `res` / `mlp` / `att` (`blocks.L.attn.hook_z`, `d_in` = heads ·
//! d_head) or `embedding` (`hook_embed`; `W_enc /= √d_in`, `W_dec *= √d_in`, since TL's Gemma
//! embedding includes `×√d_model`). Transcoders read `blocks.L.ln2.hook_normalized` and write
//! `blocks.L.hook_mlp_out`. The tensor shapes give the final `d_in` / `d_sae` (SAELens takes
//! them from its tables; they agree on the real releases).
use super::files::{read_npz, TensorMap};
use super::{find_number_after, obj, LoadCtx, RawSae};
use crate::error::{Error, Result};
use serde_json::{Map, Value};

const PARAMS: &str = "params.npz";

const WIDTHS: [(&str, usize); 8] = [
    ("width_4k", 4096),
    ("width_16k", 16384),
    ("width_32k", 32768),
    ("width_65k", 65536),
    ("width_131k", 131072),
    ("width_262k", 262144),
    ("width_524k", 524288),
    ("width_1m", 1048576),
];

/// (key in repo id, model name, d_model), in SAELens's matching order.
const MODELS: [(&str, &str, usize); 6] = [
    ("2b-it", "gemma-2-2b-it", 2304),
    ("9b-it", "gemma-2-9b-it", 3584),
    ("27b-it", "gemma-2-27b-it", 4608),
    ("2b", "gemma-2-2b", 2304),
    ("9b", "gemma-2-9b", 3584),
    ("27b", "gemma-2-27b", 4608),
];

fn model_info(repo_id: &str) -> Option<(&'static str, &'static str, usize)> {
    MODELS.iter().copied().find(|(k, _, _)| repo_id.contains(k))
}

fn width(s: &str) -> Option<usize> {
    WIDTHS.iter().find(|(k, _)| s.contains(k)).map(|(_, w)| *w)
}

/// Rename `w_enc → W_enc` etc.
fn rename(m: TensorMap) -> TensorMap {
    m.into_iter()
        .map(|(k, v)| {
            let k = match k.strip_prefix("w_") {
                Some(rest) => format!("W_{rest}"),
                None => k,
            };
            (k, v)
        })
        .collect()
}

fn unknown_model(ctx: &LoadCtx) -> Error {
    Error::SaeConfig(format!(
        "cannot tell the Gemma 2 model from the repo id `{}` (expected it to contain 2b, 9b or \
         27b, e.g. google/gemma-scope-2b-pt-res); for a local folder pass \
         SaeLoadOptions::repo_id",
        ctx.repo_id
    ))
}

pub(crate) fn config(ctx: &LoadCtx) -> Result<Map<String, Value>> {
    let folder = ctx.hint;
    let repo = ctx.repo_id;
    let d_sae = width(folder);
    let layer = match find_number_after(folder, "layer_") {
        Some(l) => l,
        None if folder.contains("embedding") => 0,
        None => {
            return Err(Error::SaeConfig(format!(
                "Gemma Scope: no `layer_N` in the folder name `{folder}`"
            )))
        }
    };
    let (model_key, model_name, mut d_in) = model_info(repo).ok_or_else(|| unknown_model(ctx))?;
    let hook_name = if repo.contains("res") && !folder.contains("embedding") {
        format!("blocks.{layer}.hook_resid_post")
    } else if repo.contains("res") && folder.contains("embedding") {
        "hook_embed".to_string()
    } else if repo.contains("mlp") {
        format!("blocks.{layer}.hook_mlp_out")
    } else if repo.contains("att") {
        d_in = match model_key {
            k if k.starts_with("2b") => 2048,
            k if k.starts_with("9b") => 4096,
            _ => 4608,
        };
        format!("blocks.{layer}.attn.hook_z")
    } else {
        return Err(Error::SaeConfig(format!(
            "Gemma Scope: cannot tell the hook from the repo id `{repo}` (expected `res`, `mlp` \
             or `att` in it)"
        )));
    };
    let mut cfg = obj(vec![
        ("architecture", "jumprelu".into()),
        ("d_in", d_in.into()),
        ("d_sae", d_sae.map(Value::from).unwrap_or(Value::Null)),
        ("dtype", "float32".into()),
        ("model_name", model_name.into()),
        ("hook_name", hook_name.into()),
        ("hook_head_index", Value::Null),
        ("activation_fn", "relu".into()),
        ("finetuning_scaling_factor", false.into()),
        ("sae_lens_training_version", Value::Null),
        ("prepend_bos", true.into()),
        ("dataset_path", "monology/pile-uncopyrighted".into()),
        ("context_size", 1024.into()),
        ("dataset_trust_remote_code", true.into()),
        ("apply_b_dec_to_input", false.into()),
        ("normalize_activations", Value::Null),
    ]);
    ctx.apply_overrides(&mut cfg);
    Ok(cfg)
}

pub(crate) fn load(ctx: &LoadCtx) -> Result<RawSae> {
    let weights_path = ctx.src.require(&ctx.file(PARAMS))?;
    let mut tensors = rename(read_npz(&weights_path)?);
    let mut cfg = config(ctx)?;
    if ctx.hint.contains("embedding") {
        // SAELens scales by the config's d_in (its table), not the tensor shape.
        let s = cfg
            .get("d_in")
            .and_then(|v| v.as_f64())
            .unwrap_or(1.0)
            .sqrt();
        if let Some(w) = tensors.remove("W_enc") {
            tensors.insert("W_enc".into(), (w.to_dtype(candle_core::DType::F64)? / s)?);
        }
        if let Some(w) = tensors.remove("W_dec") {
            tensors.insert("W_dec".into(), (w.to_dtype(candle_core::DType::F64)? * s)?);
        }
    }
    shapes_into_cfg(&mut cfg, &tensors);
    Ok(RawSae {
        cfg,
        tensors,
        sparsity: None,
        cfg_path: Some(weights_path.clone()),
        weights_path,
    })
}

/// `d_in` / `d_sae` (/ `d_out`) from `W_enc` / `W_dec`, which is what actually runs.
pub(crate) fn shapes_into_cfg(cfg: &mut Map<String, Value>, tensors: &TensorMap) {
    if let Some((a, b)) = tensors.get("W_enc").and_then(|t| t.dims2().ok()) {
        cfg.insert("d_in".into(), a.into());
        cfg.insert("d_sae".into(), b.into());
    }
    if cfg.contains_key("d_out") {
        if let Some((_, o)) = tensors.get("W_dec").and_then(|t| t.dims2().ok()) {
            cfg.insert("d_out".into(), o.into());
        }
    }
}

pub(crate) fn load_transcoder(ctx: &LoadCtx) -> Result<RawSae> {
    let folder = ctx.hint;
    let layer = find_number_after(folder, "layer_")
        .or_else(|| find_number_after(ctx.repo_id, "layer_"))
        .ok_or_else(|| {
            Error::SaeConfig(format!(
                "Gemma Scope transcoder: could not extract the layer index from `{folder}`"
            ))
        })?;
    let d_sae = width(folder).or_else(|| find_number_after(folder, "width_").map(|k| k * 1024));
    let (_, model_name, d_model) = model_info(ctx.repo_id).ok_or_else(|| unknown_model(ctx))?;
    let weights_path = ctx.src.require(&ctx.file(PARAMS))?;
    let raw = read_npz(&weights_path)?;
    let mut tensors = TensorMap::new();
    for (k, v) in raw {
        let name = match k.to_ascii_lowercase().as_str() {
            "w_enc" | "wenc" | "w_e" => "W_enc",
            "w_dec" | "wdec" | "w_d" => "W_dec",
            "b_enc" | "benc" | "b_e" => "b_enc",
            "b_dec" | "bdec" | "b_d" => "b_dec",
            "threshold" => "threshold",
            _ => continue,
        };
        tensors.insert(name.to_string(), v);
    }
    let mut cfg = obj(vec![
        ("architecture", "jumprelu_transcoder".into()),
        ("d_in", d_model.into()),
        ("d_out", d_model.into()),
        ("d_sae", d_sae.map(Value::from).unwrap_or(Value::Null)),
        ("dtype", "float32".into()),
        ("device", "cpu".into()),
        ("activation_fn", "relu".into()),
        ("normalize_activations", "none".into()),
        ("model_name", model_name.into()),
        (
            "hook_name",
            format!("blocks.{layer}.ln2.hook_normalized").into(),
        ),
        (
            "hook_name_out",
            format!("blocks.{layer}.hook_mlp_out").into(),
        ),
        ("hook_head_index", Value::Null),
        ("hook_head_index_out", Value::Null),
        ("prepend_bos", true.into()),
        ("dataset_path", "monology/pile-uncopyrighted".into()),
        ("context_size", 1024.into()),
        ("apply_b_dec_to_input", false.into()),
    ]);
    ctx.apply_overrides(&mut cfg);
    shapes_into_cfg(&mut cfg, &tensors);
    Ok(RawSae {
        cfg,
        tensors,
        sparsity: None,
        cfg_path: Some(weights_path.clone()),
        weights_path,
    })
}
