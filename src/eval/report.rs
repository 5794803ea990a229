//! The report [`super::run_evals`] returns: SAELens's `run_evals` groups and metric names,
//! plus feature statistics.
use super::metrics::{Histogram, WeightMetrics};
use serde::{Deserialize, Serialize};

/// KL-divergence metrics (SAELens's `model_behavior_preservation` group).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ModelBehaviorPreservation {
    /// KL score: (KL_zero_abl − KL_with_SAE) / KL_zero_abl (1 = SAE preserves the output
    /// distribution), SAELens `kl_div_score`.
    pub kl_div_score: f64,
    /// Mean per-token `KL(p_clean ‖ p_ablated)` with the SAE's hook zero-ablated, SAELens
    /// `kl_div_with_ablation`.
    pub kl_div_with_ablation: f64,
    /// Mean per-token `KL(p_clean ‖ p_SAE)` with the SAE spliced in (no error term), SAELens
    /// `kl_div_with_sae`.
    pub kl_div_with_sae: f64,
}

/// Next-token cross-entropy metrics (SAELens's `model_performance_preservation` group).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ModelPerformancePreservation {
    /// CE-loss score: (CE_zero_abl − CE_with_SAE) / (CE_zero_abl − CE_clean), SAELens
    /// `ce_loss_score` (1 = no loss increase from the SAE).
    pub ce_loss_score: f64,
    /// Mean next-token CE (nats) with the SAE's hook zero-ablated, SAELens
    /// `ce_loss_with_ablation`.
    pub ce_loss_with_ablation: f64,
    /// Mean next-token CE (nats) with the SAE spliced in (no error term), SAELens
    /// `ce_loss_with_sae`.
    pub ce_loss_with_sae: f64,
    /// Mean next-token CE (nats) of the unmodified model, SAELens `ce_loss_without_sae`.
    pub ce_loss_without_sae: f64,
}

/// Reconstruction metrics (SAELens's `reconstruction_quality` group).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ReconstructionQuality {
    /// Explained variance `1 − E‖x − x̂‖² / (E‖x‖² − ‖E x‖²)` over all evaluated tokens (f64
    /// accumulation), SAELens `explained_variance`.
    pub explained_variance: f64,
    /// Mean over tokens of `1 − ‖x − x̂‖² / ‖x − mean_batch x‖²`, SAELens
    /// `explained_variance_legacy`.
    pub explained_variance_legacy: f64,
    /// Mean over tokens of `Σ_d (x − x̂)²` (a sum over the width, not a mean), SAELens `mse`.
    pub mse: f64,
    /// Mean over tokens of `cos(x, x̂)`, SAELens `cossim`.
    pub cossim: f64,
}

/// Norm-shrinkage metrics (SAELens's `shrinkage` group).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Shrinkage {
    /// Mean over tokens of the input norm `‖x‖`, SAELens `l2_norm_in`.
    pub l2_norm_in: f64,
    /// Mean over tokens of the reconstruction norm `‖x̂‖`, SAELens `l2_norm_out`.
    pub l2_norm_out: f64,
    /// Mean over tokens of `‖x̂‖ / ‖x‖` (denominator 1 where `‖x‖ < 1e-4`), SAELens `l2_ratio`.
    pub l2_ratio: f64,
    /// `E‖x̂‖² / E⟨x, x̂⟩` per batch, averaged over batches (arXiv 2404.16014 eq. 10; 1 = no
    /// shrinkage), SAELens `relative_reconstruction_bias`.
    pub relative_reconstruction_bias: f64,
}

/// Sparsity metrics (SAELens's `sparsity` group).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Sparsity {
    /// Mean over tokens of the number of non-zero latents `#(f ≠ 0)`, SAELens `l0`.
    pub l0: f64,
    /// Mean over tokens of `Σ|f|` over latents, SAELens `l1`.
    pub l1: f64,
}

/// How many tokens the metrics saw (SAELens's `token_stats` group) and which ids were excluded.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct TokenStats {
    /// Rows × context of the batches used for CE/KL (SAELens's count, special tokens included).
    pub total_tokens_eval_reconstruction: usize,
    /// Rows × context of the batches used for the sparsity/variance metrics.
    pub total_tokens_eval_sparsity_variance: usize,
    /// Tokens that entered the sparsity/variance metrics (special tokens excluded).
    pub n_tokens_evaluated: usize,
    /// Token ids excluded from every metric (e.g. BOS / EOS / PAD; see
    /// [`EvalOptions::exclude_tokens`](super::EvalOptions::exclude_tokens)).
    pub excluded_token_ids: Vec<u32>,
}

/// Density summary over the latents.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct FeatureStats {
    /// Number of latents (the SAE's `d_sae`).
    pub d_sae: usize,
    /// Latents that never fired on the evaluated tokens.
    pub n_dead: usize,
    /// `n_dead / d_sae` (0 when `d_sae` is 0).
    pub dead_fraction: f64,
    /// Latents with density above `dense_threshold`.
    pub n_dense: usize,
    /// Density threshold for `n_dense`
    /// ([`EvalOptions::dense_threshold`](super::EvalOptions::dense_threshold); default 0.1).
    pub dense_threshold: f64,
    /// Latents with density below 1e-5 (dead latents included); JSON key `n_below_1e-5`.
    #[serde(rename = "n_below_1e-5")]
    pub n_below_1e_5: usize,
    /// Latents with density below 1e-6 (dead latents included); JSON key `n_below_1e-6`.
    #[serde(rename = "n_below_1e-6")]
    pub n_below_1e_6: usize,
    /// Mean of `log10(density + 1e-10)`.
    pub mean_log10_density: f64,
    /// Histogram of `log10(density + 1e-10)`.
    pub log10_density_histogram: Histogram,
}

