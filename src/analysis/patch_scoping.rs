//! Patch scoping (ARENA's `generate_patch_scoping_explanation`): ask the model what an SAE
//! latent means by writing the latent's (normalised, scaled) decoder direction into the residual
//! stream at placeholder tokens of a prompt such as `What is the meaning of the word "X"?`, then
//! letting it generate an explanation.
use super::steering::{decoder_row, fit_to};
use crate::error::{Error, Result};
use crate::hooks::Hooks;
use crate::model::{GenerateOptions, Generation, HookedModel, Prompt};
use crate::sae::Sae;
use candle_core::{IndexOp, Tensor};

/// Where and how strongly the latent is patched in.
#[derive(Clone, Debug)]
pub struct PatchScopingOptions {
    /// The residual stream `blocks.{replacement_layer}.hook_resid_pre` is replaced (ARENA: 2).
    pub replacement_layer: usize,
    /// `v = scale · W_dec[i] / ‖W_dec[i]‖`.
    pub scale: f64,
    /// The placeholder token whose positions are replaced: a vocabulary entry (e.g.
    /// `"<unk>"`, `"<|endoftext|>"`) or any string that encodes to exactly one token.
    pub placeholder: String,
}

impl Default for PatchScopingOptions {
    fn default() -> Self {
        PatchScopingOptions {
            replacement_layer: 2,
            scale: 1.0,
            placeholder: "<unk>".into(),
        }
    }
}

/// `scale · Ŵ_dec[latent_idx]` (the unit-norm decoder row times `scale`), `[d_out]` f32.
pub fn patch_scoping_vector(sae: &Sae, latent_idx: usize, scale: f64) -> Result<Tensor> {
    let row = decoder_row(sae, latent_idx)?;
    let norm = row.sqr()?.sum_all()?.sqrt()?.to_scalar::<f32>()?;
    if norm == 0.0 || !norm.is_finite() {
        return Err(Error::Invalid(format!(
            "decoder row {latent_idx} has norm {norm}; it cannot be normalised"
        )));
    }
    Ok((row * (scale / norm as f64))?)
}

/// The id of `placeholder`: a vocabulary entry, or a string that encodes to one token.
fn placeholder_id(model: &HookedModel, placeholder: &str) -> Result<u32> {
    let tok = model.tokenizer()?;
    if let Some(id) = tok.token_to_id(placeholder) {
        return Ok(id);
    }
    tok.to_single_token(placeholder).map_err(|_| {
        Error::Tokenizer(format!(
            "patch-scoping placeholder {placeholder:?} is neither a vocabulary entry nor a single token; pick a token of this tokenizer (e.g. \"<|endoftext|>\")"
        ))
    })
}

/// ARENA's `generate_patch_scoping_explanation`: generate from `prompt` while, at every
/// position holding the placeholder token, `blocks.{replacement_layer}.hook_resid_pre` is
/// replaced by `v = scale · Ŵ_dec[latent_idx]`.
///
/// The replacement happens on the forward passes that cover the prompt (ARENA's hook acts only
/// when `acts.shape[1] > 1`): the first pass with the KV cache, whose keys and values carry it
/// to later steps, or every pass without the cache. The SAE must write the residual stream
/// (`d_out = d_model`); its own layer does not matter.
pub fn generate_patch_scoping_explanation(
    model: &HookedModel,
    sae: &Sae,
    prompt: impl Into<Prompt>,
    latent_idx: usize,
    opts: &PatchScopingOptions,
    gen: &GenerateOptions,
) -> Result<Generation> {
    let n_layers = model.cfg().n_layers;
    if opts.replacement_layer >= n_layers {
        return Err(Error::Invalid(format!(
            "replacement_layer {} is out of range: the model has {n_layers} layers",
            opts.replacement_layer
        )));
    }
    let d_model = model.cfg().d_model;
    if sae.d_out() != d_model {
        return Err(Error::Invalid(format!(
            "patch scoping writes the residual stream (d_model = {d_model}), but the SAE at `{}` has width {}",
            sae.hook_name_out(),
            sae.d_out()
        )));
    }
    let v = patch_scoping_vector(sae, latent_idx, opts.scale)?;
    let tokens = model.prompt_tokens(prompt.into(), gen.prepend_bos)?;
    let id = placeholder_id(model, &opts.placeholder)?;
    let (_, p) = tokens.dims2()?;
    let row: Vec<u32> = tokens.i(0)?.to_vec1()?;
    let positions: Vec<usize> = (0..p).filter(|&i| row[i] == id).collect();
    if positions.is_empty() {
        return Err(Error::Invalid(format!(
            "the prompt has no placeholder token {:?} (id {id}) to patch",
            opts.placeholder
        )));
    }
    let hook = format!("blocks.{}.hook_resid_pre", opts.replacement_layer);
    let mut hooks = Hooks::new();
    // The hook fires once per forward pass; with the cache only the first pass holds the prompt.
    let (cached, mut first) = (gen.use_past_kv_cache, true);
    hooks.add(hook.as_str(), move |acts: &Tensor, name: &str| {
        let q = acts.dim(1)?;
        let prompt_pass = !cached || first;
        first = false;
        if !prompt_pass || q < p {
            return Ok(None);
        }
        let v = fit_to(&v, acts, name)?.broadcast_as(acts.shape())?;
        let mask: Vec<u8> = (0..q).map(|i| u8::from(positions.contains(&i))).collect();
        let mask = Tensor::from_vec(mask, (1, q, 1), acts.device())?.broadcast_as(acts.shape())?;
        Ok(Some(mask.where_cond(&v, acts)?))
    });
    model.run(tokens).hooks(hooks).generate(gen)
}
