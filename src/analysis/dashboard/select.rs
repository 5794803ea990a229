//! Statistics over a latent's recorded firings: histograms (`torch.histc`), quantiles
//! (`torch.quantile`, sae_vis's `FeatureStatistics` grid), the top-activating examples and the
//! interval (quantile) groups.
use super::types::{FeatureStats, Histogram};
use crate::rng::{Draw, Rng};

/// A token where a latent is active: row index, position in the row, activation (> 0).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Firing {
    pub row: u32,
    pub pos: u32,
    pub act: f32,
}

/// `torch.histc(data, bins, min = min(data), max = max(data))`: equal-width bins, values equal
/// to the maximum in the last bin; a single distinct value widens the range by ±1 (as torch).
pub fn histc(data: &[f32], n_bins: usize) -> Histogram {
    let n_bins = n_bins.max(1);
    if data.is_empty() {
        return Histogram {
            edges: vec![0.0; n_bins + 1],
            counts: vec![0; n_bins],
        };
    }
    let (mut lo, mut hi) = data
        .iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &x| {
            (a.min(x), b.max(x))
        });
    if lo == hi {
        lo -= 1.0;
        hi += 1.0;
    }
    let width = (hi - lo) as f64;
    let mut counts = vec![0u64; n_bins];
    for &x in data {
        let b = (((x - lo) as f64) * n_bins as f64 / width) as usize;
        counts[b.min(n_bins - 1)] += 1;
    }
    let edges = (0..=n_bins)
        .map(|i| (lo as f64 + width * i as f64 / n_bins as f64) as f32)
        .collect();
    Histogram { edges, counts }
}

/// sae_vis's `FeatureStatistics` quantile grid: `arange(0, .95, 1e-3) ∪ arange(.95, .99, 1e-4)
/// ∪ arange(.99, 1, 1e-5) ∪ {1}`.
pub fn quantile_grid() -> Vec<f32> {
    let mut q: Vec<f32> = (0..950).map(|i| i as f32 * 1e-3).collect();
    q.extend((0..400).map(|i| 0.95 + i as f32 * 1e-4));
    q.extend((0..1000).map(|i| 0.99 + i as f32 * 1e-5));
    q.push(1.0);
    q
}

/// `torch.quantile(acts, grid)` (linear interpolation) of a latent over `n_tokens` tokens, of
/// which the ones not in `active_sorted` (ascending) are 0.
pub fn quantiles(active_sorted: &[f32], n_tokens: u64) -> Vec<(f32, f32)> {
    if n_tokens == 0 {
        return Vec::new();
    }
    let n_zero = n_tokens.saturating_sub(active_sorted.len() as u64);
    let at = |k: u64| -> f32 {
        if k < n_zero {
            0.0
        } else {
            active_sorted[(k - n_zero) as usize]
        }
    };
    quantile_grid()
        .into_iter()
        .map(|q| {
            let pos = q as f64 * (n_tokens - 1) as f64;
            let lo = pos.floor() as u64;
            let hi = (lo + 1).min(n_tokens - 1);
            let (a, b) = (at(lo), at(hi));
            (q, a + (b - a) * (pos - lo as f64) as f32)
        })
        .collect()
}

/// Statistics of a latent from its firings sorted by activation, descending.
pub(crate) fn stats(sorted_desc: &[Firing], n_tokens: u64) -> FeatureStats {
    let n_active = sorted_desc.len() as u64;
    let sum: f64 = sorted_desc.iter().map(|f| f.act as f64).sum();
    FeatureStats {
        n_tokens,
        n_active,
        frac_nonzero: if n_tokens == 0 {
            0.0
        } else {
            n_active as f64 / n_tokens as f64
        },
        max: sorted_desc.first().map_or(0.0, |f| f.act),
        mean_active: if n_active == 0 {
            0.0
        } else {
            (sum / n_active as f64) as f32
        },
    }
}

/// Whether position `pos` of a row of `len` tokens may be an example centre (sae_vis: at least
/// `buffer.0 + 1` tokens before it, `buffer.1` after it).
pub(crate) fn eligible(pos: u32, len: usize, buffer: (usize, usize)) -> bool {
    let p = pos as usize;
    p > buffer.0 && p + buffer.1 < len
}

