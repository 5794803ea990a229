//! SAE loaders against SAELens 6.54.12's conversions (tests/fixtures/sae): pre-6.0 configs,
//! Gemma Scope (npz), Gemma Scope 2 (safetensors, incl. the affine skip transcoder), sparsify,
//! dictionary_learning; the pretrained directory with downloads from the local hub server
//! (tests/common/hub_server.rs); corrupt and truncated files.
//! No test touches process environment variables: hub settings go through `LoadOptions`.
mod common;
#[path = "sae_support/goldens.rs"]
mod goldens;

use common::hub_server::{HubServer, ServerOptions};
use goldens::{check_golden, fixtures, rel_err};
use saescope::sae::{pretrained, Architecture, Sae, SaeFormat, SaeLoadOptions};
use saescope::{DType, Device, Error, LoadOptions, Tensor};
use serde_json::Value;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

fn loaded_cfg(name: &str) -> Value {
    let p = fixtures()
        .join("goldens")
        .join(format!("{name}.loaded_cfg.json"));
    serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap()
}

fn strip_nulls(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), strip_nulls(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Our config equals SAELens's final `sae_cfg` (nulls and the version stamp aside).
fn assert_cfg_matches(sae: &Sae, name: &str) {
    let want = strip_nulls(&loaded_cfg(name)["sae_cfg"]);
    let mut have = strip_nulls(&sae.cfg().to_json_value());
    let mut want = want;
    for v in [&mut have, &mut want] {
        if let Some(m) = v.get_mut("metadata").and_then(|m| m.as_object_mut()) {
            m.remove("sae_lens_version");
        }
    }
    assert_eq!(have, want, "{name}: config differs from SAELens's");
}

fn opts_repo(repo: &str) -> SaeLoadOptions {
    SaeLoadOptions {
        repo_id: Some(repo.into()),
        ..Default::default()
    }
}

// ---------------------------------------------------------------------------------------------
// Converted formats vs SAELens

#[test]
fn legacy_pre6_config() {
    let sae = Sae::load_from_disk(&fixtures().join("legacy_pre6")).unwrap();
    assert_cfg_matches(&sae, "legacy_pre6");
    let c = sae.cfg();
    assert_eq!(c.architecture, Architecture::Standard);
    assert_eq!(
        c.metadata.hook_name.as_deref(),
        Some("blocks.2.hook_resid_pre")
    );
    assert_eq!(
        c.metadata.sae_lens_training_version.as_deref(),
        Some("2.1.3")
    );
    // Keys SAELens drops are kept aside.
    assert_eq!(c.extra["l1_coefficient"], serde_json::json!(8e-05));
    // The all-ones scaling_factor tensor is dropped.
    assert!(sae.tensors().iter().all(|(n, _)| *n != "scaling_factor"));
    check_golden("legacy_pre6", &sae);
}

#[test]
fn legacy_pre6_topk_config() {
    let sae = Sae::load(&fixtures().join("legacy_pre6_topk")).unwrap();
    assert_cfg_matches(&sae, "legacy_pre6_topk");
    assert_eq!(sae.architecture(), Architecture::TopK);
    assert_eq!(sae.k(), Some(6));
    check_golden("legacy_pre6_topk", &sae);
}

fn gemma_dir() -> PathBuf {
    fixtures().join("gemma_scope/layer_3/width_16k/average_l0_10")
}

#[test]
fn gemma_scope_npz() {
    let sae = Sae::load_with(&gemma_dir(), &opts_repo("google/gemma-scope-2b-pt-res")).unwrap();
    assert_cfg_matches(&sae, "gemma_scope");
    assert_eq!(sae.architecture(), Architecture::JumpRelu);
    assert_eq!(sae.hook_name(), "blocks.3.hook_resid_post");
    check_golden("gemma_scope", &sae);
    // The params.npz file itself works as the path too.
    let again = Sae::load_with(
        &gemma_dir().join("params.npz"),
        &opts_repo("google/gemma-scope-2b-pt-res"),
    )
    .unwrap();
    assert_eq!(again.hook_name(), sae.hook_name());
    // Hooks from the repo id: mlp / att.
    let mlp = Sae::load_with(&gemma_dir(), &opts_repo("google/gemma-scope-9b-pt-mlp")).unwrap();
    assert_eq!(mlp.hook_name(), "blocks.3.hook_mlp_out");
    assert_eq!(mlp.cfg().metadata.model_name.as_deref(), Some("gemma-2-9b"));
    // Without a repo id the model / hook cannot be told: a clear error.
    let m = Sae::load(&gemma_dir()).unwrap_err().to_string();
    assert!(m.contains("repo_id"), "{m}");
}

#[test]
fn gemma_scope_2_safetensors() {
    let d = fixtures().join("gemma_scope_2/resid_post/layer_3_width_16k_l0_small");
    let sae = Sae::load(&d).unwrap();
    assert_eq!(sae.hook_name(), "blocks.3.hook_resid_post");
    assert_eq!(sae.architecture(), Architecture::JumpRelu);
    check_golden("gemma_scope_2", &sae);
    let cfg = loaded_cfg("gemma_scope_2");
    assert_eq!(
        cfg["sae_cfg"]["metadata"]["hook_name"],
        "blocks.3.hook_resid_post"
    );
}

#[test]
fn gemma_scope_2_skip_transcoder() {
    let d = fixtures().join("gemma_scope_2/transcoder/layer_3_width_16k_l0_small_affine");
    let sae = Sae::load(&d).unwrap();
    assert_eq!(sae.architecture(), Architecture::JumpReluSkipTranscoder);
    assert_eq!(sae.hook_name(), "blocks.3.hook_mlp_in");
    assert_eq!(sae.hook_name_out(), "blocks.3.hook_mlp_out");
    assert_eq!((sae.d_in(), sae.d_out()), (16, 12));
    assert_eq!(sae.w_skip().unwrap().dims(), [12, 16]);
    check_golden("gemma_scope_2_transcoder", &sae);
}

#[test]
fn sparsify_folder() {
    let d = fixtures().join("sparsify/layers.3");
    let sae = Sae::load(&d).unwrap();
    assert_cfg_matches(&sae, "sparsify");
    assert_eq!(sae.architecture(), Architecture::TopK);
    assert_eq!(sae.k(), Some(6));
    assert_eq!(sae.dtype(), DType::F32);
    // SAELens's default dtype for sparsify is bfloat16 when asked for the config's dtype.
    let o = SaeLoadOptions {
        dtype: Some(DType::BF16),
        ..Default::default()
    };
    assert_eq!(Sae::load_with(&d, &o).unwrap().dtype(), DType::BF16);
    check_golden("sparsify", &sae);
}

#[test]
fn dictionary_learning_standard() {
    let d = fixtures().join("dictionary_learning/resid_post_layer_3/trainer_0");
    let sae = Sae::load(&d).unwrap();
    assert_cfg_matches(&sae, "dictionary_learning_standard");
    assert_eq!(sae.architecture(), Architecture::Standard);
    check_golden("dictionary_learning_standard", &sae);
}

#[test]
fn dictionary_learning_batchtopk() {
    let d = fixtures().join("dictionary_learning/resid_post_layer_3/trainer_1");
    let sae = Sae::load(&d).unwrap();
    assert_cfg_matches(&sae, "dictionary_learning_batchtopk");
    assert_eq!(sae.architecture(), Architecture::JumpRelu);
    check_golden("dictionary_learning_batchtopk", &sae);
}

#[test]
fn format_detection() {
    let f = fixtures();
    for (dir, want) in [
        (f.join("saes/standard"), SaeFormat::SaeLens),
        (f.join("legacy_pre6"), SaeFormat::SaeLens),
        (gemma_dir(), SaeFormat::GemmaScope),
        (
            f.join("gemma_scope_2/resid_post/layer_3_width_16k_l0_small"),
            SaeFormat::GemmaScope2,
        ),
        (f.join("sparsify/layers.3"), SaeFormat::Sparsify),
        (
            f.join("dictionary_learning/resid_post_layer_3/trainer_0"),
            SaeFormat::DictionaryLearning,
        ),
    ] {
        let sae = Sae::load_with(&dir, &opts_repo("google/gemma-scope-2b-pt-res"))
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        assert!(sae.d_in() == 16, "{want:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Pretrained directory and hub downloads

fn hub_opts(cache: &Path, endpoint: Option<String>, offline: bool) -> LoadOptions {
    LoadOptions {
        hub_cache_dir: Some(cache.to_path_buf()),
        hub_endpoint: endpoint,
        offline: Some(offline),
        ..LoadOptions::default()
    }
}

fn copy_dir(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for e in std::fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        if e.path().is_file() {
            std::fs::copy(e.path(), dst.join(e.file_name())).unwrap();
        }
    }
}

/// hf-hub's client (ureq 2) sends 127.0.0.1 requests through a configured proxy.
fn proxy_note() -> String {
    let set: Vec<&str> = [
        "ALL_PROXY",
        "all_proxy",
        "HTTPS_PROXY",
        "https_proxy",
        "HTTP_PROXY",
        "http_proxy",
    ]
    .into_iter()
    .filter(|k| std::env::var_os(k).is_some())
    .collect();
    if set.is_empty() {
        String::new()
    } else {
        format!(" (note: {set:?} set; hf-hub ignores NO_PROXY: unset them to run these tests)")
    }
}

#[test]
fn directory_lookup_and_errors() {
    let names = pretrained::release_names().unwrap();
    assert!(names.contains(&"gpt2-small-res-jb"), "{names:?}");
    assert!(names.iter().all(|n| !n.starts_with('_')));
    let r = pretrained::release("gpt2-small-res-jb").unwrap();
    assert_eq!(r.repo_id, "jbloom/GPT2-Small-SAEs-Reformatted");
    assert_eq!(r.conversion(), "sae_lens");
    assert!(r.sae_ids().contains(&"blocks.8.hook_resid_pre"));
    assert_eq!(
        r.sae("blocks.8.hook_resid_pre")
            .unwrap()
            .neuronpedia
            .as_deref(),
        Some("gpt2-small/8-res-jb")
    );
    // Unknown release: the nearest names.
    let e = Sae::from_pretrained_hub(
        "gpt2-small-res-jbb",
        "blocks.8.hook_resid_pre",
        &LoadOptions::default(),
    )
    .unwrap_err();
    assert!(matches!(e, Error::UnknownSae { .. }), "{e:?}");
    let m = e.to_string();
    assert!(
        m.contains("gpt2-small-res-jb") && m.contains("nearest"),
        "{m}"
    );
    // Unknown id: the nearest ids and what the release has.
    let m = Sae::from_pretrained_hub(
        "gpt2-small-res-jb",
        "blocks.88.hook_resid_pre",
        &LoadOptions::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(
        m.contains("blocks.88.hook_resid_pre") && m.contains("blocks.8.hook_resid_pre"),
        "{m}"
    );
    assert!(m.contains("13 SAEs"), "{m}");
    assert_eq!(
        pretrained::releases_for_repo("google/gemma-scope-2b-pt-res")
            .unwrap()
            .len(),
        pretrained::releases()
            .unwrap()
            .iter()
            .filter(|r| r.repo_id == "google/gemma-scope-2b-pt-res")
            .count()
    );
}

#[test]
fn from_pretrained_downloads_through_the_hub_cache() {
    let root = tempfile::tempdir().unwrap();
    let rel = pretrained::release("gpt2-small-res-jb").unwrap();
    let info = rel.sae("blocks.8.hook_resid_pre").unwrap();
    copy_dir(
        &fixtures().join("saes/standard"),
        &root.path().join(&rel.repo_id).join(&info.path),
    );
    let mut server = HubServer::start_with(root.path(), ServerOptions { lfs_redirect: true });
    let cache = tempfile::tempdir().unwrap();
    let online = hub_opts(cache.path(), Some(server.endpoint()), false);
    let sae = Sae::from_pretrained_hub("gpt2-small-res-jb", "blocks.8.hook_resid_pre", &online)
        .unwrap_or_else(|e| panic!("from_pretrained: {e}{}", proxy_note()));
    // Directory metadata and overrides.
    assert_eq!(sae.neuronpedia_id(), Some("gpt2-small/8-res-jb"));
    assert_eq!(
        sae.cfg()
            .metadata
            .model_from_pretrained_kwargs
            .as_ref()
            .unwrap()["center_writing_weights"],
        Value::Bool(true)
    );
    assert!(sae.sparsity().is_some(), "sparsity.safetensors comes along");
    assert_eq!(sae.dtype(), DType::F32);
    check_golden("standard", &sae);
    assert!(server.request_count() > 0);
    // The cache is in the hub layout.
    let repo_dir = cache
        .path()
        .join("models--jbloom--GPT2-Small-SAEs-Reformatted");
    assert!(repo_dir.join("snapshots").is_dir());

    // Offline, from the cache, with the server gone.
    server.stop();
    let offline = hub_opts(cache.path(), None, true);
    let again =
        Sae::from_pretrained_hub("gpt2-small-res-jb", "blocks.8.hook_resid_pre", &offline).unwrap();
    let x = Tensor::randn(0f32, 1.0, (2, 16), &Device::Cpu).unwrap();
    assert_eq!(
        rel_err(&again.forward(&x).unwrap(), &sae.forward(&x).unwrap()),
        Some(0.0)
    );
    // Offline and not cached: a clear error naming the file.
    let m = Sae::from_pretrained_hub("gpt2-small-res-jb", "blocks.0.hook_resid_pre", &offline)
        .unwrap_err()
        .to_string();
    assert!(
        m.contains("blocks.0.hook_resid_pre/cfg.json") && m.contains("offline"),
        "{m}"
    );
}

#[test]
fn from_pretrained_folds_norm_scaling_factor() {
    let (g, meta) = goldens::load_golden("expected_average");
    let fp: Value = serde_json::from_str(&meta["from_pretrained"]).unwrap();
    let (release, id) = (
        fp["release"].as_str().unwrap(),
        fp["sae_id"].as_str().unwrap(),
    );
    let rel = pretrained::release(release).unwrap();
    let info = rel.sae(id).unwrap();
    assert_eq!(info.norm_scaling_factor, fp["norm_scaling_factor"].as_f64());
    let root = tempfile::tempdir().unwrap();
    copy_dir(
        &fixtures().join("saes/expected_average"),
        &root.path().join(&rel.repo_id).join(&info.path),
    );
    let server = HubServer::start(root.path());
    let cache = tempfile::tempdir().unwrap();
    let sae = Sae::from_pretrained_hub(
        release,
        id,
        &hub_opts(cache.path(), Some(server.endpoint()), false),
    )
    .unwrap_or_else(|e| panic!("from_pretrained: {e}{}", proxy_note()));
    assert_eq!(
        sae.cfg().normalize_activations,
        saescope::sae::NormalizeActivations::None
    );
    let x = &g["x"];
    for (k, t) in [
        ("W_enc.from_pretrained", sae.w_enc().clone()),
        ("W_dec.from_pretrained", sae.w_dec().clone()),
        ("b_dec.from_pretrained", sae.b_dec().clone()),
        ("forward.from_pretrained", sae.forward(x).unwrap()),
        ("feature_acts.from_pretrained", sae.encode(x).unwrap()),
    ] {
        let e = rel_err(&t, &g[k]).unwrap();
        assert!(e < 1e-4, "{k}: {e}");
    }
    // Release overrides land in metadata.
    assert_eq!(
        sae.cfg().metadata.dataset_path.as_deref(),
        Some("Skylion007/openwebtext")
    );
}

#[test]
fn from_pretrained_gemma_scope_and_repo_id_fallback() {
    let root = tempfile::tempdir().unwrap();
    // A gemma_2 release: the fixture's params.npz under one of its ids.
    let rel = pretrained::releases()
        .unwrap()
        .into_iter()
        .find(|r| r.conversion() == "gemma_2" && r.repo_id == "google/gemma-scope-2b-pt-res")
        .expect("a gemma-scope-2b-pt-res release");
    let info = rel
        .saes
        .iter()
        .find(|s| s.path.starts_with("layer_3/width_16k/"))
        .expect("a layer 3, 16k SAE");
    copy_dir(
        &gemma_dir(),
        &root.path().join(&rel.repo_id).join(&info.path),
    );
    // A repo that is not in the directory (release = repo id, sae_id = folder).
    copy_dir(
        &fixtures().join("saes/jumprelu"),
        &root.path().join("someone/my-saes/layer0"),
    );
    let server = HubServer::start(root.path());
    let cache = tempfile::tempdir().unwrap();
    let o = hub_opts(cache.path(), Some(server.endpoint()), false);
    let sae = Sae::from_pretrained_hub(&rel.name, &info.id, &o)
        .unwrap_or_else(|e| panic!("from_pretrained: {e}{}", proxy_note()));
    assert_eq!(sae.hook_name(), "blocks.3.hook_resid_post");
    assert_eq!(sae.neuronpedia_id(), info.neuronpedia.as_deref());
    check_golden("gemma_scope", &sae);

    let s2 = Sae::from_pretrained_hub("someone/my-saes", "layer0", &o).unwrap();
    assert_eq!(s2.architecture(), Architecture::JumpRelu);
    check_golden("jumprelu", &s2);
    // A missing folder in that repo: a hub error naming the file.
    let e = Sae::from_pretrained_hub("someone/my-saes", "layer1", &o).unwrap_err();
    let m = e.to_string();
    assert!(m.contains("layer1/cfg.json"), "{m}");
    // Path tricks are refused before any request.
    assert!(Sae::from_pretrained_hub("someone/my-saes", "../x", &o).is_err());
}

#[test]
fn from_pretrained_options() {
    let root = tempfile::tempdir().unwrap();
    copy_dir(
        &fixtures().join("saes/topk_rescale"),
        &root.path().join("someone/topk/a"),
    );
    let server = HubServer::start(root.path());
    let cache = tempfile::tempdir().unwrap();
    let hub = hub_opts(cache.path(), Some(server.endpoint()), false);
    let so = SaeLoadOptions {
        dtype: Some(DType::F64),
        fold_w_dec_norm: true,
        ..Default::default()
    };
    let sae = Sae::from_pretrained_with("someone/topk", "a", &hub, &so).unwrap();
    assert_eq!(sae.dtype(), DType::F64);
    let (g, _) = goldens::load_golden("topk_rescale");
    assert!(rel_err(&sae.forward(&g["x"]).unwrap(), &g["forward_folded"]).unwrap() < 1e-5);
}

// ---------------------------------------------------------------------------------------------
// Corrupt / truncated / inconsistent files in the converted formats

fn copy_tree(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for e in std::fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        let p = e.path();
        if p.is_dir() {
            copy_tree(&p, &dst.join(e.file_name()));
        } else {
            std::fs::copy(&p, dst.join(e.file_name())).unwrap();
        }
    }
}

fn truncate(p: &Path, keep: usize) {
    let b = std::fs::read(p).unwrap();
    std::fs::write(p, &b[..keep.min(b.len())]).unwrap();
}

#[test]
fn corrupt_npz() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp
        .path()
        .join("gemma-scope-2b-pt-res/layer_3/width_16k/average_l0_10");
    copy_dir(&gemma_dir(), &d);
    // The repo id comes from the folder name here.
    assert_eq!(
        Sae::load(&d).unwrap().hook_name(),
        "blocks.3.hook_resid_post"
    );
    let p = d.join("params.npz");
    let len = std::fs::metadata(&p).unwrap().len() as usize;
    truncate(&p, len - 40);
    let m = Sae::load(&d).unwrap_err().to_string();
    assert!(m.contains("params.npz") && m.contains("npz"), "{m}");
    std::fs::write(&p, b"PK\x03\x04 definitely not a zip").unwrap();
    let m = Sae::load(&d).unwrap_err().to_string();
    assert!(m.contains("params.npz"), "{m}");
    std::fs::write(&p, b"").unwrap();
    assert!(Sae::load(&d)
        .unwrap_err()
        .to_string()
        .contains("params.npz"));
    // An npz without `threshold`: architecture mismatch.
    let t: Vec<(&str, Tensor)> = vec![
        (
            "W_enc",
            Tensor::zeros((16, 48), DType::F32, &Device::Cpu).unwrap(),
        ),
        (
            "W_dec",
            Tensor::zeros((48, 16), DType::F32, &Device::Cpu).unwrap(),
        ),
        (
            "b_enc",
            Tensor::zeros(48, DType::F32, &Device::Cpu).unwrap(),
        ),
        (
            "b_dec",
            Tensor::zeros(16, DType::F32, &Device::Cpu).unwrap(),
        ),
    ];
    Tensor::write_npz(&t, &p).unwrap();
    let m = Sae::load(&d).unwrap_err().to_string();
    assert!(m.contains("missing: threshold"), "{m}");
}

#[test]
fn corrupt_pt_and_dictionary_config() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("trainer_0");
    copy_dir(
        &fixtures().join("dictionary_learning/resid_post_layer_3/trainer_0"),
        &d,
    );
    let p = d.join("ae.pt");
    let good = std::fs::read(&p).unwrap();
    truncate(&p, good.len() / 2);
    let m = Sae::load(&d).unwrap_err().to_string();
    assert!(m.contains("ae.pt"), "{m}");
    std::fs::write(&p, b"\x80\x02garbage pickle").unwrap();
    let m = Sae::load(&d).unwrap_err().to_string();
    assert!(m.contains("ae.pt"), "{m}");
    // Config without `trainer`.
    std::fs::write(&p, &good).unwrap();
    std::fs::write(d.join("config.json"), br#"{"buffer": {"ctx_len": 128}}"#).unwrap();
    let m = Sae::load(&d).unwrap_err().to_string();
    assert!(m.contains("config.json") && m.contains("trainer"), "{m}");
    std::fs::write(d.join("config.json"), b"{\"trainer\": ").unwrap();
    let m = Sae::load(&d).unwrap_err().to_string();
    assert!(m.contains("config.json") && m.contains("JSON"), "{m}");
}

#[test]
fn corrupt_sparsify_and_gemma_scope_2() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("sparsify/layers.3");
    copy_tree(&fixtures().join("sparsify/layers.3"), &d);
    std::fs::write(d.join("cfg.json"), br#"{"d_in": 16, "num_latents": 48}"#).unwrap();
    let m = Sae::load(&d).unwrap_err().to_string();
    assert!(m.contains("cfg.json") && m.contains("`k`"), "{m}");
    copy_tree(&fixtures().join("sparsify/layers.3"), &d);
    let w = d.join("sae.safetensors");
    let len = std::fs::metadata(&w).unwrap().len() as usize;
    truncate(&w, len - 8);
    let m = Sae::load(&d).unwrap_err().to_string();
    assert!(
        m.contains("sae.safetensors") && m.contains("truncated"),
        "{m}"
    );
    // A sparsify file without an encoder.
    let mut t = HashMap::new();
    t.insert(
        "b_dec".to_string(),
        Tensor::zeros(16, DType::F32, &Device::Cpu).unwrap(),
    );
    saescope::candle_core::safetensors::save(&t, &w).unwrap();
    let m = Sae::load(&d).unwrap_err().to_string();
    assert!(m.contains("encoder.weight") && m.contains("b_dec"), "{m}");
    // A folder name sparsify cannot place.
    let odd = tmp.path().join("whatever");
    copy_tree(&fixtures().join("sparsify/layers.3"), &odd);
    let m = Sae::load(&odd).unwrap_err().to_string();
    assert!(m.contains("whatever"), "{m}");

    let g = tmp.path().join("resid_post/layer_3_width_16k_l0_small");
    copy_dir(
        &fixtures().join("gemma_scope_2/resid_post/layer_3_width_16k_l0_small"),
        &g,
    );
    let p = g.join("params.safetensors");
    truncate(&p, 30);
    let m = Sae::load(&g).unwrap_err().to_string();
    assert!(m.contains("params.safetensors"), "{m}");
}
