//! Zero-ablating SAE latents one at a time at one position, with the SAE's error term (ARENA
//! §1.5's ablation exercise, SAELens `use_error_term=True`): with the error term, zeroing latent
//! `i` at position `p` changes the model's activation there by exactly `−f_i(p) · W_dec[i]`
//! and nothing else, so the effect on the metric is the latent's true total effect.
use super::metric::Metric;
use super::sites::resolve_pos;
use crate::error::{Error, Result};
use crate::hooks::{HookName, Hooks};
use crate::model::{HookedModel, Prompt};
use crate::sae::{Sae, SaeHook};
use candle_core::{DType, IndexOp, Tensor, D};

/// Logits kept per batched ablation pass, at most (bytes).
const LOGITS_BUDGET: usize = 256 << 20;
/// Rows per batched ablation pass, at most.
const MAX_ROWS: usize = 64;

/// One latent's ablation effect.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LatentEffect {
    /// Latent index (`0..d_sae`).
    pub latent: usize,
    /// The latent's activation at the position, averaged over the batch.
    pub act: f32,
    /// `metric(with SAE and error term) − metric(latent zeroed)`, each averaged over the
    /// batch: positive when the latent pushes the metric up (ARENA's sign).
    pub effect: f64,
}

/// [`ablation_effects`]' result.
#[derive(Clone, Debug)]
pub struct LatentAblation {
    /// `<sae hook>.hook_sae_acts_post`.
    pub hook: String,
    /// The position the latents were ablated at (the requested one, or the last if `None`).
    pub pos: usize,
    /// The metric with the SAE spliced in with its error term (the clean model's value).
    pub metric: f64,
    /// One entry per ablated latent, in the order they were given (ascending when found by
    /// [`active_latents`]).
    pub effects: Vec<LatentEffect>,
}

impl LatentAblation {
    /// The `k` entries with the largest `|effect|`, largest first.
    pub fn top_k(&self, k: usize) -> Vec<LatentEffect> {
        let mut v = self.effects.clone();
        v.sort_by(|a, b| b.effect.abs().total_cmp(&a.effect.abs()));
        v.truncate(k);
        v
    }
}

/// `<hook>.hook_sae_acts_post` of `sae` spliced into `model` (with its error term), `[batch,
/// pos, d_sae]` f32, for any prompt (a text, several texts, or token rows: many rows run 8 at a
/// time). The pass stops after the SAE's block.
pub fn sae_acts(model: &HookedModel, prompt: impl Into<Prompt>, sae: &Sae) -> Result<Tensor> {
    let hook = sae.hook_point(SaeHook::ActsPost);
    let stop = HookName::parse(sae.hook_name_out())
        .layer
        .map(|l| l + 1)
        .filter(|&l| l <= model.cfg().n_layers);
    let run = |p: Prompt| -> Result<Tensor> {
        let (_, cache) = model
            .run(p)
            .sae(sae)
            .error_term()
            .names(hook.as_str())
            .stop_at_layer(stop)
            .cache()?;
        Ok(cache.get(hook.as_str())?.to_dtype(DType::F32)?)
    };
    match prompt.into() {
        Prompt::Tokens(t) if t.rank() == 2 && t.dim(0)? > ROWS_PER_PASS => {
            let chunks = (0..t.dim(0)?)
                .step_by(ROWS_PER_PASS)
                .map(|r| {
                    run(Prompt::Tokens(t.narrow(
                        0,
                        r,
                        ROWS_PER_PASS.min(t.dim(0)? - r),
                    )?))
                })
                .collect::<Result<Vec<_>>>()?;
            Ok(Tensor::cat(&chunks, 0)?)
        }
        p => run(p),
    }
}

/// Token rows per forward pass of [`sae_acts`].
const ROWS_PER_PASS: usize = 8;

/// The latents active (non-zero) at `pos` (None = last) in any prompt of the batch, ascending
/// (ARENA's `(acts[:, pos] > 0).any(0)`), from `acts [batch, pos, d_sae]`.
pub fn active_latents(acts: &Tensor, pos: Option<usize>) -> Result<Vec<usize>> {
    let (_, p, _) = acts.dims3()?;
    let pos = resolve_pos(pos, p)?;
    let live: Vec<f32> = acts
        .i((.., pos))?
        .abs()?
        .max(0)?
        .to_dtype(DType::F32)?
        .to_vec1()?;
    Ok(live
        .iter()
        .enumerate()
        .filter(|(_, v)| **v != 0.0)
        .map(|(i, _)| i)
        .collect())
}

