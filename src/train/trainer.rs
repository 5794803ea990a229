//! The training loop (SAELens's `SAETrainer.fit`, spec §E.3) over an [`ActivationSource`]:
//! activation scaling (`expected_average_only_in`), `b_dec` init, the step (forward, backward,
//! `clip_grad_norm_(1.0)`, Adam, LR and coefficient schedulers), dead-latent counters and
//! feature sparsity windows, optional dead-latent resampling, metrics (`metrics.jsonl`), a
//! progress bar, resumable checkpoints, and the final SAELens folder.
//!
//! # Run folder (`output_path`)
//!
//! - `runner_cfg.json`: the config (written first; `resume` reads it);
//! - `checkpoint.safetensors`: the latest resumable state — parameters, Adam moments and step,
//!   counters, scaling factor, architecture buffers, RNG and the source's state. Written to a
//!   temporary file and renamed, so a kill at any moment leaves either the previous or the new
//!   checkpoint. Resuming from it reproduces the uninterrupted run bit for bit;
//! - `metrics.jsonl`: one JSON object per logging step (and per sparsity window);
//! - at the end: the inference SAE (`cfg.json`, `sae_weights.safetensors`,
//!   `sparsity.safetensors` holding `log10(feature sparsity + 1e-10)`, as SAELens), and
//!   `plots/*.svg`.
use super::arch::TrainingSae;
use super::config::{BDecInit, RunnerConfig};
use super::optim::{clip_grad_norm_coef, grads_of, Adam, CoefficientScheduler, LrScheduler};
use super::ActivationSource;
use crate::error::{Error, Result};
use crate::ops;
use crate::rng::{Draw, Rng};
use crate::sae::{Sae, SaeConfig};
use candle_core::{DType, Device, Tensor, D};
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

mod checkpoint;
mod logging;
mod output;
pub(crate) mod resample;
mod steps;

pub(crate) use output::save_weights_dtype;
pub use steps::NormEstimate;

/// File name of the run config in a run folder.
pub const RUNNER_CFG: &str = "runner_cfg.json";
/// File name of the resumable checkpoint in a run folder.
pub const CHECKPOINT: &str = "checkpoint.safetensors";
/// File name of the metrics log (JSON lines) in a run folder.
pub const METRICS: &str = "metrics.jsonl";

/// Scalar metrics of one step (what SAELens logs to wandb), by name.
pub type Metrics = Vec<(String, f64)>;

/// SAELens's `SAETrainer`.
pub struct Trainer {
    /// The run's config (as read back from its JSON form).
    pub cfg: RunnerConfig,
    /// The SAE being trained.
    pub sae: TrainingSae,
    /// The optimiser (moments and step count).
    pub adam: Adam,
    /// The learning-rate schedule.
    pub lr_scheduler: LrScheduler,
    /// Warm-up schedules of the sparsity coefficients, by name (`l1`, `l0`).
    pub coefficients: Vec<(String, CoefficientScheduler)>,
    /// Training steps completed.
    pub n_training_steps: usize,
    /// Activations (tokens) trained on so far.
    pub n_training_samples: u64,
    /// Per latent: tokens it fired on in the current sparsity window (SAELens `act_freq_scores`).
    pub act_freq_scores: Vec<f32>,
    /// Per latent: steps since it last fired (SAELens `n_forward_passes_since_fired`).
    pub n_forward_passes_since_fired: Vec<f32>,
    /// Tokens seen in the current sparsity window (SAELens `n_frac_active_samples`).
    pub n_frac_active_samples: u64,
    /// `expected_average_only_in`'s `√d_in / E‖x‖` (None until estimated, or when unused).
    pub scaling_factor: Option<f64>,
    /// Transcoders with `expected_average_only_in`: the target's own `√d_out / E‖y‖` (None
    /// until estimated, or when unused).
    pub target_scaling_factor: Option<f64>,
    /// The run's RNG (seeded with `seed`; initialises the SAE, then drives resampling).
    pub rng: Rng,
    /// Whether the norm estimate and b_dec init have run.
    pub setup_done: bool,
    out_dir: Option<PathBuf>,
    checkpoint_thresholds: Vec<u64>,
    /// The metrics of the last logging step (every `log_every_n_steps`).
    pub last_metrics: Metrics,
    device: Device,
}

/// What [`Trainer::fit_steps`] returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FitStatus {
    /// All steps done and the final SAE written.
    Finished,
    /// Stopped early (at the requested step), without the final save.
    Stopped,
}

fn json_err(path: &Path, e: serde_json::Error) -> Error {
    Error::Json {
        path: path.to_path_buf(),
        source: e,
    }
}

/// Write `bytes` to `path` atomically (temporary file in the same folder, then rename).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = tmp_path(path);
    std::fs::write(&tmp, bytes).map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))?;
    Ok(())
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".tmp{}", std::process::id()));
    path.with_file_name(name)
}

