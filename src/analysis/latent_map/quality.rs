//! How good a map is: scikit-learn's `trustworthiness` of an embedding and
//! `adjusted_rand_score` between two labellings.
use super::knn::{best_sorted, check_matrix, for_each_distance_row, MapMetric};
use crate::error::{Error, Result};
use rayon::prelude::*;
use std::collections::HashMap;

/// The `k` nearest other rows of every row of a low-dimensional `data` (euclidean, computed
/// from coordinate differences), nearest first, ties to the lower index; `n × k` row-major.
pub(crate) fn low_dim_knn(data: &[f32], dim: usize, k: usize) -> Vec<u32> {
    let n = data.len() / dim;
    (0..n)
        .into_par_iter()
        .flat_map_iter(|i| {
            let row = &data[i * dim..(i + 1) * dim];
            let keys: Vec<f32> = (0..n)
                .map(|j| {
                    if j == i {
                        return f32::NEG_INFINITY;
                    }
                    let other = &data[j * dim..(j + 1) * dim];
                    -row.iter()
                        .zip(other)
                        .map(|(a, b)| (a - b) * (a - b))
                        .sum::<f32>()
                })
                .collect();
            best_sorted(k, &keys).into_iter()
        })
        .collect()
}

/// scikit-learn's `sklearn.manifold.trustworthiness(high, low, n_neighbors=k, metric)`: 1 when
/// every point's `k` nearest neighbours in the embedding `low` are among its `k` nearest in
/// `high`, lower as embedded neighbours come from further away in `high` (penalised by their
/// rank there). `metric` is the distance in `high` (as scikit-learn's `metric`); the
/// embedding is always euclidean (as scikit-learn). For unit rows (decoder directions) cosine
/// and euclidean rank neighbours identically.
///
/// High-dimensional distances come from f32 matrix products (exact up to f32 rounding).
/// Errors ([`Error::Invalid`]) when the two matrices differ in rows, hold non-finite values, or
/// `k` is not in `1..n/2` (scikit-learn's condition).
pub fn trustworthiness(
    high: &[f32],
    high_dim: usize,
    low: &[f32],
    low_dim: usize,
    k: usize,
    metric: MapMetric,
) -> Result<f64> {
    let n = check_matrix("trustworthiness (high)", high, high_dim, 1)?;
    let m = check_matrix("trustworthiness (low)", low, low_dim, 1)?;
    if n != m {
        return Err(Error::Invalid(format!(
            "trustworthiness: {n} high-dimensional rows but {m} embedded rows; pass the same points"
        )));
    }
    if k == 0 || 2 * k >= n {
        return Err(Error::Invalid(format!(
            "trustworthiness: k = {k} with {n} points; use 1 <= k < n / 2 (scikit-learn's limit)"
        )));
    }
    let low_nn = low_dim_knn(low, low_dim, k);
    let penalty = std::sync::atomic::AtomicU64::new(0);
    for_each_distance_row(high, high_dim, metric, |i, d| {
        let mut sum = 0u64;
        for &j in &low_nn[i * k..(i + 1) * k] {
            let dj = d[j as usize];
            // Rank of j among i's neighbours in `high` (1 = nearest), ties to the lower index.
            let rank = d
                .iter()
                .enumerate()
                .filter(|&(l, &v)| l != i && (v < dj || (v == dj && l < j as usize)))
                .count()
                + 1;
            sum += rank.saturating_sub(k) as u64;
        }
        penalty.fetch_add(sum, std::sync::atomic::Ordering::Relaxed);
    })?;
    let t = penalty.into_inner() as f64;
    let (n, k) = (n as f64, k as f64);
    Ok(1.0 - t * (2.0 / (n * k * (2.0 * n - 3.0 * k - 1.0))))
}

/// scikit-learn's `adjusted_rand_score(a, b)`: pair-counting agreement of two labellings of
/// the same points, 1 for identical partitions (whatever the label names), about 0 for
/// independent ones. Noise (`-1`) is a label like any other, as in scikit-learn.
///
/// Errors ([`Error::Invalid`]) when the labellings differ in length.
pub fn adjusted_rand_index(a: &[i32], b: &[i32]) -> Result<f64> {
    if a.len() != b.len() {
        return Err(Error::Invalid(format!(
            "adjusted_rand_index: {} labels against {}; label the same points",
            a.len(),
            b.len()
        )));
    }
    let mut cells: HashMap<(i32, i32), i128> = HashMap::new();
    let (mut rows, mut cols): (HashMap<i32, i128>, HashMap<i32, i128>) = Default::default();
    for (&x, &y) in a.iter().zip(b) {
        *cells.entry((x, y)).or_default() += 1;
        *rows.entry(x).or_default() += 1;
        *cols.entry(y).or_default() += 1;
    }
    let sq = |m: &mut dyn Iterator<Item = &i128>| m.map(|c| c * c).sum::<i128>();
    let n = a.len() as i128;
    let sum_sq = sq(&mut cells.values());
    let tp = sum_sq - n;
    let fp = sq(&mut cols.values()) - sum_sq;
    let fneg = sq(&mut rows.values()) - sum_sq;
    let tn = n * n - fp - fneg - sum_sq;
    if fneg == 0 && fp == 0 {
        return Ok(1.0);
    }
    let num = (tp * tn - fneg * fp) as f64;
    let den = ((tp + fneg) * (fneg + tn) + (tp + fp) * (fp + tn)) as f64;
    Ok(2.0 * num / den)
}
