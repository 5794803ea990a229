//! Influence and pruning (circuit-tracer's `graph.py`): each node's total influence on the
//! logits through the Neumann series `w (A + A² + …)` of the row-normalised |adjacency|, which
//! terminates because the graph is acyclic; nodes kept up to a cumulative influence threshold,
//! then edges by their influence; the replacement and completeness scores.
use crate::error::{Error, Result};
use rayon::prelude::*;

/// A dense square matrix, row-major (`a[target * n + source]`).
pub(crate) struct Dense<'a> {
    pub n: usize,
    pub a: &'a [f32],
}

/// `|A|` with each row divided by its sum (rows summing to 0 stay 0).
pub(crate) fn normalize(m: &Dense, min_sum: f32) -> Vec<f32> {
    let n = m.n;
    let mut out = vec![0f32; n * n];
    out.par_chunks_mut(n.max(1))
        .zip(m.a.par_chunks(n.max(1)))
        .for_each(|(o, r)| {
            let s: f32 = r.iter().map(|v| v.abs()).sum::<f32>().max(min_sum);
            for (x, v) in o.iter_mut().zip(r) {
                *x = v.abs() / s;
            }
        });
    out
}

/// `v A` for a dense `[n, n]` `A`.
fn vec_mat(v: &[f32], a: &[f32], n: usize) -> Vec<f32> {
    let mut out = vec![0f32; n];
    for (i, &w) in v.iter().enumerate() {
        if w != 0.0 {
            for (o, x) in out.iter_mut().zip(&a[i * n..(i + 1) * n]) {
                *o += w * x;
            }
        }
    }
    out
}

/// `w A + w A² + …` until the terms vanish (circuit-tracer's `compute_influence`).
pub(crate) fn influence(a: &[f32], n: usize, w: &[f32]) -> Result<Vec<f32>> {
    let mut cur = vec_mat(w, a, n);
    let mut total = cur.clone();
    let mut it = 0;
    while cur.iter().any(|&x| x != 0.0) {
        if it >= 1000 {
            return Err(Error::Invalid(
                "influence did not converge in 1000 iterations: the adjacency has a cycle".into(),
            ));
        }
        cur = vec_mat(&cur, a, n);
        for (t, c) in total.iter_mut().zip(&cur) {
            *t += c;
        }
        it += 1;
    }
    Ok(total)
}

/// The score at which the sorted scores' cumulative share first reaches `threshold`
/// (circuit-tracer's `find_threshold`).
fn find_threshold(scores: &[f32], threshold: f64) -> f32 {
    let mut sorted = scores.to_vec();
    sorted.sort_by(|a, b| b.total_cmp(a));
    let total: f32 = sorted.iter().sum();
    let mut cum = 0f32;
    // torch.searchsorted(cumulative, threshold): the first index whose value ≥ threshold.
    let mut idx = sorted.len();
    for (i, s) in sorted.iter().enumerate() {
        cum += s;
        if (cum / total) as f64 >= threshold {
            idx = i;
            break;
        }
    }
    sorted[idx.min(sorted.len().saturating_sub(1))]
}

/// What pruning keeps: the nodes, the edges (`[target * n + source]`) and each node's
/// cumulative influence share (nodes sorted by influence; 1.0 = the least influential).
#[derive(Clone, Debug)]
pub struct PruneResult {
    /// Whether each node survives.
    pub node_mask: Vec<bool>,
    /// Whether each edge survives, row-major `[target][source]`.
    pub edge_mask: Vec<bool>,
    /// The cumulative influence share at each node.
    pub cumulative_scores: Vec<f32>,
}

