//! Reading attribution graphs: node influence and the top features, the graph's predictions of
//! interventions against runs of the local replacement model (`Freeze::Replacement`), the
//! logit nodes' values, and hover notes on SmolLM2 with the shipped transcoders.
use saescope::prelude::*;
use std::path::PathBuf;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn tiny() -> (HookedModel, TranscoderSet, Tensor) {
    let m = HookedModel::from_pretrained(fixtures().join("tiny-llama").to_str().unwrap()).unwrap();
    let t = TranscoderSet::load(fixtures().join("circuits/transcoders_tiny")).unwrap();
    let g = candle_core::safetensors::load(
        fixtures().join("circuits/graph_tiny.safetensors"),
        &Device::Cpu,
    )
    .unwrap();
    let tokens = g["tokens"]
        .to_dtype(DType::U32)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    (m, t, tokens)
}

fn iv(f: &FeatureNode, change: Change) -> Intervention {
    Intervention {
        layer: f.layer,
        pos: f.pos,
        feature: f.feature,
        change,
    }
}

#[test]
fn top_features_rank_by_node_influence() {
    let (model, tcs, tokens) = tiny();
    let graph = attribute(&model, &tokens, &tcs, &GraphOptions::default()).unwrap();
    let inf = graph.node_influence().unwrap();
    assert_eq!(inf.len(), graph.n_nodes());
    let top = graph.top_features(10).unwrap();
    assert_eq!(top.len(), 10);
    for w in top.windows(2) {
        assert!(w[0].influence >= w[1].influence);
    }
    let best = (0..graph.selected_features.len())
        .map(|k| inf[k])
        .fold(f32::MIN, f32::max);
    assert_eq!(top[0].influence, best);
    let f = graph.active_features[graph.selected_features[top[0].node]];
    assert_eq!(
        (f.layer, f.pos, f.feature),
        (top[0].layer, top[0].pos, top[0].feature)
    );
}

/// Without interventions the replacement run is the clean run; with a small change the run
/// moves each logit node by what the graph predicts (first order: no latent crosses its
/// threshold); an ablation of a latent of the last layer is its edge exactly.
#[test]
fn predictions_match_the_local_replacement_model() {
    let (model, tcs, tokens) = tiny();
    let graph = attribute(&model, &tokens, &tcs, &GraphOptions::default()).unwrap();
    let clean = graph
        .logit_values(&model.run(&tokens).logits().unwrap())
        .unwrap();
    let same = intervene(&model, &tokens, &tcs, &[], Freeze::Replacement).unwrap();
    let same = graph.logit_values(&same).unwrap();
    for (a, b) in same.iter().zip(&clean) {
        assert!(
            (a - b).abs() < 1e-4,
            "replacement run without changes: {a} vs {b}"
        );
    }
    let mut checked = 0;
    for f in graph.top_features(8).unwrap() {
        let ivs = [iv(&f, Change::Scale(0.98))];
        let pred = graph.predict(&ivs).unwrap();
        let run = intervene(&model, &tokens, &tcs, &ivs, Freeze::Replacement).unwrap();
        let got: Vec<f32> = graph
            .logit_values(&run)
            .unwrap()
            .iter()
            .zip(&clean)
            .map(|(a, b)| a - b)
            .collect();
        let scale = pred.iter().chain(&got).fold(1e-3f32, |m, x| m.max(x.abs()));
        for (p, g) in pred.iter().zip(&got) {
            assert!(
                (p - g).abs() <= 0.02 * scale,
                "{f}: predicted {pred:?}, ran {got:?}"
            );
        }
        checked += 1;
    }
    assert_eq!(checked, 8);
    // A latent of the last layer feeds only the logits: its ablation is minus its edges.
    let n = graph.n_nodes();
    let nl = graph.logit_tokens.len();
    let last_layer = graph.n_layers - 1;
    let f = graph
        .top_features(usize::MAX)
        .unwrap()
        .into_iter()
        .find(|f| f.layer == last_layer)
        .expect("a last-layer feature node");
    let pred = graph.predict(&[iv(&f, Change::Set(0.0))]).unwrap();
    for (j, p) in pred.iter().enumerate() {
        let edge = graph.adjacency[(n - nl + j) * n + f.node];
        assert!((p + edge).abs() < 1e-5 * (1.0 + edge.abs()));
    }
}

#[test]
fn predicting_a_latent_outside_the_graph_is_a_clear_error() {
    let (model, tcs, tokens) = tiny();
    let graph = attribute(&model, &tokens, &tcs, &GraphOptions::default()).unwrap();
    let active: std::collections::HashSet<(usize, usize, usize)> = graph
        .active_features
        .iter()
        .map(|f| (f.layer, f.pos, f.feature))
        .collect();
    let feature = (0..tcs.layer(0).d_sae())
        .find(|&l| !active.contains(&(0, 1, l)))
        .unwrap();
    let err = graph
        .predict(&[Intervention {
            layer: 0,
            pos: 1,
            feature,
            change: Change::Set(0.0),
        }])
        .unwrap_err()
        .to_string();
    assert!(err.contains("max_feature_nodes: None"), "{err}");
}

/// Hover notes on SmolLM2 with the shipped transcoders: one per drawn latent, with the tokens
/// it writes and its top examples, shown in the SVG.
#[test]
fn hover_notes_on_smollm2() {
    let model = HookedModel::from_pretrained("smollm2").unwrap();
    let tcs = TranscoderSet::shipped().unwrap();
    let opts = GraphOptions {
        max_feature_nodes: Some(200),
        ..Default::default()
    };
    let graph = attribute(&model, "The Eiffel Tower is in the city of", &tcs, &opts).unwrap();
    let corpus = corpus_rows(&model, "default", 1024, 64).unwrap();
    let notes = graph.feature_notes(&model, &tcs, &corpus, 2).unwrap();
    let kept = graph.prune(0.8, 0.98).unwrap().node_mask;
    let mut drawn: Vec<(usize, usize)> = (0..graph.selected_features.len())
        .filter(|&k| kept[k])
        .map(|k| {
            let f = graph.active_features[graph.selected_features[k]];
            (f.layer, f.feature)
        })
        .collect();
    drawn.sort();
    drawn.dedup();
    assert!(!drawn.is_empty());
    let mut keys: Vec<(usize, usize)> = notes.keys().copied().collect();
    keys.sort();
    assert_eq!(keys, drawn);
    assert!(notes.values().all(|t| t.starts_with("boosts ")));
    assert!(notes.values().any(|t| t.contains("[[")), "no top examples");
    let svg = graph.plot_with(0.8, 0.98, &notes).unwrap();
    assert!(svg.as_str().contains("boosts "));
}