/// Per-latent lists (SAELens's second return value of `run_evals`).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct FeatureMetrics {
    /// Per latent: fraction of evaluated tokens on which it fired (`#fired / #tokens`),
    /// SAELens `feature_density`.
    pub feature_density: Vec<f64>,
    /// Per latent: tokens fired / prompts with at least one firing, SAELens
    /// `consistent_activation_heuristic`; NaN (JSON `null`) for latents that never fired.
    pub consistent_activation_heuristic: Vec<f64>,
    /// Weight-based per-latent metrics (encoder norm, encoder/decoder cosine, encoder bias),
    /// flattened into this object in JSON.
    #[serde(flatten)]
    pub weights: WeightMetrics,
}

/// What [`run_evals`](super::run_evals) returns; groups left out were not computed.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct EvalReport {
    /// Hook the SAE reads from (its `hook_name`), e.g. `blocks.10.hook_resid_post`.
    pub sae_hook_name: String,
    /// SAE architecture (`standard`, `gated`, `jumprelu`, `topk`, ...).
    pub architecture: String,
    /// KL metrics; `None` unless [`EvalOptions::compute_kl`](super::EvalOptions::compute_kl).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_behavior_preservation: Option<ModelBehaviorPreservation>,
    /// CE-loss metrics; `None` unless
    /// [`EvalOptions::compute_ce_loss`](super::EvalOptions::compute_ce_loss).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_performance_preservation: Option<ModelPerformancePreservation>,
    /// Reconstruction metrics; `None` unless
    /// [`EvalOptions::compute_sparsity_variance`](super::EvalOptions::compute_sparsity_variance).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reconstruction_quality: Option<ReconstructionQuality>,
    /// Norm-shrinkage metrics; `None` unless
    /// [`EvalOptions::compute_sparsity_variance`](super::EvalOptions::compute_sparsity_variance).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shrinkage: Option<Shrinkage>,
    /// L0 / L1; `None` unless
    /// [`EvalOptions::compute_sparsity_variance`](super::EvalOptions::compute_sparsity_variance).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sparsity: Option<Sparsity>,
    /// Dead / dense latent counts and the log-density histogram; `None` when no
    /// sparsity/variance batch was run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub feature_stats: Option<FeatureStats>,
    /// Token counts and excluded ids.
    pub token_stats: TokenStats,
    /// Which tokens were evaluated (set by [`run_default_evals`](super::run_default_evals),
    /// `saescope eval`, or the caller).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dataset: Option<super::EvalDataset>,
    /// Per-latent lists; `None` unless
    /// [`EvalOptions::compute_featurewise`](super::EvalOptions::compute_featurewise).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub feature_metrics: Option<FeatureMetrics>,
}

impl EvalReport {
    /// The report as pretty-printed JSON (what `saescope eval` writes).
    pub fn to_json_pretty(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
    /// Read a report written by `saescope eval` or [`EvalReport::to_json_pretty`] (e.g. the
    /// shipped SAE's `eval.json`).
    pub fn load(path: impl AsRef<std::path::Path>) -> crate::error::Result<Self> {
        let p = path.as_ref();
        let text = std::fs::read_to_string(p).map_err(|e| crate::error::Error::io(p, e))?;
        serde_json::from_str(&text).map_err(|e| {
            crate::error::Error::Invalid(format!(
                "{}: not an eval report ({e}); write one with `saescope eval --sae DIR`",
                p.display()
            ))
        })
    }
}

impl std::fmt::Display for EvalReport {
    /// The headline metrics, one per line (groups that were not computed are left out).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "{} ({})", self.sae_hook_name, self.architecture)?;
        if let Some(s) = &self.sparsity {
            writeln!(f, "L0                       {:.1}", s.l0)?;
        }
        if let Some(r) = &self.reconstruction_quality {
            writeln!(
                f,
                "explained variance       {:.3} (legacy {:.3}), cos {:.3}",
                r.explained_variance, r.explained_variance_legacy, r.cossim
            )?;
        }
        if let Some(c) = &self.model_performance_preservation {
            writeln!(
                f,
                "CE clean / SAE / ablated {:.3} / {:.3} / {:.3}",
                c.ce_loss_without_sae, c.ce_loss_with_sae, c.ce_loss_with_ablation
            )?;
            writeln!(f, "CE-loss score            {:.4}", c.ce_loss_score)?;
        }
        if let Some(k) = &self.model_behavior_preservation {
            writeln!(f, "KL score                 {:.4}", k.kl_div_score)?;
        }
        if let Some(s) = &self.feature_stats {
            writeln!(f, "dead latents             {} of {}", s.n_dead, s.d_sae)?;
        }
        write!(
            f,
            "tokens evaluated         {}",
            self.token_stats.n_tokens_evaluated
        )
    }
}
