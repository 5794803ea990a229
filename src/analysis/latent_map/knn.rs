//! Exact nearest neighbours by blocked matrix products (candle's CPU matmul), cosine or
//! euclidean: the neighbour graph of UMAP and the high-dimensional ranks of
//! [`super::trustworthiness`].
use crate::error::{Error, Result};
use candle_core::{Device, Tensor};
use rayon::prelude::*;

/// The distance between high-dimensional rows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MapMetric {
    /// `1 − cos(x, y)` (umap-learn's `metric="cosine"`); an all-zero row is at distance 1 from
    /// every other row.
    #[default]
    Cosine,
    /// `‖x − y‖₂`.
    Euclidean,
}

/// Rows per block of the blocked products (a block of similarities is `BLOCK × n` f32).
const BLOCK: usize = 512;

/// Checks a row-major matrix: `dim > 0`, a whole number of rows, at least `min_rows` of them,
/// every value finite. Returns the number of rows.
pub(crate) fn check_matrix(what: &str, data: &[f32], dim: usize, min_rows: usize) -> Result<usize> {
    if dim == 0 || !data.len().is_multiple_of(dim) {
        return Err(Error::Invalid(format!(
            "{what}: {} values do not make rows of width {dim}; pass a row-major [n, dim] matrix \
             with dim > 0",
            data.len()
        )));
    }
    let n = data.len() / dim;
    if n < min_rows {
        return Err(Error::Invalid(format!(
            "{what}: {n} rows, at least {min_rows} are needed"
        )));
    }
    if let Some(p) = data.iter().position(|v| !v.is_finite()) {
        return Err(Error::Invalid(format!(
            "{what}: row {} has a non-finite value (NaN or ±inf); drop or fix that row first",
            p / dim
        )));
    }
    Ok(n)
}

/// The rows prepared for dot products: unit rows for cosine (zero rows stay zero), as given
/// for euclidean; plus the squared norms.
fn prepared(data: &[f32], dim: usize, metric: MapMetric) -> (Vec<f32>, Vec<f32>) {
    let mut rows = data.to_vec();
    let mut sq: Vec<f32> = rows
        .chunks(dim)
        .map(|r| r.iter().map(|v| v * v).sum())
        .collect();
    if metric == MapMetric::Cosine {
        for (r, s) in rows.chunks_mut(dim).zip(sq.iter_mut()) {
            let norm = s.sqrt();
            if norm > 0.0 {
                r.iter_mut().for_each(|v| *v /= norm);
                *s = 1.0;
            }
        }
    }
    (rows, sq)
}

/// Calls `f(i, distances from row i to every row)` for every row `i`, in parallel over the
/// rows of each block (`f` sees each row once; the order of calls is unspecified).
pub(crate) fn for_each_distance_row<F>(
    data: &[f32],
    dim: usize,
    metric: MapMetric,
    f: F,
) -> Result<()>
where
    F: Fn(usize, &[f32]) + Sync,
{
    let n = data.len() / dim;
    let (rows, sq) = prepared(data, dim, metric);
    let all = Tensor::from_slice(&rows, (n, dim), &Device::Cpu)?;
    let all_t = all.t()?;
    for start in (0..n).step_by(BLOCK) {
        let b = BLOCK.min(n - start);
        let dots: Vec<f32> = all
            .narrow(0, start, b)?
            .matmul(&all_t)?
            .flatten_all()?
            .to_vec1()?;
        dots.par_chunks(n).enumerate().for_each(|(r, dot)| {
            let i = start + r;
            let d: Vec<f32> = match metric {
                MapMetric::Cosine => dot
                    .iter()
                    .zip(&sq)
                    .map(|(&c, &s)| {
                        if s > 0.0 && sq[i] > 0.0 {
                            (1.0 - c).max(0.0)
                        } else {
                            1.0
                        }
                    })
                    .collect(),
                MapMetric::Euclidean => dot
                    .iter()
                    .zip(&sq)
                    .map(|(&c, &s)| (sq[i] + s - 2.0 * c).max(0.0).sqrt())
                    .collect(),
            };
            f(i, &d);
        });
    }
    Ok(())
}

/// The indices of the `k` largest `keys`, largest first, ties to the lower index.
pub(crate) fn best_sorted(k: usize, keys: &[f32]) -> Vec<u32> {
    let mut top = crate::ops::top_k(k.min(keys.len()), keys, None);
    top.sort_by(|&a, &b| {
        keys[b as usize]
            .total_cmp(&keys[a as usize])
            .then(a.cmp(&b))
    });
    top
}

/// The `k` nearest rows of every row, itself first at distance 0, then by distance (ties to
/// the lower index): `(indices, distances)`, each `n × k` row-major.
pub(crate) fn exact_knn(
    data: &[f32],
    dim: usize,
    k: usize,
    metric: MapMetric,
) -> Result<(Vec<u32>, Vec<f32>)> {
    let n = data.len() / dim;
    let idx = std::sync::Mutex::new(vec![0u32; n * k]);
    let dist = std::sync::Mutex::new(vec![0f32; n * k]);
    for_each_distance_row(data, dim, metric, |i, d| {
        let keys: Vec<f32> = d
            .iter()
            .enumerate()
            .map(|(j, &v)| if j == i { f32::INFINITY } else { -v })
            .collect();
        let top = best_sorted(k, &keys);
        let (mut idx, mut dist) = (idx.lock().unwrap(), dist.lock().unwrap());
        for (c, &j) in top.iter().enumerate() {
            idx[i * k + c] = j;
            dist[i * k + c] = if j as usize == i { 0.0 } else { d[j as usize] };
        }
    })?;
    Ok((idx.into_inner().unwrap(), dist.into_inner().unwrap()))
}
