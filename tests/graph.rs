//! Attribution graphs against circuit-tracer 0.5.0 itself (scripts/make_graph_goldens.py →
//! tests/fixtures/circuits/graph_tiny.*): the tiny Llama with random JumpReLU transcoders.
use saescope::analysis::circuits::{
    attribute, intervene, Change, Freeze, GraphOptions, Intervention, TranscoderSet,
};
use saescope::prelude::*;
use std::collections::HashMap;
use std::path::PathBuf;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn golden() -> HashMap<String, Tensor> {
    candle_core::safetensors::load(
        fixtures().join("circuits/graph_tiny.safetensors"),
        &Device::Cpu,
    )
    .unwrap()
}

fn tiny() -> (HookedModel, TranscoderSet) {
    let m = HookedModel::from_pretrained(fixtures().join("tiny-llama").to_str().unwrap()).unwrap();
    let t = TranscoderSet::load(fixtures().join("circuits/transcoders_tiny")).unwrap();
    (m, t)
}

/// The golden's prompt `[1, n_pos]` (u32).
fn prompt(g: &HashMap<String, Tensor>) -> Tensor {
    g["tokens"]
        .to_dtype(DType::U32)
        .unwrap()
        .unsqueeze(0)
        .unwrap()
}

fn ints(t: &Tensor) -> Vec<i64> {
    t.flatten_all()
        .unwrap()
        .to_dtype(DType::I64)
        .unwrap()
        .to_vec1()
        .unwrap()
}

fn floats(t: &Tensor) -> Vec<f32> {
    t.flatten_all()
        .unwrap()
        .to_dtype(DType::F32)
        .unwrap()
        .to_vec1()
        .unwrap()
}

fn max_abs(v: &[f32]) -> f32 {
    v.iter().fold(0f32, |m, x| m.max(x.abs()))
}

#[test]
fn tiny_graph_matches_circuit_tracer() {
    check_full_graph(false);
}

/// The autograd reference path (any architecture) gives the same graph.
#[test]
fn tiny_graph_by_autograd_matches_circuit_tracer() {
    check_full_graph(true);
}

fn check_full_graph(autograd: bool) {
    let g = golden();
    let (model, tcs) = tiny();
    let tokens = prompt(&g);
    let opts = GraphOptions {
        batch_size: 32,
        autograd,
        ..Default::default()
    };
    let graph = attribute(&model, &tokens, &tcs, &opts).unwrap();
    check_graph(&g, &graph);
}

