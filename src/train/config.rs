//! The training config: SAELens's `LanguageModelSAERunnerConfig` (6.54.12 defaults, spec §E.1)
//! with its nested `sae:` training config, plus a few saescope fields (resumable checkpoints,
//! metrics, b_dec init, dead-latent resampling, a synthetic data source).
//!
//! Read from JSON; every field has SAELens's default, so a minimal config is
//!
//! ```json
//! { "sae": { "architecture": "topk", "d_in": 576, "d_sae": 4608, "k": 32 },
//!   "hook_name": "blocks.15.hook_resid_post", "training_tokens": 100000000,
//!   "output_path": "runs/topk" }
//! ```
use crate::error::{Error, Result};
use crate::sae::Architecture;
use crate::train::store_config::ActivationStoreConfig;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::path::Path;

/// The nested `sae:` config (SAELens's `*TrainingSAEConfig`). One flat struct for every training
/// architecture; fields that an architecture does not use are ignored (and left out of
/// [`TrainSaeConfig::to_saelens_value`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TrainSaeConfig {
    /// `standard`, `gated`, `jumprelu`, `topk` or `batchtopk`.
    pub architecture: Architecture,
    /// Width of the input activations (SAELens `d_in`; must be set).
    pub d_in: usize,
    /// Number of latents (SAELens `d_sae`; must be set).
    pub d_sae: usize,
    /// Transcoders: width of the output (the target hook, `hook_name_out`); `null` = an SAE,
    /// whose target is its input. A transcoder encodes its input without `b_dec` subtraction
    /// (`apply_b_dec_to_input` false) and decodes to `d_out` (see [`super::transcoders`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub d_out: Option<usize>,
    /// SAELens `dtype`; recorded only, training runs in float32 (default `float32`).
    pub dtype: String,
    /// SAELens `device`; recorded only, training runs on the CPU (default `cpu`).
    pub device: String,
    /// Subtract `b_dec` from the input before encoding (SAELens `apply_b_dec_to_input`; default
    /// true).
    pub apply_b_dec_to_input: bool,
    /// `none` or `expected_average_only_in` (estimated, then folded at the end).
    pub normalize_activations: String,
    /// `none` or `hook_z` (heads flattened), carried into the saved SAE (SAELens
    /// `reshape_activations`; default `none`).
    pub reshape_activations: String,
    /// Decoder rows are initialised to this norm (Anthropic's heuristic init); `null` keeps
    /// the kaiming-uniform rows.
    pub decoder_init_norm: Option<f64>,
    // standard / gated
    /// Sparsity coefficient λ of standard and gated SAEs (SAELens `l1_coefficient`; default 1.0).
    pub l1_coefficient: f64,
    /// `p` of the standard SAE's penalty `‖f ⊙ ‖W_dec‖‖_p` (SAELens `lp_norm`; default 1.0).
    pub lp_norm: f64,
    /// Steps of linear warm-up of `l1_coefficient` from 0 (SAELens `l1_warm_up_steps`; default 0).
    pub l1_warm_up_steps: usize,
    // jumprelu
    /// Initial JumpReLU threshold θ of every latent (SAELens `jumprelu_init_threshold`; default
    /// 0.01).
    pub jumprelu_init_threshold: f64,
    /// Width ε of the straight-through estimators' rectangle kernel (SAELens `jumprelu_bandwidth`;
    /// default 0.05).
    pub jumprelu_bandwidth: f64,
    /// `step`, `tanh` or `quadratic`.
    pub jumprelu_sparsity_loss_mode: String,
    /// Coefficient λ of the JumpReLU sparsity loss (SAELens `l0_coefficient`; default 1.0).
    pub l0_coefficient: f64,
    /// Steps of linear warm-up of `l0_coefficient` from 0 (SAELens `l0_warm_up_steps`; default 0).
    pub l0_warm_up_steps: usize,
    /// Coefficient of the dead latents' pre-activation loss `Σ ReLU(θ − h)·‖W_dec‖`; `null` = off
    /// (SAELens `pre_act_loss_coefficient`; default null).
    pub pre_act_loss_coefficient: Option<f64>,
    /// Scale `s` of the `tanh` sparsity loss `Σ tanh(s · f ⊙ ‖W_dec‖)` (SAELens
    /// `jumprelu_tanh_scale`; default 4.0).
    pub jumprelu_tanh_scale: f64,
    /// Also pass the straight-through gradients to the pre-activations `h` (SAELens
    /// `jumprelu_ste_to_input`; default false).
    pub jumprelu_ste_to_input: bool,
    /// Target L0 `T` of the `quadratic` sparsity loss, required there (SAELens `target_l0`; default
    /// null).
    pub target_l0: Option<f64>,
    // topk / batchtopk
    /// Latents per token (topk: an integer; batchtopk: the batch average, may be fractional).
    pub k: f64,
    /// SAELens `use_sparse_activations`; recorded only, the CPU top-k decode is always sparse
    /// (default false).
    pub use_sparse_activations: bool,
    /// Coefficient of the AuxK dead-latent loss of topk / batchtopk (SAELens
    /// `aux_loss_coefficient`; default 1.0).
    pub aux_loss_coefficient: f64,
    /// Scale pre-activations by `‖W_dec‖` before the top-k (and back when decoding) (SAELens
    /// `rescale_acts_by_decoder_norm`; default true).
    pub rescale_acts_by_decoder_norm: bool,
    /// EMA rate of batchtopk's threshold `θ ← (1 − lr) θ + lr · min(f > 0)` (SAELens
    /// `topk_threshold_lr`; default 0.01).
    pub topk_threshold_lr: f64,
}

