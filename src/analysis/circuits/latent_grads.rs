//! ARENA [1.4.2] §1's latent gradients: the Jacobian between the active latents of an earlier
//! SAE and those of a later one (`latent_to_latent_gradients`), between the input tokens'
//! embeddings and an SAE's latents (`token_to_latent_gradients`), and between an SAE's latents
//! and the top logits (`latent_to_logit_gradients`). Only non-zero latents are inputs and
//! outputs, as with ARENA's `SparseTensor`s.
//!
//! The later activations are computed from the earlier SAE's *reconstruction* (no error term),
//! by running the model from the block of the earlier hook to the block of the later one
//! (`start_at_layer` / `stop_at_layer`) with the reconstruction patched in at the earlier hook.
//! This is ARENA's `model.forward(sae_from.decode(..), start_at_layer, stop_at_layer)` for
//! residual-stream SAEs and its `hook_z` patching for attention SAEs, in one path that works for
//! any pair of hook points (resid, `hook_z`, transcoders: the earlier SAE writes at its output
//! hook, the later one reads at its input hook).
use super::jacobian::jacobian;
use super::result::{id_strings, latent_labels, pos_label, str_tokens, LatentGradients};
use super::sparse::SparseActs;
use crate::error::{Error, Result};
use crate::hooks::HookName;
use crate::model::{HookedModel, Prompt};
use crate::sae::{Sae, SaeHook};
use candle_core::{DType, IndexOp, Tensor};
use std::cell::RefCell;

/// Output rows differentiated per backward pass by default (the batch of copies).
pub const DEFAULT_GRADIENT_BATCH: usize = 32;

/// Options of the latent-gradient functions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GradientOptions {
    /// Output rows per backward pass: the input is repeated this many times along a batch
    /// dimension, each copy seeding a different output (default [`DEFAULT_GRADIENT_BATCH`]).
    pub batch_size: usize,
}

impl Default for GradientOptions {
    fn default() -> Self {
        GradientOptions {
            batch_size: DEFAULT_GRADIENT_BATCH,
        }
    }
}

/// ARENA's `latent_to_latent_gradients`: the Jacobian of `sae_to`'s active latents (computed
/// from `sae_from`'s reconstruction) with respect to `sae_from`'s active latents, on `prompt`
/// (text, texts or tokens). `sae_from` must write at a hook point before the one `sae_to` reads.
pub fn latent_to_latent_gradients(
    model: &HookedModel,
    prompt: impl Into<Prompt>,
    sae_from: &Sae,
    sae_to: &Sae,
) -> Result<LatentGradients> {
    latent_to_latent_gradients_with(model, prompt, sae_from, sae_to, &GradientOptions::default())
}

/// ARENA's `latent_to_latent_gradients_attn` (two `hook_z` SAEs): the same computation as
/// [`latent_to_latent_gradients`], which patches any hook point.
pub fn latent_to_latent_gradients_attn(
    model: &HookedModel,
    prompt: impl Into<Prompt>,
    sae_from: &Sae,
    sae_to: &Sae,
) -> Result<LatentGradients> {
    for s in [sae_from, sae_to] {
        if !HookName::parse(s.hook_name()).site.ends_with("attn.hook_z") {
            return Err(Error::Invalid(format!(
                "latent_to_latent_gradients_attn takes two attention (hook_z) SAEs, got one on \
                 `{}`; use latent_to_latent_gradients for other hook points",
                s.hook_name()
            )));
        }
    }
    latent_to_latent_gradients(model, prompt, sae_from, sae_to)
}

