//! `gated` (SAELens `GatedSAE`): no `b_enc`;
//! `π_gate = x̃ W_enc + b_gate`, `π_mag = x̃ (W_enc ⊙ exp(r_mag)) + b_mag` (→ `hook_sae_acts_pre`),
//! `f = 1[π_gate > 0] · ReLU(π_mag)`.
//!
//! Both paths share one matmul: `x̃ (W_enc ⊙ e) = (x̃ W_enc) ⊙ e` (equal up to rounding).
use super::arch::{w_dec_norms, ArchImpl, SaeWeights};
use super::config::Architecture;
use crate::error::{Error, Result};
use candle_core::Tensor;

#[derive(Clone, Copy, Debug)]
pub(crate) struct Gated;

fn get<'a>(t: &'a Option<Tensor>, name: &str) -> Result<&'a Tensor> {
    t.as_ref()
        .ok_or_else(|| Error::SaeConfig(format!("gated SAE without {name}")))
}

impl ArchImpl for Gated {
    fn architecture(&self) -> Architecture {
        Architecture::Gated
    }
    fn extra_tensors(&self) -> &'static [&'static str] {
        &["b_gate", "b_mag", "r_mag"]
    }
    fn pre_act(&self, w: &SaeWeights, x: &Tensor) -> Result<(Tensor, Option<Tensor>)> {
        let xw = x.matmul(&w.w_enc)?;
        let gate = xw.broadcast_add(get(&w.b_gate, "b_gate")?)?;
        let mag = xw
            .broadcast_mul(&get(&w.r_mag, "r_mag")?.exp()?)?
            .broadcast_add(get(&w.b_mag, "b_mag")?)?;
        Ok((mag, Some(gate)))
    }
    fn activate(&self, _w: &SaeWeights, h: &Tensor, aux: Option<&Tensor>) -> Result<Tensor> {
        let gate =
            aux.ok_or_else(|| Error::SaeConfig("gated SAE: no gate pre-activation".into()))?;
        let active = gate.gt(0f64)?.to_dtype(h.dtype())?;
        Ok(active.mul(&h.relu()?)?)
    }
    /// `W_dec /= n`, `W_enc *= n`, `b_gate *= n`, `b_mag *= n` (`r_mag` unchanged).
    fn fold_w_dec_norm(&self, w: &mut SaeWeights) -> Result<()> {
        let n = w_dec_norms(&w.w_dec)?.clamp(1e-8f64, f64::MAX)?;
        w.w_dec = w.w_dec.broadcast_div(&n.unsqueeze(1)?)?;
        w.w_enc = w.w_enc.broadcast_mul(&n.unsqueeze(0)?)?;
        w.b_gate = Some(get(&w.b_gate, "b_gate")?.mul(&n)?);
        w.b_mag = Some(get(&w.b_mag, "b_mag")?.mul(&n)?);
        Ok(())
    }
}