impl Default for TrainSaeConfig {
    fn default() -> Self {
        TrainSaeConfig {
            architecture: Architecture::Standard,
            d_in: 0,
            d_sae: 0,
            d_out: None,
            dtype: "float32".into(),
            device: "cpu".into(),
            apply_b_dec_to_input: true,
            normalize_activations: "none".into(),
            reshape_activations: "none".into(),
            decoder_init_norm: Some(0.1),
            l1_coefficient: 1.0,
            lp_norm: 1.0,
            l1_warm_up_steps: 0,
            jumprelu_init_threshold: 0.01,
            jumprelu_bandwidth: 0.05,
            jumprelu_sparsity_loss_mode: "step".into(),
            l0_coefficient: 1.0,
            l0_warm_up_steps: 0,
            pre_act_loss_coefficient: None,
            jumprelu_tanh_scale: 4.0,
            jumprelu_ste_to_input: false,
            target_l0: None,
            k: 100.0,
            use_sparse_activations: false,
            aux_loss_coefficient: 1.0,
            rescale_acts_by_decoder_norm: true,
            topk_threshold_lr: 0.01,
        }
    }
}

impl TrainSaeConfig {
    /// Checks SAELens's `__post_init__` / `_validate_*` would make.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Config(format!("sae: {m}")));
        if self.d_in == 0 || self.d_sae == 0 {
            return bad(format!(
                "d_in and d_sae must be positive (got d_in = {}, d_sae = {})",
                self.d_in, self.d_sae
            ));
        }
        match self.architecture {
            Architecture::Standard
            | Architecture::Gated
            | Architecture::JumpRelu
            | Architecture::TopK
            | Architecture::BatchTopK => {}
            a => {
                return bad(format!(
                    "architecture `{a}` cannot be trained; use standard, gated, jumprelu, topk or batchtopk"
                ))
            }
        }
        if !matches!(
            self.normalize_activations.as_str(),
            "none" | "expected_average_only_in"
        ) {
            return bad(format!(
                "normalize_activations `{}` is not supported for training; use `none` or `expected_average_only_in`",
                self.normalize_activations
            ));
        }
        if !matches!(self.reshape_activations.as_str(), "none" | "hook_z") {
            return bad(format!(
                "reshape_activations `{}` is not supported; use `none` or `hook_z`",
                self.reshape_activations
            ));
        }
        if self.architecture == Architecture::JumpRelu {
            match self.jumprelu_sparsity_loss_mode.as_str() {
                "step" | "tanh" => {}
                "quadratic" => match self.target_l0 {
                    Some(t) if t > 0.0 && t <= self.d_sae as f64 => {}
                    _ => {
                        return bad(format!(
                            "jumprelu_sparsity_loss_mode = quadratic needs 0 < target_l0 <= d_sae ({}), got {:?}",
                            self.d_sae, self.target_l0
                        ))
                    }
                },
                m => return bad(format!("invalid jumprelu_sparsity_loss_mode `{m}` (step, tanh, quadratic)")),
            }
            if self.jumprelu_bandwidth <= 0.0 {
                return bad("jumprelu_bandwidth must be positive".into());
            }
        }
        if self.architecture == Architecture::TopK
            && (self.k < 1.0 || self.k.fract() != 0.0 || self.k > self.d_sae as f64)
        {
            return bad(format!(
                "topk needs an integer k in 1..=d_sae ({}), got {}",
                self.d_sae, self.k
            ));
        }
        if self.architecture == Architecture::BatchTopK && (self.k.is_nan() || self.k <= 0.0) {
            return bad(format!("batchtopk needs k > 0, got {}", self.k));
        }
        if self.architecture == Architecture::Standard && self.lp_norm <= 0.0 {
            return bad(format!("lp_norm must be positive, got {}", self.lp_norm));
        }
        self.validate_transcoder()
    }

    /// Field names SAELens's config class for this architecture has (besides the base ones).
    fn arch_fields(&self) -> &'static [&'static str] {
        match self.architecture {
            Architecture::Standard => &["l1_coefficient", "lp_norm", "l1_warm_up_steps"],
            Architecture::Gated => &["l1_coefficient", "l1_warm_up_steps"],
            Architecture::JumpRelu => &[
                "jumprelu_init_threshold",
                "jumprelu_bandwidth",
                "jumprelu_sparsity_loss_mode",
                "l0_coefficient",
                "l0_warm_up_steps",
                "pre_act_loss_coefficient",
                "jumprelu_tanh_scale",
                "jumprelu_ste_to_input",
                "target_l0",
            ],
            Architecture::TopK => &[
                "k",
                "use_sparse_activations",
                "aux_loss_coefficient",
                "rescale_acts_by_decoder_norm",
            ],
            Architecture::BatchTopK => &[
                "k",
                "use_sparse_activations",
                "aux_loss_coefficient",
                "rescale_acts_by_decoder_norm",
                "topk_threshold_lr",
            ],
            _ => &[],
        }
    }

    /// SAELens's `TrainingSAEConfig.to_dict()` layout: the base fields, this architecture's
    /// fields, and `architecture` (integer `k` for topk).
    pub fn to_saelens_value(&self) -> Value {
        let full = serde_json::to_value(self).unwrap_or(Value::Null);
        let Value::Object(full) = full else {
            return Value::Null;
        };
        let base = [
            "d_in",
            "d_sae",
            "d_out",
            "dtype",
            "device",
            "apply_b_dec_to_input",
            "normalize_activations",
            "reshape_activations",
            "decoder_init_norm",
        ];
        let mut m = Map::new();
        for k in base.iter().chain(self.arch_fields()) {
            if let Some(v) = full.get(*k) {
                m.insert(k.to_string(), v.clone());
            }
        }
        if self.architecture == Architecture::TopK {
            m.insert("k".into(), (self.k as u64).into());
        }
        m.insert("architecture".into(), self.architecture.as_str().into());
        Value::Object(m)
    }

    /// Fields of the training config that the inference SAE does not keep
    /// (`metadata.training_architecture_details`).
    pub fn training_details(&self) -> Value {
        let full = serde_json::to_value(self).unwrap_or(Value::Null);
        let mut m = Map::new();
        let mut keys: Vec<&str> = vec!["decoder_init_norm"];
        keys.extend(self.arch_fields().iter().filter(|k| {
            !(matches!(**k, "k" | "rescale_acts_by_decoder_norm")
                && self.architecture == Architecture::TopK)
        }));
        if self.architecture == Architecture::BatchTopK {
            keys.push("rescale_acts_by_decoder_norm");
        }
        for k in keys {
            if let Some(v) = full.get(k) {
                m.insert(k.into(), v.clone());
            }
        }
        Value::Object(m)
    }
}

