//! Loader fuzzing (issue 10, point 5), on stable Rust: real files are mutated (byte flips,
//! truncations, wrong dtypes / shapes / values in safetensors, npy and JSON headers, absurd size
//! fields, deleted files) and every mutant goes through the crate's public loading API:
//!
//! | test | files | API |
//! |---|---|---|
//! | `fuzz_gguf_real_header` | the SmolLM2 GGUF's header (+64 KiB), mutated, always short of its tensors | `HookedModel::from_pretrained` |
//! | `fuzz_gguf_miniature` | a 1-layer miniature of the SmolLM2 GGUF (its metadata, vocabulary cut to 400) | `HookedModel::from_pretrained`, then a forward pass |
//! | `fuzz_saelens` | `tests/fixtures/sae/saes/*`, `legacy_pre6*`, the shipped SAE | `Sae::load`, then `forward` |
//! | `fuzz_gemma_scope`, `_gemma_scope_2`, `_sparsify`, `_dictionary_learning` | their fixtures | `Sae::load`, then `forward` |
//! | `fuzz_activation_cache` | a cache written by `ActCacheWriter` (what `cache-activations` uses) | `CachedActivations::open`, `read_shard`, `next_batch`, `state` / `restore` |
//! | `fuzz_checkpoint` | a training run stopped after its step-4 checkpoint | `trainer::resume` |
//!
//! Each format first runs its targeted cases (`fuzz_support/recipes.rs`: the size fields,
//! dtypes, shapes and values the issue names), then seeded random ones. Every case must end in
//! `Ok` or a `saescope::Error` whose message names the mutated file; a panic, an error that does
//! not say which file, a single allocation over 1 GiB (the fixtures are at most ~25 MB, so that
//! is a size field taken on trust) or a case running for a minute is a failure.
//! `SAESCOPE_FUZZ_CASES=N` runs N random cases per format (default 300; the real GGUF header
//! a third of that), `SAESCOPE_FUZZ_SEED` changes the base seed; `--nocapture` prints counts.
mod fuzz_support;

use fuzz_support::fixtures::*;
use fuzz_support::mutate::{self, Pick};
use fuzz_support::recipes::{self, Recipe};
use fuzz_support::{codecs, copy_tree, file_name, write, Draw, Fuzz, SplitMix64};
use saescope::train::act_cache::CachedActivations;
use saescope::train::trainer::{self, Trainer};
use serde_json::json;
use std::path::Path;

#[global_allocator]
static ALLOC: fuzz_support::CappedAlloc = fuzz_support::CappedAlloc;

const DEFAULT_CASES: usize = 300;

fn random_cases() -> usize {
    fuzz_support::cases(DEFAULT_CASES)
}

#[test]
fn fuzz_saelens() {
    one_thread();
    let mut fz = Fuzz::new("saelens");
    let sae = sae_fixtures();
    let mut rs = recipes::saelens_cfg_recipes();
    rs.extend(recipes::safetensors("sae_weights.safetensors", "W_enc"));
    rs.extend(recipes::safetensors("sparsity.safetensors", "sparsity"));
    fz.recipes(&rs, &sae.join("saes/standard"), "standard", load_sae);
    let topk = vec![
        Recipe::new("cfg.json: k = 0").json("cfg.json", "k", json!(0)),
        Recipe::new("cfg.json: k = 1e15").json("cfg.json", "k", json!(1e15)),
        Recipe::new("cfg.json: k = 2^64-1").json("cfg.json", "k", json!(u64::MAX)),
        Recipe::new("cfg.json: k = -1").json("cfg.json", "k", json!(-1)),
        Recipe::new("cfg.json: k = 1000 (> d_sae)").json("cfg.json", "k", json!(1000)),
    ];
    fz.recipes(&topk, &sae.join("saes/topk"), "topk", load_sae);
    // batchtopk checkpoints get a threshold per latent: from the file, not the config's d_sae.
    let batchtopk = vec![Recipe::new(
        "cfg.json: architecture = batchtopk, d_sae = 1e14; threshold renamed topk_threshold",
    )
    .json("cfg.json", "architecture", json!("batchtopk"))
    .json("cfg.json", "d_sae", json!(100_000_000_000_000u64))
    .st("sae_weights.safetensors", |st| {
        recipes::rename(st, "threshold", "topk_threshold")
    })];
    fz.recipes(&batchtopk, &sae.join("saes/jumprelu"), "jumprelu", load_sae);
    fz.recipes(
        &recipes::json_fields(
            "cfg.json",
            &[("hook_point", json!(5)), ("d_sae", json!(1e15))],
        ),
        &sae.join("legacy_pre6"),
        "legacy_pre6",
        load_sae,
    );

    let mut dirs = sae_folders(&sae.join("saes"));
    dirs.push(sae.join("legacy_pre6"));
    dirs.push(sae.join("legacy_pre6_topk"));
    let shipped = saescope::sae::shipped_sae_dir();
    let files = [
        "cfg.json",
        "sae_weights.safetensors",
        "sparsity.safetensors",
    ];
    for i in 0..random_cases() {
        let mut r = SplitMix64::new(fz.case_seed(i) ^ 1);
        // The shipped SAE (21 MB of weights) in one case of 25.
        let src = if r.chance(25) {
            shipped.clone()
        } else {
            r.pick(&dirs).clone()
        };
        let rel = file_name(&src);
        sae_case(&mut fz, i, &src, &rel, &files);
    }
    fz.finish();
}

