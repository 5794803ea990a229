//! CPU kernels the training loop needs and candle lacks: top-k masks (per row, per batch,
//! restricted to dead latents), firing statistics, and zero-copy access to f32 data.
use crate::error::{Error, Result};
use candle_core::{CpuStorage, Device, Storage, Tensor};
use rayon::prelude::*;

/// Run `f` on the contiguous f32 data of `t` (copied only if `t` is not contiguous f32 on the
/// CPU).
pub fn with_f32<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> R) -> Result<R> {
    let t = if t.dtype() == candle_core::DType::F32 {
        t.contiguous()?
    } else {
        t.to_dtype(candle_core::DType::F32)?.contiguous()?
    };
    let t = if t.device().is_cpu() {
        t
    } else {
        t.to_device(&Device::Cpu)?
    };
    let (st, layout) = t.storage_and_layout();
    match &*st {
        Storage::Cpu(CpuStorage::F32(v)) => {
            let o = layout.start_offset();
            Ok(f(&v[o..o + layout.shape().elem_count()]))
        }
        _ => Err(Error::Invalid("expected f32 CPU storage".into())),
    }
}

/// The data of `t` as a `Vec<f32>` (flattened).
pub fn to_vec_f32(t: &Tensor) -> Result<Vec<f32>> {
    with_f32(t, |s| s.to_vec())
}

fn rows(t: &Tensor) -> Result<(usize, usize)> {
    match t.dims() {
        [n, d] => Ok((*n, *d)),
        d => Err(Error::Invalid(format!(
            "expected a [batch, d_sae] tensor, got shape {d:?}"
        ))),
    }
}

/// Per-row top-`k` mask of `h` `[n, d]`: 1 where the entry is among the row's `k` largest and
/// (with `positive`) > 0, else 0 (f32, same shape). With `allowed`, only those columns
/// compete (others count as −∞, as SAELens's AuxK). Ties are broken by lower index.
pub fn topk_mask(h: &Tensor, k: usize, allowed: Option<&[bool]>, positive: bool) -> Result<Tensor> {
    let (n, d) = rows(h)?;
    let cols: Vec<u32> = match allowed {
        Some(a) => (0..d as u32).filter(|&j| a[j as usize]).collect(),
        None => (0..d as u32).collect(),
    };
    let k = k.min(cols.len());
    let mut mask = vec![0f32; n * d];
    with_f32(h, |hv| {
        mask.par_chunks_mut(d).zip(hv.par_chunks(d)).for_each_init(
            || Vec::<u32>::with_capacity(cols.len()),
            |idx, (m, row)| {
                if k == 0 {
                    return;
                }
                idx.clear();
                idx.extend_from_slice(&cols);
                let cmp =
                    |a: &u32, b: &u32| row[*b as usize].total_cmp(&row[*a as usize]).then(a.cmp(b));
                if k < idx.len() {
                    idx.select_nth_unstable_by(k - 1, cmp);
                }
                for &j in &idx[..k] {
                    let v = row[j as usize];
                    if !positive || v > 0.0 {
                        m[j as usize] = 1.0;
                    }
                }
            },
        );
    })?;
    Ok(Tensor::from_vec(mask, (n, d), h.device())?)
}

/// BatchTopK's mask: keep the `int(k · n)` largest entries of `relu(h)` over the whole batch
/// (entries equal to the cut-off value are all kept; zeros never count).
pub fn batch_topk_mask(h: &Tensor, k: f64) -> Result<Tensor> {
    let (n, d) = rows(h)?;
    let keep = (k * n as f64) as usize;
    let mask = with_f32(h, |hv| {
        let mut pos: Vec<f32> = hv.par_iter().copied().filter(|v| *v > 0.0).collect();
        let cut = if keep == 0 {
            f32::INFINITY
        } else if pos.len() <= keep {
            0.0
        } else {
            let (_, v, _) = pos.select_nth_unstable_by(keep - 1, |a, b| b.total_cmp(a));
            *v
        };
        hv.par_iter()
            .map(|&v| if v > 0.0 && v >= cut { 1f32 } else { 0.0 })
            .collect::<Vec<f32>>()
    })?;
    Ok(Tensor::from_vec(mask, (n, d), h.device())?)
}

/// Firing statistics of feature activations `f` `[n, d]`: per latent, the number of tokens on
/// which it is non-zero (f32, as SAELens's `act_freq_scores` increments).
pub fn fire_counts(f: &Tensor) -> Result<Vec<f32>> {
    let (_, d) = rows(f)?;
    with_f32(f, |fv| {
        fv.par_chunks(d * 64)
            .map(|block| {
                let mut c = vec![0f32; d];
                for row in block.chunks(d) {
                    for (cj, &v) in c.iter_mut().zip(row) {
                        if v != 0.0 {
                            *cj += 1.0;
                        }
                    }
                }
                c
            })
            .reduce(
                || vec![0f32; d],
                |mut a, b| {
                    for (x, y) in a.iter_mut().zip(b) {
                        *x += y;
                    }
                    a
                },
            )
    })
}

/// The smallest positive entry of `t` (None if there is none).
pub fn min_positive(t: &Tensor) -> Result<Option<f32>> {
    with_f32(t, |v| {
        v.par_iter()
            .copied()
            .filter(|x| *x > 0.0)
            .reduce_with(|a, b| a.min(b))
    })
}

/// Geometric median of the rows of `x` `[n, d]` by Weiszfeld's algorithm (SAELens ≤ 5's
/// `compute_geometric_median`: `maxiter 100`, `eps 1e-6` weight floor, `ftol 1e-20`), in f64.
pub fn geometric_median(x: &Tensor) -> Result<Vec<f32>> {
    let (n, d) = rows(x)?;
    let pts = to_vec_f32(x)?;
    let mut med = vec![0f64; d];
    for row in pts.chunks(d) {
        for (m, v) in med.iter_mut().zip(row) {
            *m += *v as f64 / n as f64;
        }
    }
    let objective = |med: &[f64]| -> f64 {
        pts.chunks(d)
            .map(|r| {
                r.iter()
                    .zip(med)
                    .map(|(a, b)| (*a as f64 - b).powi(2))
                    .sum::<f64>()
                    .sqrt()
            })
            .sum::<f64>()
            / n as f64
    };
    let mut obj = objective(&med);
    for _ in 0..100 {
        let mut num = vec![0f64; d];
        let mut den = 0f64;
        for r in pts.chunks(d) {
            let dist = r
                .iter()
                .zip(&med)
                .map(|(a, b)| (*a as f64 - b).powi(2))
                .sum::<f64>()
                .sqrt();
            let w = 1.0 / dist.max(1e-6);
            den += w;
            for (nm, a) in num.iter_mut().zip(r) {
                *nm += w * *a as f64;
            }
        }
        let new: Vec<f64> = num.iter().map(|v| v / den).collect();
        let new_obj = objective(&new);
        med = new;
        if (obj - new_obj).abs() <= 1e-20 * obj {
            break;
        }
        obj = new_obj;
    }
    Ok(med.into_iter().map(|v| v as f32).collect())
}
