//! SAEs against SAELens 6.54.12 goldens (tests/fixtures/sae/goldens, written by the Python
//! fixture script): every architecture's encode / hidden_pre / hook values / decode / forward /
//! error term / fold_W_dec_norm within 1e-4 relative error; plus API behaviour and error cases.
#[path = "sae_support/goldens.rs"]
mod goldens;

use goldens::{check_golden, fixtures, rel_err};
use saescope::sae::{Architecture, NormState, Sae, SaeConfig, SaeLoadOptions};
use saescope::{DType, Device, Error, Tensor};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

fn sae_dir(name: &str) -> PathBuf {
    fixtures().join("saes").join(name)
}

fn load(name: &str) -> Sae {
    Sae::load_from_disk(&sae_dir(name)).unwrap_or_else(|e| panic!("load {name}: {e}"))
}

/// The SAELens-folder goldens (the converted formats are in tests/sae_loaders.rs).
pub const FOLDER_GOLDENS: [&str; 15] = [
    "standard",
    "standard_no_bdec",
    "standard_hook_z",
    "gated",
    "jumprelu",
    "topk",
    "topk_rescale",
    "batchtopk",
    "norm_constant",
    "norm_layer",
    "expected_average",
    "transcoder",
    "skip_transcoder",
    "jumprelu_transcoder",
    "legacy_pre6",
];

macro_rules! golden_tests {
    ($($name:ident),* $(,)?) => {$(
        #[test]
        fn $name() {
            let name = stringify!($name).trim_start_matches("golden_");
            let sae = load(name);
            let report = check_golden(name, &sae);
            assert!(!report.is_empty());
            eprintln!("{name}: {}", report.join(", "));
        }
    )*};
}

golden_tests!(
    golden_standard,
    golden_standard_no_bdec,
    golden_standard_hook_z,
    golden_gated,
    golden_jumprelu,
    golden_topk,
    golden_topk_rescale,
    golden_batchtopk,
    golden_norm_constant,
    golden_norm_layer,
    golden_expected_average,
    golden_transcoder,
    golden_skip_transcoder,
    golden_jumprelu_transcoder,
);

/// Every golden file is checked by this file or tests/sae_loaders.rs (or is the splicing
/// golden, tests/splice.rs).
#[test]
fn every_golden_is_covered() {
    let loaders = [
        "legacy_pre6",
        "legacy_pre6_topk",
        "gemma_scope",
        "gemma_scope_2",
        "gemma_scope_2_transcoder",
        "sparsify",
        "dictionary_learning_standard",
        "dictionary_learning_batchtopk",
    ];
    let mut uncovered = Vec::new();
    for e in std::fs::read_dir(fixtures().join("goldens")).unwrap() {
        let n = e.unwrap().file_name().to_string_lossy().into_owned();
        let Some(stem) = n.strip_suffix(".safetensors") else {
            continue;
        };
        if stem.starts_with("spliced_") {
            continue;
        }
        if !FOLDER_GOLDENS.contains(&stem) && !loaders.contains(&stem) {
            uncovered.push(stem.to_string());
        }
    }
    assert!(
        uncovered.is_empty(),
        "goldens without a test: {uncovered:?}"
    );
}

