//! `saescope attribute`: an attribution graph (circuit-tracer's) for a prompt's next token,
//! written as circuit-tracer's graph JSON and/or a self-contained HTML view.
use anyhow::{Context, Result};
use clap::Args;
use saescope::analysis::circuits::{attribute, GraphOptions, TranscoderSet};
use saescope::analysis::dashboard::corpus_rows;
use saescope::HookedModel;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct AttributeArgs {
    /// The prompt (BOS is prepended, as TransformerLens does).
    #[arg(long)]
    pub prompt: String,
    /// A folder of per-layer transcoders (SAELens folders `layer_0`, `layer_1`, …), one per
    /// layer of the model.
    #[arg(long)]
    pub transcoders: PathBuf,
    /// Model: `smollm2`, a `.gguf` file, an HF-layout directory or a TransformerLens alias.
    #[arg(long, default_value = "smollm2")]
    pub model: String,
    /// At most this many feature nodes, the most influential (circuit-tracer's
    /// `max_feature_nodes`).
    #[arg(long, default_value_t = 7500)]
    pub max_feature_nodes: usize,
    /// At most this many logit nodes.
    #[arg(long, default_value_t = 10)]
    pub max_n_logits: usize,
    /// Keep logits until their cumulative probability reaches this.
    #[arg(long, default_value_t = 0.95)]
    pub desired_logit_prob: f64,
    /// Targets per batch.
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    /// Pruning: keep the nodes making up this share of the influence on the logits.
    #[arg(long, default_value_t = 0.8)]
    pub node_threshold: f64,
    /// Pruning: keep the edges making up this share of the edge influence.
    #[arg(long, default_value_t = 0.98)]
    pub edge_threshold: f64,
    /// Write circuit-tracer's graph JSON (what its frontend and Neuronpedia load) here.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Write a self-contained HTML view of the pruned graph here.
    #[arg(long)]
    pub html: Option<PathBuf>,
    /// The graph's name in the JSON (default: from the prompt).
    #[arg(long)]
    pub slug: Option<String>,
    /// The transcoder set's name in the JSON (default: the folder's name).
    #[arg(long)]
    pub scan: Option<String>,
    /// With `--html`: hovering a latent shows its 3 top activating examples in this many
    /// corpus tokens (0: none).
    #[arg(long, default_value_t = 4096)]
    pub examples_tokens: usize,
    /// The corpus the examples come from (a dataset spec, as `saescope eval --dataset`).
    #[arg(long, default_value = "default")]
    pub dataset: String,
}

pub fn run(a: AttributeArgs) -> Result<()> {
    let model = HookedModel::from_pretrained(&a.model)
        .with_context(|| format!("loading model `{}`", a.model))?;
    let tcs = TranscoderSet::load(&a.transcoders)?;
    let opts = GraphOptions {
        max_n_logits: a.max_n_logits,
        desired_logit_prob: a.desired_logit_prob,
        batch_size: a.batch_size,
        max_feature_nodes: Some(a.max_feature_nodes),
        progress: true,
        ..Default::default()
    };
    let graph = attribute(&model, a.prompt.as_str(), &tcs, &opts)?;
    let pruned = graph.prune(a.node_threshold, a.edge_threshold)?;
    let (rep, comp) = graph.scores()?;
    let kept = pruned.node_mask.iter().filter(|&&k| k).count();
    let edges = pruned.edge_mask.iter().filter(|&&k| k).count();
    println!(
        "{} active latents, {} feature nodes, {} nodes; after pruning {kept} nodes and {edges} edges ({:.1} s)",
        graph.active_features.len(),
        graph.selected_features.len(),
        graph.n_nodes(),
        graph.seconds
    );
    println!("replacement score {rep:.3}, completeness score {comp:.3}");
    for (t, p) in graph.logit_strs.iter().zip(&graph.logit_probs) {
        println!("  logit {t:?}: p = {p:.3}");
    }
    let slug = a.slug.clone().unwrap_or_else(|| slugify(&a.prompt));
    let scan = a.scan.clone().unwrap_or_else(|| {
        a.transcoders
            .file_name()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "transcoders".into())
    });
    if let Some(path) = &a.out {
        let json = graph.to_json(&slug, &scan, a.node_threshold, a.edge_threshold)?;
        std::fs::write(path, serde_json::to_string_pretty(&json)?)
            .with_context(|| format!("writing {}", path.display()))?;
        println!("wrote {}", path.display());
    }
    if let Some(path) = &a.html {
        let notes = if a.examples_tokens == 0 {
            Default::default()
        } else {
            let corpus = corpus_rows(&model, &a.dataset, a.examples_tokens, 64).with_context(
                || format!("reading top examples from `{}`; pass --examples-tokens 0 to draw the graph without them", a.dataset),
            )?;
            graph.feature_notes(&model, &tcs, &corpus, 3)?
        };
        let svg = graph.plot_with(a.node_threshold, a.edge_threshold, &notes)?;
        let page = format!(
            "<!doctype html><html><head><meta charset=\"utf-8\"><title>{}</title></head><body>\
             <h3>Attribution graph: {}</h3><p>replacement score {rep:.3}, completeness {comp:.3}; \
             hover a node for details</p>{}</body></html>",
            html_escape(&a.prompt),
            html_escape(&a.prompt),
            svg.as_str()
        );
        std::fs::write(path, page).with_context(|| format!("writing {}", path.display()))?;
        println!("wrote {}", path.display());
    }
    Ok(())
}

fn slugify(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    out.truncate(48);
    out.trim_matches('-').to_string()
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
