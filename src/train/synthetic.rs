//! Synthetic activations with known ground-truth sparse features, and the recovery score.
//!
//! Each sample is `x = offset + Σ_i a_i F_i + noise`, where the `F_i` are random unit vectors
//! in `d_in` dimensions, feature `i` is active independently with probability `feature_prob`
//! and active magnitudes are uniform in `[min_magnitude, max_magnitude]`. The stream is a pure
//! function of the seed and the number of samples drawn, so its [`ActivationSource::state`] is
//! just the generator state.
use super::config::SyntheticConfig;
use super::ActivationSource;
use crate::error::{Error, Result};
use crate::rng::{Draw, Rng};
use candle_core::{DType, Device, Tensor};
use std::collections::HashMap;

/// A deterministic synthetic [`ActivationSource`].
#[derive(Clone, Debug)]
pub struct SyntheticSource {
    /// The synthetic-data settings.
    pub cfg: SyntheticConfig,
    d_in: usize,
    /// `[n_features, d_in]`, unit rows (row-major).
    features: Vec<f32>,
    offset: Vec<f32>,
    rng: Rng,
}

impl SyntheticSource {
    /// Draw the feature directions (and offset) from `cfg.seed` for activations of width `d_in`.
    pub fn new(cfg: &SyntheticConfig, d_in: usize) -> Result<Self> {
        if d_in == 0 || cfg.n_features == 0 {
            return Err(Error::Config(
                "synthetic: d_in and n_features must be positive".into(),
            ));
        }
        let mut frng = Rng::new(cfg.seed ^ 0x5EED_FEA7);
        let features = random_unit_rows(&mut frng, cfg.n_features, d_in);
        let offset = if cfg.offset_norm > 0.0 {
            let v: Vec<f64> = (0..d_in).map(|_| frng.normal()).collect();
            let n = v.iter().map(|x| x * x).sum::<f64>().sqrt();
            v.iter().map(|x| (x / n * cfg.offset_norm) as f32).collect()
        } else {
            vec![0f32; d_in]
        };
        Ok(SyntheticSource {
            cfg: cfg.clone(),
            d_in,
            features,
            offset,
            rng: Rng::new(cfg.seed),
        })
    }

    /// The true feature directions `[n_features, d_in]`.
    pub fn features(&self) -> Result<Tensor> {
        Ok(Tensor::from_vec(
            self.features.clone(),
            (self.cfg.n_features, self.d_in),
            &Device::Cpu,
        )?)
    }
}

impl ActivationSource for SyntheticSource {
    fn d_in(&self) -> usize {
        self.d_in
    }
    fn next_batch(&mut self, n: usize) -> Result<Tensor> {
        let d = self.d_in;
        let mut out = vec![0f32; n * d];
        let c = &self.cfg;
        let mix = SparseMix {
            features: &self.features,
            prob: &|_| c.feature_prob,
            magnitudes: (c.min_magnitude, c.max_magnitude),
            noise_std: c.noise_std,
        };
        for row in out.chunks_mut(d) {
            row.copy_from_slice(&self.offset);
            mix.add_row(&mut self.rng, row, None);
        }
        Ok(Tensor::from_vec(out, (n, d), &Device::Cpu)?)
    }
    fn state(&self) -> Result<HashMap<String, Tensor>> {
        let s = self.rng.state_u32();
        Ok([("rng".to_string(), Tensor::from_vec(s, 8, &Device::Cpu)?)].into())
    }
    fn restore(&mut self, state: &HashMap<String, Tensor>) -> Result<()> {
        let t = state
            .get("rng")
            .ok_or_else(|| Error::Invalid("synthetic source state has no `rng`".into()))?;
        let v = t.to_dtype(DType::U32)?.to_vec1::<u32>()?;
        self.rng = Rng::from_state_u32(&v)
            .ok_or_else(|| Error::Invalid("synthetic source state: bad `rng`".into()))?;
        Ok(())
    }
}

/// `n` random unit directions in `d` dimensions (Gaussian, normalised in f64), row-major.
pub(crate) fn random_unit_rows(rng: &mut impl Draw, n: usize, d: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(n * d);
    for _ in 0..n {
        let v: Vec<f64> = (0..d).map(|_| rng.normal()).collect();
        let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt();
        out.extend(v.iter().map(|x| (x / norm) as f32));
    }
    out
}