#[test]
fn config_and_accessors() {
    let sae = load("standard");
    assert_eq!(sae.architecture(), Architecture::Standard);
    assert_eq!(sae.hook_name(), "blocks.0.hook_resid_pre");
    assert_eq!(sae.hook_name_out(), "blocks.0.hook_resid_pre");
    assert_eq!((sae.d_in(), sae.d_sae(), sae.d_out()), (16, 48, 16));
    assert_eq!(sae.w_enc().dims(), [16, 48]);
    assert_eq!(sae.w_dec().dims(), [48, 16]);
    assert_eq!(sae.b_enc().unwrap().dims(), [48]);
    assert_eq!(sae.b_dec().dims(), [16]);
    assert!(sae.threshold().is_none());
    assert_eq!(sae.dtype(), DType::F32);
    assert_eq!(sae.sparsity().expect("sparsity.safetensors").dims(), [48]);
    assert_eq!(
        sae.cfg().metadata.model_name.as_deref(),
        Some("tiny-test-model")
    );
    assert_eq!(
        sae.cfg().metadata.sae_lens_version.as_deref(),
        Some("6.54.12")
    );

    let tc = load("skip_transcoder");
    assert_eq!(tc.architecture(), Architecture::SkipTranscoder);
    assert_eq!(tc.hook_name(), "blocks.0.ln2.hook_normalized");
    assert_eq!(tc.hook_name_out(), "blocks.0.hook_mlp_out");
    assert_eq!((tc.d_in(), tc.d_out()), (16, 12));
    assert_eq!(tc.w_skip().unwrap().dims(), [12, 16]);

    let g = load("gated");
    assert!(g.b_enc().is_none());
    assert!(g.b_gate().is_some() && g.b_mag().is_some() && g.r_mag().is_some());
    assert_eq!(load("topk").k(), Some(5));
    assert!(load("jumprelu").threshold().is_some());
    // batchtopk checkpoints are saved (and loaded) as jumprelu.
    assert_eq!(load("batchtopk").architecture(), Architecture::JumpRelu);
}

#[test]
fn leading_dims_any_rank() {
    let sae = load("jumprelu");
    let (g, _) = goldens::load_golden("jumprelu");
    let x = &g["x"]; // [3, 5, 16]
    let want = &g["feature_acts"];
    // [15, 16], [16] and [3, 1, 5, 16] give the same values.
    let x2 = x.reshape((15, 16)).unwrap();
    let f2 = sae.encode(&x2).unwrap();
    assert_eq!(f2.dims(), [15, 48]);
    assert!(rel_err(&f2.reshape((3, 5, 48)).unwrap(), want).unwrap() < 1e-6);
    let x1 = x2.get(4).unwrap();
    let f1 = sae.encode(&x1).unwrap();
    assert_eq!(f1.dims(), [48]);
    assert!(rel_err(&f1, &want.reshape((15, 48)).unwrap().get(4).unwrap()).unwrap() < 1e-6);
    let x4 = x.reshape((3, 1, 5, 16)).unwrap();
    assert_eq!(sae.forward(&x4).unwrap().dims(), [3, 1, 5, 16]);
    // A non-contiguous input works too.
    let xt = x.transpose(0, 1).unwrap();
    let ft = sae.encode(&xt).unwrap().transpose(0, 1).unwrap();
    assert!(rel_err(&ft, want).unwrap() < 1e-6);
    // f64 input is cast to the SAE dtype.
    let f64in = sae.encode(&x.to_dtype(DType::F64).unwrap()).unwrap();
    assert_eq!(f64in.dtype(), DType::F32);
}

#[test]
fn hook_z_accepts_flat_input() {
    let sae = load("standard_hook_z");
    let (g, _) = goldens::load_golden("standard_hook_z");
    let x = &g["x"]; // [3, 5, 4, 4]
    let flat = x.reshape((3, 5, 16)).unwrap();
    let f = sae.encode(&flat).unwrap();
    assert!(rel_err(&f, &g["feature_acts"]).unwrap() < 1e-6);
    // Flat in, flat out.
    assert_eq!(sae.forward(&flat).unwrap().dims(), [3, 5, 16]);
    // decode without state: flat [..., d_in].
    assert_eq!(sae.decode(&f).unwrap().dims(), [3, 5, 16]);
    let err = sae.encode(&Tensor::zeros((2, 3, 5), DType::F32, &Device::Cpu).unwrap());
    let msg = err.unwrap_err().to_string();
    assert!(msg.contains("16") && msg.contains("n_heads"), "{msg}");
}

