//! Fused CPU training steps: for the architectures where it pays, the whole forward pass,
//! losses and parameter gradients computed directly (few large matmuls, no autograd graph,
//! no dense temporaries beyond what the maths needs). Each is checked against the autograd
//! graph, which is checked against SAELens (`tests/train_fused.rs`, `tests/train.rs`).
//!
//! - `topk`, and `batchtopk` transcoders ([`super::topk_fused`]): only the selected
//!   `(latent, value)` pairs, sparse decode and sparse gradients;
//! - `standard` with `lp_norm = 1` (`standard_fused.rs`): four dense matmuls (the graph
//!   needs five: it also forms `∂x̃ = ∂h W_encᵀ` just to sum it into `∂b_dec`).
//!
//! Each reconstructs a target `y` (`[n, d_out]`): the input for SAEs, the output hook's
//! activations for transcoders.
use super::TrainingSae;
use crate::error::Result;
use crate::sae::Architecture;
use candle_core::{DType, Tensor};
use std::collections::HashMap;

/// What a fused step returns: the losses, the reconstruction, per-latent firing counts and
/// the gradients (in parameter order).
pub struct FusedStep {
    pub loss: f64,
    pub losses: Vec<(String, f64)>,
    pub sae_out: Tensor,
    pub fire_counts: Vec<f32>,
    pub grads: Vec<Option<Tensor>>,
    /// The smallest active feature activation (`batchtopk`'s threshold EMA input; `None` for
    /// the other architectures, or when nothing fired).
    pub min_active: Option<f32>,
}

impl TrainingSae {
    /// The fused step when one applies (CPU, f32; `topk`, or `standard` with `lp_norm = 1`),
    /// else `None` (use [`TrainingSae::training_forward`] and autograd).
    pub fn fused_step(
        &self,
        x: &Tensor,
        dead: &[bool],
        coefficients: &HashMap<String, f64>,
    ) -> Result<Option<FusedStep>> {
        self.fused_step_to(x, x, dead, coefficients)
    }

    /// [`TrainingSae::fused_step`] reconstructing `target` `[n, d_out]` (transcoders; an SAE's
    /// target is `x`). Transcoders also get a fused `batchtopk` step (batchtopk SAEs keep the
    /// autograd graph, so that their runs stay bit-identical to earlier ones). Pure: the
    /// batchtopk threshold EMA is the caller's (`TrainArch::after_fused_step` with
    /// `FusedStep::min_active`).
    pub fn fused_step_to(
        &self,
        x: &Tensor,
        target: &Tensor,
        dead: &[bool],
        coefficients: &HashMap<String, f64>,
    ) -> Result<Option<FusedStep>> {
        let cpu_f32 = |t: &Tensor| t.device().is_cpu() && t.dtype() == DType::F32;
        if !self.use_fused_kernels || !cpu_f32(x) || !cpu_f32(target) {
            return Ok(None);
        }
        Ok(match self.cfg.architecture {
            Architecture::TopK => Some(self.topk_step(x, target, dead, false)?),
            Architecture::BatchTopK if self.cfg.is_transcoder() => {
                Some(self.topk_step(x, target, dead, true)?)
            }
            Architecture::Standard if self.cfg.lp_norm == 1.0 => {
                let l1 = coefficients.get("l1").copied().unwrap_or(0.0);
                Some(self.standard_step(x, target, l1)?)
            }
            _ => None,
        })
    }
}

/// `a · b` with 16 independent accumulators (a plain `sum()` is one serial chain of adds that
/// the compiler may not reorder, hence not vectorise).
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 16];
    let (ca, cb) = (a.chunks_exact(16), b.chunks_exact(16));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..16 {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// Column sums of a row-major `[n, d]` matrix in f64, in a fixed order.
pub(crate) fn col_sums(v: &[f32], d: usize) -> Vec<f64> {
    use rayon::prelude::*;
    let parts: Vec<Vec<f64>> = v
        .par_chunks(d * 256)
        .map(|block| {
            let mut s = vec![0f64; d];
            for row in block.chunks(d) {
                for (a, b) in s.iter_mut().zip(row) {
                    *a += *b as f64;
                }
            }
            s
        })
        .collect();
    let mut out = vec![0f64; d];
    for p in parts {
        for (a, b) in out.iter_mut().zip(p) {
            *a += b;
        }
    }
    out
}

/// The gradients `[W_enc, W_dec, b_dec, b_enc]` in the order of the parameter `names` (`None`
/// for any other parameter).
pub(crate) fn grads_in_order(names: &[String], g: [Tensor; 4]) -> Vec<Option<Tensor>> {
    let [w_enc, w_dec, b_dec, b_enc] = g;
    names
        .iter()
        .map(|name| match name.as_str() {
            "W_enc" => Some(w_enc.clone()),
            "W_dec" => Some(w_dec.clone()),
            "b_dec" => Some(b_dec.clone()),
            "b_enc" => Some(b_enc.clone()),
            _ => None,
        })
        .collect()
}
