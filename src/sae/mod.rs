//! Sparse autoencoders with SAELens 6.x semantics (spec §A, §B): the architectures
//! (`standard`, `gated`, `jumprelu`, `topk` / `abstopk`, transcoders), SAELens's hook points,
//! `normalize_activations`, `hook_z` reshaping, weight folding, and loaders for SAELens folders,
//! Gemma Scope (1 and 2), sparsify, dictionary_learning and the pretrained directory.
//!
//! ```no_run
//! # use saescope::*;
//! # fn main() -> saescope::Result<()> {
//! let sae = Sae::from_pretrained("gpt2-small-res-jb", "blocks.8.hook_resid_pre")?;
//! let x = Tensor::randn(0f32, 1.0, (2, 5, sae.d_in()), &Device::Cpu)?;
//! let f = sae.encode(&x)?;                       // [2, 5, d_sae]
//! let (out, cache) = sae.run_with_cache(&x)?;     // hook_sae_input, acts_pre, acts_post, recons, output
//! println!("{:?} {:?}", out.dims(), cache.names());
//! # Ok(()) }
//! ```
//!
//! # Hook points and their order
//!
//! [`Sae::encode_hooked`] / [`Sae::decode_hooked`] call the hook callback exactly where SAELens
//! places its `HookPoint`s:
//!
//! 1. `x.to(dtype)` (and to the SAE's device), hook_z flattening `[..., n_heads, d_head] →
//!    [..., d_in]` (not for transcoders), then **`hook_sae_input`** (raw, before normalisation
//!    and before `b_dec` subtraction);
//! 2. `norm_in` (`constant_norm_rescale` / `layer_norm`; the statistics go into the returned
//!    [`NormState`]), `x̃ = x − b_dec·apply_b_dec_to_input`;
//! 3. the pre-activation → **`hook_sae_acts_pre`** (gated: the magnitude path `π_mag`);
//! 4. topk with `rescale_acts_by_decoder_norm`: `h ⊙ ‖W_dec‖` (after the hook); the activation
//!    → **`hook_sae_acts_post`**;
//! 5. decode: `f W_dec + b_dec` (topk rescaling: `f / ‖W_dec‖` first) → **`hook_sae_recons`**
//!    (normalised space) → `norm_out` with the [`NormState`] (not for transcoders) → hook_z
//!    un-flattening (`[..., n_heads, d_head]`, with the `d_head` recorded at encode).
//!
//! The standalone [`Sae::forward_hooked`] adds **`hook_sae_error`** (`x − decode(encode(x))`
//! recomputed without hooks, detached; only with the error term) and **`hook_sae_output`**
//! (not for transcoders, whose SAELens `forward` has none).
//!
//! Hooks see tensors with the input's leading dims (`[..., d_sae]`); compute runs on a
//! flattened `[N, d]` view.
use crate::error::{Error, Result};
use crate::model::LoadOptions;
use candle_core::{DType, Device, Tensor, D};
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

pub(crate) mod arch;
mod compute;
pub mod config;
mod config_legacy;
mod gated;
mod io;
mod jumprelu;
pub(crate) mod loaders;
pub mod pretrained;
mod registry;
mod splice;
mod standard;
mod topk;
mod transcoder;
/// Splicing SAEs into a `HookedModel` (HookedSAETransformer semantics). Keep this line.
mod transcoder_set;

use arch::SaeWeights;
pub use config::{Architecture, NormalizeActivations, ReshapeActivations, SaeConfig, SaeMetadata};
pub use io::{shipped_sae_dir, SHIPPED_SAE};
pub use loaders::SaeFormat;
pub use pretrained::{PretrainedSaeInfo, PretrainedSaeRelease};
use registry::SaeArch;
pub use splice::{sae_hook_names, SaeHook};
pub use transcoder_set::{shipped_transcoders_dir, TranscoderSet, SHIPPED_TRANSCODERS};

/// Per-call normalisation state: what `decode_hooked` needs to undo what `encode_hooked` did
/// to this particular input.
///
/// - `scale`: `constant_norm_rescale`'s `c = √d_in / ‖x‖`, `[N, 1]` (N = tokens);
/// - `mu`, `std`: `layer_norm`'s per-token mean and (unbiased) std, `[N, 1]`;
/// - `d_head`: hook_z SAEs: the head size of the input, to restore `[..., n_heads, d_head]`.
///
/// All `None` for SAEs without run-time normalisation (`none`, `expected_average_only_in`),
/// for which `decode_hooked` with `NormState::default()` is exact. A state only fits inputs
/// with the same number of tokens.
#[derive(Clone, Debug, Default)]
pub struct NormState {
    /// `constant_norm_rescale`'s per-token factor `c = √d_in / ‖x‖`, `[N, 1]`.
    pub scale: Option<Tensor>,
    /// `layer_norm`'s per-token mean, `[N, 1]`.
    pub mu: Option<Tensor>,
    /// `layer_norm`'s per-token unbiased std, `[N, 1]`.
    pub std: Option<Tensor>,
    /// `hook_z` SAEs: the input's `d_head`, to restore `[..., n_heads, d_head]` on decode.
    pub d_head: Option<usize>,
}

