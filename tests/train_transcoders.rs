//! Per-layer transcoders trained from one model pass (`saescope::train::transcoders`): the
//! fused transcoder steps against the autograd graph; a 2-layer run on the tiny Llama fixture
//! whose loss falls, which stops / is killed and resumes bit for bit, and whose folders load
//! with `Sae::load` as JumpReLU transcoders (float16 weights) that splice into the model.
use saescope::rng::{Draw, Rng};
use saescope::sae::Architecture;
use saescope::train::arch::TrainingSae;
use saescope::train::config::TrainSaeConfig;
use saescope::train::trainer::FitStatus;
use saescope::train::transcoders::{layer_dir, TranscoderRun, TranscodersConfig};
use saescope::{DType, Device, HookedModel, Sae, Tensor};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

// The CLI's `train-transcoders` (compiled here so the tests exercise it).
#[allow(dead_code)]
#[path = "../src/bin/saescope/transcoders.rs"]
mod transcoders_cli;

fn randn(rng: &mut Rng, shape: (usize, usize), scale: f64) -> Tensor {
    let v: Vec<f32> = (0..shape.0 * shape.1)
        .map(|_| (rng.normal() * scale) as f32)
        .collect();
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}

fn max_rel(a: &Tensor, b: &Tensor) -> f64 {
    let a: Vec<f32> = a.flatten_all().unwrap().to_vec1().unwrap();
    let b: Vec<f32> = b.flatten_all().unwrap().to_vec1().unwrap();
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-12);
    a.iter()
        .zip(&b)
        .map(|(x, y)| ((x - y).abs() / scale) as f64)
        .fold(0.0, f64::max)
}

fn fire_counts(f: &Tensor) -> Vec<f32> {
    let on = f.ne(0f32).unwrap().to_dtype(DType::F32).unwrap();
    on.sum(0).unwrap().to_vec1().unwrap()
}

