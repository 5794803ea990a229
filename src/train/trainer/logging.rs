//! Metrics of a training run: the per-step scalars SAELens logs, sparsity windows,
//! `metrics.jsonl` and the progress bar.
use super::*;

impl Trainer {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn step_metrics(
        &self,
        loss: f64,
        losses: &[(String, f64)],
        extra: &[(String, f64)],
        sae_out: &Tensor,
        x: &Tensor,
        counts: &[f32],
        dead: &[bool],
        n: usize,
    ) -> Result<Metrics> {
        let s = |t: &Tensor| -> Result<f64> { Ok(t.to_dtype(DType::F64)?.to_scalar::<f64>()?) };
        let per_tok = (sae_out - x)?.sqr()?.sum(D::Minus1)?;
        let mean_x = x.mean_keepdim(0)?;
        let total_var = x.broadcast_sub(&mean_x)?.sqr()?.sum(D::Minus1)?;
        let ev = 1.0 - s(&per_tok.mean(0)?)? / s(&total_var.mean(0)?)?;
        let legacy = (1.0 - (per_tok / total_var)?)?
            .to_dtype(DType::F64)?
            .to_vec1::<f64>()?;
        let lm = legacy.iter().sum::<f64>() / legacy.len() as f64;
        let lstd = (legacy.iter().map(|v| (v - lm).powi(2)).sum::<f64>()
            / (legacy.len().max(2) - 1) as f64)
            .sqrt();
        let l0 = counts.iter().map(|c| *c as f64).sum::<f64>() / n as f64;
        let mut m: Metrics = vec![
            ("losses/overall_loss".into(), loss),
            ("metrics/explained_variance".into(), ev),
            ("metrics/explained_variance_legacy".into(), lm),
            ("metrics/explained_variance_legacy_std".into(), lstd),
            ("metrics/l0".into(), l0),
            (
                "sparsity/mean_passes_since_fired".into(),
                self.n_forward_passes_since_fired
                    .iter()
                    .map(|v| *v as f64)
                    .sum::<f64>()
                    / self.n_forward_passes_since_fired.len() as f64,
            ),
            (
                "sparsity/dead_features".into(),
                dead.iter().filter(|d| **d).count() as f64,
            ),
            (
                "details/current_learning_rate".into(),
                self.lr_scheduler.lr(),
            ),
            (
                "details/n_training_samples".into(),
                self.n_training_samples as f64,
            ),
        ];
        for (name, c) in &self.coefficients {
            m.push((format!("details/{name}_coefficient"), c.value()));
        }
        for (name, l) in losses {
            m.push((format!("losses/{name}"), *l));
        }
        for (name, v) in extra {
            m.push((format!("metrics/{name}"), *v));
        }
        Ok(m)
    }

    /// SAELens's `_build_sparsity_log_dict` for the current window.
    pub(super) fn sparsity_log(&self) -> Metrics {
        let sp = self.feature_sparsity();
        let log: Vec<f64> = sp.iter().map(|s| ((*s + 1e-10) as f64).log10()).collect();
        vec![
            (
                "metrics/mean_log10_feature_sparsity".into(),
                log.iter().sum::<f64>() / log.len() as f64,
            ),
            (
                "sparsity/below_1e-5".into(),
                sp.iter().filter(|s| **s < 1e-5).count() as f64,
            ),
            (
                "sparsity/below_1e-6".into(),
                sp.iter().filter(|s| **s < 1e-6).count() as f64,
            ),
        ]
    }

    pub(super) fn progress_bar(&self, total: usize) -> indicatif::ProgressBar {
        use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
        let pb = if self.cfg.progress_bar {
            ProgressBar::with_draw_target(Some(total as u64), ProgressDrawTarget::stderr())
        } else {
            ProgressBar::hidden()
        };
        if let Ok(style) = ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} steps ({per_sec}, eta {eta}) {msg}",
        ) {
            pb.set_style(style);
        }
        pb.set_position(self.n_training_steps as u64);
        pb
    }

    pub(super) fn open_metrics(&self) -> Result<Option<std::fs::File>> {
        let Some(dir) = &self.out_dir else {
            return Ok(None);
        };
        let p = dir.join(METRICS);
        // Keep only the lines up to the current step (a resumed run rewrites what follows).
        let keep: Vec<String> = match std::fs::read_to_string(&p) {
            Ok(s) => s
                .lines()
                .filter(|l| {
                    serde_json::from_str::<Value>(l)
                        .ok()
                        .and_then(|v| v.get("step").and_then(|s| s.as_u64()))
                        .is_some_and(|s| (s as usize) < self.n_training_steps)
                })
                .map(|l| format!("{l}\n"))
                .collect(),
            Err(_) => vec![],
        };
        write_atomic(&p, keep.concat().as_bytes())?;
        let f = std::fs::OpenOptions::new()
            .append(true)
            .open(&p)
            .map_err(|e| Error::io(&p, e))?;
        Ok(Some(f))
    }

    pub(super) fn write_metrics(&self, f: &mut Option<std::fs::File>, m: &Metrics) -> Result<()> {
        let Some(f) = f else { return Ok(()) };
        let mut o = Map::new();
        o.insert("step".into(), self.n_training_steps.into());
        for (k, v) in m {
            o.insert(
                k.clone(),
                serde_json::Number::from_f64(*v)
                    .map(Value::Number)
                    .unwrap_or(Value::Null),
            );
        }
        let line = format!("{}\n", Value::Object(o));
        f.write_all(line.as_bytes())
            .map_err(|e| Error::io(PathBuf::from(METRICS), e))?;
        Ok(())
    }
}

pub(super) fn progress_message(m: &Metrics) -> String {
    let get = |k: &str| m.iter().find(|(n, _)| n == k).map(|(_, v)| *v);
    let mut s = String::new();
    if let Some(v) = get("losses/overall_loss") {
        s += &format!("loss {v:.4}");
    }
    if let Some(v) = get("metrics/l0") {
        s += &format!(" | L0 {v:.1}");
    }
    if let Some(v) = get("metrics/explained_variance") {
        s += &format!(" | EV {v:.3}");
    }
    if let Some(v) = get("sparsity/dead_features") {
        s += &format!(" | dead {v:.0}");
    }
    s
}