/// Compare a graph with circuit-tracer's (`g`: the tensors make_graph_goldens.py writes for
/// one run): nodes, selected features, adjacency, pruning and scores.
fn check_graph(g: &HashMap<String, Tensor>, graph: &AttributionGraph) {
    // Nodes: the active features, the logit targets and probabilities.
    let want_feats = ints(&g["active_features"]);
    let ours: Vec<i64> = graph
        .active_features
        .iter()
        .flat_map(|f| [f.layer as i64, f.pos as i64, f.feature as i64])
        .collect();
    assert_eq!(ours, want_feats, "active features differ");
    let acts: Vec<f32> = graph.active_features.iter().map(|f| f.activation).collect();
    let want_acts = floats(&g["activation_values"]);
    assert!(acts
        .iter()
        .zip(&want_acts)
        .all(|(a, b)| (a - b).abs() <= 1e-4 * (1.0 + b.abs())));
    let logit_ids: Vec<i64> = graph.logit_tokens.iter().map(|&t| t as i64).collect();
    assert_eq!(logit_ids, ints(&g["logit_targets"]));
    let sel: Vec<i64> = graph.selected_features.iter().map(|&i| i as i64).collect();
    let mut want_sel = ints(&g["selected_features"]);
    want_sel.sort();
    assert_eq!(sel, want_sel, "selected features differ");
    let probs = floats(&g["logit_probabilities"]);
    assert!(graph
        .logit_probs
        .iter()
        .zip(&probs)
        .all(|(a, b)| (a - b).abs() < 1e-5));
    // Edges: the adjacency within 1e-4 of its largest entry.
    let want = floats(&g["adjacency_matrix"]);
    assert_eq!(graph.adjacency.len(), want.len(), "node count differs");
    let scale = max_abs(&want);
    let diff = graph
        .adjacency
        .iter()
        .zip(&want)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(
        diff <= 1e-4 * scale,
        "adjacency differs by {diff} (largest entry {scale})"
    );
    eprintln!("adjacency max |Δ| = {diff:.2e} of {scale:.3}");
    // Pruning keeps the same nodes and edges; the scores agree.
    let p = graph.prune(0.8, 0.98).unwrap();
    let want_nodes: Vec<bool> = ints(&g["node_mask"]).iter().map(|&v| v != 0).collect();
    assert_eq!(p.node_mask, want_nodes, "pruned nodes differ");
    let want_edges: Vec<bool> = ints(&g["edge_mask"]).iter().map(|&v| v != 0).collect();
    let edge_diff = p
        .edge_mask
        .iter()
        .zip(&want_edges)
        .filter(|(a, b)| a != b)
        .count();
    assert_eq!(edge_diff, 0, "{edge_diff} pruned edges differ");
    let (rep, comp) = graph.scores().unwrap();
    let want_rep = floats(&g["replacement_score"])[0] as f64;
    let want_comp = floats(&g["completeness_score"])[0] as f64;
    assert!(
        (rep - want_rep).abs() < 1e-4 && (comp - want_comp).abs() < 1e-4,
        "{rep} {comp}"
    );
}

/// SmolLM2 with the shipped transcoders, circuit-tracer's graph of its 16-token prompt with
/// 256 feature nodes chosen by influence (`make_graph_goldens.py --smollm2`).
#[test]
fn smollm2_graph_matches_circuit_tracer() {
    let g = candle_core::safetensors::load(
        fixtures().join("circuits/graph_smollm2.safetensors"),
        &Device::Cpu,
    )
    .unwrap();
    let model = HookedModel::from_pretrained("smollm2").unwrap();
    let tcs = TranscoderSet::shipped().unwrap();
    let tokens = prompt(&g);
    let opts = GraphOptions {
        max_feature_nodes: Some(256),
        batch_size: 64,
        update_interval: 4,
        ..Default::default()
    };
    let graph = attribute(&model, &tokens, &tcs, &opts).unwrap();
    check_graph(&g, &graph);
}

#[test]
fn tiny_partial_graph_matches_circuit_tracer() {
    let g = golden();
    let (model, tcs) = tiny();
    let tokens = prompt(&g);
    let opts = GraphOptions {
        batch_size: 16,
        update_interval: 2,
        max_feature_nodes: Some(128),
        ..Default::default()
    };
    let graph = attribute(&model, &tokens, &tcs, &opts).unwrap();
    let sel: Vec<i64> = graph.selected_features.iter().map(|&i| i as i64).collect();
    let mut want = ints(&g["partial_selected_features"]);
    want.sort();
    assert_eq!(sel, want, "selected features differ");
    let want_a = floats(&g["partial_adjacency_matrix"]);
    let scale = max_abs(&want_a);
    let diff = graph
        .adjacency
        .iter()
        .zip(&want_a)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(diff <= 1e-4 * scale, "partial adjacency differs by {diff}");
}

