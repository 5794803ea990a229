//! SAE training (SAELens 6.x semantics): [`run`] trains what a [`config::RunnerConfig`]
//! describes; this file also holds the contract between activation sources and the trainer.
use crate::error::Result;
use candle_core::Tensor;
use std::collections::HashMap;

/// Where training activations come from: a live model pass through a mixing buffer, an
/// on-disk activation cache, or synthetic data.
pub trait ActivationSource {
    /// Width of the activations.
    fn d_in(&self) -> usize;
    /// The next training batch `[n, d_in]` (f32, on the CPU).
    fn next_batch(&mut self, n: usize) -> Result<Tensor>;
    /// Everything needed to continue exactly where this source is (for checkpoints).
    fn state(&self) -> Result<HashMap<String, Tensor>>;
    /// Continue from a saved `state`.
    fn restore(&mut self, state: &HashMap<String, Tensor>) -> Result<()>;
}
pub mod act_cache;
pub mod activations;

// The trainer (SAELens's SAETrainer and training SAEs).
pub mod arch;
pub(crate) mod batcher;
pub mod config;
mod metrics_log;
pub(crate) mod mixing;
pub mod optim;
pub(crate) mod plots;
mod run;
pub(crate) mod sparse;
mod store_config;
pub mod synthetic;
pub mod trainer;
pub mod transcoders;

pub use metrics_log::MetricsLog;
pub use run::{run, source_for};
pub use transcoders::{resume_transcoders, run_transcoders, TranscodersConfig};
