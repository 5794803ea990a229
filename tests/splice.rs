//! SAEs spliced into the default model, against SAELens's HookedSAETransformer
//! (`scripts/make_sae_goldens.py` → `tests/fixtures/sae/goldens/spliced_smollm2.safetensors`).
use saescope::{DType, Device, Error, HookedModel, Hooks, NamesFilter, Sae, Tensor};
use saescope::{SaeRunOptions, SpecialTokens};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

mod common;
use common::tensors::{max_abs_diff, rel_err};

const TOL: f32 = 1e-4;
const H1: &str = "blocks.10.hook_resid_pre";
const H2: &str = "blocks.20.hook_resid_post";

fn fixture(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/sae")
        .join(p)
}
fn golden() -> HashMap<String, Tensor> {
    saescope::candle_core::safetensors::load(
        fixture("goldens/spliced_smollm2.safetensors"),
        &Device::Cpu,
    )
    .unwrap()
}
fn saes() -> (Sae, Sae) {
    (
        Sae::load_from_disk(&fixture("saes/smollm2_standard_l10")).unwrap(),
        Sae::load_from_disk(&fixture("saes/smollm2_topk_l20")).unwrap(),
    )
}
fn model() -> HookedModel {
    HookedModel::from_pretrained("smollm2").unwrap()
}
fn check(what: &str, got: &Tensor, want: &Tensor) {
    let e = rel_err(got, want);
    assert!(e <= TOL, "{what}: relative error {e:.3e} > {TOL:e}");
}

#[test]
fn spliced_run_matches_hooked_sae_transformer() {
    let (g, m, (s1, s2)) = (golden(), model(), saes());
    let tokens = g["tokens"].to_dtype(DType::U32).unwrap();
    let opts = SaeRunOptions::default();
    let (logits, cache) = m
        .run(&tokens)
        .saes(&[&s1, &s2])
        .sae_options(&opts)
        .cache()
        .unwrap();
    check("logits (no error term)", &logits, &g["a.logits"]);
    for h in [H1, H2] {
        for k in ["input", "acts_pre", "acts_post", "recons", "output"] {
            let name = format!("{h}.hook_sae_{k}");
            check(
                &name,
                &cache.get(name.as_str()).unwrap(),
                &g[&format!("a.{name}")],
            );
        }
        // The replaced hook point is gone from the cache, as in SAELens.
        assert!(!cache.contains(h), "{h} should be replaced by the SAE");
        assert!(!cache.contains(format!("{h}.hook_sae_error").as_str()));
    }
    assert!(cache.contains("blocks.3.mlp.hook_in"));
}

#[test]
fn error_term_gives_clean_logits_and_latent_ablation_matches() {
    let (g, m, (s1, s2)) = (golden(), model(), saes());
    let tokens = g["tokens"].to_dtype(DType::U32).unwrap();
    let opts = SaeRunOptions::with_error_term();
    let (logits, cache) = m
        .run(&tokens)
        .saes(&[&s1, &s2])
        .sae_options(&opts)
        .cache()
        .unwrap();
    check("logits (error term)", &logits, &g["b.logits"]);
    let clean = m.forward(&tokens).unwrap();
    check("error-term logits vs clean", &logits, &clean);
    for h in [H1, H2] {
        let name = format!("{h}.hook_sae_error");
        check(
            &name,
            &cache.get(name.as_str()).unwrap(),
            &g[&format!("b.{name}")],
        );
    }
    // Zero-ablate latent 5 of the first SAE.
    let mut hooks = Hooks::new();
    hooks.add(
        format!("{H1}.hook_sae_acts_post").as_str(),
        |f: &Tensor, _| {
            let mut keep = vec![1f32; f.dim(2)?];
            keep[5] = 0.0;
            Ok(Some(f.broadcast_mul(&Tensor::from_vec(
                keep,
                (1, 1, f.dim(2)?),
                f.device(),
            )?)?))
        },
    );
    let ablated = m
        .run(&tokens)
        .saes(&[&s1, &s2])
        .sae_options(&opts)
        .hooks(hooks)
        .logits()
        .unwrap();
    check("ablated logits", &ablated, &g["c.logits"]);
}

#[test]
fn stop_at_layer_with_saes() {
    let (g, m, (s1, s2)) = (golden(), model(), saes());
    let tokens = g["tokens"].to_dtype(DType::U32).unwrap();
    let name = format!("{H1}.hook_sae_acts_post");
    let (resid, cache) = m
        .run(&tokens)
        .saes(&[&s1, &s2])
        .names(NamesFilter::names([name.as_str()]))
        .stop_at_layer(15)
        .cache()
        .unwrap();
    check("stop_at_layer=15 residual", &resid, &g["d.output"]);
    assert_eq!(cache.keys().collect::<Vec<_>>(), [name.as_str()]);
}

