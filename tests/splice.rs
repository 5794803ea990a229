//! SAEs spliced into the default model, against SAELens's HookedSAETransformer
//! (`scripts/make_sae_goldens.py` → `tests/fixtures/sae/goldens/spliced_smollm2.safetensors`).
use saescope::sae::splice::{ExcludeSpecialTokens, SaeRunOptions};
use saescope::{DType, Device, Error, HookedModel, Hooks, NamesFilter, Sae, Tensor};
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
        .run_with_cache_with_saes(&tokens, &[&s1, &s2], &opts, NamesFilter::All, None)
        .unwrap();
    check("logits (no error term)", &logits, &g["a.logits"]);
    for h in [H1, H2] {
        for k in ["input", "acts_pre", "acts_post", "recons", "output"] {
            let name = format!("{h}.hook_sae_{k}");
            check(
                &name,
                cache.get(name.as_str()).unwrap(),
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
        .run_with_cache_with_saes(&tokens, &[&s1, &s2], &opts, NamesFilter::All, None)
        .unwrap();
    check("logits (error term)", &logits, &g["b.logits"]);
    let clean = m.forward(&tokens).unwrap();
    check("error-term logits vs clean", &logits, &clean);
    for h in [H1, H2] {
        let name = format!("{h}.hook_sae_error");
        check(
            &name,
            cache.get(name.as_str()).unwrap(),
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
        .run_with_hooks_with_saes(&tokens, &[&s1, &s2], &opts, hooks)
        .unwrap();
    check("ablated logits", &ablated, &g["c.logits"]);
}

#[test]
fn stop_at_layer_with_saes() {
    let (g, m, (s1, s2)) = (golden(), model(), saes());
    let tokens = g["tokens"].to_dtype(DType::U32).unwrap();
    let name = format!("{H1}.hook_sae_acts_post");
    let (resid, cache) = m
        .run_with_cache_with_saes(
            &tokens,
            &[&s1, &s2],
            &SaeRunOptions::default(),
            NamesFilter::names([name.as_str()]),
            Some(15),
        )
        .unwrap();
    check("stop_at_layer=15 residual", &resid, &g["d.output"]);
    assert_eq!(cache.keys().collect::<Vec<_>>(), [name.as_str()]);
}

#[test]
fn excluded_special_tokens_bypass_the_sae() {
    let (m, (s1, _)) = (model(), saes());
    let tokens = m.to_tokens("The capital of France is").unwrap();
    let opts = SaeRunOptions {
        exclude_special_tokens: ExcludeSpecialTokens::Tokenizer,
        ..Default::default()
    };
    let (_, cache) = m
        .run_with_cache_with_saes(&tokens, &[&s1], &opts, NamesFilter::All, None)
        .unwrap();
    let (_, clean) = m.run_with_cache(&tokens, NamesFilter::All, None).unwrap();
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
    let err = m
        .run_with_saes(&tokens, &[&small], &SaeRunOptions::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("16") && err.contains("576"), "{err}");
    let (s1, _) = saes();
    let mut hooks = Hooks::new();
    hooks.add(format!("{H1}.hook_sae_acts_postt").as_str(), |_, _| {
        Ok(None)
    });
    let err = m
        .run_with_hooks_with_saes(&tokens, &[&s1], &SaeRunOptions::default(), hooks)
        .unwrap_err();
    assert!(
        matches!(err, Error::UnknownHook { .. }) && err.to_string().contains("hook_sae_acts_post"),
        "{err}"
    );
    // The replaced hook's own name is not a valid hook while the SAE is attached.
    let mut hooks = Hooks::new();
    hooks.add(H1, |_, _| Ok(None));
    assert!(m
        .run_with_hooks_with_saes(&tokens, &[&s1], &SaeRunOptions::default(), hooks)
        .is_err());
}
