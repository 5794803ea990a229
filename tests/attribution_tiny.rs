//! Finding latents on the tiny fixture models: attribution-patching gradients against central
//! finite differences (tiny Llama, GPT-2 and Gemma-2, through rotary, softmax, soft caps and
//! norms), batched ablation against one latent per pass, the exact DLA decomposition of a
//! logit difference, and typed errors. SmolLM2 tests are in tests/attribution.rs.
use saescope::analysis::{
    ablation_effects, attribution_patching, get_cache_fwd_and_bwd, latent_dla, Metric,
};
use saescope::candle_core::safetensors;
use saescope::rng::{Draw, Rng};
use saescope::SaeRunOptions;
use saescope::{Device, HookedModel, Hooks, IndexOp, Sae, Tensor};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

mod common;
use common::tensors::{flat, max_abs, max_abs_diff};

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
    let (_, cache) = model.run(&toks).names(hook).cache().unwrap();
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
    let dir = tempfile::tempdir().unwrap();
    write_tiny_sae(dir.path(), model.cfg().d_model, d_sae, hook, norm, seed);
    Sae::load(dir.path()).unwrap() // read into memory; the folder is deleted on return
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
        .run(toks)
        .sae(sae)
        .error_term()
        .hooks(hooks)
        .logits()
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
    let clean = model
        .run(&toks)
        .sae(&sae)
        .sae_options(&opts)
        .logits()
        .unwrap();
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
        let l = e.latent;
        let logits = zero_latent_at_3(&model, &toks, &sae, &opts, l);
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
        let logits = zero_latent_at_3(&model, &toks, &sae, &opts, l);
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
        let dla = latent_dla(&model, &toks, &sae, &metric).unwrap();
        let (_, cache) = model.run(&toks).sae(&sae).error_term().cache().unwrap();
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
        let logits = model.run(&toks).sae(&sae).error_term().logits().unwrap();
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
        // Without the final norm's scale: the same attribution times each row's scale.
        let raw = saescope::analysis::latent_dla_with(
            &model,
            &toks,
            &sae,
            &metric,
            &saescope::analysis::DlaOptions { apply_ln: false },
        )
        .unwrap();
        let scaled = dla
            .dla
            .broadcast_mul(&scale5.reshape((2, 1)).unwrap())
            .unwrap();
        assert!(max_abs_diff(&raw.dla, &scaled) < 1e-4 * max_abs(&scaled).max(1.0));
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
    let e = latent_dla(&model, &toks, &sae, &Metric::Loss).unwrap_err();
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
}

/// Logits with `latent` of the SAE on `blocks.0.hook_resid_post` zeroed at position 3 of every
/// row: one plain hooked pass, the reference for the batched ablations.
fn zero_latent_at_3(
    model: &HookedModel,
    toks: &Tensor,
    sae: &Sae,
    opts: &SaeRunOptions,
    latent: usize,
) -> Tensor {
    let mut hooks = Hooks::new();
    hooks.add(
        "blocks.0.hook_resid_post.hook_sae_acts_post",
        move |f: &Tensor, _| {
            let (b, p, d) = f.dims3()?;
            let mut keep = vec![1f32; b * p * d];
            for r in 0..b {
                keep[(r * p + 3) * d + latent] = 0.0;
            }
            Ok(Some(f.mul(&Tensor::from_vec(
                keep,
                (b, p, d),
                f.device(),
            )?)?))
        },
    );
    model
        .run(toks)
        .sae(sae)
        .sae_options(opts)
        .hooks(hooks)
        .logits()
        .unwrap()
}
