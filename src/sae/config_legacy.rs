//! SAELens's conversion of pre-6.0 configs (`handle_config_defaulting` /
//! `handle_pre_6_0_config`); see [`super::config`].
use super::config::*;
use crate::error::{Error, Result};
use serde_json::{Map, Value};

/// `true` when a version string is older than `6.0.0-rc.0` (PEP 440 ordering for the forms
/// SAELens writes: `5.10.3`, `6.0.0`, `6.0.0rc1`, `6.0.0-rc.0`, `6.0.0.dev1`, ...).
pub fn is_pre_6_0(version: &str) -> Result<bool> {
    let v = version.trim().trim_start_matches('v');
    let digits: String = v
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    let nums: Vec<u64> = digits
        .split('.')
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<u64>())
        .collect::<std::result::Result<_, _>>()
        .map_err(|_| Error::SaeConfig(format!("invalid sae_lens_version `{version}`")))?;
    let Some(&major) = nums.first() else {
        return Err(Error::SaeConfig(format!(
            "invalid sae_lens_version `{version}`"
        )));
    };
    if major != 6 {
        return Ok(major < 6);
    }
    if nums.iter().skip(1).any(|n| *n > 0) {
        return Ok(false);
    }
    // 6.0.0 with a pre-release tag: only dev / alpha / beta come before rc.0.
    let rest = v[digits.len()..].to_ascii_lowercase();
    let rest = rest.trim_start_matches(['-', '.', '_']);
    Ok(rest.starts_with("dev")
        || rest.starts_with('a')
        || rest.starts_with('b')
        || rest.starts_with("alpha")
        || rest.starts_with("beta"))
}

/// SAELens's `handle_pre_6_0_config`: a flat (pre-6.0 or converted-loader) config → the 6.x
/// layout (fields of the architecture + `metadata`). Keys SAELens drops are kept at the top
/// level (they end up in [`SaeConfig::extra`]).
pub fn handle_pre_6_0_config(cfg: &Map<String, Value>) -> Map<String, Value> {
    let rename = |k: &str| -> String {
        match k {
            "hook_point" => "hook_name",
            "hook_point_head_index" => "hook_head_index",
            "activation_fn_str" => "activation_fn",
            other => other,
        }
        .to_string()
    };
    let mut c: Map<String, Value> = Map::new();
    for (k, v) in cfg {
        c.insert(rename(k), v.clone());
    }
    let set_default = |c: &mut Map<String, Value>, k: &str, v: Value| {
        if !c.contains_key(k) {
            c.insert(k.to_string(), v);
        }
    };
    set_default(&mut c, "prepend_bos", Value::Bool(true));
    set_default(&mut c, "apply_b_dec_to_input", Value::Bool(true));
    set_default(&mut c, "sae_lens_training_version", Value::Null);
    set_default(&mut c, "activation_fn", Value::String("relu".into()));
    set_default(&mut c, "architecture", Value::String("standard".into()));
    set_default(&mut c, "neuronpedia_id", Value::Null);
    let hook_z = c
        .get("hook_name")
        .and_then(|v| v.as_str())
        .is_some_and(|h| h.contains("hook_z"));
    set_default(
        &mut c,
        "reshape_activations",
        Value::String(if hook_z { "hook_z" } else { "none" }.into()),
    );
    let topk_k = c
        .get("activation_fn_kwargs")
        .and_then(|kw| kw.get("k"))
        .filter(|k| !k.is_null())
        .cloned();
    if c.get("activation_fn").and_then(|v| v.as_str()) == Some("topk") {
        if let Some(k) = &topk_k {
            c.insert("architecture".into(), Value::String("topk".into()));
            c.insert("k".into(), k.clone());
        }
    }
    match c.get("normalize_activations") {
        Some(Value::Bool(b)) => {
            let s = if *b {
                "expected_average_only_in"
            } else {
                "none"
            };
            c.insert("normalize_activations".into(), Value::String(s.into()));
        }
        Some(Value::Null) | None => {
            c.insert("normalize_activations".into(), Value::String("none".into()));
        }
        _ => {}
    }
    set_default(&mut c, "device", Value::String("cpu".into()));
    if c.get("architecture").and_then(|v| v.as_str()) == Some("topk") {
        if let Some(k) = topk_k {
            c.insert("k".into(), k);
        }
    }
    // Metadata: the LLM keys present (SAELens copies them, None values included).
    let mut meta = match c.remove("metadata") {
        Some(Value::Object(m)) => m,
        _ => Map::new(),
    };
    for key in LLM_METADATA_KEYS {
        if let Some(v) = c.remove(key) {
            meta.insert(key.to_string(), v);
        }
    }
    c.insert("metadata".into(), Value::Object(meta));
    c
}

/// SAELens's `handle_config_defaulting`: run the pre-6.0 conversion unless the config says it
/// was written by SAELens >= 6.0.0-rc.0.
pub fn handle_config_defaulting(cfg: Map<String, Value>) -> Result<Map<String, Value>> {
    let version = cfg
        .get("sae_lens_version")
        .and_then(|v| v.as_str())
        .filter(|s| !s.is_empty())
        .or_else(|| {
            cfg.get("metadata")
                .and_then(|m| m.get("sae_lens_version"))
                .and_then(|v| v.as_str())
                .filter(|s| !s.is_empty())
        })
        .map(str::to_string);
    let pre6 = match &version {
        None => true,
        Some(v) => is_pre_6_0(v)?,
    };
    if pre6 {
        return Ok(handle_pre_6_0_config(&cfg));
    }
    // 6.x: metadata keys given at the top level (overrides) go into `metadata`.
    let mut cfg = cfg;
    let mut meta = match cfg.remove("metadata") {
        Some(Value::Object(m)) => m,
        Some(Value::Null) | None => Map::new(),
        Some(other) => {
            return Err(Error::SaeConfig(format!(
                "`metadata` must be an object, got {other}"
            )))
        }
    };
    for key in LLM_METADATA_KEYS {
        if let Some(v) = cfg.remove(key) {
            meta.insert(key.to_string(), v);
        }
    }
    cfg.insert("metadata".into(), Value::Object(meta));
    Ok(cfg)
}
