//! Direct logit attribution of SAE latents (ARENA §1.5): each latent's direct contribution to
//! a logit (difference) through the residual stream, `f_i · (d_i · (W_U[:, a] − W_U[:, b]))`,
//! divided by the final norm's cached scale as TL's `apply_ln_to_stack` does.
//!
//! `d_i` is what one unit of latent `i` writes into the residual stream: `W_dec[i]` (divided
//! by `‖W_dec[i]‖` for topk SAEs with `rescale_acts_by_decoder_norm`, as they decode), times
//! `W_O` for SAEs on `attn.hook_z` and `W_out` for SAEs on `mlp.hook_post`.
use super::metric::Metric;
use super::sites::resolve_pos;
use crate::error::{Error, Result};
use crate::hooks::{HookName, NamesFilter};
use crate::model::HookedModel;
use crate::sae::Sae;
use candle_core::{DType, IndexOp, Tensor, D};

/// Error unless every latent index is `< d_sae`.
pub(crate) fn check_latents(sae: &Sae, latents: &[usize]) -> Result<()> {
    match latents.iter().find(|&&l| l >= sae.d_sae()) {
        Some(bad) => Err(Error::Invalid(format!(
            "latent index {bad} is out of range: the SAE at `{}` has d_sae = {}",
            sae.hook_name_out(),
            sae.d_sae()
        ))),
        None => Ok(()),
    }
}

/// The decoder as the SAE applies it, `[d_sae, d_out]` f32: `W_dec`, with rows divided by
/// their norms for topk SAEs with `rescale_acts_by_decoder_norm` (so `f @ effective_decoder +
/// b_dec` is the decoded output before any normalisation is undone).
pub fn effective_decoder(sae: &Sae) -> Result<Tensor> {
    let w = sae.w_dec().to_dtype(DType::F32)?;
    if sae.architecture().is_topk() && sae.cfg().rescale_acts_by_decoder_norm {
        let n = w.sqr()?.sum_keepdim(D::Minus1)?.sqrt()?;
        return Ok(w.broadcast_div(&n)?);
    }
    Ok(w)
}

/// What one unit of each latent writes into the residual stream, `[d_sae, d_model]` f32
/// (see the module docs). Errors for SAEs whose output does not reach the residual stream
/// linearly (other hook points, or Gemma-2's post-norms after `hook_z` / `mlp.hook_post`).
pub fn latent_output_directions(model: &HookedModel, sae: &Sae) -> Result<Tensor> {
    let hook = sae.hook_name_out();
    let dec = effective_decoder(sae)?;
    let resid = [
        "hook_resid_pre",
        "hook_resid_mid",
        "hook_resid_post",
        "hook_attn_out",
        "hook_mlp_out",
    ];
    let layer = HookName::parse(hook).layer;
    let post_norms = model.cfg().use_normalization_before_and_after;
    let to_model = |w: Tensor| -> Result<Tensor> { Ok(dec.matmul(&w.to_dtype(DType::F32)?)?) };
    match layer {
        Some(_) if resid.iter().any(|s| hook.ends_with(&format!(".{s}"))) => Ok(dec),
        Some(l) if hook.ends_with(".attn.hook_z") && !post_norms => {
            let c = model.cfg();
            to_model(model.w_o(l)?.reshape((c.n_heads * c.d_head, c.d_model))?)
        }
        Some(l) if hook.ends_with(".mlp.hook_post") && !post_norms => to_model(model.w_out(l)?),
        _ if hook == "hook_embed" || hook == "hook_pos_embed" => Ok(dec),
        _ => Err(Error::Invalid(format!(
            "direct logit attribution needs an SAE whose output reaches the residual stream \
             linearly (hook_resid_pre/mid/post, hook_attn_out, hook_mlp_out, attn.hook_z, \
             mlp.hook_post); this SAE writes to `{hook}`"
        ))),
    }
}

