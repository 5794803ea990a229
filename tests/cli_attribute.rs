//! `saescope attribute` and `saescope eval --transcoders` end to end on SmolLM2 with the
//! shipped transcoders (what the graph means is not the point here: the commands, their files
//! and their errors are), and dashboards of transcoder latents.
use saescope::prelude::*;
use saescope::sae::shipped_transcoders_dir;
use std::path::Path;
use std::process::Command;

/// The shipped set's layers `0..n` as a set folder of links `dir/layer_L`.
fn link_shipped(dir: &Path, n: usize) {
    std::fs::create_dir_all(dir).unwrap();
    for l in 0..n {
        let src = shipped_transcoders_dir().join(format!("layer_{l}"));
        std::os::unix::fs::symlink(src, dir.join(format!("layer_{l}"))).unwrap();
    }
}

#[test]
fn attribute_writes_graph_json_and_html_and_rejects_a_bad_set() {
    let tmp = tempfile::tempdir().unwrap();
    let tcs = tmp.path().join("tcs");
    link_shipped(&tcs, 30);
    let (json_out, html_out) = (tmp.path().join("g.json"), tmp.path().join("g.html"));
    let out = Command::new(env!("CARGO_BIN_EXE_saescope"))
        .args([
            "attribute",
            "--prompt",
            "The capital of France is",
            "--max-feature-nodes",
            "150",
            "--examples-tokens",
            "1024",
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
    // Hovering a latent shows what it writes and its top examples.
    assert!(
        html.contains("boosts ") && html.contains("[["),
        "no top examples"
    );

    // A set missing a layer: a clear error naming the set and the model, no panic.
    std::fs::remove_file(tcs.join("layer_29")).unwrap();
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
    let tcs = TranscoderSet::shipped().unwrap();
    let tc = tcs.layer(5);
    let model = HookedModel::from_pretrained("smollm2").unwrap();
    let rows = corpus_rows(&model, "default", 2048, 64).unwrap();
    // The two latents that fired most often in training.
    let density = tc.sparsity().unwrap().to_dtype(DType::F32).unwrap();
    let top: Vec<usize> = density
        .topk(2)
        .unwrap()
        .indices
        .to_vec1::<u32>()
        .unwrap()
        .iter()
        .map(|&i| i as usize)
        .collect();
    let d = feature_dashboards(&model, tc, &rows, top).unwrap();
    let html = d.to_html();
    assert!(html.as_str().contains("<svg"), "no plots");
    assert!(
        html.as_str().contains("blocks.5.ln2.hook_normalized")
            || html.as_str().contains("blocks.5.hook_mlp_out")
    );
}

/// `saescope eval --transcoders`: the set's evals as JSON; a folder without transcoders is a
/// clear error.
#[test]
fn eval_of_a_transcoder_set() {
    let out = Command::new(env!("CARGO_BIN_EXE_saescope"))
        .args(["eval", "--tokens", "256", "--context-size", "64", "--no-ce"])
        .arg("--transcoders")
        .arg(shipped_transcoders_dir())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let layers = v["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 30);
    for l in layers {
        let fvu = l["fvu"].as_f64().unwrap();
        assert!(fvu > 0.0 && fvu < 1.0, "{l}");
        assert!(l["l0"].as_f64().unwrap() > 1.0);
    }
    let score = v["ce_loss_score_all"].as_f64().unwrap();
    assert!(score > 0.5 && score <= 1.0, "{score}");
    assert_eq!(v["dataset"]["tokens"], 256);

    let tmp = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_saescope"))
        .args(["eval", "--transcoders"])
        .arg(tmp.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("no transcoder folders"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}