#[test]
fn fuzz_gemma_scope() {
    one_thread();
    let mut fz = Fuzz::new("gemma_scope");
    let src = sae_fixtures().join("gemma_scope/layer_3/width_16k/average_l0_10");
    // The repo id (2b, res) comes from the folder name.
    let rel = "gemma-scope-2b-pt-res/layer_3/width_16k/average_l0_10";
    fz.recipes(
        &recipes::npz("params.npz", "W_enc.npy"),
        &src,
        rel,
        load_sae,
    );
    for i in 0..random_cases() {
        sae_case(&mut fz, i, &src, rel, &["params.npz"]);
    }
    fz.finish();
}

#[test]
fn fuzz_gemma_scope_2() {
    one_thread();
    let mut fz = Fuzz::new("gemma_scope_2");
    let rels = [
        "resid_post/layer_3_width_16k_l0_small",
        "transcoder/layer_3_width_16k_l0_small_affine",
    ];
    // A Gemma Scope 2 `config.json` as the hub has them (the fixtures have none).
    let config = json!({
        "architecture": "jump_relu", "model_name": "gemma-v3-1b-pt",
        "hf_hook_point_in": "model.layers.3.output", "hf_hook_point_out": "model.layers.3.output",
        "l0": 10, "width": 16384,
    });
    let tmp = tempfile::tempdir().unwrap();
    for rel in rels {
        copy_tree(
            &sae_fixtures().join("gemma_scope_2").join(rel),
            &tmp.path().join(rel),
        );
    }
    let mut rs = recipes::safetensors("params.safetensors", "w_enc");
    rs.push(
        Recipe::new("params.safetensors: w_enc rewritten as [16, 0]")
            .st("params.safetensors", |st| {
                st.replace("w_enc", "F32", &[16, 0], &[])
            }),
    );
    fz.recipes(&rs, &tmp.path().join(rels[0]), rels[0], load_sae);
    let src = tmp.path().join(rels[1]);
    std::fs::write(src.join("config.json"), config.to_string()).unwrap();
    let rs = recipes::json_fields(
        "config.json",
        &[
            ("architecture", json!("topk")),
            ("hf_hook_point_in", json!([])),
            ("model_name", json!(1e15)),
        ],
    );
    fz.recipes(&rs, &src, rels[1], load_sae);
    for i in 0..random_cases() {
        let rel = rels[i % 2];
        let src = tmp.path().join(rel);
        let cfg = src.join("config.json");
        if i % 4 >= 2 {
            std::fs::write(&cfg, config.to_string()).unwrap();
        } else {
            let _ = std::fs::remove_file(&cfg);
        }
        let files = ["params.safetensors", "params.safetensors", "config.json"];
        sae_case(&mut fz, i, &src, rel, &files);
    }
    fz.finish();
}

#[test]
fn fuzz_sparsify() {
    one_thread();
    let mut fz = Fuzz::new("sparsify");
    let src = sae_fixtures().join("sparsify/layers.3");
    let rel = "sparsify/layers.3";
    let mut rs = recipes::json_fields(
        "cfg.json",
        &[
            ("num_latents", json!(1e15)),
            ("num_latents", json!(999_999_999_999_999u64)),
            ("num_latents", json!(0)),
            ("d_in", json!(-1)),
            ("d_in", json!(u64::MAX)),
            ("k", json!(0)),
            ("k", json!(1e15)),
            ("normalize_decoder", json!("bogus")),
        ],
    );
    rs.push(
        Recipe::new("cfg.json: num_latents = null, expansion_factor = 2^63 (d_in × it overflows)")
            .json("cfg.json", "num_latents", json!(null))
            .json("cfg.json", "expansion_factor", json!(1u64 << 63)),
    );
    // Missing biases are zeros: as wide as the file's encoder, not the config's claim.
    rs.push(
        Recipe::new("cfg.json: num_latents = 1e14; sae.safetensors: b_enc renamed away")
            .json("cfg.json", "num_latents", json!(100_000_000_000_000u64))
            .st("sae.safetensors", |st| {
                let name = if st.header.contains_key("b_enc") {
                    "b_enc"
                } else {
                    "encoder.bias"
                };
                recipes::rename(st, name, "unused")
            }),
    );
    rs.extend(recipes::safetensors("sae.safetensors", "encoder.weight"));
    fz.recipes(&rs, &src, rel, load_sae);
    for i in 0..random_cases() {
        sae_case(&mut fz, i, &src, rel, &["cfg.json", "sae.safetensors"]);
    }
    fz.finish();
}