impl Trainer {
    /// A fresh trainer: SAE initialised from `cfg.seed`, optimiser and schedules at step 0.
    /// `out_dir` overrides `cfg.output_path`.
    pub fn new(cfg: &RunnerConfig, out_dir: Option<PathBuf>) -> Result<Self> {
        cfg.validate()?;
        // Use the config exactly as `runner_cfg.json` gives it back (JSON float parsing may
        // differ from the in-memory value in the last bit), so that a resumed run, which
        // reads that file, computes with the same numbers.
        let cfg = &RunnerConfig::from_value(cfg.to_saelens_value())?;
        let device = Device::Cpu;
        let mut rng = Rng::new(cfg.store.seed);
        let sae = TrainingSae::new(&cfg.sae, &mut rng, &device)?;
        let adam = Adam::new(
            &sae.params.vars,
            cfg.adam_beta1,
            cfg.adam_beta2,
            cfg.adam_eps,
        );
        let lr_scheduler = LrScheduler::new(
            &cfg.lr_scheduler_name,
            cfg.lr,
            cfg.lr_warm_up_steps,
            cfg.lr_decay_steps,
            cfg.total_training_steps(),
            cfg.lr_end_value(),
            cfg.n_restart_cycles,
        )?;
        let coefficients = sae
            .arch
            .coefficients(&cfg.sae)
            .into_iter()
            .map(|c| {
                (
                    c.name.clone(),
                    CoefficientScheduler::new(c.warm_up_steps, c.value),
                )
            })
            .collect();
        let d_sae = cfg.sae.d_sae;
        let total = cfg.training_tokens;
        let checkpoint_thresholds = if cfg.n_checkpoints > 0 {
            let stride = total.div_ceil(cfg.n_checkpoints as u64 + 1).max(1);
            (0..total).step_by(stride as usize).skip(1).collect()
        } else {
            vec![]
        };
        let out_dir = out_dir.or_else(|| cfg.output_path.as_ref().map(PathBuf::from));
        Ok(Trainer {
            cfg: cfg.clone(),
            sae,
            adam,
            lr_scheduler,
            coefficients,
            n_training_steps: 0,
            n_training_samples: 0,
            act_freq_scores: vec![0.0; d_sae],
            n_forward_passes_since_fired: vec![0.0; d_sae],
            n_frac_active_samples: 0,
            scaling_factor: None,
            target_scaling_factor: None,
            rng,
            setup_done: false,
            out_dir,
            checkpoint_thresholds,
            last_metrics: vec![],
            device,
        })
    }

    /// The run folder, if any.
    pub fn out_dir(&self) -> Option<&Path> {
        self.out_dir.as_deref()
    }

    /// Per-latent dead mask (`n_forward_passes_since_fired > dead_feature_window`).
    pub fn dead_mask(&self) -> Vec<bool> {
        let w = self.cfg.dead_feature_window as f32;
        self.n_forward_passes_since_fired
            .iter()
            .map(|n| *n > w)
            .collect()
    }

    /// `act_freq_scores / n_frac_active_samples`.
    pub fn feature_sparsity(&self) -> Vec<f32> {
        let n = self.n_frac_active_samples as f32;
        self.act_freq_scores.iter().map(|a| a / n).collect()
    }

    fn coefficient_values(&self) -> HashMap<String, f64> {
        self.coefficients
            .iter()
            .map(|(n, s)| (n.clone(), s.value()))
            .collect()
    }

    fn scale(&self, x: Tensor) -> Result<Tensor> {
        Ok(match self.scaling_factor {
            Some(s) => x.affine(s, 0.0)?,
            None => x,
        })
    }

    /// A transcoder's raw target batch in training units (× `target_scaling_factor`).
    pub fn scale_target(&self, y: &Tensor) -> Result<Tensor> {
        let y = y.to_dtype(DType::F32)?;
        Ok(match self.target_scaling_factor {
            Some(s) => y.affine(s, 0.0)?,
            None => y,
        })
    }

    /// The norm estimate (`expected_average_only_in`) and `b_dec` init.
    pub fn setup(&mut self, source: &mut dyn ActivationSource) -> Result<()> {
        if self.setup_done {
            return Ok(());
        }
        if source.d_in() != self.cfg.sae.d_in {
            return Err(Error::Config(format!(
                "the activation source gives d_in = {}, the SAE config says d_in = {}",
                source.d_in(),
                self.cfg.sae.d_in
            )));
        }
        let bs = self.cfg.store.train_batch_size_tokens;
        if self.cfg.sae.normalize_activations == "expected_average_only_in" {
            let mut est = NormEstimate::default();
            for _ in 0..self.cfg.n_batches_for_norm_estimate {
                est.add(&source.next_batch(bs)?)?;
            }
            self.scaling_factor = Some(est.scaling_factor());
        }
        if self.cfg.b_dec_init_method != BDecInit::Zeros {
            let b = self.scale(source.next_batch(bs)?)?;
            self.init_b_dec(&b)?;
        }
        self.setup_done = true;
        Ok(())
    }