/// Ablate each of `latents` (None: every latent active at `pos` in any prompt) at position `pos`
/// (None = last) of every prompt, one latent at a time, with the SAE's error term, and measure
/// the change in `metric`. The ablations run batched: several copies of the prompts, each with
/// a different latent zeroed, go through the model in one pass (up to 64 rows or 256 MiB of
/// logits per pass).
pub fn ablation_effects(
    model: &HookedModel,
    tokens: &Tensor,
    sae: &Sae,
    metric: &Metric,
    pos: Option<usize>,
    latents: Option<&[usize]>,
) -> Result<LatentAblation> {
    let toks = model.check_tokens(tokens)?;
    let (b, p) = toks.dims2()?;
    let pos = resolve_pos(pos, p)?;
    let hook = format!("{}.hook_sae_acts_post", sae.hook_name_out());
    let acts = sae_acts(model, &toks, sae)?;
    let latents = match latents {
        Some(l) => l.to_vec(),
        None => active_latents(&acts, Some(pos))?,
    };
    if let Some(bad) = latents.iter().find(|&&l| l >= sae.d_sae()) {
        return Err(Error::Invalid(format!(
            "latent index {bad} is out of range: the SAE at `{}` has d_sae = {}",
            sae.hook_name_out(),
            sae.d_sae()
        )));
    }
    let clean = model.run(&toks).sae(sae).error_term().logits()?;
    let baseline = metric.value(model, &clean, &toks)?;
    let mean_acts: Vec<f32> = acts.i((.., pos))?.mean(0)?.to_vec1()?;

    let row_bytes = p * model.cfg().d_vocab * 4;
    let copies = (LOGITS_BUDGET / (b * row_bytes).max(1))
        .min(MAX_ROWS / b.max(1))
        .max(1);
    let d_sae = sae.d_sae();
    let mut effects = Vec::with_capacity(latents.len());
    for chunk in latents.chunks(copies) {
        let c = chunk.len();
        let mut keep = vec![1f32; c * b * d_sae];
        for (j, &l) in chunk.iter().enumerate() {
            for r in 0..b {
                keep[(j * b + r) * d_sae + l] = 0.0;
            }
        }
        let keep = Tensor::from_vec(keep, (c * b, 1, d_sae), model.device())?;
        let rows = toks.repeat((c, 1))?;
        let mut hooks = Hooks::new();
        hooks.add(hook.as_str(), |f: &Tensor, _: &str| {
            let n = f.dim(1)?;
            let at = f.narrow(1, pos, 1)?.mul(&keep.to_dtype(f.dtype())?)?;
            let mut parts = Vec::with_capacity(3);
            if pos > 0 {
                parts.push(f.narrow(1, 0, pos)?);
            }
            parts.push(at);
            if pos + 1 < n {
                parts.push(f.narrow(1, pos + 1, n - pos - 1)?);
            }
            Ok(Some(Tensor::cat(&parts, 1)?))
        });
        let logits = model
            .run(&rows)
            .sae(sae)
            .error_term()
            .hooks(hooks)
            .logits()?;
        for (j, &l) in chunk.iter().enumerate() {
            let v = metric.value(model, &logits.narrow(0, j * b, b)?, &toks)?;
            effects.push(LatentEffect {
                latent: l,
                act: mean_acts[l],
                effect: baseline - v,
            });
        }
    }
    Ok(LatentAblation {
        hook,
        pos,
        metric: baseline,
        effects,
    })
}

/// `acts [..., d_sae]` restricted to `latents` and decoded through those latents only:
/// `acts[..., latents] @ W_dec[latents]` (`[..., d_out]`, f32; ARENA's reconstruction for the
/// circular-geometry PCA). No `b_dec`, no normalisation; the topk decoder-norm rescaling is
/// applied as in decoding.
pub fn reconstruct_from_latents(sae: &Sae, acts: &Tensor, latents: &[usize]) -> Result<Tensor> {
    let dims = acts.dims().to_vec();
    if dims.last() != Some(&sae.d_sae()) {
        return Err(Error::Invalid(format!(
            "reconstruct_from_latents: acts must be [..., d_sae = {}], got {dims:?}",
            sae.d_sae()
        )));
    }
    super::dla::check_latents(sae, latents)?;
    let idx = Tensor::from_vec(
        latents.iter().map(|&l| l as u32).collect::<Vec<_>>(),
        latents.len(),
        acts.device(),
    )?;
    let dirs = super::dla::effective_decoder(sae)?.index_select(&idx, 0)?;
    let n: usize = dims[..dims.len() - 1].iter().product();
    let a = acts
        .to_dtype(DType::F32)?
        .reshape((n, sae.d_sae()))?
        .index_select(&idx, D::Minus1)?;
    let mut out = dims[..dims.len() - 1].to_vec();
    out.push(sae.d_out());
    Ok(a.matmul(&dirs)?.reshape(out)?)
}
