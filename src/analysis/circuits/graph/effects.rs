//! Reading a graph: the feature nodes that matter most for the logits, what the graph predicts
//! an intervention does to them, and the logit nodes' values in a model run to compare with.
use super::{AttributionGraph, Change, Intervention};
use crate::error::{Error, Result};
use candle_core::{DType, IndexOp, Tensor};

/// A feature node of an [`AttributionGraph`] with its influence on the logits.
#[derive(Clone, Debug, PartialEq)]
pub struct FeatureNode {
    /// Its index among the graph's nodes (and into `selected_features`).
    pub node: usize,
    /// The transcoder's layer.
    pub layer: usize,
    /// The token position.
    pub pos: usize,
    /// The latent.
    pub feature: usize,
    /// Its activation on the prompt.
    pub activation: f32,
    /// Its share of the influence on the logit nodes (circuit-tracer's node influence:
    /// `w (A + A² + …)` of the row-normalised |adjacency|, `w` the logits' probabilities).
    pub influence: f32,
}

impl std::fmt::Display for FeatureNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "L{}/{} @{} (act {:.2}, influence {:.4})",
            self.layer, self.feature, self.pos, self.activation, self.influence
        )
    }
}

impl AttributionGraph {
    /// Each node's influence on the logit nodes (circuit-tracer's `compute_node_influence`,
    /// the score [`AttributionGraph::prune`] ranks nodes by), in node order.
    pub fn node_influence(&self) -> Result<Vec<f32>> {
        let n = self.n_nodes();
        let mut w = vec![0f32; n];
        w[n - self.logit_probs.len()..].copy_from_slice(&self.logit_probs);
        let norm = super::prune::normalize(&self.dense(), 1e-8);
        super::prune::influence(&norm, n, &w)
    }

    /// The `n` feature nodes with the most influence on the logits, strongest first.
    pub fn top_features(&self, n: usize) -> Result<Vec<FeatureNode>> {
        let inf = self.node_influence()?;
        let mut nodes: Vec<FeatureNode> = (0..self.selected_features.len())
            .map(|k| {
                let f = self.active_features[self.selected_features[k]];
                FeatureNode {
                    node: k,
                    layer: f.layer,
                    pos: f.pos,
                    feature: f.feature,
                    activation: f.activation,
                    influence: inf[k],
                }
            })
            .collect();
        nodes.sort_by(|a, b| b.influence.total_cmp(&a.influence));
        nodes.truncate(n);
        Ok(nodes)
    }

    /// What the graph predicts `interventions` do to each logit node (its demeaned logit, as
    /// [`AttributionGraph::logit_values`] reads it): the changes propagated along the
    /// edges of the local replacement model, layer by layer — each feature's input moves by
    /// the sum of its sources' changes times their edges per unit of activation, and so does
    /// its activation (linear: no latent crosses its threshold). It is exact for
    /// [`super::Freeze::AttentionAndMlps`]-style direct effects when the intervened features
    /// feed no other feature node, and a first-order prediction of a
    /// [`super::Freeze::Attention`] run otherwise. Every intervened latent must be a feature
    /// node of the graph (build it with `max_feature_nodes: None` to have them all).
    pub fn predict(&self, interventions: &[Intervention]) -> Result<Vec<f32>> {
        let n = self.n_nodes();
        let nf = self.selected_features.len();
        let feats: Vec<_> = (0..nf)
            .map(|k| self.active_features[self.selected_features[k]])
            .collect();
        let mut delta = vec![0f32; nf];
        let mut fixed = vec![false; nf];
        for iv in interventions {
            let k = feats
                .iter()
                .position(|f| f.layer == iv.layer && f.pos == iv.pos && f.feature == iv.feature)
                .ok_or_else(|| {
                    Error::Invalid(format!(
                        "latent {} of layer {} at position {} is not a feature node of this \
                         graph (inactive there, or left out by max_feature_nodes); build the \
                         graph with max_feature_nodes: None to predict any active latent",
                        iv.feature, iv.layer, iv.pos
                    ))
                })?;
            let a = feats[k].activation;
            delta[k] = match iv.change {
                Change::Set(v) => v - a,
                Change::Scale(s) => (s - 1.0) * a,
            };
            fixed[k] = true;
        }
        let mut order: Vec<usize> = (0..nf).collect();
        order.sort_by_key(|&k| feats[k].layer);
        // Sources' changes per unit of their activation, filled in layer order.
        let mut per_unit = vec![0f32; nf];
        for &t in &order {
            if !fixed[t] {
                let row = &self.adjacency[t * n..t * n + nf];
                delta[t] = row.iter().zip(&per_unit).map(|(a, u)| a * u).sum();
            }
            let a = feats[t].activation;
            per_unit[t] = if a != 0.0 { delta[t] / a } else { 0.0 };
        }
        let n_logits = self.logit_tokens.len();
        Ok((n - n_logits..n)
            .map(|r| {
                let row = &self.adjacency[r * n..r * n + nf];
                row.iter().zip(&per_unit).map(|(a, u)| a * u).sum()
            })
            .collect())
    }

    /// The logit nodes' values in `logits` (`[1, pos, d_vocab]`, e.g. from
    /// [`super::intervene`]): each node's logit at the last position minus the mean logit
    /// there, as the graph's logit nodes are defined. Subtract two of these to compare a run
    /// with [`AttributionGraph::predict`].
    pub fn logit_values(&self, logits: &Tensor) -> Result<Vec<f32>> {
        let last = logits
            .dim(1)?
            .checked_sub(1)
            .ok_or_else(|| Error::Invalid("logit_values: the logits have no positions".into()))?;
        let l = logits.i((0, last))?.to_dtype(DType::F32)?;
        let mean = l.mean_all()?.to_scalar::<f32>()?;
        let v = l.to_vec1::<f32>()?;
        self.logit_tokens
            .iter()
            .map(|&t| {
                v.get(t as usize).map(|x| x - mean).ok_or_else(|| {
                    Error::Invalid(format!(
                        "logit_values: token {t} is outside the logits' vocabulary ({})",
                        v.len()
                    ))
                })
            })
            .collect()
    }
}