    /// `b_dec_init_method` (`mean` or `geometric_median`; `zeros` leaves `b_dec`) from one batch
    /// of what the decoder reconstructs (scaled activations for SAEs; targets `[n, d_out]` for
    /// transcoders).
    pub fn init_b_dec(&mut self, batch: &Tensor) -> Result<()> {
        let b = batch.to_dtype(DType::F32)?;
        let v = match self.cfg.b_dec_init_method {
            BDecInit::Zeros => return Ok(()),
            BDecInit::Mean => b.mean(0)?,
            BDecInit::GeometricMedian => {
                Tensor::from_vec(ops::geometric_median(&b)?, b.dim(1)?, &self.device)?
            }
        };
        self.sae.params.var("b_dec")?.set(&v.contiguous()?)?;
        Ok(())
    }

    /// One training step on a raw activation batch (SAELens's `step`): returns the metrics
    /// when this is a logging step (every `log_every_n_steps`), else an empty list. Does not
    /// advance `n_training_steps` (the caller does, after logging/checkpointing).
    pub fn step(&mut self, batch: &Tensor, want_metrics: bool) -> Result<Metrics> {
        self.step_with_target(batch, None, want_metrics)
    }

    /// [`Trainer::step`] with a separate target (transcoders: `batch` is the input `[n, d_in]`,
    /// `target` the output hook's activations `[n, d_out]`; `None`: the input, an SAE).
    pub fn step_with_target(
        &mut self,
        batch: &Tensor,
        target: Option<&Tensor>,
        want_metrics: bool,
    ) -> Result<Metrics> {
        let n = batch.dim(0)?;
        self.n_training_samples += n as u64;
        let x = self.scale(batch.to_dtype(DType::F32)?)?;
        let y = match target {
            Some(t) => self.scale_target(t)?,
            None => x.clone(),
        };
        let dead = self.dead_mask();
        let coefs = self.coefficient_values();
        let (g, metrics) = match self.sae.fused_step_to(&x, &y, &dead, &coefs)? {
            Some(f) => {
                self.record_firing(&f.fire_counts);
                let extra = self.sae.arch.after_fused_step(f.min_active);
                let metrics = if want_metrics {
                    self.step_metrics(
                        f.loss,
                        &f.losses,
                        &extra,
                        &f.sae_out,
                        &y,
                        &f.fire_counts,
                        &dead,
                        n,
                    )?
                } else {
                    vec![]
                };
                (f.grads, metrics)
            }
            None => {
                let out = self.sae.training_forward_to(&x, &y, &dead, &coefs)?;
                let counts = ops::fire_counts(&out.feature_acts)?;
                self.record_firing(&counts);
                let metrics = if want_metrics {
                    let s = |t: &Tensor| -> Result<f64> {
                        Ok(t.to_dtype(DType::F64)?.to_scalar::<f64>()?)
                    };
                    let losses = out
                        .losses
                        .iter()
                        .map(|(k, l)| Ok((k.clone(), s(l)?)))
                        .collect::<Result<Vec<_>>>()?;
                    let sae_out = out.sae_out.detach();
                    self.step_metrics(
                        s(&out.loss)?,
                        &losses,
                        &out.metrics,
                        &sae_out,
                        &y,
                        &counts,
                        &dead,
                        n,
                    )?
                } else {
                    vec![]
                };
                (grads_of(&self.sae.params.vars, &out.loss)?, metrics)
            }
        };
        let scale = match self.cfg.max_grad_norm {
            Some(m) => clip_grad_norm_coef(&g, m)?.1,
            None => 1.0,
        };
        self.adam
            .step(&self.sae.params.vars, &g, self.lr_scheduler.lr(), scale)?;
        self.lr_scheduler.step();
        for (_, s) in self.coefficients.iter_mut() {
            s.step();
        }
        Ok(metrics)
    }

    /// Firing bookkeeping (SAELens's `n_forward_passes_since_fired`, `act_freq_scores`).
    fn record_firing(&mut self, counts: &[f32]) {
        for ((nf, af), c) in self
            .n_forward_passes_since_fired
            .iter_mut()
            .zip(self.act_freq_scores.iter_mut())
            .zip(counts)
        {
            *nf += 1.0;
            if *c > 0.0 {
                *nf = 0.0;
            }
            *af += *c;
        }
        self.n_frac_active_samples += self.cfg.store.train_batch_size_tokens as u64;
    }

