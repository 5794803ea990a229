//! SAELens's eval metrics (`evals.py`): definitions against independent computations, and
//! `run_evals` on the tiny GPT-2 fixture and on SmolLM2 with the fixture SAE.
use saescope::eval::metrics::*;
use saescope::eval::{feature_stats, run_evals, EvalOptions};
use saescope::rng::{Draw, Rng};
use saescope::sae::SaeConfig;
use saescope::SpecialTokens;
use saescope::{DType, Device, HookedModel, NamesFilter, Sae, Tensor};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

fn fixture(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(p)
}

fn rows(t: &Tensor) -> Vec<Vec<f32>> {
    t.to_vec2::<f32>().unwrap()
}

fn close(a: f64, b: f64, tol: f64, what: &str) {
    assert!(
        (a - b).abs() <= tol * (1.0 + b.abs()),
        "{what}: {a} vs {b} (tol {tol})"
    );
}

fn mean64(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

#[test]
fn metric_definitions_match_independent_computation() {
    let mut rng = Rng::new(3);
    let (n, d, ds) = (37, 11, 19);
    let x = rng.normal_tensor((n, d), 1.0, &Device::Cpu).unwrap();
    let x = (x + 0.7).unwrap(); // a mean component
    let noise = rng.normal_tensor((n, d), 0.3, &Device::Cpu).unwrap();
    let mut xh = (&x + noise).unwrap();
    // One reconstruction row nearly zero and one input row nearly zero (l2_ratio's guard).
    let mut xv = rows(&x);
    xv[5] = vec![1e-6; d];
    let x = Tensor::new(xv.clone(), &Device::Cpu).unwrap();
    let mut xhv = rows(&xh);
    xhv[7] = vec![0.0; d];
    xhv[7][0] = 1e-3;
    xh = Tensor::new(xhv.clone(), &Device::Cpu).unwrap();
    let f = rng
        .normal_tensor((n, ds), 1.0, &Device::Cpu)
        .unwrap()
        .relu()
        .unwrap();
    let fv = rows(&f);

    let l0: Vec<f64> = fv
        .iter()
        .map(|r| r.iter().filter(|v| **v != 0.0).count() as f64)
        .collect();
    let l1: Vec<f64> = fv
        .iter()
        .map(|r| r.iter().map(|v| v.abs() as f64).sum())
        .collect();
    let sq = |a: &[f32], b: &[f32]| -> f64 {
        a.iter().zip(b).map(|(a, b)| ((a - b) as f64).powi(2)).sum()
    };
    let norm = |a: &[f32]| -> f64 { a.iter().map(|v| (*v as f64).powi(2)).sum::<f64>().sqrt() };
    let dot =
        |a: &[f32], b: &[f32]| -> f64 { a.iter().zip(b).map(|(a, b)| *a as f64 * *b as f64).sum() };
    let mse: Vec<f64> = (0..n).map(|i| sq(&xv[i], &xhv[i])).collect();
    let cos: Vec<f64> = (0..n)
        .map(|i| dot(&xv[i], &xhv[i]) / (norm(&xv[i]) * norm(&xhv[i])))
        .collect();
    let mean_x: Vec<f64> = (0..d)
        .map(|k| xv.iter().map(|r| r[k] as f64).sum::<f64>() / n as f64)
        .collect();
    let var_rows: Vec<f64> = xv
        .iter()
        .map(|r| {
            r.iter()
                .zip(&mean_x)
                .map(|(a, m)| (*a as f64 - m).powi(2))
                .sum()
        })
        .collect();
    let ev = 1.0 - mean64(&mse) / mean64(&var_rows);
    let ev_legacy: Vec<f64> = (0..n).map(|i| 1.0 - mse[i] / var_rows[i]).collect();
    let ratio: Vec<f64> = (0..n)
        .map(|i| {
            let a = norm(&xv[i]);
            norm(&xhv[i]) / if a < 1e-4 { 1.0 } else { a }
        })
        .collect();
    let rrb = mean64(&(0..n).map(|i| norm(&xhv[i]).powi(2)).collect::<Vec<_>>())
        / mean64(&(0..n).map(|i| dot(&xv[i], &xhv[i])).collect::<Vec<_>>());

    let m = |v: Vec<f32>| mean(&v);
    close(m(l0_per_token(&f).unwrap()), mean64(&l0), 1e-6, "l0");
    close(m(l1_per_token(&f).unwrap()), mean64(&l1), 1e-5, "l1");
    close(
        m(mse_per_token(&x, &xh).unwrap()),
        mean64(&mse),
        1e-5,
        "mse",
    );
    close(
        m(cossim_per_token(&x, &xh).unwrap()),
        mean64(&cos),
        1e-5,
        "cossim",
    );
    close(
        explained_variance(&x, &xh).unwrap(),
        ev,
        1e-5,
        "explained_variance",
    );
    close(
        m(explained_variance_legacy_per_token(&x, &xh).unwrap()),
        mean64(&ev_legacy),
        1e-4,
        "explained_variance_legacy",
    );
    close(
        m(l2_ratio_per_token(&x, &xh).unwrap()),
        mean64(&ratio),
        1e-5,
        "l2_ratio",
    );
    close(
        relative_reconstruction_bias(&x, &xh).unwrap(),
        rrb,
        1e-5,
        "rrb",
    );

    // Streaming explained variance over uneven batches equals the one-shot value.
    let mut s = ExplainedVariance::new();
    for (a, b) in [(0, 10), (10, 11), (21, 16)] {
        s.add_batch(&xh.narrow(0, a, b).unwrap(), &x.narrow(0, a, b).unwrap())
            .unwrap();
    }
    assert_eq!(s.num_samples(), n);
    close(s.compute(), ev, 1e-5, "streamed explained_variance");
    // Perfect reconstruction of a constant input: 1 (SAELens's zero-variance rule).
    let c = Tensor::ones((4, 3), DType::F32, &Device::Cpu).unwrap();
    assert_eq!(explained_variance(&c, &c).unwrap(), 1.0);

    // KL(p‖q) per position.
    let a = rng.normal_tensor((2, 3, 7), 2.0, &Device::Cpu).unwrap();
    let b = rng.normal_tensor((2, 3, 7), 2.0, &Device::Cpu).unwrap();
    let kl = kl_div(&a, &b).unwrap();
    assert_eq!(kl.dims(), &[2, 3]);
    let (av, bv) = (
        a.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
        b.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
    );
    let kv = kl.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    for p in 0..6 {
        let lsm = |v: &[f32]| -> Vec<f64> {
            let mx = v.iter().cloned().fold(f32::MIN, f32::max) as f64;
            let z: f64 = v.iter().map(|x| (*x as f64 - mx).exp()).sum();
            v.iter().map(|x| *x as f64 - mx - z.ln()).collect()
        };
        let (lp, lq) = (lsm(&av[p * 7..p * 7 + 7]), lsm(&bv[p * 7..p * 7 + 7]));
        let want: f64 = lp.iter().zip(&lq).map(|(p, q)| p.exp() * (p - q)).sum();
        close(kv[p] as f64, want, 1e-4, "kl");
    }
    assert!(
        kl_div(&a, &a)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
            < 1e-5
    );
    close(ce_loss_score(2.0, 2.5, 7.0), 0.9, 1e-12, "ce score");
    close(kl_div_score(0.1, 4.0), 0.975, 1e-12, "kl score");

    // Weight-based metrics.
    let we = rng.normal_tensor((d, ds), 1.0, &Device::Cpu).unwrap();
    let wd = rng.normal_tensor((ds, d), 1.0, &Device::Cpu).unwrap();
    let wm = weight_metrics(&we, &wd, None).unwrap();
    let (wev, wdv) = (rows(&we), rows(&wd));
    for j in 0..ds {
        let col: Vec<f32> = (0..d).map(|k| wev[k][j]).collect();
        close(wm.encoder_norm[j] as f64, norm(&col), 1e-5, "encoder_norm");
        let c = dot(&col, &wdv[j]) / (norm(&col) * norm(&wdv[j]));
        close(
            wm.encoder_decoder_cosine_sim[j] as f64,
            c,
            1e-5,
            "enc/dec cos",
        );
    }
    assert!(wm.encoder_bias.is_none());

    // Density statistics.
    let dens = [0.0, 1e-7, 5e-6, 1e-3, 0.05, 0.5];
    let fs = feature_stats(&dens, &EvalOptions::default());
    assert_eq!(
        (fs.n_dead, fs.n_dense, fs.n_below_1e_5, fs.n_below_1e_6),
        (1, 1, 3, 2)
    );
    assert_eq!(fs.log10_density_histogram.counts.iter().sum::<usize>(), 6);
    assert_eq!(fs.log10_density_histogram.counts[0], 1); // log10(1e-10) = -10
    close(
        fs.mean_log10_density,
        mean64(
            &dens
                .iter()
                .map(|d| (d + 1e-10f64).log10())
                .collect::<Vec<_>>(),
        ),
        1e-12,
        "mean log density",
    );
}

fn tiny() -> HookedModel {
    HookedModel::from_pretrained(fixture("tiny-gpt2").to_str().unwrap()).unwrap()
}

fn tiny_tokens(n: usize, ctx: usize, seed: u64) -> Tensor {
    let mut rng = Rng::new(seed);
    let v: Vec<u32> = (0..n * ctx).map(|_| rng.below(300) as u32).collect();
    Tensor::from_vec(v, (n, ctx), &Device::Cpu).unwrap()
}

fn make_sae(hook: &str, w_enc: Tensor, w_dec: Tensor, b_enc: Tensor, b_dec: Tensor) -> Sae {
    let (d_in, d_sae) = w_enc.dims2().unwrap();
    let reshape = if hook.ends_with("hook_z") {
        "hook_z"
    } else {
        "none"
    };
    let cfg = SaeConfig::from_json_value(serde_json::json!({
        "architecture": "standard", "d_in": d_in, "d_sae": d_sae, "dtype": "float32",
        "device": "cpu", "apply_b_dec_to_input": true, "normalize_activations": "none",
        "reshape_activations": reshape, "metadata": {"hook_name": hook}
    }))
    .unwrap();
    let t: HashMap<String, Tensor> = [
        ("W_enc", w_enc),
        ("W_dec", w_dec),
        ("b_enc", b_enc),
        ("b_dec", b_dec),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    Sae::from_config_and_tensors(cfg, t, &Device::Cpu).unwrap()
}

/// `relu(x) − relu(−x) = x`: an SAE with perfect reconstruction.
fn identity_sae(hook: &str, d: usize) -> Sae {
    let eye = Tensor::eye(d, DType::F32, &Device::Cpu).unwrap();
    let we = Tensor::cat(&[&eye, &eye.neg().unwrap()], 1).unwrap();
    let wd = we.t().unwrap().contiguous().unwrap();
    let z = |n| Tensor::zeros(n, DType::F32, &Device::Cpu).unwrap();
    make_sae(hook, we, wd, z(2 * d), z(d))
}

fn random_sae(hook: &str, d: usize, ds: usize, seed: u64) -> Sae {
    let mut rng = Rng::new(seed);
    let we = rng.normal_tensor((d, ds), 0.2, &Device::Cpu).unwrap();
    let wd = rng.normal_tensor((ds, d), 0.2, &Device::Cpu).unwrap();
    let be = rng.normal_tensor(ds, 0.5, &Device::Cpu).unwrap();
    let bd = rng.normal_tensor(d, 0.1, &Device::Cpu).unwrap();
    make_sae(hook, we, wd, be, bd)
}

#[test]
fn identity_sae_scores_perfectly() {
    let m = tiny();
    let sae = identity_sae("blocks.1.hook_resid_pre", 64);
    let tokens = tiny_tokens(6, 16, 1);
    let opts = EvalOptions {
        batch_size: 4,
        compute_featurewise: true,
        ..Default::default()
    };
    let r = run_evals(&m, &sae, &tokens, &opts).unwrap();
    let p = r.model_performance_preservation.as_ref().unwrap();
    let b = r.model_behavior_preservation.as_ref().unwrap();
    let q = r.reconstruction_quality.as_ref().unwrap();
    let s = r.shrinkage.as_ref().unwrap();
    eprintln!(
        "{}",
        r.to_json_pretty()
            .lines()
            .take(40)
            .collect::<Vec<_>>()
            .join("\n")
    );
    close(
        p.ce_loss_with_sae,
        p.ce_loss_without_sae,
        1e-5,
        "ce with identity SAE",
    );
    close(p.ce_loss_score, 1.0, 1e-3, "ce score");
    assert!(b.kl_div_with_sae.abs() < 1e-5, "{}", b.kl_div_with_sae);
    assert!(b.kl_div_with_ablation > 0.0);
    close(b.kl_div_score, 1.0, 1e-3, "kl score");
    close(q.explained_variance, 1.0, 1e-5, "ev");
    assert!(q.mse < 1e-8, "{}", q.mse);
    close(q.cossim, 1.0, 1e-5, "cos");
    close(s.l2_ratio, 1.0, 1e-5, "l2 ratio");
    close(s.relative_reconstruction_bias, 1.0, 1e-5, "rrb");
    close(s.l2_norm_in, s.l2_norm_out, 1e-5, "norms");
    // Every token: each of the 64 dims fires exactly one of its two latents (unless 0).
    close(r.sparsity.as_ref().unwrap().l0, 64.0, 1e-3, "l0");
    let fm = r.feature_metrics.as_ref().unwrap();
    assert_eq!(fm.feature_density.len(), 128);
    for j in 0..64 {
        close(
            fm.feature_density[j] + fm.feature_density[64 + j],
            1.0,
            1e-6,
            "pair density",
        );
    }
    assert_eq!(r.token_stats.n_tokens_evaluated, 6 * 16);
}

#[test]
fn hook_z_sae_evals_flatten_heads() {
    let m = tiny();
    let sae = identity_sae("blocks.0.attn.hook_z", 64);
    let r = run_evals(&m, &sae, &tiny_tokens(3, 10, 8), &EvalOptions::default()).unwrap();
    let p = r.model_performance_preservation.unwrap();
    close(
        p.ce_loss_with_sae,
        p.ce_loss_without_sae,
        1e-5,
        "hook_z identity CE",
    );
    close(
        r.reconstruction_quality.unwrap().explained_variance,
        1.0,
        1e-5,
        "hook_z ev",
    );
    // A random hook_z SAE changes the loss.
    let sae = random_sae("blocks.0.attn.hook_z", 64, 32, 1);
    let r = run_evals(&m, &sae, &tiny_tokens(3, 10, 8), &EvalOptions::default()).unwrap();
    let p = r.model_performance_preservation.unwrap();
    assert!((p.ce_loss_with_sae - p.ce_loss_without_sae).abs() > 1e-5);
}

#[test]
fn run_evals_matches_direct_computation() {
    let m = tiny();
    let hook = "blocks.1.hook_resid_pre";
    let sae = random_sae(hook, 64, 96, 4);
    let tokens = tiny_tokens(5, 12, 2);
    let excl = tokens.flatten_all().unwrap().to_vec1::<u32>().unwrap()[3];
    let opts = EvalOptions {
        batch_size: 2,
        compute_featurewise: true,
        exclude_tokens: SpecialTokens::Ids(vec![excl]),
        ..Default::default()
    };
    let r = run_evals(&m, &sae, &tokens, &opts).unwrap();
    let tv = tokens.to_vec2::<u32>().unwrap();
    let keep: Vec<Vec<bool>> = tv
        .iter()
        .map(|r| r.iter().map(|t| *t != excl).collect())
        .collect();
    let n_keep = keep.iter().flatten().filter(|k| **k).count();
    assert!(n_keep < 60);
    assert_eq!(r.token_stats.n_tokens_evaluated, n_keep);

    // Clean CE over positions whose input token is kept.
    let logits = m.forward(&tokens).unwrap();
    let ce = m
        .per_token_loss(&tokens, &logits)
        .unwrap()
        .to_vec2::<f32>()
        .unwrap();
    let mut v = vec![];
    for (i, row) in ce.iter().enumerate() {
        for (j, c) in row.iter().enumerate() {
            if keep[i][j] {
                v.push(*c as f64);
            }
        }
    }
    let p = r.model_performance_preservation.as_ref().unwrap();
    close(p.ce_loss_without_sae, mean64(&v), 1e-5, "clean CE");
    close(
        p.ce_loss_score,
        (p.ce_loss_with_ablation - p.ce_loss_with_sae)
            / (p.ce_loss_with_ablation - p.ce_loss_without_sae),
        1e-12,
        "score",
    );

    // L0 and density from the activations directly.
    let (_, cache) = m.run(&tokens).names(hook).stop_at_layer(2).cache().unwrap();
    let x = cache.get(hook).unwrap().reshape((60, 64)).unwrap();
    let f = rows(&sae.encode(&x).unwrap());
    let kf: Vec<bool> = keep.iter().flatten().copied().collect();
    let l0: Vec<f64> = f
        .iter()
        .zip(&kf)
        .filter(|(_, k)| **k)
        .map(|(r, _)| r.iter().filter(|v| **v != 0.0).count() as f64)
        .collect();
    close(r.sparsity.as_ref().unwrap().l0, mean64(&l0), 1e-6, "l0");
    let fm = r.feature_metrics.as_ref().unwrap();
    // Σ_i density_i = mean_t L0_t.
    close(
        fm.feature_density.iter().sum::<f64>(),
        mean64(&l0),
        1e-6,
        "Σ density",
    );
    assert_eq!(fm.weights.encoder_norm.len(), 96);
    assert!(fm.weights.encoder_bias.is_some());

    // Batching does not change the streamed metrics.
    let r1 = run_evals(
        &m,
        &sae,
        &tokens,
        &EvalOptions {
            batch_size: 5,
            ..opts.clone()
        },
    )
    .unwrap();
    let q0 = r.reconstruction_quality.as_ref().unwrap();
    let q1 = r1.reconstruction_quality.as_ref().unwrap();
    close(
        q0.explained_variance,
        q1.explained_variance,
        1e-5,
        "ev batching",
    );
    close(q0.mse, q1.mse, 1e-5, "mse batching");
    let p1 = r1.model_performance_preservation.as_ref().unwrap();
    close(p.ce_loss_with_sae, p1.ce_loss_with_sae, 1e-5, "ce batching");
    close(
        r.model_behavior_preservation
            .as_ref()
            .unwrap()
            .kl_div_with_sae,
        r1.model_behavior_preservation
            .as_ref()
            .unwrap()
            .kl_div_with_sae,
        1e-4,
        "kl batching",
    );
}

#[test]
fn error_term_sae_gives_clean_loss() {
    let m = tiny();
    let sae = random_sae("blocks.0.hook_resid_post", 64, 96, 9);
    let tokens = tiny_tokens(3, 16, 5);
    let clean = m.forward(&tokens).unwrap();
    let with_err = m.run(&tokens).sae(&sae).error_term().logits().unwrap();
    let spliced = m.run_with_saes(&tokens, &[&sae]).unwrap();
    let ce = |l: &Tensor| m.loss(&tokens, l).unwrap().to_scalar::<f32>().unwrap() as f64;
    close(ce(&with_err), ce(&clean), 1e-5, "CE with error term");
    assert!((ce(&spliced) - ce(&clean)).abs() > 1e-4);
    let kl = kl_div(&clean, &with_err)
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert!(kl.abs() < 1e-4, "{kl}");
}

#[test]
fn smollm2_fixture_sae_eval() {
    let m = HookedModel::from_pretrained("smollm2").unwrap();
    let sae = Sae::load(&fixture("sae/saes/smollm2_standard_l10")).unwrap();
    let tok = m.tokenizer().unwrap();
    let text = "The river rose slowly through the night, and by morning the low fields were under \
                water. Farmers moved their animals to the hills, while children watched from the \
                bridge as branches and barrels drifted past the old mill.";
    let ids = tok.encode(text, true).unwrap();
    let ctx = 20;
    let mut rows_v = vec![];
    for r in 0..2 {
        rows_v.push(ids[0]);
        rows_v.extend_from_slice(&ids[1 + r * (ctx - 1)..1 + (r + 1) * (ctx - 1)]);
    }
    let tokens = Tensor::from_vec(rows_v, (2, ctx), &Device::Cpu).unwrap();
    let r = run_evals(&m, &sae, &tokens, &EvalOptions::default()).unwrap();
    let json = r.to_json_pretty();
    eprintln!("{json}");
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    for k in [
        "model_behavior_preservation",
        "model_performance_preservation",
        "reconstruction_quality",
        "shrinkage",
        "sparsity",
        "feature_stats",
        "token_stats",
    ] {
        assert!(v.get(k).is_some(), "missing {k}");
    }
    // BOS is excluded.
    assert_eq!(r.token_stats.n_tokens_evaluated, 2 * (ctx - 1));
    let p = r.model_performance_preservation.unwrap();
    assert!(p.ce_loss_with_ablation > p.ce_loss_without_sae);
    assert!(p.ce_loss_with_sae.is_finite() && p.ce_loss_score.is_finite());
    let s = r.sparsity.unwrap();
    assert!(s.l0 > 0.0 && s.l0 <= 256.0);

    // A TopK SAE deeper in the model, sparsity/variance only (stop_at_layer pass).
    let topk = Sae::load(&fixture("sae/saes/smollm2_topk_l20")).unwrap();
    let k = topk.k().unwrap() as f64;
    let opts = EvalOptions {
        compute_ce_loss: false,
        compute_kl: false,
        ..Default::default()
    };
    let r = run_evals(&m, &topk, &tokens, &opts).unwrap();
    assert!(r.model_performance_preservation.is_none());
    let l0 = r.sparsity.unwrap().l0;
    assert!(l0 > 0.0 && l0 <= k, "topk l0 {l0} > k {k}");
    let _ = NamesFilter::All;
}

#[test]
fn run_evals_matches_saelens() {
    // tests/fixtures/eval/make_eval_golden.py: SAELens 6.54.12 `run_evals` (everything on).
    let g: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixture("eval/tiny_gpt2_evals.json")).unwrap(),
    )
    .unwrap();
    let rows_t: Vec<Vec<u32>> = serde_json::from_value(g["tokens"].clone()).unwrap();
    let tokens = Tensor::new(rows_t, &Device::Cpu).unwrap();
    let m = tiny();
    let sae = Sae::load(&fixture("eval/sae_tiny_gpt2")).unwrap();
    let opts = EvalOptions {
        batch_size: g["batch_size"].as_u64().unwrap() as usize,
        compute_featurewise: true,
        exclude_tokens: SpecialTokens::Ids(vec![g["exclude"].as_u64().unwrap() as u32]),
        ..Default::default()
    };
    let r = run_evals(&m, &sae, &tokens, &opts).unwrap();
    let ours = serde_json::to_value(&r).unwrap();
    let want = &g["metrics"];
    let mut n = 0;
    for (group, vals) in want.as_object().unwrap() {
        for (k, v) in vals.as_object().unwrap() {
            let got = ours[group][k]
                .as_f64()
                .unwrap_or_else(|| panic!("{group}.{k} missing"));
            close(got, v.as_f64().unwrap(), 2e-4, &format!("{group}.{k}"));
            n += 1;
        }
    }
    assert_eq!(n, 19);
    let fm = r.feature_metrics.as_ref().unwrap();
    let gf = &g["feature_metrics"];
    let cmp = |name: &str, got: Vec<f64>| {
        let want = gf[name].as_array().unwrap();
        assert_eq!(want.len(), got.len(), "{name}");
        for (a, b) in got.iter().zip(want) {
            match b.as_f64() {
                Some(b) => close(*a, b, 1e-4, name),
                None => assert!(a.is_nan(), "{name}: {a} vs NaN"),
            }
        }
    };
    cmp("feature_density", fm.feature_density.clone());
    cmp(
        "consistent_activation_heuristic",
        fm.consistent_activation_heuristic.clone(),
    );
    let f = |v: &[f32]| v.iter().map(|x| *x as f64).collect::<Vec<_>>();
    cmp("encoder_norm", f(&fm.weights.encoder_norm));
    cmp(
        "encoder_decoder_cosine_sim",
        f(&fm.weights.encoder_decoder_cosine_sim),
    );
    cmp("encoder_bias", f(fm.weights.encoder_bias.as_ref().unwrap()));
}

