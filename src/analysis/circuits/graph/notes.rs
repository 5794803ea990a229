//! Hover text for a graph's feature nodes: what each latent writes (the tokens its decoder
//! row boosts most through the unembedding) and where it fires most in a corpus (its top
//! activating examples), for [`AttributionGraph::plot_with`].
use super::AttributionGraph;
use crate::analysis::examples::{logit_table, top_examples};
use crate::error::Result;
use crate::model::HookedModel;
use crate::sae::TranscoderSet;
use candle_core::{IndexOp, Tensor};
use std::collections::{BTreeMap, HashMap};

impl AttributionGraph {
    /// Hover notes for the feature nodes that survive pruning at circuit-tracer's defaults
    /// (node 0.8, edge 0.98): per `(layer, latent)`, the 5 tokens it boosts most and its `k`
    /// top activating examples in `corpus` (token rows `[rows, ctx]`, e.g. from
    /// [`crate::analysis::dashboard::corpus_rows`]), the active token marked `[[…]]`. Pass
    /// the result to [`AttributionGraph::plot_with`].
    pub fn feature_notes(
        &self,
        model: &HookedModel,
        transcoders: &TranscoderSet,
        corpus: &Tensor,
        k: usize,
    ) -> Result<HashMap<(usize, usize), String>> {
        transcoders.check_fits(model)?;
        let kept = self.prune(0.8, 0.98)?.node_mask;
        let mut wanted: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        for (node, &fi) in self.selected_features.iter().enumerate() {
            if kept[node] {
                let f = self.active_features[fi];
                let v = wanted.entry(f.layer).or_default();
                if !v.contains(&f.feature) {
                    v.push(f.feature);
                }
            }
        }
        let acts = wanted_acts(model, transcoders, corpus, &wanted)?;
        let mut notes = HashMap::new();
        for (layer, latents) in &wanted {
            for (col, &latent) in latents.iter().enumerate() {
                let tc = transcoders.layer(*layer);
                let boosts = logit_table(model, tc, latent, 5)?
                    .top
                    .iter()
                    .map(|t| format!("{:?}", t.token))
                    .collect::<Vec<_>>()
                    .join(" ");
                let mut text = format!("boosts {boosts}");
                for ex in top_examples(model, &acts[layer], corpus, col, k)? {
                    if ex.act > 0.0 {
                        text.push_str(&format!("\n{ex}"));
                    }
                }
                notes.insert((*layer, latent), text);
            }
        }
        Ok(notes)
    }
}

/// Per layer, the activations `[rows, ctx, n]` of the `wanted` latents (in that order) on
/// `corpus`, 8 rows per model pass.
fn wanted_acts(
    model: &HookedModel,
    transcoders: &TranscoderSet,
    corpus: &Tensor,
    wanted: &BTreeMap<usize, Vec<usize>>,
) -> Result<HashMap<usize, Tensor>> {
    let names: Vec<String> = wanted
        .keys()
        .map(|l| format!("blocks.{l}.ln2.hook_normalized"))
        .collect();
    let rows = corpus.dim(0)?;
    // Only the blocks up to the highest wanted layer.
    let stop = wanted.keys().max().map_or(0, |l| l + 1);
    let mut parts: HashMap<usize, Vec<Tensor>> = HashMap::new();
    for start in (0..rows).step_by(8) {
        let b = corpus.i(start..(start + 8).min(rows))?;
        let (_, cache) = model
            .run(&b)
            .names(names.clone())
            .stop_at_layer(stop)
            .cache()?;
        for (layer, latents) in wanted {
            let x = cache.get(format!("blocks.{layer}.ln2.hook_normalized"))?;
            let f = transcoders.layer(*layer).encode(&x)?;
            let idx = Tensor::new(
                latents.iter().map(|&l| l as u32).collect::<Vec<_>>(),
                f.device(),
            )?;
            parts
                .entry(*layer)
                .or_default()
                .push(f.index_select(&idx, 2)?.to_dtype(candle_core::DType::F32)?);
        }
    }
    parts
        .into_iter()
        .map(|(l, p)| Ok((l, Tensor::cat(&p, 0)?)))
        .collect()
}
