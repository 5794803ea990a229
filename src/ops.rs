//! CPU kernels that candle lacks, shared by inference SAEs and training: top-`k` selection and
//! masks (per row, per batch, restricted to dead latents), firing statistics, the geometric
//! median, and zero-copy access to f32 data.
use crate::error::{Error, Result};
use candle_core::{CpuStorage, Device, Storage, Tensor};
use rayon::prelude::*;

/// Run `f` on the contiguous f32 data of `t` (copied only if `t` is not contiguous f32 on the
/// CPU).
pub(crate) fn with_f32<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> R) -> Result<R> {
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
pub(crate) fn to_vec_f32(t: &Tensor) -> Result<Vec<f32>> {
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

/// The `k` best indices by `keys` (descending, ties to the lower index, NaN keys never
/// selected), among `cols` if given, in no particular order: the one top-`k` selection of the
/// crate (SAEs' `topk` activation, training masks, the fused top-k step). Small `k`: one pass
/// keeping the current best `k`; large `k`: a linear-time selection.
pub(crate) fn top_k(k: usize, keys: &[f32], cols: Option<&[u32]>) -> Vec<u32> {
    if k == 0 {
        return Vec::new();
    }
    let n = cols.map_or(keys.len(), |c| c.len());
    let col = |i: usize| cols.map_or(i as u32, |c| c[i]);
    if k > 64 || k >= n {
        let mut all: Vec<(u32, f32)> = (0..n)
            .map(|i| (col(i), keys[col(i) as usize]))
            .filter(|p| !p.1.is_nan())
            .collect();
        if k < all.len() {
            all.select_nth_unstable_by(k.max(1) - 1, |a, b| {
                b.1.total_cmp(&a.1).then(a.0.cmp(&b.0))
            });
        }
        all.truncate(k);
        return all.into_iter().map(|(j, _)| j).collect();
    }
    let mut best: Vec<(u32, f32)> = Vec::with_capacity(k);
    let mut i = 0;
    while best.len() < k && i < n {
        let v = keys[col(i) as usize];
        if !v.is_nan() {
            best.push((col(i), v));
        }
        i += 1;
    }
    if best.len() < k {
        return best.into_iter().map(|(j, _)| j).collect();
    }
    /// The position and key of the current k-th entry.
    fn kth(best: &[(u32, f32)]) -> (usize, f32) {
        let beats = |a: (u32, f32), b: (u32, f32)| a.1 > b.1 || (a.1 == b.1 && a.0 < b.0);
        let w = (0..best.len()).fold(0, |w, i| if beats(best[w], best[i]) { i } else { w });
        (w, best[w].1)
    }
    fn replace(best: &mut [(u32, f32)], worst: usize, j: u32, v: f32) -> (usize, f32) {
        best[worst] = (j, v);
        kth(best)
    }
    let (mut worst, mut cut) = kth(&best);
    match cols {
        None => {
            for (j, &v) in keys.iter().enumerate().skip(i) {
                if v > cut {
                    (worst, cut) = replace(&mut best, worst, j as u32, v);
                }
            }
        }
        Some(c) => {
            for &j in &c[i..] {
                let v = keys[j as usize];
                if v > cut {
                    (worst, cut) = replace(&mut best, worst, j, v);
                }
            }
        }
    }
    best.into_iter().map(|(j, _)| j).collect()
}

/// What competes in [`topk_mask`].
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct TopKSelect<'a> {
    /// Only these columns compete (others count as −∞, as SAELens's AuxK over dead latents).
    pub allowed: Option<&'a [bool]>,
    /// A selected entry must also be > 0 to be kept.
    pub positive: bool,
    /// Rank by `|value|` (`abstopk`).
    pub abs: bool,
}

/// Per-row top-`k` mask of `h` `[n, d]`: 1 where the entry is among the row's `k` best by
/// [`top_k`] (by value, or `|value|`), restricted and filtered as `sel` says, else 0 (f32, same
/// shape).
pub(crate) fn topk_mask(h: &Tensor, k: usize, sel: TopKSelect) -> Result<Tensor> {
    let (n, d) = rows(h)?;
    let cols: Option<Vec<u32>> = sel
        .allowed
        .map(|a| (0..d as u32).filter(|&j| a[j as usize]).collect());
    let mut mask = vec![0f32; n * d];
    with_f32(h, |hv| {
        mask.par_chunks_mut(d).zip(hv.par_chunks(d)).for_each_init(
            || Vec::<f32>::with_capacity(if sel.abs { d } else { 0 }),
            |scratch, (m, row)| {
                let keys: &[f32] = if sel.abs {
                    scratch.clear();
                    scratch.extend(row.iter().map(|v| v.abs()));
                    scratch
                } else {
                    row
                };
                for j in top_k(k, keys, cols.as_deref()) {
                    if !sel.positive || row[j as usize] > 0.0 {
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
pub(crate) fn batch_topk_mask(h: &Tensor, k: f64) -> Result<Tensor> {
    let (n, d) = rows(h)?;
    let mask = with_f32(h, |hv| {
        let cut = batch_topk_cut(hv, (k * n as f64) as usize);
        hv.par_iter()
            .map(|&v| if v > 0.0 && v >= cut { 1f32 } else { 0.0 })
            .collect::<Vec<f32>>()
    })?;
    Ok(Tensor::from_vec(mask, (n, d), h.device())?)
}

/// BatchTopK's cut-off over a whole batch: the `keep`-th largest positive value (0 when there
/// are at most `keep`, +∞ when `keep` is 0); the entries `v > 0 && v >= cut` are kept.
///
/// Positive floats order like their bit patterns, so a histogram of the top 16 bits finds the
/// bucket holding the `keep`-th largest, and only that bucket is sorted (the value is the
/// same as a full selection's).
pub(crate) fn batch_topk_cut(values: &[f32], keep: usize) -> f32 {
    if keep == 0 {
        return f32::INFINITY;
    }
    const BUCKETS: usize = 1 << 15; // positive floats: the sign bit is 0
    let bucket = |v: f32| (v.to_bits() >> 16) as usize;
    let hist = values
        .par_chunks(1 << 18)
        .map(|c| {
            let mut h = vec![0usize; BUCKETS];
            for &v in c {
                if v > 0.0 {
                    h[bucket(v)] += 1;
                }
            }
            h
        })
        .reduce(
            || vec![0usize; BUCKETS],
            |mut a, b| {
                a.iter_mut().zip(b).for_each(|(x, y)| *x += y);
                a
            },
        );
    let mut above = 0;
    for b in (0..BUCKETS).rev() {
        if above + hist[b] >= keep {
            let mut inb: Vec<f32> = values
                .par_iter()
                .copied()
                .filter(|&v| v > 0.0 && bucket(v) == b)
                .collect();
            let (_, v, _) = inb.select_nth_unstable_by(keep - above - 1, |a, b| b.total_cmp(a));
            return *v;
        }
        above += hist[b];
    }
    0.0
}

/// Firing statistics of feature activations `f` `[n, d]`: per latent, the number of tokens on
/// which it is non-zero (f32, as SAELens's `act_freq_scores` increments).
pub(crate) fn fire_counts(f: &Tensor) -> Result<Vec<f32>> {
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
pub(crate) fn min_positive(t: &Tensor) -> Result<Option<f32>> {
    with_f32(t, |v| {
        v.par_iter()
            .copied()
            .filter(|x| *x > 0.0)
            .reduce_with(|a, b| a.min(b))
    })
}

/// Geometric median of the rows of `x` `[n, d]` by Weiszfeld's algorithm (SAELens ≤ 5's
/// `compute_geometric_median`: `maxiter 100`, `eps 1e-6` weight floor, `ftol 1e-20`), in f64.
pub(crate) fn geometric_median(x: &Tensor) -> Result<Vec<f32>> {
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

#[cfg(test)]
mod tests {
    use super::{topk_mask, TopKSelect};
    use candle_core::{Device, Tensor};

    fn mask(v: &[f32], k: usize, sel: TopKSelect) -> Vec<f32> {
        let t = Tensor::from_slice(v, (1, v.len()), &Device::Cpu).unwrap();
        topk_mask(&t, k, sel)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap()
    }

    #[test]
    fn selection_ties_and_edges() {
        let plain = TopKSelect::default();
        let abs = TopKSelect { abs: true, ..plain };
        assert_eq!(mask(&[1., 5., 3., 4.], 2, plain), [0., 1., 0., 1.]);
        // Ties at the k-th value: lower index first (both the one-pass and the selection path).
        assert_eq!(mask(&[2., 2., 2., 1.], 2, plain), [1., 1., 0., 0.]);
        assert_eq!(mask(&[1., 2., 2., 2.], 2, plain), [0., 1., 1., 0.]);
        let mut row = vec![1f32; 100];
        row[99] = 2.0;
        let m = mask(&row, 70, plain);
        assert_eq!(m[99], 1.0);
        assert_eq!(m[..69], vec![1f32; 69][..]);
        assert_eq!(m[69..99], vec![0f32; 30][..]);
        // abs ranks by magnitude.
        assert_eq!(mask(&[-9., 1., 3., -2.], 2, abs), [1., 0., 1., 0.]);
        // k >= d keeps everything; k = 0 nothing; NaN never.
        assert_eq!(mask(&[1., 2.], 5, plain), [1., 1.]);
        assert_eq!(mask(&[1., 2.], 0, plain), [0., 0.]);
        assert_eq!(mask(&[f32::NAN, 2., 1.], 1, plain), [0., 1., 0.]);
        // Restricted columns, positive entries only.
        let allowed = [true, false, true, true];
        let sel = TopKSelect {
            allowed: Some(&allowed),
            positive: true,
            abs: false,
        };
        assert_eq!(mask(&[1., 9., -1., 3.], 3, sel), [1., 0., 0., 1.]);
        // Rows are independent.
        let t = Tensor::from_slice(&[1f32, 3., 2., 9., 8., 7.], (2, 3), &Device::Cpu).unwrap();
        let m: Vec<f32> = topk_mask(&t, 1, plain)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        assert_eq!(m, [0., 1., 0., 1., 0., 0.]);
    }
}
