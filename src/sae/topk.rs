//! `topk` (SAELens `TopKSAE`) and `abstopk`.
//!
//! `h = x̃ W_enc + b_enc` → `hook_sae_acts_pre`; then, with `rescale_acts_by_decoder_norm`,
//! `h ← h ⊙ n` (`n = ‖W_dec[i]‖`, *after* the hook); `f` keeps the `k` largest entries of each
//! row, ReLU'd, zeros elsewhere (abstopk: the `k` largest `|h|`, signs kept, no ReLU). Decode
//! divides `f` by `n` first when rescaling.
//!
//! Ties at the k-th value are broken towards the lower feature index (torch leaves the choice
//! unspecified). The selection runs on the CPU (rayon, `ops::top_k` per row: O(d_sae));
//! the result is a 0/1 mask applied with tensor ops, so gradients flow through the kept entries.
use super::arch::{fold_base, linear, w_dec_norms, ArchImpl, SaeWeights};
use super::config::Architecture;
use crate::error::{Error, Result};
use crate::ops::{topk_mask, TopKSelect};
use candle_core::Tensor;

#[derive(Clone, Copy, Debug)]
pub(crate) struct TopK {
    pub k: usize,
    pub rescale_acts_by_decoder_norm: bool,
    /// `abstopk`: rank by `|h|`, keep signs.
    pub abs: bool,
}

impl ArchImpl for TopK {
    fn architecture(&self) -> Architecture {
        if self.abs {
            Architecture::AbsTopK
        } else {
            Architecture::TopK
        }
    }
    fn extra_tensors(&self) -> &'static [&'static str] {
        &["b_enc"]
    }
    fn pre_act(&self, w: &SaeWeights, x: &Tensor) -> Result<(Tensor, Option<Tensor>)> {
        Ok((linear(x, &w.w_enc, w.b_enc()?)?, None))
    }
    fn after_pre_hook(&self, w: &SaeWeights, h: Tensor) -> Result<Tensor> {
        if self.rescale_acts_by_decoder_norm {
            Ok(h.broadcast_mul(&w_dec_norms(&w.w_dec)?)?)
        } else {
            Ok(h)
        }
    }
    fn activate(&self, _w: &SaeWeights, h: &Tensor, _aux: Option<&Tensor>) -> Result<Tensor> {
        let sel = TopKSelect {
            abs: self.abs,
            ..Default::default()
        };
        let mask = topk_mask(h, self.k, sel)?.to_dtype(h.dtype())?;
        if self.abs {
            Ok(h.mul(&mask)?)
        } else {
            Ok(h.relu()?.mul(&mask)?)
        }
    }
    fn decode_linear(&self, w: &SaeWeights, f: &Tensor) -> Result<Tensor> {
        let f = if self.rescale_acts_by_decoder_norm {
            f.broadcast_div(&w_dec_norms(&w.w_dec)?)?
        } else {
            f.clone()
        };
        Ok(f.matmul(&w.w_dec)?.broadcast_add(&w.b_dec)?)
    }
    /// Only with `rescale_acts_by_decoder_norm` (otherwise folding could change which features
    /// are in the top k; SAELens raises too).
    fn fold_w_dec_norm(&self, w: &mut SaeWeights) -> Result<()> {
        if !self.rescale_acts_by_decoder_norm {
            return Err(Error::SaeConfig(
                "fold_w_dec_norm is not safe for a topk SAE whose rescale_acts_by_decoder_norm is \
                 false: it may change which features are in the top k"
                    .into(),
            ));
        }
        fold_base(w)?;
        Ok(())
    }
}
