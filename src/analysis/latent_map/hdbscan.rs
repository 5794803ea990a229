//! HDBSCAN as the `hdbscan` package computes it (Campello, Moulavi & Sander 2013; McInnes,
//! Healy & Astels 2017), euclidean: core distances, the minimum spanning tree of the mutual
//! reachability graph (exact Prim, O(n²)), the single-linkage hierarchy, the tree condensed at
//! `min_cluster_size`, and excess-of-mass cluster selection. Labels are `0..` in the order of
//! the selected clusters' ids (as `hdbscan`'s), `-1` for noise.
use super::knn::check_matrix;
use crate::error::{Error, Result};
use rayon::prelude::*;
use std::collections::{HashMap, VecDeque};

/// HDBSCAN's parameters, defaulting to the `hdbscan` package's (EOM selection, no single
/// cluster, no epsilon).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HdbscanOptions {
    /// The smallest group of points that counts as a cluster; 5.
    pub min_cluster_size: usize,
    /// Neighbours (the point itself not counted) whose distance is a point's core distance;
    /// None: `min_cluster_size`.
    pub min_samples: Option<usize>,
}

impl Default for HdbscanOptions {
    fn default() -> Self {
        HdbscanOptions {
            min_cluster_size: 5,
            min_samples: None,
        }
    }
}

/// The HDBSCAN labels of the rows of the `n × dim` row-major `data` (euclidean): cluster
/// `0, 1, …` or `-1` for noise.
///
/// Errors ([`Error::Invalid`]) on an empty or ragged matrix, non-finite values, or
/// `min_cluster_size < 2`.
pub fn hdbscan(data: &[f32], dim: usize, opts: &HdbscanOptions) -> Result<Vec<i32>> {
    let n = check_matrix("hdbscan", data, dim, 1)?;
    if opts.min_cluster_size < 2 {
        return Err(Error::Invalid(format!(
            "hdbscan: min_cluster_size = {}; use at least 2 (the default is 5)",
            opts.min_cluster_size
        )));
    }
    if opts.min_samples == Some(0) {
        return Err(Error::Invalid(
            "hdbscan: min_samples must be at least 1".into(),
        ));
    }
    if n == 1 {
        return Ok(vec![-1]);
    }
    let min_samples = opts
        .min_samples
        .unwrap_or(opts.min_cluster_size)
        .min(n - 1)
        .max(1);
    let x: Vec<f64> = data.iter().map(|&v| v as f64).collect();
    let core = core_distances(&x, dim, min_samples);
    let mut mst = prim_mst(&x, dim, &core);
    mst.sort_by(|a, b| a.2.total_cmp(&b.2));
    let hierarchy = single_linkage(n, &mst);
    let tree = condense(&hierarchy, n, opts.min_cluster_size);
    Ok(select_and_label(&tree, n))
}

fn dist(x: &[f64], dim: usize, i: usize, j: usize) -> f64 {
    let (a, b) = (&x[i * dim..(i + 1) * dim], &x[j * dim..(j + 1) * dim]);
    a.iter()
        .zip(b)
        .map(|(p, q)| (p - q) * (p - q))
        .sum::<f64>()
        .sqrt()
}

/// The distance of each point to its `k`-th nearest other point.
fn core_distances(x: &[f64], dim: usize, k: usize) -> Vec<f64> {
    let n = x.len() / dim;
    (0..n)
        .into_par_iter()
        .map(|i| {
            let mut d: Vec<f64> = (0..n)
                .filter(|&j| j != i)
                .map(|j| dist(x, dim, i, j))
                .collect();
            let (_, kth, _) = d.select_nth_unstable_by(k - 1, |a, b| a.total_cmp(b));
            *kth
        })
        .collect()
}

/// Prim's minimum spanning tree of the mutual reachability distances
/// `max(core_i, core_j, d(i, j))`: `n − 1` edges `(from, to, weight)`.
fn prim_mst(x: &[f64], dim: usize, core: &[f64]) -> Vec<(usize, usize, f64)> {
    let n = core.len();
    let mut in_tree = vec![false; n];
    let mut best = vec![f64::INFINITY; n];
    let mut source = vec![0usize; n];
    let mut edges = Vec::with_capacity(n - 1);
    let mut cur = 0;
    const CHUNK: usize = 1024;
    for _ in 1..n {
        in_tree[cur] = true;
        let (c_core, tree_ref) = (core[cur], &in_tree);
        let found = best
            .par_chunks_mut(CHUNK)
            .zip(source.par_chunks_mut(CHUNK))
            .enumerate()
            .map(|(ci, (bch, sch))| {
                let mut arg = (f64::INFINITY, usize::MAX);
                for (o, (b, s)) in bch.iter_mut().zip(sch.iter_mut()).enumerate() {
                    let j = ci * CHUNK + o;
                    if tree_ref[j] {
                        continue;
                    }
                    let d = dist(x, dim, cur, j).max(c_core).max(core[j]);
                    if d < *b {
                        (*b, *s) = (d, cur);
                    }
                    if *b < arg.0 || arg.1 == usize::MAX {
                        arg = (*b, j);
                    }
                }
                arg
            })
            .reduce(
                || (f64::INFINITY, usize::MAX),
                |a, b| {
                    if b.1 != usize::MAX && (b.0 < a.0 || a.1 == usize::MAX) {
                        b
                    } else {
                        a
                    }
                },
            );
        let next = found.1;
        edges.push((source[next], next, best[next]));
        cur = next;
    }
    edges
}

/// One row of a scipy-style linkage: the two merged nodes, the distance, the merged size.
struct Merge {
    left: usize,
    right: usize,
    delta: f64,
    size: usize,
}

