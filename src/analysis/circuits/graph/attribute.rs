//! circuit-tracer's `attribute`: the logit rows first, then the feature rows (every active
//! feature, or the `max_feature_nodes` most influential ones, ranked as rows arrive), then the
//! dense adjacency matrix in circuit-tracer's node order.
use super::frozen::{Frozen, Target};
use super::linear::Linear;
use super::prune::partial_influences;
use super::setup::setup;
use super::{AttributionGraph, GraphOptions};
use crate::error::{Error, Result};
use crate::model::{HookedModel, Prompt};
use crate::sae::TranscoderSet;
use indicatif::{ProgressBar, ProgressStyle};
use std::time::Instant;

/// Build the attribution graph of `prompt`'s next-token prediction through `transcoders`
/// (circuit-tracer's `attribute`, with its defaults in [`GraphOptions`]).
pub fn attribute(
    model: &HookedModel,
    prompt: impl Into<Prompt>,
    transcoders: &TranscoderSet,
    opts: &GraphOptions,
) -> Result<AttributionGraph> {
    let start = Instant::now();
    transcoders.check_fits(model)?;
    let tokens = model.run(prompt).tokens()?;
    if tokens.dim(0)? != 1 {
        return Err(Error::Invalid(format!(
            "attribute takes one prompt, got {} rows",
            tokens.dim(0)?
        )));
    }
    if opts.batch_size == 0 {
        return Err(Error::Invalid(
            "GraphOptions::batch_size must be ≥ 1".into(),
        ));
    }
    let s = setup(
        model,
        &tokens,
        transcoders,
        opts.max_n_logits,
        opts.desired_logit_prob,
    )?;
    let (n_layers, n_pos, d) = (s.n_layers, s.n_pos, s.d_model);
    let total = s.features.len();
    let n_logits = s.logit_ids.len();
    let logit_offset = total + (n_layers + 1) * n_pos;
    let max_feats = opts.max_feature_nodes.unwrap_or(total).min(total);
    let engine = Engine::new(model, &tokens, transcoders, &s, opts)?;
    let b = opts.batch_size;
    let bar = progress(opts.progress, (n_logits + max_feats) as u64);

    // Rows in the order computed, with the node each belongs to.
    let mut rows: Vec<Vec<f32>> = Vec::with_capacity(n_logits + max_feats);
    let mut row_node: Vec<usize> = Vec::with_capacity(n_logits + max_feats);
    for first in (0..n_logits).step_by(b) {
        let ids: Vec<usize> = (first..(first + b).min(n_logits)).collect();
        let targets: Vec<Target> = ids
            .iter()
            .map(|&i| Target {
                layer: n_layers,
                pos: n_pos - 1,
                vector: &s.logit_vecs[i * d..(i + 1) * d],
            })
            .collect();
        rows.extend(engine.rows(&s, &targets)?);
        row_node.extend(ids.iter().map(|i| logit_offset + i));
        bar.inc(ids.len() as u64);
    }
    let mut visited = vec![false; total];
    let mut n_visited = 0;
    while n_visited < max_feats {
        let pending: Vec<usize> = if max_feats == total {
            (0..total).collect()
        } else {
            let level: Vec<usize> = row_node
                .iter()
                .map(|&u| {
                    if u < total {
                        s.features[u].layer
                    } else {
                        n_layers + 1
                    }
                })
                .collect();
            let infl = partial_influences(
                &rows,
                logit_offset,
                n_logits,
                &s.logit_probs,
                &row_node,
                &level,
            )?;
            let mut rank: Vec<usize> = (0..total).collect();
            rank.sort_by(|&a, &c| infl[c].total_cmp(&infl[a]));
            let queue = (opts.update_interval * b).min(max_feats - n_visited);
            rank.into_iter()
                .filter(|&i| !visited[i])
                .take(queue)
                .collect()
        };
        // The rows do not depend on the order within a queue: batching features of one layer
        // and nearby positions lets each batch stop at its highest layer and position.
        let mut pending = pending;
        pending.sort_by_key(|&i| (s.features[i].layer, s.features[i].pos));
        for chunk in pending.chunks(b) {
            let targets: Vec<Target> = chunk
                .iter()
                .map(|&i| Target {
                    layer: s.features[i].layer,
                    pos: s.features[i].pos,
                    vector: &s.encoder_vecs[i * d..(i + 1) * d],
                })
                .collect();
            rows.extend(engine.rows(&s, &targets)?);
            row_node.extend(chunk);
            for &i in chunk {
                visited[i] = true;
            }
            n_visited += chunk.len();
            bar.inc(chunk.len() as u64);
        }
    }
    bar.finish_and_clear();
    let selected: Vec<usize> = (0..total).filter(|&i| visited[i]).collect();
    let adjacency = assemble(&rows, &row_node, &selected, total, logit_offset, n_logits);
    AttributionGraph::new(model, s, selected, adjacency, start.elapsed().as_secs_f64())
}

/// How rows are computed: by hand through the linear paths, or by autograd (the reference,
/// any architecture).
enum Engine<'a> {
    Linear(Linear<'a>),
    Autograd(Frozen),
}

impl<'a> Engine<'a> {
    fn new(
        model: &'a HookedModel,
        tokens: &candle_core::Tensor,
        tcs: &TranscoderSet,
        s: &super::setup::Setup,
        opts: &GraphOptions,
    ) -> Result<Self> {
        if !opts.autograd {
            if let Some(l) = Linear::new(model, tokens, s)? {
                return Ok(Engine::Linear(l));
            }
        }
        Ok(Engine::Autograd(Frozen::new(
            model,
            tokens,
            tcs,
            opts.batch_size,
        )?))
    }

    fn rows(&self, s: &super::setup::Setup, targets: &[Target]) -> Result<Vec<Vec<f32>>> {
        match self {
            Engine::Linear(l) => l.rows(targets),
            Engine::Autograd(f) => f.rows(s, targets),
        }
    }
}

/// The dense `[n, n]` adjacency in circuit-tracer's node order: selected features (ascending),
/// error nodes (layer-major), token nodes, logit nodes; `A[target, source]`.
fn assemble(
    rows: &[Vec<f32>],
    row_node: &[usize],
    selected: &[usize],
    total: usize,
    logit_offset: usize,
    n_logits: usize,
) -> Vec<f32> {
    // Columns kept: the selected features, then every non-feature source.
    let cols: Vec<usize> = selected
        .iter()
        .copied()
        .chain(total..logit_offset)
        .collect();
    let n = cols.len() + n_logits;
    let mut position = vec![usize::MAX; total];
    for (k, &f) in selected.iter().enumerate() {
        position[f] = k;
    }
    let mut a = vec![0f32; n * n];
    for (row, &node) in rows.iter().zip(row_node) {
        let r = if node >= logit_offset {
            n - n_logits + (node - logit_offset)
        } else {
            position[node]
        };
        if r == usize::MAX {
            continue;
        }
        let dst = &mut a[r * n..r * n + cols.len()];
        for (o, &c) in dst.iter_mut().zip(&cols) {
            *o = row[c];
        }
    }
    a
}

fn progress(show: bool, n: u64) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(n);
    if let Ok(style) =
        ProgressStyle::with_template("attribution {bar:30} {pos}/{len} nodes {per_sec} eta {eta}")
    {
        bar.set_style(style);
    }
    bar
}
