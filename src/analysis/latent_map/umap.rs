//! UMAP as umap-learn computes it (McInnes, Healy & Melville 2018; umap-learn 0.5): the fuzzy
//! simplicial set of the exact k-nearest-neighbour graph (smooth-kNN `rho` / `sigma`, fuzzy
//! union), a spectral initialisation, and SGD of the cross-entropy with negative sampling,
//! with the curve `1 / (1 + a d^2b)` fitted to `min_dist` / `spread`.
use super::knn::{check_matrix, exact_knn, MapMetric};
use super::spectral::spectral_init;
use crate::error::{Error, Result};
use crate::rng::{Draw, Rng};

/// How UMAP places the points before optimising.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum UmapInit {
    /// Eigenvectors of the graph's normalised Laplacian (umap-learn's default); a disconnected
    /// graph falls back to [`UmapInit::Random`].
    #[default]
    Spectral,
    /// Uniform in `[-10, 10)`.
    Random,
}

/// UMAP's parameters, defaulting to umap-learn's (except `metric`, cosine here).
#[derive(Clone, Debug, PartialEq)]
pub struct UmapOptions {
    /// Output dimensions (2 to display, ~10 to cluster).
    pub n_components: usize,
    /// Neighbours per point, the point itself included (umap-learn's convention); 15.
    pub n_neighbors: usize,
    /// Distance between high-dimensional rows; cosine.
    pub metric: MapMetric,
    /// How close embedded points may pack; 0.1.
    pub min_dist: f32,
    /// The scale of the embedding; 1.0.
    pub spread: f32,
    /// SGD epochs; None: umap-learn's rule, 500 up to 10,000 points and 200 above.
    pub n_epochs: Option<usize>,
    /// Initial SGD step, decaying linearly to 0; 1.0.
    pub learning_rate: f32,
    /// Negative samples per positive one; 5.
    pub negative_sample_rate: usize,
    /// Weight of the repulsive term (umap-learn's `repulsion_strength`, `gamma`); 1.0.
    pub repulsion_strength: f32,
    /// Nearest neighbours assumed connected (`local_connectivity`); 1.0.
    pub local_connectivity: f32,
    /// Initialisation; spectral.
    pub init: UmapInit,
    /// Seed of every random draw (the result is a function of data, options and seed).
    pub seed: u64,
}

impl Default for UmapOptions {
    fn default() -> Self {
        UmapOptions {
            n_components: 2,
            n_neighbors: 15,
            metric: MapMetric::Cosine,
            min_dist: 0.1,
            spread: 1.0,
            n_epochs: None,
            learning_rate: 1.0,
            negative_sample_rate: 5,
            repulsion_strength: 1.0,
            local_connectivity: 1.0,
            init: UmapInit::Spectral,
            seed: 42,
        }
    }
}

impl UmapOptions {
    /// These options with `n_components` output dimensions.
    pub fn with_n_components(mut self, n_components: usize) -> Self {
        self.n_components = n_components;
        self
    }
    /// These options with seed `seed`.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }
}

/// The symmetric fuzzy graph, as COO entries sorted by (row, column).
pub(crate) struct FuzzyGraph {
    pub n: usize,
    pub rows: Vec<u32>,
    pub cols: Vec<u32>,
    pub vals: Vec<f32>,
}

/// The UMAP embedding of the `n × dim` row-major `data`: `n × n_components` row-major f32.
///
/// Errors ([`Error::Invalid`]) on an empty or ragged matrix, non-finite values,
/// `n_neighbors < 2` or `n_neighbors >= n`, and `n_components == 0`.
pub fn umap(data: &[f32], dim: usize, opts: &UmapOptions) -> Result<Vec<f32>> {
    let graph = fuzzy_graph(data, dim, opts)?;
    embed(&graph, opts)
}

