//! The graph file circuit-tracer's `create_graph_files` writes (what its bundled frontend and
//! Neuronpedia load): metadata, query parameters, the pruned graph's nodes and links.
use super::{AttributionGraph, PruneResult};
use crate::error::Result;
use serde::Serialize;
use serde_json::Value;

/// One node as the frontend expects it (circuit-tracer's `frontend.graph_models.Node`).
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct GraphNode {
    /// `{layer}_{feature}_{pos}` (features), `0_{layer}_{pos}` (errors), `E_{token}_{pos}`
    /// (tokens), `{n_layers + 1}_{token}_{pos}` (logits).
    pub node_id: String,
    /// Cantor pairing of (layer, feature) for features; -1 errors; pos tokens; token id logits.
    pub feature: i64,
    /// The layer as a string (`E` for embeddings, `n_layers + 1` for logits).
    pub layer: String,
    /// The token position.
    pub ctx_idx: usize,
    /// `cross layer transcoder`, `mlp reconstruction error`, `embedding` or `logit`.
    pub feature_type: String,
    /// The logit's probability (0 for other nodes).
    pub token_prob: f64,
    /// Whether this is the most likely logit.
    pub is_target_logit: bool,
    /// Always 0.
    pub run_idx: usize,
    /// Always 0.
    pub reverse_ctx_idx: usize,
    /// The frontend's node id.
    #[serde(rename = "jsNodeId")]
    pub js_node_id: String,
    /// A label (`Output " Paris" (p=0.412)` for logits).
    pub clerp: String,
    /// The node's cumulative influence share (None for logits).
    pub influence: Option<f64>,
    /// The feature's activation (features only).
    pub activation: Option<f64>,
}

fn cantor(x: i64, y: i64) -> i64 {
    (x + y) * (x + y + 1) / 2 + y
}

/// The frontend's nodes for every node `prune` keeps.
pub(crate) fn nodes(g: &AttributionGraph, p: &PruneResult) -> Vec<(usize, GraphNode)> {
    let n_f = g.selected_features.len();
    let n_pos = g.tokens.len();
    let err_end = n_f + n_pos * g.n_layers;
    let tok_end = err_end + n_pos;
    let blank = |id: String, feature: i64, layer: String, pos: usize, kind: &str| GraphNode {
        js_node_id: id.clone(),
        node_id: id,
        feature,
        layer,
        ctx_idx: pos,
        feature_type: kind.into(),
        token_prob: 0.0,
        is_target_logit: false,
        run_idx: 0,
        reverse_ctx_idx: 0,
        clerp: String::new(),
        influence: None,
        activation: None,
    };
    let mut out = Vec::new();
    for (i, _) in p.node_mask.iter().enumerate().filter(|(_, &k)| k) {
        let infl = Some(p.cumulative_scores[i] as f64);
        let node = if i < n_f {
            let f = g.active_features[g.selected_features[i]];
            let mut n = blank(
                format!("{}_{}_{}", f.layer, f.feature, f.pos),
                cantor(f.layer as i64, f.feature as i64),
                f.layer.to_string(),
                f.pos,
                "cross layer transcoder",
            );
            n.js_node_id = format!("{}_{}-0", f.layer, f.feature);
            n.influence = infl;
            n.activation = Some(f.activation as f64);
            n
        } else if i < err_end {
            let (layer, pos) = ((i - n_f) / n_pos, (i - n_f) % n_pos);
            let mut n = blank(
                format!("0_{layer}_{pos}"),
                -1,
                layer.to_string(),
                pos,
                "mlp reconstruction error",
            );
            n.js_node_id = format!("{layer}_{pos}-0");
            n.influence = infl;
            n
        } else if i < tok_end {
            let pos = i - err_end;
            let t = g.tokens[pos];
            let mut n = blank(
                format!("E_{t}_{pos}"),
                pos as i64,
                "E".into(),
                pos,
                "embedding",
            );
            n.js_node_id = format!("E_{t}-{pos}");
            n.influence = infl;
            n
        } else {
            let k = i - tok_end;
            let (t, prob) = (g.logit_tokens[k], g.logit_probs[k] as f64);
            let layer = (g.n_layers + 1).to_string();
            let pos = n_pos - 1;
            let mut n = blank(format!("{layer}_{t}_{pos}"), t as i64, layer, pos, "logit");
            n.js_node_id = format!("L_{t}-{pos}");
            n.token_prob = prob;
            n.is_target_logit = k == 0;
            n.clerp = format!("Output \"{}\" (p={prob:.3})", g.logit_strs[k]);
            n
        };
        out.push((i, node));
    }
    out
}

/// The whole graph file as JSON.
pub(crate) fn graph_json(
    g: &AttributionGraph,
    p: &PruneResult,
    slug: &str,
    scan: &str,
    node_threshold: f64,
) -> Result<Value> {
    let nodes = nodes(g, p);
    let n = g.n_nodes();
    let mut id_of = vec![None; n];
    for (i, node) in &nodes {
        id_of[*i] = Some(node.node_id.clone());
    }
    let mut links = Vec::new();
    let mut connected = std::collections::HashSet::new();
    for dst in 0..n {
        for src in 0..n {
            if !p.edge_mask[dst * n + src] {
                continue;
            }
            if let (Some(s), Some(d)) = (&id_of[src], &id_of[dst]) {
                connected.insert(s.clone());
                connected.insert(d.clone());
                links.push(serde_json::json!({
                    "source": s, "target": d, "weight": g.adjacency[dst * n + src] as f64,
                }));
            }
        }
    }
    let used: Vec<&GraphNode> = nodes
        .iter()
        .map(|(_, n)| n)
        .filter(|n| {
            connected.contains(&n.node_id)
                || n.feature_type == "embedding"
                || n.feature_type == "logit"
        })
        .collect();
    let prompt_tokens = &g.str_tokens;
    Ok(serde_json::json!({
        "metadata": {
            "slug": slug,
            "scan": scan,
            "transcoder_list": [],
            "prompt_tokens": prompt_tokens,
            "prompt": prompt_tokens.concat(),
            "node_threshold": node_threshold,
            "schema_version": 1,
        },
        "qParams": {
            "pinnedIds": [], "supernodes": [], "linkType": "both", "clickedId": "", "sg_pos": "",
        },
        "nodes": used,
        "links": links,
    }))
}
