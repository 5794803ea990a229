//! `standard`: `h = x̃ W_enc + b_enc`, `f = ReLU(h)` (SAELens `StandardSAE`).
use super::arch::{fold_base, linear, ArchImpl, SaeWeights};
use super::config::Architecture;
use crate::error::Result;
use candle_core::Tensor;

#[derive(Clone, Copy, Debug)]
pub(crate) struct Standard;

impl ArchImpl for Standard {
    fn architecture(&self) -> Architecture {
        Architecture::Standard
    }
    fn extra_tensors(&self) -> &'static [&'static str] {
        &["b_enc"]
    }
    fn pre_act(&self, w: &SaeWeights, x: &Tensor) -> Result<(Tensor, Option<Tensor>)> {
        Ok((linear(x, &w.w_enc, w.b_enc()?)?, None))
    }
    fn activate(&self, _w: &SaeWeights, h: &Tensor, _aux: Option<&Tensor>) -> Result<Tensor> {
        Ok(h.relu()?)
    }
    fn fold_w_dec_norm(&self, w: &mut SaeWeights) -> Result<()> {
        fold_base(w)?;
        Ok(())
    }
}
