//! Finding latents on SmolLM2 with the shipped SAE (ARENA §1.5): attribution patching agrees
//! with true ablation in sign and rank (the test); gradients, ablation effects and DLA
//! match PyTorch/SAELens/TL (scripts/make_attribution_goldens.py); the backward pass through
//! all 30 layers matches finite differences; latent gradients are the decoder pullback.
//! Tiny-model checks (finite differences, batched ablation, exact DLA) are in
//! tests/attribution_tiny.rs.
use saescope::analysis::{
    ablation_effects, compare_attribution_ablation, get_cache_fwd_and_bwd, latent_dla,
    AttributionVsAblation, Metric,
};
use saescope::candle_core::safetensors;
use saescope::rng::{Draw, Rng};
use saescope::SaeRunOptions;
use saescope::{DType, Device, HookedModel, Hooks, IndexOp, Sae, Tensor};
use std::path::{Path, PathBuf};

mod common;
use common::tensors::flat;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn randn(rng: &mut Rng, shape: &[usize], scale: f64) -> Tensor {
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n).map(|_| (rng.normal() * scale) as f32).collect();
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}

fn smollm2() -> HookedModel {
    HookedModel::from_pretrained("smollm2").unwrap()
}

fn rel_err(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.dims(), b.dims());
    let (a, b) = (flat(a), flat(b));
    let diff = a
        .iter()
        .zip(&b)
        .fold(0f64, |m, (x, y)| m.max((x - y).abs() as f64));
    let scale = b.iter().fold(0f64, |m, y| m.max(y.abs() as f64));
    diff / scale
}

/// The test: on SmolLM2 with the shipped SAE, attribution patching (one backward pass)
/// agrees with true ablation (one forward pass per latent) in sign and rank for the latents
/// active at the last position of "The capital of France is", metric logit(" Paris") −
/// logit(" London").
#[test]
fn attribution_agrees_with_ablation_on_smollm2() {
    let model = smollm2();
    let sae = Sae::shipped().unwrap();
    let toks = model.to_tokens("The capital of France is").unwrap();
    let metric = Metric::logit_diff(&model, " Paris", " London").unwrap();
    let cmp = compare_attribution_ablation(&model, &toks, &sae, &metric, None).unwrap();
    assert_eq!(cmp.pos, 5);
    assert_eq!(cmp.latents.len(), 48, "TopK k = 48: 48 latents active");
    let top10 = cmp.top_by_ablation(10);
    let rho10 = AttributionVsAblation::spearman(&top10).unwrap();
    let rho_all = AttributionVsAblation::spearman(&cmp.latents).unwrap();
    let signs = AttributionVsAblation::sign_agreement(&cmp.latents, 0.02);
    let n_big = cmp
        .latents
        .iter()
        .filter(|r| r.ablation.abs() >= 0.02)
        .count();
    eprintln!(
        "metric {:.4}; top-10 by |ablation|: Spearman {rho10:.3}; all 48: Spearman {rho_all:.3}; \
         sign agreement on the {n_big} latents with |ablation| >= 0.02: {signs:.3}",
        cmp.metric
    );
    for r in &top10 {
        eprintln!(
            "  latent {:5} act {:6.2} attribution {:+.4} ablation {:+.4}",
            r.latent, r.act, r.attribution, r.ablation
        );
    }
    // The largest effect is not noise: ablating one latent moves the logit difference by > 0.1.
    assert!(top10[0].ablation.abs() > 0.1, "{:?}", top10[0]);
    assert!(n_big >= 10, "only {n_big} latents with |ablation| >= 0.02");
    // Every latent that matters (|ablation| >= 0.02 logits) gets the right sign.
    assert_eq!(signs, 1.0, "attribution and ablation disagree in sign");
    assert!(rho10 >= 0.9, "top-10 Spearman {rho10}");
    assert!(rho_all >= 0.9, "all-active Spearman {rho_all}");
    // The plot: one point per latent, the y = x line, the top latents labelled.
    let svg = cmp.plot("Attribution vs ablation", 5).unwrap();
    assert!(svg.as_str().starts_with("<svg"));
    assert_eq!(
        svg.as_str().matches("<circle").count(),
        48,
        "one circle per latent"
    );
    assert!(svg.as_str().contains(&top10[0].latent.to_string()));
    assert!(svg.as_str().contains("y = x"));

    // ARENA ablates at an earlier position (IOI's S2): at " France" the latents act on the
    // last position through attention, and attribution patching still ranks them.
    let cmp = compare_attribution_ablation(&model, &toks, &sae, &metric, Some(4)).unwrap();
    let top10 = cmp.top_by_ablation(10);
    let rho10 = AttributionVsAblation::spearman(&top10).unwrap();
    let rho_all = AttributionVsAblation::spearman(&cmp.latents).unwrap();
    let signs = AttributionVsAblation::sign_agreement(&cmp.latents, 0.02);
    eprintln!(
        "at \" France\" (position 4): largest |ablation| {:.3}; top-10 Spearman {rho10:.3}; all \
         {}: Spearman {rho_all:.3}; sign agreement (|ablation| >= 0.02) {signs:.3}",
        top10[0].ablation.abs(),
        cmp.latents.len()
    );
    assert!(top10[0].ablation.abs() > 0.1);
    assert_eq!(signs, 1.0);
    assert!(rho10 >= 0.9 && rho_all >= 0.9, "{rho10} {rho_all}");
}