/// `hdbscan`'s `label`: the single-linkage hierarchy of the sorted MST edges (node `n + i`
/// is the cluster made by merge `i`).
fn single_linkage(n: usize, mst: &[(usize, usize, f64)]) -> Vec<Merge> {
    let mut parent: Vec<usize> = vec![usize::MAX; 2 * n - 1];
    let mut size: Vec<usize> = (0..2 * n - 1).map(|i| usize::from(i < n)).collect();
    let find = |parent: &mut Vec<usize>, mut x: usize| {
        let start = x;
        while parent[x] != usize::MAX {
            x = parent[x];
        }
        let mut p = start;
        while p != x && parent[p] != x {
            let up = parent[p];
            parent[p] = x;
            p = up;
        }
        x
    };
    let mut out = Vec::with_capacity(n - 1);
    for (k, &(a, b, delta)) in mst.iter().enumerate() {
        let (aa, bb) = (find(&mut parent, a), find(&mut parent, b));
        let next = n + k;
        size[next] = size[aa] + size[bb];
        parent[aa] = next;
        parent[bb] = next;
        out.push(Merge {
            left: aa,
            right: bb,
            delta,
            size: size[next],
        });
    }
    out
}

/// One row of the condensed tree: a point or cluster `child` leaving `parent` at `lambda`.
pub(crate) struct Condensed {
    parent: usize,
    child: usize,
    lambda: f64,
    size: usize,
}

/// `hdbscan`'s `condense_tree`: walks the hierarchy from the root (breadth first); a split
/// into two parts of at least `min_size` makes two new clusters, a smaller part falls out of
/// its parent point by point. Clusters are numbered from `n` (the root) in walk order.
fn condense(h: &[Merge], n: usize, min_size: usize) -> Vec<Condensed> {
    let root = 2 * n - 2;
    let count = |node: usize| if node >= n { h[node - n].size } else { 1 };
    let mut relabel: HashMap<usize, usize> = HashMap::from([(root, n)]);
    let mut next_label = n + 1;
    let mut out = Vec::new();
    let mut queue = VecDeque::from([root]);
    let leaves = |node: usize| -> Vec<usize> {
        let (mut q, mut pts) = (VecDeque::from([node]), vec![]);
        while let Some(x) = q.pop_front() {
            if x < n {
                pts.push(x);
            } else {
                q.push_back(h[x - n].left);
                q.push_back(h[x - n].right);
            }
        }
        pts
    };
    while let Some(node) = queue.pop_front() {
        if node < n {
            continue;
        }
        let m = &h[node - n];
        let lambda = if m.delta > 0.0 {
            1.0 / m.delta
        } else {
            f64::INFINITY
        };
        let me = relabel[&node];
        let (lc, rc) = (count(m.left), count(m.right));
        let fall_out = |side: usize, out: &mut Vec<Condensed>| {
            for p in leaves(side) {
                out.push(Condensed {
                    parent: me,
                    child: p,
                    lambda,
                    size: 1,
                });
            }
        };
        match (lc >= min_size, rc >= min_size) {
            (true, true) => {
                for (side, c) in [(m.left, lc), (m.right, rc)] {
                    relabel.insert(side, next_label);
                    out.push(Condensed {
                        parent: me,
                        child: next_label,
                        lambda,
                        size: c,
                    });
                    next_label += 1;
                    queue.push_back(side);
                }
            }
            (false, false) => {
                fall_out(m.left, &mut out);
                fall_out(m.right, &mut out);
            }
            (false, true) => {
                relabel.insert(m.right, me);
                fall_out(m.left, &mut out);
                queue.push_back(m.right);
            }
            (true, false) => {
                relabel.insert(m.left, me);
                fall_out(m.right, &mut out);
                queue.push_back(m.left);
            }
        }
    }
    out
}

/// Stabilities, excess-of-mass selection (the root never selected) and the labels.
fn select_and_label(tree: &[Condensed], n: usize) -> Vec<i32> {
    let n_clusters = tree
        .iter()
        .map(|r| if r.size > 1 { r.child.max(r.parent) } else { r.parent } + 1)
        .max()
        .unwrap_or(n + 1)
        - n;
    let mut birth = vec![0f64; n_clusters];
    let mut parent_of: HashMap<usize, usize> = HashMap::new();
    let mut children: Vec<Vec<usize>> = vec![vec![]; n_clusters];
    for r in tree {
        parent_of.insert(r.child, r.parent);
        if r.size > 1 {
            birth[r.child - n] = r.lambda;
            children[r.parent - n].push(r.child);
        }
    }
    let mut stability = vec![0f64; n_clusters];
    for r in tree {
        stability[r.parent - n] += (r.lambda - birth[r.parent - n]) * r.size as f64;
    }
    let mut selected = vec![true; n_clusters];
    selected[0] = false;
    for c in (1..n_clusters).rev() {
        // `hdbscan` sums the children's stabilities in a C float.
        let mut sub = 0f32;
        for &ch in &children[c] {
            sub = (sub as f64 + stability[ch - n]) as f32;
        }
        if sub as f64 > stability[c] {
            selected[c] = false;
            stability[c] = sub as f64;
        } else {
            let mut stack = children[c].clone();
            while let Some(d) = stack.pop() {
                selected[d - n] = false;
                stack.extend(&children[d - n]);
            }
        }
    }
    let label_of: HashMap<usize, i32> = (0..n_clusters)
        .filter(|&c| selected[c])
        .enumerate()
        .map(|(l, c)| (c + n, l as i32))
        .collect();
    (0..n)
        .map(|p| {
            let mut c = parent_of.get(&p).copied().unwrap_or(n);
            loop {
                if let Some(&l) = label_of.get(&c) {
                    return l;
                }
                if c == n {
                    return -1;
                }
                c = parent_of[&c];
            }
        })
        .collect()
}
