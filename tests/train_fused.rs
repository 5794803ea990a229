//! The fused training steps (`src/train/arch/{topk,standard}_fused.rs`) against the autograd
//! graph (whose losses and gradients are checked against SAELens in `tests/train.rs`): same
//! losses, reconstruction, firing counts and gradients — top-k with and without decoder-norm
//! rescaling and `b_dec` centring, with no / few / many dead latents (AuxK off / partial /
//! full); standard (L1) with and without centring.
use saescope::rng::{Draw, Rng};
use saescope::train::arch::TrainingSae;
use saescope::train::config::TrainSaeConfig;
use saescope::{Device, Tensor};
use std::collections::HashMap;

/// Per latent, the number of rows on which it is non-zero.
fn fire_counts(f: &Tensor) -> Vec<f32> {
    let on = f.ne(0f32).unwrap().to_dtype(saescope::DType::F32).unwrap();
    on.sum(0).unwrap().to_vec1().unwrap()
}

fn randn(rng: &mut Rng, shape: (usize, usize), scale: f64) -> Tensor {
    let v: Vec<f32> = (0..shape.0 * shape.1)
        .map(|_| (rng.normal() * scale) as f32)
        .collect();
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}

fn max_rel(a: &Tensor, b: &Tensor) -> f64 {
    let a: Vec<f32> = a.flatten_all().unwrap().to_vec1().unwrap();
    let b: Vec<f32> = b.flatten_all().unwrap().to_vec1().unwrap();
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-12);
    a.iter()
        .zip(&b)
        .map(|(x, y)| ((x - y).abs() / scale) as f64)
        .fold(0.0, f64::max)
}

fn check(rescale: bool, centre: bool, n_dead: usize, k: usize) {
    let cfg = serde_json::json!({
        "architecture": "topk", "d_in": 24, "d_sae": 200, "k": k,
        "rescale_acts_by_decoder_norm": rescale, "apply_b_dec_to_input": centre,
        "aux_loss_coefficient": 0.7,
    });
    let what = format!("topk: rescale {rescale}, centre {centre}, {n_dead} dead, k {k}");
    compare(cfg, n_dead, &HashMap::new(), &what);
}

fn compare(cfg: serde_json::Value, n_dead: usize, coefs: &HashMap<String, f64>, what: &str) {
    let (d_in, d_sae, n) = (24, 200, 70);
    let cfg: TrainSaeConfig = serde_json::from_value(cfg).unwrap();
    let mut rng = Rng::new(7 + n_dead as u64);
    let mut sae = TrainingSae::new(&cfg, &mut rng, &Device::Cpu).unwrap();
    // Non-trivial parameters: random decoder norms, biases.
    let mut p: HashMap<String, Tensor> = HashMap::new();
    p.insert("W_dec".into(), randn(&mut rng, (d_sae, d_in), 0.3));
    p.insert("W_enc".into(), randn(&mut rng, (d_in, d_sae), 0.3));
    p.insert(
        "b_enc".into(),
        randn(&mut rng, (1, d_sae), 0.2).flatten_all().unwrap(),
    );
    p.insert(
        "b_dec".into(),
        randn(&mut rng, (1, d_in), 0.5).flatten_all().unwrap(),
    );
    sae.set_params(&p).unwrap();
    let x = randn(&mut rng, (n, d_in), 1.0);
    let dead: Vec<bool> = (0..d_sae).map(|j| (j * 7919) % d_sae < n_dead).collect();
    assert_eq!(dead.iter().filter(|d| **d).count(), n_dead);

    let fused = sae
        .fused_step(&x, &dead, coefs)
        .unwrap()
        .expect("fused path");
    sae.use_fused_kernels = false;
    assert!(sae.fused_step(&x, &dead, coefs).unwrap().is_none());
    let out = sae.training_forward(&x, &dead, coefs).unwrap();
    let grads = out.loss.backward().unwrap();

    let scalar = |t: &Tensor| t.to_scalar::<f32>().unwrap() as f64;
    let want_loss = scalar(&out.loss);
    assert!(
        (fused.loss - want_loss).abs() <= 1e-5 * want_loss.abs(),
        "{what}: loss {} vs {want_loss}",
        fused.loss
    );
    for (name, v) in &fused.losses {
        let (_, w) = out.losses.iter().find(|(n, _)| n == name).unwrap();
        let w = scalar(w);
        assert!(
            (v - w).abs() <= 1e-5 * w.abs().max(1e-6),
            "{what}: {name} {v} vs {w}"
        );
    }
    if n_dead > 0 {
        assert!(fused.losses[1].1 > 0.0, "{what}: AuxK active");
    }
    assert_eq!(fused.losses.len(), out.losses.len());
    let e = max_rel(&fused.sae_out, &out.sae_out);
    assert!(e < 1e-5, "{what}: sae_out rel err {e}");
    assert_eq!(
        fused.fire_counts,
        fire_counts(&out.feature_acts),
        "{what}: fire counts"
    );
    for (name, var) in sae.params.iter() {
        let want = grads.get(var.as_tensor()).expect("graph gradient");
        let got = fused.grads[sae.params.names.iter().position(|n| n == name).unwrap()]
            .as_ref()
            .expect("fused gradient");
        assert_eq!(got.dims(), want.dims(), "{what}: {name} shape");
        let e = max_rel(got, want);
        assert!(e < 1e-4, "{what}: grad {name} rel err {e}");
    }
}

