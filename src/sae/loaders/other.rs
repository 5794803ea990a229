//! Smaller SAELens conversions: `connor_rob_hook_z`, `llama_scope`, `llama_scope_r1_distill`,
//! `deepseek_r1`, `goodfire` (ports of the matching `*_huggingface_loader`s).
use super::files::{read_pt, read_safetensors, t2, take, TensorMap};
use super::{field, field_usize, find_number_after, obj, read_json_object, LoadCtx, RawSae};
use crate::error::{Error, Result};
use candle_core::{Device, Tensor};
use serde_json::Value;

/// `<file>.pt` (keys already `W_enc, W_dec, b_enc, b_dec`) + `<file>_cfg.json` (`act_size`,
/// `dict_size`, `act_name`): standard hook_z SAEs on gpt2-small.
pub(crate) fn load_connor_rob_hook_z(ctx: &LoadCtx) -> Result<RawSae> {
    let folder = ctx.folder.trim_matches('/');
    let stem = folder.split(".pt").next().unwrap_or(folder);
    let cfg_path = ctx.src.require(&format!("{stem}_cfg.json"))?;
    let old = read_json_object(&cfg_path)?;
    let mut cfg = obj(vec![
        ("architecture", "standard".into()),
        ("d_in", field(&old, "act_size", &cfg_path)?.clone()),
        ("d_sae", field(&old, "dict_size", &cfg_path)?.clone()),
        ("dtype", "float32".into()),
        ("device", "cpu".into()),
        ("model_name", "gpt2-small".into()),
        ("hook_name", field(&old, "act_name", &cfg_path)?.clone()),
        ("hook_head_index", Value::Null),
        ("activation_fn", "relu".into()),
        ("apply_b_dec_to_input", true.into()),
        ("finetuning_scaling_factor", false.into()),
        ("sae_lens_training_version", Value::Null),
        ("prepend_bos", true.into()),
        ("dataset_path", "Skylion007/openwebtext".into()),
        ("context_size", 128.into()),
        ("normalize_activations", "none".into()),
        ("dataset_trust_remote_code", true.into()),
        ("reshape_activations", "hook_z".into()),
    ]);
    ctx.apply_overrides(&mut cfg);
    let weights_path = ctx.src.require(folder)?;
    let tensors = read_pt(&weights_path, None)?;
    Ok(RawSae {
        cfg,
        tensors,
        sparsity: None,
        cfg_path: Some(cfg_path),
        weights_path,
    })
}

/// `encoder.weightᵀ, decoder.weightᵀ, encoder.bias, decoder.bias` → SAELens names.
fn linear_pair(
    raw: &mut TensorMap,
    enc: &str,
    dec: &str,
    p: &std::path::Path,
) -> Result<TensorMap> {
    let mut t = TensorMap::new();
    let we = take(raw, &format!("{enc}.weight"), p)?;
    let wd = take(raw, &format!("{dec}.weight"), p)?;
    t.insert("W_enc".into(), t2(&we, &format!("{enc}.weight"), p)?);
    t.insert("W_dec".into(), t2(&wd, &format!("{dec}.weight"), p)?);
    t.insert("b_enc".into(), take(raw, &format!("{enc}.bias"), p)?);
    t.insert("b_dec".into(), take(raw, &format!("{dec}.bias"), p)?);
    Ok(t)
}

