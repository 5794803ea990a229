//! Toy models of superposition and toy SAEs (ARENA [1.3.1]).
use saescope::candle_core::Var;
use saescope::toy::*;
use saescope::train::arch::jumprelu::{jumprelu_ste, step_ste};
use saescope::{Device, Tensor};

/// Angles (degrees, sorted) and norms of the columns of `W[inst]` (`[inst, 2, feats]`).
fn geometry(w: &Tensor, inst: usize) -> (Vec<f32>, Vec<f32>) {
    let v = w.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let nf = w.dim(2).unwrap();
    let mut angles = Vec::new();
    let mut norms = Vec::new();
    for f in 0..nf {
        let (x, y) = (v[(inst * 2) * nf + f], v[(inst * 2 + 1) * nf + f]);
        norms.push((x * x + y * y).sqrt());
        angles.push(y.atan2(x).to_degrees());
    }
    angles.sort_by(|a, b| a.partial_cmp(b).unwrap());
    (angles, norms)
}

#[test]
fn toy_model_learns_pentagon_at_high_sparsity() {
    let t0 = std::time::Instant::now();
    let cfg = ToyModelConfig {
        n_inst: 4,
        n_features: 5,
        d_hidden: 2,
        ..Default::default()
    };
    let mut m = ToyModel::new(cfg, &[1.0], &[0.05], 7).unwrap();
    let log = m
        .optimize(&TrainOptions {
            steps: 2000,
            batch_size: 512,
            lr: 1e-2,
            ..Default::default()
        })
        .unwrap();
    let last = &log.last().unwrap().1;
    let best = (0..4)
        .min_by(|a, b| last[*a].partial_cmp(&last[*b]).unwrap())
        .unwrap();
    let (angles, norms) = geometry(&m.w().unwrap(), best);
    eprintln!(
        "losses {last:?} best {best} angles {angles:?} norms {norms:?} ({:?})",
        t0.elapsed()
    );
    for n in &norms {
        assert!((0.8..1.4).contains(n), "norms {norms:?}");
    }
    for i in 0..5 {
        let gap = if i + 1 < 5 {
            angles[i + 1] - angles[i]
        } else {
            angles[0] + 360.0 - angles[4]
        };
        assert!((gap - 72.0).abs() < 12.0, "angles {angles:?}");
    }
    let svg = plot_features_in_2d(&m.w().unwrap(), Some(&[1.0; 5]), "pentagon").unwrap();
    assert!(svg.as_str().contains("<svg"));
}

#[test]
fn toy_model_dense_features_keep_two_dims() {
    let cfg = ToyModelConfig {
        n_inst: 2,
        n_features: 5,
        d_hidden: 2,
        ..Default::default()
    };
    let importance: Vec<f32> = (0..5).map(|i| 0.9f32.powi(i)).collect();
    let mut m = ToyModel::new(cfg, &importance, &[1.0], 3).unwrap();
    m.optimize(&TrainOptions {
        steps: 2000,
        batch_size: 512,
        lr: 1e-2,
        ..Default::default()
    })
    .unwrap();
    let (_, norms) = geometry(&m.w().unwrap(), 0);
    eprintln!("dense norms {norms:?}");
    // Without sparsity only the two most important features get (orthogonal) directions.
    let big = norms.iter().filter(|n| **n > 0.5).count();
    assert_eq!(big, 2, "norms {norms:?}");
    assert!(norms[0] > 0.5 && norms[1] > 0.5, "norms {norms:?}");
    let dim = compute_dimensionality(&m.w().unwrap()).unwrap();
    assert_eq!(dim.dims(), &[2, 5]);
    let svg = plot_features_in_nd(&m.w().unwrap(), "nd").unwrap();
    assert!(svg.as_str().contains("<svg"));
}