/// umap-learn's `fuzzy_simplicial_set` over the exact kNN graph of `data`.
pub(crate) fn fuzzy_graph(data: &[f32], dim: usize, opts: &UmapOptions) -> Result<FuzzyGraph> {
    let n = check_matrix("umap", data, dim, 1)?;
    let k = opts.n_neighbors;
    if k < 2 || k >= n {
        return Err(Error::Invalid(format!(
            "umap: n_neighbors = {k} with {n} rows; use 2 <= n_neighbors < n (umap-learn's \
             default is 15, so at least 16 rows)"
        )));
    }
    let (idx, dist) = exact_knn(data, dim, k, opts.metric)?;
    let (rho, sigma) = smooth_knn_dist(&dist, k, opts.local_connectivity);
    let mut entries: Vec<(u32, u32, f32)> = Vec::with_capacity(2 * n * k);
    for i in 0..n {
        for c in 0..k {
            let j = idx[i * k + c];
            if j as usize == i {
                continue;
            }
            let d = dist[i * k + c] - rho[i];
            let v = if d <= 0.0 || sigma[i] == 0.0 {
                1.0
            } else {
                (-d / sigma[i]).exp()
            };
            entries.push((i as u32, j, v));
        }
    }
    Ok(fuzzy_union(n, entries))
}

/// `P + Pᵀ − P∘Pᵀ` (`set_op_mix_ratio = 1`), zeros dropped.
fn fuzzy_union(n: usize, p: Vec<(u32, u32, f32)>) -> FuzzyGraph {
    let mut all: Vec<(u32, u32, f32, bool)> = p.iter().map(|&(i, j, v)| (i, j, v, false)).collect();
    all.extend(p.iter().map(|&(i, j, v)| (j, i, v, true)));
    all.sort_by_key(|a| (a.0, a.1, a.3));
    let mut g = FuzzyGraph {
        n,
        rows: vec![],
        cols: vec![],
        vals: vec![],
    };
    let mut s = 0;
    while s < all.len() {
        let (i, j, v, _) = all[s];
        let (val, step) = match all.get(s + 1) {
            Some(&(i2, j2, w, _)) if (i2, j2) == (i, j) => (v + w - v * w, 2),
            _ => (v, 1),
        };
        if val > 0.0 {
            g.rows.push(i);
            g.cols.push(j);
            g.vals.push(val);
        }
        s += step;
    }
    g
}

/// umap-learn's `smooth_knn_dist`: per row, `rho` (distance to the first non-zero neighbour)
/// and `sigma` such that `Σ_j exp(−(d_j − rho)/sigma) = log2(k)` (binary search, 64 steps).
fn smooth_knn_dist(dist: &[f32], k: usize, local_connectivity: f32) -> (Vec<f32>, Vec<f32>) {
    const TOL: f64 = 1e-5;
    const MIN_K_DIST_SCALE: f64 = 1e-3;
    let target = (k as f64).log2();
    let mean_all = dist.iter().map(|&d| d as f64).sum::<f64>() / dist.len() as f64;
    let n = dist.len() / k;
    let (mut rho, mut sigma) = (vec![0f32; n], vec![0f32; n]);
    for i in 0..n {
        let row = &dist[i * k..(i + 1) * k];
        let nz: Vec<f64> = row
            .iter()
            .filter(|&&d| d > 0.0)
            .map(|&d| d as f64)
            .collect();
        let lc = local_connectivity as f64;
        let (index, interp) = (lc.floor() as usize, lc - lc.floor());
        let mut r = 0.0;
        if nz.len() as f64 >= lc {
            if index > 0 {
                r = nz[index - 1];
                if interp > TOL {
                    r += interp * (nz[index] - nz[index - 1]);
                }
            } else {
                r = interp * nz[0];
            }
        } else if !nz.is_empty() {
            r = nz.iter().cloned().fold(f64::MIN, f64::max);
        }
        let (mut lo, mut hi, mut mid) = (0.0f64, f64::INFINITY, 1.0f64);
        for _ in 0..64 {
            let psum: f64 = row[1..]
                .iter()
                .map(|&d| {
                    let d = d as f64 - r;
                    if d > 0.0 {
                        (-d / mid).exp()
                    } else {
                        1.0
                    }
                })
                .sum();
            if (psum - target).abs() < TOL {
                break;
            }
            if psum > target {
                hi = mid;
                mid = (lo + hi) / 2.0;
            } else {
                lo = mid;
                mid = if hi.is_infinite() {
                    mid * 2.0
                } else {
                    (lo + hi) / 2.0
                };
            }
        }
        let mean_i = row.iter().map(|&d| d as f64).sum::<f64>() / k as f64;
        let floor = MIN_K_DIST_SCALE * if r > 0.0 { mean_i } else { mean_all };
        rho[i] = r as f32;
        sigma[i] = mid.max(floor) as f32;
    }
    (rho, sigma)
}