#[test]
fn d_in_mismatch_is_an_error_with_both_numbers() {
    let sae = load("standard");
    let x = Tensor::zeros((2, 7, 15), DType::F32, &Device::Cpu).unwrap();
    for r in [
        sae.encode(&x).map(|_| ()),
        sae.forward(&x).map(|_| ()),
        sae.run_with_cache(&x).map(|_| ()),
    ] {
        let e = r.unwrap_err();
        assert!(matches!(e, Error::Invalid(_)), "{e:?}");
        let m = e.to_string();
        assert!(m.contains("d_in = 16") && m.contains("15"), "{m}");
        assert!(m.contains("blocks.0.hook_resid_pre"), "{m}");
    }
    let scalar = Tensor::new(1f32, &Device::Cpu).unwrap();
    assert!(sae.encode(&scalar).is_err());
    // Features of the wrong width.
    let f = Tensor::zeros((3, 47), DType::F32, &Device::Cpu).unwrap();
    let m = sae.decode(&f).unwrap_err().to_string();
    assert!(m.contains("48") && m.contains("47"), "{m}");
}

#[test]
fn norm_state_must_match_the_input() {
    let sae = load("norm_layer");
    let x = Tensor::randn(0f32, 1.0, (4, 16), &Device::Cpu).unwrap();
    let (f, st) = sae.encode_with_state(&x).unwrap();
    assert!(st.mu.is_some() && st.std.is_some() && st.scale.is_none());
    let other = f.narrow(0, 0, 2).unwrap();
    let m = sae.decode_with_state(&other, &st).unwrap_err().to_string();
    assert!(m.contains("4 tokens") && m.contains("2"), "{m}");
    // The stateless decode is the normalised-space reconstruction (= hook_sae_recons).
    let (_, cache) = sae.run_with_cache(&x).unwrap();
    let recons = cache.get("hook_sae_recons").unwrap();
    assert_eq!(rel_err(&sae.decode(&f).unwrap(), recons), Some(0.0));
    let c = load("norm_constant").encode_with_state(&x).unwrap().1;
    assert!(c.scale.is_some() && c.mu.is_none());
    assert!(load("standard")
        .encode_with_state(&x)
        .unwrap()
        .1
        .scale
        .is_none());
}

#[test]
fn hooks_can_replace_activations() {
    let sae = load("standard");
    let x = Tensor::randn(0f32, 1.0, (2, 3, 16), &Device::Cpu).unwrap();
    // Zero every feature: the output is b_dec.
    let mut order = Vec::new();
    let mut zero = |name: &str, t: Tensor| {
        order.push(name.to_string());
        if name == "hook_sae_acts_post" {
            Ok(t.zeros_like()?)
        } else {
            Ok(t)
        }
    };
    let y = sae.forward_hooked(&x, false, &mut zero).unwrap();
    let mut hp = |name: &str, t: Tensor| {
        if name == "hook_sae_acts_post" {
            Ok(t.zeros_like()?)
        } else {
            Ok(t)
        }
    };
    assert_eq!(
        order,
        [
            "hook_sae_input",
            "hook_sae_acts_pre",
            "hook_sae_acts_post",
            "hook_sae_recons",
            "hook_sae_output"
        ]
    );
    let b = sae.b_dec().broadcast_as((2, 3, 16)).unwrap();
    assert!(rel_err(&y, &b).unwrap() < 1e-6);
    // With the error term, the error is computed without hooks: output = x + b_dec - recons.
    let y_err = sae.forward_hooked(&x, true, &mut hp).unwrap();
    let clean = sae.forward(&x).unwrap();
    let want = ((&x + &b).unwrap() - &clean).unwrap();
    assert!(rel_err(&y_err, &want).unwrap() < 1e-5);
    // Without interventions the error term restores x.
    assert!(rel_err(&sae.forward_with_error(&x).unwrap(), &x).unwrap() < 1e-5);
    // A hook returning a wrong shape is an error, not a panic.
    let mut bad = |name: &str, t: Tensor| {
        if name == "hook_sae_acts_pre" {
            Ok(t.narrow(2, 0, 10)?)
        } else {
            Ok(t)
        }
    };
    let m = sae
        .forward_hooked(&x, false, &mut bad)
        .unwrap_err()
        .to_string();
    assert!(m.contains("hook_sae_acts_pre"), "{m}");
    // A hook error propagates.
    let mut failing =
        |_: &str, _: Tensor| -> saescope::Result<Tensor> { Err(Error::Invalid("stop".into())) };
    assert!(sae.encode_hooked(&x, &mut failing).is_err());
}

