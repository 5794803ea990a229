//! The hooked model: TL-exact transformer, its configs, loaders and weight processing.
mod accessors;
pub(crate) mod blocks;
mod cache;
pub mod config;
mod gemma2;
mod generate;
mod gguf;
mod gpt2;
mod hooked;
pub mod hub;
mod kernels;
mod kv_cache;
mod linear;
mod llama;
mod load;
mod memory;
mod partial;
mod processing;
mod run;
pub(crate) mod sampling;
mod tokens;
pub(crate) mod weights;

pub use cache::{ActivationCache, Resid};
pub use config::{
    ActFn, Architecture, AttnType, ModelConfig, Normalization, Positional, Processing,
};
pub use generate::Generation;
pub use hooked::HookedModel;
pub use kv_cache::KvCache;
pub(crate) use linear::{FrozenNorm, LinearBlock};
pub use load::default_data_dir;
pub use memory::release_memory;
pub use run::{Prompt, Run, SaeRunOptions};
pub use sampling::GenerateOptions;
pub use tokens::TestPromptResult;

use candle_core::Device;
use std::path::PathBuf;

/// How to load a model: TL's processing switches, the hub settings, the device.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    /// Which of TL's weight-processing steps to apply (all on by default, as `from_pretrained`).
    pub processing: Processing,
    /// Hub cache directory; None → hf-hub's default (honours `HF_HOME` / `HF_HUB_CACHE`).
    pub hub_cache_dir: Option<PathBuf>,
    /// Hub endpoint; None → `HF_ENDPOINT` or hf-hub's default.
    pub hub_endpoint: Option<String>,
    /// Resolve only from the cache; None → the `HF_HUB_OFFLINE` environment variable.
    pub offline: Option<bool>,
    /// Hub revision; None → `main`.
    pub revision: Option<String>,
    /// Device to load the weights onto (default CPU).
    pub device: Device,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            processing: Processing::default(),
            hub_cache_dir: None,
            hub_endpoint: None,
            offline: None,
            revision: None,
            device: Device::Cpu,
        }
    }
}

impl LoadOptions {
    /// TL's `from_pretrained_no_processing`.
    pub fn no_processing() -> Self {
        LoadOptions {
            processing: Processing::none(),
            ..Default::default()
        }
    }
}