/// [`latent_to_latent_gradients`] with options.
pub fn latent_to_latent_gradients_with(
    model: &HookedModel,
    prompt: impl Into<Prompt>,
    sae_from: &Sae,
    sae_to: &Sae,
    opts: &GradientOptions,
) -> Result<LatentGradients> {
    let tokens = model.run(prompt).tokens()?;
    let from = Site::writer(model, sae_from)?;
    let to = Site::reader(model, sae_to)?;
    if from.order >= to.order {
        return Err(Error::Invalid(format!(
            "latent_to_latent_gradients: sae_from writes at `{}`, which does not come before \
             `{}`, where sae_to reads; swap the SAEs",
            from.hook, to.hook
        )));
    }
    let from_acts = sae_from.hook_point(SaeHook::ActsPost);
    let to_acts = sae_to.hook_point(SaeHook::ActsPost);
    let (_, cache) = model
        .run(&tokens)
        .saes(&[sae_from, sae_to])
        .error_term()
        .names([from_acts.as_str(), to_acts.as_str()])
        .stop_at_layer(to.layer + 1)
        .cache()?;
    let inputs = SparseActs::from_dense(&cache.get(&from_acts)?)?;
    let clean_outputs = SparseActs::from_dense(&cache.get(&to_acts)?)?;
    let resid = model.run(&tokens).stop_at_layer(from.layer).logits()?;
    let dense_out = |v: &Tensor| -> Result<Tensor> {
        let recon = decode_sparse(sae_from, &inputs, v)?;
        let c = v.dim(0)?;
        let acts = patch_and_read(model, &resid.repeat((c, 1, 1))?, &from, &to, &recon)?;
        Ok(sae_to.encode(&acts)?.reshape((c, ()))?)
    };
    let x0 = inputs.values_tensor(model.device())?;
    let out_shape = clean_outputs.shape.clone();
    let (jac, outputs) = sparse_jacobian(
        &x0,
        &out_shape,
        opts,
        held(model, &[sae_from, sae_to], &resid),
        dense_out,
    )?;
    let str_toks = str_tokens(model, &tokens)?;
    Ok(LatentGradients {
        input_labels: latent_labels(&inputs, from.layer, &str_toks),
        output_labels: latent_labels(&outputs, to.layer, &str_toks),
        title: format!(
            "Gradients between SAE latents at {} and at {}",
            from.hook, to.hook
        ),
        gradients: jac.values,
        inputs,
        outputs,
        clean_outputs,
        outputs_per_sec: jac.outputs_per_sec,
        inputs_as_rows: true,
    })
}

/// ARENA's `token_to_latent_gradients`: the Jacobian of `sae`'s active latents with respect to
/// a scale on each position's embedding (the residual stream entering block 0), at scale 1.
pub fn token_to_latent_gradients(
    model: &HookedModel,
    prompt: impl Into<Prompt>,
    sae: &Sae,
) -> Result<LatentGradients> {
    token_to_latent_gradients_with(model, prompt, sae, &GradientOptions::default())
}

/// [`token_to_latent_gradients`] with options.
pub fn token_to_latent_gradients_with(
    model: &HookedModel,
    prompt: impl Into<Prompt>,
    sae: &Sae,
    opts: &GradientOptions,
) -> Result<LatentGradients> {
    let tokens = model.run(prompt).tokens()?;
    let (b, p) = tokens.dims2()?;
    let to = Site::reader(model, sae)?;
    let embed = Site {
        hook: "blocks.0.hook_resid_pre".into(),
        layer: 0,
        order: 0,
    };
    let resid = model.run(&tokens).stop_at_layer(0).logits()?;
    let dense_out = |s: &Tensor| -> Result<Tensor> {
        let c = s.dim(0)?;
        let r = resid.repeat((c, 1, 1))?;
        let scaled = r.broadcast_mul(&s.reshape((c * b, p, 1))?)?;
        let acts = patch_and_read(model, &r, &embed, &to, &scaled)?;
        Ok(sae.encode(&acts)?.reshape((c, ()))?)
    };
    let x0 = Tensor::ones(b * p, DType::F32, model.device())?;
    let clean = dense_out(&x0.unsqueeze(0)?)?.reshape((b, p, sae.d_sae()))?;
    let clean_outputs = SparseActs::from_dense(&clean)?;
    let (jac, outputs) = sparse_jacobian(
        &x0,
        &clean_outputs.shape,
        opts,
        held(model, &[sae], &resid),
        dense_out,
    )?;
    let str_toks = str_tokens(model, &tokens)?;
    let inputs = SparseActs {
        values: vec![1.0; b * p],
        indices: (0..b)
            .flat_map(|r| (0..p).map(move |q| vec![r, q]))
            .collect(),
        shape: vec![b, p],
    };
    Ok(LatentGradients {
        input_labels: inputs
            .indices
            .iter()
            .map(|ix| pos_label(ix[0], ix[1], &str_toks))
            .collect(),
        output_labels: latent_labels(&outputs, to.layer, &str_toks),
        title: format!(
            "Gradients between input tokens and SAE latents at {}",
            to.hook
        ),
        gradients: jac.values,
        inputs,
        outputs,
        clean_outputs,
        outputs_per_sec: jac.outputs_per_sec,
        inputs_as_rows: true,
    })
}

