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
use super::optim::{clip_grad_norm_coef, Adam, CoefficientScheduler, LrScheduler};
use super::rng::Rng;
use super::{ops, ActivationSource};
use crate::error::{Error, Result};
use crate::sae::{Sae, SaeConfig};
use candle_core::{DType, Device, Tensor, D};
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

pub const RUNNER_CFG: &str = "runner_cfg.json";
pub const CHECKPOINT: &str = "checkpoint.safetensors";
pub const METRICS: &str = "metrics.jsonl";

/// Scalar metrics of one step (what SAELens logs to wandb), by name.
pub type Metrics = Vec<(String, f64)>;

/// SAELens's `SAETrainer`.
pub struct Trainer {
    pub cfg: RunnerConfig,
    pub sae: TrainingSae,
    pub adam: Adam,
    pub lr_scheduler: LrScheduler,
    pub coefficients: Vec<(String, CoefficientScheduler)>,
    pub n_training_steps: usize,
    pub n_training_samples: u64,
    pub act_freq_scores: Vec<f32>,
    pub n_forward_passes_since_fired: Vec<f32>,
    pub n_frac_active_samples: u64,
    /// `expected_average_only_in`'s `√d_in / E‖x‖` (None until estimated, or when unused).
    pub scaling_factor: Option<f64>,
    pub rng: Rng,
    /// Whether the norm estimate and b_dec init have run.
    pub setup_done: bool,
    out_dir: Option<PathBuf>,
    checkpoint_thresholds: Vec<u64>,
    /// The last completed sparsity window's feature sparsity (for the histogram).
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
        let mut rng = Rng::new(cfg.seed);
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
            rng,
            setup_done: false,
            out_dir,
            checkpoint_thresholds,
            last_metrics: vec![],
            device,
        })
    }

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
        let bs = self.cfg.train_batch_size_tokens;
        if self.cfg.sae.normalize_activations == "expected_average_only_in" {
            let (mut total, mut count) = (0f64, 0usize);
            for _ in 0..self.cfg.n_batches_for_norm_estimate {
                let b = source.next_batch(bs)?;
                let norms = b.sqr()?.sum(D::Minus1)?.sqrt()?;
                total += norms.sum_all()?.to_dtype(DType::F64)?.to_scalar::<f64>()?;
                count += norms.elem_count();
            }
            let mean = total / count as f64;
            self.scaling_factor = Some((self.cfg.sae.d_in as f64).sqrt() / mean);
        }
        match self.cfg.b_dec_init_method {
            BDecInit::Zeros => {}
            m => {
                let b = self.scale(source.next_batch(bs)?)?;
                let v = if m == BDecInit::Mean {
                    b.mean(0)?
                } else {
                    Tensor::from_vec(ops::geometric_median(&b)?, self.cfg.sae.d_in, &self.device)?
                };
                self.sae.params.var("b_dec")?.set(&v.contiguous()?)?;
            }
        }
        self.setup_done = true;
        Ok(())
    }

    /// One training step on a raw activation batch (SAELens's `step`): returns the metrics
    /// when this is a logging step (every `log_every_n_steps`), else an empty list. Does not
    /// advance `n_training_steps` (the caller does, after logging/checkpointing).
    pub fn step(&mut self, batch: &Tensor, want_metrics: bool) -> Result<Metrics> {
        let n = batch.dim(0)?;
        self.n_training_samples += n as u64;
        let x = self.scale(batch.to_dtype(DType::F32)?)?;
        let dead = self.dead_mask();
        let coefs = self.coefficient_values();
        let (g, metrics) = match self.sae.fused_topk_step(&x, &dead)? {
            Some(f) => {
                self.record_firing(&f.fire_counts);
                let metrics = if want_metrics {
                    self.step_metrics(
                        f.loss,
                        &f.losses,
                        &[],
                        &f.sae_out,
                        &x,
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
                let out = self.sae.training_forward(&x, &dead, &coefs)?;
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
                        &x,
                        &counts,
                        &dead,
                        n,
                    )?
                } else {
                    vec![]
                };
                let grads = out.loss.backward()?;
                let g: Vec<Option<Tensor>> = self
                    .sae
                    .params
                    .vars
                    .iter()
                    .map(|v| grads.get(v.as_tensor()).cloned())
                    .collect();
                (g, metrics)
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
        self.n_frac_active_samples += self.cfg.train_batch_size_tokens as u64;
    }

    #[allow(clippy::too_many_arguments)]
    fn step_metrics(
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
    fn sparsity_log(&self) -> Metrics {
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
        let bs = self.cfg.train_batch_size_tokens;
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
        let log_every = self.cfg.log_every_n_steps.max(1);
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
            if self.full_window() {
                let log = self.sparsity_log();
                self.write_metrics(&mut metrics_file, &log)?;
                self.act_freq_scores.iter_mut().for_each(|a| *a = 0.0);
                self.n_frac_active_samples = 0;
            }
            let batch = source.next_batch(bs)?;
            let is_log = (self.n_training_steps + 1).is_multiple_of(log_every);
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
                m.push(("time/elapsed_s".into(), t0.elapsed().as_secs_f64()));
                self.write_metrics(&mut metrics_file, &m)?;
                pbar.set_message(progress_message(&m));
                self.last_metrics = m;
            }
            self.checkpoint_if_needed()?;
            self.n_training_steps += 1;
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

    fn progress_bar(&self, total: usize) -> indicatif::ProgressBar {
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

    fn open_metrics(&self) -> Result<Option<std::fs::File>> {
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

    fn write_metrics(&self, f: &mut Option<std::fs::File>, m: &Metrics) -> Result<()> {
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

    fn checkpoint_if_needed(&mut self) -> Result<()> {
        if let Some(&t) = self.checkpoint_thresholds.first() {
            if self.n_training_samples > t {
                self.checkpoint_thresholds.remove(0);
                let base = match (&self.cfg.checkpoint_path, &self.out_dir) {
                    (Some(p), _) => PathBuf::from(p),
                    (None, Some(d)) => d.join("checkpoints"),
                    (None, None) => return Ok(()),
                };
                let dir = base.join(self.n_training_samples.to_string());
                self.save_inference_folder(&dir)?;
            }
        }
        Ok(())
    }

    /// Anthropic-style resampling of dead latents: new directions from inputs drawn with
    /// probability ∝ (reconstruction loss)², decoder rows set to the unit input direction,
    /// encoder columns to it times `encoder_scale · mean ‖W_enc[:, alive]‖`, biases reset,
    /// Adam moments of those entries zeroed, their dead counters reset. Returns the count.
    pub fn resample_dead(
        &mut self,
        source: &mut dyn ActivationSource,
        rc: &super::config::ResampleConfig,
    ) -> Result<usize> {
        let dead = self.dead_mask();
        let dead_idx: Vec<usize> = (0..dead.len()).filter(|i| dead[*i]).collect();
        if dead_idx.is_empty() {
            return Ok(0);
        }
        let bs = self.cfg.train_batch_size_tokens;
        let mut xs = vec![];
        for _ in 0..rc.n_batches.max(1) {
            xs.push(self.scale(source.next_batch(bs)?.to_dtype(DType::F32)?)?);
        }
        let x = Tensor::cat(&xs, 0)?;
        let p = &self.sae.params;
        let centered = if self.cfg.sae.apply_b_dec_to_input {
            x.broadcast_sub(p.get("b_dec")?)?
        } else {
            x.clone()
        };
        let (f, _) = self.sae.arch.encode_with_hidden_pre(p, &centered)?;
        let recon = self.sae.arch.decode(p, &f.detach())?.detach();
        let loss = ops::to_vec_f32(&(recon - &x)?.sqr()?.sum(D::Minus1)?)?;
        let w: Vec<f64> = loss.iter().map(|l| (*l as f64).powi(2)).collect();
        let total: f64 = w.iter().sum();
        let (d_in, d_sae) = (self.cfg.sae.d_in, self.cfg.sae.d_sae);
        let xv = ops::to_vec_f32(&x)?;
        let mut w_enc = ops::to_vec_f32(p.get("W_enc")?)?;
        let mut w_dec = ops::to_vec_f32(p.get("W_dec")?)?;
        // mean encoder column norm over alive latents
        let col_norm = |w_enc: &[f32], i: usize| -> f64 {
            (0..d_in)
                .map(|r| (w_enc[r * d_sae + i] as f64).powi(2))
                .sum::<f64>()
                .sqrt()
        };
        let alive: Vec<usize> = (0..d_sae).filter(|i| !dead[*i]).collect();
        let mean_alive = if alive.is_empty() {
            1.0
        } else {
            alive.iter().map(|i| col_norm(&w_enc, *i)).sum::<f64>() / alive.len() as f64
        };
        for &i in &dead_idx {
            let j = if total > 0.0 {
                let mut u = self.rng.uniform() * total;
                let mut pick = w.len() - 1;
                for (k, wk) in w.iter().enumerate() {
                    if u < *wk {
                        pick = k;
                        break;
                    }
                    u -= wk;
                }
                pick
            } else {
                self.rng.below(w.len())
            };
            let v = &xv[j * d_in..(j + 1) * d_in];
            let nv = v
                .iter()
                .map(|a| (*a as f64).powi(2))
                .sum::<f64>()
                .sqrt()
                .max(1e-12);
            for r in 0..d_in {
                let u = v[r] as f64 / nv;
                w_dec[i * d_in + r] = u as f32;
                w_enc[r * d_sae + i] = (u * rc.encoder_scale * mean_alive) as f32;
            }
        }
        let names = self.sae.params.names.clone();
        for (pi, name) in names.iter().enumerate() {
            let var = &self.sae.params.vars[pi];
            let idx: Vec<usize> = match name.as_str() {
                "W_enc" => {
                    var.set(&Tensor::from_vec(
                        w_enc.clone(),
                        (d_in, d_sae),
                        &self.device,
                    )?)?;
                    dead_idx
                        .iter()
                        .flat_map(|i| (0..d_in).map(move |r| r * d_sae + i))
                        .collect()
                }
                "W_dec" => {
                    var.set(&Tensor::from_vec(
                        w_dec.clone(),
                        (d_sae, d_in),
                        &self.device,
                    )?)?;
                    dead_idx
                        .iter()
                        .flat_map(|i| (0..d_in).map(move |r| i * d_in + r))
                        .collect()
                }
                n => {
                    let Some((_, fresh)) = self
                        .sae
                        .arch
                        .latent_biases()
                        .into_iter()
                        .find(|(b, _)| *b == n)
                    else {
                        continue;
                    };
                    let mut b = ops::to_vec_f32(var.as_tensor())?;
                    for &i in &dead_idx {
                        b[i] = fresh as f32;
                    }
                    var.set(&Tensor::from_vec(b, d_sae, &self.device)?)?;
                    dead_idx.clone()
                }
            };
            self.adam.reset_entries(pi, &idx);
        }
        for &i in &dead_idx {
            self.n_forward_passes_since_fired[i] = 0.0;
        }
        Ok(dead_idx.len())
    }

    // -----------------------------------------------------------------------------------
    // Checkpoints

    /// Everything needed to continue exactly: one safetensors file, written atomically.
    pub fn save_checkpoint(&self, source: &dyn ActivationSource) -> Result<()> {
        let Some(dir) = &self.out_dir else {
            return Ok(());
        };
        let mut t: HashMap<String, Tensor> = HashMap::new();
        for (i, (name, var)) in self.sae.params.iter().enumerate() {
            t.insert(format!("param/{name}"), var.as_detached_tensor());
            let shape = var.shape().clone();
            t.insert(
                format!("adam_m/{name}"),
                Tensor::from_slice(&self.adam.exp_avg[i], shape.clone(), &self.device)?,
            );
            t.insert(
                format!("adam_v/{name}"),
                Tensor::from_slice(&self.adam.exp_avg_sq[i], shape, &self.device)?,
            );
        }
        for (k, v) in source.state()? {
            t.insert(format!("source/{k}"), v);
        }
        let d = self.cfg.sae.d_sae;
        t.insert(
            "state/act_freq_scores".into(),
            Tensor::from_slice(&self.act_freq_scores, d, &self.device)?,
        );
        t.insert(
            "state/n_forward_passes_since_fired".into(),
            Tensor::from_slice(&self.n_forward_passes_since_fired, d, &self.device)?,
        );
        let st = self.rng.state();
        let buffers: Map<String, Value> = self
            .sae
            .arch
            .buffers()
            .into_iter()
            // f64 values as their bits: serde_json's float parsing is not always exact
            .map(|(k, v)| (k, json!(v.to_bits())))
            .collect();
        let meta = json!({
            "n_training_steps": self.n_training_steps,
            "n_training_samples": self.n_training_samples,
            "n_frac_active_samples": self.n_frac_active_samples,
            "adam_step": self.adam.step,
            "scaling_factor": self.scaling_factor,
            "scaling_factor_bits": self.scaling_factor.map(f64::to_bits),
            "setup_done": self.setup_done,
            "rng": [st[0], st[1], st[2], st[3]],
            "buffers": buffers,
            "checkpoint_thresholds": self.checkpoint_thresholds,
            "architecture": self.cfg.sae.architecture.as_str(),
        });
        let bytes = meta.to_string().into_bytes();
        let n = bytes.len();
        t.insert(
            "state/json".into(),
            Tensor::from_vec(bytes, n, &self.device)?,
        );
        let p = dir.join(CHECKPOINT);
        let tmp = tmp_path(&p);
        candle_core::safetensors::save(&t, &tmp)?;
        std::fs::rename(&tmp, &p).map_err(|e| Error::io(&p, e))?;
        Ok(())
    }

    /// Load `checkpoint.safetensors` from the run folder into this trainer and `source`.
    /// Returns false (and changes nothing) when there is no checkpoint.
    pub fn load_checkpoint(&mut self, source: &mut dyn ActivationSource) -> Result<bool> {
        let Some(dir) = &self.out_dir else {
            return Ok(false);
        };
        let p = dir.join(CHECKPOINT);
        if !p.exists() {
            return Ok(false);
        }
        let t = candle_core::safetensors::load(&p, &self.device)?;
        let bad = |m: String| Error::SaeFile {
            path: p.clone(),
            reason: m,
        };
        let get = |k: &str| {
            t.get(k)
                .ok_or_else(|| bad(format!("checkpoint has no `{k}`")))
        };
        let meta: Value = serde_json::from_slice(&get("state/json")?.to_vec1::<u8>()?)
            .map_err(|e| bad(format!("bad state/json: {e}")))?;
        let names = self.sae.params.names.clone();
        for (i, name) in names.iter().enumerate() {
            let v = get(&format!("param/{name}"))?;
            self.sae.params.vars[i].set(&v.to_dtype(DType::F32)?)?;
            self.adam.exp_avg[i] = get(&format!("adam_m/{name}"))?.flatten_all()?.to_vec1()?;
            self.adam.exp_avg_sq[i] = get(&format!("adam_v/{name}"))?.flatten_all()?.to_vec1()?;
        }
        let src: HashMap<String, Tensor> = t
            .iter()
            .filter_map(|(k, v)| {
                k.strip_prefix("source/")
                    .map(|k| (k.to_string(), v.clone()))
            })
            .collect();
        source.restore(&src)?;
        self.act_freq_scores = get("state/act_freq_scores")?.to_vec1()?;
        self.n_forward_passes_since_fired = get("state/n_forward_passes_since_fired")?.to_vec1()?;
        let u = |k: &str| meta.get(k).and_then(|v| v.as_u64()).unwrap_or(0);
        self.n_training_steps = u("n_training_steps") as usize;
        self.n_training_samples = u("n_training_samples");
        self.n_frac_active_samples = u("n_frac_active_samples");
        self.adam.step = u("adam_step");
        self.scaling_factor = meta
            .get("scaling_factor_bits")
            .and_then(|v| v.as_u64())
            .map(f64::from_bits);
        self.setup_done = meta
            .get("setup_done")
            .and_then(|v| v.as_bool())
            .unwrap_or(true);
        if let Some(r) = meta.get("rng").and_then(|v| v.as_array()) {
            let s: Vec<u64> = r.iter().filter_map(|x| x.as_u64()).collect();
            if s.len() == 4 {
                self.rng = Rng::from_state([s[0], s[1], s[2], s[3]]);
            }
        }
        if let Some(b) = meta.get("buffers").and_then(|v| v.as_object()) {
            let b: HashMap<String, f64> = b
                .iter()
                .filter_map(|(k, v)| v.as_u64().map(|b| (k.clone(), f64::from_bits(b))))
                .collect();
            self.sae.arch.load_buffers(&b)?;
        }
        if let Some(c) = meta.get("checkpoint_thresholds").and_then(|v| v.as_array()) {
            self.checkpoint_thresholds = c.iter().filter_map(|x| x.as_u64()).collect();
        }
        // Schedulers: replay to the step.
        for _ in 0..self.n_training_steps {
            self.lr_scheduler.step();
        }
        for (_, s) in self.coefficients.iter_mut() {
            s.set_step(self.n_training_steps);
        }
        Ok(true)
    }

    // -----------------------------------------------------------------------------------
    // Output

    /// The inference SAE of the current state (SAELens's `save_inference_model`): the
    /// activation scaling factor folded in, topk norms folded, batchtopk → jumprelu, metadata
    /// with `l0` and `num_dead_features`, and the sparsity as `log10(sparsity + 1e-10)`.
    pub fn inference_sae(&self) -> Result<Sae> {
        let mut w = self.sae.params.snapshot();
        let mut arch_buf = self.sae.arch.buffers();
        let mut s_arch = super::arch::make_arch(&self.cfg.sae)?;
        let bufs: HashMap<String, f64> = arch_buf.drain(..).collect();
        s_arch.load_buffers(&bufs)?;
        if let Some(s) = self.scaling_factor {
            w.insert("W_enc".into(), w["W_enc"].affine(s, 0.0)?);
            w.insert("W_dec".into(), w["W_dec"].affine(1.0 / s, 0.0)?);
            w.insert("b_dec".into(), w["b_dec"].affine(1.0 / s, 0.0)?);
            s_arch.fold_activation_scale(s);
        }
        let (arch, w) = s_arch.inference_tensors(w)?;
        let c = &self.cfg;
        let sc = &c.sae;
        let mut meta = Map::new();
        meta.insert("model_name".into(), c.model_name.clone().into());
        meta.insert("hook_name".into(), c.hook_name.clone().into());
        meta.insert("hook_head_index".into(), json!(c.hook_head_index));
        meta.insert("context_size".into(), c.context_size.into());
        meta.insert("prepend_bos".into(), c.prepend_bos.into());
        meta.insert("seqpos_slice".into(), json!(c.seqpos_slice));
        meta.insert(
            "model_from_pretrained_kwargs".into(),
            Value::Object(c.model_from_pretrained_kwargs_value()),
        );
        meta.insert("dataset_path".into(), c.dataset_path.clone().into());
        meta.insert("model_class_name".into(), c.model_class_name.clone().into());
        meta.insert(
            "exclude_special_tokens".into(),
            c.exclude_special_tokens.clone(),
        );
        meta.insert(
            "sequence_separator_token".into(),
            c.sequence_separator_token.clone(),
        );
        meta.insert(
            "disable_concat_sequences".into(),
            c.disable_concat_sequences.into(),
        );
        meta.insert(
            "sae_lens_training_version".into(),
            format!("saescope {}", env!("CARGO_PKG_VERSION")).into(),
        );
        meta.insert(
            "training_architecture".into(),
            sc.architecture.as_str().into(),
        );
        meta.insert(
            "training_architecture_details".into(),
            sc.training_details(),
        );
        if self.n_frac_active_samples > 0 {
            let l0: f64 = self.feature_sparsity().iter().map(|v| *v as f64).sum();
            meta.insert("l0".into(), l0.into());
            meta.insert(
                "num_dead_features".into(),
                self.dead_mask().iter().filter(|d| **d).count().into(),
            );
        }
        let mut cfg = json!({
            "architecture": arch.as_str(),
            "d_in": sc.d_in,
            "d_sae": sc.d_sae,
            "dtype": "float32",
            "device": "cpu",
            "apply_b_dec_to_input": sc.apply_b_dec_to_input,
            "normalize_activations": if self.scaling_factor.is_some() { "none" } else { sc.normalize_activations.as_str() },
            "reshape_activations": sc.reshape_activations,
            "metadata": Value::Object(meta),
        });
        if arch == crate::sae::Architecture::TopK {
            cfg["k"] = json!(sc.k as u64);
            cfg["rescale_acts_by_decoder_norm"] = json!(sc.rescale_acts_by_decoder_norm);
        }
        let cfg = SaeConfig::from_json_value(cfg)?;
        Sae::from_config_and_tensors(cfg, w, &self.device)
    }

    /// `log10(feature_sparsity + 1e-10)` (what SAELens saves as `sparsity.safetensors`).
    pub fn log_feature_sparsity(&self) -> Vec<f32> {
        self.feature_sparsity()
            .iter()
            .map(|s| (s + 1e-10).log10())
            .collect()
    }

    /// Write the inference SAE as a SAELens folder (+ `sparsity.safetensors`).
    pub fn save_inference_folder(&self, dir: &Path) -> Result<()> {
        let sae = self.inference_sae()?;
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        sae.save_to_disk(dir)?;
        if self.n_frac_active_samples > 0 {
            let sp = Tensor::from_vec(
                self.log_feature_sparsity(),
                self.cfg.sae.d_sae,
                &self.device,
            )?;
            let m: HashMap<String, Tensor> = [("sparsity".to_string(), sp)].into();
            let p = dir.join("sparsity.safetensors");
            let tmp = tmp_path(&p);
            candle_core::safetensors::save(&m, &tmp)?;
            std::fs::rename(&tmp, &p).map_err(|e| Error::io(&p, e))?;
        }
        let p = dir.join(RUNNER_CFG);
        let s = serde_json::to_string_pretty(&self.cfg.to_saelens_value())
            .map_err(|e| json_err(&p, e))?;
        write_atomic(&p, s.as_bytes())?;
        Ok(())
    }

    /// The final save: the SAE folder in `out_dir`, then plots.
    pub fn save_final(&self) -> Result<()> {
        let Some(dir) = self.out_dir.clone() else {
            return Ok(());
        };
        // Build in a temporary folder, then move each file into place.
        let tmp = dir.join(format!(".final.tmp{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        self.save_inference_folder(&tmp)?;
        for e in std::fs::read_dir(&tmp).map_err(|e| Error::io(&tmp, e))? {
            let e = e.map_err(|e| Error::io(&tmp, e))?;
            let to = dir.join(e.file_name());
            std::fs::rename(e.path(), &to).map_err(|er| Error::io(&to, er))?;
        }
        let _ = std::fs::remove_dir_all(&tmp);
        if self.cfg.plots {
            if let Err(e) = super::plots::write_plots(&dir, &self.log_feature_sparsity()) {
                if self.cfg.verbose {
                    eprintln!("saescope train: plots skipped: {e}");
                }
            }
        }
        Ok(())
    }
}

fn progress_message(m: &Metrics) -> String {
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
    let mut t = Trainer::new(&cfg, Some(dir.to_path_buf()))?;
    t.load_checkpoint(source)?;
    t.fit(source)
}

/// The config of a run folder (`runner_cfg.json`).
pub fn read_run_config(dir: &Path) -> Result<RunnerConfig> {
    let p = dir.join(RUNNER_CFG);
    RunnerConfig::from_file(&p)
}