/// The same quantities from PyTorch: SAELens's HookedSAETransformer with backward hooks, its
/// ablation loop and TL's `logit_attrs` (scripts/make_attribution_goldens.py).
#[test]
fn attribution_ablation_and_dla_match_pytorch_on_smollm2() {
    let path = fixtures().join("attribution/smollm2_paris.safetensors");
    let g = safetensors::load(&path, &Device::Cpu).unwrap();
    let model = smollm2();
    let sae = Sae::shipped().unwrap();
    let toks = g["tokens"].to_dtype(DType::U32).unwrap();
    assert_eq!(
        toks.to_vec2::<u32>().unwrap(),
        model
            .to_tokens("The capital of France is")
            .unwrap()
            .to_vec2::<u32>()
            .unwrap()
    );
    let metric = Metric::logit_diff(&model, " Paris", " London").unwrap();

    // Forward and backward caches at the latents and at the embedding (30 layers back).
    let acts_hook = "blocks.15.hook_resid_post.hook_sae_acts_post";
    let c = get_cache_fwd_and_bwd(
        &model,
        &toks,
        &[&sae],
        &SaeRunOptions::with_error_term(),
        &[acts_hook, "hook_embed"],
        &metric,
    )
    .unwrap();
    let want_metric = flat(&g["metric"])[0] as f64;
    let e_metric = (c.metric - want_metric).abs();
    let e_acts = rel_err(c.fwd(acts_hook).unwrap(), &g["acts_post"]);
    let e_grad = rel_err(c.bwd(acts_hook).unwrap(), &g["grad_acts_post"]);
    let e_embed = rel_err(c.bwd("hook_embed").unwrap(), &g["grad_embed"]);
    let attr = (c.fwd(acts_hook).unwrap() * c.bwd(acts_hook).unwrap()).unwrap();
    let want_attr = (&g["acts_post"] * &g["grad_acts_post"]).unwrap();
    let e_attr = rel_err(&attr, &want_attr);
    eprintln!("vs PyTorch: |metric| err {e_metric:.2e}; relative errors: acts {e_acts:.2e}, grad at acts_post {e_grad:.2e}, attribution {e_attr:.2e}, grad at hook_embed {e_embed:.2e}");
    assert!(e_metric < 2e-3);
    assert!(e_acts < 1e-3 && e_grad < 1e-3 && e_attr < 1e-3 && e_embed < 1e-3);

    // Ablation: the same live latents, the same effects.
    let abl = ablation_effects(&model, &toks, &sae, &metric, None, None).unwrap();
    let want_latents: Vec<i64> = g["ablation_latents"].to_vec1().unwrap();
    let got_latents: Vec<i64> = abl.effects.iter().map(|e| e.latent as i64).collect();
    assert_eq!(got_latents, want_latents);
    let want_effects = flat(&g["ablation_effects"]);
    let e_abl = abl
        .effects
        .iter()
        .zip(&want_effects)
        .fold(0f64, |m, (e, w)| m.max((e.effect - *w as f64).abs()));
    eprintln!(
        "ablation effects: max |ours − PyTorch| = {e_abl:.2e} (largest effect {:.3})",
        want_effects.iter().fold(0f32, |m, v| m.max(v.abs()))
    );
    assert!(e_abl < 2e-3);

    // Direct logit attribution against TL's logit_attrs.
    let dla = latent_dla(&model, &toks, &sae, &metric).unwrap();
    let got = dla.dla.i(0).unwrap();
    let e_dla = rel_err(&got, &g["dla"]);
    eprintln!("DLA vs TL logit_attrs: relative error {e_dla:.2e}");
    assert!(e_dla < 1e-3);
}

