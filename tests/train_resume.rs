//! Resumable training: stopping (or killing the process) at any step and resuming ends with
//! exactly the weights of an uninterrupted run with the same seed.
use saescope::train::activations::ActivationStoreConfig;
use saescope::train::config::{ResampleConfig, RunnerConfig, SyntheticConfig};
use saescope::train::synthetic::SyntheticSource;
use saescope::train::trainer::{self, FitStatus, Trainer};
use saescope::{Sae, Tensor};
use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

// The CLI's `train` / `resume` (compiled here so the tests exercise them).
#[allow(dead_code)]
#[path = "../src/bin/saescope/train.rs"]
mod train_cli;

fn one_thread() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
            std::env::set_var("CANDLE_NUM_THREADS", "1");
        }
    });
}

fn cfg(arch: &str, steps: usize, dir: &Path) -> RunnerConfig {
    let sae = serde_json::json!({
        "architecture": arch, "d_in": 16, "d_sae": 48, "k": 4,
        "normalize_activations": "expected_average_only_in",
        "l1_coefficient": 0.5, "l1_warm_up_steps": 6,
        "l0_coefficient": 0.05, "l0_warm_up_steps": 4, "pre_act_loss_coefficient": 0.01,
        "jumprelu_sparsity_loss_mode": "tanh",
    });
    RunnerConfig {
        sae: serde_json::from_value(sae).unwrap(),
        training_tokens: (128 * steps) as u64,
        store: ActivationStoreConfig {
            train_batch_size_tokens: 128,
            ..Default::default()
        },
        lr: 3e-3,
        lr_scheduler_name: "cosineannealing".into(),
        lr_warm_up_steps: 3,
        lr_decay_steps: 5,
        dead_feature_window: 4,
        feature_sampling_window: 9,
        n_batches_for_norm_estimate: 2,
        checkpoint_every_n_steps: 7,
        log_every_n_steps: 3,
        n_checkpoints: 2,
        b_dec_init_method: saescope::train::config::BDecInit::GeometricMedian,
        resample_dead: (arch == "standard").then(|| ResampleConfig {
            every_n_steps: 10,
            ..Default::default()
        }),
        progress_bar: false,
        plots: false,
        output_path: Some(dir.to_string_lossy().into()),
        synthetic: Some(SyntheticConfig {
            n_features: 40,
            feature_prob: 0.08,
            noise_std: 0.01,
            offset_norm: 0.5,
            seed: 5,
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn source(c: &RunnerConfig) -> SyntheticSource {
    SyntheticSource::new(c.synthetic.as_ref().unwrap(), c.sae.d_in).unwrap()
}

fn weights(dir: &Path) -> HashMap<String, Vec<u32>> {
    let t = candle_core::safetensors::load(
        dir.join("sae_weights.safetensors"),
        &candle_core::Device::Cpu,
    )
    .unwrap();
    t.into_iter()
        .map(|(k, v)| {
            let bits = v
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
                .iter()
                .map(|f| f.to_bits())
                .collect();
            (k, bits)
        })
        .collect()
}

fn assert_same_run(a: &Path, b: &Path, what: &str) {
    let (wa, wb) = (weights(a), weights(b));
    assert_eq!(wa.len(), wb.len(), "{what}: tensor sets");
    for (k, v) in &wa {
        assert!(
            v == &wb[k],
            "{what}: `{k}` differs from the uninterrupted run"
        );
    }
    let sp = |d: &Path| std::fs::read(d.join("sparsity.safetensors")).unwrap();
    assert_eq!(sp(a), sp(b), "{what}: sparsity.safetensors");
    let cfg = |d: &Path| std::fs::read_to_string(d.join("cfg.json")).unwrap();
    assert_eq!(cfg(a), cfg(b), "{what}: cfg.json");
    // metrics (ignoring wall-clock time) identical too
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
    let (ma, mb) = (m(a), m(b));
    assert_eq!(ma.len(), mb.len(), "{what}: metrics.jsonl lines");
    for (x, y) in ma.iter().zip(&mb) {
        assert_eq!(x, y, "{what}: metrics.jsonl line");
    }
}

#[test]
fn resume_after_stop_matches_uninterrupted_run() {
    one_thread();
    let steps = 30;
    for arch in ["standard", "gated", "jumprelu", "topk", "batchtopk"] {
        let base = tempfile::tempdir().unwrap();
        let full = base.path().join("full");
        let c = cfg(arch, steps, &full);
        let mut src = source(&c);
        let sae = Trainer::new(&c, None).unwrap().fit(&mut src).unwrap();
        // the output is a SAELens folder that loads and matches
        let loaded = Sae::load_from_disk(&full).unwrap();
        let x = Tensor::randn(0f32, 1.0, (8, 16), &candle_core::Device::Cpu).unwrap();
        let d = (loaded.forward(&x).unwrap() - sae.forward(&x).unwrap())
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap();
        assert!(d.to_scalar::<f32>().unwrap() < 1e-5, "{arch}: loaded SAE");
        assert!(
            full.join("checkpoints").read_dir().unwrap().count() == 2,
            "{arch}: n_checkpoints folders"
        );
        // stop before the first checkpoint, exactly at one, between two, and after the last step
        for stop in [0usize, 5, 7, 16, 29] {
            let dir = base.path().join(format!("stop{stop}"));
            let c2 = cfg(arch, steps, &dir);
            let mut s2 = source(&c2);
            let st = Trainer::new(&c2, None)
                .unwrap()
                .fit_steps(&mut s2, Some(stop))
                .unwrap();
            assert_eq!(st, FitStatus::Stopped);
            assert!(!dir.join("sae_weights.safetensors").exists());
            // a fresh process: a fresh source from the config, state from the checkpoint
            let mut s3 = source(&c2);
            trainer::resume(&dir, &mut s3).unwrap();
            assert_same_run(&full, &dir, &format!("{arch} stopped at {stop}"));
        }
    }
}

/// `train::run(&cfg)` (SAELens's runner `.run()`) is the trainer on the config's own source.
#[test]
fn library_run_equals_the_trainer_on_the_configs_source() {
    one_thread();
    let base = tempfile::tempdir().unwrap();
    let (a, b) = (base.path().join("a"), base.path().join("b"));
    let ca = cfg("topk", 12, &a);
    let sae = saescope::train::run(&ca).unwrap();
    let cb = cfg("topk", 12, &b);
    let mut src = source(&cb);
    Trainer::new(&cb, None).unwrap().fit(&mut src).unwrap();
    assert_same_run(&a, &b, "train::run");
    assert_eq!(sae.d_sae(), 48);
    // A config that cannot name its source is an error that says why.
    let mut bad = cfg("topk", 12, &base.path().join("c"));
    bad.synthetic = None;
    bad.use_cached_activations = true;
    let e = saescope::train::run(&bad).unwrap_err().to_string();
    assert!(e.contains("cached_activations_path"), "{e}");
}

/// The CLI functions: `train --config` then `resume DIR` after a stop.
#[test]
fn cli_train_and_resume() {
    one_thread();
    let base = tempfile::tempdir().unwrap();
    let full = base.path().join("full");
    let c = cfg("topk", 20, &full);
    let cfg_path = base.path().join("cfg.json");
    std::fs::write(&cfg_path, serde_json::to_string_pretty(&c).unwrap()).unwrap();
    train_cli::train(train_cli::TrainArgs {
        config: cfg_path.clone(),
        output: None,
        training_tokens: None,
        seed: None,
        quiet: true,
    })
    .unwrap();
    // a second `train` into the same folder refuses
    assert!(train_cli::train(train_cli::TrainArgs {
        config: cfg_path.clone(),
        output: None,
        training_tokens: None,
        seed: None,
        quiet: true,
    })
    .is_err());
    let dir = base.path().join("stopped");
    let c2 = cfg("topk", 20, &dir);
    let mut s = source(&c2);
    Trainer::new(&c2, None)
        .unwrap()
        .fit_steps(&mut s, Some(11))
        .unwrap();
    train_cli::resume(train_cli::ResumeArgs {
        dir: dir.clone(),
        quiet: true,
    })
    .unwrap();
    assert_same_run(&full, &dir, "cli resume");
}

const CHILD_ENV: &str = "SAESCOPE_TRAIN_CHILD_DIR";

fn kill_cfg(dir: &Path) -> RunnerConfig {
    let mut c = cfg("topk", 1500, dir);
    c.checkpoint_every_n_steps = 3;
    c.resample_dead = None;
    c
}

/// Not a test by itself: the child process of `resume_after_kill_matches_uninterrupted_run`.
#[test]
#[ignore]
fn child_training_run() {
    let Some(dir) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    one_thread();
    let c = kill_cfg(Path::new(&dir));
    let mut s = source(&c);
    Trainer::new(&c, None).unwrap().fit(&mut s).unwrap();
}

/// Kill a training process (SIGKILL, no chance to clean up) at an arbitrary moment after its
/// first checkpoints, resume, and compare with an uninterrupted run bit for bit.
#[test]
fn resume_after_kill_matches_uninterrupted_run() {
    one_thread();
    let base = tempfile::tempdir().unwrap();
    let dir = base.path().join("killed");
    let exe = std::env::current_exe().unwrap();
    let mut child = std::process::Command::new(exe)
        .args([
            "--exact",
            "child_training_run",
            "--ignored",
            "--test-threads",
            "1",
        ])
        .env(CHILD_ENV, &dir)
        .env("CANDLE_NUM_THREADS", "1")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    // wait for a few checkpoints, then kill mid-run
    let ck = dir.join(trainer::CHECKPOINT);
    while !ck.exists() && t0.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(2));
    }
    std::thread::sleep(Duration::from_millis(137));
    child.kill().unwrap();
    child.wait().unwrap();
    let killed_mid_run = !dir.join("sae_weights.safetensors").exists();
    // resume here, in a "new process" (fresh trainer and source)
    let c = kill_cfg(&dir);
    let mut s = source(&c);
    trainer::resume(&dir, &mut s).unwrap();
    // the uninterrupted reference
    let full = base.path().join("full");
    let c = kill_cfg(&full);
    let mut s = source(&c);
    Trainer::new(&c, None).unwrap().fit(&mut s).unwrap();
    assert_same_run(&full, &dir, "killed and resumed");
    assert!(
        killed_mid_run,
        "the child finished before it was killed (machine too fast?)"
    );
}