/// A hook callback for the SAE's hook points: gets the SAE-local hook name
/// (`hook_sae_input`, `hook_sae_acts_pre`, `hook_sae_acts_post`, `hook_sae_recons`, and in
/// [`Sae::forward_hooked`] also `hook_sae_error`, `hook_sae_output`) and the activation,
/// returns the (possibly replaced) activation (same shape).
pub type SaeHookFn<'a> = dyn FnMut(&str, Tensor) -> Result<Tensor> + 'a;

/// The SAE hook point names, in firing order.
pub const SAE_HOOK_NAMES: [&str; 6] = [
    "hook_sae_input",
    "hook_sae_acts_pre",
    "hook_sae_acts_post",
    "hook_sae_recons",
    "hook_sae_error",
    "hook_sae_output",
];

/// Options for loading SAEs from disk or the hub.
#[derive(Clone, Debug)]
pub struct SaeLoadOptions {
    /// The SAE's dtype. `None`: the config's dtype for SAELens folders read with
    /// `load_from_disk` / `load`; float32 for every other format and for `from_pretrained`
    /// (SAELens's `from_pretrained(dtype="float32")` default).
    pub dtype: Option<DType>,
    /// Device to load the weights onto (default CPU).
    pub device: Device,
    /// Fold the decoder norms into the encoder after loading (SAELens's `fold_W_dec_norm=True`).
    pub fold_w_dec_norm: bool,
    /// Merged into the loader's config before conversion (SAELens's `cfg_overrides`).
    pub cfg_overrides: Map<String, Value>,
    /// Force a format instead of detecting it from the folder's files (`load` / `load_with`).
    pub format: Option<SaeFormat>,
    /// Hub repo id for the converted formats that derive the config from it (Gemma Scope:
    /// model and hook), when loading from a local folder that is not in a hub cache.
    pub repo_id: Option<String>,
}

impl Default for SaeLoadOptions {
    fn default() -> Self {
        SaeLoadOptions {
            dtype: None,
            device: Device::Cpu,
            fold_w_dec_norm: false,
            cfg_overrides: Map::new(),
            format: None,
            repo_id: None,
        }
    }
}

/// The cached hook values of a standalone SAE pass ([`Sae::run_with_cache`]), in firing
/// order, under SAELens's standalone names (`hook_sae_input`, ...).
#[derive(Clone, Debug, Default)]
pub struct SaeCache {
    entries: Vec<(String, Tensor)>,
}

impl SaeCache {
    /// The value at a hook (`"hook_sae_acts_post"`, or the short form `"acts_post"`).
    pub fn get(&self, name: &str) -> Result<&Tensor> {
        let full = if name.starts_with("hook_sae_") {
            name.to_string()
        } else {
            format!("hook_sae_{name}")
        };
        self.entries
            .iter()
            .find(|(n, _)| *n == full)
            .map(|(_, t)| t)
            .ok_or_else(|| {
                Error::Invalid(format!(
                    "no SAE hook `{name}` in this cache; it has: {}",
                    self.names().join(", ")
                ))
            })
    }
    /// The cached hook names (full `hook_sae_*` form), in firing order.
    pub fn names(&self) -> Vec<&str> {
        self.entries.iter().map(|(n, _)| n.as_str()).collect()
    }
    /// `(hook name, value)` pairs in firing order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Tensor)> {
        self.entries.iter().map(|(n, t)| (n.as_str(), t))
    }
    /// Number of cached hooks.
    pub fn len(&self) -> usize {
        self.entries.len()
    }
    /// `true` if no hook was cached.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
    /// The values keyed by full hook name (firing order is lost).
    pub fn into_map(self) -> HashMap<String, Tensor> {
        self.entries.into_iter().collect()
    }
}

/// A loaded SAE (any architecture).
#[derive(Clone)]
pub struct Sae {
    cfg: SaeConfig,
    w: SaeWeights,
    sparsity: Option<Tensor>,
    dtype: DType,
    device: Device,
}