#[test]
fn fuzz_dictionary_learning() {
    one_thread();
    let mut fz = Fuzz::new("dictionary_learning");
    let root = sae_fixtures().join("dictionary_learning/resid_post_layer_3");
    for t in ["trainer_0", "trainer_1"] {
        let src = root.join(t);
        let pt = std::fs::read(src.join("ae.pt")).unwrap();
        let mut rs = recipes::pt("ae.pt", &pt);
        rs.extend(recipes::json_fields(
            "config.json",
            &[
                ("trainer.dict_size", json!(1e15)),
                ("trainer.dict_size", json!(-1)),
                ("trainer.activation_dim", json!(1u64 << 40)),
                ("trainer.layer", json!("three")),
                ("trainer.k", json!(0)),
                ("trainer", json!([])),
            ],
        ));
        fz.recipes(&rs, &src, &format!("resid_post_layer_3/{t}"), load_sae);
    }
    for i in 0..random_cases() {
        let t = ["trainer_0", "trainer_1"][i % 2];
        let rel = format!("resid_post_layer_3/{t}");
        let files = ["ae.pt", "ae.pt", "config.json"];
        sae_case(&mut fz, i, &root.join(t), &rel, &files);
    }
    fz.finish();
}

// ---------------------------------------------------------------------------------------------
// GGUF

#[test]
fn fuzz_gguf_real_header() {
    one_thread();
    let mut fz = Fuzz::new("gguf_real_header");
    let prefix = real_gguf_prefix();
    let map = codecs::gguf_walk(&prefix).unwrap();
    println!(
        "gguf_real_header: header {} bytes, {} fields, {} tensors",
        map.header_end,
        map.fields.len(),
        map.tensor_names.len()
    );
    let file = "SmolLM2-135M-Instruct.Q4_1.gguf";
    let fixture = fz.dir.path().join("real");
    std::fs::create_dir_all(&fixture).unwrap();
    std::fs::write(fixture.join(file), &prefix).unwrap();
    fz.recipes(&recipes::gguf(file, &map), &fixture, "real", |d| {
        load_gguf(d, file)
    });
    for i in 0..random_cases() / 3 {
        let mut r = SplitMix64::new(fz.case_seed(i));
        let mut b = prefix.clone();
        let d = mutate::gguf(&mut b, &map, &mut r);
        let dir = fz.case_dir("real");
        write(&dir.join(file), &b);
        fz.case(&format!("case {i}: {d}"), &[file.into()], || {
            load_gguf(&dir, file)
        });
    }
    fz.finish();
}

#[test]
fn fuzz_gguf_miniature() {
    one_thread();
    let mut fz = Fuzz::new("gguf_miniature");
    let mini = miniature_gguf();
    let map = codecs::gguf_walk(&mini).unwrap();
    let file = "mini.Q4_1.gguf";
    let fixture = fz.dir.path().join("mini");
    std::fs::create_dir_all(&fixture).unwrap();
    std::fs::write(fixture.join(file), &mini).unwrap();
    load_gguf(&fixture, file).unwrap();
    println!(
        "gguf_miniature: {} bytes, header {} bytes, {} fields",
        mini.len(),
        map.header_end,
        map.fields.len()
    );
    fz.recipes(&recipes::gguf(file, &map), &fixture, "mini", |d| {
        load_gguf(d, file)
    });
    for i in 0..random_cases() {
        let mut r = SplitMix64::new(fz.case_seed(i));
        let mut b = mini.clone();
        let d = if r.chance(8) {
            // Tensor data too.
            let n = b.len();
            mutate::flip(&mut b, map.header_end, n, &mut r)
        } else {
            mutate::gguf(&mut b, &map, &mut r)
        };
        let dir = fz.case_dir("mini");
        write(&dir.join(file), &b);
        fz.case(&format!("case {i}: {d}"), &[file.into()], || {
            load_gguf(&dir, file)
        });
    }
    fz.finish();
}

// ---------------------------------------------------------------------------------------------
// Activation cache and training checkpoints

