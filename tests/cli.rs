//! The `saescope run` command, end to end.
use saescope::{DType, Device, Tensor};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

mod common;
use common::tensors::rel_err;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_saescope"))
}
fn fixture(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(p)
}
fn load(p: &Path) -> HashMap<String, Tensor> {
    saescope::candle_core::safetensors::load(p, &Device::Cpu).unwrap()
}

#[test]
fn run_tokens_file_writes_tl_named_hooks_matching_transformerlens() {
    let dir = tempfile::tempdir().unwrap();
    let golden = load(&fixture("tl/tiny_gpt2_unprocessed.safetensors"));
    let tokens_file = dir.path().join("tokens.safetensors");
    let tokens = golden["tokens"].clone();
    assert_eq!(tokens.dtype(), DType::I64);
    saescope::candle_core::safetensors::save(
        &HashMap::from([("tokens".to_string(), tokens.clone())]),
        &tokens_file,
    )
    .unwrap();
    let out = dir.path().join("cache.safetensors");
    let status = bin()
        .args([
            "run",
            "--model",
            fixture("tiny-gpt2").to_str().unwrap(),
            "--no-processing",
        ])
        .args([
            "--tokens-file",
            tokens_file.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ])
        .args([
            "--hooks",
            "blocks.0.hook_resid_pre,blocks.1.attn.hook_z,ln_final.hook_scale",
        ])
        .output()
        .unwrap();
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let got = load(&out);
    let mut keys: Vec<&String> = got.keys().collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "blocks.0.hook_resid_pre",
            "blocks.1.attn.hook_z",
            "ln_final.hook_scale",
            "logits",
            "tokens"
        ]
    );
    assert_eq!(
        got["tokens"].to_vec2::<i64>().unwrap(),
        tokens.to_vec2::<i64>().unwrap()
    );
    for k in [
        "blocks.0.hook_resid_pre",
        "blocks.1.attn.hook_z",
        "ln_final.hook_scale",
        "logits",
    ] {
        assert_eq!(got[k].dtype(), DType::F32);
        assert!(rel_err(&got[k], &golden[k]) < 1e-4, "{k}");
    }
    // The top predictions are printed for both rows.
    let stdout = String::from_utf8_lossy(&status.stdout);
    assert!(
        stdout.contains("[0]") && stdout.contains("[1]") && stdout.contains("logit"),
        "{stdout}"
    );
}

#[test]
fn run_all_hooks_on_the_default_model() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("all.safetensors");
    let o = bin()
        .args([
            "run",
            "--model",
            "smollm2",
            "--prompt",
            "The capital of France is",
            "--out",
            out.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stdout = String::from_utf8_lossy(&o.stdout);
    let first = stdout.lines().nth(1).unwrap_or_default();
    assert!(
        first.contains("\" Paris\""),
        "top prediction should be Paris:\n{stdout}"
    );
    let got = load(&out);
    let golden = load(&fixture("tl/smollm2_processed.safetensors"));
    assert_eq!(
        got.len(),
        golden.len() - 1,
        "every hook + logits + tokens (golden also has log_probs)"
    );
    for (k, v) in &golden {
        if k == "log_probs" {
            continue;
        }
        let g = &got[k];
        if k == "tokens" {
            assert_eq!(g.to_vec2::<i64>().unwrap(), v.to_vec2::<i64>().unwrap());
        } else if !k.ends_with("hook_attn_scores") {
            assert!(rel_err(g, v) < 1e-4, "{k}");
        }
    }
}

#[test]
fn main_job_prints_predictions_and_the_shipped_saes_top_latents() {
    let prompt = "The capital of France is";
    let o = bin().args(["run", "--prompt", prompt]).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("\" Paris\""), "{out}");
    assert!(out.contains("top 5 latents of the shipped SAE"), "{out}");
    // The same latents, in the same order, as the library call (the course's first cell).
    let model = saescope::HookedModel::from_pretrained("smollm2").unwrap();
    let sae = saescope::Sae::shipped().unwrap();
    let want = saescope::analysis::top_latents(&model, &sae, prompt, 5, 6).unwrap();
    let lines: Vec<&str> = out
        .lines()
        .filter(|l| l.trim_start().starts_with("latent "))
        .collect();
    assert_eq!(lines.len(), 5, "{out}");
    for (line, l) in lines.iter().zip(&want) {
        assert!(
            line.contains(&format!("latent {:>5}", l.latent)),
            "{line} vs {}",
            l.latent
        );
        assert!(
            line.contains(&format!("{:?}", l.top_tokens[0].token)),
            "{line}"
        );
    }
    assert!(want.windows(2).all(|w| w[0].activation >= w[1].activation));
    // --latents 0 leaves them out.
    let o = bin()
        .args(["run", "--prompt", prompt, "--latents", "0"])
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&o.stdout).contains("latents of the shipped SAE"));
}

