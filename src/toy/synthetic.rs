//! Synthetic activations with known ground-truth features, and the recovery score.
use crate::error::{Error, Result};
use crate::rng::Rng;
use crate::train::synthetic::{random_unit_rows, SparseMix};
use candle_core::{DType, Device, Tensor, D};

/// Activations `x = Σ_i a_i f_i (+ noise)` over unit-norm ground-truth directions `f_i`
/// (random Gaussian directions): feature `i` is present with probability `p_i`, with a
/// magnitude uniform in `[min_magnitude, max_magnitude)`.
pub struct SyntheticActivations {
    /// `[n_features, d]`, unit rows.
    features: Tensor,
    feats: Vec<f32>,
    /// Probability `p_i` that feature `i` is present in a row, `[n_features]`.
    pub feature_probability: Vec<f32>,
    /// Lower bound of a present feature's magnitude (default 0).
    pub min_magnitude: f32,
    /// Upper bound (exclusive) of a present feature's magnitude (default 1).
    pub max_magnitude: f32,
    /// Standard deviation of isotropic Gaussian noise added to every row.
    pub noise_std: f32,
    n_features: usize,
    d: usize,
    rng: Rng,
}

impl SyntheticActivations {
    /// `n_features` random unit directions in `d` dimensions, each present with probability
    /// `p`, magnitudes uniform in `[0, 1)`.
    pub fn new(n_features: usize, d: usize, p: f32, seed: u64) -> Result<Self> {
        if n_features == 0 || d == 0 {
            return Err(Error::Invalid("synthetic activations: empty dims".into()));
        }
        let feats = random_unit_rows(&mut Rng::new(seed), n_features, d);
        Self::from_features(
            &Tensor::from_vec(feats, (n_features, d), &Device::Cpu)?,
            &vec![p; n_features],
            seed.wrapping_add(1),
        )
    }

    /// Given directions `[n_features, d]` (normalised here) and per-feature probabilities.
    pub fn from_features(features: &Tensor, probs: &[f32], seed: u64) -> Result<Self> {
        let f = features.to_dtype(DType::F32)?.to_device(&Device::Cpu)?;
        let (n, d) = f.dims2()?;
        if probs.len() != n {
            return Err(Error::Invalid(format!(
                "synthetic activations: {} probabilities for {n} features",
                probs.len()
            )));
        }
        let norm = f.sqr()?.sum_keepdim(D::Minus1)?.sqrt()?.maximum(1e-12f64)?;
        let f = f.broadcast_div(&norm)?;
        Ok(SyntheticActivations {
            feats: f.flatten_all()?.to_vec1::<f32>()?,
            features: f,
            feature_probability: probs.to_vec(),
            min_magnitude: 0.0,
            max_magnitude: 1.0,
            noise_std: 0.0,
            n_features: n,
            d,
            rng: Rng::new(seed),
        })
    }

    /// The ground-truth directions `[n_features, d]` (unit rows).
    pub fn features(&self) -> &Tensor {
        &self.features
    }
    /// Activation dimension `d`.
    pub fn d(&self) -> usize {
        self.d
    }
    /// Number of ground-truth features.
    pub fn n_features(&self) -> usize {
        self.n_features
    }

    /// `(x [batch, d], coefficients [batch, n_features])`.
    pub fn generate_with_coefficients(&mut self, batch: usize) -> Result<(Tensor, Tensor)> {
        let (n, d) = (self.n_features, self.d);
        let mut x = vec![0f32; batch * d];
        let mut a = vec![0f32; batch * n];
        let mix = SparseMix {
            features: &self.feats,
            prob: &|i| self.feature_probability[i] as f64,
            magnitudes: (self.min_magnitude as f64, self.max_magnitude as f64),
            noise_std: self.noise_std as f64,
        };
        for (row, coefficients) in x.chunks_mut(d).zip(a.chunks_mut(n)) {
            mix.add_row(&mut self.rng, row, Some(coefficients));
        }
        Ok((
            Tensor::from_vec(x, (batch, d), &Device::Cpu)?,
            Tensor::from_vec(a, (batch, n), &Device::Cpu)?,
        ))
    }

    /// A batch `[batch, d]`.
    pub fn generate(&mut self, batch: usize) -> Result<Tensor> {
        Ok(self.generate_with_coefficients(batch)?.0)
    }

    /// A batch for a toy SAE with `n_inst` instances: `[batch, n_inst, d]` (independent rows).
    pub fn generate_instances(&mut self, batch: usize, n_inst: usize) -> Result<Tensor> {
        Ok(self
            .generate(batch * n_inst)?
            .reshape((batch, n_inst, self.d))?)
    }
}