/// How `b_dec` starts (SAELens ≤ 5 `b_dec_init_method`; 6.x always uses zeros).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BDecInit {
    /// All zeros (SAELens 6.x; the default).
    #[default]
    Zeros,
    /// The mean of one training batch.
    Mean,
    /// The geometric median of one training batch (Weiszfeld, maxiter 100, ftol 1e-20).
    GeometricMedian,
}

/// Anthropic-style resampling of dead latents (Towards Monosemanticity; ARENA's toy SAE).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ResampleConfig {
    /// Resample every this many steps (0 = never).
    pub every_n_steps: usize,
    /// Stop resampling after this step (`null` = never stop).
    pub until_step: Option<usize>,
    /// Batches used to pick new directions (inputs drawn with probability ∝ loss²).
    pub n_batches: usize,
    /// New encoder columns get `scale · mean ‖W_enc[:, alive]‖`.
    pub encoder_scale: f64,
}

impl Default for ResampleConfig {
    fn default() -> Self {
        ResampleConfig {
            every_n_steps: 0,
            until_step: None,
            n_batches: 1,
            encoder_scale: 0.2,
        }
    }
}

/// Synthetic activations with known ground-truth features (see [`super::synthetic`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SyntheticConfig {
    /// Number of true feature directions (random unit vectors in `d_in` dimensions).
    pub n_features: usize,
    /// Probability that a feature is active in a sample.
    pub feature_prob: f64,
    /// Active magnitudes are uniform in `[min_magnitude, max_magnitude]`.
    pub min_magnitude: f64,
    /// Upper bound of active magnitudes (default 1.5).
    pub max_magnitude: f64,
    /// Standard deviation of isotropic Gaussian noise added to each sample.
    pub noise_std: f64,
    /// A constant offset added to every sample (exercises b_dec); 0 = none.
    pub offset_norm: f64,
    /// Seed of the feature directions, the offset and the sample stream (default 0).
    pub seed: u64,
}