/// umap-learn's `find_ab_params`: the `(a, b)` of the embedding's similarity curve, fitted by
/// least squares of `1 / (1 + a x^2b)` against 1 below
/// `min_dist` and `exp(−(x − min_dist)/spread)` above, on 300 points of `[0, 3·spread]`
/// (Levenberg–Marquardt from `a = b = 1`, as scipy's `curve_fit`).
pub fn umap_ab_params(spread: f64, min_dist: f64) -> (f64, f64) {
    let xs: Vec<f64> = (0..300).map(|i| 3.0 * spread * i as f64 / 299.0).collect();
    let ys: Vec<f64> = xs
        .iter()
        .map(|&x| {
            if x < min_dist {
                1.0
            } else {
                (-(x - min_dist) / spread).exp()
            }
        })
        .collect();
    let loss = |a: f64, b: f64| -> f64 {
        xs.iter()
            .zip(&ys)
            .map(|(&x, &y)| (1.0 / (1.0 + a * x.powf(2.0 * b)) - y).powi(2))
            .sum()
    };
    let (mut a, mut b, mut lambda) = (1.0f64, 1.0f64, 1e-3f64);
    let mut cur = loss(a, b);
    for _ in 0..500 {
        // Normal equations J^T J δ = −J^T r for the residuals r = f − y.
        let (mut jj, mut jr) = ([0.0f64; 3], [0.0f64; 2]);
        for (&x, &y) in xs.iter().zip(&ys) {
            if x <= 0.0 {
                continue;
            }
            let p = x.powf(2.0 * b);
            let f = 1.0 / (1.0 + a * p);
            let (da, db) = (-p * f * f, -a * p * 2.0 * x.ln() * f * f);
            let r = f - y;
            jj = [jj[0] + da * da, jj[1] + da * db, jj[2] + db * db];
            jr = [jr[0] + da * r, jr[1] + db * r];
        }
        let (m00, m01, m11) = (jj[0] * (1.0 + lambda), jj[1], jj[2] * (1.0 + lambda));
        let det = m00 * m11 - m01 * m01;
        if det.abs() < 1e-300 {
            break;
        }
        let da = -(m11 * jr[0] - m01 * jr[1]) / det;
        let db = -(m00 * jr[1] - m01 * jr[0]) / det;
        let next = loss(a + da, b + db);
        if next < cur {
            let done = (cur - next) < 1e-15 * cur.max(1e-300);
            (a, b, cur, lambda) = (a + da, b + db, next, lambda * 0.3);
            if done {
                break;
            }
        } else {
            lambda *= 10.0;
            if lambda > 1e12 {
                break;
            }
        }
    }
    (a, b)
}

/// Lays `graph` out in `opts.n_components` dimensions (umap-learn's
/// `simplicial_set_embedding` with `optimize_layout_euclidean`, single-threaded).
pub(crate) fn embed(graph: &FuzzyGraph, opts: &UmapOptions) -> Result<Vec<f32>> {
    let (n, dim) = (graph.n, opts.n_components);
    if dim == 0 {
        return Err(Error::Invalid(
            "umap: n_components must be at least 1".into(),
        ));
    }
    if !(opts.min_dist >= 0.0 && opts.spread > 0.0 && opts.min_dist <= opts.spread) {
        return Err(Error::Invalid(format!(
            "umap: min_dist = {} and spread = {}; use 0 <= min_dist <= spread, spread > 0",
            opts.min_dist, opts.spread
        )));
    }
    let n_epochs = opts.n_epochs.unwrap_or(if n <= 10_000 { 500 } else { 200 });
    let mut rng = Rng::new(opts.seed);
    let mut emb = match opts.init {
        UmapInit::Spectral => spectral_init(graph, dim, &mut rng)?,
        UmapInit::Random => None,
    }
    .unwrap_or_else(|| {
        (0..n * dim)
            .map(|_| rng.uniform_range(-10.0, 10.0) as f32)
            .collect()
    });
    rescale_to_box(&mut emb, dim);
    if n_epochs > 0 {
        optimize(graph, &mut emb, dim, n_epochs, opts, &mut rng);
    }
    Ok(emb)
}

