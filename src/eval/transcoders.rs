//! Evals of a per-layer transcoder set: per layer, the fraction of `hook_mlp_out`'s variance
//! left unexplained (FVU), L0, latents that never fired, and the CE-loss score with that MLP
//! replaced alone; then the CE-loss score with every MLP replaced at once. Position 0 (BOS) is
//! left out everywhere (its MLP outputs are outliers; circuit-tracer zeroes it too): the
//! transcoders are not applied there (nor at other BOS positions of packed rows) and it counts
//! in no statistic.
use crate::error::{Error, Result};
use crate::hooks::Hooks;
use crate::model::HookedModel;
use crate::sae::{Sae, TranscoderSet};
use candle_core::{DType, IndexOp, Tensor};
use serde::{Deserialize, Serialize};

/// One layer's transcoder.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LayerEval {
    /// The layer.
    pub layer: usize,
    /// `Σ‖y − ŷ‖² / Σ‖y − ȳ‖²` over tokens, `y` = `hook_mlp_out`, `ŷ` the reconstruction.
    pub fvu: f64,
    /// Mean number of active latents per token.
    pub l0: f64,
    /// Fraction of latents that never fired on the eval tokens.
    pub dead_fraction: f64,
    /// Mean next-token CE with this MLP replaced by its transcoder (the others intact).
    pub ce_replaced: f64,
    /// Mean next-token CE with this MLP's output zeroed.
    pub ce_zero_ablated: f64,
    /// `(ce_zero_ablated − ce_replaced) / (ce_zero_ablated − ce_clean)`.
    pub ce_loss_score: f64,
}

/// The whole set.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TranscoderSetEval {
    /// Eval tokens (rows × context).
    pub tokens: usize,
    /// Mean next-token CE of the clean model.
    pub ce_clean: f64,
    /// Mean next-token CE with every MLP replaced by its transcoder at once.
    pub ce_all_replaced: f64,
    /// Mean next-token CE with every MLP output zeroed.
    pub ce_all_zero_ablated: f64,
    /// `(ce_all_zero_ablated − ce_all_replaced) / (ce_all_zero_ablated − ce_clean)`.
    pub ce_loss_score_all: f64,
    /// Per layer (CE fields 0 unless per-layer CE was asked for).
    pub layers: Vec<LayerEval>,
}

/// Options of [`eval_transcoders`].
#[derive(Clone, Debug, PartialEq)]
pub struct TranscoderEvalOptions {
    /// Rows per model pass (default 8).
    pub batch: usize,
    /// Also the CE-loss score with each MLP replaced alone (two more passes per layer and
    /// batch; default true).
    pub per_layer_ce: bool,
}

impl Default for TranscoderEvalOptions {
    fn default() -> Self {
        TranscoderEvalOptions {
            batch: 8,
            per_layer_ce: true,
        }
    }
}

