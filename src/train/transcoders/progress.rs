//! Progress of a multi-layer run: an indicatif bar (steps, tokens/s, losses over layers) when
//! stderr is a terminal, a plain status line per logging step otherwise (logs of background
//! runs), and `progress.jsonl` in the run folder.
use super::state::TranscoderRun;
use crate::error::{Error, Result};
use crate::train::config::RunnerConfig;
use crate::train::trainer::write_atomic;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::{json, Value};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// File name of the run-level progress log.
pub const PROGRESS: &str = "progress.jsonl";

pub(super) struct Progress {
    bar: ProgressBar,
    lines: bool,
    file: std::fs::File,
    path: PathBuf,
    t0: Instant,
    start_step: usize,
    total: usize,
    batch: usize,
}

impl Progress {
    /// Starts at `step` of `total`; `progress.jsonl` keeps only the lines before `step`.
    pub(super) fn new(
        dir: &Path,
        total: usize,
        step: usize,
        batch: usize,
        cfg: &RunnerConfig,
    ) -> Result<Self> {
        let show = cfg.progress_bar;
        let tty = std::io::stderr().is_terminal();
        let bar = if show && tty {
            ProgressBar::with_draw_target(Some(total as u64), ProgressDrawTarget::stderr())
        } else {
            ProgressBar::hidden()
        };
        if let Ok(style) = ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} steps (eta {eta}) {msg}",
        ) {
            bar.set_style(style);
        }
        bar.set_position(step as u64);
        let path = dir.join(PROGRESS);
        let keep: String = std::fs::read_to_string(&path)
            .unwrap_or_default()
            .lines()
            .filter(|l| {
                serde_json::from_str::<Value>(l)
                    .ok()
                    .and_then(|v| v["step"].as_u64())
                    .is_some_and(|s| (s as usize) <= step)
            })
            .map(|l| format!("{l}\n"))
            .collect();
        write_atomic(&path, keep.as_bytes())?;
        let file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        Ok(Progress {
            bar,
            lines: show && !tty,
            file,
            path,
            t0: Instant::now(),
            start_step: step,
            total,
            batch,
        })
    }

    /// After a step: the bar, and on logging steps the summary line and `progress.jsonl`.
    pub(super) fn update(&mut self, run: &TranscoderRun, is_log: bool) -> Result<()> {
        let step = run.step();
        let secs = self.t0.elapsed().as_secs_f64().max(1e-9);
        let tok_s = ((step - self.start_step) * self.batch) as f64 / secs;
        self.bar.set_position(step as u64);
        if !is_log {
            return Ok(());
        }
        let get = |m: &[(String, f64)], k: &str| m.iter().find(|(n, _)| n == k).map(|(_, v)| *v);
        let (mut mse, mut ev, mut l0, mut dead) = (vec![], vec![], vec![], 0.0);
        for t in &run.trainers {
            let m = &t.last_metrics;
            mse.extend(get(m, "losses/mse_loss"));
            ev.extend(get(m, "metrics/explained_variance"));
            l0.extend(get(m, "metrics/l0"));
            dead += get(m, "sparsity/dead_features").unwrap_or(0.0);
        }
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
        let (min_ev_i, min_ev) =
            ev.iter()
                .copied()
                .enumerate()
                .fold(
                    (0, f64::INFINITY),
                    |a, (i, v)| if v < a.1 { (i, v) } else { a },
                );
        let min_layer = run.layers.get(min_ev_i).copied().unwrap_or(0);
        let model_share = run.model_seconds / (run.model_seconds + run.train_seconds).max(1e-9);
        let msg = format!(
            "{tok_s:.0} tok/s (model {:.0}%) | mse {:.4} | EV {:.3} (min {min_ev:.3} L{min_layer}) | L0 {:.1} | dead {dead:.0}",
            100.0 * model_share,
            mean(&mse),
            mean(&ev),
            mean(&l0),
        );
        self.bar.set_message(msg.clone());
        if self.lines {
            eprintln!(
                "step {step}/{} | {} tok | {secs:.0} s | {msg}",
                self.total,
                step * self.batch
            );
        }
        let line = json!({
            "step": step,
            "training_tokens": step * self.batch,
            "elapsed_s": secs,
            "tokens_per_s": tok_s,
            "model_s": run.model_seconds,
            "train_s": run.train_seconds,
            "model_batches": run.model_batches(),
            "mse_loss_mean": mean(&mse),
            "explained_variance_mean": mean(&ev),
            "explained_variance_min": min_ev,
            "explained_variance_min_layer": min_layer,
            "l0_mean": mean(&l0),
            "dead_features": dead,
        });
        writeln!(self.file, "{line}").map_err(|e| Error::io(&self.path, e))
    }

    /// Stopped early.
    pub(super) fn abandon(&self) {
        self.bar.abandon();
    }

    /// Done.
    pub(super) fn finish(&self) {
        self.bar.finish();
    }
}