#[test]
fn excluded_special_tokens_bypass_the_sae() {
    let (m, (s1, _)) = (model(), saes());
    let tokens = m.to_tokens("The capital of France is").unwrap();
    let opts = SaeRunOptions {
        exclude_special_tokens: SpecialTokens::All,
        ..Default::default()
    };
    let (_, cache) = m.run(&tokens).sae(&s1).sae_options(&opts).cache().unwrap();
    let (_, clean) = m.run_with_cache(&tokens).unwrap();
    let out = cache.get(format!("{H1}.hook_sae_output").as_str()).unwrap();
    let orig = clean.get(H1).unwrap();
    // Position 0 is BOS: the SAE is bypassed there; elsewhere it is not.
    use saescope::IndexOp;
    assert_eq!(
        max_abs_diff(&out.i((.., 0..1)).unwrap(), &orig.i((.., 0..1)).unwrap()),
        0.0
    );
    assert!(max_abs_diff(&out.i((.., 1..)).unwrap(), &orig.i((.., 1..)).unwrap()) > 1e-3);
}

#[test]
fn mismatched_width_and_bad_hooks_are_clear_errors() {
    let m = model();
    let tokens = m.to_tokens("Hello").unwrap();
    // A d_in = 16 SAE cannot read a 576-wide residual stream.
    let small = Sae::load_from_disk(&fixture("saes/standard")).unwrap();
    let err = m.run_with_saes(&tokens, &[&small]).unwrap_err().to_string();
    assert!(err.contains("16") && err.contains("576"), "{err}");
    let (s1, _) = saes();
    let mut hooks = Hooks::new();
    hooks.add(format!("{H1}.hook_sae_acts_postt").as_str(), |_, _| {
        Ok(None)
    });
    let err = m
        .run_with_hooks_with_saes(&tokens, &[&s1], hooks)
        .unwrap_err();
    assert!(
        matches!(err, Error::UnknownHook { .. }) && err.to_string().contains("hook_sae_acts_post"),
        "{err}"
    );
    // The replaced hook's own name is not a valid hook while the SAE is attached.
    let mut hooks = Hooks::new();
    hooks.add(H1, |_, _| Ok(None));
    assert!(m.run_with_hooks_with_saes(&tokens, &[&s1], hooks).is_err());
}

/// A seeded random transcoder reading `blocks.5.mlp.hook_in` and replacing `blocks.5.hook_mlp_out`.
fn transcoder(m: &HookedModel) -> Sae {
    let (d, n) = (m.cfg().d_model, 64);
    let cfg = saescope::SaeConfig::from_json_value(serde_json::json!({
        "architecture": "transcoder", "d_in": d, "d_sae": n, "d_out": d, "dtype": "float32",
        "apply_b_dec_to_input": false, "normalize_activations": "none",
        "metadata": {"hook_name": "blocks.5.mlp.hook_in", "hook_name_out": "blocks.5.hook_mlp_out"}
    }))
    .unwrap();
    let mut s: u64 = 7;
    let mut rnd = |shape: &[usize], scale: f32| {
        let v: Vec<f32> = (0..shape.iter().product::<usize>())
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * scale
            })
            .collect();
        Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
    };
    let t = HashMap::from([
        ("W_enc".to_string(), rnd(&[d, n], 0.2)),
        ("W_dec".to_string(), rnd(&[n, d], 0.2)),
        ("b_enc".to_string(), rnd(&[n], 0.1)),
        ("b_dec".to_string(), rnd(&[d], 0.1)),
    ]);
    Sae::from_config_and_tensors(cfg, t, &Device::Cpu).unwrap()
}

#[test]
fn transcoders_read_one_hook_and_replace_another() {
    let m = model();
    let tc = transcoder(&m);
    let tokens = m.to_tokens("The capital of France is").unwrap();
    let (logits, cache) = m.run_with_cache_with_saes(&tokens, &[&tc]).unwrap();
    // The input hook stays; the output hook is replaced by the transcoder's hook points.
    let inp = cache.get("blocks.5.mlp.hook_in").unwrap();
    assert!(!cache.contains("blocks.5.hook_mlp_out"));
    let out = cache.get("blocks.5.hook_mlp_out.hook_sae_output").unwrap();
    assert!(
        max_abs_diff(
            &cache.get("blocks.5.hook_mlp_out.hook_sae_input").unwrap(),
            &inp
        ) == 0.0
    );
    check(
        "transcoder output = decode(encode(mlp input))",
        &out,
        &tc.forward(&inp).unwrap(),
    );
    // And it propagates: resid_post = resid_mid + transcoder output.
    let post = (cache.get(("resid_mid", 5)).unwrap() + out).unwrap();
    check("resid_post", &cache.get(("resid_post", 5)).unwrap(), &post);
    let clean = m.forward(&tokens).unwrap();
    assert!(max_abs_diff(&logits, &clean) > 1e-2);
    // With the error term the model is clean again.
    let with_err = m.run(&tokens).sae(&tc).error_term().logits().unwrap();
    check("transcoder + error term = clean", &with_err, &clean);
}
