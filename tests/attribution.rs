//! Finding latents (ARENA §1.5): gradients through the model checked against finite
//! differences (tiny Llama and GPT-2, and SmolLM2 end to end) and against PyTorch/SAELens,
//! direct logit attribution against TL's `logit_attrs` and an exact decomposition, batched
//! ablation against one-at-a-time ablation, and attribution patching against ablation.
use saescope::analysis::{
    ablation_effects, attribution_patching, compare_attribution_ablation, get_cache_fwd_and_bwd,
    latent_dla, AttributionVsAblation, Metric,
};
use saescope::candle_core::{safetensors, Var};
use saescope::rng::Rng;
use saescope::sae::splice::SaeRunOptions;
use saescope::{DType, Device, HookedModel, Hooks, IndexOp, NamesFilter, Sae, Tensor};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

mod common;
use common::tensors::flat;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn tiny(name: &str) -> HookedModel {
    HookedModel::from_pretrained(fixtures().join(name).to_str().unwrap()).unwrap()
}

fn randn(rng: &mut Rng, shape: &[usize], scale: f64) -> Tensor {
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n).map(|_| (rng.normal() * scale) as f32).collect();
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}

/// A random standard SAE (SAELens folder) on `hook` of a `d_in`-wide model, whose
/// pre-activations are O(1) on activations of norm about `act_norm`; most latents fire.
fn write_tiny_sae(dir: &Path, d_in: usize, d_sae: usize, hook: &str, act_norm: f64, seed: u64) {
    let mut rng = Rng::new(seed);
    let mut t = HashMap::new();
    t.insert(
        "W_enc".to_string(),
        randn(&mut rng, &[d_in, d_sae], 1.0 / act_norm),
    );
    t.insert(
        "W_dec".to_string(),
        randn(
            &mut rng,
            &[d_sae, d_in],
            act_norm / 8.0 / (d_in as f64).sqrt(),
        ),
    );
    t.insert(
        "b_enc".to_string(),
        (randn(&mut rng, &[d_sae], 0.2) + 0.3).unwrap(),
    );
    t.insert(
        "b_dec".to_string(),
        randn(&mut rng, &[d_in], 0.05 * act_norm / (d_in as f64).sqrt()),
    );
    std::fs::create_dir_all(dir).unwrap();
    safetensors::save(&t, dir.join("sae_weights.safetensors")).unwrap();
    let cfg = serde_json::json!({
        "d_in": d_in, "d_sae": d_sae, "dtype": "float32", "device": "cpu",
        "apply_b_dec_to_input": true, "normalize_activations": "none",
        "architecture": "standard",
        "metadata": {"hook_name": hook, "model_name": "tiny"}
    });
    std::fs::write(dir.join("cfg.json"), cfg.to_string()).unwrap();
}

fn tiny_sae(model: &HookedModel, hook: &str, d_sae: usize, seed: u64) -> Sae {
    let toks = tiny_tokens(model);
    let (_, cache) = model.run_with_cache(&toks, hook, None).unwrap();
    let x = cache.get(hook).unwrap();
    let norm = x
        .sqr()
        .unwrap()
        .sum(2)
        .unwrap()
        .sqrt()
        .unwrap()
        .mean_all()
        .unwrap();
    let norm = norm.to_scalar::<f32>().unwrap() as f64;
    let dir = tempfile::tempdir().unwrap().keep();
    write_tiny_sae(&dir, model.cfg().d_model, d_sae, hook, norm, seed);
    Sae::load(&dir).unwrap()
}

/// Two prompts of 7 random ids (no tokenizer on the tiny models).
fn tiny_tokens(model: &HookedModel) -> Tensor {
    let mut rng = Rng::new(7);
    let v = model.cfg().d_vocab;
    let ids: Vec<u32> = (0..14).map(|_| rng.below(v) as u32).collect();
    Tensor::from_vec(ids, (2, 7), &Device::Cpu).unwrap()
}

/// The metric with `delta` added to `<hook>.hook_sae_acts_post` (error term on): the
/// fast (fused, untracked) forward pass.
fn metric_with_delta(
    model: &HookedModel,
    toks: &Tensor,
    sae: &Sae,
    metric: &Metric,
    delta: &Tensor,
) -> f64 {
    let hook = format!("{}.hook_sae_acts_post", sae.hook_name_out());
    let mut hooks = Hooks::new();
    hooks.add(hook.as_str(), |f: &Tensor, _| Ok(Some((f + delta)?)));
    let logits = model
        .run_with_hooks_with_saes(toks, &[sae], &SaeRunOptions::with_error_term(), hooks)
        .unwrap();
    metric.value(model, &logits, toks).unwrap()
}

