//! saescope: sparse-autoencoder interpretability on real language models, in Rust.
//!
//! The foundation is [`HookedModel`], a TransformerLens-exact transformer with every TL hook
//! point, TL's default weight processing and an [`ActivationCache`].
//!
//! The README follows (its quickstart is compiled and run as a doctest).
#![doc = include_str!("../README.md")]
pub mod analysis;
pub mod data;
pub mod error;
pub mod eval;
pub mod hooks;
pub mod model;
pub mod rng;
pub mod sae;
mod tensor_ids;
pub mod tokenizer;
pub mod toy;
pub mod train;
pub mod viz;

pub use candle_core::{DType, Device, IndexOp, Tensor, D};
pub use error::{Error, Result};
pub use hooks::{get_act_name, ActName, ActivationCache, HookFn, Hooks, NamesFilter};
pub use model::{
    GenerateOptions, Generation, HookedModel, KvCache, LoadOptions, ModelConfig, Prompt,
};
pub use sae::{Sae, SaeConfig};
pub use tokenizer::Tok;

/// Re-exported so notebooks can name these types through saescope alone.
pub use {candle_core, plotters, serde_json, tokenizers};
