//! SAE config: SAELens 6.x `cfg.json` (`SAEConfig.to_dict`), with SAELens's conversion of
//! pre-6.0 configs (`handle_config_defaulting` / `handle_pre_6_0_config`).
//!
//! Every loader (SAELens folders and the converted formats: Gemma Scope, sparsify,
//! dictionary_learning, ...) produces a JSON object first; [`SaeConfig::from_json_value`] turns
//! it into a typed config the same way SAELens does:
//!
//! 1. if neither `sae_lens_version` nor `metadata.sae_lens_version` says `>= 6.0.0-rc.0`, the
//!    pre-6.0 conversion runs: `hook_point → hook_name`, `hook_point_head_index →
//!    hook_head_index`, `activation_fn_str → activation_fn`; defaults `apply_b_dec_to_input =
//!    true`, `architecture = standard`, `prepend_bos = true`, `reshape_activations = hook_z` iff
//!    the hook name contains `hook_z`; `activation_fn == "topk"` with `activation_fn_kwargs.k`
//!    → architecture `topk` with that `k`; a boolean `normalize_activations` becomes
//!    `expected_average_only_in` / `none`, null becomes `none`; the metadata keys
//!    ([`LLM_METADATA_KEYS`]) move into `metadata`;
//! 2. the architecture's fields are read; other top-level keys (which SAELens drops) are kept
//!    in [`SaeConfig::extra`]. Unlike SAELens, a metadata key given at the top level of a 6.x
//!    config (e.g. a pretrained release's `neuronpedia_id` or `model_from_pretrained_kwargs`
//!    override) is moved into `metadata` instead of being dropped.
pub use super::config_legacy::{handle_config_defaulting, handle_pre_6_0_config, is_pre_6_0};
use crate::error::{Error, Result};
use candle_core::DType;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};
use std::path::Path;

/// The metadata keys SAELens moves out of the top level of pre-6.0 configs
/// (`LLM_METADATA_KEYS` in `pretrained_sae_loaders.py`).
pub const LLM_METADATA_KEYS: [&str; 17] = [
    "model_name",
    "hook_name",
    "model_class_name",
    "hook_head_index",
    "model_from_pretrained_kwargs",
    "prepend_bos",
    "exclude_special_tokens",
    "neuronpedia_id",
    "context_size",
    "seqpos_slice",
    "dataset_path",
    "sae_lens_version",
    "sae_lens_training_version",
    "hook_name_out",
    "hook_head_index_out",
    "hf_hook_name",
    "hf_hook_name_out",
];

/// The SAE architecture (`cfg.json`'s `architecture`).
///
/// `batchtopk` / `matryoshka_batchtopk` training checkpoints are accepted too: they are converted
/// on load to `jumprelu` with `threshold = topk_threshold · 1`, as SAELens's
/// `save_inference_model` does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Architecture {
    /// `standard`: `f = ReLU(x̃ W_enc + b_enc)` (SAELens `StandardSAE`).
    Standard,
    /// `gated`: `f = 1[π_gate > 0] · ReLU(π_mag)`, no `b_enc` (SAELens `GatedSAE`).
    Gated,
    /// `jumprelu` (alias `jump_relu`): `f = ReLU(h) · 1[h > θ]` (SAELens `JumpReLUSAE`).
    #[serde(rename = "jumprelu", alias = "jump_relu")]
    JumpRelu,
    /// `topk`: keep the `k` largest ReLU'd pre-activations per token (SAELens `TopKSAE`).
    #[serde(rename = "topk")]
    TopK,
    /// `abstopk`: keep the `k` pre-activations largest in absolute value, signs kept, no ReLU.
    #[serde(rename = "abstopk")]
    AbsTopK,
    /// `batchtopk` training checkpoint; converted to [`Architecture::JumpRelu`] on load.
    #[serde(rename = "batchtopk")]
    BatchTopK,
    /// `matryoshka_batchtopk` training checkpoint; converted to [`Architecture::JumpRelu`] on
    /// load.
    #[serde(rename = "matryoshka_batchtopk")]
    MatryoshkaBatchTopK,
    /// `transcoder`: ReLU encoder reading `hook_name`, decoder writing `hook_name_out`
    /// (SAELens `Transcoder`).
    Transcoder,
    /// `skip_transcoder`: a transcoder with a linear skip term `x W_skipᵀ` (SAELens
    /// `SkipTranscoder`).
    SkipTranscoder,
    /// `jumprelu_transcoder`: a transcoder with a JumpReLU activation (SAELens
    /// `JumpReLUTranscoder`).
    #[serde(rename = "jumprelu_transcoder")]
    JumpReluTranscoder,
    /// `jumprelu_skip_transcoder`: JumpReLU activation plus skip term (SAELens
    /// `JumpReLUSkipTranscoder`).
    #[serde(rename = "jumprelu_skip_transcoder")]
    JumpReluSkipTranscoder,
}

