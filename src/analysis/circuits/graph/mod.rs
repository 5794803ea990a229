//! Attribution graphs as circuit-tracer builds them (Ameisen et al. 2025, "Circuit Tracing"):
//! the local replacement model (MLPs replaced by per-layer transcoders, attention patterns and
//! norm scales frozen from the clean run, error nodes so the output is exact), nodes for the
//! active transcoder latents at each position, the error at each layer and position, the
//! tokens and the top logits, and edges for every direct effect, computed by batched
//! injected-gradient backward passes; pruning by influence.
//!
//! ```no_run
//! use saescope::prelude::*;
//! let model = HookedModel::from_pretrained("smollm2")?;
//! let tcs = TranscoderSet::shipped()?;
//! let graph = attribute(&model, "The capital of France is", &tcs, &GraphOptions::default())?;
//! let pruned = graph.prune(0.8, 0.98)?;
//! println!("{} of {} nodes survive", pruned.node_mask.iter().filter(|&&k| k).count(), graph.n_nodes());
//! # Ok::<(), saescope::Error>(())
//! ```
mod attribute;
mod effects;
mod frozen;
mod intervene;
mod json;
mod linear;
mod notes;
mod prune;
mod setup;
mod view;

pub use crate::sae::TranscoderSet;
pub use attribute::attribute;
pub use effects::FeatureNode;
pub use intervene::{intervene, Change, Freeze, Intervention};
pub use json::GraphNode;
pub use prune::PruneResult;
pub use setup::ActiveFeature;

use crate::error::Result;
use crate::model::HookedModel;
use candle_core::{Device, Tensor};
use prune::Dense;

/// Options of [`attribute`] (circuit-tracer's defaults, except the batch size, which suits a
/// CPU).
#[derive(Clone, Debug, PartialEq)]
pub struct GraphOptions {
    /// At most this many logit nodes (circuit-tracer `max_n_logits`, default 10).
    pub max_n_logits: usize,
    /// Keep logits until their cumulative probability reaches this (default 0.95).
    pub desired_logit_prob: f64,
    /// Targets per backward pass, i.e. copies of the prompt in the batched forward pass
    /// (circuit-tracer `batch_size`; default 64 here, 512 there).
    pub batch_size: usize,
    /// At most this many feature nodes, chosen by influence as rows arrive (None: all).
    pub max_feature_nodes: Option<usize>,
    /// Batches between re-rankings of the pending features (circuit-tracer
    /// `update_interval`, default 4).
    pub update_interval: usize,
    /// Show a progress bar.
    pub progress: bool,
    /// Compute the rows by autograd through the whole batched model (the reference path,
    /// any architecture) instead of by hand through the linear paths (faster; models without
    /// post-norms; the default, falling back to autograd where it does not apply).
    pub autograd: bool,
}

impl Default for GraphOptions {
    fn default() -> Self {
        GraphOptions {
            max_n_logits: 10,
            desired_logit_prob: 0.95,
            batch_size: 64,
            max_feature_nodes: None,
            update_interval: 4,
            progress: false,
            autograd: false,
        }
    }
}

/// An attribution graph: nodes in circuit-tracer's order — the selected features, then the
/// error nodes (layer-major: `layer * n_pos + pos`), the token nodes, the logit nodes — and
/// the dense adjacency `A[target, source]` of direct effects.
#[derive(Clone, Debug)]
pub struct AttributionGraph {
    /// The prompt's tokens (BOS first).
    pub tokens: Vec<u32>,
    /// The prompt's tokens as strings.
    pub str_tokens: Vec<String>,
    /// The logit nodes' token ids.
    pub logit_tokens: Vec<u32>,
    /// The logit nodes' tokens as strings.
    pub logit_strs: Vec<String>,
    /// The logit nodes' probabilities.
    pub logit_probs: Vec<f32>,
    /// Every active transcoder latent (position 0 excluded).
    pub active_features: Vec<ActiveFeature>,
    /// Indices into `active_features` of the feature nodes, ascending.
    pub selected_features: Vec<usize>,
    /// `[n_nodes, n_nodes]`, row-major, `A[target * n + source]`.
    pub adjacency: Vec<f32>,
    /// The model's number of layers.
    pub n_layers: usize,
    /// Wall-clock seconds the attribution took.
    pub seconds: f64,
}