/// How synthetic samples mix ground-truth features (the training source's and the toy
/// models'): feature `i` is active with probability `prob(i)`, with a magnitude uniform in
/// `magnitudes`, then isotropic Gaussian noise is added.
pub(crate) struct SparseMix<'a> {
    /// `[n_features, d]` unit rows, row-major.
    pub features: &'a [f32],
    pub prob: &'a dyn Fn(usize) -> f64,
    pub magnitudes: (f64, f64),
    pub noise_std: f64,
}

impl SparseMix<'_> {
    /// Add one sample into `row` (`[d]`); the magnitudes go to `coefficients` (`[n_features]`).
    pub fn add_row(
        &self,
        rng: &mut impl Draw,
        row: &mut [f32],
        mut coefficients: Option<&mut [f32]>,
    ) {
        let d = row.len();
        for (i, f) in self.features.chunks(d).enumerate() {
            if rng.uniform() < (self.prob)(i) {
                let (lo, hi) = self.magnitudes;
                let a = rng.uniform_range(lo, hi) as f32;
                for (r, f) in row.iter_mut().zip(f) {
                    *r += a * f;
                }
                if let Some(c) = coefficients.as_deref_mut() {
                    c[i] = a;
                }
            }
        }
        if self.noise_std > 0.0 {
            for r in row.iter_mut() {
                *r += (rng.normal() * self.noise_std) as f32;
            }
        }
    }
}

/// The recovery score `mean_i max_j cos(F_i, W_dec[j])`: the mean over the true features
/// (`[n_true, d]`) of the best cosine similarity with a row of `w_dec` (`[d_sae, d]`).
pub fn recovery_score(true_features: &Tensor, w_dec: &Tensor) -> Result<f64> {
    let t = true_features.to_dtype(DType::F32)?;
    let w = w_dec.to_dtype(DType::F32)?.to_device(t.device())?;
    let (_, d) = t.dims2()?;
    if w.dims2()?.1 != d {
        return Err(Error::Invalid(format!(
            "recovery_score: features have width {d}, decoder rows {:?}",
            w.dims()
        )));
    }
    let nt = t.broadcast_div(&t.sqr()?.sum_keepdim(1)?.sqrt()?.maximum(1e-12f64)?)?;
    let nw = w.broadcast_div(&w.sqr()?.sum_keepdim(1)?.sqrt()?.maximum(1e-12f64)?)?;
    let cos = nt.matmul(&nw.t()?)?; // [n_true, d_sae]
    let best = cos.max(1)?.to_vec1::<f32>()?;
    Ok(best.iter().map(|x| *x as f64).sum::<f64>() / best.len().max(1) as f64)
}

/// An in-memory [`ActivationSource`]: serves consecutive rows of a fixed `[N, d_in]` tensor,
/// wrapping around at the end. Its state is the read position.
#[derive(Clone, Debug)]
pub struct InMemorySource {
    data: Tensor,
    pos: usize,
}

impl InMemorySource {
    /// Serve the rows of `data [N, d_in]` (cast to f32, on the CPU), starting at row 0.
    pub fn new(data: Tensor) -> Result<Self> {
        if data.rank() != 2 || data.dim(0)? == 0 {
            return Err(Error::Invalid(format!(
                "InMemorySource needs a non-empty [N, d_in] tensor, got {:?}",
                data.dims()
            )));
        }
        Ok(InMemorySource {
            data: data.to_dtype(DType::F32)?.to_device(&Device::Cpu)?,
            pos: 0,
        })
    }
}

impl ActivationSource for InMemorySource {
    fn d_in(&self) -> usize {
        self.data.dim(1).unwrap_or(0)
    }
    fn next_batch(&mut self, n: usize) -> Result<Tensor> {
        let total = self.data.dim(0)?;
        let mut parts = vec![];
        let mut left = n;
        while left > 0 {
            let take = left.min(total - self.pos);
            parts.push(self.data.narrow(0, self.pos, take)?);
            self.pos = (self.pos + take) % total;
            left -= take;
        }
        Ok(Tensor::cat(&parts, 0)?.contiguous()?)
    }
    fn state(&self) -> Result<HashMap<String, Tensor>> {
        Ok([(
            "pos".to_string(),
            Tensor::new(&[self.pos as i64], &Device::Cpu)?,
        )]
        .into())
    }
    fn restore(&mut self, state: &HashMap<String, Tensor>) -> Result<()> {
        let p = state
            .get("pos")
            .ok_or_else(|| Error::Invalid("in-memory source state has no `pos`".into()))?;
        self.pos = p.to_vec1::<i64>()?[0] as usize;
        Ok(())
    }
}
