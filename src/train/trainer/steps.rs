//! The bookkeeping around one training step, shared by [`Trainer::fit_steps`] and callers that
//! feed batches themselves (the multi-layer transcoder runner): the feature-sparsity window
//! before the step, the metrics line, `n_checkpoints` folders and the step count after it.
use super::*;

impl Trainer {
    /// Whether the coming step logs metrics (every `log_every_n_steps`).
    pub fn is_log_step(&self) -> bool {
        (self.n_training_steps + 1).is_multiple_of(self.cfg.log_every_n_steps.max(1))
    }

    /// Before a step: at the end of a feature-sparsity window, log it and start a new one.
    pub fn start_step(&mut self, metrics_file: &mut Option<std::fs::File>) -> Result<()> {
        if self.full_window() {
            let log = self.sparsity_log();
            self.write_metrics(metrics_file, &log)?;
            self.act_freq_scores.iter_mut().for_each(|a| *a = 0.0);
            self.n_frac_active_samples = 0;
        }
        Ok(())
    }

    /// After a step that returned metrics `m`: on a logging step, the metrics line (with the
    /// time since `t0`); the `n_checkpoints` folder when one is due; then the step count.
    pub fn finish_step(
        &mut self,
        mut m: Metrics,
        is_log: bool,
        t0: Instant,
        metrics_file: &mut Option<std::fs::File>,
    ) -> Result<()> {
        if is_log {
            m.push(("time/elapsed_s".into(), t0.elapsed().as_secs_f64()));
            self.write_metrics(metrics_file, &m)?;
            self.last_metrics = m;
        }
        self.checkpoint_if_needed()?;
        self.n_training_steps += 1;
        Ok(())
    }

    /// `metrics.jsonl` of the run folder, truncated to the lines before the current step (a
    /// resumed run rewrites what follows) and opened for appending; `None` without a folder.
    pub fn metrics_file(&self) -> Result<Option<std::fs::File>> {
        self.open_metrics()
    }
}

/// `expected_average_only_in`'s norm estimate: the mean row norm `E‖x‖` of the batches added
/// (in f64), giving the scaling factor `√d / E‖x‖`.
#[derive(Clone, Debug, Default)]
pub struct NormEstimate {
    total: f64,
    count: usize,
    width: usize,
}

impl NormEstimate {
    /// Add a batch `[n, d]`.
    pub fn add(&mut self, b: &Tensor) -> Result<()> {
        let norms = b.sqr()?.sum(D::Minus1)?.sqrt()?;
        self.total += norms.sum_all()?.to_dtype(DType::F64)?.to_scalar::<f64>()?;
        self.count += norms.elem_count();
        self.width = b.dim(1)?;
        Ok(())
    }

    /// `√d / E‖x‖`.
    pub fn scaling_factor(&self) -> f64 {
        let mean = self.total / self.count as f64;
        (self.width as f64).sqrt() / mean
    }
}
