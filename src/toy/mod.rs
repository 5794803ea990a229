//! Toy models of superposition and toy SAEs (ARENA [1.3.1]; Anthropic's "Toy Models of
//! Superposition").
//!
//! - [`ToyModel`]: `x' = ReLU(WᵀW x + b)` over batched instances `W [inst, d_hidden, feats]`,
//!   with per-instance feature importance and feature probability, trained with Adam on the
//!   importance-weighted MSE.
//! - [`ToySae`]: an SAE on the toy model's hidden activations `h = W x` (or on any
//!   `[batch, inst, d_in]` source): standard (L1), gated (with its auxiliary loss) and JumpReLU
//!   (straight-through estimator with a rectangle kernel, L0 penalty) variants, tied or untied
//!   weights, decoder rows renormalised after every step, and simple / advanced (Anthropic-style)
//!   resampling of dead latents.
//! - [`SyntheticActivations`]: activations built from known ground-truth directions, and
//!   [`recovery_score`]: the mean over true features of the best cosine similarity with a
//!   decoder row.
//! - Plots ([`plot_features_in_2d`], [`plot_features_in_nd`], [`frac_active_plot`]) as
//!   [`crate::viz::Svg`].
//!
//! ```no_run
//! # fn main() -> saescope::Result<()> {
//! use saescope::toy::*;
//! let cfg = ToyModelConfig { n_inst: 8, n_features: 5, d_hidden: 2, ..Default::default() };
//! let importance: Vec<f32> = (0..5).map(|i| 0.9f32.powi(i)).collect();
//! let probs: Vec<f32> = (0..8).map(|i| 50f32.powf(-(i as f32) / 7.0)).collect();
//! let mut model = ToyModel::new(cfg, &importance, &probs, 0)?;
//! model.optimize(&TrainOptions { steps: 5000, ..Default::default() })?;
//! plot_features_in_2d(&model.w()?, Some(&importance), "superposition")?.save("toy.svg")?;
//!
//! // A toy SAE on instance 7's hidden activations (16 SAE instances), with resampling.
//! let mut base = model.replicate_instance(7, 16, 1)?;
//! let cfg = ToySaeConfig { n_inst: 16, d_in: 2, d_sae: 5, ..Default::default() };
//! let mut sae = ToySae::new(cfg, 0)?;
//! let opts = SaeTrainOptions { steps: 20_000, resample_method: Some(ResampleMethod::Advanced), ..Default::default() };
//! let log = sae.optimize(&mut |b| base.hidden_batch(b), &opts)?;
//! frac_active_plot(&log, 0, 5, "fraction active")?.save("frac.svg")?;
//!
//! // Ground truth: 32 features in 16 dims, each on 3% of the time.
//! let mut data = SyntheticActivations::new(32, 16, 0.03, 0)?;
//! let cfg = ToySaeConfig { n_inst: 1, d_in: 16, d_sae: 64, sparsity_coeff: 0.02, ..Default::default() };
//! let mut sae = ToySae::new(cfg, 0)?;
//! sae.optimize(&mut |b| data.generate_instances(b, 1), &SaeTrainOptions { steps: 3000, lr: 1e-2, ..Default::default() })?;
//! let score = recovery_score(data.features(), &sae.w_dec_normalized()?.squeeze(0)?)?;
//! # let _ = score;
//! # Ok(()) }
//! ```
mod geometry;
mod model;
mod plot;
mod sae;
mod synthetic;

pub use crate::train::synthetic::recovery_score;
pub use geometry::{feature_geometry, FeatureGeometry};
pub use model::{compute_dimensionality, ToyModel, ToyModelConfig, TrainOptions};
pub use plot::{frac_active_plot, plot_features_in_2d, plot_features_in_nd};
pub use sae::{
    ResampleMethod, SaeTrainOptions, ToySae, ToySaeArch, ToySaeConfig, ToySaeLog, ToySaeLoss,
};
pub use synthetic::SyntheticActivations;
