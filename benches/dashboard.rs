//! Feature-dashboard throughput on CPU: dashboards for `--latents` latents of the shipped SAE
//! (every `d_sae / N`-th latent, or the top N by maximum activation with `--top`), either over
//! `--tokens` corpus tokens including the model pass (`--mode corpus`) or over the first
//! `--tokens` tokens of an activation cache (`--mode cache`, default
//! `data/cache/acts/smollm2-l15-2m`), with every component on (loss effects, correlations vs
//! all 4608 latents).
//!
//! `cargo bench --bench dashboard -- [--mode corpus|cache] [--tokens 200000] [--latents 100]
//! [--top] [--cache DIR] [--no-loss-effect] [--out FILE.html]`
//!
//! Prints the time of each stage and one JSON line with `wall_s` and `peak_rss_mb`.
use saescope::analysis::dashboard::{
    corpus_rows, feature_dashboards_with_progress, DashboardConfig, DashboardInput,
    LatentSelection, Progress, RankBy, Stage,
};
use saescope::{HookedModel, Sae};
use std::time::Instant;
mod common;
use common::{arg, is_bench_run, rss_mib};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if !is_bench_run(
        &args,
        "dashboard benchmark: run with `cargo bench --bench dashboard`",
    ) {
        return;
    }
    let mode: String = arg(&args, "--mode", "corpus".to_string());
    let n_tokens = arg(&args, "--tokens", 200_000usize);
    let n_latents = arg(&args, "--latents", 100usize);
    let cache: String = arg(
        &args,
        "--cache",
        "data/cache/acts/smollm2-l15-2m".to_string(),
    );
    let out: String = arg(&args, "--out", String::new());
    let top = args.iter().any(|a| a == "--top");
    let t0 = Instant::now();
    let model = HookedModel::from_pretrained("smollm2").expect("model");
    let sae = Sae::shipped().expect("shipped SAE");
    let input = match mode.as_str() {
        "cache" => DashboardInput::ActCache {
            dir: cache.clone().into(),
            max_tokens: Some(n_tokens as u64),
        },
        _ => DashboardInput::Tokens(
            corpus_rows(&model, "default", n_tokens, 128).expect("corpus rows"),
        ),
    };
    let t_setup = t0.elapsed().as_secs_f64();
    let sel = if top {
        LatentSelection::Top {
            n: n_latents,
            by: RankBy::MaxActivation,
        }
    } else {
        let step = (sae.d_sae() / n_latents.max(1)).max(1);
        LatentSelection::Indices((0..n_latents).map(|i| i * step).collect())
    };
    let cfg = DashboardConfig {
        loss_effect: !args.iter().any(|a| a == "--no-loss-effect"),
        ..Default::default()
    };
    let t1 = Instant::now();
    let mut stage_start: Vec<(Stage, f64)> = Vec::new();
    let mut on = |p: Progress| {
        if stage_start.last().map(|s| s.0) != Some(p.stage) {
            stage_start.push((p.stage, t1.elapsed().as_secs_f64()));
        }
    };
    let dash = feature_dashboards_with_progress(&model, &sae, &input, &sel, &cfg, &mut on)
        .expect("dashboards");
    let t_dash = t1.elapsed().as_secs_f64();
    let t2 = Instant::now();
    let html = dash.to_html_document();
    let t_render = t2.elapsed().as_secs_f64();
    if !out.is_empty() {
        std::fs::write(&out, &html).expect("write html");
    }
    let mut ends: Vec<f64> = stage_start.iter().skip(1).map(|s| s.1).collect();
    ends.push(t_dash);
    for ((s, start), end) in stage_start.iter().zip(&ends) {
        println!("{s:?}: {:.1}s", end - start);
    }
    let n_examples: usize = dash
        .features
        .iter()
        .map(|f| {
            f.top_examples.examples.len()
                + f.quantile_groups
                    .iter()
                    .map(|g| g.examples.len())
                    .sum::<usize>()
        })
        .sum();
    let (_, peak) = rss_mib();
    println!(
        "{}",
        serde_json::json!({
            "bench": "dashboard", "mode": mode, "tokens_scanned": dash.n_tokens,
            "latents": dash.features.len(), "examples": n_examples, "top": top,
            "setup_s": t_setup, "dashboards_s": t_dash, "render_s": t_render,
            "html_mb": html.len() as f64 / 1e6,
            "wall_s": t0.elapsed().as_secs_f64(), "peak_rss_mb": peak,
            "threads": std::env::var("RAYON_NUM_THREADS").unwrap_or_default(),
        })
    );
}
