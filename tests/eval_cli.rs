//! `saescope eval` end to end: by default it measures the shipped SAE on held-out tokens of the
//! default corpus and says so in its JSON; without the corpus it names the script that builds it.
use saescope::data::default_corpus_dir;
use std::process::Command;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_saescope"))
}

fn ready() -> bool {
    let model = saescope::model::default_data_dir().join("models/SmolLM2-135M-Instruct.Q4_1.gguf");
    if !model.exists() || !default_corpus_dir().join(".complete").exists() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must fetch the model and build the corpus first (scripts/test.sh)"
        );
        eprintln!(
            "skipping: model or corpus missing (scripts/fetch_model.sh, scripts/setup_corpus.sh)"
        );
        return false;
    }
    true
}

#[test]
fn eval_defaults_to_held_out_corpus_tokens_and_names_them() {
    if !ready() {
        return;
    }
    let sae = saescope::sae::shipped_sae_dir();
    let out = bin()
        .args(["eval", "--sae", sae.to_str().unwrap(), "--tokens", "512"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let d = &v["dataset"];
    assert_eq!(d["name"], "default:heldout", "{d}");
    assert_eq!(d["documents"], saescope::data::HELD_OUT_DOCUMENTS);
    assert_eq!(
        (d["rows"].as_u64(), d["context_size"].as_u64()),
        (Some(4), Some(128))
    );
    assert_eq!(d["tokens"], 512);
    assert!(
        d["held_out"].as_str().unwrap().contains("never trained on"),
        "{d}"
    );
    let ev = v["reconstruction_quality"]["explained_variance"]
        .as_f64()
        .unwrap();
    let ce = v["model_performance_preservation"]["ce_loss_score"]
        .as_f64()
        .unwrap();
    assert!(
        ev > 0.8 && ce > 0.9,
        "explained variance {ev}, CE-loss score {ce}"
    );
}

#[test]
fn eval_without_the_corpus_names_the_setup_script() {
    if !ready() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let models = saescope::model::default_data_dir().join("models");
    std::os::unix::fs::symlink(models, dir.path().join("models")).unwrap();
    let sae = saescope::sae::shipped_sae_dir();
    let out = bin()
        .env("SAESCOPE_DATA_DIR", dir.path())
        .args(["eval", "--sae", sae.to_str().unwrap(), "--tokens", "256"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("scripts/setup_corpus.sh"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}