/// The `k` top-activating eligible firings (input sorted by activation, descending), greedily,
/// skipping any whose centre lies within `max(buffer)` positions of a chosen one in the same
/// row (ARENA's `get_k_largest_indices(no_overlap=True)`).
pub(crate) fn top_examples(
    sorted_desc: &[Firing],
    k: usize,
    buffer: (usize, usize),
    row_len: &dyn Fn(u32) -> usize,
) -> Vec<Firing> {
    let gap = buffer.0.max(buffer.1) as u32;
    let mut out: Vec<Firing> = Vec::with_capacity(k);
    for f in sorted_desc {
        if out.len() >= k {
            break;
        }
        if !eligible(f.pos, row_len(f.row), buffer) {
            continue;
        }
        if out
            .iter()
            .any(|o| o.row == f.row && o.pos.abs_diff(f.pos) <= gap)
        {
            continue;
        }
        out.push(*f);
    }
    out
}

/// One interval group: `[lower, upper]`, its share of the active tokens and up to `k` firings
/// drawn uniformly without replacement (seeded) from its eligible ones, by activation, descending.
pub(crate) struct IntervalPick {
    pub lower: f32,
    pub upper: f32,
    pub n_in_range: u64,
    pub share: f64,
    pub picks: Vec<Firing>,
}

/// sae_vis's quantile groups: edges `linspace(0, max, n + 1)` with the first set to 1e-6;
/// intervals from the highest down.
pub(crate) fn interval_groups(
    sorted_desc: &[Firing],
    n_intervals: usize,
    k: usize,
    buffer: (usize, usize),
    row_len: &dyn Fn(u32) -> usize,
    seed: u64,
) -> Vec<IntervalPick> {
    let max = match sorted_desc.first() {
        Some(f) if n_intervals > 0 => f.act,
        _ => return Vec::new(),
    };
    let n_active = sorted_desc.len() as f64;
    let mut edges: Vec<f32> = (0..=n_intervals)
        .map(|i| (max as f64 * i as f64 / n_intervals as f64) as f32)
        .collect();
    edges[0] = 1e-6;
    let mut out = Vec::with_capacity(n_intervals);
    for i in (0..n_intervals).rev() {
        let (lower, upper) = (edges[i], edges[i + 1]);
        // Sorted descending: the range is a contiguous slice.
        let start = sorted_desc.partition_point(|f| f.act > upper);
        let end = sorted_desc.partition_point(|f| f.act >= lower);
        let range = &sorted_desc[start..end.max(start)];
        let cands: Vec<Firing> = range
            .iter()
            .filter(|f| eligible(f.pos, row_len(f.row), buffer))
            .copied()
            .collect();
        let mut rng = Rng::new(crate::rng::derive_seed(seed, &[i as u64]));
        let mut idx: Vec<usize> = (0..cands.len()).collect();
        let take = k.min(cands.len());
        for j in 0..take {
            let r = j + rng.below(cands.len() - j);
            idx.swap(j, r);
        }
        let mut picks: Vec<Firing> = idx[..take].iter().map(|&j| cands[j]).collect();
        picks.sort_by(|a, b| b.act.total_cmp(&a.act));
        out.push(IntervalPick {
            lower,
            upper,
            n_in_range: range.len() as u64,
            share: if n_active > 0.0 {
                range.len() as f64 / n_active
            } else {
                0.0
            },
            picks,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histc_matches_torch_semantics() {
        let h = histc(&[0.0, 1.0, 2.0, 3.0, 4.0], 4);
        assert_eq!(h.counts, vec![1, 1, 1, 2]);
        assert_eq!(h.edges, vec![0.0, 1.0, 2.0, 3.0, 4.0]);
        let h = histc(&[2.0, 2.0], 2);
        assert_eq!(h.edges, vec![1.0, 2.0, 3.0]);
        assert_eq!(h.counts, vec![0, 2]);
    }

    #[test]
    fn quantiles_interpolate_like_torch() {
        // acts over 5 tokens: [0, 0, 1, 2, 4]
        let q = quantiles(&[1.0, 2.0, 4.0], 5);
        let get = |p: f32| q.iter().find(|(x, _)| (*x - p).abs() < 1e-7).unwrap().1;
        assert_eq!(get(0.0), 0.0);
        assert!((get(0.5) - 1.0).abs() < 1e-6);
        assert!((get(1.0) - 4.0).abs() < 1e-6);
        assert!((get(0.9) - 3.2).abs() < 1e-5);
        assert_eq!(quantile_grid().len(), 2351);
    }

    #[test]
    fn top_examples_skip_edges_and_overlaps() {
        let f = |row, pos, act| Firing { row, pos, act };
        let sorted = vec![
            f(0, 1, 9.0),
            f(0, 10, 8.0),
            f(0, 12, 7.0),
            f(1, 12, 6.0),
            f(0, 30, 5.0),
        ];
        let got = top_examples(&sorted, 3, (5, 5), &|_| 32);
        assert_eq!(got, vec![f(0, 10, 8.0), f(1, 12, 6.0)]);
    }
}
