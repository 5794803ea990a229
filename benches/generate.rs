//! Generation benchmark on the default model (SmolLM2-135M-Instruct, f32, CPU): greedy
//! `HookedModel::generate` with and without the KV cache.
//!
//! `cargo bench --bench generate -- [--new 64] [--iters 3]`
//! Prints human-readable lines and one JSON line.
use saescope::model::GenerateOptions;
use saescope::HookedModel;
use std::time::Instant;
mod common;
use common::{arg, median};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    // `cargo test --all-targets` runs bench targets without `--bench`: do nothing then.
    if !args.iter().any(|a| a == "--bench") {
        println!("generate benchmark: run with `cargo bench --bench generate`");
        return;
    }
    let (new, iters) = (arg(&args, "--new", 64), arg(&args, "--iters", 3));
    let threads = saescope::candle_core::utils::get_num_threads();
    let model = HookedModel::from_pretrained("smollm2").expect("load smollm2");
    let prompt = "The capital of France is";
    let p = model.to_tokens(prompt).unwrap().dims()[1];
    let mut rates = Vec::new();
    for kv in [true, false] {
        let opts = GenerateOptions {
            use_past_kv_cache: kv,
            stop_at_eos: false,
            ..GenerateOptions::greedy(new)
        };
        model.generate(prompt, &opts).unwrap(); // warm-up
        let times: Vec<f64> = (0..iters)
            .map(|_| {
                let t = Instant::now();
                let out = model.generate(prompt, &opts).unwrap();
                assert_eq!(out.n_new(), new);
                t.elapsed().as_secs_f64()
            })
            .collect();
        let s = median(&times);
        println!(
            "generate greedy, prompt {p} tokens + {new} new, KV cache {kv}, {threads} threads: {s:.3}s  {:.1} new tok/s   (iters {times:.3?})",
            new as f64 / s
        );
        rates.push(new as f64 / s);
    }
    println!(
        "{{\"impl\":\"saescope\",\"bench\":\"generate\",\"threads\":{threads},\"prompt\":{p},\"new\":{new},\"kv_tokens_per_s\":{:.1},\"no_kv_tokens_per_s\":{:.1}}}",
        rates[0], rates[1]
    );
}