/// `d_i · (W_U[:, correct] − W_U[:, incorrect])` for every latent: `[d_sae, n]` for `n` token
/// pairs (`incorrect` empty: the plain logit of `correct`; otherwise as many as `correct`).
/// For LayerNorm models the direction is centred (the final norm centres the residual). This
/// is the DLA of one unit of each latent before the final norm's scale.
pub fn latent_logit_weights(
    model: &HookedModel,
    sae: &Sae,
    correct: &[u32],
    incorrect: &[u32],
) -> Result<Tensor> {
    if correct.is_empty() || (!incorrect.is_empty() && incorrect.len() != correct.len()) {
        return Err(Error::Invalid(format!(
            "latent_logit_weights: {} correct and {} incorrect tokens; give one or more correct \
             tokens and either no incorrect token or one per correct token",
            correct.len(),
            incorrect.len()
        )));
    }
    let v = model.cfg().d_vocab;
    if let Some(bad) = correct.iter().chain(incorrect).find(|&&t| t as usize >= v) {
        return Err(Error::Invalid(format!(
            "token id {bad} is out of range for d_vocab = {v}"
        )));
    }
    if model.cfg().normalization.has_weights() {
        return Err(Error::Invalid(
            "direct logit attribution divides by the final norm's scale only (as TL's \
             apply_ln_to_stack), which needs the norm's weights folded into W_U: load the model \
             with TL's default processing (HookedModel::from_pretrained, not ..._no_processing)"
                .into(),
        ));
    }
    let cols = |ids: &[u32]| -> Result<Tensor> {
        let ids = Tensor::new(ids, model.device())?;
        Ok(model.w_u().to_dtype(DType::F32)?.index_select(&ids, 1)?)
    };
    let mut u = cols(correct)?;
    if !incorrect.is_empty() {
        u = (u - cols(incorrect)?)?;
    }
    if model.cfg().normalization.is_layer_norm() {
        u = u.broadcast_sub(&u.mean_keepdim(0)?)?;
    }
    let dirs = latent_output_directions(model, sae)?;
    if dirs.dim(1)? != u.dim(0)? {
        return Err(Error::Invalid(format!(
            "the SAE writes {} numbers per latent into a residual stream of width {}",
            dirs.dim(1)?,
            u.dim(0)?
        )));
    }
    Ok(dirs.matmul(&u)?)
}

/// Direct logit attribution of every latent at one position ([`latent_dla`]).
#[derive(Clone, Debug)]
pub struct LatentDla {
    /// The position attributed at (the requested one, or the last if `None`).
    pub pos: usize,
    /// `[batch, d_sae]`: the latents' activations at `pos`.
    pub acts: Tensor,
    /// `[batch, d_sae]`: each latent's direct contribution to the metric's logit difference.
    pub dla: Tensor,
}

impl LatentDla {
    /// The DLA averaged over the batch, `[d_sae]` values (ARENA's `.mean(0)`).
    pub fn mean(&self) -> Result<Vec<f32>> {
        Ok(self.dla.mean(0)?.to_vec1()?)
    }
    /// The `k` latents with the largest batch-mean DLA (`by`), as `(latent, value)`.
    pub fn top_k(&self, k: usize, by: TopBy) -> Result<Vec<(usize, f32)>> {
        Ok(top_k_latents(&self.mean()?, k, by))
    }
}

/// How [`top_k_latents`] ranks values.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TopBy {
    /// Largest first.
    #[default]
    Largest,
    /// Smallest (most negative) first.
    Smallest,
    /// Largest `|value|` first.
    Abs,
}

/// The `k` best `(index, value)` pairs of `values` under `by` (NaNs last; ties by index).
pub fn top_k_latents(values: &[f32], k: usize, by: TopBy) -> Vec<(usize, f32)> {
    let key = |v: f32| -> f32 {
        let v = match by {
            TopBy::Largest => v,
            TopBy::Smallest => -v,
            TopBy::Abs => v.abs(),
        };
        if v.is_nan() {
            f32::NEG_INFINITY
        } else {
            v
        }
    };
    let mut idx: Vec<usize> = (0..values.len()).collect();
    idx.sort_by(|&a, &b| key(values[b]).total_cmp(&key(values[a])).then(a.cmp(&b)));
    idx.into_iter().take(k).map(|i| (i, values[i])).collect()
}

