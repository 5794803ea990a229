//! The multi-layer runner: one model pass per batch of context windows feeds one trainer per
//! layer, through that layer's small mixing buffer of `[input | target]` rows.
use super::progress::Progress;
use super::state::TranscoderRun;
use super::{layer_dir, TranscodersConfig, TRANSCODERS_CFG};
use crate::error::{Error, Result};
use crate::model::LoadOptions;
use crate::sae::Sae;
use crate::train::batcher::LlmBatcher;
use crate::train::config::BDecInit;
use crate::train::mixing::MixingBuffer;
use crate::train::trainer::{write_atomic, FitStatus, NormEstimate, Trainer, RUNNER_CFG};
use candle_core::{Device, Tensor};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

impl TranscoderRun {
    /// A fresh run: the model (`model_name` with `model_from_pretrained_kwargs`), the dataset,
    /// the hooks' widths (probed), and a freshly initialised trainer per layer.
    pub fn new(cfg: &TranscodersConfig) -> Result<Self> {
        let dir = cfg.output_dir()?;
        let model = Arc::new(cfg.runner.load_model()?);
        let n_layers = model.cfg().n_layers;
        let layers = cfg
            .layers
            .clone()
            .unwrap_or_else(|| (0..n_layers).collect());
        let mut seen = vec![false; n_layers];
        for &l in &layers {
            if l >= n_layers || std::mem::replace(&mut seen[l], true) {
                return Err(Error::Config(format!(
                    "layers {layers:?}: each layer once, below the model's {n_layers}"
                )));
            }
        }
        let fill = |t: &str, l: usize| t.replace("{layer}", &l.to_string());
        let st = &cfg.runner.store;
        let out = st.hook_name_out.clone().unwrap_or_default();
        let hooks: Vec<(String, Option<usize>)> = layers
            .iter()
            .flat_map(|&l| [(fill(&st.hook_name, l), None), (fill(&out, l), None)])
            .collect();
        let batcher = LlmBatcher::new(model, st, &hooks, &LoadOptions::default())?;
        let buffer_size = st.n_batches_in_buffer * st.training_context_size()?;
        let (mut trainers, mut buffers, mut widths) = (vec![], vec![], vec![]);
        for (i, &l) in layers.iter().enumerate() {
            let (di, dout) = (batcher.hooks()[2 * i].d_in, batcher.hooks()[2 * i + 1].d_in);
            let lc = cfg.layer_config(l, di, dout)?;
            trainers.push(Trainer::new(&lc, Some(layer_dir(&dir, l)))?);
            let mix = st.activations_mixing_fraction;
            buffers.push(MixingBuffer::new(
                di + dout,
                buffer_size,
                mix,
                lc.store.seed,
            ));
            widths.push((di, dout));
        }
        Ok(TranscoderRun {
            cfg: cfg.clone(),
            layers,
            trainers,
            model_seconds: 0.0,
            train_seconds: 0.0,
            dir,
            batcher,
            buffers,
            widths,
        })
    }

    /// The run in folder `dir` (its `transcoders_cfg.json`), continued from its latest
    /// checkpoint (from the start when there is none).
    pub fn resume(dir: &Path) -> Result<Self> {
        let p = dir.join(TRANSCODERS_CFG);
        let mut cfg = TranscodersConfig::from_file(&p)?;
        cfg.runner.output_path = Some(dir.display().to_string());
        let mut run = Self::new(&cfg)?;
        let resumed = run.load_checkpoint()?;
        if cfg.runner.verbose {
            let total = run.total_steps();
            match resumed {
                true => eprintln!(
                    "resuming {} at step {} of {total}",
                    dir.display(),
                    run.step()
                ),
                false => eprintln!(
                    "no checkpoint in {}: starting from the beginning",
                    dir.display()
                ),
            }
        }
        Ok(run)
    }

    /// The run folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
    /// Train to the end, then write every layer's transcoder; returns them in layer order.
    pub fn fit(&mut self) -> Result<Vec<Sae>> {
        self.fit_steps(None)?;
        self.trainers.iter().map(|t| t.inference_sae()).collect()
    }

    /// Train until `stop_at` steps are done (`None`: to the end, then the final save).
    /// Stopping early leaves the run folder as a kill at that point would.
    pub fn fit_steps(&mut self, stop_at: Option<usize>) -> Result<FitStatus> {
        self.write_configs()?;
        let total = self.total_steps();
        let bs = self.cfg.runner.store.train_batch_size_tokens;
        let ckpt_every = self.cfg.runner.checkpoint_every_n_steps;
        let mut files = self
            .trainers
            .iter()
            .map(|t| t.metrics_file())
            .collect::<Result<Vec<_>>>()?;
        let mut progress = Progress::new(&self.dir, total, self.step(), bs, &self.cfg.runner)?;
        self.setup()?;
        let t0 = Instant::now();
        while self.step() < total {
            if stop_at.is_some_and(|s| self.step() >= s) {
                progress.abandon();
                return Ok(FitStatus::Stopped);
            }
            let tm = Instant::now();
            self.fill(bs)?;
            self.model_seconds += tm.elapsed().as_secs_f64();
            let tt = Instant::now();
            let is_log = self.trainers[0].is_log_step();
            for (i, t) in self.trainers.iter_mut().enumerate() {
                t.start_step(&mut files[i])?;
                let (x, y) = split(self.buffers[i].take(bs), self.widths[i])?;
                let m = t.step_with_target(&x, Some(&y), is_log)?;
                t.finish_step(m, is_log, t0, &mut files[i])?;
            }
            self.train_seconds += tt.elapsed().as_secs_f64();
            progress.update(self, is_log)?;
            if ckpt_every > 0 && self.step().is_multiple_of(ckpt_every) {
                self.save_checkpoint()?;
            }
        }
        progress.finish();
        drop(files);
        // The end state, so that a kill during the final save resumes straight to it.
        self.save_checkpoint()?;
        for t in &self.trainers {
            t.save_final()?;
        }
        Ok(FitStatus::Finished)
    }