#[test]
fn transcoders_have_no_standalone_error_term() {
    let tc = load("transcoder");
    let x = Tensor::randn(0f32, 1.0, (2, 16), &Device::Cpu).unwrap();
    let m = tc.forward_with_error(&x).unwrap_err().to_string();
    assert!(m.contains("transcoder"), "{m}");
    assert!(tc.skip_connection(&x).unwrap().is_none());
    let skip = load("skip_transcoder");
    let s = skip.skip_connection(&x).unwrap().unwrap();
    let (f, st) = skip.encode_with_state(&x).unwrap();
    let y = (skip.decode_with_state(&f, &st).unwrap() + s).unwrap();
    assert!(rel_err(&skip.forward(&x).unwrap(), &y).unwrap() < 1e-6);
}

#[test]
fn save_and_reload_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    for name in [
        "standard",
        "gated",
        "topk_rescale",
        "jumprelu_transcoder",
        "norm_layer",
    ] {
        let sae = load(name);
        let out = dir.path().join(name);
        sae.save_to_disk(&out).unwrap();
        let back = Sae::load_from_disk(&out).unwrap();
        assert_eq!(back.architecture(), sae.architecture());
        assert_eq!(back.cfg().to_json_value(), sae.cfg().to_json_value());
        let x = Tensor::randn(0f32, 1.0, (3, 16), &Device::Cpu).unwrap();
        assert_eq!(
            rel_err(&back.forward(&x).unwrap(), &sae.forward(&x).unwrap()),
            Some(0.0),
            "{name}"
        );
        assert_eq!(back.sparsity().is_some(), sae.sparsity().is_some());
    }
}

#[test]
fn dtype_and_device_options() {
    let (g, _) = goldens::load_golden("standard");
    let x = &g["x"];
    let o = SaeLoadOptions {
        dtype: Some(DType::F64),
        ..Default::default()
    };
    let s64 = Sae::load_from_disk_with(&sae_dir("standard"), &o).unwrap();
    assert_eq!(s64.dtype(), DType::F64);
    assert_eq!(s64.cfg().dtype, "float64");
    let y = s64.forward(x).unwrap();
    assert_eq!(y.dtype(), DType::F64);
    assert!(rel_err(&y, &g["forward"]).unwrap() < 1e-5);
    let bf = load("standard").to_dtype(DType::BF16).unwrap();
    let yb = bf.forward(x).unwrap();
    assert_eq!(yb.dtype(), DType::BF16);
    assert!(rel_err(&yb, &g["forward"]).unwrap() < 3e-2);
    // fold_w_dec_norm as a load option.
    let o = SaeLoadOptions {
        fold_w_dec_norm: true,
        ..Default::default()
    };
    let folded = Sae::load_from_disk_with(&sae_dir("standard"), &o).unwrap();
    assert!(rel_err(&folded.forward(x).unwrap(), &g["forward_folded"]).unwrap() < 1e-4);
    let o = SaeLoadOptions {
        fold_w_dec_norm: true,
        ..Default::default()
    };
    let m = Sae::load_from_disk_with(&sae_dir("topk"), &o)
        .unwrap_err()
        .to_string();
    assert!(m.contains("rescale_acts_by_decoder_norm"), "{m}");
}

