//! The state of a multi-layer transcoder run, shared by the runner, its checkpoints and its
//! progress reports.
use super::TranscodersConfig;
use crate::train::batcher::LlmBatcher;
use crate::train::mixing::MixingBuffer;
use crate::train::trainer::Trainer;
use std::path::PathBuf;

/// A multi-layer transcoder run (see [`super`]): the model-side batcher, and per layer a
/// [`Trainer`] and a mixing buffer.
pub struct TranscoderRun {
    /// The run's config.
    pub cfg: TranscodersConfig,
    /// The layers trained, in the order of `trainers`.
    pub layers: Vec<usize>,
    /// One trainer per layer (each with its own folder `layer_LL/`).
    pub trainers: Vec<Trainer>,
    /// Seconds spent in model passes by this process.
    pub model_seconds: f64,
    /// Seconds spent in the trainers' steps by this process.
    pub train_seconds: f64,
    pub(super) dir: PathBuf,
    pub(super) batcher: LlmBatcher,
    pub(super) buffers: Vec<MixingBuffer>,
    pub(super) widths: Vec<(usize, usize)>,
}

impl TranscoderRun {
    /// Steps done (the same for every layer).
    pub fn step(&self) -> usize {
        self.trainers[0].n_training_steps
    }
    /// Steps of the whole run (`training_tokens / train_batch_size_tokens`).
    pub fn total_steps(&self) -> usize {
        self.trainers[0].cfg.total_training_steps()
    }
    /// Model forward passes run so far (over the whole run, resumed or not).
    pub fn model_batches(&self) -> u64 {
        self.batcher.n_batches
    }
}