fn synthetic_recovery(arch: ToySaeArch, coeff: f64, steps: usize) -> (f64, ToySaeLog) {
    let mut data = SyntheticActivations::new(12, 8, 0.06, 11).unwrap();
    let truth = data.features().clone();
    let cfg = ToySaeConfig {
        n_inst: 1,
        d_in: 8,
        d_sae: 24,
        sparsity_coeff: coeff,
        architecture: arch,
        ..Default::default()
    };
    let mut sae = ToySae::new(cfg, 5).unwrap();
    let log = sae
        .optimize(
            &mut |b| data.generate_instances(b, 1),
            &SaeTrainOptions {
                steps,
                batch_size: 256,
                lr: 1e-2,
                resample_method: Some(ResampleMethod::Advanced),
                resample_freq: 500,
                resample_window: 200,
                ..Default::default()
            },
        )
        .unwrap();
    let w_dec = sae.w_dec_normalized().unwrap().squeeze(0).unwrap();
    (recovery_score(&truth, &w_dec).unwrap(), log)
}

#[test]
fn toy_sae_recovers_synthetic_features() {
    let t0 = std::time::Instant::now();
    let (r, log) = synthetic_recovery(ToySaeArch::Standard, 0.02, 2000);
    eprintln!(
        "standard recovery {r:.3} l0 {:?} resampled {:?} ({:?})",
        log.l0.last(),
        log.resampled,
        t0.elapsed()
    );
    assert!(r >= 0.9, "recovery {r}");
}

#[test]
fn gated_and_jumprelu_toy_saes_train() {
    let (r, log) = synthetic_recovery(ToySaeArch::Gated, 0.3, 2000);
    eprintln!(
        "gated recovery {r:.3} loss {:?} l0 {:?}",
        log.loss.last(),
        log.l0.last()
    );
    assert!(r >= 0.9, "gated recovery {r}");
    let (r, log) = synthetic_recovery(ToySaeArch::JumpRelu, 0.005, 2000);
    eprintln!(
        "jumprelu recovery {r:.3} loss {:?} l0 {:?}",
        log.loss.last(),
        log.l0.last()
    );
    assert!(r >= 0.9, "jumprelu recovery {r}");
}

#[test]
fn recovery_score_definition() {
    let t = Tensor::new(&[[1f32, 0.0], [0.0, 1.0]], &Device::Cpu).unwrap();
    let w = Tensor::new(&[[2f32, 0.0], [1.0, 1.0], [-1.0, 0.0]], &Device::Cpu).unwrap();
    // Feature 0: best cos 1 (row 0); feature 1: best cos 1/√2 (row 1).
    let r = recovery_score(&t, &w).unwrap();
    assert!((r - (1.0 + 0.5f64.sqrt()) / 2.0).abs() < 1e-6, "{r}");
}

#[test]
fn jumprelu_pseudo_gradients() {
    let eps = 0.1;
    let z = Var::new(&[0.5f32, 0.52, 0.3, 0.9], &Device::Cpu).unwrap();
    let theta = Var::new(&[0.5f32, 0.5, 0.5, 0.5], &Device::Cpu).unwrap();
    // z = 0.5 (= θ, not on) and 0.52 are within ε/2 of θ; 0.3 is off; 0.9 is on.
    let j = jumprelu_ste(z.as_tensor(), theta.as_tensor(), eps, false).unwrap();
    assert_eq!(j.to_vec1::<f32>().unwrap(), vec![0.0, 0.52, 0.0, 0.9]);
    let g = j.sum_all().unwrap().backward().unwrap();
    let gz = g.get(z.as_tensor()).unwrap().to_vec1::<f32>().unwrap();
    let gt = g.get(theta.as_tensor()).unwrap().to_vec1::<f32>().unwrap();
    assert_eq!(gz, vec![0.0, 1.0, 0.0, 1.0]);
    let want = -0.5 / eps as f32;
    for (got, w) in gt.iter().zip([want, want, 0.0, 0.0]) {
        assert!((got - w).abs() < 1e-5, "dJ/dθ {gt:?}");
    }
    let h = step_ste(z.as_tensor(), theta.as_tensor(), eps, false).unwrap();
    assert_eq!(h.to_vec1::<f32>().unwrap(), vec![0.0, 1.0, 0.0, 1.0]);
    let g = h.sum_all().unwrap().backward().unwrap();
    assert!(
        g.get(z.as_tensor()).is_none()
            || g.get(z.as_tensor())
                .unwrap()
                .abs()
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap()
                == 0.0
    );
    let gt = g.get(theta.as_tensor()).unwrap().to_vec1::<f32>().unwrap();
    let want = -1.0 / eps as f32;
    for (got, w) in gt.iter().zip([want, want, 0.0, 0.0]) {
        assert!((got - w).abs() < 1e-4, "dH/dθ {gt:?}");
    }
}