/// The fused step of a transcoder config (input 24 wide, target `d_out` wide) against the
/// autograd graph: losses, reconstruction, firing, gradients, batchtopk's threshold input.
fn compare(cfg: serde_json::Value, d_out: usize, n_dead: usize, what: &str) {
    let (d_in, d_sae, n) = (24, 200, 70);
    let cfg: TrainSaeConfig = serde_json::from_value(cfg).unwrap();
    assert!(cfg.is_transcoder());
    let mut rng = Rng::new(11 + n_dead as u64);
    let mut sae = TrainingSae::new(&cfg, &mut rng, &Device::Cpu).unwrap();
    assert_eq!(sae.params.get("W_dec").unwrap().dims(), &[d_sae, d_out]);
    assert_eq!(sae.params.get("W_enc").unwrap().dims(), &[d_in, d_sae]);
    let mut p: HashMap<String, Tensor> = HashMap::new();
    p.insert("W_dec".into(), randn(&mut rng, (d_sae, d_out), 0.3));
    p.insert("W_enc".into(), randn(&mut rng, (d_in, d_sae), 0.3));
    p.insert(
        "b_enc".into(),
        randn(&mut rng, (1, d_sae), 0.2).flatten_all().unwrap(),
    );
    p.insert(
        "b_dec".into(),
        randn(&mut rng, (1, d_out), 0.5).flatten_all().unwrap(),
    );
    sae.set_params(&p).unwrap();
    let x = randn(&mut rng, (n, d_in), 1.0);
    let y = randn(&mut rng, (n, d_out), 2.0);
    let dead: Vec<bool> = (0..d_sae).map(|j| (j * 7919) % d_sae < n_dead).collect();
    let coefs = HashMap::from([("l1".to_string(), 0.37)]);

    let fused = sae
        .fused_step_to(&x, &y, &dead, &coefs)
        .unwrap()
        .expect("fused path");
    sae.use_fused_kernels = false;
    assert!(sae.fused_step_to(&x, &y, &dead, &coefs).unwrap().is_none());
    let out = sae.training_forward_to(&x, &y, &dead, &coefs).unwrap();
    let grads = out.loss.backward().unwrap();
    let scalar = |t: &Tensor| t.to_scalar::<f32>().unwrap() as f64;
    let want = scalar(&out.loss);
    assert!(
        (fused.loss - want).abs() <= 1e-5 * want.abs(),
        "{what}: loss {} vs {want}",
        fused.loss
    );
    assert_eq!(fused.losses.len(), out.losses.len(), "{what}: loss terms");
    for (name, v) in &fused.losses {
        let (_, w) = out.losses.iter().find(|(n, _)| n == name).unwrap();
        let w = scalar(w);
        assert!(
            (v - w).abs() <= 1e-5 * w.abs().max(1e-6),
            "{what}: {name} {v} vs {w}"
        );
    }
    if n_dead > 0 && cfg.architecture == Architecture::BatchTopK {
        assert!(fused.losses[1].1 > 0.0, "{what}: AuxK active");
    }
    assert_eq!(fused.sae_out.dims(), &[n, d_out]);
    let e = max_rel(&fused.sae_out, &out.sae_out);
    assert!(e < 1e-5, "{what}: sae_out rel err {e}");
    assert_eq!(
        fused.fire_counts,
        fire_counts(&out.feature_acts),
        "{what}: fire counts"
    );
    if cfg.architecture == Architecture::BatchTopK {
        let f: Vec<f32> = out.feature_acts.flatten_all().unwrap().to_vec1().unwrap();
        let min = f.iter().copied().filter(|v| *v > 0.0).reduce(f32::min);
        let (a, b) = (fused.min_active.unwrap(), min.unwrap());
        assert!(
            (a - b).abs() <= 1e-5 * b.abs(),
            "{what}: min active {a} vs {b}"
        );
        let l0 = fused.fire_counts.iter().sum::<f32>() / n as f32;
        assert!((l0 - cfg.k as f32).abs() < 0.5, "{what}: batch L0 {l0}");
    }
    for (name, var) in sae.params.iter() {
        let want = grads.get(var.as_tensor()).expect("graph gradient");
        let i = sae.params.names.iter().position(|n| n == name).unwrap();
        let got = fused.grads[i].as_ref().expect("fused gradient");
        assert_eq!(got.dims(), want.dims(), "{what}: {name} shape");
        let e = max_rel(got, want);
        assert!(e < 1e-4, "{what}: grad {name} rel err {e}");
    }
}

#[test]
fn fused_transcoder_steps_match_the_graph() {
    for d_out in [16, 24] {
        for rescale in [true, false] {
            for n_dead in [0, 5, 60] {
                let cfg = serde_json::json!({
                    "architecture": "batchtopk", "d_in": 24, "d_sae": 200, "d_out": d_out,
                    "k": 6, "rescale_acts_by_decoder_norm": rescale,
                    "apply_b_dec_to_input": false, "aux_loss_coefficient": 0.7,
                });
                let what = format!("batchtopk → {d_out}: rescale {rescale}, {n_dead} dead");
                compare(cfg, d_out, n_dead, &what);
            }
        }
        let cfg = serde_json::json!({
            "architecture": "standard", "d_in": 24, "d_sae": 200, "d_out": d_out,
            "apply_b_dec_to_input": false,
        });
        compare(cfg, d_out, 0, &format!("standard → {d_out}"));
    }
}