/// Llama Scope: `<folder>/hyperparams.json` + `<folder>/checkpoints/final.safetensors`;
/// jumprelu with the constant threshold `jump_relu_threshold · √d / dataset_average_activation_norm.in`,
/// `expected_average_only_in` (the directory's `norm_scaling_factor` is folded by
/// `from_pretrained`), bfloat16.
pub(crate) fn load_llama_scope(ctx: &LoadCtx) -> Result<RawSae> {
    let hp_path = ctx.src.require(&ctx.file("hyperparams.json"))?;
    let old = read_json_object(&hp_path)?;
    let d_in = field_usize(&old, "d_model", &hp_path)?;
    let norm_in = field(&old, "dataset_average_activation_norm", &hp_path)?
        .get("in")
        .and_then(|v| v.as_f64())
        .ok_or_else(|| Error::sae_file(&hp_path, "missing dataset_average_activation_norm.in"))?;
    let thr = field(&old, "jump_relu_threshold", &hp_path)?
        .as_f64()
        .ok_or_else(|| Error::sae_file(&hp_path, "jump_relu_threshold should be a number"))?
        * (d_in as f64).sqrt()
        / norm_in;
    let mut cfg = obj(vec![
        ("architecture", "jumprelu".into()),
        ("jump_relu_threshold", thr.into()),
        ("d_in", d_in.into()),
        ("d_sae", field(&old, "d_sae", &hp_path)?.clone()),
        ("dtype", "bfloat16".into()),
        ("model_name", "meta-llama/Llama-3.1-8B".into()),
        ("hook_name", field(&old, "hook_point_in", &hp_path)?.clone()),
        ("hook_head_index", Value::Null),
        ("activation_fn", "relu".into()),
        ("finetuning_scaling_factor", false.into()),
        ("sae_lens_training_version", Value::Null),
        ("prepend_bos", true.into()),
        ("dataset_path", "cerebras/SlimPajama-627B".into()),
        ("context_size", 1024.into()),
        ("dataset_trust_remote_code", true.into()),
        ("apply_b_dec_to_input", false.into()),
        ("normalize_activations", "expected_average_only_in".into()),
    ]);
    ctx.apply_overrides(&mut cfg);
    let weights_path = ctx
        .src
        .require(&ctx.file("checkpoints/final.safetensors"))?;
    let mut raw = read_safetensors(&weights_path, &Device::Cpu)?;
    let mut tensors = linear_pair(&mut raw, "encoder", "decoder", &weights_path)?;
    let d_sae = tensors["W_enc"].dims()[1];
    let dt = tensors["W_enc"].dtype();
    tensors.insert(
        "threshold".into(),
        Tensor::full(thr, d_sae, &Device::Cpu)?.to_dtype(dt)?,
    );
    Ok(RawSae {
        cfg,
        tensors,
        sparsity: None,
        cfg_path: Some(hp_path),
        weights_path,
    })
}

/// Llama Scope R1 distill: `<folder>/config.json` + `<folder>/sae_weights.safetensors`;
/// `threshold = exp(log_jumprelu_threshold)`.
pub(crate) fn load_llama_scope_r1_distill(ctx: &LoadCtx) -> Result<RawSae> {
    let cfg_path = ctx.src.require(&ctx.file("config.json"))?;
    let old = read_json_object(&cfg_path)?;
    let d_in = field_usize(&old, "d_model", &cfg_path)?;
    let ef = field_usize(&old, "expansion_factor", &cfg_path)?;
    let mut cfg = obj(vec![
        ("architecture", "jumprelu".into()),
        ("d_in", d_in.into()),
        ("d_sae", (d_in * ef).into()),
        ("dtype", "float32".into()),
        ("device", "cpu".into()),
        ("model_name", "meta-llama/Llama-3.1-8B".into()),
        (
            "hook_name",
            field(&old, "hook_point_in", &cfg_path)?.clone(),
        ),
        ("hook_head_index", Value::Null),
        ("activation_fn", "relu".into()),
        ("finetuning_scaling_factor", false.into()),
        ("sae_lens_training_version", Value::Null),
        ("prepend_bos", true.into()),
        ("dataset_path", "cerebras/SlimPajama-627B".into()),
        ("context_size", 1024.into()),
        ("dataset_trust_remote_code", true.into()),
        ("apply_b_dec_to_input", false.into()),
        ("normalize_activations", "expected_average_only_in".into()),
    ]);
    ctx.apply_overrides(&mut cfg);
    let weights_path = ctx.src.require(&ctx.file("sae_weights.safetensors"))?;
    let mut raw = read_safetensors(&weights_path, &Device::Cpu)?;
    let mut tensors = linear_pair(&mut raw, "encoder", "decoder", &weights_path)?;
    let lt = take(&mut raw, "log_jumprelu_threshold", &weights_path)?;
    tensors.insert("threshold".into(), lt.exp()?);
    Ok(RawSae {
        cfg,
        tensors,
        sparsity: None,
        cfg_path: Some(cfg_path),
        weights_path,
    })
}