#[test]
fn fuzz_activation_cache() {
    let mut fz = Fuzz::new("activation_cache");
    let pristine = fz.dir.path().join("pristine");
    write_cache(&pristine);
    read_cache(&pristine, 0).unwrap();
    let mut rs = recipes::json_fields(
        "manifest.json",
        &[
            ("d_in", json!(0)),
            ("d_in", json!(1e15)),
            ("d_in", json!(999_999_999_999_999u64)),
            ("n_tokens", json!(999_999_999_999_999u64)),
            ("n_tokens", json!(0)),
            ("shards.0.n_tokens", json!(0)),
            ("shards.0.n_tokens", json!(999_999_999_999_999u64)),
            ("shards.0.file", json!("../../etc/passwd")),
            ("shards", json!([])),
            ("complete", json!(false)),
            ("format", json!("bogus")),
        ],
    );
    rs.push(
        Recipe::new("manifest.json: every shard 0 tokens, n_tokens 0 (an epoch with no rows)")
            .edit("manifest.json", |b| {
                let mut v: serde_json::Value = serde_json::from_slice(b).unwrap();
                for s in v["shards"].as_array_mut().unwrap() {
                    s["n_tokens"] = json!(0);
                }
                v["n_tokens"] = json!(0);
                Some(v.to_string().into_bytes())
            }),
    );
    rs.extend(recipes::safetensors(
        "shard_00001.safetensors",
        "activations",
    ));
    rs.extend(recipes::safetensors("shard_00002.safetensors", "token_ids"));
    fz.recipes(&rs, &pristine, "cache", |d| read_cache(d, 1));
    let mut files: Vec<String> = std::fs::read_dir(&pristine)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    for i in 0..random_cases() {
        let mut r = SplitMix64::new(fz.case_seed(i));
        let dir = fz.case_dir("cache");
        copy_tree(&pristine, &dir);
        // The manifest in 2 cases of 5, a shard otherwise.
        let f = if r.below(5) < 2 {
            "manifest.json".to_string()
        } else {
            r.pick(&files).clone()
        };
        let d = if r.chance(12) {
            std::fs::remove_file(dir.join(&f)).unwrap();
            format!("delete {f}")
        } else {
            mutate::file(&dir.join(&f), &mut r)
        };
        let seed = r.next_u64();
        fz.case(&format!("case {i}: {d}"), &[f], || read_cache(&dir, seed));
    }
    fz.finish();
}

#[test]
fn fuzz_checkpoint() {
    one_thread();
    let mut fz = Fuzz::new("checkpoint");
    let cache = fz.dir.path().join("cache");
    write_cache(&cache);
    let run = fz.dir.path().join("run");
    let mut t = Trainer::new(&run_config(&run), None).unwrap();
    let mut src = CachedActivations::open(&cache, Some(1)).unwrap();
    t.fit_steps(&mut src, Some(6)).unwrap();
    assert!(run.join(trainer::CHECKPOINT).is_file());
    // The pristine run resumes.
    let pristine = fz.dir.path().join("pristine_check");
    copy_tree(&run, &pristine);
    let mut src = CachedActivations::open(&cache, Some(1)).unwrap();
    trainer::resume(&pristine, &mut src).unwrap();

    let resume = |dir: &Path, seed: u64| -> saescope::Result<()> {
        let mut src = CachedActivations::open(&cache, Some(seed))?;
        trainer::resume(dir, &mut src).map(|_| ())
    };
    fz.recipes(&recipes::checkpoint_recipes(), &run, "run", |d| {
        resume(d, 1)
    });
    for i in 0..random_cases() {
        let mut r = SplitMix64::new(fz.case_seed(i));
        let dir = fz.case_dir("run");
        copy_tree(&run, &dir);
        let f = if r.below(8) < 7 {
            trainer::CHECKPOINT
        } else {
            trainer::RUNNER_CFG
        };
        let p = dir.join(f);
        let d = if r.chance(12) {
            std::fs::remove_file(&p).unwrap();
            format!("delete {f}")
        } else if f == trainer::RUNNER_CFG {
            // The run's own settings are requests (a bigger d_sae is a bigger SAE, more tokens
            // a longer run), not claims about a file: only structural damage and wrong types.
            let mut b = std::fs::read(&p).unwrap();
            let d = mutate::json_file_no_sizes(&mut b, &mut r);
            write(&p, &b);
            format!("{f}: {d}")
        } else {
            mutate::file(&p, &mut r)
        };
        let seed = r.below(3) as u64;
        fz.case(&format!("case {i}: {d}"), &[f.to_string()], || {
            resume(&dir, seed)
        });
    }
    fz.finish();
}
