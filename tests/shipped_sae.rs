//! The SAE shipped in `data/saes/` (trained by `scripts/train_default_sae.sh`): its folder,
//! config and size, its recorded evals against the targets, and a fresh eval on the default
//! model with held-out text (reconstruction, sparsity, CE-loss score).
use saescope::eval::{run_evals, EvalOptions};
use saescope::sae::{shipped_sae_dir, Architecture};
use saescope::{Device, HookedModel, Sae, Tensor};

#[test]
fn shipped_sae_folder_and_recorded_evals() {
    let dir = shipped_sae_dir();
    let mut total = 0u64;
    for f in [
        "cfg.json",
        "sae_weights.safetensors",
        "sparsity.safetensors",
        "eval.json",
    ] {
        let m = std::fs::metadata(dir.join(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
        total += m.len();
    }
    assert!(total <= 25 * 1024 * 1024, "{total} bytes > 25 MiB");
    let sae = Sae::shipped().unwrap();
    assert_eq!(sae.cfg().architecture, Architecture::TopK);
    assert_eq!((sae.cfg().d_in, sae.cfg().d_sae), (576, 4608));
    assert_eq!(sae.hook_name(), "blocks.15.hook_resid_post");
    assert_eq!(sae.k(), Some(48));
    // The recorded evals (`saescope eval` defaults: 32 Ki held-out corpus tokens) meet the targets.
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("eval.json")).unwrap()).unwrap();
    assert_eq!(v["dataset"]["name"], "default:heldout");
    assert_eq!(v["dataset"]["tokens"], saescope::eval::DEFAULT_EVAL_TOKENS);
    let get = |a: &str, b: &str| v[a][b].as_f64().unwrap_or_else(|| panic!("{a}.{b}"));
    assert!(get("sparsity", "l0") <= 64.0);
    assert!(get("reconstruction_quality", "explained_variance") >= 0.75);
    assert!(get("model_performance_preservation", "ce_loss_score") >= 0.85);
    let dead = get("feature_stats", "n_dead") / 4608.0;
    assert!(dead < 0.10, "dead fraction {dead}");
}

#[test]
fn shipped_sae_reconstructs_held_out_text() {
    let m = HookedModel::from_pretrained("smollm2").unwrap();
    let sae = Sae::shipped().unwrap();
    let tok = m.tokenizer().unwrap();
    // Text the SAE never saw (not in the corpus): prose and code.
    let texts = [
        "The lighthouse keeper climbed the spiral stairs every evening, wound the clockwork, and \
         trimmed the wick before the fishing boats came home through the fog. On clear nights he \
         wrote letters to his sister about the gulls and the tides.",
        "def moving_average(values, window):\n    if window <= 0:\n        raise ValueError('window \
         must be positive')\n    return [sum(values[i:i + window]) / window for i in range(len(values) - window + 1)]\n",
    ];
    let ctx = 32;
    let mut rows = vec![];
    for t in texts {
        let ids = tok.encode(t, true).unwrap();
        assert!(ids.len() >= ctx, "text too short: {}", ids.len());
        rows.extend_from_slice(&ids[..ctx]);
    }
    let tokens = Tensor::from_vec(rows, (texts.len(), ctx), &Device::Cpu).unwrap();
    let r = run_evals(&m, &sae, &tokens, &EvalOptions::default()).unwrap();
    eprintln!("{}", r.to_json_pretty());
    let rq = r.reconstruction_quality.unwrap();
    let l0 = r.sparsity.unwrap().l0;
    let ce = r.model_performance_preservation.unwrap();
    assert!(l0 <= 48.0 + 1e-9 && l0 > 20.0, "l0 {l0}");
    assert!(
        rq.explained_variance >= 0.7,
        "explained variance {}",
        rq.explained_variance
    );
    assert!(
        ce.ce_loss_score >= 0.8,
        "CE-loss score {}",
        ce.ce_loss_score
    );
}