/// Direct logit attribution of each latent of `sae` for a [`Metric::LogitDiff`] at its
/// position: `dla[b, i] = f_i(b, pos) · s(b, pos) · (d_i · u_b) / scale(b, pos)` where `u_b` is
/// the logit-difference direction of prompt `b`, `scale` the final norm's cached
/// `ln_final.hook_scale` (TL's `apply_ln_to_stack`; [`latent_dla_with`] and
/// `DlaOptions { apply_ln: false }` leave it out, as in ARENA's plain `acts ⊙ (W_dec @
/// logit_dir)`), and `s` undoes the SAE's
/// `normalize_activations` (1 for `none`). The SAE is spliced in with its error term, so the
/// scale is the clean model's. Logit soft-capping (Gemma-2) is not applied.
pub fn latent_dla(
    model: &HookedModel,
    tokens: &Tensor,
    sae: &Sae,
    metric: &Metric,
) -> Result<LatentDla> {
    latent_dla_with(model, tokens, sae, metric, &DlaOptions::default())
}

/// Options of [`latent_dla_with`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DlaOptions {
    /// Divide by the final norm's cached scale (TL's `apply_ln`; default true).
    pub apply_ln: bool,
}

impl Default for DlaOptions {
    fn default() -> Self {
        DlaOptions { apply_ln: true }
    }
}

/// [`latent_dla`] with options.
pub fn latent_dla_with(
    model: &HookedModel,
    tokens: &Tensor,
    sae: &Sae,
    metric: &Metric,
    opts: &DlaOptions,
) -> Result<LatentDla> {
    let apply_ln = opts.apply_ln;
    let Metric::LogitDiff {
        pos,
        correct,
        incorrect,
    } = metric
    else {
        return Err(Error::Invalid(format!(
            "direct logit attribution needs a Metric::LogitDiff (a linear function of one \
             position's logits), got {metric:?}"
        )));
    };
    let toks = model.check_tokens(tokens)?;
    let (b, p) = toks.dims2()?;
    let pos = resolve_pos(*pos, p)?;
    let per_row = |t: &[u32], what: &str| -> Result<Vec<u32>> {
        match t.len() {
            0 => Ok(Vec::new()),
            1 => Ok(vec![t[0]; b]),
            n if n == b => Ok(t.to_vec()),
            n => Err(Error::Invalid(format!(
                "LogitDiff: {n} {what} tokens for a batch of {b}; give one or one per row"
            ))),
        }
    };
    let w = latent_logit_weights(
        model,
        sae,
        &per_row(correct, "correct")?,
        &per_row(incorrect, "incorrect")?,
    )?; // [d_sae, b]
    let hook = sae.hook_name_out();
    let names = [
        format!("{hook}.hook_sae_acts_post"),
        format!("{hook}.hook_sae_input"),
        "ln_final.hook_scale".to_string(),
    ];
    let (_, cache) = model
        .run(&toks)
        .sae(sae)
        .error_term()
        .names(NamesFilter::names(names.iter().map(|s| s.as_str())))
        .cache()?;
    let acts = cache
        .get(names[0].as_str())?
        .i((.., pos))?
        .to_dtype(DType::F32)?; // [b, d_sae]
    let input = cache.get(names[1].as_str())?.narrow(1, pos, 1)?;
    let (_, st) = sae.encode_with_state(&input)?;
    let s = match (&st.scale, &st.std) {
        (Some(c), _) => c.recip()?,
        (None, Some(std)) => std.clone(),
        _ => Tensor::ones((b, 1), DType::F32, model.device())?,
    }
    .to_dtype(DType::F32)?
    .reshape((b, 1))?;
    let mut dla = acts.mul(&w.t()?)?.broadcast_mul(&s)?;
    if apply_ln {
        let scale = cache
            .get("ln_final.hook_scale")?
            .i((.., pos))?
            .to_dtype(DType::F32)?
            .reshape((b, 1))?;
        dla = dla.broadcast_div(&scale)?;
    }
    Ok(LatentDla { pos, acts, dla })
}