/// Central differences of the metric in each of `(b, p, latent)` against the autograd
/// gradient at `hook_sae_acts_post`; returns the largest error relative to `max |grad|`.
fn grad_check(model: &HookedModel, sae: &Sae, metric: &Metric, eps: f32) -> f64 {
    let toks = tiny_tokens(model);
    let attr = attribution_patching(model, &toks, sae, metric).unwrap();
    let (b, p, d) = attr.grads.dims3().unwrap();
    let grads = attr.grads.to_vec3::<f32>().unwrap();
    let gmax = flat(&attr.grads).iter().fold(0f32, |m, v| m.max(v.abs())) as f64;
    assert!(gmax > 1e-3, "the gradient is (almost) zero: {gmax}");
    let mut worst = 0f64;
    let mut n = 0;
    for bi in 0..b {
        for pi in 0..p {
            for li in (pi % 3..d).step_by(5) {
                let mut dv = vec![0f32; b * p * d];
                dv[(bi * p + pi) * d + li] = eps;
                let delta = Tensor::from_vec(dv, (b, p, d), &Device::Cpu).unwrap();
                let up = metric_with_delta(model, &toks, sae, metric, &delta);
                let down = metric_with_delta(model, &toks, sae, metric, &delta.neg().unwrap());
                let fd = (up - down) / (2.0 * eps as f64);
                let err = (fd - grads[bi][pi][li] as f64).abs() / gmax;
                worst = worst.max(err);
                n += 1;
            }
        }
    }
    eprintln!(
        "{}: {n} central differences (eps {eps}) vs autograd at {}: max |fd − grad| / max|grad| = {worst:.2e} (max|grad| {gmax:.3e})",
        model.cfg().model_name,
        attr.hook
    );
    worst
}

#[test]
fn gradients_match_finite_differences_on_tiny_llama() {
    let model = tiny("tiny-llama");
    // Layer 1 (attention with rotary and softmax, gated MLP) and the unembedding follow.
    let sae = tiny_sae(&model, "blocks.0.hook_resid_post", 24, 11);
    let diff = Metric::LogitDiff {
        pos: None,
        correct: vec![5, 9],
        incorrect: vec![17, 2],
    };
    assert!(grad_check(&model, &sae, &diff, 1e-2) < 2e-3);
    // The loss depends on every position's logits.
    assert!(grad_check(&model, &sae, &Metric::Loss, 1e-2) < 2e-3);
}

