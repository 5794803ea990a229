//! [`TensorExt`]: the torch tensor methods ARENA's exercises reach for that candle's `Tensor`
//! lacks — `topk`, `argsort`, `log_softmax`, `softmax`, and position helpers.
//!
//! ```
//! use saescope::prelude::*;
//! let x = Tensor::new(&[[0.5f32, 3.0, -1.0, 2.0]], &Device::Cpu)?;
//! let top = x.topk(2)?;
//! assert_eq!(top.indices.to_vec2::<u32>()?, [[1, 3]]);
//! assert_eq!(top.values.to_vec2::<f32>()?, [[3.0, 2.0]]);
//! # Ok::<(), saescope::Error>(())
//! ```
use crate::error::{Error, Result};
use candle_core::{DType, IndexOp, Tensor, D};

/// `torch.topk`'s result: the `k` largest values along a dimension, largest first, and their
/// indices (u32).
#[derive(Clone, Debug)]
pub struct TopK {
    /// The values, largest first.
    pub values: Tensor,
    /// Their indices along the dimension (u32).
    pub indices: Tensor,
}

/// Extension methods on candle's [`Tensor`] (in the prelude).
pub trait TensorExt: Sized {
    /// The `k` largest values of the last dimension and their indices (`torch.topk(k)`).
    fn topk(&self, k: usize) -> Result<TopK>;
    /// [`TensorExt::topk`] along dimension `dim`.
    fn topk_dim(&self, k: usize, dim: usize) -> Result<TopK>;
    /// The indices that sort the last dimension in ascending order (`torch.argsort`), u32.
    fn argsort(&self) -> Result<Tensor>;
    /// The indices that sort the last dimension in descending order
    /// (`torch.argsort(descending=True)`), u32.
    fn argsort_descending(&self) -> Result<Tensor>;
    /// `log_softmax` over the last dimension, computed in f32.
    fn log_softmax(&self) -> Result<Tensor>;
    /// `softmax` over the last dimension, computed in f32.
    fn softmax(&self) -> Result<Tensor>;
    /// The last position of `[batch, pos, ...]`: `x[:, -1]`, shape `[batch, ...]`.
    fn last_pos(&self) -> Result<Tensor>;
    /// Row `b`'s entry at position `positions[b]` of `[batch, pos, ...]` (e.g. each prompt's
    /// last real token in a right-padded batch): shape `[batch, ...]`.
    fn at_positions(&self, positions: &[usize]) -> Result<Tensor>;
    /// Every value as a flat `Vec<f32>` (any float or integer dtype).
    fn to_f32_vec(&self) -> Result<Vec<f32>>;
    /// The value of a one-element tensor as f32 (`torch`'s `.item()`).
    fn item(&self) -> Result<f32>;
    /// The diagonal `offset` of the last two dimensions (`x.diagonal(offset, -2, -1)`: 0 the
    /// main diagonal, −1 the one below it, e.g. each query's attention to the previous token):
    /// shape `[..., n]` with the diagonal's length last.
    fn diagonal(&self, offset: i64) -> Result<Tensor>;
}

impl TensorExt for Tensor {
    fn topk(&self, k: usize) -> Result<TopK> {
        let last = self.rank().checked_sub(1).ok_or_else(|| {
            Error::Invalid("topk of a scalar: the tensor has no dimension".into())
        })?;
        self.topk_dim(k, last)
    }

    fn topk_dim(&self, k: usize, dim: usize) -> Result<TopK> {
        let rank = self.rank();
        if dim >= rank {
            return Err(Error::Invalid(format!(
                "topk along dimension {dim} of a tensor of shape {:?}",
                self.dims()
            )));
        }
        let n = self.dim(dim)?;
        if k > n {
            return Err(Error::Invalid(format!(
                "topk: k = {k} > {n}, the size of dimension {dim} (shape {:?})",
                self.dims()
            )));
        }
        let x = self.transpose(dim, rank - 1)?.contiguous()?;
        let idx = x
            .arg_sort_last_dim(false)?
            .narrow(D::Minus1, 0, k)?
            .contiguous()?;
        let values = x.gather(&idx, D::Minus1)?;
        Ok(TopK {
            values: values.transpose(dim, rank - 1)?.contiguous()?,
            indices: idx.transpose(dim, rank - 1)?.contiguous()?,
        })
    }

    fn argsort(&self) -> Result<Tensor> {
        Ok(self.contiguous()?.arg_sort_last_dim(true)?)
    }

    fn argsort_descending(&self) -> Result<Tensor> {
        Ok(self.contiguous()?.arg_sort_last_dim(false)?)
    }

    fn log_softmax(&self) -> Result<Tensor> {
        Ok(candle_nn::ops::log_softmax(
            &self.to_dtype(DType::F32)?,
            D::Minus1,
        )?)
    }

    fn softmax(&self) -> Result<Tensor> {
        Ok(candle_nn::ops::softmax_last_dim(
            &self.to_dtype(DType::F32)?.contiguous()?,
        )?)
    }

    fn last_pos(&self) -> Result<Tensor> {
        if self.rank() < 2 {
            return Err(Error::Invalid(format!(
                "last_pos needs [batch, pos, ...], got shape {:?}",
                self.dims()
            )));
        }
        let p = self.dim(1)?;
        if p == 0 {
            return Err(Error::Invalid("last_pos of an empty sequence".into()));
        }
        Ok(self.i((.., p - 1))?)
    }

    fn at_positions(&self, positions: &[usize]) -> Result<Tensor> {
        if self.rank() < 2 || self.dim(0)? != positions.len() {
            return Err(Error::Invalid(format!(
                "at_positions: {} positions for a tensor of shape {:?} (need [batch = {0}, pos, ...])",
                positions.len(),
                self.dims()
            )));
        }
        let p = self.dim(1)?;
        let rows = positions
            .iter()
            .enumerate()
            .map(|(b, &i)| {
                if i >= p {
                    return Err(Error::Invalid(format!(
                        "at_positions: position {i} of row {b} is past the {p} positions"
                    )));
                }
                Ok(self.i((b, i))?)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Tensor::stack(&rows, 0)?)
    }

    fn to_f32_vec(&self) -> Result<Vec<f32>> {
        Ok(self.flatten_all()?.to_dtype(DType::F32)?.to_vec1()?)
    }

    fn item(&self) -> Result<f32> {
        let v = self.to_f32_vec()?;
        match v.as_slice() {
            [x] => Ok(*x),
            _ => Err(Error::Invalid(format!(
                "item() needs a tensor with one element, got shape {:?}",
                self.dims()
            ))),
        }
    }

    fn diagonal(&self, offset: i64) -> Result<Tensor> {
        let r = self.rank();
        if r < 2 {
            return Err(Error::Invalid(format!(
                "diagonal needs at least two dimensions, got shape {:?}",
                self.dims()
            )));
        }
        let (rows, cols) = (self.dim(r - 2)?, self.dim(r - 1)?);
        let flat: Vec<u32> = (0..rows as i64)
            .map(|q| (q, q + offset))
            .filter(|&(_, k)| k >= 0 && k < cols as i64)
            .map(|(q, k)| (q * cols as i64 + k) as u32)
            .collect();
        let n = flat.len();
        let idx = Tensor::from_vec(flat, n, self.device())?;
        let lead = &self.dims()[..r - 2];
        let merged = self.flatten_from(r - 2)?.contiguous()?;
        let out = merged.index_select(&idx, r - 2)?;
        let mut shape = lead.to_vec();
        shape.push(n);
        Ok(out.reshape(shape)?)
    }
}