impl Default for SyntheticConfig {
    fn default() -> Self {
        SyntheticConfig {
            n_features: 256,
            feature_prob: 0.02,
            min_magnitude: 0.5,
            max_magnitude: 1.5,
            noise_std: 0.0,
            offset_norm: 0.0,
            seed: 0,
        }
    }
}

/// SAELens's `LanguageModelSAERunnerConfig` (spec §E.1), plus saescope's training options.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RunnerConfig {
    /// The nested SAE training config (SAELens `sae`).
    pub sae: TrainSaeConfig,
    // model / hook
    /// Model to train on (SAELens `model_name`; default `gelu-2l`).
    pub model_name: String,
    /// SAELens `model_class_name`; recorded in the SAE's metadata (default `HookedTransformer`).
    pub model_class_name: String,
    /// Model-loading kwargs; the processing flags (`fold_ln`, `center_writing_weights`, ...) are
    /// honoured (SAELens `model_from_pretrained_kwargs`; default null).
    pub model_from_pretrained_kwargs: Option<Map<String, Value>>,
    /// The fields SAELens's runner config shares with its activation store (`hook_name`,
    /// `hook_head_index`, `dataset_path`, `context_size`, `prepend_bos`, `seqpos_slice`,
    /// `exclude_special_tokens`, `sequence_separator_token`, `disable_concat_sequences`,
    /// `train_batch_size_tokens`, `store_batch_size_prompts`, `n_batches_in_buffer`,
    /// `activations_mixing_fraction`, `seed`; the SAE's initialisation uses `seed` too), typed,
    /// at the top level of the JSON as in SAELens.
    #[serde(flatten)]
    pub store: ActivationStoreConfig,
    // data
    /// SAELens `streaming`; recorded only (default true).
    pub streaming: bool,
    /// SAELens `is_dataset_tokenized`; recorded only, pre-tokenised records are detected per record
    /// (default true).
    pub is_dataset_tokenized: bool,
    /// Train from the activation cache at `cached_activations_path` instead of running the model
    /// (SAELens `use_cached_activations`; default false).
    pub use_cached_activations: bool,
    /// Activation cache directory (from `saescope cache-activations`) used with
    /// `use_cached_activations` (SAELens `cached_activations_path`).
    pub cached_activations_path: Option<String>,
    // batching
    /// Total training tokens; steps = `training_tokens / train_batch_size_tokens` (SAELens
    /// `training_tokens`; default 2 000 000).
    pub training_tokens: u64,
    // optimiser and schedules
    /// Peak learning rate (SAELens `lr`; default 3e-4).
    pub lr: f64,
    /// Adam β₁ (SAELens `adam_beta1`; default 0.9).
    pub adam_beta1: f64,
    /// Adam β₂ (SAELens `adam_beta2`; default 0.999).
    pub adam_beta2: f64,
    /// torch's Adam `eps` (SAELens never changes it).
    pub adam_eps: f64,
    /// `constant`, `cosineannealing` or `cosineannealingwarmrestarts`.
    pub lr_scheduler_name: String,
    /// Steps of linear learning-rate warm-up (SAELens `lr_warm_up_steps`; default 0).
    pub lr_warm_up_steps: usize,
    /// Final steps of linear learning-rate decay to `lr_end` (SAELens `lr_decay_steps`; default 0).
    pub lr_decay_steps: usize,
    /// `null`: `lr / 10`.
    pub lr_end: Option<f64>,
    /// Cycles of `cosineannealingwarmrestarts` (SAELens `n_restart_cycles`; default 1).
    pub n_restart_cycles: usize,
    /// Total gradient-norm clip (SAELens hard-codes 1.0); `null` disables clipping.
    pub max_grad_norm: Option<f64>,
    // sparsity tracking
    /// A latent is dead after more than this many steps without firing (SAELens
    /// `dead_feature_window`; default 1000).
    pub dead_feature_window: usize,
    /// Steps per feature-sparsity window (logged, then reset) (SAELens `feature_sampling_window`;
    /// default 2000).
    pub feature_sampling_window: usize,
    /// SAELens `dead_feature_threshold`; recorded only (default 1e-8).
    pub dead_feature_threshold: f64,
    /// SAELens `n_eval_batches`; recorded only (default 10).
    pub n_eval_batches: usize,
    /// Batches used to estimate `E‖x‖` for `expected_average_only_in` (SAELens
    /// `n_batches_for_norm_estimate`; default 1000).
    pub n_batches_for_norm_estimate: usize,
    // run
    /// SAELens `device`; recorded only, training runs on the CPU (default `cpu`).
    pub device: String,
    /// SAELens `dtype`; recorded only, training runs in float32 (default `float32`).
    pub dtype: String,
    /// SAELens-format SAE folders at evenly spaced points (`checkpoints/<n_samples>/`).
    pub n_checkpoints: usize,
    /// Folder of the `n_checkpoints` and final SAE folders; `null` = `<output_path>/checkpoints`
    /// (SAELens `checkpoint_path`).
    pub checkpoint_path: Option<String>,
    /// Also save the final SAE as `<checkpoint_path>/final_<n_samples>/` (SAELens
    /// `save_final_checkpoint`; default false).
    pub save_final_checkpoint: bool,
    /// The run folder: the final SAE (SAELens layout), `runner_cfg.json`, the resumable
    /// checkpoint, metrics and plots.
    pub output_path: Option<String>,
    /// Print status messages (resume notices, skipped plots) (SAELens `verbose`; default true).
    pub verbose: bool,
    // saescope
    /// How `b_dec` starts (SAELens ≤ 5 `b_dec_init_method`; default `zeros`).
    pub b_dec_init_method: BDecInit,
    /// Write the resumable checkpoint every this many steps (0 = only at the end).
    pub checkpoint_every_n_steps: usize,
    /// Append a metrics line to `metrics.jsonl` every this many steps (SAELens's
    /// `wandb_log_frequency`).
    pub log_every_n_steps: usize,
    /// Show a progress bar while training (default true).
    pub progress_bar: bool,
    /// Write SVG plots (loss curves, L0, explained variance, log-density histogram) at the end.
    pub plots: bool,
    /// Anthropic-style resampling of dead latents; `null` = off (SAELens 6.x never resamples).
    pub resample_dead: Option<ResampleConfig>,
    /// Train on synthetic activations instead of a model (tests, benchmarks, toy runs).
    pub synthetic: Option<SyntheticConfig>,
    /// dtype of the saved weights (`sae_weights.safetensors`): `float32` (`null`, the default),
    /// `float16` or `bfloat16`. `cfg.json` keeps `dtype: float32`, so loaders cast the weights
    /// back to float32 (training always runs in float32).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub save_weights_dtype: Option<String>,
}