/// Ablating a feature with attention, norms and MLPs frozen changes each demeaned logit by
/// exactly minus the graph's edge from that feature to the logit.
#[test]
fn direct_effect_interventions_match_the_graph() {
    let g = golden();
    let (model, tcs) = tiny();
    let tokens = prompt(&g);
    let graph = attribute(&model, &tokens, &tcs, &GraphOptions::default()).unwrap();
    let n = graph.n_nodes();
    let n_logits = graph.logit_tokens.len();
    let last = tokens.dim(1).unwrap() - 1;
    let demeaned = |logits: &Tensor| -> Vec<f32> {
        let l = logits.i((0, last)).unwrap();
        let mean = l.mean_all().unwrap().to_scalar::<f32>().unwrap();
        let v = l.to_vec1::<f32>().unwrap();
        graph
            .logit_tokens
            .iter()
            .map(|&t| v[t as usize] - mean)
            .collect()
    };
    let clean = demeaned(&model.run(&tokens).logits().unwrap());
    // The three features with the largest direct effect on the top logit.
    let top_row = n - n_logits;
    let mut feats: Vec<usize> = (0..graph.selected_features.len()).collect();
    feats.sort_by(|&a, &b| {
        graph.adjacency[top_row * n + b]
            .abs()
            .total_cmp(&graph.adjacency[top_row * n + a].abs())
    });
    for &k in &feats[..3] {
        let f = graph.active_features[graph.selected_features[k]];
        let iv = Intervention {
            layer: f.layer,
            pos: f.pos,
            feature: f.feature,
            change: Change::Set(0.0),
        };
        let out = intervene(&model, &tokens, &tcs, &[iv], Freeze::AttentionAndMlps).unwrap();
        let after = demeaned(&out);
        for j in 0..n_logits {
            let edge = graph.adjacency[(n - n_logits + j) * n + k];
            let delta = after[j] - clean[j];
            assert!(
                (delta + edge).abs() < 1e-4 * (1.0 + edge.abs()),
                "feature {f:?}, logit {j}: Δ {delta} vs edge {edge}"
            );
        }
    }
    // Run freely, the same ablation still changes the logits.
    let f = graph.active_features[graph.selected_features[feats[0]]];
    let iv = Intervention {
        layer: f.layer,
        pos: f.pos,
        feature: f.feature,
        change: Change::Scale(3.0),
    };
    let free = demeaned(&intervene(&model, &tokens, &tcs, &[iv], Freeze::Nothing).unwrap());
    assert!(free.iter().zip(&clean).any(|(a, b)| (a - b).abs() > 1e-4));
    // The graph view draws the pruned nodes.
    let svg = graph.plot().unwrap();
    let kept = graph
        .prune(0.8, 0.98)
        .unwrap()
        .node_mask
        .iter()
        .filter(|&&k| k)
        .count();
    assert!(svg.as_str().matches("<title>").count() >= kept);
    let json = graph.to_json("tiny", "saescope-tiny", 0.8, 0.98).unwrap();
    assert!(json["nodes"].as_array().unwrap().len() <= kept);
}

#[test]
fn a_transcoder_set_that_does_not_fit_is_an_error() {
    let (model, tcs) = tiny();
    let tokens = Tensor::new(&[[0u32, 5, 6]], &Device::Cpu).unwrap();
    let one = TranscoderSet::new(vec![tcs.layer(0).clone()]);
    let e = attribute(&model, &tokens, &one, &GraphOptions::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("1 transcoders") && e.contains("2 layers"), "{e}");
    let swapped = TranscoderSet::new(vec![tcs.layer(1).clone(), tcs.layer(0).clone()]);
    let e = attribute(&model, &tokens, &swapped, &GraphOptions::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("blocks.0.ln2.hook_normalized"), "{e}");
}