impl Architecture {
    /// SAELens's name for it.
    pub fn as_str(&self) -> &'static str {
        match self {
            Architecture::Standard => "standard",
            Architecture::Gated => "gated",
            Architecture::JumpRelu => "jumprelu",
            Architecture::TopK => "topk",
            Architecture::AbsTopK => "abstopk",
            Architecture::BatchTopK => "batchtopk",
            Architecture::MatryoshkaBatchTopK => "matryoshka_batchtopk",
            Architecture::Transcoder => "transcoder",
            Architecture::SkipTranscoder => "skip_transcoder",
            Architecture::JumpReluTranscoder => "jumprelu_transcoder",
            Architecture::JumpReluSkipTranscoder => "jumprelu_skip_transcoder",
        }
    }
    /// Every architecture name accepted in a config.
    pub fn all() -> &'static [Architecture] {
        &[
            Architecture::Standard,
            Architecture::Gated,
            Architecture::JumpRelu,
            Architecture::TopK,
            Architecture::AbsTopK,
            Architecture::BatchTopK,
            Architecture::MatryoshkaBatchTopK,
            Architecture::Transcoder,
            Architecture::SkipTranscoder,
            Architecture::JumpReluTranscoder,
            Architecture::JumpReluSkipTranscoder,
        ]
    }
    /// Parse a config's architecture name (surrounding whitespace ignored, `jump_relu` accepted);
    /// [`Error::SaeConfig`] listing the supported names otherwise.
    pub fn parse(s: &str) -> Result<Self> {
        let t = s.trim();
        Architecture::all()
            .iter()
            .copied()
            .find(|a| a.as_str() == t)
            .or_else(|| (t == "jump_relu").then_some(Architecture::JumpRelu))
            .ok_or_else(|| {
                Error::SaeConfig(format!(
                    "unknown or unsupported SAE architecture `{s}`; supported: {}",
                    Architecture::all()
                        .iter()
                        .map(|a| a.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })
    }
    /// Transcoders (`d_out`, `hook_name_out`, no `b_dec` subtraction).
    pub fn is_transcoder(&self) -> bool {
        matches!(
            self,
            Architecture::Transcoder
                | Architecture::SkipTranscoder
                | Architecture::JumpReluTranscoder
                | Architecture::JumpReluSkipTranscoder
        )
    }
    /// Top-k style configs (`k`, `rescale_acts_by_decoder_norm`).
    pub fn is_topk(&self) -> bool {
        matches!(
            self,
            Architecture::TopK
                | Architecture::AbsTopK
                | Architecture::BatchTopK
                | Architecture::MatryoshkaBatchTopK
        )
    }
}

impl std::fmt::Display for Architecture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `normalize_activations` (spec §A.3).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NormalizeActivations {
    /// Identity.
    #[default]
    None,
    /// Identity at inference: the training-time factor `√d_in / mean‖x‖` must be folded into
    /// the weights ([`crate::sae::Sae::fold_activation_norm_scaling_factor`]; `from_pretrained`
    /// does it with the directory's `norm_scaling_factor`).
    ExpectedAverageOnlyIn,
    /// `c = √d_in / ‖x‖` per token; in: `x·c`, out: `y/c`.
    ConstantNormRescale,
    /// `μ = mean(x)`, `σ = std(x−μ)` (unbiased); in: `(x−μ)/(σ+1e-5)`, out: `y·σ + μ`.
    LayerNorm,
}

impl NormalizeActivations {
    /// SAELens's name for it (`none`, `expected_average_only_in`, ...), as written in `cfg.json`.
    pub fn as_str(&self) -> &'static str {
        match self {
            NormalizeActivations::None => "none",
            NormalizeActivations::ExpectedAverageOnlyIn => "expected_average_only_in",
            NormalizeActivations::ConstantNormRescale => "constant_norm_rescale",
            NormalizeActivations::LayerNorm => "layer_norm",
        }
    }
}

impl<'de> Deserialize<'de> for NormalizeActivations {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        Ok(match &v {
            Value::Null | Value::Bool(false) => NormalizeActivations::None,
            Value::Bool(true) => NormalizeActivations::ExpectedAverageOnlyIn,
            Value::String(s) => match s.as_str() {
                "none" => NormalizeActivations::None,
                "expected_average_only_in" => NormalizeActivations::ExpectedAverageOnlyIn,
                "constant_norm_rescale" => NormalizeActivations::ConstantNormRescale,
                "layer_norm" => NormalizeActivations::LayerNorm,
                other => {
                    return Err(serde::de::Error::custom(format!(
                        "normalize_activations must be none, expected_average_only_in, layer_norm, \
                         or constant_norm_rescale; got `{other}`"
                    )))
                }
            },
            other => {
                return Err(serde::de::Error::custom(format!(
                    "normalize_activations must be a string, got {other}"
                )))
            }
        })
    }
}

