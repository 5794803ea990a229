//! SAE training-step throughput on CPU, f32, like `scripts/bench_train_torch.py` for SAELens's
//! `SAETrainer.step`: one optimiser step (encode, decode, losses, firing bookkeeping, backward,
//! clipping at 1.0, Adam, schedules) on seeded random activations, a few batches cycled.
//!
//! `cargo bench --bench train_step -- [--arch standard|topk] [--k 32] [--d-in 576] [--d-sae 4608]
//! [--batch 4096] [--iters 5] [--warmup 1] [--dead-frac 0.0] [--graph]`
//!
//! `--dead-frac F` presets a fraction of latents as dead (switches TopK's AuxK on); `--graph`
//! uses the autograd graph instead of the fused top-k step. Threads: `RAYON_NUM_THREADS`.
//! Prints one JSON line with `tokens_per_s` and `peak_rss_mb`. `scripts/bench_train.sh` runs
//! both implementations side by side.
use saescope::rng::{Draw, Rng};
use saescope::train::activations::ActivationStoreConfig;
use saescope::train::config::RunnerConfig;
use saescope::train::trainer::Trainer;
use saescope::{Device, Tensor};
use std::time::Instant;
mod common;
use common::{arg, is_bench_run, median, rss_mib, time_iters};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if !is_bench_run(
        &args,
        "training benchmark: run with `cargo bench --bench train_step` (see scripts/bench_train.sh)",
    ) {
        return;
    }
    let arch: String = arg(&args, "--arch", "standard".to_string());
    let k = arg(&args, "--k", 32usize);
    let (d_in, d_sae, batch) = (
        arg(&args, "--d-in", 576usize),
        arg(&args, "--d-sae", 4608usize),
        arg(&args, "--batch", 4096usize),
    );
    let (iters, warmup) = (
        arg(&args, "--iters", 5usize),
        arg(&args, "--warmup", 1usize),
    );
    let dead_frac = arg(&args, "--dead-frac", 0.0f64);
    let graph = args.iter().any(|a| a == "--graph");
    let t_setup = Instant::now();
    let sae = match arch.as_str() {
        "topk" => serde_json::json!({"architecture": "topk", "d_in": d_in, "d_sae": d_sae, "k": k}),
        _ => {
            serde_json::json!({"architecture": arch, "d_in": d_in, "d_sae": d_sae, "l1_coefficient": 5.0})
        }
    };
    let cfg = RunnerConfig {
        sae: serde_json::from_value(sae).expect("sae config"),
        training_tokens: (batch * (iters + warmup + 1)) as u64,
        store: ActivationStoreConfig {
            train_batch_size_tokens: batch,
            ..Default::default()
        },
        lr: 3e-4,
        output_path: None,
        progress_bar: false,
        ..Default::default()
    };
    let mut t = Trainer::new(&cfg, None).expect("trainer");
    t.sae.use_fused_kernels = !graph;
    let mut rng = Rng::new(1);
    let batches: Vec<Tensor> = (0..3)
        .map(|_| {
            let v: Vec<f32> = (0..batch * d_in).map(|_| rng.normal() as f32).collect();
            Tensor::from_vec(v, (batch, d_in), &Device::Cpu).expect("batch")
        })
        .collect();
    let n_dead = (dead_frac * d_sae as f64).round() as usize;
    let window = cfg.dead_feature_window as f32;
    let preset_dead = |t: &mut Trainer| {
        for c in &mut t.n_forward_passes_since_fired[..n_dead] {
            *c = 10.0 * window;
        }
    };
    let setup_s = t_setup.elapsed().as_secs_f64();
    let mut i = 0;
    let raw = time_iters(iters, warmup, || {
        preset_dead(&mut t);
        t.step(&batches[i % batches.len()], false).expect("step");
        i += 1;
    });
    let med = median(&raw);
    let threads = saescope::candle_core::utils::get_num_threads();
    println!(
        "{{\"impl\":\"saescope\",\"path\":\"{}\",\"arch\":\"{arch}\",\"k\":{k},\"threads\":{threads},\"d_in\":{d_in},\"d_sae\":{d_sae},\"batch\":{batch},\"dead_frac\":{dead_frac},\"tokens_per_s\":{:.1},\"sec_per_iter\":{raw:?},\"setup_s\":{setup_s:.2},\"peak_rss_mb\":{:.0}}}",
        if graph || !matches!(arch.as_str(), "topk" | "standard") { "graph" } else { "fused" },
        batch as f64 / med,
        rss_mib().1
    );
}