/// circuit-tracer's `prune_graph`: keep the nodes that make up `node_threshold` of the total
/// influence on the logits (tokens and logits always), then the edges that make up
/// `edge_threshold` of the edge influence, then drop nodes left without outgoing (features,
/// errors) or incoming (features) edges until nothing changes.
pub(crate) fn prune(
    m: &Dense,
    n_features: usize,
    n_tokens: usize,
    logit_probs: &[f32],
    node_threshold: f64,
    edge_threshold: f64,
) -> Result<PruneResult> {
    for (what, t) in [("node", node_threshold), ("edge", edge_threshold)] {
        if !(0.0..=1.0).contains(&t) {
            return Err(Error::Invalid(format!(
                "{what}_threshold must be between 0.0 and 1.0, got {t}"
            )));
        }
    }
    let n = m.n;
    let n_logits = logit_probs.len();
    let mut w = vec![0f32; n];
    w[n - n_logits..].copy_from_slice(logit_probs);
    let node_inf = influence(&normalize(m, 1e-10), n, &w)?;
    let t = find_threshold(&node_inf, node_threshold);
    let mut node_mask: Vec<bool> = node_inf.iter().map(|&x| x >= t).collect();
    for k in node_mask.iter_mut().skip(n - n_logits - n_tokens) {
        *k = true;
    }
    let mut pruned = m.a.to_vec();
    for (r, row) in pruned.chunks_mut(n).enumerate() {
        for (c, v) in row.iter_mut().enumerate() {
            if !node_mask[r] || !node_mask[c] {
                *v = 0.0;
            }
        }
    }
    let norm = normalize(&Dense { n, a: &pruned }, 1e-10);
    let mut pinf = influence(&norm, n, &w)?;
    for (p, wi) in pinf.iter_mut().zip(&w) {
        *p += wi;
    }
    let scores: Vec<f32> = norm
        .iter()
        .enumerate()
        .map(|(k, v)| v * pinf[k / n])
        .collect();
    let et = find_threshold(&scores, edge_threshold);
    let mut edge_mask: Vec<bool> = scores.iter().map(|&s| s >= et).collect();
    let keep_limit = n - n_logits - n_tokens;
    let mut old = node_mask.clone();
    let apply = |node_mask: &mut Vec<bool>, edge_mask: &[bool]| {
        for c in 0..keep_limit {
            // features and errors need an outgoing edge (a row that uses them)
            let used = (0..n).any(|r| edge_mask[r * n + c]);
            node_mask[c] &= used;
        }
        for (r, k) in node_mask.iter_mut().enumerate().take(n_features) {
            *k &= edge_mask[r * n..(r + 1) * n].iter().any(|&e| e);
        }
    };
    apply(&mut node_mask, &edge_mask);
    while node_mask != old {
        old.clone_from(&node_mask);
        for r in 0..n {
            for c in 0..n {
                if !node_mask[r] || !node_mask[c] {
                    edge_mask[r * n + c] = false;
                }
            }
        }
        apply(&mut node_mask, &edge_mask);
    }
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| node_inf[b].total_cmp(&node_inf[a]));
    let total: f32 = node_inf.iter().sum();
    let mut cumulative = vec![0f32; n];
    let mut cum = 0f32;
    for &i in &order {
        cum += node_inf[i];
        cumulative[i] = cum / total;
    }
    Ok(PruneResult {
        node_mask,
        edge_mask,
        cumulative_scores: cumulative,
    })
}

/// circuit-tracer's `compute_graph_scores`: (replacement score, completeness score).
pub(crate) fn graph_scores(
    m: &Dense,
    n_features: usize,
    n_layers: usize,
    n_tokens: usize,
    logit_probs: &[f32],
) -> Result<(f64, f64)> {
    let n = m.n;
    let n_logits = logit_probs.len();
    let (err_start, err_end) = (n_features, n_features + n_tokens * n_layers);
    let tok_end = err_end + n_tokens;
    let mut w = vec![0f32; n];
    w[n - n_logits..].copy_from_slice(logit_probs);
    let norm = normalize(m, 1e-10);
    let inf = influence(&norm, n, &w)?;
    let tok: f32 = inf[err_end..tok_end].iter().sum();
    let err: f32 = inf[err_start..err_end].iter().sum();
    let replacement = tok / (tok + err);
    let (mut num, mut den) = (0f32, 0f32);
    for r in 0..n {
        let non_err = 1.0 - norm[r * n + err_start..r * n + err_end].iter().sum::<f32>();
        let out = inf[r] + w[r];
        num += non_err * out;
        den += out;
    }
    Ok((replacement as f64, (num / den) as f64))
}

/// circuit-tracer's `compute_partial_influences` over the rows computed so far (`rows[i]` is
/// node `row_node[i]`'s row over `logit_offset` sources; logit columns are empty): the
/// influence `Σ_k w Aᵏ` of every node, with `A` the row-normalised |rows|. circuit-tracer
/// iterates `w A, w A², …` to convergence; here one pass in topological order gives the same
/// sum: the rows are visited from the top layer down (`level[i]` is row `i`'s layer, the
/// logits' above all), each node's total (its logit weight plus what reached it) is final
/// when its row is visited, since only rows of higher levels use it as a source.
pub(crate) fn partial_influences(
    rows: &[Vec<f32>],
    logit_offset: usize,
    n_logits: usize,
    logit_probs: &[f32],
    row_node: &[usize],
    level: &[usize],
) -> Result<Vec<f32>> {
    let cols = logit_offset + n_logits;
    let mut weight = vec![0f32; cols];
    weight[cols - n_logits..].copy_from_slice(logit_probs);
    let mut order: Vec<usize> = (0..rows.len()).collect();
    order.sort_by(|&a, &b| level[b].cmp(&level[a]));
    let mut acc = vec![0f32; cols];
    for &r in &order {
        let node = row_node[r];
        let total = weight[node] + acc[node];
        if total == 0.0 {
            continue;
        }
        let row = &rows[r];
        let s = row.iter().map(|v| v.abs()).sum::<f32>().max(1e-8);
        let c = total / s;
        for (o, v) in acc.iter_mut().zip(row) {
            *o += c * v.abs();
        }
    }
    Ok(acc)
}