#[test]
fn fold_activation_norm_scaling_factor_matches_sae_lens() {
    let (g, meta) = goldens::load_golden("expected_average");
    let fp: serde_json::Value = serde_json::from_str(&meta["from_pretrained"]).unwrap();
    let s = fp["norm_scaling_factor"].as_f64().unwrap();
    let mut sae = load("expected_average");
    assert_eq!(
        sae.cfg().normalize_activations,
        saescope::sae::NormalizeActivations::ExpectedAverageOnlyIn
    );
    sae.fold_activation_norm_scaling_factor(s).unwrap();
    assert_eq!(
        sae.cfg().normalize_activations,
        saescope::sae::NormalizeActivations::None
    );
    for (k, t) in [
        ("W_enc.from_pretrained", sae.w_enc()),
        ("W_dec.from_pretrained", sae.w_dec()),
        ("b_dec.from_pretrained", sae.b_dec()),
    ] {
        assert!(rel_err(t, &g[k]).unwrap() < 1e-6, "{k}");
    }
    let x = &g["x"];
    assert!(rel_err(&sae.forward(x).unwrap(), &g["forward.from_pretrained"]).unwrap() < 1e-4);
    assert!(rel_err(&sae.encode(x).unwrap(), &g["feature_acts.from_pretrained"]).unwrap() < 1e-4);
    assert!(sae.fold_activation_norm_scaling_factor(0.0).is_err());
    assert!(sae.fold_activation_norm_scaling_factor(f64::NAN).is_err());
}

#[test]
fn from_config_and_tensors_checks_shapes() {
    let sae = load("jumprelu");
    let cfg = sae.cfg().clone();
    let tensors: HashMap<String, Tensor> = sae
        .tensors()
        .into_iter()
        .map(|(n, t)| (n.to_string(), t.clone()))
        .collect();
    let again = Sae::from_config_and_tensors(cfg.clone(), tensors.clone(), &Device::Cpu).unwrap();
    let x = Tensor::randn(0f32, 1.0, (2, 16), &Device::Cpu).unwrap();
    assert_eq!(
        rel_err(&again.forward(&x).unwrap(), &sae.forward(&x).unwrap()),
        Some(0.0)
    );
    // Missing threshold: architecture mismatch.
    let mut t2 = tensors.clone();
    t2.remove("threshold");
    let m = Sae::from_config_and_tensors(cfg.clone(), t2, &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(
        m.contains("architecture mismatch") && m.contains("threshold"),
        "{m}"
    );
    // Transposed W_enc.
    let mut t3 = tensors;
    let w = t3["W_enc"].t().unwrap().contiguous().unwrap();
    t3.insert("W_enc".into(), w);
    let m = Sae::from_config_and_tensors(cfg, t3, &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(m.contains("W_enc") && m.contains("transposed"), "{m}");
}

// ---------------------------------------------------------------------------------------------
// Bad folders

/// A copy of a fixture SAE folder to tamper with.
fn copy_sae(name: &str, to: &Path) -> PathBuf {
    let dst = to.join(name);
    std::fs::create_dir_all(&dst).unwrap();
    for e in std::fs::read_dir(sae_dir(name)).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dst.join(e.file_name())).unwrap();
    }
    dst
}

fn edit_cfg(dir: &Path, f: impl FnOnce(&mut serde_json::Value)) {
    let p = dir.join("cfg.json");
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
    f(&mut v);
    std::fs::write(&p, serde_json::to_vec(&v).unwrap()).unwrap();
}

fn load_err(dir: &Path) -> String {
    let e = Sae::load_from_disk(dir).unwrap_err();
    e.to_string()
}

