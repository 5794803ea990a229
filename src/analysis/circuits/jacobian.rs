//! Jacobians of a function that maps a batch of input vectors to a batch of output vectors,
//! several output rows per backward pass: the input is repeated once per output being
//! differentiated (a batch dimension), and each copy seeds a different output, so one backward
//! pass gives as many rows of the Jacobian as there are copies (what `torch.func.jacrev` does
//! with `vmap` over `vjp`).
use crate::error::{Error, Result};
use crate::tensor_ids;
use candle_core::{DType, Tensor, Var};
use std::time::Instant;

/// A Jacobian and what went into it.
pub(crate) struct Jacobian {
    /// `[n_out, n_in]`: `values[o, i] = ∂ out[o] / ∂ in[i]`.
    pub values: Tensor,
    /// The function's outputs at the input, `[n_out]` (what was differentiated).
    pub outputs: Tensor,
    /// Output rows differentiated per second (wall clock, backward passes included).
    pub outputs_per_sec: f64,
}

/// The Jacobian of `f` at `x0` (`[n_in]`): `f` maps `[c, n_in]` to `[c, n_out]` row by row (row
/// `r` of the output depends on row `r` of the input only). `batch` output rows are seeded per
/// backward pass. `held` are the tensors the pass reads that were made elsewhere (model and SAE
/// weights, cached activations): see `crate::tensor_ids`.
pub(crate) fn jacobian<'a>(
    x0: &Tensor,
    batch: usize,
    held: impl IntoIterator<Item = &'a Tensor>,
    f: impl Fn(&Tensor) -> Result<Tensor>,
) -> Result<Jacobian> {
    if batch == 0 {
        return Err(Error::Invalid("jacobian: batch must be ≥ 1".into()));
    }
    let x0 = x0.to_dtype(DType::F32)?.detach();
    let n_in = x0.dim(0)?;
    tensor_ids::advance_past(held);
    tensor_ids::advance_past([&x0]);
    let outputs = f(&x0.unsqueeze(0)?)?.squeeze(0)?.detach();
    let n_out = outputs.dim(0)?;
    let start = Instant::now();
    let mut rows = Vec::with_capacity(n_out.div_ceil(batch));
    for first in (0..n_out).step_by(batch) {
        let c = batch.min(n_out - first);
        let var = Var::from_tensor(&x0.unsqueeze(0)?.repeat((c, 1))?)?;
        let y = f(var.as_tensor())?;
        if y.dims() != [c, n_out] {
            return Err(Error::Invalid(format!(
                "jacobian: the function returned {:?} for {c} rows, expected [{c}, {n_out}]",
                y.dims()
            )));
        }
        let seed = seed_matrix(c, n_out, first, y.device())?;
        let grads = (y.to_dtype(DType::F32)? * seed)?.sum_all()?.backward()?;
        let g = match grads.get(var.as_tensor()) {
            Some(g) => g.detach(),
            None => Tensor::zeros((c, n_in), DType::F32, x0.device())?,
        };
        rows.push(g);
    }
    let values = if rows.is_empty() {
        Tensor::zeros((0, n_in), DType::F32, x0.device())?
    } else {
        Tensor::cat(&rows, 0)?
    };
    let secs = start.elapsed().as_secs_f64().max(1e-9);
    Ok(Jacobian {
        values,
        outputs,
        outputs_per_sec: n_out as f64 / secs,
    })
}

/// `[c, n_out]` with a 1 at `(r, first + r)`: row `r` of the batch seeds output `first + r`.
fn seed_matrix(c: usize, n_out: usize, first: usize, dev: &candle_core::Device) -> Result<Tensor> {
    let mut m = vec![0f32; c * n_out];
    for r in 0..c {
        m[r * n_out + first + r] = 1.0;
    }
    Ok(Tensor::from_vec(m, (c, n_out), dev)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn jacobian_of_a_small_map() {
        // f(x) = [x0 * x1, x1², sin x0]
        let f = |x: &Tensor| -> Result<Tensor> {
            let a = x.narrow(1, 0, 1)?;
            let b = x.narrow(1, 1, 1)?;
            Ok(Tensor::cat(&[(&a * &b)?, b.sqr()?, a.sin()?], 1)?)
        };
        let x0 = Tensor::new(&[0.5f32, -2.0], &Device::Cpu).unwrap();
        for batch in [1, 2, 3, 8] {
            let j = jacobian(&x0, batch, [], f).unwrap();
            let v = j.values.to_vec2::<f32>().unwrap();
            let want = [[-2.0, 0.5], [0.0, -4.0], [0.5f32.cos(), 0.0]];
            for (r, w) in v.iter().zip(want) {
                for (a, b) in r.iter().zip(w) {
                    assert!((a - b).abs() < 1e-6, "{v:?}");
                }
            }
        }
    }
}