/// The transcoder-set evals agree with the same quantities computed by hand.
#[test]
fn transcoder_set_evals_match_a_hand_computation() {
    use saescope::eval::eval_transcoders;
    let (model, tcs) = tiny();
    let tokens = Tensor::new(
        &[
            [0u32, 17, 250, 3, 99, 42, 7, 8],
            [0, 5, 6, 7, 200, 100, 11, 12],
        ],
        &Device::Cpu,
    )
    .unwrap();
    let ev = eval_transcoders(
        &model,
        &tcs,
        &tokens,
        &TranscoderEvalOptions {
            batch: 1,
            per_layer_ce: true,
        },
    )
    .unwrap();
    assert_eq!(ev.layers.len(), 2);
    let clean = model
        .loss(&tokens, &model.run(&tokens).logits().unwrap())
        .unwrap();
    let ce_of = |t: &Tensor, logits: &Tensor| {
        model.loss(t, logits).unwrap().to_scalar::<f32>().unwrap() as f64
    };
    // Batches of one row: the eval's CE is the mean of the per-row means.
    let rows: Vec<Tensor> = (0..2).map(|r| tokens.i(r..r + 1).unwrap()).collect();
    let mean = |f: &dyn Fn(&Tensor) -> f64| rows.iter().map(f).sum::<f64>() / 2.0;
    assert!((ev.ce_clean - clean.to_scalar::<f32>().unwrap() as f64).abs() < 1e-5);
    // Layer 1 replaced by hand (position 0 keeps the MLP's output).
    let tc = tcs.layer(1);
    let by_hand = mean(&|t: &Tensor| {
        let (_, cache) = model
            .run(t)
            .names("blocks.1.ln2.hook_normalized")
            .cache()
            .unwrap();
        let x = cache.get("blocks.1.ln2.hook_normalized").unwrap();
        let y_hat = tc.decode(&tc.encode(&x).unwrap()).unwrap();
        let mut hooks = Hooks::new();
        hooks.add("blocks.1.hook_mlp_out", move |y: &Tensor, _: &str| {
            let p = y.dim(1)?;
            Ok(Some(Tensor::cat(
                &[y.narrow(1, 0, 1)?, y_hat.narrow(1, 1, p - 1)?],
                1,
            )?))
        });
        ce_of(t, &model.run_with_hooks(t, hooks).unwrap())
    });
    assert!(
        (ev.layers[1].ce_replaced - by_hand).abs() < 1e-4,
        "{} vs {by_hand}",
        ev.layers[1].ce_replaced
    );
    let l = &ev.layers[1];
    let score = (l.ce_zero_ablated - l.ce_replaced) / (l.ce_zero_ablated - ev.ce_clean);
    assert!((l.ce_loss_score - score).abs() < 1e-9);
    assert!(l.fvu > 0.0 && l.fvu.is_finite() && l.l0 > 0.0);
    assert!((0.0..=1.0).contains(&l.dead_fraction));
    assert!(ev.ce_all_replaced.is_finite() && ev.ce_loss_score_all.is_finite());
}

/// The circuit-tracer layout: a config.yaml naming the hooks and files, per-layer safetensors
/// with circuit-tracer's keys and shapes (`scripts/check_circuit_tracer_load.py` loads it with
/// circuit-tracer itself).
#[test]
fn transcoder_sets_save_in_circuit_tracers_layout() {
    let (_, tcs) = tiny();
    let tmp = tempfile::tempdir().unwrap();
    tcs.save_circuit_tracer(tmp.path(), "saescope-tiny")
        .unwrap();
    let yaml = std::fs::read_to_string(tmp.path().join("config.yaml")).unwrap();
    assert!(yaml.contains("model_kind: transcoder_set"));
    assert!(yaml.contains("feature_input_hook: ln2.hook_normalized"));
    assert!(yaml.contains("  - layer_1.safetensors"));
    let t = candle_core::safetensors::load(tmp.path().join("layer_1.safetensors"), &Device::Cpu)
        .unwrap();
    assert_eq!(t["W_enc"].dims(), [96, 64]);
    assert_eq!(t["W_dec"].dims(), [96, 64]);
    assert_eq!(t["activation_function.threshold"].dims(), [96]);
    let w = tcs.layer(1).w_enc().t().unwrap();
    let d = (&t["W_enc"] - w).unwrap().abs().unwrap().max_all().unwrap();
    assert_eq!(d.to_scalar::<f32>().unwrap(), 0.0);
}