/// DeepSeek R1 distill SAEs: a `.pt` file named `...l<layer>...`; standard, bfloat16, no
/// `b_dec` subtraction.
pub(crate) fn load_deepseek_r1(ctx: &LoadCtx) -> Result<RawSae> {
    let folder = ctx.folder.trim_matches('/');
    let layer = find_number_after(ctx.hint, "l").ok_or_else(|| {
        Error::SaeConfig(format!(
            "Could not find layer number in filename: {}",
            ctx.hint
        ))
    })?;
    let mut cfg = obj(vec![
        ("architecture", "standard".into()),
        ("d_in", 4096.into()),
        ("d_sae", (4096 * 16).into()),
        ("dtype", "bfloat16".into()),
        ("context_size", 1024.into()),
        (
            "model_name",
            "deepseek-ai/DeepSeek-R1-Distill-Llama-8B".into(),
        ),
        (
            "hook_name",
            format!("blocks.{layer}.hook_resid_post").into(),
        ),
        ("hook_head_index", Value::Null),
        ("prepend_bos", true.into()),
        ("dataset_path", "lmsys/lmsys-chat-1m".into()),
        ("dataset_trust_remote_code", true.into()),
        ("sae_lens_training_version", Value::Null),
        ("activation_fn", "relu".into()),
        ("normalize_activations", "none".into()),
        ("device", "cpu".into()),
        ("apply_b_dec_to_input", false.into()),
        ("finetuning_scaling_factor", false.into()),
    ]);
    ctx.apply_overrides(&mut cfg);
    let weights_path = ctx.src.require(folder)?;
    let mut raw = read_pt(&weights_path, None)?;
    let tensors = linear_pair(&mut raw, "encoder", "decoder", &weights_path)?;
    super::gemma_scope::shapes_into_cfg(&mut cfg, &tensors);
    Ok(RawSae {
        cfg,
        tensors,
        sparsity: None,
        cfg_path: Some(weights_path.clone()),
        weights_path,
    })
}

/// Goodfire SAEs (`encoder_linear` / `decoder_linear` in a `.pt`/`.pth`): the two known
/// releases.
pub(crate) fn load_goodfire(ctx: &LoadCtx) -> Result<RawSae> {
    let folder = ctx.folder.trim_matches('/');
    let (d_in, model, layer) = match (ctx.repo_id, folder) {
        ("Goodfire/Llama-3.3-70B-Instruct-SAE-l50", "Llama-3.3-70B-Instruct-SAE-l50.pt") => {
            (8192, "meta-llama/Llama-3.3-70B-Instruct", 50)
        }
        ("Goodfire/Llama-3.1-8B-Instruct-SAE-l19", "Llama-3.1-8B-Instruct-SAE-l19.pth") => {
            (4096, "meta-llama/Llama-3.1-8B-Instruct", 19)
        }
        (r, f) => {
            return Err(Error::SaeConfig(format!(
                "Unsupported Goodfire SAE: {r}/{f}"
            )))
        }
    };
    let mut cfg = obj(vec![
        ("architecture", "standard".into()),
        ("d_in", d_in.into()),
        ("d_sae", 65536.into()),
        ("model_name", model.into()),
        (
            "hook_name",
            format!("blocks.{layer}.hook_resid_post").into(),
        ),
        ("hook_head_index", Value::Null),
        ("dataset_path", "lmsys/lmsys-chat-1m".into()),
        ("apply_b_dec_to_input", false.into()),
        ("device", "cpu".into()),
    ]);
    ctx.apply_overrides(&mut cfg);
    let weights_path = ctx.src.require(folder)?;
    let mut raw = read_pt(&weights_path, None)?;
    let tensors = linear_pair(&mut raw, "encoder_linear", "decoder_linear", &weights_path)?;
    Ok(RawSae {
        cfg,
        tensors,
        sparsity: None,
        cfg_path: Some(weights_path.clone()),
        weights_path,
    })
}