#[test]
fn transcoder_configs_are_checked() {
    let parse = |v: serde_json::Value| TranscodersConfig::from_value(v).map(|_| ());
    let base = serde_json::json!({
        "sae": {"architecture": "batchtopk", "k": 4}, "expansion_factor": 2,
        "output_path": "/tmp/x",
    });
    parse(base.clone()).unwrap();
    let with = |k: &str, v: serde_json::Value| {
        let mut b = base.clone();
        b[k] = v;
        b
    };
    let err = |v| parse(v).unwrap_err().to_string();
    let e = err(with(
        "sae",
        serde_json::json!({"architecture": "topk", "k": 4}),
    ));
    assert!(e.contains("transcoder"), "{e}");
    let e = err(with(
        "sae",
        serde_json::json!({"architecture": "batchtopk", "apply_b_dec_to_input": true}),
    ));
    assert!(e.contains("apply_b_dec_to_input"), "{e}");
    let e = err(with("hook_name", "blocks.3.ln2.hook_normalized".into()));
    assert!(e.contains("{layer}"), "{e}");
    let e = err(with("expansion_factor", serde_json::Value::Null));
    assert!(e.contains("d_sae"), "{e}");
    let cfg = TranscodersConfig::from_value(base).unwrap();
    // the default hooks, the processed model, and a transcoder per layer
    let c = cfg.layer_config(7, 576, 576).unwrap();
    assert_eq!(c.store.hook_name, "blocks.7.ln2.hook_normalized");
    assert_eq!(
        c.store.hook_name_out.as_deref(),
        Some("blocks.7.hook_mlp_out")
    );
    assert_eq!(
        (c.sae.d_in, c.sae.d_out, c.sae.d_sae),
        (576, Some(576), 1152)
    );
    assert_eq!(c.store.seed, 42 + 7);
    assert!(!c.sae.apply_b_dec_to_input);
    let kw = c.model_from_pretrained_kwargs.clone().unwrap();
    assert_eq!(kw["fold_ln"], true);
    // a transcoder config is not an SAE config for the single-hook runner
    let e = saescope::train::run(&c).unwrap_err().to_string();
    assert!(e.contains("run_transcoders"), "{e}");
}

// ---------------------------------------------------------------------------------------
// The tiny Llama fixture with a word-level tokenizer.

const WORDS: [&str; 24] = [
    "the", "cat", "sat", "on", "a", "mat", "while", "python", "code", "ran", "def", "return",
    "import", "numbers", "and", "letters", "flow", "through", "layers", "of", "models", "red",
    "blue", "green",
];

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// tests/fixtures/tiny-llama plus a tokenizer, and a JSONL dataset, in `dir`.
fn tiny_setup(dir: &Path) -> (PathBuf, PathBuf) {
    let m = dir.join("tiny-llama");
    std::fs::create_dir_all(&m).unwrap();
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(fixtures().join("tiny-llama").join(f), m.join(f)).unwrap();
    }
    let mut vocab = serde_json::Map::new();
    vocab.insert("<|endoftext|>".into(), 0.into());
    vocab.insert("<unk>".into(), 1.into());
    for (i, w) in WORDS.iter().enumerate() {
        vocab.insert(w.to_string(), (i + 2).into());
    }
    let tok = serde_json::json!({
        "version": "1.0", "truncation": null, "padding": null,
        "added_tokens": [{"id": 0, "content": "<|endoftext|>", "single_word": false,
            "lstrip": false, "rstrip": false, "normalized": false, "special": true}],
        "normalizer": null, "pre_tokenizer": {"type": "Whitespace"}, "post_processor": null,
        "decoder": null,
        "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "<unk>"},
    });
    std::fs::write(m.join("tokenizer.json"), tok.to_string()).unwrap();
    let mut s = String::new();
    for i in 0..200 {
        let n = 5 + (i * 13) % 40;
        let text: Vec<&str> = (0..n)
            .map(|j| WORDS[(i * 7 + j * j * 3) % WORDS.len()])
            .collect();
        s.push_str(&serde_json::json!({ "text": text.join(" ") }).to_string());
        s.push('\n');
    }
    let ds = dir.join("data.jsonl");
    std::fs::write(&ds, s).unwrap();
    (m, ds)
}