impl Default for RunnerConfig {
    fn default() -> Self {
        RunnerConfig {
            sae: TrainSaeConfig::default(),
            model_name: "gelu-2l".into(),
            model_class_name: "HookedTransformer".into(),
            model_from_pretrained_kwargs: None,
            store: ActivationStoreConfig::default(),
            streaming: true,
            is_dataset_tokenized: true,
            use_cached_activations: false,
            cached_activations_path: None,
            training_tokens: 2_000_000,
            lr: 3e-4,
            adam_beta1: 0.9,
            adam_beta2: 0.999,
            adam_eps: 1e-8,
            lr_scheduler_name: "constant".into(),
            lr_warm_up_steps: 0,
            lr_decay_steps: 0,
            lr_end: None,
            n_restart_cycles: 1,
            max_grad_norm: Some(1.0),
            dead_feature_window: 1000,
            feature_sampling_window: 2000,
            dead_feature_threshold: 1e-8,
            n_eval_batches: 10,
            n_batches_for_norm_estimate: 1000,
            device: "cpu".into(),
            dtype: "float32".into(),
            n_checkpoints: 0,
            checkpoint_path: None,
            save_final_checkpoint: false,
            output_path: Some("output".into()),
            verbose: true,
            b_dec_init_method: BDecInit::Zeros,
            checkpoint_every_n_steps: 1000,
            log_every_n_steps: 10,
            progress_bar: true,
            plots: true,
            resample_dead: None,
            synthetic: None,
            save_weights_dtype: None,
        }
    }
}

