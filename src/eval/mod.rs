//! SAE evaluation with SAELens's definitions (`evals.py`, spec §F).
//!
//! [`run_evals`] streams token rows `[n, ctx]` through the model in batches and returns an
//! [`EvalReport`] (serde; the groups and names of SAELens's `run_evals` output, plus
//! density statistics). [`run_default_evals`] runs them on [`DEFAULT_EVAL_TOKENS`] tokens of
//! the default corpus's held-out slice (documents the shipped SAE never trained on) and records
//! which in the report's `dataset`. Special tokens (by default the tokenizer's BOS / EOS / PAD, as SAELens's
//! `get_special_token_ids`) are excluded from every metric, and their positions bypass the SAE
//! in the spliced run.
//!
//! | metric | definition (over non-excluded tokens `t`) |
//! |---|---|
//! | `l0`, `l1` | `mean_t #(f_t ≠ 0)`, `mean_t Σ|f_t|` |
//! | `mse` | `mean_t Σ_d (x − x̂)²` |
//! | `cossim` | `mean_t cos(x, x̂)` |
//! | `explained_variance` | `1 − E‖x − x̂‖² / (E‖x‖² − ‖E x‖²)` (f64 accumulation) |
//! | `explained_variance_legacy` | `mean_t [1 − ‖x − x̂‖² / ‖x − mean_batch x‖²]` |
//! | `l2_norm_in/out`, `l2_ratio` | `mean ‖x‖`, `mean ‖x̂‖`, `mean ‖x̂‖/‖x‖` |
//! | `relative_reconstruction_bias` | `E‖x̂‖² / E⟨x, x̂⟩` per batch, averaged over batches |
//! | `ce_loss_*` | next-token CE clean, with the SAE spliced (no error term), with the hook zero-ablated |
//! | `ce_loss_score` | `(CE_abl − CE_sae) / (CE_abl − CE_clean)` |
//! | `kl_div_with_*`, `kl_div_score` | `KL(p_clean ‖ p_new)` per token; `(KL_abl − KL_sae) / KL_abl` |
//! | `feature_density` | `#tokens fired / #tokens` per latent |
//! | `consistent_activation_heuristic` | `#tokens fired / #prompts with ≥ 1 firing` per latent |
//!
//! ```no_run
//! # fn main() -> saescope::Result<()> {
//! use saescope::eval::{run_evals, EvalOptions};
//! let model = saescope::HookedModel::from_pretrained("smollm2")?;
//! let sae = saescope::Sae::load(std::path::Path::new("tests/fixtures/sae/saes/smollm2_standard_l10"))?;
//! let rows: Vec<u32> = model.tokenizer()?.encode("The capital of France is Paris. It is a big city.", true)?;
//! let tokens = saescope::Tensor::new(rows.as_slice(), &saescope::Device::Cpu)?.unsqueeze(0)?;
//! let report = run_evals(&model, &sae, &tokens, &EvalOptions::default())?;
//! println!("{}", serde_json::to_string_pretty(&report).unwrap());
//! # Ok(()) }
//! ```
pub mod absorption;
mod dataset;
mod logit_metrics;
pub mod metrics;
pub mod probing;
mod report;
pub mod transcoders;

pub use absorption::{absorption, AbsorptionOptions, AbsorptionReport};
pub use dataset::{
    dataset_tokens, held_out_tokens, run_default_evals, EvalDataset, DEFAULT_EVAL_CONTEXT,
    DEFAULT_EVAL_TOKENS,
};
pub use probing::{sparse_probing, ProbingOptions, ProbingReport};
pub use report::*;
pub use transcoders::{eval_transcoders, LayerEval, TranscoderEvalOptions, TranscoderSetEval};

use crate::error::{Error, Result};
use crate::hooks::{HookName, Hooks};
use crate::model::HookedModel;
use crate::sae::Sae;
use crate::tokenizer::SpecialTokens;
use candle_core::{DType, IndexOp, Tensor};
use metrics::*;
use serde::{Deserialize, Serialize};