fn tiny_cfg(base: &Path, out: &Path, steps: usize, ckpt_every: usize) -> TranscodersConfig {
    let (model, ds) = tiny_setup(base);
    TranscodersConfig::from_value(serde_json::json!({
        "model_name": model.display().to_string(),
        "expansion_factor": 2,
        "sae": {"architecture": "batchtopk", "k": 8, "aux_loss_coefficient": 0.5,
                "normalize_activations": "expected_average_only_in"},
        "dataset_path": ds.display().to_string(),
        "context_size": 16, "store_batch_size_prompts": 3, "n_batches_in_buffer": 8,
        "train_batch_size_tokens": 64, "training_tokens": 64 * steps,
        "exclude_special_tokens": true,
        "lr": 1e-2, "lr_warm_up_steps": 2, "lr_decay_steps": 4,
        "n_batches_for_norm_estimate": 2,
        "b_dec_init_method": "mean", "dead_feature_window": 5, "feature_sampling_window": 9,
        "log_every_n_steps": 3, "checkpoint_every_n_steps": ckpt_every,
        "save_weights_dtype": "float16", "progress_bar": false, "plots": false,
        "output_path": out.display().to_string(),
    }))
    .unwrap()
}

/// Weights (as bits), sparsity, cfg.json and metrics (without wall-clock time) of every layer.
fn assert_same_run(a: &Path, b: &Path, what: &str) {
    for l in 0..2 {
        let (da, db) = (layer_dir(a, l), layer_dir(b, l));
        let bytes = |d: &Path, f: &str| std::fs::read(d.join(f)).unwrap();
        for f in [
            "sae_weights.safetensors",
            "sparsity.safetensors",
            "cfg.json",
        ] {
            assert!(bytes(&da, f) == bytes(&db, f), "{what}: layer {l} {f}");
        }
        let m = |d: &Path| -> Vec<serde_json::Value> {
            std::fs::read_to_string(d.join("metrics.jsonl"))
                .unwrap()
                .lines()
                .map(|l| {
                    let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
                    v.as_object_mut().unwrap().remove("time/elapsed_s");
                    v
                })
                .collect()
        };
        assert_eq!(m(&da), m(&db), "{what}: layer {l} metrics.jsonl");
    }
}

fn mse_curve(dir: &Path, layer: usize) -> Vec<f64> {
    std::fs::read_to_string(layer_dir(dir, layer).join("metrics.jsonl"))
        .unwrap()
        .lines()
        .filter_map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["losses/mse_loss"].as_f64()
        })
        .collect()
}