#[test]
fn architecture_mismatch_is_reported() {
    let tmp = tempfile::tempdir().unwrap();
    // cfg says jumprelu, weights are standard's.
    let d = copy_sae("standard", tmp.path());
    edit_cfg(&d, |v| v["architecture"] = "jumprelu".into());
    let m = load_err(&d);
    assert!(
        m.contains("architecture mismatch") && m.contains("missing: threshold"),
        "{m}"
    );
    assert!(m.contains("sae_weights.safetensors"), "{m}");
    // cfg says standard, weights are gated's.
    let d = copy_sae("gated", tmp.path());
    edit_cfg(&d, |v| v["architecture"] = "standard".into());
    let m = load_err(&d);
    assert!(
        m.contains("missing: b_enc") && m.contains("gated-SAE tensor"),
        "{m}"
    );
    // Unknown architecture: the supported ones are listed.
    let d = copy_sae("jumprelu", tmp.path());
    edit_cfg(&d, |v| v["architecture"] = "matching_pursuit".into());
    let m = load_err(&d);
    assert!(
        m.contains("matching_pursuit") && m.contains("jumprelu"),
        "{m}"
    );
    // d_in in the cfg disagrees with the weights.
    let d = copy_sae("topk", tmp.path());
    edit_cfg(&d, |v| v["d_in"] = 17.into());
    let m = load_err(&d);
    assert!(m.contains("W_enc") && m.contains("d_in = 17"), "{m}");
    // A transcoder config with apply_b_dec_to_input.
    let d = copy_sae("transcoder", tmp.path());
    edit_cfg(&d, |v| v["apply_b_dec_to_input"] = true.into());
    let m = load_err(&d);
    assert!(m.contains("apply_b_dec_to_input"), "{m}");
    // Bad normalize_activations / dtype.
    let d = copy_sae("norm_layer", tmp.path());
    edit_cfg(&d, |v| v["normalize_activations"] = "whitening".into());
    assert!(load_err(&d).contains("normalize_activations"));
    let d = copy_sae("standard_no_bdec", tmp.path());
    edit_cfg(&d, |v| v["dtype"] = "int8".into());
    assert!(load_err(&d).contains("int8"));
}

#[test]
fn corrupt_and_truncated_files_are_reported() {
    let tmp = tempfile::tempdir().unwrap();
    // Truncated weights.
    let d = copy_sae("standard", tmp.path());
    let w = d.join("sae_weights.safetensors");
    let bytes = std::fs::read(&w).unwrap();
    std::fs::write(&w, &bytes[..bytes.len() - 100]).unwrap();
    let m = load_err(&d);
    assert!(
        m.contains("sae_weights.safetensors") && m.contains("truncated"),
        "{m}"
    );
    std::fs::write(&w, &bytes[..5]).unwrap();
    assert!(load_err(&d).contains("truncated"));
    std::fs::write(&w, b"\xff\xff\xff\xff\xff\xff\xff\xffgarbage").unwrap();
    assert!(load_err(&d).contains("sae_weights.safetensors"));
    // Header says more data than there is / garbage JSON header.
    let mut fake = 20u64.to_le_bytes().to_vec();
    fake.extend_from_slice(b"{not json at all!!!}");
    std::fs::write(&w, &fake).unwrap();
    assert!(load_err(&d).contains("header"));
    // Truncated cfg.json.
    let d = copy_sae("gated", tmp.path());
    let c = d.join("cfg.json");
    let bytes = std::fs::read(&c).unwrap();
    std::fs::write(&c, &bytes[..bytes.len() / 2]).unwrap();
    let m = load_err(&d);
    assert!(m.contains("cfg.json") && m.contains("JSON"), "{m}");
    std::fs::write(&c, b"[1, 2]").unwrap();
    assert!(load_err(&d).contains("cfg.json"));
    // Missing weights file: say what the folder has.
    let d = copy_sae("jumprelu", tmp.path());
    std::fs::remove_file(d.join("sae_weights.safetensors")).unwrap();
    let m = load_err(&d);
    assert!(
        m.contains("sae_weights.safetensors") && m.contains("cfg.json"),
        "{m}"
    );
    // Corrupt sparsity file.
    let d = copy_sae("standard", tmp.path().join("x").as_path());
    std::fs::write(d.join("sparsity.safetensors"), b"nope").unwrap();
    assert!(load_err(&d).contains("sparsity.safetensors"));
    // Not a folder at all.
    let m = Sae::load(&tmp.path().join("nothing-here"))
        .unwrap_err()
        .to_string();
    assert!(m.contains("nothing-here"), "{m}");
    let empty = tmp.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let m = Sae::load(&empty).unwrap_err().to_string();
    assert!(m.contains("not a recognised SAE folder"), "{m}");
}

