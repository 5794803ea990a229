//! Transcoders (SAELens `Transcoder`, `SkipTranscoder`, `JumpReLUTranscoder`,
//! `JumpReLUSkipTranscoder`): read `hook_name`, write `hook_name_out`.
//!
//! Encode: no `b_dec` subtraction and no hook_z reshaping: `h = norm_in(x) W_enc + b_enc`,
//! `f = ReLU(h)` (or JumpReLU). Decode: `f W_dec + b_dec` (`W_dec [d_sae, d_out]`) →
//! `hook_sae_recons`, no `norm_out`. Skip variants add `x W_skipᵀ` in the standalone `forward`
//! only (SAELens's `HookedSAETransformer` calls `encode`/`decode` and so never adds it).
use super::arch::{fold_base, jumprelu, linear, ArchImpl, SaeWeights};
use super::config::Architecture;
use crate::error::Result;
use candle_core::Tensor;

#[derive(Clone, Copy, Debug)]
pub(crate) struct Transcoder {
    pub jumprelu: bool,
    pub skip: bool,
}

impl ArchImpl for Transcoder {
    fn architecture(&self) -> Architecture {
        match (self.jumprelu, self.skip) {
            (false, false) => Architecture::Transcoder,
            (false, true) => Architecture::SkipTranscoder,
            (true, false) => Architecture::JumpReluTranscoder,
            (true, true) => Architecture::JumpReluSkipTranscoder,
        }
    }
    fn extra_tensors(&self) -> &'static [&'static str] {
        match (self.jumprelu, self.skip) {
            (false, false) => &["b_enc"],
            (false, true) => &["b_enc", "W_skip"],
            (true, false) => &["b_enc", "threshold"],
            (true, true) => &["b_enc", "threshold", "W_skip"],
        }
    }
    fn pre_act(&self, w: &SaeWeights, x: &Tensor) -> Result<(Tensor, Option<Tensor>)> {
        Ok((linear(x, &w.w_enc, w.b_enc()?)?, None))
    }
    fn activate(&self, w: &SaeWeights, h: &Tensor, _aux: Option<&Tensor>) -> Result<Tensor> {
        if self.jumprelu {
            jumprelu(h, w.threshold()?)
        } else {
            Ok(h.relu()?)
        }
    }
    /// Base fold (norms over `d_out`), and `θ *= n` for JumpReLU transcoders.
    fn fold_w_dec_norm(&self, w: &mut SaeWeights) -> Result<()> {
        let n = fold_base(w)?;
        if self.jumprelu {
            w.threshold = Some(w.threshold()?.mul(&n)?);
        }
        Ok(())
    }
}