#[test]
fn two_layers_from_one_pass_train_resume_and_load() {
    let base = tempfile::tempdir().unwrap();
    let full = base.path().join("full");
    let steps = 40;
    let cfg = tiny_cfg(base.path(), &full, steps, 7);
    let mut run = TranscoderRun::new(&cfg).unwrap();
    assert_eq!(run.layers, vec![0, 1]);
    let saes = run.fit().unwrap();
    // one model pass per 48-token batch of context windows serves every layer
    let toks = (steps + 3) * 64;
    assert!(
        run.model_batches() as usize <= toks / 30 + 4,
        "{} model passes",
        run.model_batches()
    );
    for l in 0..2 {
        let c = mse_curve(&full, l);
        assert!(c.len() >= 10, "layer {l}: {c:?}");
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        let (first, last) = (mean(&c[..2]), mean(&c[c.len() - 4..]));
        assert!(last < 0.7 * first, "layer {l}: mse {first} → {last}: {c:?}");
    }

    // The folders: SAELens JumpReLU transcoders with float16 weights, float32 on load.
    let model =
        HookedModel::from_pretrained(base.path().join("tiny-llama").to_str().unwrap()).unwrap();
    let tokens = model
        .to_tokens("the cat sat on a mat while python code ran")
        .unwrap();
    let clean = model.forward(&tokens).unwrap();
    for (l, trained) in saes.iter().enumerate() {
        let dir = layer_dir(&full, l);
        let cfg_json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("cfg.json")).unwrap()).unwrap();
        assert_eq!(cfg_json["architecture"], "jumprelu_transcoder");
        assert_eq!(cfg_json["d_out"], 64);
        assert_eq!(cfg_json["dtype"], "float32");
        let st = candle_core::safetensors::load(dir.join("sae_weights.safetensors"), &Device::Cpu)
            .unwrap();
        let mut names: Vec<&String> = st.keys().collect();
        names.sort();
        assert_eq!(names, ["W_dec", "W_enc", "b_dec", "b_enc", "threshold"]);
        assert!(st.values().all(|t| t.dtype() == DType::F16));
        let tc = Sae::load(&dir).unwrap();
        assert_eq!(tc.architecture(), Architecture::JumpReluTranscoder);
        assert_eq!(tc.dtype(), DType::F32);
        assert_eq!(tc.hook_name(), format!("blocks.{l}.ln2.hook_normalized"));
        assert_eq!(tc.hook_name_out(), format!("blocks.{l}.hook_mlp_out"));
        assert_eq!((tc.d_in(), tc.d_sae(), tc.d_out()), (64, 128, 64));
        assert!(tc.sparsity().is_some());
        // float16 storage: the loaded transcoder equals the trained one to f16 precision
        let th = tc.threshold().unwrap().to_vec1::<f32>().unwrap();
        assert!(
            th.iter().all(|t| *t > 0.0 && *t == th[0]),
            "batchtopk threshold: {th:?}"
        );
        let (_, cache) = model.run_with_cache(&tokens).unwrap();
        let x = cache
            .get(format!("blocks.{l}.ln2.hook_normalized").as_str())
            .unwrap();
        let x = x.squeeze(0).unwrap();
        let e = max_rel(&tc.forward(&x).unwrap(), &trained.forward(&x).unwrap());
        assert!(e < 2e-2, "layer {l}: loaded vs trained rel err {e}");
        // The scaling factors and the threshold are folded in: inference on raw activations
        // is training on scaled ones (keys (s_in x W_enc + b_enc)·‖W_dec‖ above θ), ÷ s_out.
        let t = &run.trainers[l];
        let (s_in, s_out) = (t.scaling_factor.unwrap(), t.target_scaling_factor.unwrap());
        assert!(s_out != 1.0 && s_in != s_out);
        let p = &t.sae.params;
        let g = |n: &str| p.get(n).unwrap().detach();
        let h = (&x * s_in)
            .unwrap()
            .matmul(&g("W_enc"))
            .unwrap()
            .broadcast_add(&g("b_enc"))
            .unwrap();
        let r = g("W_dec").sqr().unwrap().sum(1).unwrap().sqrt().unwrap();
        let key = h.broadcast_mul(&r).unwrap();
        let theta = t.sae.arch.buffers()[0].1;
        let on = key.gt(theta).unwrap().to_dtype(DType::F32).unwrap();
        let f = (&key * &on).unwrap();
        let e = max_rel(&(trained.encode(&x).unwrap() * s_out).unwrap(), &f);
        assert!(e < 1e-4, "layer {l}: folded encode rel err {e}");
        let y = ((&h * &on).unwrap().matmul(&g("W_dec")).unwrap())
            .broadcast_add(&g("b_dec"))
            .unwrap();
        let e = max_rel(&(trained.forward(&x).unwrap() * s_out).unwrap(), &y);
        assert!(e < 1e-4, "layer {l}: folded forward rel err {e}");
        // it splices in: reads ln2.hook_normalized, replaces hook_mlp_out
        let spliced = model.run(&tokens).sae(&tc).logits().unwrap();
        assert!(max_rel(&spliced, &clean) > 1e-4);
        let with_err = model.run(&tokens).sae(&tc).error_term().logits().unwrap();
        assert!(
            max_rel(&with_err, &clean) < 1e-4,
            "layer {l}: with error term"
        );
    }

    // Stop (as a kill would leave it) at several points, resume in a "new process".
    for stop in [0usize, 7, 10, 39] {
        let dir = base.path().join(format!("stop{stop}"));
        let c = tiny_cfg(base.path(), &dir, steps, 7);
        let st = TranscoderRun::new(&c)
            .unwrap()
            .fit_steps(Some(stop))
            .unwrap();
        assert_eq!(st, FitStatus::Stopped);
        assert!(!layer_dir(&dir, 0).join("sae_weights.safetensors").exists());
        saescope::train::resume_transcoders(&dir).unwrap();
        assert_same_run(&full, &dir, &format!("stopped at {stop}"));
    }
}