    fn full_window(&self) -> bool {
        self.n_training_steps > 0
            && self
                .n_training_steps
                .is_multiple_of(self.cfg.feature_sampling_window)
    }

    /// Train to the end, then write the final SAE (when there is an output folder).
    pub fn fit(&mut self, source: &mut dyn ActivationSource) -> Result<Sae> {
        self.fit_steps(source, None)?;
        self.inference_sae()
    }

    /// Train until `stop_at` steps are done (`None`: to the end, then the final save).
    /// Stopping early leaves the run folder exactly as a kill at that point would (the last
    /// periodic checkpoint, metrics so far).
    pub fn fit_steps(
        &mut self,
        source: &mut dyn ActivationSource,
        stop_at: Option<usize>,
    ) -> Result<FitStatus> {
        let total = self.cfg.total_training_steps();
        let bs = self.cfg.store.train_batch_size_tokens;
        if let Some(dir) = &self.out_dir {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
            let p = dir.join(RUNNER_CFG);
            if !p.exists() {
                let s = serde_json::to_string_pretty(&self.cfg.to_saelens_value())
                    .map_err(|e| json_err(&p, e))?;
                write_atomic(&p, s.as_bytes())?;
            }
        }
        self.setup(source)?;
        let pbar = self.progress_bar(total);
        let mut metrics_file = self.open_metrics()?;
        let ckpt_every = self.cfg.checkpoint_every_n_steps;
        let resample = self
            .cfg
            .resample_dead
            .clone()
            .filter(|r| r.every_n_steps > 0);
        let t0 = Instant::now();
        while self.n_training_steps < total {
            if stop_at.is_some_and(|s| self.n_training_steps >= s) {
                pbar.abandon();
                return Ok(FitStatus::Stopped);
            }
            self.start_step(&mut metrics_file)?;
            let batch = source.next_batch(bs)?;
            let is_log = self.is_log_step();
            let mut m = self.step(&batch, is_log)?;
            if let Some(r) = &resample {
                let s = self.n_training_steps + 1;
                if s.is_multiple_of(r.every_n_steps) && r.until_step.is_none_or(|u| s <= u) {
                    let n = self.resample_dead(source, r)?;
                    if is_log {
                        m.push(("sparsity/resampled".into(), n as f64));
                    }
                }
            }
            if is_log {
                pbar.set_message(logging::progress_message(&m));
            }
            self.finish_step(m, is_log, t0, &mut metrics_file)?;
            pbar.inc(1);
            if ckpt_every > 0 && self.n_training_steps.is_multiple_of(ckpt_every) {
                self.save_checkpoint(source)?;
            }
        }
        pbar.finish();
        drop(metrics_file);
        if self.out_dir.is_some() {
            // The end state, so that a kill during the final save resumes straight to it.
            self.save_checkpoint(source)?;
            if self.cfg.save_final_checkpoint {
                let base = match (&self.cfg.checkpoint_path, &self.out_dir) {
                    (Some(p), _) => PathBuf::from(p),
                    (_, Some(d)) => d.join("checkpoints"),
                    _ => unreachable!(),
                };
                self.save_inference_folder(
                    &base.join(format!("final_{}", self.n_training_samples)),
                )?;
            }
            self.save_final()?;
        }
        Ok(FitStatus::Finished)
    }

    // -----------------------------------------------------------------------------------
    // Checkpoints

    // -----------------------------------------------------------------------------------
    // Output
}

/// Train from a config on a source; the run folder is `cfg.output_path`.
pub fn train(cfg: &RunnerConfig, source: &mut dyn ActivationSource) -> Result<Sae> {
    let mut t = Trainer::new(cfg, None)?;
    t.fit(source)
}

/// Continue the run in `dir` (its `runner_cfg.json` and latest checkpoint); `source` must be
/// built from the same config (its state is restored from the checkpoint). With no checkpoint
/// the run restarts from the beginning, which gives the same result.
pub fn resume(dir: &Path, source: &mut dyn ActivationSource) -> Result<Sae> {
    let cfg = read_run_config(dir)?;
    // The config read back is refused here, not at a later step: say which file it came from.
    let p = dir.join(RUNNER_CFG);
    let mut t = Trainer::new(&cfg, Some(dir.to_path_buf())).map_err(|e| match e {
        Error::Config(m) => Error::Config(format!("{}: {m}", p.display())),
        Error::SaeConfig(m) => Error::SaeConfig(format!("{}: {m}", p.display())),
        e => e,
    })?;
    t.load_checkpoint(source)?;
    t.fit(source)
}

/// The config of a run folder (`runner_cfg.json`).
pub fn read_run_config(dir: &Path) -> Result<RunnerConfig> {
    let p = dir.join(RUNNER_CFG);
    RunnerConfig::from_file(&p)
}