/// What to compute and how (SAELens's `EvalConfig` with everything on by default).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EvalOptions {
    /// Rows of the token tensor per model pass.
    pub batch_size: usize,
    /// CE losses (clean, SAE spliced, hook zero-ablated: three model passes per batch).
    pub compute_ce_loss: bool,
    /// KL divergences of the spliced and ablated runs from the clean run (the same three passes).
    pub compute_kl: bool,
    /// L0/L1, MSE, cosine, explained variance, l2 norms, densities.
    pub compute_sparsity_variance: bool,
    /// Per-latent lists (`feature_density`, `consistent_activation_heuristic`, weight-based
    /// metrics) in [`EvalReport::feature_metrics`].
    pub compute_featurewise: bool,
    /// At most this many batches for the CE/KL metrics (`None`: every row).
    pub n_reconstruction_batches: Option<usize>,
    /// At most this many batches for the sparsity/variance metrics (`None`: every row).
    pub n_sparsity_variance_batches: Option<usize>,
    /// Token ids excluded from the metrics (SAELens's `exclude_special_tokens`; default
    /// BOS, EOS and PAD; a model without a tokenizer excludes only listed ids).
    pub exclude_tokens: SpecialTokens,
    /// SAELens's `ActivationScaler` factor: the SAE sees `s·x` and its output is divided by
    /// `s` (for SAEs trained with `normalize_activations = expected_average_only_in` whose
    /// factor was not folded). `None`: no scaling.
    pub activation_scale: Option<f64>,
    /// Latents with a density above this count as dense.
    pub dense_threshold: f64,
    /// Histogram of `log10(density + 1e-10)`: bins over `[-10, 0]`.
    pub density_hist_bins: usize,
}

impl Default for EvalOptions {
    fn default() -> Self {
        EvalOptions {
            batch_size: 8,
            compute_ce_loss: true,
            compute_kl: true,
            compute_sparsity_variance: true,
            compute_featurewise: false,
            n_reconstruction_batches: None,
            n_sparsity_variance_batches: None,
            exclude_tokens: SpecialTokens::Structural,
            activation_scale: None,
            dense_threshold: 0.1,
            density_hist_bins: 20,
        }
    }
}

/// `[b, p]` row-major keep mask (true where the token is not excluded).
fn keep_mask(tokens: &Tensor, ids: &[u32]) -> Result<Vec<bool>> {
    Ok(tokens
        .flatten_all()?
        .to_vec1::<u32>()?
        .iter()
        .map(|t| !ids.contains(t))
        .collect())
}

fn select_rows(t: &Tensor, keep: &[bool]) -> Result<Tensor> {
    if keep.iter().all(|k| *k) {
        return Ok(t.clone());
    }
    let idx: Vec<u32> = keep
        .iter()
        .enumerate()
        .filter(|(_, k)| **k)
        .map(|(i, _)| i as u32)
        .collect();
    let idx = Tensor::new(idx.as_slice(), t.device())?;
    Ok(t.index_select(&idx, 0)?)
}

fn masked_sum(v: &[f32], keep: &[bool]) -> (f64, usize) {
    let mut s = 0f64;
    let mut n = 0usize;
    for (x, k) in v.iter().zip(keep) {
        if *k {
            s += *x as f64;
            n += 1;
        }
    }
    (s, n)
}

#[derive(Default)]
struct Acc {
    sum: f64,
    n: usize,
}
impl Acc {
    fn add(&mut self, v: &[f32]) {
        for x in v {
            self.sum += *x as f64;
        }
        self.n += v.len();
    }
    fn add_masked(&mut self, v: &[f32], keep: &[bool]) {
        let (s, n) = masked_sum(v, keep);
        self.sum += s;
        self.n += n;
    }
    fn mean(&self) -> f64 {
        if self.n == 0 {
            f64::NAN
        } else {
            self.sum / self.n as f64
        }
    }
}

