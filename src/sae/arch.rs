//! The one trait every architecture implements (`standard.rs`, `gated.rs`, `jumprelu.rs`,
//! `topk.rs`, `transcoder.rs`), and the weights they share.
//!
//! All methods work on flattened `[N, d_in]` / `[N, d_sae]` tensors; [`super::Sae`] does the
//! dtype cast, hook_z reshaping, normalisation, `b_dec` subtraction and the hook calls.
use super::config::Architecture;
use crate::error::{Error, Result};
use candle_core::{DType, Tensor, D};

/// An SAE's parameters (SAELens names in the comments). Shapes: `W_enc [d_in, d_sae]`,
/// `W_dec [d_sae, d_out]`, `b_dec [d_out]`, `[d_sae]` for the per-feature vectors,
/// `W_skip [d_out, d_in]`.
#[derive(Clone, Debug)]
pub(crate) struct SaeWeights {
    pub w_enc: Tensor,
    pub w_dec: Tensor,
    pub b_dec: Tensor,
    pub b_enc: Option<Tensor>,
    pub threshold: Option<Tensor>,
    pub b_gate: Option<Tensor>,
    pub b_mag: Option<Tensor>,
    pub r_mag: Option<Tensor>,
    pub w_skip: Option<Tensor>,
}

impl SaeWeights {
    pub fn b_enc(&self) -> Result<&Tensor> {
        self.b_enc
            .as_ref()
            .ok_or_else(|| Error::SaeConfig("this SAE has no b_enc".into()))
    }
    pub fn threshold(&self) -> Result<&Tensor> {
        self.threshold
            .as_ref()
            .ok_or_else(|| Error::SaeConfig("this SAE has no threshold".into()))
    }
    /// `(name, tensor)` of every parameter present, SAELens names.
    pub fn named(&self) -> Vec<(&'static str, &Tensor)> {
        let mut v = vec![("W_enc", &self.w_enc), ("W_dec", &self.w_dec)];
        let opt = [
            ("b_enc", &self.b_enc),
            ("threshold", &self.threshold),
            ("b_gate", &self.b_gate),
            ("b_mag", &self.b_mag),
            ("r_mag", &self.r_mag),
            ("W_skip", &self.w_skip),
        ];
        v.push(("b_dec", &self.b_dec));
        for (n, t) in opt {
            if let Some(t) = t {
                v.push((n, t));
            }
        }
        v
    }
}

/// Architecture-specific encode / decode / folding.
pub(crate) trait ArchImpl: Send + Sync + std::fmt::Debug {
    fn architecture(&self) -> Architecture;
    /// The parameters this architecture has besides `W_enc`, `W_dec`, `b_dec`.
    fn extra_tensors(&self) -> &'static [&'static str];
    /// `x̃ [N, d_in] →` (the value `hook_sae_acts_pre` sees `[N, d_sae]`, an auxiliary tensor
    /// the activation needs, e.g. the gated SAE's gate pre-activation).
    fn pre_act(&self, w: &SaeWeights, x: &Tensor) -> Result<(Tensor, Option<Tensor>)>;
    /// Applied to the (possibly hooked) pre-activation before the activation function.
    fn after_pre_hook(&self, _w: &SaeWeights, h: Tensor) -> Result<Tensor> {
        Ok(h)
    }
    /// The activation function: `f [N, d_sae]`.
    fn activate(&self, w: &SaeWeights, h: &Tensor, aux: Option<&Tensor>) -> Result<Tensor>;
    /// `f W_dec + b_dec` (`[N, d_out]`), before `hook_sae_recons`.
    fn decode_linear(&self, w: &SaeWeights, f: &Tensor) -> Result<Tensor> {
        Ok(f.matmul(&w.w_dec)?.broadcast_add(&w.b_dec)?)
    }
    /// SAELens's `fold_W_dec_norm` for this architecture.
    fn fold_w_dec_norm(&self, w: &mut SaeWeights) -> Result<()>;
}

/// `x W + b`.
pub(crate) fn linear(x: &Tensor, w: &Tensor, b: &Tensor) -> Result<Tensor> {
    Ok(x.matmul(w)?.broadcast_add(b)?)
}

/// `‖W_dec[i, :]‖₂` per feature (`[d_sae]`), computed in f32 or f64.
pub(crate) fn w_dec_norms(w_dec: &Tensor) -> Result<Tensor> {
    let dt = w_dec.dtype();
    let wf = if dt == DType::F64 {
        w_dec.clone()
    } else {
        w_dec.to_dtype(DType::F32)?
    };
    Ok(wf.sqr()?.sum(D::Minus1)?.sqrt()?.to_dtype(dt)?)
}

/// The common part of SAELens's `fold_W_dec_norm` (`fold_and_get_W_dec_norm`):
/// `n = clamp(‖W_dec[i]‖, 1e-8)`, `W_dec[i] /= n_i`, `W_enc[:, i] *= n_i`, `b_enc *= n` (if
/// any). Returns `n`.
pub(crate) fn fold_base(w: &mut SaeWeights) -> Result<Tensor> {
    let n = w_dec_norms(&w.w_dec)?.clamp(1e-8f64, f64::MAX)?;
    w.w_dec = w.w_dec.broadcast_div(&n.unsqueeze(1)?)?;
    w.w_enc = w.w_enc.broadcast_mul(&n.unsqueeze(0)?)?;
    if let Some(b) = &w.b_enc {
        w.b_enc = Some(b.mul(&n)?);
    }
    Ok(n)
}

/// `ReLU(h) · 1[h > θ]` (JumpReLU; strict `>`), computed as `where(h > ReLU(θ), h, 0)`
/// (the same values for any sign of θ; fewer passes).
pub(crate) fn jumprelu(h: &Tensor, threshold: &Tensor) -> Result<Tensor> {
    let mask = h.broadcast_gt(&threshold.relu()?)?;
    Ok(mask.where_cond(h, &h.zeros_like()?)?)
}
