//! A self-contained SVG view of a pruned attribution graph: token positions left to right,
//! layers bottom to top (embeddings at the bottom, logits at the top), edges weighted by
//! their direct effect (red positive, blue negative); hovering a node shows its label, its
//! activation and influence, and any extra text given for it (e.g. a latent's top examples).
use super::json::{nodes, GraphNode};
use super::{AttributionGraph, PruneResult};
use crate::viz::Svg;
use std::collections::HashMap;
use std::fmt::Write;

/// Escape text for SVG/XML.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The node's row: 0 for embeddings, layer + 1 for features and errors, n_layers + 1 for
/// logits.
fn row_of(n: &GraphNode, n_layers: usize) -> usize {
    match n.feature_type.as_str() {
        "embedding" => 0,
        "logit" => n_layers + 1,
        _ => n.layer.parse::<usize>().map_or(0, |l| l + 1),
    }
}

/// At most this many edges are drawn (the strongest): a pruned graph of a dozen tokens keeps
/// tens of thousands, more than a page can show.
pub(crate) const MAX_EDGES: usize = 2000;

/// Draw the graph pruned by `p`; `notes` maps a feature node's `(layer, feature)` to extra
/// hover text.
pub(crate) fn render(
    g: &AttributionGraph,
    p: &PruneResult,
    notes: &HashMap<(usize, usize), String>,
) -> Svg {
    let kept = nodes(g, p);
    let n = g.n_nodes();
    let n_pos = g.tokens.len();
    let rows = g.n_layers + 2;
    let (col_w, row_h, left, top) = (110.0f64, 34.0f64, 60.0f64, 30.0f64);
    let width = left + col_w * n_pos as f64 + 20.0;
    let height = top + row_h * rows as f64 + 60.0;
    // Spread the nodes of one (row, position) cell across the cell.
    let mut cells: HashMap<(usize, usize), Vec<usize>> = HashMap::new();
    for (k, (_, node)) in kept.iter().enumerate() {
        cells
            .entry((row_of(node, g.n_layers), node.ctx_idx))
            .or_default()
            .push(k);
    }
    let mut xy = vec![(0.0, 0.0); kept.len()];
    for ((row, pos), members) in &cells {
        let m = members.len() as f64;
        for (j, &k) in members.iter().enumerate() {
            let x = left + col_w * *pos as f64 + col_w * (j as f64 + 1.0) / (m + 1.0);
            let y = top + row_h * (rows - 1 - row) as f64 + row_h / 2.0;
            xy[k] = (x, y);
        }
    }
    let index: HashMap<usize, usize> = kept.iter().enumerate().map(|(k, (i, _))| (*i, k)).collect();
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" viewBox="0 0 {width:.0} {height:.0}" font-family="sans-serif" font-size="11">"#
    );
    let _ = write!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    for row in 0..rows {
        let y = top + row_h * (rows - 1 - row) as f64 + row_h / 2.0 + 4.0;
        let label = match row {
            0 => "Emb".to_string(),
            r if r == rows - 1 => "Logit".to_string(),
            r => format!("L{}", r - 1),
        };
        let _ = write!(s, r##"<text x="4" y="{y:.1}" fill="#666">{label}</text>"##);
    }
    for (pos, t) in g.str_tokens.iter().enumerate() {
        let x = left + col_w * pos as f64 + col_w / 2.0;
        let y = height - 20.0;
        let _ = write!(
            s,
            r#"<text x="{x:.1}" y="{y:.1}" text-anchor="middle">{}</text>"#,
            esc(&format!("{t:?}"))
        );
    }
    // The surviving edges between drawn nodes, strongest first, at most MAX_EDGES of them.
    let mut edges: Vec<(usize, usize, f32)> = Vec::new();
    for dst in 0..n {
        for src in 0..n {
            let e = dst * n + src;
            if !p.edge_mask[e] {
                continue;
            }
            if let (Some(&a), Some(&b)) = (index.get(&src), index.get(&dst)) {
                edges.push((a, b, g.adjacency[e]));
            }
        }
    }
    let n_edges = edges.len();
    edges.sort_by(|x, y| y.2.abs().total_cmp(&x.2.abs()));
    edges.truncate(MAX_EDGES);
    let max_w = edges.first().map_or(1e-12, |e| e.2.abs().max(1e-12));
    let _ = write!(
        s,
        r##"<text x="{left:.0}" y="14" fill="#666">{} nodes; {} of {n_edges} edges (the strongest)</text>"##,
        kept.len(),
        edges.len()
    );
    for &(a, b, w) in edges.iter().rev() {
        let (x1, y1) = xy[a];
        let (x2, y2) = xy[b];
        let colour = if w >= 0.0 { "#d62728" } else { "#1f77b4" };
        let sw = 0.3 + 3.0 * (w.abs() / max_w) as f64;
        let op = 0.25 + 0.6 * (w.abs() / max_w) as f64;
        let _ = write!(
            s,
            r#"<line x1="{x1:.1}" y1="{y1:.1}" x2="{x2:.1}" y2="{y2:.1}" stroke="{colour}" stroke-width="{sw:.2}" stroke-opacity="{op:.2}"><title>{w:+.4}</title></line>"#
        );
    }
    for (k, (_, node)) in kept.iter().enumerate() {
        let (x, y) = xy[k];
        let (fill, shape) = match node.feature_type.as_str() {
            "embedding" => ("#999999", "rect"),
            "logit" => ("#2ca02c", "rect"),
            "mlp reconstruction error" => ("#bbbbbb", "diamond"),
            _ => ("#ff7f0e", "circle"),
        };
        let mut tip = match node.feature_type.as_str() {
            "cross layer transcoder" => format!(
                "L{} latent {} at {:?} ({})\nactivation {:.3}",
                node.layer,
                node.node_id.split('_').nth(1).unwrap_or("?"),
                g.str_tokens.get(node.ctx_idx).map_or("?", |t| t.as_str()),
                node.ctx_idx,
                node.activation.unwrap_or(0.0)
            ),
            "mlp reconstruction error" => {
                format!(
                    "error node, layer {} at position {}",
                    node.layer, node.ctx_idx
                )
            }
            "embedding" => format!(
                "token {:?} ({})",
                g.str_tokens.get(node.ctx_idx).map_or("?", |t| t.as_str()),
                node.ctx_idx
            ),
            _ => node.clerp.clone(),
        };
        if let Some(i) = node.influence {
            let _ = write!(tip, "\ncumulative influence {i:.3}");
        }
        if node.feature_type == "cross layer transcoder" {
            let layer = node.layer.parse::<usize>().unwrap_or(0);
            let feat = node
                .node_id
                .split('_')
                .nth(1)
                .and_then(|f| f.parse().ok())
                .unwrap_or(0);
            if let Some(extra) = notes.get(&(layer, feat)) {
                let _ = write!(tip, "\n{extra}");
            }
        }
        let title = format!("<title>{}</title>", esc(&tip));
        match shape {
            "rect" => {
                let _ = write!(
                    s,
                    r#"<rect x="{:.1}" y="{:.1}" width="12" height="12" fill="{fill}">{title}</rect>"#,
                    x - 6.0,
                    y - 6.0
                );
                if node.feature_type == "logit" {
                    let _ = write!(
                        s,
                        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle" font-size="10">{}</text>"#,
                        x,
                        y - 9.0,
                        esc(&node.clerp.replace("Output ", ""))
                    );
                }
            }
            "diamond" => {
                let _ = write!(
                    s,
                    r#"<polygon points="{:.1},{:.1} {:.1},{:.1} {:.1},{:.1} {:.1},{:.1}" fill="{fill}">{title}</polygon>"#,
                    x,
                    y - 6.0,
                    x + 6.0,
                    y,
                    x,
                    y + 6.0,
                    x - 6.0,
                    y
                );
            }
            _ => {
                let _ = write!(
                    s,
                    r#"<circle cx="{x:.1}" cy="{y:.1}" r="5.5" fill="{fill}" stroke="white">{title}</circle>"#
                );
            }
        }
    }
    s.push_str("</svg>");
    Svg(s)
}