/// ARENA's `latent_to_logit_gradients`: the Jacobian of the last position's `k` top logits
/// (of the clean model) with respect to `sae`'s active latents, the logits computed from the
/// SAE's reconstruction. One prompt (a batch of one), as in ARENA.
pub fn latent_to_logit_gradients(
    model: &HookedModel,
    prompt: impl Into<Prompt>,
    sae: &Sae,
    k: usize,
) -> Result<LatentGradients> {
    latent_to_logit_gradients_with(model, prompt, sae, k, &GradientOptions::default())
}

/// [`latent_to_logit_gradients`] with options.
pub fn latent_to_logit_gradients_with(
    model: &HookedModel,
    prompt: impl Into<Prompt>,
    sae: &Sae,
    k: usize,
    opts: &GradientOptions,
) -> Result<LatentGradients> {
    let tokens = model.run(prompt).tokens()?;
    if tokens.dim(0)? != 1 {
        return Err(Error::Invalid(format!(
            "latent_to_logit_gradients takes one prompt (as ARENA's), got {} rows",
            tokens.dim(0)?
        )));
    }
    let from = Site::writer(model, sae)?;
    let acts_name = sae.hook_point(SaeHook::ActsPost);
    let (logits, cache) = model
        .run(&tokens)
        .sae(sae)
        .error_term()
        .names(acts_name.as_str())
        .cache()?;
    let p = tokens.dim(1)?;
    let last = logits.i((0, p - 1))?.to_dtype(DType::F32)?;
    let top = model.top_k(&logits, p - 1, k)?;
    let ids: Vec<u32> = top.iter().map(|(t, _)| *t).collect();
    let inputs = SparseActs::from_dense(&cache.get(&acts_name)?)?;
    let resid = model.run(&tokens).stop_at_layer(from.layer).logits()?;
    let ids_t = Tensor::new(ids.as_slice(), model.device())?;
    let w_u = model.w_u().index_select(&ids_t, 1)?;
    let b_u = model.b_u()?.index_select(&ids_t, 0)?;
    let n = model.cfg().n_layers;
    let end = Site {
        hook: format!("blocks.{}.hook_resid_post", n - 1),
        layer: n - 1,
        order: usize::MAX,
    };
    let logits_of = |v: &Tensor| -> Result<Tensor> {
        let recon = decode_sparse(sae, &inputs, v)?;
        let c = v.dim(0)?;
        let fin = patch_and_read(model, &resid.repeat((c, 1, 1))?, &from, &end, &recon)?;
        let x = model.apply_ln_final(&fin.i((.., p - 1))?.contiguous()?)?;
        Ok(x.matmul(&w_u)?.broadcast_add(&b_u)?)
    };
    let x0 = inputs.values_tensor(model.device())?;
    let jac = jacobian(&x0, opts.batch_size, held(model, &[sae], &resid), logits_of)?;
    let str_toks = str_tokens(model, &tokens)?;
    let tok_strs = id_strings(model, &ids)?;
    let d_vocab = last.dim(0)?;
    let logit_acts = |vals: Vec<f32>| SparseActs {
        values: vals,
        indices: ids.iter().map(|&t| vec![t as usize]).collect(),
        shape: vec![d_vocab],
    };
    Ok(LatentGradients {
        input_labels: latent_labels(&inputs, from.layer, &str_toks),
        output_labels: ids
            .iter()
            .zip(&tok_strs)
            .map(|(t, s)| format!("'{s}' ({t})"))
            .collect(),
        title: format!(
            "Gradients between SAE latents at {} and the top {k} logits",
            from.hook
        ),
        gradients: jac.values,
        outputs: logit_acts(jac.outputs.to_vec1()?),
        clean_outputs: logit_acts(top.iter().map(|(_, l)| *l).collect()),
        inputs,
        outputs_per_sec: jac.outputs_per_sec,
        inputs_as_rows: false,
    })
}

/// A hook point an SAE writes at or reads from, its block, and its place in the forward order.
struct Site {
    hook: String,
    layer: usize,
    order: usize,
}

