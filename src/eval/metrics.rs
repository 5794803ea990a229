//! The metric definitions of SAELens's `evals.py`, on plain tensors.
//!
//! Per-token functions take `x`, `x̂` as `[n, d]` and features as `[n, d_sae]` (rows are
//! tokens, already masked) and return `Vec<f32>` of length `n`; the caller averages.
use crate::error::{Error, Result};
use candle_core::{DType, Tensor, D};

fn rows2(t: &Tensor, what: &str) -> Result<(usize, usize)> {
    t.dims2().map_err(|_| {
        Error::Invalid(format!(
            "{what}: expected a [tokens, width] matrix, got shape {:?}",
            t.dims()
        ))
    })
}

fn same(x: &Tensor, y: &Tensor, what: &str) -> Result<()> {
    if x.dims() != y.dims() {
        return Err(Error::Invalid(format!(
            "{what}: shapes differ: {:?} vs {:?}",
            x.dims(),
            y.dims()
        )));
    }
    Ok(())
}

fn f32s(t: &Tensor) -> Result<Vec<f32>> {
    Ok(t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?)
}

/// `#(f ≠ 0)` per token (SAELens counts `!= 0`, so signed architectures count too).
pub fn l0_per_token(acts: &Tensor) -> Result<Vec<f32>> {
    rows2(acts, "l0")?;
    f32s(&acts.ne(0f64)?.to_dtype(DType::F32)?.sum(D::Minus1)?)
}

/// `Σ|f|` per token.
pub fn l1_per_token(acts: &Tensor) -> Result<Vec<f32>> {
    rows2(acts, "l1")?;
    f32s(&acts.to_dtype(DType::F32)?.abs()?.sum(D::Minus1)?)
}

/// `Σ_d (x − x̂)²` per token (SAELens's `mse` is the mean of this: a **sum** over `d`).
pub fn mse_per_token(x: &Tensor, x_hat: &Tensor) -> Result<Vec<f32>> {
    rows2(x, "mse")?;
    same(x, x_hat, "mse")?;
    let (x, y) = (x.to_dtype(DType::F32)?, x_hat.to_dtype(DType::F32)?);
    f32s(&(x - y)?.sqr()?.sum(D::Minus1)?)
}

/// `cos(x, x̂)` per token (no epsilon, as SAELens: a zero row gives NaN).
pub fn cossim_per_token(x: &Tensor, x_hat: &Tensor) -> Result<Vec<f32>> {
    rows2(x, "cossim")?;
    same(x, x_hat, "cossim")?;
    let (x, y) = (x.to_dtype(DType::F32)?, x_hat.to_dtype(DType::F32)?);
    let xn = x.broadcast_div(&x.sqr()?.sum_keepdim(D::Minus1)?.sqrt()?)?;
    let yn = y.broadcast_div(&y.sqr()?.sum_keepdim(D::Minus1)?.sqrt()?)?;
    f32s(&(xn * yn)?.sum(D::Minus1)?)
}

/// The legacy ("incorrect") explained variance per token:
/// `1 − ‖x − x̂‖² / ‖x − mean_batch(x)‖²`, the mean taken over the rows given.
pub fn explained_variance_legacy_per_token(x: &Tensor, x_hat: &Tensor) -> Result<Vec<f32>> {
    rows2(x, "explained_variance_legacy")?;
    same(x, x_hat, "explained_variance_legacy")?;
    let (x, y) = (x.to_dtype(DType::F32)?, x_hat.to_dtype(DType::F32)?);
    let resid = (&x - y)?.sqr()?.sum(D::Minus1)?;
    let var = x
        .broadcast_sub(&x.mean_keepdim(0)?)?
        .sqr()?
        .sum(D::Minus1)?;
    let r = f32s(&resid)?;
    let v = f32s(&var)?;
    Ok(r.iter().zip(&v).map(|(r, v)| 1.0 - r / v).collect())
}

/// `‖x‖` per token.
pub fn l2_norm_per_token(x: &Tensor) -> Result<Vec<f32>> {
    rows2(x, "l2_norm")?;
    f32s(&x.to_dtype(DType::F32)?.sqr()?.sum(D::Minus1)?.sqrt()?)
}

/// `‖x̂‖ / ‖x‖` per token, the denominator replaced by 1 where `|‖x‖| < 1e-4` (SAELens).
pub fn l2_ratio_per_token(x: &Tensor, x_hat: &Tensor) -> Result<Vec<f32>> {
    same(x, x_hat, "l2_ratio")?;
    let a = l2_norm_per_token(x)?;
    let b = l2_norm_per_token(x_hat)?;
    Ok(a.iter()
        .zip(&b)
        .map(|(a, b)| b / if a.abs() < 1e-4 { 1.0 } else { *a })
        .collect())
}

