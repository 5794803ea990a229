//! UMAP's spectral initialisation: the eigenvectors of the fuzzy graph's normalised Laplacian
//! `L = I − D^-½ W D^-½` with the smallest non-zero eigenvalues, found by subspace iteration
//! with Rayleigh–Ritz on `(I + D^-½ W D^-½) / 2` (the trivial eigenvector `D^½ 1` projected
//! out), then scaled as umap-learn's `noisy_scale_coords` (max |coordinate| 10, noise 1e-4).
use super::umap::FuzzyGraph;
use crate::analysis::pca::symmetric_eigen;
use crate::error::Result;
use crate::rng::{Draw, Rng};
use rayon::prelude::*;

/// Extra vectors carried beyond the `dim` wanted (faster, steadier convergence).
const EXTRA: usize = 6;
/// Most iterations, and how often the Ritz values are checked for convergence.
const MAX_ITERS: usize = 600;
const CHECK_EVERY: usize = 20;

/// The initial `n × dim` layout, or None when the graph is disconnected (or too small), in
/// which case the caller starts from random points (umap-learn lays components out apart).
pub(crate) fn spectral_init(g: &FuzzyGraph, dim: usize, rng: &mut Rng) -> Result<Option<Vec<f32>>> {
    let n = g.n;
    let p = dim + EXTRA;
    if n <= p + 1 || !connected(g) {
        return Ok(None);
    }
    let mut deg = vec![0f64; n];
    for (&r, &v) in g.rows.iter().zip(&g.vals) {
        deg[r as usize] += v as f64;
    }
    let inv_sqrt: Vec<f64> = deg.iter().map(|&d| 1.0 / d.sqrt()).collect();
    let trivial = unit(deg.iter().map(|d| d.sqrt()).collect());
    // q: p column vectors of length n, stored one after another.
    let mut q: Vec<Vec<f64>> = (0..p)
        .map(|_| (0..n).map(|_| rng.normal()).collect())
        .collect();
    let mut last: Vec<f64> = vec![];
    for it in 1..=MAX_ITERS {
        q = q.par_iter().map(|v| apply(g, &inv_sqrt, v)).collect();
        orthonormalise(&mut q, &trivial);
        if it % CHECK_EVERY == 0 || it == MAX_ITERS {
            let vals = rayleigh_ritz(g, &inv_sqrt, &mut q)?;
            let done = last.len() == vals.len()
                && vals[..dim]
                    .iter()
                    .zip(&last)
                    .all(|(a, b)| (a - b).abs() < 1e-7);
            last = vals;
            if done {
                break;
            }
        }
    }
    let max = q[..dim]
        .iter()
        .flat_map(|v| v.iter().map(|x| x.abs()))
        .fold(0.0f64, f64::max);
    let scale = if max > 0.0 { 10.0 / max } else { 1.0 };
    let mut out = vec![0f32; n * dim];
    for (c, v) in q[..dim].iter().enumerate() {
        for i in 0..n {
            out[i * dim + c] = (v[i] * scale) as f32 + (rng.normal() * 1e-4) as f32;
        }
    }
    Ok(Some(out))
}

/// `(I + D^-½ W D^-½) x / 2`.
fn apply(g: &FuzzyGraph, inv_sqrt: &[f64], x: &[f64]) -> Vec<f64> {
    let mut y: Vec<f64> = x.to_vec();
    for ((&r, &c), &v) in g.rows.iter().zip(&g.cols).zip(&g.vals) {
        let (r, c) = (r as usize, c as usize);
        y[r] += inv_sqrt[r] * v as f64 * inv_sqrt[c] * x[c];
    }
    y.iter_mut().for_each(|v| *v *= 0.5);
    y
}

fn unit(mut v: Vec<f64>) -> Vec<f64> {
    let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
    v
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Modified Gram–Schmidt of `q` against `trivial` and each other (twice, for stability).
fn orthonormalise(q: &mut [Vec<f64>], trivial: &[f64]) {
    for _pass in 0..2 {
        for i in 0..q.len() {
            let t = dot(&q[i], trivial);
            q[i].iter_mut().zip(trivial).for_each(|(x, y)| *x -= t * y);
            for j in 0..i {
                let (done, cur) = q.split_at_mut(i);
                let c = dot(&cur[0], &done[j]);
                cur[0]
                    .iter_mut()
                    .zip(&done[j])
                    .for_each(|(x, y)| *x -= c * y);
            }
            q[i] = unit(std::mem::take(&mut q[i]));
        }
    }
}

/// Rotates `q` onto the Ritz vectors of the operator (descending Ritz values, returned).
fn rayleigh_ritz(g: &FuzzyGraph, inv_sqrt: &[f64], q: &mut Vec<Vec<f64>>) -> Result<Vec<f64>> {
    let p = q.len();
    let aq: Vec<Vec<f64>> = q.par_iter().map(|v| apply(g, inv_sqrt, v)).collect();
    let mut h = vec![0f64; p * p];
    for i in 0..p {
        for j in 0..p {
            h[i * p + j] = 0.5 * (dot(&q[i], &aq[j]) + dot(&q[j], &aq[i]));
        }
    }
    let (vals, vecs) = symmetric_eigen(&h, p)?;
    let n = q[0].len();
    let rotated: Vec<Vec<f64>> = (0..p)
        .map(|e| {
            let mut v = vec![0f64; n];
            for (j, qj) in q.iter().enumerate() {
                let w = vecs[e * p + j];
                v.iter_mut().zip(qj).for_each(|(x, y)| *x += w * y);
            }
            v
        })
        .collect();
    *q = rotated;
    Ok(vals)
}

/// Whether the graph is one connected component (union–find over its edges).
pub(crate) fn connected(g: &FuzzyGraph) -> bool {
    let mut parent: Vec<u32> = (0..g.n as u32).collect();
    fn find(p: &mut [u32], mut x: u32) -> u32 {
        while p[x as usize] != x {
            p[x as usize] = p[p[x as usize] as usize];
            x = p[x as usize];
        }
        x
    }
    let mut comps = g.n;
    for (&r, &c) in g.rows.iter().zip(&g.cols) {
        let (a, b) = (find(&mut parent, r), find(&mut parent, c));
        if a != b {
            parent[a as usize] = b;
            comps -= 1;
        }
    }
    comps == 1
}