#[test]
fn fused_topk_step_matches_the_graph() {
    for rescale in [false, true] {
        for centre in [true, false] {
            for n_dead in [0, 5, 60] {
                // k_aux = d_in / 2 = 12: 5 dead → all of them (scaled), 60 → top 12.
                check(rescale, centre, n_dead, 8);
            }
        }
    }
    // k larger than the number of positive pre-activations in some rows.
    check(true, true, 60, 150);
}

#[test]
fn fused_standard_step_matches_the_graph() {
    for centre in [true, false] {
        let cfg = serde_json::json!({
            "architecture": "standard", "d_in": 24, "d_sae": 200, "apply_b_dec_to_input": centre,
        });
        let coefs = HashMap::from([("l1".to_string(), 0.37)]);
        compare(cfg, 0, &coefs, &format!("standard: centre {centre}"));
    }
    // lp_norm ≠ 1 keeps the graph.
    let cfg: TrainSaeConfig = serde_json::from_value(serde_json::json!({
        "architecture": "standard", "d_in": 8, "d_sae": 16, "lp_norm": 2.0,
    }))
    .unwrap();
    let sae = TrainingSae::new(&cfg, &mut Rng::new(1), &Device::Cpu).unwrap();
    let x = randn(&mut Rng::new(2), (4, 8), 1.0);
    assert!(sae
        .fused_step(&x, &[false; 16], &HashMap::new())
        .unwrap()
        .is_none());
}

#[test]
fn fused_step_is_deterministic() {
    let cfg: TrainSaeConfig = serde_json::from_value(serde_json::json!({
        "architecture": "topk", "d_in": 32, "d_sae": 256, "k": 8,
    }))
    .unwrap();
    let mut rng = Rng::new(3);
    let sae = TrainingSae::new(&cfg, &mut rng, &Device::Cpu).unwrap();
    let x = randn(&mut rng, (300, 32), 1.0);
    let dead = vec![true; 256];
    let a = sae.fused_step(&x, &dead, &HashMap::new()).unwrap().unwrap();
    for _ in 0..3 {
        let b = sae.fused_step(&x, &dead, &HashMap::new()).unwrap().unwrap();
        assert_eq!(a.loss.to_bits(), b.loss.to_bits());
        for (ga, gb) in a.grads.iter().zip(&b.grads) {
            let (ga, gb) = (ga.as_ref().unwrap(), gb.as_ref().unwrap());
            assert_eq!(max_rel(ga, gb), 0.0);
        }
    }
}
