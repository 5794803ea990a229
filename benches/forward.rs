//! Forward-pass benchmark on the default model (SmolLM2-135M-Instruct, f32, CPU).
//!
//! `cargo bench --bench forward -- [--batch 8] [--seq 128] [--iters 3] [--warmup 1]`
//! Thread count: `RAYON_NUM_THREADS` (candle's CPU kernels honour it). `scripts/bench.sh` runs
//! this and the PyTorch equivalent side by side. Forward and `run_with_cache` (all hooks)
//! alternate pass by pass; wall-clock and process CPU time are both reported. Prints
//! human-readable lines and one JSON line.
use saescope::{HookedModel, LoadOptions, Tensor};
use std::time::Instant;
mod common;
use common::{arg, median, rss_mib, time_pairs};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    // `cargo test --all-targets` runs bench targets without `--bench`: do nothing then.
    if !args.iter().any(|a| a == "--bench") {
        println!(
            "forward benchmark: run with `cargo bench --bench forward` (see scripts/bench.sh)"
        );
        return;
    }
    let (batch, seq) = (arg(&args, "--batch", 8), arg(&args, "--seq", 128));
    let (iters, warmup) = (arg(&args, "--iters", 3), arg(&args, "--warmup", 1));
    let threads = saescope::candle_core::utils::get_num_threads();

    let (rss0, _) = rss_mib();
    let t = Instant::now();
    let model = HookedModel::from_pretrained_with("smollm2", &LoadOptions::default())
        .expect("load smollm2 (run scripts/fetch_model.sh)");
    let load_s = t.elapsed().as_secs_f64();
    let (rss_loaded, peak_load) = rss_mib();
    let weights_mib = model.n_params() as f64 * 4.0 / (1024.0 * 1024.0);
    println!(
        "load: {load_s:.2}s  params {}  f32 weights {weights_mib:.0} MiB  RSS before {rss0:.0} MiB, after {rss_loaded:.0} MiB, peak {peak_load:.0} MiB = {:.2}x weights",
        model.n_params(),
        peak_load / weights_mib
    );

    // Seeded pseudo-random tokens (LCG), like the PyTorch script's seeded randint.
    let mut s: u64 = 0x5eed;
    let ids: Vec<u32> = (0..batch * seq)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 33) % model.cfg().d_vocab as u64) as u32
        })
        .collect();
    let tokens = Tensor::from_vec(ids, (batch, seq), model.device()).unwrap();
    let n_tok = (batch * seq) as f64;

    // Forward and run_with_cache alternate, pass by pass, so that load on a shared machine
    // hits both alike; the overhead is the ratio of their medians.
    let (fwd, cache) = time_pairs(
        iters,
        warmup,
        || {
            model.forward(&tokens).unwrap();
        },
        || {
            model.run_with_cache(&tokens).unwrap();
        },
    );
    let (_, peak) = rss_mib();
    let (f, c) = (median(&fwd.wall), median(&cache.wall));
    let (fc, cc) = (median(&fwd.cpu), median(&cache.cpu));
    println!(
        "forward [{batch}x{seq}], {threads} threads: {f:.3}s/iter  {:.0} tok/s   (iters {:.3?}, CPU s {:.2?})",
        n_tok / f,
        fwd.wall,
        fwd.cpu
    );
    println!(
        "run_with_cache(all hooks): {c:.3}s/iter  {:.0} tok/s  overhead {:+.1}% (CPU time {:+.1}%)   (iters {:.3?}, CPU s {:.2?})",
        n_tok / c,
        (c / f - 1.0) * 100.0,
        (cc / fc - 1.0) * 100.0,
        cache.wall,
        cache.cpu
    );
    println!(
        "{{\"impl\":\"saescope\",\"threads\":{threads},\"batch\":{batch},\"seq\":{seq},\"tokens_per_s\":{:.1},\"cache_tokens_per_s\":{:.1},\"cache_overhead_pct\":{:.1},\"cache_cpu_overhead_pct\":{:.1},\"sec_per_iter\":{:?},\"cache_sec_per_iter\":{:?},\"cpu_sec_per_iter\":{:?},\"cache_cpu_sec_per_iter\":{:?},\"load_s\":{load_s:.3},\"peak_rss_load_mb\":{peak_load:.0},\"weights_mb\":{weights_mib:.0},\"peak_rss_mb\":{peak:.0}}}",
        n_tok / f,
        n_tok / c,
        (c / f - 1.0) * 100.0,
        (cc / fc - 1.0) * 100.0,
        fwd.wall,
        cache.wall,
        fwd.cpu,
        cache.cpu
    );
}