#[test]
fn cfg_json_parsing() {
    // 6.x layout.
    let v = serde_json::json!({
        "d_in": 8, "d_sae": 32, "dtype": "torch.bfloat16", "architecture": "topk", "k": 4.0,
        "apply_b_dec_to_input": false, "normalize_activations": "layer_norm",
        "metadata": {"sae_lens_version": "6.1.0", "hook_name": "blocks.1.attn.hook_z",
                      "custom_key": [1, 2]},
        "reshape_activations": "hook_z", "unknown_top": 1, "neuronpedia_id": "np/1"
    });
    let c = SaeConfig::from_json_value(v).unwrap();
    assert_eq!(c.architecture, Architecture::TopK);
    assert_eq!(c.k, Some(4));
    assert_eq!(c.dtype().unwrap(), DType::BF16);
    assert_eq!(c.metadata.extra["custom_key"], serde_json::json!([1, 2]));
    assert_eq!(c.extra["unknown_top"], serde_json::json!(1));
    // A top-level metadata key (a pretrained override) lands in metadata.
    assert_eq!(c.metadata.neuronpedia_id.as_deref(), Some("np/1"));
    // Version ordering.
    use saescope::sae::config::is_pre_6_0;
    for (v, pre) in [
        ("5.10.3", true),
        ("6.0.0", false),
        ("6.0.0-rc.0", false),
        ("6.0.0rc3", false),
        ("6.0.0.dev1", true),
        ("6.0.0b2", true),
        ("6.54.12", false),
        ("10.0", false),
        ("2.1.3", true),
    ] {
        assert_eq!(is_pre_6_0(v).unwrap(), pre, "{v}");
    }
    assert!(is_pre_6_0("banana").is_err());
    // Missing d_in.
    let m = SaeConfig::from_json_value(serde_json::json!({"d_sae": 3, "architecture": "standard",
        "metadata": {"sae_lens_version": "6.0.0"}}))
    .unwrap_err()
    .to_string();
    assert!(m.contains("d_in"), "{m}");
    // hook_z reshaping on a non-hook_z hook.
    let m = SaeConfig::from_json_value(serde_json::json!({"d_in": 4, "d_sae": 8,
        "reshape_activations": "hook_z", "architecture": "standard",
        "metadata": {"sae_lens_version": "6.0.0", "hook_name": "blocks.0.hook_resid_pre"}}))
    .unwrap_err()
    .to_string();
    assert!(m.contains("hook_z"), "{m}");
}

#[test]
fn norm_state_default_decodes_plain_saes() {
    let sae = load("gated");
    let x = Tensor::randn(0f32, 1.0, (5, 16), &Device::Cpu).unwrap();
    let f = sae.encode(&x).unwrap();
    let y = sae.decode_with_state(&f, &NormState::default()).unwrap();
    assert_eq!(rel_err(&y, &sae.forward(&x).unwrap()), Some(0.0));
}

#[test]
fn sae_is_send_sync_and_clone() {
    fn check<T: Send + Sync + Clone + std::fmt::Debug>() {}
    check::<Sae>();
    check::<NormState>();
    let s = load("standard");
    let dbg = format!("{s:?}");
    assert!(
        dbg.contains("Standard") && dbg.contains("blocks.0.hook_resid_pre"),
        "{dbg}"
    );
}