fn revived_after_training(method: Option<ResampleMethod>) -> usize {
    // A toy SAE on the 5-features-in-2-dims model's hidden activations (ARENA's experiment),
    // with half of the latents killed by a large negative bias.
    let cfg = ToyModelConfig {
        n_inst: 1,
        n_features: 5,
        d_hidden: 2,
        ..Default::default()
    };
    let mut model = ToyModel::new(cfg, &[1.0], &[0.05], 7).unwrap();
    model
        .optimize(&TrainOptions {
            steps: 1500,
            batch_size: 512,
            lr: 1e-2,
            ..Default::default()
        })
        .unwrap();
    let n_inst = 4;
    let mut base = model.replicate_instance(0, n_inst, 1).unwrap();
    let scfg = ToySaeConfig {
        n_inst,
        d_in: 2,
        d_sae: 5,
        sparsity_coeff: 0.2,
        ..Default::default()
    };
    let mut sae = ToySae::new(scfg, 2).unwrap();
    let mut b = vec![0f32; n_inst * 5];
    for i in 0..n_inst {
        for j in 0..3 {
            b[i * 5 + j] = -100.0;
        }
    }
    sae.set_b_enc(&Tensor::from_vec(b, (n_inst, 5), &Device::Cpu).unwrap())
        .unwrap();
    let opts = SaeTrainOptions {
        steps: 1500,
        batch_size: 512,
        lr: 1e-2,
        log_every: 50,
        resample_method: method,
        resample_freq: 300,
        resample_window: 100,
        ..Default::default()
    };
    let log = sae
        .optimize(
            &mut |bs| {
                let x = base.generate_batch(bs)?;
                base.hidden(&x)
            },
            &opts,
        )
        .unwrap();
    eprintln!("{method:?}: resampled {:?}", log.resampled);
    if method.is_some() {
        let first = log.resampled.first().unwrap();
        assert!(first.1 >= 3 * n_inst, "{:?}", log.resampled);
        // The frac-active plot renders.
        assert!(frac_active_plot(&log, 0, 5, "frac active")
            .unwrap()
            .as_str()
            .contains("<svg"));
    }
    // After training: how many of the killed latents fire.
    let frac = log.frac_active.last().unwrap();
    let revived = (0..n_inst)
        .flat_map(|i| (0..3).map(move |j| i * 5 + j))
        .filter(|k| frac[*k] > 0.0)
        .count();
    eprintln!(
        "{method:?}: revived {revived} / {} final frac {frac:?}",
        3 * n_inst
    );
    revived
}

fn resampling_revives(method: ResampleMethod) {
    let revived = revived_after_training(Some(method));
    assert!(revived >= 3 * 4 * 3 / 4, "revived {revived} of 12");
}

#[test]
fn dead_latents_stay_dead_without_resampling() {
    assert_eq!(revived_after_training(None), 0);
}

#[test]
fn correlated_and_anticorrelated_pairs() {
    let cfg = ToyModelConfig {
        n_inst: 2,
        n_features: 6,
        d_hidden: 2,
        n_correlated_pairs: 1,
        n_anticorrelated_pairs: 1,
    };
    let mut m = ToyModel::new(cfg, &[1.0], &[0.3], 1).unwrap();
    let x = m.generate_batch(4000).unwrap();
    let v = x.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let (mut both_anti, mut on) = (0, [0usize; 6]);
    for r in v.chunks(6) {
        assert_eq!(r[0] > 0.0, r[1] > 0.0, "correlated pair differs: {r:?}");
        if r[2] > 0.0 && r[3] > 0.0 {
            both_anti += 1;
        }
        for f in 0..6 {
            on[f] += (r[f] > 0.0) as usize;
        }
    }
    assert_eq!(both_anti, 0);
    // Each feature is present with probability ≈ 0.3 (8000 rows).
    for c in on {
        assert!((c as f64 / 8000.0 - 0.3).abs() < 0.03, "{on:?}");
    }
}

#[test]
fn simple_resampling_revives_dead_latents() {
    resampling_revives(ResampleMethod::Simple);
}

#[test]
fn advanced_resampling_revives_dead_latents() {
    resampling_revives(ResampleMethod::Advanced);
}
