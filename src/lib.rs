//! saescope: sparse-autoencoder interpretability on real language models, in Rust.
//!
//! The foundation is [`HookedModel`], a TransformerLens-exact transformer with every TL hook
//! point, TL's default weight processing and an [`ActivationCache`].
//!
//! The README follows (its quickstart is compiled and run as a doctest).
#![doc = include_str!("../README.md")]
#![warn(missing_docs)]
pub mod analysis;
pub mod data;
mod dispatch;
pub mod error;
pub mod eval;
pub mod hooks;
pub mod llm;
pub mod model;
pub(crate) mod ops;
pub mod rng;
pub mod sae;
mod tensor_ext;
mod tensor_ids;
pub mod tokenizer;
pub mod toy;
pub mod train;
pub mod viz;

pub use candle_core::{DType, Device, IndexOp, Tensor, D};
pub use error::{Error, Result};
pub use hooks::{get_act_name, Ablation, ActName, HookFn, Hooks, NamesFilter, Pos};
pub use model::{
    ActivationCache, GenerateOptions, Generation, HookedModel, KvCache, LoadOptions, ModelConfig,
    Prompt, Resid, Run, SaeRunOptions,
};
pub use sae::{Sae, SaeConfig, SaeHook};
pub use tensor_ext::{TensorExt, TopK};
pub use tokenizer::{SpecialTokens, Tok};

/// What a notebook cell needs, in one import: `use saescope::prelude::*;`.
///
/// The model and its run builder, SAEs and their hook points, hooks and intervention hooks,
/// the cache, the tensor extension trait ([`TensorExt`]: `topk`, `log_softmax`, ...),
/// candle's `Tensor` / `Device` / `DType` / `IndexOp` / `D`, the plots of [`viz`], and the
/// crate's `Result` / `Error`.
///
/// The course's first cell (ARENA's SAELens cell, statement for statement): the five latents of
/// the shipped SAE most active at the last token of a prompt.
///
/// ```
/// use saescope::prelude::*;
/// let model = HookedModel::from_pretrained("smollm2")?;
/// let sae = Sae::shipped()?;            // or Sae::from_pretrained("gpt2-small-res-jb", "blocks.7.hook_resid_pre")?
/// let (_, cache) = model.run_with_cache_with_saes("The Golden Gate Bridge", &[&sae])?;
/// let acts = cache.get("blocks.15.hook_resid_post.hook_sae_acts_post")?;
/// println!("{:?}", acts.i((0, acts.dim(1)? - 1))?.topk(5)?.indices);
/// # Ok::<(), saescope::Error>(())
/// ```
pub mod prelude {
    pub use crate::analysis::autointerp::{
        gather_records, random_baseline, run_autointerp, top_tokens_baseline, AutointerpOptions,
        AutointerpReport, GatherOptions, LatentRecord, ScoreKind,
    };
    pub use crate::analysis::circuits::{
        attribute, de_embeddings, deembedding_table, extended_deembedding_table,
        extended_embedding, intervene, latent_to_latent_gradients, latent_to_latent_gradients_attn,
        latent_to_logit_gradients, pullback, pullback_influence, token_to_latent_gradients,
        AttributionGraph, Change, FeatureNode, Freeze, GradientOptions, GraphOptions, Intervention,
        LatentGradients, SparseActs, TranscoderSet,
    };
    pub use crate::analysis::dashboard::corpus_rows;
    pub use crate::analysis::latent_map::{
        adjusted_rand_index, hdbscan, trustworthiness, umap, HdbscanOptions, LatentMap,
        LatentMapOptions, MapMetric, UmapOptions,
    };
    pub use crate::analysis::{
        compare_attribution_ablation, compare_steering, feature_dashboards,
        generate_patch_scoping_explanation, latent_dla, logit_table, nearest_neighbours,
        next_token_table, plot_nearest_neighbours, prob_mass, prompt_centric, sae_acts,
        token_latents, top_examples, top_latents, AttributionVsAblation, Metric,
        PatchScopingOptions, SteerOptions, TopBy,
    };
    pub use crate::data::token_rows;
    pub use crate::error::{Error, Result};
    pub use crate::eval::{
        absorption, sparse_probing, AbsorptionOptions, AbsorptionReport, ProbingOptions,
        ProbingReport,
    };
    pub use crate::eval::{
        eval_transcoders, run_evals, EvalOptions, EvalReport, TranscoderEvalOptions,
    };
    pub use crate::hooks::{get_act_name, Ablation, Hooks, NamesFilter, Pos};
    pub use crate::llm::{ChatBackend, ChatMessage, ChatOptions, LocalChat, OpenAiClient};
    pub use crate::model::{
        ActivationCache, GenerateOptions, Generation, HookedModel, Prompt, Resid, SaeRunOptions,
    };
    pub use crate::sae::{Sae, SaeHook};
    pub use crate::tensor_ext::{TensorExt, TopK};
    pub use crate::tokenizer::SpecialTokens;
    pub use crate::train::{config::RunnerConfig, MetricsLog};
    pub use crate::viz::{self, heatmap, line_chart, scatter, Html, Svg};
    pub use candle_core::{DType, Device, IndexOp, Tensor, D};
    pub use serde_json::{self, json};
}

/// Re-exported so notebooks can name these types through saescope alone.
pub use {candle_core, plotters, serde_json, tokenizers};
