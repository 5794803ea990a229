//! Analyses built on the hooked model and SAEs (ARENA's SAE exercises): steering generation
//! with SAE latents and patch scoping (§1.6, §1.9); finding latents for a behaviour (§1.5) by
//! direct logit attribution, ablation and attribution patching; and the geometry of latents
//! (cosine similarity, nearest neighbours, feature splitting, PCA; §1.8); feature dashboards
//! (sae_vis, §1.3).
pub mod ablation;
pub mod autointerp;
pub mod circuits;
pub mod compare;
pub mod dashboard;
pub mod dla;
mod examples;
pub mod geometry;
pub mod gradients;
pub mod latent_map;
pub mod metric;
pub mod patch_scoping;
pub mod pca;
mod predictions;
mod sites;
pub mod steering;
mod top_latents;

pub use ablation::{
    ablation_effects, active_latents, reconstruct_from_latents, sae_acts, LatentAblation,
    LatentEffect,
};
pub use compare::{
    compare_attribution_ablation, pearson, plot_attribution_vs_ablation, spearman,
    AttributionVsAblation, LatentComparison,
};
pub use dashboard::types::LogitTable;
pub use dashboard::{
    feature_dashboards, feature_dashboards_with, feature_dashboards_with_progress, prompt_centric,
    DashboardConfig, DashboardInput, Dashboards, FeatureDashboard, LatentSelection, PromptView,
};
pub use dla::{
    effective_decoder, latent_dla, latent_dla_with, latent_logit_weights, latent_output_directions,
    top_k_latents, DlaOptions, LatentDla, TopBy,
};
pub use examples::{logit_table, token_latents, top_examples, TokenLatent, TopExample};
pub use geometry::{
    cross_decoder_cosine_similarity, decoder_cosine_similarity, decoder_pca, nearest_neighbours,
    nearest_neighbours_in, plot_cosine_similarity, plot_nearest_neighbours, plot_pca,
    unit_decoder_directions,
};
pub use gradients::{attribution_patching, get_cache_fwd_and_bwd, FwdBwdCache, LatentAttribution};
pub use latent_map::{
    adjusted_rand_index, hdbscan, trustworthiness, umap, umap_ab_params, HdbscanOptions, LatentMap,
    LatentMapOptions, LatentPoint, MapMetric, UmapInit, UmapOptions,
};
pub use metric::{Metric, MetricFn};
pub use patch_scoping::{
    generate_patch_scoping_explanation, patch_scoping_vector, PatchScopingOptions,
};
pub use pca::{symmetric_eigen, Pca};
pub use predictions::{next_token_table, prob_mass, NextTokenTable};
pub use steering::{
    add_steering_hook, compare_steering, generate_with_steering, steering_vector, SteerOptions,
    SteeringComparison,
};
pub use top_latents::{top_latents, LatentSummary};