const CHILD_ENV: &str = "SAESCOPE_TRANSCODER_CHILD_DIR";
const KILL_STEPS: usize = 3000;

/// Not a test by itself: the child process of `resume_after_kill_matches_uninterrupted_run`.
#[test]
#[ignore]
fn child_transcoder_run() {
    let Some(dir) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let dir = PathBuf::from(dir);
    let cfg = tiny_cfg(dir.parent().unwrap(), &dir, KILL_STEPS, 5);
    TranscoderRun::new(&cfg).unwrap().fit().unwrap();
}

/// Kill a transcoder run (SIGKILL) after its first checkpoints, resume, and compare with an
/// uninterrupted run bit for bit.
#[test]
fn resume_after_kill_matches_uninterrupted_run() {
    let base = tempfile::tempdir().unwrap();
    let dir = base.path().join("killed");
    let exe = std::env::current_exe().unwrap();
    let mut child = std::process::Command::new(exe)
        .args([
            "--exact",
            "child_transcoder_run",
            "--ignored",
            "--test-threads",
            "1",
        ])
        .env(CHILD_ENV, &dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    let latest = dir.join("checkpoint/LATEST");
    while !latest.exists() && t0.elapsed() < Duration::from_secs(120) {
        std::thread::sleep(Duration::from_millis(2));
    }
    std::thread::sleep(Duration::from_millis(300));
    child.kill().unwrap();
    child.wait().unwrap();
    let killed_mid_run = !layer_dir(&dir, 1).join("sae_weights.safetensors").exists();
    saescope::train::resume_transcoders(&dir).unwrap();
    let full = base.path().join("full");
    let cfg = tiny_cfg(base.path(), &full, KILL_STEPS, 5);
    TranscoderRun::new(&cfg).unwrap().fit().unwrap();
    assert_same_run(&full, &dir, "killed and resumed");
    assert!(killed_mid_run, "the child finished before it was killed");
}

/// `saescope train-transcoders --config` (refusing an existing run) and `--resume`.
#[test]
fn cli_trains_and_resumes() {
    let base = tempfile::tempdir().unwrap();
    let dir = base.path().join("run");
    let cfg = tiny_cfg(base.path(), &dir, 12, 4);
    let cfg_path = base.path().join("tc.json");
    std::fs::write(&cfg_path, cfg.to_value().to_string()).unwrap();
    let args = |config: Option<PathBuf>, resume: Option<PathBuf>| transcoders_cli::TranscoderArgs {
        config,
        resume,
        output: None,
        training_tokens: None,
        quiet: true,
    };
    TranscoderRun::new(&cfg)
        .unwrap()
        .fit_steps(Some(6))
        .unwrap();
    assert!(transcoders_cli::run(args(Some(cfg_path.clone()), None)).is_err());
    transcoders_cli::run(args(None, Some(dir.clone()))).unwrap();
    let full = base.path().join("full");
    let out = args(Some(cfg_path), None);
    transcoders_cli::run(transcoders_cli::TranscoderArgs {
        output: Some(full.clone()),
        ..out
    })
    .unwrap();
    assert_same_run(&full, &dir, "cli");
    let progress = std::fs::read_to_string(dir.join("progress.jsonl")).unwrap();
    assert_eq!(progress.lines().count(), 4, "{progress}");
}
