//! `saescope attribute` end to end on SmolLM2 with small random transcoders (what the graph
//! means is not the point here: the command, its files and its errors are).
use saescope::prelude::*;
use saescope::sae::SaeConfig;
use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

/// Random JumpReLU transcoders of width 64 for every layer of SmolLM2, saved as SAELens
/// folders `dir/layer_L`.
fn write_random_transcoders(dir: &Path, n_layers: usize) {
    let (d, w) = (576, 64);
    let dev = Device::Cpu;
    for l in 0..n_layers {
        let cfg = SaeConfig::from_json_value(json!({
            "architecture": "jumprelu_transcoder", "d_in": d, "d_sae": w, "d_out": d,
            "dtype": "float32", "device": "cpu", "apply_b_dec_to_input": false,
            "normalize_activations": "none",
            "metadata": {"hook_name": format!("blocks.{l}.ln2.hook_normalized"),
                         "hook_name_out": format!("blocks.{l}.hook_mlp_out"),
                         "sae_lens_version": "6.54.12", "model_name": "smollm2"},
        }))
        .unwrap();
        let t = HashMap::from([
            (
                "W_enc".to_string(),
                (Tensor::randn(0f32, 1.0, (d, w), &dev).unwrap() / 24.0).unwrap(),
            ),
            (
                "W_dec".to_string(),
                (Tensor::randn(0f32, 1.0, (w, d), &dev).unwrap() * 0.05).unwrap(),
            ),
            (
                "b_enc".to_string(),
                Tensor::zeros(w, DType::F32, &dev).unwrap(),
            ),
            (
                "b_dec".to_string(),
                Tensor::zeros(d, DType::F32, &dev).unwrap(),
            ),
            (
                "threshold".to_string(),
                Tensor::full(1.5f32, w, &dev).unwrap(),
            ),
        ]);
        let sae = Sae::from_config_and_tensors(cfg, t, &dev).unwrap();
        sae.save_to_disk(&dir.join(format!("layer_{l}"))).unwrap();
    }
}

#[test]
fn attribute_writes_graph_json_and_html_and_rejects_a_bad_set() {
    let tmp = tempfile::tempdir().unwrap();
    let tcs = tmp.path().join("tcs");
    write_random_transcoders(&tcs, 30);
    let (json_out, html_out) = (tmp.path().join("g.json"), tmp.path().join("g.html"));
    let out = Command::new(env!("CARGO_BIN_EXE_saescope"))
        .args([
            "attribute",
            "--prompt",
            "The capital of France is",
            "--max-feature-nodes",
            "150",
        ])
        .arg("--transcoders")
        .arg(&tcs)
        .arg("--out")
        .arg(&json_out)
        .arg("--html")
        .arg(&html_out)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("replacement score"), "{stdout}");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json_out).unwrap()).unwrap();
    assert_eq!(json["metadata"]["scan"], "tcs");
    let nodes = json["nodes"].as_array().unwrap();
    assert!(nodes.iter().any(|n| n["feature_type"] == "logit"));
    assert!(nodes.iter().any(|n| n["feature_type"] == "embedding"));
    assert!(!json["links"].as_array().unwrap().is_empty());
    let html = std::fs::read_to_string(&html_out).unwrap();
    assert!(html.contains("<svg") && html.contains("<title>"));

    // A set missing a layer: a clear error naming the set and the model, no panic.
    std::fs::remove_dir_all(tcs.join("layer_29")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_saescope"))
        .args(["attribute", "--prompt", "Hi"])
        .arg("--transcoders")
        .arg(&tcs)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("29 transcoders") && err.contains("30 layers"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

/// Feature dashboards work on transcoder latents (the input hook is the MLP's input, the
/// output directions its output).
#[test]
fn dashboards_of_transcoder_latents() {
    let tmp = tempfile::tempdir().unwrap();
    write_random_transcoders(tmp.path(), 6);
    let tc = Sae::load(&tmp.path().join("layer_5")).unwrap();
    let model = HookedModel::from_pretrained("smollm2").unwrap();
    let rows = corpus_rows(&model, "default", 2048, 64).unwrap();
    let d = feature_dashboards(&model, &tc, &rows, vec![0usize, 1]).unwrap();
    let html = d.to_html();
    assert!(html.as_str().contains("<svg"), "no plots");
    assert!(
        html.as_str().contains("blocks.5.ln2.hook_normalized")
            || html.as_str().contains("blocks.5.hook_mlp_out")
    );
}