/// `reshape_activations`: `hook_z` SAEs flatten `[..., n_heads, d_head]` to `[..., d_in]` before
/// `hook_sae_input` and restore the head dims after `norm_out`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReshapeActivations {
    /// `none`: the input is used as is.
    #[default]
    None,
    /// `hook_z`: flatten the per-head `[..., n_heads, d_head]` input to `[..., d_in]` and back.
    HookZ,
}

impl<'de> Deserialize<'de> for ReshapeActivations {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        match &v {
            Value::Null => Ok(ReshapeActivations::None),
            Value::String(s) if s == "none" => Ok(ReshapeActivations::None),
            Value::String(s) if s == "hook_z" => Ok(ReshapeActivations::HookZ),
            other => Err(serde::de::Error::custom(format!(
                "reshape_activations must be \"none\" or \"hook_z\", got {other}"
            ))),
        }
    }
}

/// SAELens `SAEMetadata`: how the SAE should be used. Unknown keys are kept in `extra`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SaeMetadata {
    /// TransformerLens name of the model the SAE was trained on (e.g. `gpt2-small`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_name: Option<String>,
    /// The hook the SAE reads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hook_name: Option<String>,
    /// Single attention head the SAE reads at `hook_name` (`None`: all heads / not a head hook).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "opt_usize"
    )]
    pub hook_head_index: Option<usize>,
    /// Transcoders: the hook whose value the output replaces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hook_name_out: Option<String>,
    /// Transcoders: single attention head written at `hook_name_out` (`None`: all heads).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "opt_usize"
    )]
    pub hook_head_index_out: Option<usize>,
    /// Whether the training prompts had BOS prepended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prepend_bos: Option<bool>,
    /// Training context length in tokens (the default `--context-size` of `saescope eval` /
    /// `dashboard`).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "opt_usize"
    )]
    pub context_size: Option<usize>,
    /// Neuronpedia id (`model/source`, e.g. `gpt2-small/8-res-jb`) for feature links.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub neuronpedia_id: Option<String>,
    /// Special tokens excluded in training: `true`, `false` or a list of token ids.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exclude_special_tokens: Option<Value>,
    /// Training dataset (hub dataset id or path).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset_path: Option<String>,
    /// Model class used in training (e.g. `HookedTransformer`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_class_name: Option<String>,
    /// Extra keyword arguments for the model's `from_pretrained` (e.g. `center_writing_weights`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_from_pretrained_kwargs: Option<Map<String, Value>>,
    /// Training positions as Python `slice(*seqpos_slice)` arguments, as written in the config.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seqpos_slice: Option<Value>,
    /// SAELens version the config was written with (≥ 6.0 means the 6.x layout).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sae_lens_version: Option<String>,
    /// SAELens version the SAE was trained with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sae_lens_training_version: Option<String>,
    /// `hook_name` in Hugging Face `transformers` module naming (kept, not used by saescope).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hf_hook_name: Option<String>,
    /// `hook_name_out` in Hugging Face `transformers` module naming (kept, not used by saescope).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hf_hook_name_out: Option<String>,
    /// Every other key (`training_architecture`, `l0`, ...).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A typed SAELens `SAEConfig` (any architecture).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SaeConfig {
    /// Which SAE architecture the weights belong to.
    pub architecture: Architecture,
    /// Input width: the hooked activation's last dim (`n_heads · d_head` for `hook_z` SAEs).
    #[serde(deserialize_with = "req_usize")]
    pub d_in: usize,
    /// Number of latents (dictionary size).
    #[serde(deserialize_with = "req_usize")]
    pub d_sae: usize,
    /// Transcoders' output width; `None` elsewhere (then [`SaeConfig::d_out`] is `d_in`).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "opt_usize"
    )]
    pub d_out: Option<usize>,
    /// `float32`, `float64`, `float16` or `bfloat16`, optionally prefixed `torch.`.
    #[serde(default = "default_dtype")]
    pub dtype: String,
    /// Torch device name the weights live on (`cpu`, `cuda`, `mps`; default `cpu`); set on load.
    #[serde(default = "default_device")]
    pub device: String,
    /// Subtract `b_dec` from the (normalised) input before encoding (default `true`; must be
    /// `false` for transcoders).
    #[serde(default = "default_true")]
    pub apply_b_dec_to_input: bool,
    /// Input normalisation around encode/decode (default `none`).
    #[serde(default)]
    pub normalize_activations: NormalizeActivations,
    /// Per-head input reshaping (default `none`; `hook_z` for `hook_z` SAEs).
    #[serde(default)]
    pub reshape_activations: ReshapeActivations,
    /// Top-k SAEs' `k` (SAELens's default is 100).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "opt_usize"
    )]
    pub k: Option<usize>,
    /// Top-k SAEs: rank (and decode) the pre-activations as if `W_dec` had unit-norm rows.
    #[serde(default)]
    pub rescale_acts_by_decoder_norm: bool,
    /// How the SAE should be used: model, hook, training context ([`SaeMetadata`]).
    #[serde(default)]
    pub metadata: SaeMetadata,
    /// Top-level keys that are no field of the architecture's config class (SAELens drops them;
    /// e.g. `activation_fn`, `finetuning_scaling_factor`, `jump_relu_threshold`). Not written by
    /// [`SaeConfig::to_json_value`].
    #[serde(flatten, skip_serializing)]
    pub extra: Map<String, Value>,
}