/// Relative reconstruction bias (eq. 10 of arXiv 2404.16014) over the rows given:
/// `E‖x̂‖² / E⟨x, x̂⟩` (SAELens computes it per batch and averages the batches).
pub fn relative_reconstruction_bias(x: &Tensor, x_hat: &Tensor) -> Result<f64> {
    rows2(x, "relative_reconstruction_bias")?;
    same(x, x_hat, "relative_reconstruction_bias")?;
    let (x, y) = (x.to_dtype(DType::F32)?, x_hat.to_dtype(DType::F32)?);
    let num = y.sqr()?.sum(D::Minus1)?.mean_all()?.to_scalar::<f32>()? as f64;
    let den = (x * y)?.sum(D::Minus1)?.mean_all()?.to_scalar::<f32>()? as f64;
    Ok(num / den)
}

/// SAELens's `ExplainedVarianceCalculator`: `1 − E‖x − x̂‖² / (E‖x‖² − ‖E x‖²)`, streamed over
/// batches with the cross-batch sums in f64 (every token weighs the same).
#[derive(Clone, Debug, Default)]
pub struct ExplainedVariance {
    sum_x: Vec<f64>,
    sum_sq_norm: f64,
    sum_sq_resid: f64,
    n: usize,
}

impl ExplainedVariance {
    /// An empty accumulator (no tokens yet).
    pub fn new() -> Self {
        Self::default()
    }

    /// Add a batch: `x_hat` (the SAE output) and `x` (the input), both `[n, d]`.
    pub fn add_batch(&mut self, x_hat: &Tensor, x: &Tensor) -> Result<()> {
        let (n, d) = rows2(x, "explained_variance")?;
        same(x, x_hat, "explained_variance")?;
        if n == 0 {
            return Ok(());
        }
        let x32 = x.to_dtype(DType::F32)?;
        let col = f32s(&x32.sum(0)?)?;
        if self.sum_x.is_empty() {
            self.sum_x = vec![0.0; d];
        }
        if self.sum_x.len() != d {
            return Err(Error::Invalid(format!(
                "explained_variance: width changed from {} to {d}",
                self.sum_x.len()
            )));
        }
        for (s, c) in self.sum_x.iter_mut().zip(&col) {
            *s += *c as f64;
        }
        self.sum_sq_norm += x32.sqr()?.sum_all()?.to_scalar::<f32>()? as f64;
        self.sum_sq_resid += (x32 - x_hat.to_dtype(DType::F32)?)?
            .sqr()?
            .sum_all()?
            .to_scalar::<f32>()? as f64;
        self.n += n;
        Ok(())
    }

    /// Number of tokens added so far.
    pub fn num_samples(&self) -> usize {
        self.n
    }

    /// R² over every token added (0 with no tokens; for a zero-variance input, 1 if the
    /// reconstruction is exact and 0 otherwise, as SAELens).
    pub fn compute(&self) -> f64 {
        if self.n == 0 {
            return 0.0;
        }
        let n = self.n as f64;
        let mean_sq = self.sum_sq_norm / n;
        let mean_norm2: f64 = self.sum_x.iter().map(|s| (s / n) * (s / n)).sum();
        let var = mean_sq - mean_norm2;
        let mse = self.sum_sq_resid / n;
        if var < 1e-10 {
            return if mse < 1e-10 { 1.0 } else { 0.0 };
        }
        1.0 - mse / var
    }
}

/// Explained variance of one set of rows (`[n, d]`), SAELens's current definition.
pub fn explained_variance(x: &Tensor, x_hat: &Tensor) -> Result<f64> {
    let mut ev = ExplainedVariance::new();
    ev.add_batch(x_hat, x)?;
    Ok(ev.compute())
}

/// `KL(p_clean ‖ p_new)` per position: `Σ_v p_clean (log p_clean − log p_new)` over the last
/// dim of `[..., d_vocab]` logits (torch's `kl_div(log_softmax(new), softmax(clean))`, terms
/// with `p_clean = 0` contribute 0). Returns the leading shape.
pub fn kl_div(clean_logits: &Tensor, new_logits: &Tensor) -> Result<Tensor> {
    same(clean_logits, new_logits, "kl_div")?;
    let lp = candle_nn::ops::log_softmax(&clean_logits.to_dtype(DType::F32)?, D::Minus1)?;
    let lq = candle_nn::ops::log_softmax(&new_logits.to_dtype(DType::F32)?, D::Minus1)?;
    let p = lp.exp()?;
    // p = 0 only where lp = -inf; exp underflow gives p = 0 with finite lp, where the product is 0.
    let lp = lp.maximum(-1e30f64)?;
    Ok((p * (lp - lq)?)?.sum(D::Minus1)?)
}

