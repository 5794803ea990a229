//! `topk` (SAELens `TopKSAE`) and `abstopk`.
//!
//! `h = x̃ W_enc + b_enc` → `hook_sae_acts_pre`; then, with `rescale_acts_by_decoder_norm`,
//! `h ← h ⊙ n` (`n = ‖W_dec[i]‖`, *after* the hook); `f` keeps the `k` largest entries of each
//! row, ReLU'd, zeros elsewhere (abstopk: the `k` largest `|h|`, signs kept, no ReLU). Decode
//! divides `f` by `n` first when rescaling.
//!
//! Ties at the k-th value are broken towards the lower feature index (torch leaves the choice
//! unspecified). The selection runs on the CPU (rayon, `select_nth_unstable` per row: O(d_sae));
//! the result is a 0/1 mask applied with tensor ops, so gradients flow through the kept entries.
use super::arch::{fold_base, linear, w_dec_norms, ArchImpl, SaeWeights};
use super::config::Architecture;
use crate::error::{Error, Result};
use candle_core::{DType, Tensor};
use rayon::prelude::*;

#[derive(Clone, Copy, Debug)]
pub(crate) struct TopK {
    pub k: usize,
    pub rescale_acts_by_decoder_norm: bool,
    /// `abstopk`: rank by `|h|`, keep signs.
    pub abs: bool,
}

/// A `[n, d]` 0/1 mask of the `k` largest entries of each row (by value, or by `|value|`).
///
/// Per row: the k-th largest key by `select_nth_unstable` on a copy of the row, then every
/// key above it plus the first (lowest-index) ties up to `k`.
pub(crate) fn topk_mask(h: &Tensor, k: usize, abs: bool) -> Result<Tensor> {
    let (n, d) = h.dims2()?;
    let k = k.min(d);
    let data: Vec<f32> = h.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
    let mut mask = vec![0f32; n * d];
    if k > 0 && d > 0 {
        let key = move |v: f32| if abs { v.abs() } else { v };
        mask.par_chunks_mut(d)
            .zip(data.par_chunks(d))
            .for_each_init(
                || Vec::<f32>::with_capacity(d),
                |scratch, (m, row)| {
                    if k == d {
                        m.fill(1.0);
                        return;
                    }
                    scratch.clear();
                    scratch.extend(row.iter().map(|v| key(*v)));
                    let (_, kth, _) = scratch.select_nth_unstable_by(k - 1, |a, b| b.total_cmp(a));
                    let th = *kth;
                    let above = row
                        .iter()
                        .filter(|v| key(**v).total_cmp(&th).is_gt())
                        .count();
                    let mut ties = k - above;
                    for (mi, v) in m.iter_mut().zip(row) {
                        match key(*v).total_cmp(&th) {
                            std::cmp::Ordering::Greater => *mi = 1.0,
                            std::cmp::Ordering::Equal if ties > 0 => {
                                *mi = 1.0;
                                ties -= 1;
                            }
                            _ => {}
                        }
                    }
                },
            );
    }
    Ok(Tensor::from_vec(mask, (n, d), h.device())?.to_dtype(h.dtype())?)
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
        let mask = topk_mask(h, self.k, self.abs)?;
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

#[cfg(test)]
mod tests {
    use super::topk_mask;
    use candle_core::{Device, Tensor};

    fn mask(v: &[f32], k: usize, abs: bool) -> Vec<f32> {
        let t = Tensor::from_slice(v, (1, v.len()), &Device::Cpu).unwrap();
        topk_mask(&t, k, abs)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap()
    }

    #[test]
    fn selection_ties_and_edges() {
        assert_eq!(mask(&[1., 5., 3., 4.], 2, false), [0., 1., 0., 1.]);
        // Ties at the k-th value: lower index first.
        assert_eq!(mask(&[2., 2., 2., 1.], 2, false), [1., 1., 0., 0.]);
        assert_eq!(mask(&[1., 2., 2., 2.], 2, false), [0., 1., 1., 0.]);
        // abs ranks by magnitude.
        assert_eq!(mask(&[-9., 1., 3., -2.], 2, true), [1., 0., 1., 0.]);
        // k >= d keeps everything; k = 0 nothing.
        assert_eq!(mask(&[1., 2.], 5, false), [1., 1.]);
        assert_eq!(mask(&[1., 2.], 0, false), [0., 0.]);
        // Rows are independent.
        let t = Tensor::from_slice(&[1f32, 3., 2., 9., 8., 7.], (2, 3), &Device::Cpu).unwrap();
        let m: Vec<f32> = topk_mask(&t, 1, false)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        assert_eq!(m, [0., 1., 0., 1., 0., 0.]);
    }
}
