//! SAE circuits (ARENA [1.4.2]): gradients between latents of different SAEs, from tokens to
//! latents and from latents to logits; attribution graphs through transcoders (circuit-tracer).
pub mod graph;
mod jacobian;
pub mod latent_grads;
mod result;
pub mod sparse;
pub mod transcoder_tools;

pub use graph::{
    attribute, intervene, ActiveFeature, AttributionGraph, Change, FeatureNode, Freeze,
    GraphOptions, Intervention, PruneResult, TranscoderSet,
};
pub use latent_grads::{
    latent_to_latent_gradients, latent_to_latent_gradients_attn, latent_to_latent_gradients_with,
    latent_to_logit_gradients, latent_to_logit_gradients_with, token_to_latent_gradients,
    token_to_latent_gradients_with, GradientOptions, DEFAULT_GRADIENT_BATCH,
};
pub use result::LatentGradients;
pub use sparse::SparseActs;
pub use transcoder_tools::{
    de_embeddings, deembedding_table, extended_deembedding_table, extended_embedding, pullback,
    pullback_influence,
};