/// Run the evals on `tokens` (`[rows, ctx]`, BOS first).
pub fn eval_transcoders(
    model: &HookedModel,
    tcs: &TranscoderSet,
    tokens: &Tensor,
    opts: &TranscoderEvalOptions,
) -> Result<TranscoderSetEval> {
    let (batch, per_layer_ce) = (opts.batch, opts.per_layer_ce);
    tcs.check_fits(model)?;
    let tokens = tokens.to_dtype(DType::U32)?;
    let (rows, ctx) = tokens.dims2()?;
    if rows == 0 || ctx < 3 {
        return Err(Error::Invalid(format!(
            "eval_transcoders: need rows of at least 3 tokens, got {:?}",
            tokens.dims()
        )));
    }
    let n = tcs.len();
    let d = model.cfg().d_model;
    let mut err = vec![0f64; n];
    let mut sum = vec![vec![0f64; d]; n];
    let mut sumsq = vec![0f64; n];
    let mut l0 = vec![0f64; n];
    let mut fired: Vec<Vec<bool>> = tcs
        .transcoders
        .iter()
        .map(|t| vec![false; t.d_sae()])
        .collect();
    let (mut ce_clean, mut ce_all, mut ce_all_abl) = (0f64, 0f64, 0f64);
    let mut ce_one = vec![0f64; n];
    let mut ce_abl = vec![0f64; n];
    let mut count = 0usize;
    let mut batches = 0usize;
    let names: Vec<String> = (0..n)
        .flat_map(|l| {
            [
                format!("blocks.{l}.ln2.hook_normalized"),
                format!("blocks.{l}.hook_mlp_out"),
            ]
        })
        .collect();
    for start in (0..rows).step_by(batch.max(1)) {
        let b = tokens.i(start..(start + batch.max(1)).min(rows))?;
        let (logits, cache) = model.run(&b).names(names.clone()).cache()?;
        ce_clean += loss(model, &b, &logits)?;
        for (l, tc) in tcs.transcoders.iter().enumerate() {
            let x = cache.get(format!("blocks.{l}.ln2.hook_normalized"))?;
            let y = cache.get(format!("blocks.{l}.hook_mlp_out"))?;
            let (x, y) = (drop_bos(&x)?, drop_bos(&y)?.to_dtype(DType::F32)?);
            let f = tc.encode(&x)?;
            let mut y_hat = tc.decode(&f)?;
            if let Some(s) = tc.skip_connection(&x)? {
                y_hat = (y_hat + s)?;
            }
            let y_hat = y_hat.to_dtype(DType::F32)?;
            err[l] += (&y - &y_hat)?.sqr()?.sum_all()?.to_scalar::<f32>()? as f64;
            sumsq[l] += y.sqr()?.sum_all()?.to_scalar::<f32>()? as f64;
            for (s, v) in sum[l].iter_mut().zip(y.sum(0)?.to_vec1::<f32>()?) {
                *s += v as f64;
            }
            let active = f.gt(0f64)?.to_dtype(DType::F32)?;
            l0[l] += active.sum_all()?.to_scalar::<f32>()? as f64;
            for (k, a) in fired[l].iter_mut().zip(active.max(0)?.to_vec1::<f32>()?) {
                *k |= a > 0.0;
            }
        }
        count += b.dim(0)? * (ctx - 1);
        drop(cache);
        let all: Vec<&Sae> = tcs.transcoders.iter().collect();
        ce_all += loss(model, &b, &spliced(model, &b, &all)?)?;
        ce_all_abl += loss(model, &b, &zeroed(model, &b, None)?)?;
        if per_layer_ce {
            for (l, tc) in tcs.transcoders.iter().enumerate() {
                ce_one[l] += loss(model, &b, &spliced(model, &b, &[tc])?)?;
                ce_abl[l] += loss(model, &b, &zeroed(model, &b, Some(l))?)?;
            }
        }
        batches += 1;
    }
    let nb = batches as f64;
    let (ce_clean, ce_all, ce_all_abl) = (ce_clean / nb, ce_all / nb, ce_all_abl / nb);
    let layers = (0..n)
        .map(|l| {
            let mean_sq: f64 = sum[l].iter().map(|s| s * s).sum::<f64>() / count as f64;
            let var = sumsq[l] - mean_sq;
            let (one, abl) = (ce_one[l] / nb, ce_abl[l] / nb);
            LayerEval {
                layer: l,
                fvu: err[l] / var.max(1e-30),
                l0: l0[l] / count as f64,
                dead_fraction: fired[l].iter().filter(|&&f| !f).count() as f64
                    / fired[l].len() as f64,
                ce_replaced: one,
                ce_zero_ablated: abl,
                ce_loss_score: if per_layer_ce {
                    (abl - one) / (abl - ce_clean)
                } else {
                    0.0
                },
            }
        })
        .collect();
    Ok(TranscoderSetEval {
        tokens: rows * ctx,
        ce_clean,
        ce_all_replaced: ce_all,
        ce_all_zero_ablated: ce_all_abl,
        ce_loss_score_all: (ce_all_abl - ce_all) / (ce_all_abl - ce_clean),
        layers,
    })
}

/// `[b, p, d]` → `[b·(p−1), d]` without position 0.
fn drop_bos(t: &Tensor) -> Result<Tensor> {
    let (b, p, d) = t.dims3()?;
    Ok(t.narrow(1, 1, p - 1)?.reshape((b * (p - 1), d))?)
}

fn loss(model: &HookedModel, tokens: &Tensor, logits: &Tensor) -> Result<f64> {
    Ok(model
        .loss(tokens, logits)?
        .to_dtype(DType::F64)?
        .to_scalar::<f64>()?)
}

/// Logits with `tcs` spliced in, except at positions holding the BOS token (position 0 and
/// document starts inside packed rows).
fn spliced(model: &HookedModel, tokens: &Tensor, tcs: &[&Sae]) -> Result<Tensor> {
    model
        .run(tokens)
        .saes(tcs)
        .exclude_special_tokens(crate::tokenizer::SpecialTokens::Ids(vec![bos_id(tokens)?]))
        .logits()
}

/// The id at position 0 (BOS), which the transcoders skip.
fn bos_id(tokens: &Tensor) -> Result<u32> {
    Ok(tokens.i((0, 0))?.to_scalar::<u32>()?)
}

/// Logits with MLP `layer`'s output (or every MLP's, for None) zeroed except at position 0.
fn zeroed(model: &HookedModel, tokens: &Tensor, layer: Option<usize>) -> Result<Tensor> {
    let mut hooks = Hooks::new();
    hooks.add_filter(
        move |n: &str| match layer {
            Some(l) => n == format!("blocks.{l}.hook_mlp_out"),
            None => n.starts_with("blocks.") && n.ends_with(".hook_mlp_out"),
        },
        |x: &Tensor, _: &str| {
            let p = x.dim(1)?;
            let keep = x.narrow(1, 0, 1)?;
            let zeros = x.narrow(1, 1, p - 1)?.zeros_like()?;
            Ok(Some(Tensor::cat(&[keep, zeros], 1)?))
        },
    );
    model.run_with_hooks(tokens, hooks)
}