impl RunnerConfig {
    /// Parse a JSON config.
    pub fn from_json_str(s: &str) -> Result<Self> {
        let v: Value = serde_json::from_str(s)
            .map_err(|e| Error::Config(format!("training config is not valid JSON: {e}")))?;
        Self::from_value(v)
    }

    /// Parse a config value (see [`RunnerConfig::from_json_str`]).
    pub fn from_value(v: Value) -> Result<Self> {
        let cfg = Self::parse_value(v)?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// [`RunnerConfig::from_value`] without the checks (a template, e.g. of per-layer
    /// transcoder configs, may leave widths and hook names to fill in).
    pub(crate) fn parse_value(v: Value) -> Result<Self> {
        let mut v = v;
        // SAELens's `to_dict` also writes derived / logger keys; accept and drop them.
        if let Value::Object(m) = &mut v {
            for k in [
                "logger",
                "tokens_per_buffer",
                "sae_lens_version",
                "sae_lens_training_version",
                "llm_device",
                "act_store_device",
                "hook_eval",
                "dataset_trust_remote_code",
                "use_chat_formatting",
                "from_pretrained_path",
                "prefetch_llm_batches",
                "autocast",
                "autocast_lm",
                "compile_llm",
                "llm_compilation_mode",
                "compile_sae",
                "sae_compilation_mode",
                "eval_batch_size_prompts",
                "resume_from_checkpoint",
                "model_kwargs",
            ] {
                m.remove(k);
            }
            if let Some(Value::Object(s)) = m.get_mut("sae") {
                s.remove("metadata");
            }
        }
        serde_json::from_value(v)
            .map_err(|e| Error::Config(format!("invalid training config: {e}")))
    }

    /// Read a JSON config file.
    pub fn from_file(path: &Path) -> Result<Self> {
        let s = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::from_json_str(&s).map_err(|e| match e {
            Error::Config(m) => Error::Config(format!("{}: {m}", path.display())),
            Error::SaeConfig(m) => Error::SaeConfig(format!("{}: {m}", path.display())),
            e => e,
        })
    }

    /// Check the whole config (the SAE's, batch size, step count, LR schedule, windows); the
    /// parsers call it.
    pub fn validate(&self) -> Result<()> {
        self.sae.validate()?;
        let bad = |m: String| Err(Error::Config(m));
        if self.store.train_batch_size_tokens == 0 {
            return bad("train_batch_size_tokens must be positive".into());
        }
        if self.total_training_steps() == 0 {
            return bad(format!(
                "training_tokens ({}) < train_batch_size_tokens ({}): no training steps",
                self.training_tokens, self.store.train_batch_size_tokens
            ));
        }
        match self.lr_scheduler_name.to_lowercase().as_str() {
            "constant" | "cosineannealing" | "cosineannealingwarmrestarts" => {}
            s => {
                return bad(format!(
                    "unknown lr_scheduler_name `{s}` (constant, cosineannealing, cosineannealingwarmrestarts)"
                ))
            }
        }
        let steps = self.total_training_steps();
        if self.lr_warm_up_steps + self.lr_decay_steps > steps {
            return bad(format!(
                "lr_warm_up_steps ({}) + lr_decay_steps ({}) exceed the {steps} training steps",
                self.lr_warm_up_steps, self.lr_decay_steps
            ));
        }
        if self.lr_decay_steps > 0 && self.lr_end_value() == 0.0 {
            return bad("Cannot have decay_steps with lr_end=0.0, this would decay from 0 to 0 and be a waste.".into());
        }
        if self.feature_sampling_window == 0 {
            return bad("feature_sampling_window must be positive".into());
        }
        self.validate_transcoder_run()?;
        if self.sae.normalize_activations == "expected_average_only_in"
            && self.n_batches_for_norm_estimate == 0
        {
            return bad(
                "n_batches_for_norm_estimate must be positive with expected_average_only_in".into(),
            );
        }
        Ok(())
    }

    /// `training_tokens // train_batch_size_tokens`.
    pub fn total_training_steps(&self) -> usize {
        (self.training_tokens / self.store.train_batch_size_tokens as u64) as usize
    }

    /// `lr_end`, defaulting to `lr / 10`.
    pub fn lr_end_value(&self) -> f64 {
        self.lr_end.unwrap_or(self.lr / 10.0)
    }

    /// SAELens's `to_dict()` (the `runner_cfg.json` layout), with saescope's extra fields.
    pub fn to_saelens_value(&self) -> Value {
        let mut v = serde_json::to_value(self).unwrap_or(Value::Null);
        if let Value::Object(m) = &mut v {
            m.insert("sae".into(), self.sae.to_saelens_value());
            m.insert("lr_end".into(), self.lr_end_value().into());
            m.insert(
                "model_from_pretrained_kwargs".into(),
                Value::Object(self.model_from_pretrained_kwargs_value()),
            );
        }
        v
    }

    /// `model_from_pretrained_kwargs`, defaulting as SAELens does.
    pub fn model_from_pretrained_kwargs_value(&self) -> Map<String, Value> {
        match &self.model_from_pretrained_kwargs {
            Some(m) => m.clone(),
            None if self.model_class_name == "HookedTransformer" => {
                let mut m = Map::new();
                m.insert("center_writing_weights".into(), false.into());
                m
            }
            None => Map::new(),
        }
    }
}