impl Site {
    /// Where `sae` writes its reconstruction (its output hook).
    fn writer(model: &HookedModel, sae: &Sae) -> Result<Site> {
        Site::at(model, sae.hook_name_out())
    }
    /// Where `sae` reads its input.
    fn reader(model: &HookedModel, sae: &Sae) -> Result<Site> {
        Site::at(model, sae.hook_name())
    }
    fn at(model: &HookedModel, hook: &str) -> Result<Site> {
        let order = model
            .hook_names()
            .iter()
            .position(|h| h == hook)
            .ok_or_else(|| Error::UnknownHook {
                name: hook.to_string(),
                suggestions: crate::hooks::nearest_names(
                    hook,
                    model.hook_names().iter().map(|s| s.as_str()),
                    5,
                ),
            })?;
        let layer = HookName::parse(hook).layer.ok_or_else(|| {
            Error::Invalid(format!(
                "latent gradients need SAEs inside the blocks (`blocks.L.…`), got one on `{hook}`"
            ))
        })?;
        Ok(Site {
            hook: hook.to_string(),
            layer,
            order,
        })
    }
}

/// `sae`'s reconstruction from the values `v [c, nnz]` placed at `at`'s indices (the rest
/// zero): `[c·batch, pos, ..]` (flattened `hook_z` heads).
fn decode_sparse(sae: &Sae, at: &SparseActs, v: &Tensor) -> Result<Tensor> {
    let c = v.dim(0)?;
    let total: usize = at.shape.iter().product();
    let idx: Vec<u32> = at.flat_indices().iter().map(|&i| i as u32).collect();
    let idx = Tensor::new(idx.as_slice(), v.device())?;
    let dense = Tensor::zeros((c, total), DType::F32, v.device())?.index_add(&idx, v, 1)?;
    let mut shape = at.shape.clone();
    shape[0] *= c;
    sae.decode(&dense.reshape(shape)?.to_dtype(sae.dtype())?)
}

/// Run the blocks from `from.layer` on `resid` with `replacement` patched in at `from.hook`,
/// and return the activation at `to.hook` (its block is the last one run). With `to.order ==
/// usize::MAX`, returns the residual stream after the last block.
fn patch_and_read(
    model: &HookedModel,
    resid: &Tensor,
    from: &Site,
    to: &Site,
    replacement: &Tensor,
) -> Result<Tensor> {
    let seen: RefCell<Option<Tensor>> = RefCell::new(None);
    let run = model
        .run(resid)
        .start_at_layer(from.layer)
        .stop_at_layer(to.layer + 1)
        .hook(from.hook.as_str(), |x: &Tensor, _: &str| {
            Ok(Some(replacement.reshape(x.shape())?.to_dtype(x.dtype())?))
        });
    let out = if to.order == usize::MAX {
        run.logits()?
    } else {
        let out = run
            .hook(to.hook.as_str(), |x: &Tensor, _: &str| {
                *seen.borrow_mut() = Some(x.clone());
                Ok(None)
            })
            .logits()?;
        drop(out);
        seen.into_inner()
            .ok_or_else(|| Error::Invalid(format!("internal: hook `{}` did not fire", to.hook)))?
    };
    Ok(out)
}

/// The Jacobian of the non-zero entries of `dense_out` (a function returning `[c, Π shape]`)
/// at `x0`, and those entries as [`SparseActs`] of `shape`.
fn sparse_jacobian(
    x0: &Tensor,
    shape: &[usize],
    opts: &GradientOptions,
    held: Vec<&Tensor>,
    dense_out: impl Fn(&Tensor) -> Result<Tensor>,
) -> Result<(super::jacobian::Jacobian, SparseActs)> {
    let at_x0 = dense_out(&x0.unsqueeze(0)?)?.reshape(shape)?;
    let outputs = SparseActs::from_dense(&at_x0)?;
    let idx: Vec<u32> = outputs.flat_indices().iter().map(|&i| i as u32).collect();
    let idx = Tensor::new(idx.as_slice(), x0.device())?;
    let jac = jacobian(x0, opts.batch_size, held, |v| {
        Ok(dense_out(v)?.index_select(&idx, 1)?)
    })?;
    Ok((jac, outputs))
}

/// The tensors a gradient pass reads that were made outside it.
fn held<'a>(model: &'a HookedModel, saes: &[&'a Sae], extra: &'a Tensor) -> Vec<&'a Tensor> {
    let mut v = model.tensors();
    for s in saes {
        v.extend(s.tensors().into_iter().map(|(_, t)| t));
    }
    v.push(extra);
    v
}