#[test]
fn activation_scale_is_applied_around_the_sae() {
    // SAELens's ActivationScaler: the SAE sees s·x, its output is divided by s.
    let m = tiny();
    let hook = "blocks.1.hook_resid_pre";
    let sae = random_sae(hook, 64, 48, 12);
    let tokens = tiny_tokens(2, 8, 4);
    let s = 2.5;
    let opts = EvalOptions {
        activation_scale: Some(s),
        compute_featurewise: true,
        ..Default::default()
    };
    let r = run_evals(&m, &sae, &tokens, &opts).unwrap();
    let (_, cache) = m.run(&tokens).names(hook).stop_at_layer(2).cache().unwrap();
    let x = cache.get(hook).unwrap().reshape((16, 64)).unwrap();
    let f = sae.encode(&(&x * s).unwrap()).unwrap();
    let xh = (sae.decode(&f).unwrap() / s).unwrap();
    close(
        r.sparsity.as_ref().unwrap().l0,
        mean(&l0_per_token(&f).unwrap()),
        1e-6,
        "l0",
    );
    close(
        r.reconstruction_quality.as_ref().unwrap().mse,
        mean(&mse_per_token(&x, &xh).unwrap()),
        1e-4,
        "mse",
    );
    // Weight-based metrics describe the SAE as given (unscaled).
    let wm = weight_metrics(sae.w_enc(), sae.w_dec(), sae.b_enc()).unwrap();
    assert_eq!(
        r.feature_metrics.unwrap().weights.encoder_norm,
        wm.encoder_norm
    );
}
