//! SAE throughput on CPU, f32: a StandardSAE's `encode` (or `forward`) on a `[batch, d_in]`
//! batch, like `scripts/bench_sae_torch.py` for SAELens.
//!
//! `cargo bench --bench sae_encode -- [--d-in 576] [--d-sae 9216] [--batch 4096] [--iters 5] [--op encode|forward]`
//! Thread count: `RAYON_NUM_THREADS`. `scripts/bench_sae.sh` runs both side by side.
use saescope::{Device, Sae, SaeConfig, Tensor};
use std::collections::HashMap;
use std::time::Instant;
mod common;
use common::arg;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if !args.iter().any(|a| a == "--bench") {
        println!(
            "SAE benchmark: run with `cargo bench --bench sae_encode` (see scripts/bench_sae.sh)"
        );
        return;
    }
    let (d_in, d_sae, batch) = (
        arg(&args, "--d-in", 576usize),
        arg(&args, "--d-sae", 9216usize),
        arg(&args, "--batch", 4096usize),
    );
    let (iters, warmup) = (
        arg(&args, "--iters", 5usize),
        arg(&args, "--warmup", 1usize),
    );
    let op: String = arg(&args, "--op", "encode".to_string());
    let dev = Device::Cpu;
    let cfg = SaeConfig::from_json_value(serde_json::json!({
        "architecture": "standard", "d_in": d_in, "d_sae": d_sae, "dtype": "float32",
        "apply_b_dec_to_input": true, "normalize_activations": "none",
        "metadata": {"hook_name": "blocks.0.hook_resid_pre"}
    }))
    .unwrap();
    let t = |shape: &[usize], scale: f64, shift: f64| {
        (Tensor::randn(0f32, 1f32, shape, &dev).unwrap() * scale)
            .unwrap()
            .affine(1.0, shift)
            .unwrap()
    };
    let tensors = HashMap::from([
        (
            "W_enc".to_string(),
            t(&[d_in, d_sae], 1.0 / (d_in as f64).sqrt(), 0.0),
        ),
        (
            "W_dec".to_string(),
            t(&[d_sae, d_in], 1.0 / (d_sae as f64).sqrt(), 0.0),
        ),
        ("b_enc".to_string(), t(&[d_sae], 0.1, -0.2)),
        ("b_dec".to_string(), t(&[d_in], 0.1, 0.0)),
    ]);
    let sae = Sae::from_config_and_tensors(cfg, tensors, &dev).unwrap();
    let x = Tensor::randn(0f32, 1f32, (batch, d_in), &dev).unwrap();
    let run = || match op.as_str() {
        "forward" => sae.forward(&x).unwrap(),
        _ => sae.encode(&x).unwrap(),
    };
    for _ in 0..warmup {
        run();
    }
    let mut secs: Vec<f64> = (0..iters)
        .map(|_| {
            let s = Instant::now();
            run();
            s.elapsed().as_secs_f64()
        })
        .collect();
    let raw = secs.clone();
    secs.sort_by(|a, b| a.total_cmp(b));
    let med = secs[secs.len() / 2];
    let flops = 2.0 * (batch * d_in * d_sae) as f64 * if op == "forward" { 2.0 } else { 1.0 };
    let threads = saescope::candle_core::utils::get_num_threads();
    println!(
        "{{\"impl\":\"saescope\",\"op\":\"{op}\",\"threads\":{threads},\"d_in\":{d_in},\"d_sae\":{d_sae},\"batch\":{batch},\"tokens_per_s\":{:.1},\"gflops\":{:.1},\"sec_per_iter\":{raw:?}}}",
        batch as f64 / med,
        flops / med / 1e9
    );
}