impl std::fmt::Debug for Sae {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sae")
            .field("architecture", &self.architecture())
            .field("hook_name", &self.hook_name())
            .field("hook_name_out", &self.hook_name_out())
            .field("d_in", &self.d_in())
            .field("d_sae", &self.d_sae())
            .field("d_out", &self.d_out())
            .field("dtype", &self.dtype)
            .field("normalize_activations", &self.cfg.normalize_activations)
            .finish()
    }
}

impl Sae {
    // ---------------------------------------------------------------------------------------
    // Accessors

    /// The SAE's config (SAELens `cfg.json` fields and metadata).
    pub fn cfg(&self) -> &SaeConfig {
        &self.cfg
    }
    /// The hook the SAE reads (`metadata.hook_name`; `""` if the config has none).
    pub fn hook_name(&self) -> &str {
        self.cfg.metadata.hook_name.as_deref().unwrap_or("")
    }
    /// The hook the SAE's output replaces (`hook_name_out` for transcoders, else `hook_name`).
    pub fn hook_name_out(&self) -> &str {
        self.cfg
            .metadata
            .hook_name_out
            .as_deref()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| self.hook_name())
    }
    /// Input width (`cfg.d_in`).
    pub fn d_in(&self) -> usize {
        self.cfg.d_in
    }
    /// Number of latents (`cfg.d_sae`).
    pub fn d_sae(&self) -> usize {
        self.cfg.d_sae
    }
    /// Output width (`d_out` for transcoders, else `d_in`).
    pub fn d_out(&self) -> usize {
        self.cfg.d_out()
    }
    /// The architecture as run (`batchtopk` checkpoints report `jumprelu`).
    pub fn architecture(&self) -> Architecture {
        self.arch().architecture()
    }

    /// The architecture's code (see [`SaeArch`]).
    pub(crate) fn arch(&self) -> SaeArch {
        SaeArch::for_config(&self.cfg)
    }
    /// Whether the SAE is a transcoder (reads `hook_name`, writes `hook_name_out`).
    pub fn is_transcoder(&self) -> bool {
        self.architecture().is_transcoder()
    }
    /// The dtype the weights are held in.
    pub fn dtype(&self) -> DType {
        self.dtype
    }
    /// The device the weights are on.
    pub fn device(&self) -> &Device {
        &self.device
    }
    /// `metadata.neuronpedia_id`, if known.
    pub fn neuronpedia_id(&self) -> Option<&str> {
        self.cfg.metadata.neuronpedia_id.as_deref()
    }
    /// `W_enc [d_in, d_sae]`.
    pub fn w_enc(&self) -> &Tensor {
        &self.w.w_enc
    }
    /// `W_dec [d_sae, d_out]`.
    pub fn w_dec(&self) -> &Tensor {
        &self.w.w_dec
    }
    /// `b_dec [d_out]`.
    pub fn b_dec(&self) -> &Tensor {
        &self.w.b_dec
    }
    /// `b_enc [d_sae]` (`None` for gated SAEs).
    pub fn b_enc(&self) -> Option<&Tensor> {
        self.w.b_enc.as_ref()
    }
    /// JumpReLU `threshold [d_sae]`.
    pub fn threshold(&self) -> Option<&Tensor> {
        self.w.threshold.as_ref()
    }
    /// Gated `b_gate [d_sae]`.
    pub fn b_gate(&self) -> Option<&Tensor> {
        self.w.b_gate.as_ref()
    }
    /// Gated `b_mag [d_sae]`.
    pub fn b_mag(&self) -> Option<&Tensor> {
        self.w.b_mag.as_ref()
    }
    /// Gated `r_mag [d_sae]`.
    pub fn r_mag(&self) -> Option<&Tensor> {
        self.w.r_mag.as_ref()
    }
    /// Skip transcoders' `W_skip [d_out, d_in]`.
    pub fn w_skip(&self) -> Option<&Tensor> {
        self.w.w_skip.as_ref()
    }
    /// Top-k SAEs' `k`.
    pub fn k(&self) -> Option<usize> {
        self.cfg
            .architecture
            .is_topk()
            .then(|| self.cfg.k.unwrap_or(100))
    }
    /// `sparsity.safetensors`: `log10(firing frequency + 1e-10)` per feature, `[d_sae]` f32.
    pub fn sparsity(&self) -> Option<&Tensor> {
        self.sparsity.as_ref()
    }
    /// `‖W_dec[i, :]‖₂` per feature, `[d_sae]` (1 after [`Sae::fold_w_dec_norm`]).
    pub fn w_dec_norms(&self) -> Result<Tensor> {
        arch::w_dec_norms(&self.w.w_dec)
    }
    /// Every parameter under its SAELens name.
    pub fn tensors(&self) -> Vec<(&'static str, &Tensor)> {
        self.w.named()
    }
}