impl AttributionGraph {
    fn new(
        model: &HookedModel,
        s: setup::Setup,
        selected: Vec<usize>,
        adjacency: Vec<f32>,
        seconds: f64,
    ) -> Result<Self> {
        let strs = |ids: &[u32]| -> Result<Vec<String>> {
            match model.tokenizer() {
                Ok(_) => model.ids_to_str_tokens(ids),
                Err(_) => Ok(ids.iter().map(|t| format!("#{t}")).collect()),
            }
        };
        let str_tokens = strs(&s.tokens)?;
        let logit_strs = strs(&s.logit_ids)?;
        Ok(AttributionGraph {
            tokens: s.tokens,
            str_tokens,
            logit_tokens: s.logit_ids,
            logit_strs,
            logit_probs: s.logit_probs,
            active_features: s.features,
            selected_features: selected,
            adjacency,
            n_layers: s.n_layers,
            seconds,
        })
    }

    /// The number of nodes.
    pub fn n_nodes(&self) -> usize {
        self.selected_features.len()
            + (self.n_layers + 1) * self.tokens.len()
            + self.logit_tokens.len()
    }

    /// The adjacency as a `[n_nodes, n_nodes]` tensor.
    pub fn adjacency_tensor(&self) -> Result<Tensor> {
        let n = self.n_nodes();
        Ok(Tensor::from_slice(&self.adjacency, (n, n), &Device::Cpu)?)
    }

    fn dense(&self) -> Dense<'_> {
        Dense {
            n: self.n_nodes(),
            a: &self.adjacency,
        }
    }

    /// circuit-tracer's `prune_graph` (defaults: node 0.8, edge 0.98).
    pub fn prune(&self, node_threshold: f64, edge_threshold: f64) -> Result<PruneResult> {
        prune::prune(
            &self.dense(),
            self.selected_features.len(),
            self.tokens.len(),
            &self.logit_probs,
            node_threshold,
            edge_threshold,
        )
    }

    /// The graph file circuit-tracer's `create_graph_files` writes for this graph pruned at
    /// `node_threshold` / `edge_threshold` (what its frontend and Neuronpedia load); `slug`
    /// names the graph, `scan` the transcoder set.
    pub fn to_json(
        &self,
        slug: &str,
        scan: &str,
        node_threshold: f64,
        edge_threshold: f64,
    ) -> Result<serde_json::Value> {
        let p = self.prune(node_threshold, edge_threshold)?;
        json::graph_json(self, &p, slug, scan, node_threshold)
    }

    /// [`AttributionGraph::to_json`] written to `path`.
    pub fn save_json(
        &self,
        path: impl AsRef<std::path::Path>,
        slug: &str,
        scan: &str,
    ) -> Result<()> {
        let v = self.to_json(slug, scan, 0.8, 0.98)?;
        let path = path.as_ref();
        let text = serde_json::to_string_pretty(&v)
            .map_err(|e| crate::error::Error::Invalid(format!("graph JSON: {e}")))?;
        std::fs::write(path, text).map_err(|e| {
            crate::error::Error::Invalid(format!("cannot write {}: {e}", path.display()))
        })
    }

    /// The graph pruned at circuit-tracer's defaults (node 0.8, edge 0.98), drawn as SVG:
    /// token positions left to right, layers bottom to top, edges red (positive) or blue
    /// (negative) by weight (at most the 2 000 strongest); hover a node for its details.
    pub fn plot(&self) -> Result<crate::viz::Svg> {
        self.plot_with(0.8, 0.98, &std::collections::HashMap::new())
    }

    /// [`AttributionGraph::plot`] with thresholds and extra hover text per feature
    /// (`(layer, latent)` → text, e.g. its top examples).
    pub fn plot_with(
        &self,
        node_threshold: f64,
        edge_threshold: f64,
        notes: &std::collections::HashMap<(usize, usize), String>,
    ) -> Result<crate::viz::Svg> {
        let p = self.prune(node_threshold, edge_threshold)?;
        Ok(view::render(self, &p, notes))
    }

    /// circuit-tracer's `compute_graph_scores`: the replacement score (the share of the
    /// tokens' influence on the logits that flows through features rather than errors) and
    /// the completeness score (the influence-weighted share of non-error inputs).
    pub fn scores(&self) -> Result<(f64, f64)> {
        prune::graph_scores(
            &self.dense(),
            self.selected_features.len(),
            self.n_layers,
            self.tokens.len(),
            &self.logit_probs,
        )
    }
}