/// Each column linearly onto `[0, 10]` (umap-learn, before the SGD).
fn rescale_to_box(emb: &mut [f32], dim: usize) {
    for c in 0..dim {
        let col = emb.iter().skip(c).step_by(dim);
        let (lo, hi) = col.fold((f32::INFINITY, f32::NEG_INFINITY), |(l, h), &v| {
            (l.min(v), h.max(v))
        });
        let scale = if hi > lo { 10.0 / (hi - lo) } else { 0.0 };
        emb.iter_mut()
            .skip(c)
            .step_by(dim)
            .for_each(|v| *v = (*v - lo) * scale);
    }
}

/// umap-learn's `optimize_layout_euclidean` (edges below `max / n_epochs` dropped, each edge
/// sampled in proportion to its weight, `negative_sample_rate` repulsions per sample).
fn optimize(
    g: &FuzzyGraph,
    emb: &mut [f32],
    dim: usize,
    n_epochs: usize,
    opts: &UmapOptions,
    rng: &mut Rng,
) {
    let (a, b) = umap_ab_params(opts.spread as f64, opts.min_dist as f64);
    let (a, b, gamma) = (a as f32, b as f32, opts.repulsion_strength);
    let max = g.vals.iter().cloned().fold(0.0f32, f32::max);
    let keep: Vec<usize> = (0..g.vals.len())
        .filter(|&e| g.vals[e] >= max / n_epochs as f32)
        .collect();
    let eps: Vec<f64> = keep
        .iter()
        .map(|&e| n_epochs as f64 / (n_epochs as f64 * (g.vals[e] / max) as f64))
        .collect();
    let neg_rate = opts.negative_sample_rate.max(1) as f64;
    let eps_neg: Vec<f64> = eps.iter().map(|e| e / neg_rate).collect();
    let mut next = eps.clone();
    let mut next_neg = eps_neg.clone();
    let n = g.n;
    let clip = |v: f32| v.clamp(-4.0, 4.0);
    for epoch in 0..n_epochs {
        let alpha = opts.learning_rate * (1.0 - epoch as f32 / n_epochs as f32);
        let t = epoch as f64;
        for (s, &e) in keep.iter().enumerate() {
            if next[s] > t {
                continue;
            }
            let (j, k) = (g.rows[e] as usize, g.cols[e] as usize);
            let d2 = sq_dist(emb, dim, j, k);
            if d2 > 0.0 {
                let coeff = -2.0 * a * b * d2.powf(b - 1.0) / (a * d2.powf(b) + 1.0);
                for d in 0..dim {
                    let grad = clip(coeff * (emb[j * dim + d] - emb[k * dim + d])) * alpha;
                    emb[j * dim + d] += grad;
                    emb[k * dim + d] -= grad;
                }
            }
            next[s] += eps[s];
            let n_neg = ((t - next_neg[s]) / eps_neg[s]).max(0.0) as usize;
            for _ in 0..n_neg {
                let k = rng.below(n);
                let d2 = sq_dist(emb, dim, j, k);
                if d2 <= 0.0 {
                    continue;
                }
                let coeff = 2.0 * gamma * b / ((0.001 + d2) * (a * d2.powf(b) + 1.0));
                for d in 0..dim {
                    emb[j * dim + d] += clip(coeff * (emb[j * dim + d] - emb[k * dim + d])) * alpha;
                }
            }
            next_neg[s] += n_neg as f64 * eps_neg[s];
        }
    }
}

fn sq_dist(emb: &[f32], dim: usize, j: usize, k: usize) -> f32 {
    (0..dim)
        .map(|d| (emb[j * dim + d] - emb[k * dim + d]).powi(2))
        .sum()
}
