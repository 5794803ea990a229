//! A small seeded generator ([`crate::rng::SplitMix64`]) with the draws toy experiments use.
use crate::error::Result;
use candle_core::{Device, Shape, Tensor};

/// Seeded SplitMix64 with uniform and normal draws.
#[derive(Clone, Debug)]
pub struct ToyRng {
    inner: crate::rng::SplitMix64,
    spare: Option<f32>,
}

impl ToyRng {
    pub fn new(seed: u64) -> Self {
        ToyRng {
            inner: crate::rng::SplitMix64::new(seed ^ 0x9E37_79B9_7F4A_7C15),
            spare: None,
        }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.inner.next_u64()
    }

    /// Uniform in `[0, 1)`.
    pub fn uniform(&mut self) -> f32 {
        ((self.next_u64() >> 40) as f32) / (1u64 << 24) as f32
    }

    /// Uniform in `[0, 1)` as f64.
    pub fn uniform_f64(&mut self) -> f64 {
        self.inner.next_f64()
    }

    /// Standard normal (Box–Muller).
    pub fn normal(&mut self) -> f32 {
        if let Some(s) = self.spare.take() {
            return s;
        }
        let u1 = self.uniform_f64().max(1e-300);
        let u2 = self.uniform_f64();
        let r = (-2.0 * u1.ln()).sqrt();
        let t = 2.0 * std::f64::consts::PI * u2;
        self.spare = Some((r * t.sin()) as f32);
        (r * t.cos()) as f32
    }

    /// An index in `0..n`.
    pub fn below(&mut self, n: usize) -> usize {
        (self.uniform_f64() * n as f64) as usize % n.max(1)
    }

    /// Draw an index with probability proportional to `w` (non-negative).
    pub fn categorical(&mut self, w: &[f64]) -> usize {
        let total: f64 = w.iter().sum();
        if total <= 0.0 || !total.is_finite() {
            return self.below(w.len());
        }
        let mut u = self.uniform_f64() * total;
        for (i, x) in w.iter().enumerate() {
            if u < *x {
                return i;
            }
            u -= x;
        }
        w.len() - 1
    }

    pub fn uniform_vec(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.uniform()).collect()
    }

    pub fn normal_vec(&mut self, n: usize, std: f32) -> Vec<f32> {
        (0..n).map(|_| self.normal() * std).collect()
    }

    /// A tensor of normals with standard deviation `std`.
    pub fn randn(&mut self, shape: impl Into<Shape>, std: f32, dev: &Device) -> Result<Tensor> {
        let shape = shape.into();
        let v = self.normal_vec(shape.elem_count(), std);
        Ok(Tensor::from_vec(v, shape, dev)?)
    }

    /// A tensor uniform in `[-bound, bound)`.
    pub fn rand_sym(
        &mut self,
        shape: impl Into<Shape>,
        bound: f32,
        dev: &Device,
    ) -> Result<Tensor> {
        let shape = shape.into();
        let v: Vec<f32> = (0..shape.elem_count())
            .map(|_| (2.0 * self.uniform() - 1.0) * bound)
            .collect();
        Ok(Tensor::from_vec(v, shape, dev)?)
    }
}
