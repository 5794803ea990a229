//! ARENA's `SparseTensor`: the non-zero entries of a dense tensor (latent activations are
//! sparse), as values, their indices and the dense shape.
use crate::error::{Error, Result};
use crate::ops::to_vec_f32;
use candle_core::{Device, Tensor};

/// The positive entries of a dense tensor in row-major order (`dense[dense > 0]` and
/// `argwhere(dense > 0)`, as ARENA's `SparseTensor.from_dense`).
#[derive(Clone, Debug, PartialEq)]
pub struct SparseActs {
    /// The positive values, `[nnz]`.
    pub values: Vec<f32>,
    /// The index of each value in the dense tensor, one `Vec` of `shape.len()` entries each
    /// (`[batch, pos, latent]` for latent activations).
    pub indices: Vec<Vec<usize>>,
    /// The dense tensor's shape.
    pub shape: Vec<usize>,
}

impl SparseActs {
    /// The positive entries of `dense` (any dtype, any rank ≥ 1).
    pub fn from_dense(dense: &Tensor) -> Result<Self> {
        let shape = dense.dims().to_vec();
        if shape.is_empty() {
            return Err(Error::Invalid(
                "SparseActs::from_dense needs a tensor of rank ≥ 1, got a scalar".into(),
            ));
        }
        let flat = to_vec_f32(dense)?;
        let mut values = Vec::new();
        let mut indices = Vec::new();
        for (i, &v) in flat.iter().enumerate() {
            if v > 0.0 {
                values.push(v);
                indices.push(unravel(i, &shape));
            }
        }
        Ok(SparseActs {
            values,
            indices,
            shape,
        })
    }

    /// The number of non-zero entries.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Whether there are no non-zero entries.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Row-major offset of each entry in the flattened dense tensor.
    pub fn flat_indices(&self) -> Vec<usize> {
        self.indices
            .iter()
            .map(|ix| ravel(ix, &self.shape))
            .collect()
    }

    /// The dense tensor (f32) back (ARENA's `SparseTensor.from_sparse(...).dense`).
    pub fn to_dense(&self, device: &Device) -> Result<Tensor> {
        let n: usize = self.shape.iter().product();
        let mut d = vec![0f32; n];
        for (&f, &v) in self.flat_indices().iter().zip(&self.values) {
            d[f] = v;
        }
        Ok(Tensor::from_vec(d, self.shape.as_slice(), device)?)
    }

    /// The values as a `[nnz]` f32 tensor.
    pub fn values_tensor(&self, device: &Device) -> Result<Tensor> {
        Ok(Tensor::from_slice(&self.values, self.values.len(), device)?)
    }

    /// Whether an entry with index `ix` is present.
    pub fn contains(&self, ix: &[usize]) -> bool {
        self.indices.iter().any(|i| i == ix)
    }
}

/// Row-major multi-index of flat offset `i` in `shape`.
fn unravel(mut i: usize, shape: &[usize]) -> Vec<usize> {
    let mut ix = vec![0; shape.len()];
    for (d, &n) in shape.iter().enumerate().rev() {
        ix[d] = i % n;
        i /= n;
    }
    ix
}

/// Row-major flat offset of `ix` in `shape`.
fn ravel(ix: &[usize], shape: &[usize]) -> usize {
    ix.iter().zip(shape).fold(0, |acc, (&i, &n)| acc * n + i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let d = Tensor::new(&[[[0f32, 2.0, 0.0], [1.5, 0.0, -1.0]]], &Device::Cpu).unwrap();
        let s = SparseActs::from_dense(&d).unwrap();
        assert_eq!(s.values, vec![2.0, 1.5]);
        assert_eq!(s.indices, vec![vec![0, 0, 1], vec![0, 1, 0]]);
        assert_eq!(s.flat_indices(), vec![1, 3]);
        let back = s.to_dense(&Device::Cpu).unwrap().flatten_all().unwrap();
        assert_eq!(
            back.to_vec1::<f32>().unwrap(),
            vec![0.0, 2.0, 0.0, 1.5, 0.0, 0.0]
        );
    }
}