/// Backward through all 30 layers of SmolLM2 (no SAE): the gradient at `hook_embed` predicts
/// the change of the metric along a random direction (central differences on the fused,
/// untracked forward pass), and the tracked forward pass gives the fast pass's metric.
#[test]
fn backward_through_the_whole_smollm2_matches_finite_differences() {
    let model = smollm2();
    let toks = model.to_tokens("The capital of France is").unwrap();
    let metric = Metric::logit_diff(&model, " Paris", " London").unwrap();
    let c = get_cache_fwd_and_bwd(
        &model,
        &toks,
        &[],
        &SaeRunOptions::default(),
        &["hook_embed", "blocks.15.hook_resid_post"],
        &metric,
    )
    .unwrap();
    let fast = metric
        .value(&model, &model.forward(&toks).unwrap(), &toks)
        .unwrap();
    eprintln!("metric: tracked pass {:.6}, fused pass {fast:.6}", c.metric);
    assert!((c.metric - fast).abs() < 1e-3);
    for (hook, seed) in [("hook_embed", 1u64), ("blocks.15.hook_resid_post", 2)] {
        let x = c.fwd(hook).unwrap();
        let g = c.bwd(hook).unwrap();
        // A random direction: at each position after BOS (whose residual is huge), 1e-3 of
        // the activation's norm there.
        let mut rng = Rng::new(seed);
        let v = randn(&mut rng, x.dims(), 1.0);
        let norm = |t: &Tensor| t.sqr().unwrap().sum_keepdim(2).unwrap().sqrt().unwrap();
        let mut keep = vec![1f32; x.dim(1).unwrap()];
        keep[0] = 0.0;
        let keep = Tensor::from_vec(keep, (1, x.dim(1).unwrap(), 1), &Device::Cpu).unwrap();
        let v = v
            .broadcast_mul(&(norm(x) / norm(&v)).unwrap())
            .unwrap()
            .broadcast_mul(&keep)
            .unwrap();
        let v = (v * 1e-3).unwrap();
        let shifted = |sign: f64| {
            let dv = (&v * sign).unwrap();
            let mut hooks = Hooks::new();
            hooks.add(hook, move |a: &Tensor, _| Ok(Some((a + &dv)?)));
            let logits = model.run_with_hooks(&toks, hooks).unwrap();
            metric.value(&model, &logits, &toks).unwrap()
        };
        let fd = (shifted(1.0) - shifted(-1.0)) / 2.0;
        let pred = (g * &v)
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap() as f64;
        let rel = (fd - pred).abs() / pred.abs();
        eprintln!("{hook}: directional derivative, autograd {pred:+.6} vs central difference {fd:+.6} (relative error {rel:.2e})");
        assert!(
            pred.abs() > 1e-4,
            "the directional derivative is too small to test: {pred}"
        );
        assert!(rel < 1e-2, "{hook}: {rel}");
    }
}

/// Inside the spliced SAE: the gradient at `hook_sae_acts_post` is the gradient at
/// `hook_sae_output` pulled back through the decoder (rows divided by their norms: the shipped
/// TopK SAE has `rescale_acts_by_decoder_norm`), and the detached error term does not leak.
#[test]
fn latent_gradients_are_the_output_gradient_through_the_decoder() {
    let model = smollm2();
    let sae = Sae::shipped().unwrap();
    let toks = model.to_tokens("The capital of France is").unwrap();
    let metric = Metric::logit_diff(&model, " Paris", " London").unwrap();
    let acts = "blocks.15.hook_resid_post.hook_sae_acts_post";
    let out = "blocks.15.hook_resid_post.hook_sae_output";
    let input = "blocks.15.hook_resid_post.hook_sae_input";
    let c = get_cache_fwd_and_bwd(
        &model,
        &toks,
        &[&sae],
        &SaeRunOptions::with_error_term(),
        &[input, acts, out],
        &metric,
    )
    .unwrap();
    assert_eq!(c.names(), vec![input, acts, out]);
    let dec = saescope::analysis::effective_decoder(&sae).unwrap(); // [d_sae, d_in]
    let g_out = c.bwd(out).unwrap().squeeze(0).unwrap(); // [pos, d_in]
    let want = g_out
        .matmul(&dec.t().unwrap())
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    let e = rel_err(c.bwd(acts).unwrap(), &want);
    eprintln!(
        "grad at acts_post vs W_dec-pullback of grad at hook_sae_output: relative error {e:.2e}"
    );
    assert!(e < 1e-4);
    // Without the SAE the input would carry the gradient; with the detached error term and a
    // TopK encoder it gets only the encoder's path (through the selected pre-activations), so
    // it differs from the output gradient.
    assert!(rel_err(c.bwd(input).unwrap(), c.bwd(out).unwrap()) > 1e-2);
}