#[test]
fn gradients_match_finite_differences_on_tiny_gpt2() {
    let model = tiny("tiny-gpt2");
    let sae = tiny_sae(&model, "blocks.0.hook_resid_mid", 24, 12);
    let diff = Metric::LogitDiff {
        pos: Some(4),
        correct: vec![3],
        incorrect: vec![40],
    };
    assert!(grad_check(&model, &sae, &diff, 1e-2) < 2e-3);
    assert!(grad_check(&model, &sae, &Metric::Loss, 1e-2) < 2e-3);
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
    let dla = latent_dla(&model, &toks, &sae, &metric, true).unwrap();
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

/// Batched ablation (many copies of the batch, each with another latent zeroed, in one pass)
/// equals ablating each latent in its own pass.
#[test]
fn batched_ablation_equals_one_latent_per_pass() {
    let model = tiny("tiny-llama");
    let sae = tiny_sae(&model, "blocks.0.hook_resid_post", 48, 13);
    let toks = tiny_tokens(&model);
    let metric = Metric::LogitDiff {
        pos: None,
        correct: vec![5],
        incorrect: vec![17],
    };
    let latents: Vec<usize> = (0..48).collect(); // 48 latents × 2 rows: two passes of 32 copies
    let abl = ablation_effects(&model, &toks, &sae, &metric, Some(3), Some(&latents)).unwrap();
    assert_eq!(abl.pos, 3);
    let opts = SaeRunOptions::with_error_term();
    let clean = model.run_with_saes(&toks, &[&sae], &opts).unwrap();
    let base = metric.value(&model, &clean, &toks).unwrap();
    assert!((abl.metric - base).abs() < 1e-6);
    let acts = saescope::analysis::sae_acts(&model, &toks, &sae).unwrap();
    let active = saescope::analysis::active_latents(&acts, Some(3)).unwrap();
    assert!(
        active.len() > 10 && active.len() < 48,
        "{} active",
        active.len()
    );
    let mut worst = 0f64;
    for e in &abl.effects {
        let mut hooks = Hooks::new();
        let l = e.latent;
        hooks.add(
            "blocks.0.hook_resid_post.hook_sae_acts_post",
            move |f: &Tensor, _| {
                let (b, p, d) = f.dims3()?;
                let mut keep = vec![1f32; b * p * d];
                for r in 0..b {
                    keep[(r * p + 3) * d + l] = 0.0;
                }
                Ok(Some(f.mul(&Tensor::from_vec(
                    keep,
                    (b, p, d),
                    f.device(),
                )?)?))
            },
        );
        let logits = model
            .run_with_hooks_with_saes(&toks, &[&sae], &opts, hooks)
            .unwrap();
        let want = base - metric.value(&model, &logits, &toks).unwrap();
        worst = worst.max((e.effect - want).abs());
        if !active.contains(&l) {
            assert_eq!(e.effect, 0.0, "inactive latent {l} has an effect");
        }
        let mean_act = acts
            .i((.., 3, l))
            .unwrap()
            .mean_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!((e.act - mean_act).abs() < 1e-6);
    }
    eprintln!("batched vs single ablation: max |difference| {worst:.2e}");
    assert!(worst < 1e-5);
    assert!(abl.top_k(3)[0].effect.abs() > 1e-3);
    // Default latents: the active ones.
    let auto = ablation_effects(&model, &toks, &sae, &metric, Some(3), None).unwrap();
    assert_eq!(
        auto.effects.iter().map(|e| e.latent).collect::<Vec<_>>(),
        active
    );
    // The loss (all positions' logits) as the metric: the same through one-latent passes.
    let three = &active[..3];
    let loss = ablation_effects(&model, &toks, &sae, &Metric::Loss, Some(3), Some(three)).unwrap();
    for e in &loss.effects {
        let l = e.latent;
        let mut hooks = Hooks::new();
        hooks.add(
            "blocks.0.hook_resid_post.hook_sae_acts_post",
            move |f: &Tensor, _| {
                let (b, p, d) = f.dims3()?;
                let mut keep = vec![1f32; b * p * d];
                for r in 0..b {
                    keep[(r * p + 3) * d + l] = 0.0;
                }
                Ok(Some(f.mul(&Tensor::from_vec(
                    keep,
                    (b, p, d),
                    f.device(),
                )?)?))
            },
        );
        let logits = model
            .run_with_hooks_with_saes(&toks, &[&sae], &opts, hooks)
            .unwrap();
        let want = loss.metric - Metric::Loss.value(&model, &logits, &toks).unwrap();
        assert!(
            (e.effect - want).abs() < 1e-5 && e.effect != 0.0,
            "{e:?} vs {want}"
        );
    }
}

/// For an SAE on the last residual stream, the DLA of all latents, of `b_dec` and of the error
/// add up to the logit difference (minus `b_U`'s part): an exact decomposition.
#[test]
fn dla_decomposes_the_logit_difference_on_the_last_layer() {
    for (name, hook) in [
        ("tiny-llama", "blocks.1.hook_resid_post"),
        ("tiny-gpt2", "blocks.1.hook_resid_post"),
    ] {
        let model = tiny(name);
        let sae = tiny_sae(&model, hook, 32, 14);
        let toks = tiny_tokens(&model);
        let (c, i) = (vec![5u32, 9], vec![17u32, 2]);
        let metric = Metric::LogitDiff {
            pos: Some(5),
            correct: c.clone(),
            incorrect: i.clone(),
        };
        let dla = latent_dla(&model, &toks, &sae, &metric, true).unwrap();
        let (_, cache) = model
            .run_with_cache_with_saes(
                &toks,
                &[&sae],
                &SaeRunOptions::with_error_term(),
                NamesFilter::All,
                None,
            )
            .unwrap();
        let err = cache
            .get(format!("{hook}.hook_sae_error").as_str())
            .unwrap()
            .i((.., 5..6))
            .unwrap();
        let bdec = sae
            .b_dec()
            .reshape((1, 1, model.cfg().d_model))
            .unwrap()
            .broadcast_as(err.shape())
            .unwrap();
        // logit_attrs of the rest, with the cached scale at position 5 (shape [1, b, 1, d]).
        let stack = Tensor::stack(&[err, bdec.contiguous().unwrap()], 0).unwrap();
        let scale5 = cache
            .get("ln_final.hook_scale")
            .unwrap()
            .i((.., 5..6))
            .unwrap();
        let mut rest = 0f64;
        let b_u = model.b_u().unwrap();
        let logits = model
            .run_with_saes(&toks, &[&sae], &SaeRunOptions::with_error_term())
            .unwrap();
        for r in 0..2 {
            let u = (model.w_u().i((.., c[r] as usize)).unwrap()
                - model.w_u().i((.., i[r] as usize)).unwrap())
            .unwrap();
            let u = if model.cfg().normalization.is_layer_norm() {
                u.broadcast_sub(&u.mean_all().unwrap()).unwrap()
            } else {
                u
            };
            let s = stack
                .i((.., r))
                .unwrap()
                .broadcast_div(&scale5.i(r).unwrap())
                .unwrap();
            rest += s
                .broadcast_mul(&u)
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap() as f64
                / 2.0;
            rest += (b_u.i(c[r] as usize).unwrap() - b_u.i(i[r] as usize).unwrap())
                .unwrap()
                .to_scalar::<f32>()
                .unwrap() as f64
                / 2.0;
        }
        let total: f64 = dla.mean().unwrap().iter().map(|&v| v as f64).sum::<f64>() + rest;
        let want = metric.value(&model, &logits, &toks).unwrap();
        eprintln!(
            "{name}: Σ latent DLA + b_dec + error + b_U = {total:.6}, logit difference {want:.6}"
        );
        assert!((total - want).abs() < 1e-4 * want.abs().max(1.0));
        let top = dla.top_k(3, saescope::analysis::TopBy::Abs).unwrap();
        assert!(top[0].1.abs() >= top[2].1.abs());
    }
}

#[test]
fn bad_arguments_are_errors_that_name_the_fix() {
    let model = tiny("tiny-llama");
    let sae = tiny_sae(&model, "blocks.0.hook_resid_post", 8, 15);
    let toks = tiny_tokens(&model);
    let metric = Metric::LogitDiff {
        pos: None,
        correct: vec![5],
        incorrect: vec![6],
    };
    let opts = SaeRunOptions::with_error_term();
    let e = get_cache_fwd_and_bwd(
        &model,
        &toks,
        &[&sae],
        &opts,
        &["blocks.1.hook_resid_pots"],
        &metric,
    )
    .unwrap_err();
    assert!(e.to_string().contains("blocks.1.hook_resid_post"), "{e}");
    let e = get_cache_fwd_and_bwd(
        &model,
        &toks,
        &[],
        &opts,
        &["hook_embed", "hook_embed"],
        &metric,
    )
    .unwrap_err();
    assert!(e.to_string().contains("named twice"), "{e}");
    let e = get_cache_fwd_and_bwd(&model, &toks, &[], &opts, &[], &metric).unwrap_err();
    assert!(e.to_string().contains("no hook names"), "{e}");
    let e = latent_dla(&model, &toks, &sae, &Metric::Loss, true).unwrap_err();
    assert!(e.to_string().contains("LogitDiff"), "{e}");
    let e = ablation_effects(&model, &toks, &sae, &metric, None, Some(&[8])).unwrap_err();
    assert!(e.to_string().contains("d_sae = 8"), "{e}");
    let e = ablation_effects(&model, &toks, &sae, &metric, Some(7), None).unwrap_err();
    assert!(e.to_string().contains("out of range"), "{e}");
    let bad = Metric::LogitDiff {
        pos: None,
        correct: vec![5, 6, 7],
        incorrect: vec![6],
    };
    let e = attribution_patching(&model, &toks, &sae, &bad).unwrap_err();
    assert!(e.to_string().contains("one per batch row"), "{e}");
    let vec_metric = Metric::custom(|logits, _| Ok(logits.sum(2)?));
    let e = attribution_patching(&model, &toks, &sae, &vec_metric).unwrap_err();
    assert!(e.to_string().contains("scalar"), "{e}");
    // A custom metric works like the built-in one.
    let custom = Metric::custom(|logits, _| {
        let last = logits.i((.., 6))?;
        Ok((last.i((.., 5))? - last.i((.., 6))?)?.mean_all()?)
    });
    let a = attribution_patching(&model, &toks, &sae, &custom).unwrap();
    let b = attribution_patching(&model, &toks, &sae, &metric).unwrap();
    assert!(rel_err(&a.attribution, &b.attribution) < 1e-6);
    assert_eq!(a.at_pos(None).unwrap().len(), 8);
    let top = a.top_k(Some(2), 3, saescope::analysis::TopBy::Abs).unwrap();
    let row = a.at_pos(Some(2)).unwrap();
    let best = row.iter().fold(0f32, |m, v| m.max(v.abs()));
    assert_eq!((top.len(), top[0].1.abs()), (3, best));
    let _ = Var::zeros(1, DType::F32, &Device::Cpu).unwrap();
}

#[test]
fn gradients_match_finite_differences_on_tiny_gemma2() {
    // Attention and logit soft-capping, sliding windows, post-norms on the graph path.
    let model = tiny("tiny-gemma2");
    let sae = tiny_sae(&model, "blocks.0.hook_resid_post", 24, 16);
    let diff = Metric::LogitDiff {
        pos: None,
        correct: vec![5],
        incorrect: vec![17],
    };
    assert!(grad_check(&model, &sae, &diff, 1e-2) < 2e-3);
}
