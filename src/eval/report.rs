//! The report [`super::run_evals`] returns: SAELens's `run_evals` groups and metric names,
//! plus feature statistics.
use super::metrics::{Histogram, WeightMetrics};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ModelBehaviorPreservation {
    pub kl_div_score: f64,
    pub kl_div_with_ablation: f64,
    pub kl_div_with_sae: f64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ModelPerformancePreservation {
    pub ce_loss_score: f64,
    pub ce_loss_with_ablation: f64,
    pub ce_loss_with_sae: f64,
    pub ce_loss_without_sae: f64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ReconstructionQuality {
    pub explained_variance: f64,
    pub explained_variance_legacy: f64,
    pub mse: f64,
    pub cossim: f64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Shrinkage {
    pub l2_norm_in: f64,
    pub l2_norm_out: f64,
    pub l2_ratio: f64,
    pub relative_reconstruction_bias: f64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Sparsity {
    pub l0: f64,
    pub l1: f64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct TokenStats {
    /// Rows × context of the batches used for CE/KL (SAELens's count, special tokens included).
    pub total_tokens_eval_reconstruction: usize,
    /// Rows × context of the batches used for the sparsity/variance metrics.
    pub total_tokens_eval_sparsity_variance: usize,
    /// Tokens that entered the sparsity/variance metrics (special tokens excluded).
    pub n_tokens_evaluated: usize,
    /// The excluded ids.
    pub excluded_token_ids: Vec<u32>,
}

/// Density summary over the latents.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct FeatureStats {
    pub d_sae: usize,
    /// Latents that never fired on the evaluated tokens.
    pub n_dead: usize,
    pub dead_fraction: f64,
    /// Latents with density above `dense_threshold`.
    pub n_dense: usize,
    pub dense_threshold: f64,
    #[serde(rename = "n_below_1e-5")]
    pub n_below_1e_5: usize,
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
    pub feature_density: Vec<f64>,
    /// NaN (JSON `null`) for latents that never fired.
    pub consistent_activation_heuristic: Vec<f64>,
    #[serde(flatten)]
    pub weights: WeightMetrics,
}

/// What [`run_evals`](super::run_evals) returns; groups left out were not computed.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct EvalReport {
    pub sae_hook_name: String,
    pub architecture: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_behavior_preservation: Option<ModelBehaviorPreservation>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_performance_preservation: Option<ModelPerformancePreservation>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reconstruction_quality: Option<ReconstructionQuality>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shrinkage: Option<Shrinkage>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sparsity: Option<Sparsity>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub feature_stats: Option<FeatureStats>,
    pub token_stats: TokenStats,
    /// Which tokens were evaluated (set by [`run_default_evals`](super::run_default_evals),
    /// `saescope eval`, or the caller).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dataset: Option<super::EvalDataset>,
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