fn default_dtype() -> String {
    "float32".into()
}
fn default_device() -> String {
    "cpu".into()
}
fn default_true() -> bool {
    true
}

/// An integer (a float with an integral value is accepted: some configs write `64.0`).
fn value_to_usize(v: &Value) -> Option<usize> {
    match v {
        Value::Number(n) => n.as_u64().map(|u| u as usize).or_else(|| {
            n.as_f64()
                .filter(|f| *f >= 0.0 && f.fract() == 0.0 && *f < 1e15)
                .map(|f| f as usize)
        }),
        _ => None,
    }
}

fn opt_usize<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Option<usize>, D::Error> {
    let v = Value::deserialize(d)?;
    match &v {
        Value::Null => Ok(None),
        other => value_to_usize(other).map(Some).ok_or_else(|| {
            serde::de::Error::custom(format!("expected a non-negative integer, got {other}"))
        }),
    }
}

fn req_usize<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<usize, D::Error> {
    let v = Value::deserialize(d)?;
    value_to_usize(&v)
        .filter(|n| *n > 0)
        .ok_or_else(|| serde::de::Error::custom(format!("expected a positive integer, got {v}")))
}

/// `dtype` string → candle dtype (`torch.` prefix allowed).
pub fn parse_dtype(s: &str) -> Result<DType> {
    let t = s.trim();
    let t = t.strip_prefix("torch.").unwrap_or(t);
    Ok(match t {
        "float32" | "float" | "fp32" | "f32" => DType::F32,
        "float64" | "double" | "fp64" | "f64" => DType::F64,
        "float16" | "half" | "fp16" | "f16" => DType::F16,
        "bfloat16" | "bf16" => DType::BF16,
        other => {
            return Err(Error::SaeConfig(format!(
                "unsupported SAE dtype `{other}`; expected float32, float64, float16 or bfloat16 \
                 (optionally prefixed `torch.`)"
            )))
        }
    })
}

/// candle dtype → SAELens's short dtype name.
pub fn dtype_name(d: DType) -> &'static str {
    match d {
        DType::F64 => "float64",
        DType::F16 => "float16",
        DType::BF16 => "bfloat16",
        _ => "float32",
    }
}