/// The SAE as evaluated: the activation scale folded in, so that it takes raw activations.
fn effective_sae(sae: &Sae, opts: &EvalOptions) -> Result<Sae> {
    let mut s = sae.clone();
    if let Some(f) = opts.activation_scale {
        s.fold_activation_norm_scaling_factor(f)?;
    }
    Ok(s)
}

/// `decode(encode(x))` with the normalisation state: `(features, x̂)`.
fn sae_recons(sae: &Sae, x: &Tensor) -> Result<(Tensor, Tensor)> {
    let (f, st) = sae.encode_with_state(x)?;
    let y = sae.decode_with_state(&f, &st)?;
    Ok((f, y))
}

/// Flatten `[b, p, h, d]` head activations to `[b, p, h·d]`.
fn flatten_heads(t: &Tensor) -> Result<Tensor> {
    if t.rank() == 4 {
        let (b, p, h, d) = t.dims4()?;
        Ok(t.reshape((b, p, h * d))?)
    } else {
        Ok(t.clone())
    }
}

/// Run SAELens's evals of `sae` on `tokens` (`[n, ctx]`, integer ids; BOS should already be
/// in place, nothing is prepended) through `model`, in batches of `opts.batch_size` rows.
pub fn run_evals(
    model: &HookedModel,
    sae: &Sae,
    tokens: &Tensor,
    opts: &EvalOptions,
) -> Result<EvalReport> {
    let tokens = match tokens.rank() {
        1 => tokens.unsqueeze(0)?,
        2 => tokens.clone(),
        r => {
            return Err(Error::Invalid(format!(
                "run_evals: tokens must be [rows, ctx], got rank {r}"
            )))
        }
    };
    let tokens = tokens.to_dtype(DType::U32)?;
    let (n_rows, ctx) = tokens.dims2()?;
    if n_rows == 0 || ctx < 2 {
        return Err(Error::Invalid(format!(
            "run_evals: need at least one row of at least 2 tokens, got {:?}",
            tokens.dims()
        )));
    }
    if sae.cfg().metadata.hook_head_index.is_some() {
        return Err(Error::Invalid(
            "run_evals: SAEs on a single head (hook_head_index) are not supported".into(),
        ));
    }
    let bs = opts.batch_size.max(1);
    let n_batches = n_rows.div_ceil(bs);
    let ids = opts.exclude_tokens.ids_with(model.tokenizer().ok());
    let orig_sae = sae;
    let sae = effective_sae(sae, opts)?;
    let hook = sae.hook_name().to_string();
    let hook_out = sae.hook_name_out().to_string();
    let want_recon = opts.compute_ce_loss || opts.compute_kl;
    let n_recon = if want_recon {
        opts.n_reconstruction_batches
            .unwrap_or(n_batches)
            .min(n_batches)
    } else {
        0
    };
    let n_sv = if opts.compute_sparsity_variance || opts.compute_featurewise {
        opts.n_sparsity_variance_batches
            .unwrap_or(n_batches)
            .min(n_batches)
    } else {
        0
    };
    let bypass = if ids.is_empty() {
        SpecialTokens::None
    } else {
        SpecialTokens::Ids(ids.clone())
    };
    let input_name = format!("{hook}.hook_sae_input");

    // Reconstruction (CE / KL) accumulators.
    let (mut ce_clean, mut ce_sae, mut ce_abl) = (Acc::default(), Acc::default(), Acc::default());
    let (mut kl_sae, mut kl_abl) = (Acc::default(), Acc::default());
    // Sparsity / variance accumulators.
    let (mut l0, mut l1, mut mse, mut cos, mut evl) = (
        Acc::default(),
        Acc::default(),
        Acc::default(),
        Acc::default(),
        Acc::default(),
    );
    let (mut nin, mut nout, mut ratio, mut rrb) = (
        Acc::default(),
        Acc::default(),
        Acc::default(),
        Acc::default(),
    );
    let mut ev = ExplainedVariance::new();
    let d_sae = sae.d_sae();
    let mut fired = vec![0f64; d_sae];
    let mut fired_prompts = vec![0f64; d_sae];
    let mut total_tokens = 0usize;

    for bi in 0..n_recon.max(n_sv) {
        let start = bi * bs;
        let len = bs.min(n_rows - start);
        let batch = tokens.i(start..start + len)?;
        let keep = keep_mask(&batch, &ids)?;
        let do_sv = bi < n_sv;
        let mut x_in: Option<Tensor> = None;
        if bi < n_recon {
            let clean = model.forward(&batch)?;
            let (sae_logits, cache) = model
                .run(&batch)
                .sae(&sae)
                .exclude_special_tokens(bypass.clone())
                .names(input_name.as_str())
                .cache()?;
            if do_sv {
                x_in = Some(cache.get(input_name.as_str())?.clone());
            }
            drop(cache);
            let mut hooks = Hooks::new();
            hooks.add(hook_out.as_str(), |a: &Tensor, _: &str| {
                Ok(Some(a.zeros_like()?))
            });
            let abl = model.run_with_hooks(&batch, hooks)?;
            // CE: [b, ctx-1], masked by the token at the predicting position.
            let keep_ce: Vec<bool> = (0..len)
                .flat_map(|r| keep[r * ctx..r * ctx + ctx - 1].iter().copied())
                .collect();
            let m = logit_metrics::logit_metrics(&batch, [&clean, &sae_logits, &abl])?;
            if opts.compute_ce_loss {
                for (acc, l) in [&mut ce_clean, &mut ce_sae, &mut ce_abl]
                    .into_iter()
                    .zip(&m.ce)
                {
                    acc.add_masked(l, &keep_ce);
                }
            }
            if opts.compute_kl {
                for (acc, k) in [&mut kl_sae, &mut kl_abl].into_iter().zip(&m.kl) {
                    acc.add_masked(k, &keep);
                }
            }
        }
        if !do_sv {
            continue;
        }
        let x = match x_in {
            Some(x) => x,
            None => {
                let stop = HookName::parse(&hook).stop_at_layer();
                let (_, cache) = model
                    .run(&batch)
                    .names(hook.as_str())
                    .stop_at_layer(stop)
                    .cache()?;
                flatten_heads(&cache.get(hook.as_str())?)?
            }
        };
        let d = *x.dims().last().unwrap_or(&0);
        let x = x.reshape((len * ctx, d))?.to_dtype(DType::F32)?;
        let (f, y) = sae_recons(&sae, &x)?;
        let f = f.to_dtype(DType::F32)?;
        let y = y.reshape((len * ctx, ()))?.to_dtype(DType::F32)?;
        // Densities: over kept tokens, prompts with ≥ 1 firing among kept tokens.
        let fired_b = f.ne(0f64)?.to_dtype(DType::F32)?;
        let keep_t = Tensor::new(
            keep.iter()
                .map(|k| *k as u8 as f32)
                .collect::<Vec<_>>()
                .as_slice(),
            fired_b.device(),
        )?
        .unsqueeze(1)?;
        let fired_b = fired_b.broadcast_mul(&keep_t)?.reshape((len, ctx, d_sae))?;
        let per_prompt = fired_b.sum(1)?; // [len, d_sae]
        let tok_counts = per_prompt.sum(0)?.to_vec1::<f32>()?;
        let prompt_counts = per_prompt
            .gt(0f64)?
            .to_dtype(DType::F32)?
            .sum(0)?
            .to_vec1::<f32>()?;
        for i in 0..d_sae {
            fired[i] += tok_counts[i] as f64;
            fired_prompts[i] += prompt_counts[i] as f64;
        }
        total_tokens += keep.iter().filter(|k| **k).count();

        let xk = select_rows(&x, &keep)?;
        let yk = select_rows(&y, &keep)?;
        let fk = select_rows(&f, &keep)?;
        if xk.dim(0)? == 0 {
            continue;
        }
        l0.add(&l0_per_token(&fk)?);
        l1.add(&l1_per_token(&fk)?);
        mse.add(&mse_per_token(&xk, &yk)?);
        cos.add(&cossim_per_token(&xk, &yk)?);
        evl.add(&explained_variance_legacy_per_token(&xk, &yk)?);
        nin.add(&l2_norm_per_token(&xk)?);
        nout.add(&l2_norm_per_token(&yk)?);
        ratio.add(&l2_ratio_per_token(&xk, &yk)?);
        rrb.add(&[relative_reconstruction_bias(&xk, &yk)? as f32]);
        ev.add_batch(&yk, &xk)?;
    }

    let mut report = EvalReport {
        sae_hook_name: hook.clone(),
        architecture: sae.architecture().to_string(),
        token_stats: TokenStats {
            total_tokens_eval_reconstruction: (n_recon * bs).min(n_rows) * ctx,
            total_tokens_eval_sparsity_variance: (n_sv * bs).min(n_rows) * ctx,
            n_tokens_evaluated: total_tokens,
            excluded_token_ids: ids.clone(),
        },
        ..Default::default()
    };
    if n_recon > 0 && opts.compute_kl {
        let (s, a) = (kl_sae.mean(), kl_abl.mean());
        report.model_behavior_preservation = Some(ModelBehaviorPreservation {
            kl_div_score: kl_div_score(s, a),
            kl_div_with_ablation: a,
            kl_div_with_sae: s,
        });
    }
    if n_recon > 0 && opts.compute_ce_loss {
        let (c, s, a) = (ce_clean.mean(), ce_sae.mean(), ce_abl.mean());
        report.model_performance_preservation = Some(ModelPerformancePreservation {
            ce_loss_score: ce_loss_score(c, s, a),
            ce_loss_with_ablation: a,
            ce_loss_with_sae: s,
            ce_loss_without_sae: c,
        });
    }
    if n_sv > 0 && opts.compute_sparsity_variance {
        report.reconstruction_quality = Some(ReconstructionQuality {
            explained_variance: ev.compute(),
            explained_variance_legacy: evl.mean(),
            mse: mse.mean(),
            cossim: cos.mean(),
        });
        report.shrinkage = Some(Shrinkage {
            l2_norm_in: nin.mean(),
            l2_norm_out: nout.mean(),
            l2_ratio: ratio.mean(),
            relative_reconstruction_bias: rrb.mean(),
        });
        report.sparsity = Some(Sparsity {
            l0: l0.mean(),
            l1: l1.mean(),
        });
    }
    if n_sv > 0 {
        let tt = total_tokens as f64;
        let density: Vec<f64> = fired.iter().map(|c| c / tt).collect();
        report.feature_stats = Some(feature_stats(&density, opts));
        if opts.compute_featurewise {
            report.feature_metrics = Some(FeatureMetrics {
                consistent_activation_heuristic: fired
                    .iter()
                    .zip(&fired_prompts)
                    .map(|(a, p)| a / p)
                    .collect(),
                feature_density: density,
                weights: weight_metrics(orig_sae.w_enc(), orig_sae.w_dec(), orig_sae.b_enc())?,
            });
        }
    }
    Ok(report)
}

/// Dead / dense counts and the log-density histogram from per-latent densities.
pub fn feature_stats(density: &[f64], opts: &EvalOptions) -> FeatureStats {
    let logd = log10_density(density);
    let n = density.len();
    let n_dead = density.iter().filter(|d| **d == 0.0).count();
    FeatureStats {
        d_sae: n,
        n_dead,
        dead_fraction: if n == 0 {
            0.0
        } else {
            n_dead as f64 / n as f64
        },
        n_dense: density
            .iter()
            .filter(|d| **d > opts.dense_threshold)
            .count(),
        dense_threshold: opts.dense_threshold,
        n_below_1e_5: density.iter().filter(|d| **d < 1e-5).count(),
        n_below_1e_6: density.iter().filter(|d| **d < 1e-6).count(),
        mean_log10_density: if n == 0 {
            f64::NAN
        } else {
            logd.iter().sum::<f64>() / n as f64
        },
        log10_density_histogram: Histogram::new(&logd, -10.0, 0.0, opts.density_hist_bins),
    }
}