    /// `transcoders_cfg.json` and each layer's `runner_cfg.json`.
    fn write_configs(&self) -> Result<()> {
        let json = |v: &serde_json::Value, p: &Path| -> Result<()> {
            let s = serde_json::to_string_pretty(v).map_err(|e| Error::Json {
                path: p.to_path_buf(),
                source: e,
            })?;
            write_atomic(p, s.as_bytes())
        };
        std::fs::create_dir_all(&self.dir).map_err(|e| Error::io(&self.dir, e))?;
        json(&self.cfg.to_value(), &self.dir.join(TRANSCODERS_CFG))?;
        for t in &self.trainers {
            let d = t.out_dir().unwrap_or(&self.dir);
            std::fs::create_dir_all(d).map_err(|e| Error::io(d, e))?;
            json(&t.cfg.to_saelens_value(), &d.join(RUNNER_CFG))?;
        }
        Ok(())
    }

    /// With `expected_average_only_in`, the input's and the target's scaling factors
    /// (`√d / E‖·‖` each, from `n_batches_for_norm_estimate` batches); then
    /// `b_dec_init_method` from one batch of each layer's (scaled) targets. The batches are
    /// consumed, as SAELens's are.
    fn setup(&mut self) -> Result<()> {
        if self.trainers.iter().all(|t| t.setup_done) {
            return Ok(());
        }
        let bs = self.cfg.runner.store.train_batch_size_tokens;
        if self.cfg.runner.sae.normalize_activations == "expected_average_only_in" {
            let n = self.trainers.len();
            let mut est = vec![(NormEstimate::default(), NormEstimate::default()); n];
            for _ in 0..self.cfg.runner.n_batches_for_norm_estimate {
                self.fill(bs)?;
                for (i, (ex, ey)) in est.iter_mut().enumerate() {
                    let (x, y) = split(self.buffers[i].take(bs), self.widths[i])?;
                    ex.add(&x)?;
                    ey.add(&y)?;
                }
            }
            for (t, (ex, ey)) in self.trainers.iter_mut().zip(est) {
                t.scaling_factor = Some(ex.scaling_factor());
                t.target_scaling_factor = Some(ey.scaling_factor());
            }
        }
        if self.cfg.runner.b_dec_init_method != BDecInit::Zeros {
            self.fill(bs)?;
            for (i, t) in self.trainers.iter_mut().enumerate() {
                let (_, y) = split(self.buffers[i].take(bs), self.widths[i])?;
                let y = t.scale_target(&y)?;
                t.init_b_dec(&y)?;
            }
        }
        for t in self.trainers.iter_mut() {
            t.setup_done = true;
        }
        Ok(())
    }

    /// Make sure every layer's buffer can serve `bs` rows: run the model on the next
    /// context windows (all layers' hooks at once) until the buffers are refilled. The
    /// buffers stay in lockstep (same row counts), so layer 0's state decides for all.
    fn fill(&mut self, bs: usize) -> Result<()> {
        if self.buffers[0].available() >= bs {
            return Ok(());
        }
        for b in self.buffers.iter_mut() {
            b.reclaim(bs)?;
        }
        while self.buffers[0].wants_rows() {
            let raw = self.batcher.next_raw()?;
            for ((b, pair), &(di, dout)) in self
                .buffers
                .iter_mut()
                .zip(raw.acts.chunks(2))
                .zip(&self.widths)
            {
                let n = pair[0].len() / di;
                let mut rows = Vec::with_capacity(n * (di + dout));
                for r in 0..n {
                    rows.extend_from_slice(&pair[0][r * di..(r + 1) * di]);
                    rows.extend_from_slice(&pair[1][r * dout..(r + 1) * dout]);
                }
                b.push(&rows);
            }
        }
        for b in self.buffers.iter_mut() {
            b.mix_and_cut(bs);
        }
        Ok(())
    }
}

/// `[n, d_in + d_out]` pair rows → `(input [n, d_in], target [n, d_out])`.
fn split(rows: &[f32], (di, dout): (usize, usize)) -> Result<(Tensor, Tensor)> {
    let n = rows.len() / (di + dout);
    let t = Tensor::from_slice(rows, (n, di + dout), &Device::Cpu)?;
    Ok((
        t.narrow(1, 0, di)?.contiguous()?,
        t.narrow(1, di, dout)?.contiguous()?,
    ))
}

/// Train the transcoders `cfg` describes from scratch (an earlier run in its folder is
/// overwritten, as SAELens's runner does; `saescope train-transcoders` refuses and points to
/// `--resume`). Returns them in layer order.
pub fn run_transcoders(cfg: &TranscodersConfig) -> Result<Vec<Sae>> {
    let dir = cfg.output_dir()?;
    for stale in [dir.join(TRANSCODERS_CFG), dir.join(super::checkpoint::DIR)] {
        if stale.is_dir() {
            std::fs::remove_dir_all(&stale).map_err(|e| Error::io(&stale, e))?;
        } else if stale.exists() {
            std::fs::remove_file(&stale).map_err(|e| Error::io(&stale, e))?;
        }
    }
    TranscoderRun::new(cfg)?.fit()
}

/// Continue the transcoder run in `dir` from its latest checkpoint (the result equals an
/// uninterrupted run bit for bit). Returns the transcoders in layer order.
pub fn resume_transcoders(dir: &Path) -> Result<Vec<Sae>> {
    TranscoderRun::resume(dir)?.fit()
}
