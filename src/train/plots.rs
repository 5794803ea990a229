//! End-of-training plots from `metrics.jsonl` (SVG via [`crate::viz::line_chart`]): loss
//! curves, L0, explained variance, and the log10 feature-density histogram.
use crate::error::{Error, Result};
use crate::viz::line_chart;
use serde_json::Value;
use std::path::Path;

/// Read `metrics.jsonl` and write `plots/{losses,l0,explained_variance,feature_density}.svg`.
pub fn write_plots(dir: &Path, log_sparsity: &[f32]) -> Result<()> {
    let p = dir.join(super::trainer::METRICS);
    let text = std::fs::read_to_string(&p).map_err(|e| Error::io(&p, e))?;
    let rows: Vec<Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .filter(|v: &Value| v.get("losses/overall_loss").is_some())
        .collect();
    let out = dir.join("plots");
    std::fs::create_dir_all(&out).map_err(|e| Error::io(&out, e))?;
    if !rows.is_empty() {
        // At most ~400 points.
        let stride = rows.len().div_ceil(400).max(1);
        let rows: Vec<&Value> = rows.iter().step_by(stride).collect();
        let x: Vec<String> = rows
            .iter()
            .map(|r| {
                r.get("step")
                    .and_then(|s| s.as_u64())
                    .unwrap_or(0)
                    .to_string()
            })
            .collect();
        let series = |k: &str| -> Vec<f32> {
            rows.iter()
                .map(|r| r.get(k).and_then(|v| v.as_f64()).unwrap_or(f64::NAN) as f32)
                .collect()
        };
        let loss_keys: Vec<String> = rows[0]
            .as_object()
            .map(|o| {
                o.keys()
                    .filter(|k| k.starts_with("losses/"))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        let losses: Vec<(String, Vec<f32>)> = loss_keys
            .iter()
            .map(|k| (k.trim_start_matches("losses/").to_string(), series(k)))
            .collect();
        line_chart("training losses", &x, &losses, "loss")?.save(out.join("losses.svg"))?;
        line_chart(
            "L0",
            &x,
            &[("l0".into(), series("metrics/l0"))],
            "active latents per token",
        )?
        .save(out.join("l0.svg"))?;
        line_chart(
            "explained variance",
            &x,
            &[(
                "explained variance".into(),
                series("metrics/explained_variance"),
            )],
            "explained variance",
        )?
        .save(out.join("explained_variance.svg"))?;
    }
    if !log_sparsity.is_empty() {
        let (labels, counts) = density_histogram(log_sparsity, 40);
        line_chart(
            "feature density (log10)",
            &labels,
            &[("latents".into(), counts)],
            "latents",
        )?
        .save(out.join("feature_density.svg"))?;
    }
    Ok(())
}

/// Histogram of `log10(density)` values over `[-10, 0]` in `bins` bins: (bin centre labels,
/// counts).
pub fn density_histogram(log_sparsity: &[f32], bins: usize) -> (Vec<String>, Vec<f32>) {
    let (lo, hi) = (-10.0f32, 0.0f32);
    let w = (hi - lo) / bins as f32;
    let mut counts = vec![0f32; bins];
    for v in log_sparsity {
        let b = (((v - lo) / w).floor() as i64).clamp(0, bins as i64 - 1) as usize;
        counts[b] += 1.0;
    }
    let labels = (0..bins)
        .map(|i| format!("{:.2}", lo + (i as f32 + 0.5) * w))
        .collect();
    (labels, counts)
}
