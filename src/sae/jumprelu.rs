//! `jumprelu`: `h = x̃ W_enc + b_enc`, `f = ReLU(h) · 1[h > θ]` (SAELens `JumpReLUSAE`; also what
//! `batchtopk` / `matryoshka_batchtopk` training checkpoints become for inference).
use super::arch::{fold_base, jumprelu, linear, ArchImpl, SaeWeights};
use super::config::Architecture;
use crate::error::Result;
use candle_core::Tensor;

#[derive(Clone, Copy, Debug)]
pub(crate) struct JumpRelu;

impl ArchImpl for JumpRelu {
    fn architecture(&self) -> Architecture {
        Architecture::JumpRelu
    }
    fn extra_tensors(&self) -> &'static [&'static str] {
        &["b_enc", "threshold"]
    }
    fn pre_act(&self, w: &SaeWeights, x: &Tensor) -> Result<(Tensor, Option<Tensor>)> {
        Ok((linear(x, &w.w_enc, w.b_enc()?)?, None))
    }
    fn activate(&self, w: &SaeWeights, h: &Tensor, _aux: Option<&Tensor>) -> Result<Tensor> {
        jumprelu(h, w.threshold()?)
    }
    /// Base fold, and `θ *= n` so the same features fire.
    fn fold_w_dec_norm(&self, w: &mut SaeWeights) -> Result<()> {
        let n = fold_base(w)?;
        w.threshold = Some(w.threshold()?.mul(&n)?);
        Ok(())
    }
}