/// `(CE_ablation − CE_sae) / (CE_ablation − CE_clean)`.
pub fn ce_loss_score(ce_clean: f64, ce_sae: f64, ce_ablation: f64) -> f64 {
    (ce_ablation - ce_sae) / (ce_ablation - ce_clean)
}

/// `(KL_ablation − KL_sae) / KL_ablation`.
pub fn kl_div_score(kl_sae: f64, kl_ablation: f64) -> f64 {
    (kl_ablation - kl_sae) / kl_ablation
}

/// A histogram of `log10(density + 1e-10)` (the quantity SAELens logs as
/// `feature_density_histogram`): `n_bins` equal bins over `[lo, hi]`, values outside
/// clamped into the first / last bin.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Histogram {
    /// `n_bins + 1` bin edges.
    pub edges: Vec<f64>,
    /// `n_bins` counts of finite values per bin.
    pub counts: Vec<usize>,
}

impl Histogram {
    /// The counts as a chart over the bin centres.
    pub fn plot(&self, title: &str, y_label: &str) -> crate::error::Result<crate::viz::Svg> {
        let centres: Vec<f64> = self.edges.windows(2).map(|w| 0.5 * (w[0] + w[1])).collect();
        let counts: Vec<f64> = self.counts.iter().map(|&c| c as f64).collect();
        crate::viz::histogram_chart(title, &centres, &counts, y_label)
    }
    /// Count `values` into `n_bins` equal bins over `[lo, hi]` (outside values clamped).
    pub fn new(values: &[f64], lo: f64, hi: f64, n_bins: usize) -> Self {
        let n_bins = n_bins.max(1);
        let w = (hi - lo) / n_bins as f64;
        let edges = (0..=n_bins)
            .map(|i| ((lo + (hi - lo) * i as f64 / n_bins as f64) * 1e9).round() / 1e9)
            .collect();
        let mut counts = vec![0usize; n_bins];
        for v in values {
            if !v.is_finite() {
                continue;
            }
            let i = ((v - lo) / w).floor();
            let i = if i < 0.0 {
                0
            } else {
                (i as usize).min(n_bins - 1)
            };
            counts[i] += 1;
        }
        Histogram { edges, counts }
    }
}

/// `log10(density + 1e-10)` for each latent.
pub fn log10_density(density: &[f64]) -> Vec<f64> {
    density.iter().map(|d| (d + 1e-10).log10()).collect()
}

/// SAELens's `get_featurewise_weight_based_metrics`.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct WeightMetrics {
    /// `‖W_enc[:, i]‖`.
    pub encoder_norm: Vec<f32>,
    /// `cos(W_enc[:, i], W_dec[i, :])`.
    pub encoder_decoder_cosine_sim: Vec<f32>,
    /// `b_enc` (absent for architectures without one, e.g. gated).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encoder_bias: Option<Vec<f32>>,
}

/// Weight-based per-latent metrics from `W_enc [d_in, d_sae]`, `W_dec [d_sae, d_in]`.
pub fn weight_metrics(
    w_enc: &Tensor,
    w_dec: &Tensor,
    b_enc: Option<&Tensor>,
) -> Result<WeightMetrics> {
    let we = w_enc.to_dtype(DType::F32)?;
    let wd = w_dec.to_dtype(DType::F32)?;
    let (din, dsae) = rows2(&we, "W_enc")?;
    if wd.dims() != [dsae, din] {
        return Err(Error::Invalid(format!(
            "W_dec should be [{dsae}, {din}], got {:?}",
            wd.dims()
        )));
    }
    let en = we.sqr()?.sum(0)?.sqrt()?;
    let dn = wd.sqr()?.sum(1)?.sqrt()?;
    let dot = (we.t()? * &wd)?.sum(1)?;
    // torch's cosine_similarity on pre-normalised vectors: clamp each norm at 1e-8.
    let cos = dot.div(&(en.maximum(1e-8f64)? * dn.maximum(1e-8f64)?)?)?;
    Ok(WeightMetrics {
        encoder_norm: f32s(&en)?,
        encoder_decoder_cosine_sim: f32s(&cos)?,
        encoder_bias: match b_enc {
            Some(b) => Some(f32s(b)?),
            None => None,
        },
    })
}

/// Mean of a slice in f64 (NaN for an empty slice, as torch's `mean` of an empty tensor).
pub fn mean(v: &[f32]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.iter().map(|x| *x as f64).sum::<f64>() / v.len() as f64
}