impl SaeConfig {
    /// Parse a config object (6.x or pre-6.0 / converted-loader layout; see the module docs).
    pub fn from_json_value(v: Value) -> Result<Self> {
        let Value::Object(map) = v else {
            return Err(Error::SaeConfig(format!(
                "an SAE config must be a JSON object, got {}",
                short(&v)
            )));
        };
        let map = handle_config_defaulting(map)?;
        let mut cfg: SaeConfig = serde_json::from_value(Value::Object(map))
            .map_err(|e| Error::SaeConfig(format!("invalid SAE config: {e}")))?;
        cfg.finish()?;
        Ok(cfg)
    }

    /// Read and parse a `cfg.json` file.
    pub fn from_file(path: &Path) -> Result<Self> {
        let v = read_json(path)?;
        Self::from_json_value(v).map_err(|e| match e {
            Error::SaeConfig(m) => Error::SaeFile {
                path: path.to_path_buf(),
                reason: m,
            },
            e => e,
        })
    }

    /// Defaults and SAELens's `__post_init__` checks.
    fn finish(&mut self) -> Result<()> {
        if self.architecture.is_topk() && self.k.is_none() {
            self.k = Some(100);
        }
        if self.architecture.is_transcoder() && self.apply_b_dec_to_input {
            return Err(Error::SaeConfig(format!(
                "apply_b_dec_to_input is not supported for transcoders (architecture {}); set it to false",
                self.architecture
            )));
        }
        if !self.architecture.is_transcoder() && self.d_out.is_some_and(|d| d != self.d_in) {
            return Err(Error::SaeConfig(format!(
                "d_out = {} differs from d_in = {}, but architecture {} is not a transcoder",
                self.d_out.unwrap_or(0),
                self.d_in,
                self.architecture
            )));
        }
        if self.reshape_activations == ReshapeActivations::HookZ {
            if let Some(h) = &self.metadata.hook_name {
                if !h.ends_with("_z") {
                    return Err(Error::SaeConfig(format!(
                        "reshape_activations = hook_z needs a hook_z hook, but hook_name is `{h}`"
                    )));
                }
            }
        }
        parse_dtype(&self.dtype)?;
        Ok(())
    }

    /// The SAE's dtype.
    pub fn dtype(&self) -> Result<DType> {
        parse_dtype(&self.dtype)
    }

    /// Output width: `d_out` for transcoders, else `d_in`.
    pub fn d_out(&self) -> usize {
        self.d_out.unwrap_or(self.d_in)
    }

    /// The hook the SAE reads (`metadata.hook_name`).
    pub fn hook_name(&self) -> Option<&str> {
        self.metadata.hook_name.as_deref()
    }

    /// SAELens's `SAEConfig.to_dict()` (the 6.x `cfg.json`).
    pub fn to_json_value(&self) -> Value {
        let mut m = Map::new();
        m.insert("d_in".into(), self.d_in.into());
        m.insert("d_sae".into(), self.d_sae.into());
        m.insert("dtype".into(), self.dtype.clone().into());
        m.insert("device".into(), self.device.clone().into());
        m.insert(
            "apply_b_dec_to_input".into(),
            self.apply_b_dec_to_input.into(),
        );
        m.insert(
            "normalize_activations".into(),
            self.normalize_activations.as_str().into(),
        );
        m.insert(
            "reshape_activations".into(),
            match self.reshape_activations {
                ReshapeActivations::None => "none",
                ReshapeActivations::HookZ => "hook_z",
            }
            .into(),
        );
        if self.architecture.is_topk() {
            m.insert("k".into(), self.k.unwrap_or(100).into());
            m.insert(
                "rescale_acts_by_decoder_norm".into(),
                self.rescale_acts_by_decoder_norm.into(),
            );
        }
        if self.architecture.is_transcoder() {
            m.insert("d_out".into(), self.d_out().into());
        }
        m.insert(
            "metadata".into(),
            serde_json::to_value(&self.metadata).unwrap_or(Value::Null),
        );
        m.insert("architecture".into(), self.architecture.as_str().into());
        Value::Object(m)
    }
}

/// Read a JSON file, naming the file on error.
pub(crate) fn read_json(path: &Path) -> Result<Value> {
    let bytes = std::fs::read(path).map_err(|e| Error::SaeFile {
        path: path.to_path_buf(),
        reason: format!("cannot read: {e}"),
    })?;
    serde_json::from_slice(&bytes).map_err(|e| Error::SaeFile {
        path: path.to_path_buf(),
        reason: format!("not valid JSON (truncated or corrupt?): {e}"),
    })
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 80 {
        format!("{}…", s.chars().take(80).collect::<String>())
    } else {
        s
    }
}