#[test]
fn run_with_a_wrong_hook_name_fails_with_suggestions() {
    let o = bin()
        .args([
            "run",
            "--model",
            fixture("tiny-llama").to_str().unwrap(),
            "--tokens-file",
        ])
        .arg(fixture("tl/tiny_llama_processed.safetensors"))
        .args(["--hooks", "blocks.0.attn.hook_rotq"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("unknown hook name") && err.contains("blocks.0.attn.hook_rot_q"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn run_with_a_missing_tokens_tensor_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("x.safetensors");
    let t = Tensor::zeros((1, 3), DType::I64, &Device::Cpu).unwrap();
    saescope::candle_core::safetensors::save(&HashMap::from([("ids".to_string(), t)]), &f).unwrap();
    let o = bin()
        .args([
            "run",
            "--model",
            fixture("tiny-gpt2").to_str().unwrap(),
            "--tokens-file",
        ])
        .arg(&f)
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("no tensor named `tokens`") && err.contains("ids"),
        "{err}"
    );
}

fn sae_fixture(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/sae")
        .join(p)
}

#[test]
fn sae_info_shows_config_dims_hook_and_files() {
    let o = bin()
        .args(["sae", "info"])
        .arg(sae_fixture("saes/transcoder"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let s = String::from_utf8_lossy(&o.stdout);
    for want in [
        "architecture",
        "transcoder",
        "d_in 16",
        "d_sae 48",
        "hook_out",
        "cfg.json",
        "sae_weights.safetensors",
    ] {
        assert!(s.contains(want), "missing {want:?} in:\n{s}");
    }
    let o = bin()
        .args(["sae", "info", "gpt2-small-res-jb/blocks.99"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("blocks.9.hook_resid_pre"), "{err}");
}

#[test]
fn sae_apply_writes_saelens_outputs_for_every_row() {
    let dir = tempfile::tempdir().unwrap();
    let golden = load(&sae_fixture("goldens/gated.safetensors"));
    let input = dir.path().join("acts.safetensors");
    saescope::candle_core::safetensors::save(
        &HashMap::from([("x".to_string(), golden["x"].clone())]),
        &input,
    )
    .unwrap();
    let out = dir.path().join("out.safetensors");
    let o = bin()
        .args(["sae", "apply", "--sae"])
        .arg(sae_fixture("saes/gated"))
        .arg("--input")
        .arg(&input)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let got = load(&out);
    for (k, g) in [
        ("feature_acts", "feature_acts"),
        ("hidden_pre", "hidden_pre"),
        ("recons", "recons"),
        ("x", "x"),
    ] {
        assert!(rel_err(&got[k], &golden[g]) < 1e-4, "{k}");
    }
    // --rows: the first rows only (the layout scripts/check_saelens_load.py reads).
    let o = bin()
        .args(["sae", "apply", "--rows", "3", "--sae"])
        .arg(sae_fixture("saes/gated"))
        .arg("--input")
        .arg(&input)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let got = load(&out);
    assert_eq!(got["x"].dim(0).unwrap(), 3);
    let want = golden["feature_acts"]
        .reshape(((), 48))
        .unwrap()
        .narrow(0, 0, 3)
        .unwrap();
    assert!(rel_err(&got["feature_acts"], &want) < 1e-4);
    // Several tensors and no --key: a clear error.
    saescope::candle_core::safetensors::save(
        &HashMap::from([
            ("a".to_string(), golden["x"].clone()),
            ("b".to_string(), golden["x"].clone()),
        ]),
        &input,
    )
    .unwrap();
    let o = bin()
        .args(["sae", "apply", "--sae"])
        .arg(sae_fixture("saes/gated"))
        .arg("--input")
        .arg(&input)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("--key"));
}

#[test]
fn run_with_an_sae_writes_its_hooks() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("c.safetensors");
    let o = bin()
        .args([
            "run",
            "--prompt",
            "The capital of France is",
            "--use-error-term",
            "--sae",
        ])
        .arg(sae_fixture("saes/smollm2_standard_l10"))
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let got = load(&out);
    let golden = load(&sae_fixture("goldens/spliced_smollm2.safetensors"));
    let h = "blocks.10.hook_resid_pre";
    assert!(!got.contains_key(h), "the replaced hook is absent");
    for k in [
        "input",
        "acts_pre",
        "acts_post",
        "recons",
        "error",
        "output",
    ] {
        assert!(got.contains_key(&format!("{h}.hook_sae_{k}")), "{k}");
    }
    assert!(
        rel_err(
            &got[&format!("{h}.hook_sae_acts_post")],
            &golden[&format!("a.{h}.hook_sae_acts_post")]
        ) < 1e-4
    );
    // With the error term the logits are the clean model's.
    let clean = load(
        &Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/tl/smollm2_processed.safetensors"),
    );
    assert!(rel_err(&got["logits"], &clean["logits"]) < 1e-4);
}
