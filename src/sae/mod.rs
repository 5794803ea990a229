//! Sparse autoencoders with SAELens 6.x semantics (spec §A, §B): the architectures
//! (`standard`, `gated`, `jumprelu`, `topk` / `abstopk`, transcoders), SAELens's hook points,
//! `normalize_activations`, `hook_z` reshaping, weight folding, and loaders for SAELens folders,
//! Gemma Scope (1 and 2), sparsify, dictionary_learning and the pretrained directory.
//!
//! ```no_run
//! # use saescope::*;
//! # fn main() -> saescope::Result<()> {
//! let sae = Sae::from_pretrained("gpt2-small-res-jb", "blocks.8.hook_resid_pre", &LoadOptions::default())?;
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
use std::sync::Arc;

pub(crate) mod arch;
pub mod config;
mod gated;
mod jumprelu;
pub mod loaders;
pub mod pretrained;
/// Splicing SAEs into a `HookedModel` (HookedSAETransformer semantics). Keep this line.
pub mod splice;
mod standard;
mod topk;
mod transcoder;

use arch::{ArchImpl, SaeWeights};
pub use config::{Architecture, NormalizeActivations, ReshapeActivations, SaeConfig, SaeMetadata};
pub use loaders::SaeFormat;
pub use pretrained::{PretrainedSaeInfo, PretrainedSaeRelease};

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
    pub scale: Option<Tensor>,
    pub mu: Option<Tensor>,
    pub std: Option<Tensor>,
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
    pub fn names(&self) -> Vec<&str> {
        self.entries.iter().map(|(n, _)| n.as_str()).collect()
    }
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Tensor)> {
        self.entries.iter().map(|(n, t)| (n.as_str(), t))
    }
    pub fn len(&self) -> usize {
        self.entries.len()
    }
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
    pub fn into_map(self) -> HashMap<String, Tensor> {
        self.entries.into_iter().collect()
    }
}

/// A loaded SAE (any architecture).
#[derive(Clone)]
pub struct Sae {
    cfg: SaeConfig,
    w: SaeWeights,
    arch: Arc<dyn ArchImpl>,
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

fn noop() -> impl FnMut(&str, Tensor) -> Result<Tensor> {
    |_: &str, t: Tensor| Ok(t)
}

impl Sae {
    // ---------------------------------------------------------------------------------------
    // Loading

    /// SAELens folder: `cfg.json` + `sae_weights.safetensors` (+ optional
    /// `sparsity.safetensors`, see [`Sae::sparsity`]); dtype from the config.
    pub fn load_from_disk(dir: &Path) -> Result<Self> {
        Self::load_from_disk_with(dir, &SaeLoadOptions::default())
    }

    /// [`Sae::load_from_disk`] with options (dtype, device, `fold_w_dec_norm`, overrides).
    pub fn load_from_disk_with(dir: &Path, opts: &SaeLoadOptions) -> Result<Self> {
        let mut o = opts.clone();
        o.format = Some(SaeFormat::SaeLens);
        Self::load_with(dir, &o)
    }

    /// Load an SAE folder (or a file in it) of any supported format, detected from its files:
    /// SAELens, Gemma Scope (`params.npz`), Gemma Scope 2 (`params.safetensors`), sparsify
    /// (`sae.safetensors` + `cfg.json`), dictionary_learning (`ae.pt` + `config.json`), Llama
    /// Scope (`hyperparams.json`).
    pub fn load(path: &Path) -> Result<Self> {
        Self::load_with(path, &SaeLoadOptions::default())
    }

    /// [`Sae::load`] with options.
    pub fn load_with(path: &Path, opts: &SaeLoadOptions) -> Result<Self> {
        let dir = if path.is_file() {
            path.parent().unwrap_or(Path::new(".")).to_path_buf()
        } else if path.is_dir() {
            path.to_path_buf()
        } else {
            return Err(Error::sae_file(path, "no such file or folder"));
        };
        let format = match opts.format {
            Some(f) => f,
            None => loaders::detect_format(&dir)?,
        };
        let abs = std::path::absolute(&dir).unwrap_or(dir.clone());
        let repo_id = opts
            .repo_id
            .clone()
            .or_else(|| loaders::repo_id_from_path(&abs))
            .or_else(|| {
                // A folder named like the repo (e.g. `.../gemma-scope-2b-pt-res/layer_3/...`).
                abs.components().find_map(|c| {
                    let s = c.as_os_str().to_string_lossy();
                    s.starts_with("gemma-scope").then(|| s.into_owned())
                })
            })
            .unwrap_or_default();
        // The SAELens loaders parse the folder name (layer, width, ...): give them the last
        // few path components, not the whole absolute path.
        let comps: Vec<String> = abs
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .filter(|c| c != "/")
            .collect();
        let hint = comps[comps.len().saturating_sub(4)..].join("/");
        let mut overrides = opts.cfg_overrides.clone();
        let dtype = match (opts.dtype, format) {
            (Some(d), _) => Some(d),
            (None, SaeFormat::SaeLens) => None,
            (None, _) => Some(DType::F32),
        };
        if let Some(d) = dtype {
            overrides.insert("dtype".into(), config::dtype_name(d).into());
        }
        let src = loaders::LocalDir(dir.clone());
        let ctx = loaders::LoadCtx {
            src: &src,
            repo_id: &repo_id,
            folder: "",
            hint: &hint,
            overrides: &overrides,
        };
        let raw = (loaders::loader_for(format.conversion_func())?)(&ctx)?;
        let mut sae = Self::from_raw(raw, &opts.device)?;
        if opts.fold_w_dec_norm {
            sae.fold_w_dec_norm()?;
        }
        Ok(sae)
    }

    /// A pretrained SAE by release and id (SAELens's `SAE.from_pretrained`): looks the release
    /// up in the embedded pretrained directory (`pretrained_saes.json`; a release name that is
    /// not there but contains `/` is taken as a hub repo id with `sae_id` as the folder),
    /// downloads through the hub cache (`LoadOptions`' cache / endpoint / offline / revision,
    /// as for models), converts with the release's `conversion_func`, applies its
    /// `config_overrides`, sets `metadata.neuronpedia_id`, and folds the directory's
    /// `norm_scaling_factor` into the weights for `expected_average_only_in` SAEs. float32, on
    /// `opts.device`.
    pub fn from_pretrained(release: &str, sae_id: &str, opts: &LoadOptions) -> Result<Self> {
        let so = SaeLoadOptions {
            device: opts.device.clone(),
            ..Default::default()
        };
        Self::from_pretrained_with(release, sae_id, opts, &so)
    }

    /// [`Sae::from_pretrained`] with SAE options (dtype, device, `fold_w_dec_norm`, overrides;
    /// `format` and `repo_id` are ignored).
    pub fn from_pretrained_with(
        release: &str,
        sae_id: &str,
        hub: &LoadOptions,
        opts: &SaeLoadOptions,
    ) -> Result<Self> {
        pretrained::load(release, sae_id, hub, opts)
    }

    /// An SAE from a config and tensors under SAELens's names (`W_enc`, `W_dec`, `b_enc`,
    /// `b_dec`, `threshold`, `b_gate`, `b_mag`, `r_mag`, `W_skip`), checked against the
    /// config. The tensors are cast to the config's dtype.
    pub fn from_config_and_tensors(
        cfg: SaeConfig,
        tensors: HashMap<String, Tensor>,
        device: &Device,
    ) -> Result<Self> {
        let raw = loaders::RawSae {
            cfg: match cfg.to_json_value() {
                Value::Object(m) => m,
                _ => Map::new(),
            },
            tensors: tensors.into_iter().collect(),
            sparsity: None,
            weights_path: PathBuf::from("<tensors>"),
        };
        let mut sae = Self::from_raw(raw, device)?;
        sae.cfg.extra = cfg.extra;
        Ok(sae)
    }

    /// Convert a loader's output: config conversion, dtype cast, SAELens's state-dict fixes
    /// (`scaling_factor`, `log_threshold`, batchtopk → jumprelu), architecture and shape
    /// checks.
    pub(crate) fn from_raw(raw: loaders::RawSae, device: &Device) -> Result<Self> {
        let path = raw.weights_path.clone();
        let mut cfg = SaeConfig::from_json_value(Value::Object(raw.cfg))?;
        let dtype = cfg.dtype()?;
        cfg.dtype = config::dtype_name(dtype).to_string();
        cfg.device = if device.is_cuda() {
            "cuda"
        } else if device.is_metal() {
            "mps"
        } else {
            "cpu"
        }
        .to_string();
        // Work in f32 (or f64) for the conversions, cast at the end.
        let work = if dtype == DType::F64 {
            DType::F64
        } else {
            DType::F32
        };
        let mut t = loaders::files::cast_all(raw.tensors, work, device)?;

        // `scaling_factor` (SAELens <= 5 finetuning scaling): all ones → dropped; otherwise
        // folded into W_dec's rows (decode computed `(f ⊙ s) W_dec`).
        if let Some(s) = t.remove("scaling_factor") {
            let ones = s.ones_like()?;
            let diff = (s.clone() - ones)?.abs()?.flatten_all()?.max(0)?;
            let diff = diff.to_dtype(DType::F64)?.to_scalar::<f64>()?;
            if diff > 1e-5 {
                let w_dec = loaders::files::take(&mut t, "W_dec", &path)?;
                t.insert(
                    "W_dec".into(),
                    w_dec.broadcast_mul(&s.reshape((s.elem_count(), 1))?)?,
                );
            }
        }
        // Old jumprelu checkpoints: log_threshold → threshold.
        if let Some(lt) = t.remove("log_threshold") {
            t.insert("threshold".into(), lt.exp()?);
        }
        // batchtopk / matryoshka_batchtopk training checkpoints → jumprelu (save_inference_model).
        if matches!(
            cfg.architecture,
            Architecture::BatchTopK | Architecture::MatryoshkaBatchTopK
        ) {
            if cfg.rescale_acts_by_decoder_norm {
                let mut w = weights_from(&mut t, &path)?;
                arch::fold_base(&mut w)?;
                t.insert("W_enc".into(), w.w_enc);
                t.insert("W_dec".into(), w.w_dec);
                t.insert("b_dec".into(), w.b_dec);
                if let Some(b) = w.b_enc {
                    t.insert("b_enc".into(), b);
                }
            }
            if !t.contains_key("threshold") {
                let th = loaders::files::take(&mut t, "topk_threshold", &path)?;
                let v = th
                    .flatten_all()?
                    .to_dtype(DType::F64)?
                    .to_vec1::<f64>()?
                    .first()
                    .copied()
                    .ok_or_else(|| Error::sae_file(&path, "topk_threshold is empty"))?;
                t.insert(
                    "threshold".into(),
                    Tensor::full(v, cfg.d_sae, device)?.to_dtype(work)?,
                );
            }
            t.remove("topk_threshold");
            cfg.architecture = Architecture::JumpRelu;
            cfg.k = None;
            cfg.rescale_acts_by_decoder_norm = false;
        }

        let arch = make_arch(&cfg);
        // Transcoders without d_out: take it from W_dec (SAELens would default to 768).
        if cfg.architecture.is_transcoder() && cfg.d_out.is_none() {
            cfg.d_out = t.get("W_dec").and_then(|w| w.dims().get(1).copied());
        }
        check_tensor_set(&t, arch.as_ref(), &cfg, &path)?;
        let mut w = weights_from(&mut t, &path)?;
        check_shapes(&w, &cfg, &path)?;
        // Final dtype.
        if dtype != work {
            w = cast_weights(&w, dtype)?;
        }
        let sparsity = match raw.sparsity {
            Some(s) => {
                let s = s.to_device(device)?.to_dtype(DType::F32)?;
                if s.dims() != [cfg.d_sae] {
                    return Err(Error::sae_file(
                        &path,
                        format!(
                            "sparsity should have shape [{}] (d_sae), has {:?}",
                            cfg.d_sae,
                            s.dims()
                        ),
                    ));
                }
                Some(s)
            }
            None => None,
        };
        Ok(Sae {
            cfg,
            w,
            arch,
            sparsity,
            dtype,
            device: device.clone(),
        })
    }

    /// Write a SAELens folder (`cfg.json` + `sae_weights.safetensors`, and
    /// `sparsity.safetensors` if the SAE has one) readable by SAELens's `load_from_disk`.
    pub fn save_to_disk(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let cfg = serde_json::to_string(&self.cfg.to_json_value()).unwrap_or_default();
        let p = dir.join(loaders::saelens::CFG);
        std::fs::write(&p, cfg).map_err(|e| Error::io(&p, e))?;
        let map: HashMap<String, Tensor> = self
            .w
            .named()
            .into_iter()
            .map(|(n, t)| (n.to_string(), t.clone()))
            .collect();
        let p = dir.join(loaders::saelens::WEIGHTS);
        candle_core::safetensors::save(&map, &p)?;
        if let Some(s) = &self.sparsity {
            let p = dir.join(loaders::saelens::SPARSITY);
            let m: HashMap<String, Tensor> = [("sparsity".to_string(), s.clone())].into();
            candle_core::safetensors::save(&m, &p)?;
        }
        Ok(())
    }

    /// A copy with another dtype (weights cast; `cfg.dtype` updated).
    pub fn to_dtype(&self, dtype: DType) -> Result<Self> {
        let mut s = self.clone();
        s.w = cast_weights(&self.w, dtype)?;
        s.dtype = dtype;
        s.cfg.dtype = config::dtype_name(dtype).to_string();
        Ok(s)
    }

    /// A copy on another device.
    pub fn to_device(&self, device: &Device) -> Result<Self> {
        let mut s = self.clone();
        s.w = map_weights(&self.w, |t| Ok(t.to_device(device)?))?;
        s.sparsity = self
            .sparsity
            .as_ref()
            .map(|t| t.to_device(device))
            .transpose()?;
        s.device = device.clone();
        Ok(s)
    }

    // ---------------------------------------------------------------------------------------
    // Accessors

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
    pub fn d_in(&self) -> usize {
        self.cfg.d_in
    }
    pub fn d_sae(&self) -> usize {
        self.cfg.d_sae
    }
    /// Output width (`d_out` for transcoders, else `d_in`).
    pub fn d_out(&self) -> usize {
        self.cfg.d_out()
    }
    pub fn architecture(&self) -> Architecture {
        self.arch.architecture()
    }
    pub fn is_transcoder(&self) -> bool {
        self.architecture().is_transcoder()
    }
    pub fn dtype(&self) -> DType {
        self.dtype
    }
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

    // ---------------------------------------------------------------------------------------
    // Encode / decode

    /// Cast, hook_z flatten, check width. Returns `(x [..., d_in], d_head)`.
    fn reshape_in(&self, x: &Tensor) -> Result<(Tensor, Option<usize>)> {
        let x = x.to_device(&self.device)?.to_dtype(self.dtype)?;
        let dims = x.dims().to_vec();
        if dims.is_empty() {
            return Err(Error::Invalid(format!(
                "SAE input must have at least one dim (`[..., {}]`), got a scalar",
                self.d_in()
            )));
        }
        let last = dims[dims.len() - 1];
        let hook_z =
            self.cfg.reshape_activations == ReshapeActivations::HookZ && !self.is_transcoder();
        if hook_z
            && dims.len() >= 2
            && dims[dims.len() - 2] * last == self.d_in()
            && last != self.d_in()
        {
            let mut nd = dims[..dims.len() - 2].to_vec();
            nd.push(self.d_in());
            return Ok((x.reshape(nd)?, Some(last)));
        }
        if last != self.d_in() {
            let hint = if hook_z {
                format!(
                    " (a hook_z SAE takes `[..., n_heads, d_head]` with n_heads·d_head = {} or `[..., {}]`)",
                    self.d_in(),
                    self.d_in()
                )
            } else {
                String::new()
            };
            return Err(Error::Invalid(format!(
                "SAE d_in mismatch: the SAE (hook `{}`) expects inputs of width d_in = {}, got \
                 width {last} (input shape {dims:?}){hint}",
                self.hook_name(),
                self.d_in()
            )));
        }
        Ok((x, None))
    }

    fn norm_in(&self, x: &Tensor, st: &mut NormState) -> Result<Tensor> {
        match self.cfg.normalize_activations {
            NormalizeActivations::ConstantNormRescale => {
                let norm = x.sqr()?.sum_keepdim(D::Minus1)?.sqrt()?;
                let c = norm.recip()?.affine((self.d_in() as f64).sqrt(), 0.0)?;
                let y = x.broadcast_mul(&c)?;
                st.scale = Some(c);
                Ok(y)
            }
            NormalizeActivations::LayerNorm => {
                let d = x.dim(D::Minus1)?;
                let mu = x.mean_keepdim(D::Minus1)?;
                let xc = x.broadcast_sub(&mu)?;
                let var = xc
                    .sqr()?
                    .sum_keepdim(D::Minus1)?
                    .affine(1.0 / (d.max(2) - 1) as f64, 0.0)?;
                let std = var.sqrt()?;
                let y = xc.broadcast_div(&(std.clone() + 1e-5)?)?;
                st.mu = Some(mu);
                st.std = Some(std);
                Ok(y)
            }
            NormalizeActivations::None | NormalizeActivations::ExpectedAverageOnlyIn => {
                Ok(x.clone())
            }
        }
    }

    fn norm_out(&self, y: &Tensor, st: &NormState) -> Result<Tensor> {
        let n = y.dim(0)?;
        let check = |t: &Tensor, what: &str| -> Result<()> {
            if t.dim(0)? != n {
                return Err(Error::Invalid(format!(
                    "decode: the NormState ({what}) was computed for {} tokens but the features \
                     have {n}; decode with the state returned by encoding this input",
                    t.dim(0)?
                )));
            }
            Ok(())
        };
        match self.cfg.normalize_activations {
            NormalizeActivations::ConstantNormRescale => match &st.scale {
                Some(c) => {
                    check(c, "scale")?;
                    Ok(y.broadcast_div(c)?)
                }
                None => Ok(y.clone()),
            },
            NormalizeActivations::LayerNorm => match (&st.mu, &st.std) {
                (Some(mu), Some(std)) => {
                    check(mu, "mu")?;
                    Ok(y.broadcast_mul(std)?.broadcast_add(mu)?)
                }
                _ => Ok(y.clone()),
            },
            _ => Ok(y.clone()),
        }
    }

    fn encode_inner(&self, x: &Tensor, hp: &mut SaeHookFn) -> Result<(Tensor, Tensor, NormState)> {
        let (x, d_head) = self.reshape_in(x)?;
        let x = hp("hook_sae_input", x)?;
        let dims = x.dims().to_vec();
        if dims.last() != Some(&self.d_in()) {
            return Err(Error::Invalid(format!(
                "hook_sae_input returned shape {dims:?}; the SAE needs `[..., {}]`",
                self.d_in()
            )));
        }
        let lead = &dims[..dims.len() - 1];
        let n: usize = lead.iter().product();
        let x2 = x.reshape((n, self.d_in()))?;
        let mut st = NormState {
            d_head,
            ..Default::default()
        };
        let xn = self.norm_in(&x2, &mut st)?;
        let xt = if self.cfg.apply_b_dec_to_input && !self.is_transcoder() {
            xn.broadcast_sub(&self.w.b_dec)?
        } else {
            xn
        };
        let (h, aux) = self.arch.pre_act(&self.w, &xt)?;
        let shape_sae = with_last(lead, self.d_sae());
        let h = hp("hook_sae_acts_pre", h.reshape(shape_sae.clone())?)?;
        let h2 = self.flat(&h, n, self.d_sae(), "hook_sae_acts_pre")?;
        let h2 = self.arch.after_pre_hook(&self.w, h2)?;
        let f = self.arch.activate(&self.w, &h2, aux.as_ref())?;
        let f = hp("hook_sae_acts_post", f.reshape(shape_sae)?)?;
        Ok((f, h, st))
    }

    fn flat(&self, t: &Tensor, n: usize, d: usize, hook: &str) -> Result<Tensor> {
        if t.elem_count() != n * d || t.dims().last() != Some(&d) {
            return Err(Error::Invalid(format!(
                "{hook} returned shape {:?}; expected {n} rows of width {d}",
                t.dims()
            )));
        }
        Ok(t.reshape((n, d))?)
    }

    /// Encode with hook points (see the module docs): dtype cast, hook_z flattening,
    /// `hook_sae_input`, norm_in, `b_dec` subtraction, pre-activation → `hook_sae_acts_pre`,
    /// (topk rescaling), activation → `hook_sae_acts_post`. Returns the features
    /// `[..., d_sae]` and the [`NormState`] that [`Sae::decode_hooked`] needs.
    pub fn encode_hooked(&self, x: &Tensor, hp: &mut SaeHookFn) -> Result<(Tensor, NormState)> {
        let (f, _, st) = self.encode_inner(x, hp)?;
        Ok((f, st))
    }

    /// Decode with hook points: `f W_dec + b_dec` → `hook_sae_recons` → norm_out (with `st`;
    /// not for transcoders) → hook_z reshape (`st.d_head`). `f`: `[..., d_sae]`; returns
    /// `[..., d_out]` (or `[..., n_heads, d_head]`).
    pub fn decode_hooked(&self, f: &Tensor, st: &NormState, hp: &mut SaeHookFn) -> Result<Tensor> {
        let f = f.to_device(&self.device)?.to_dtype(self.dtype)?;
        let dims = f.dims().to_vec();
        if dims.last() != Some(&self.d_sae()) {
            return Err(Error::Invalid(format!(
                "decode: features must be `[..., d_sae = {}]`, got shape {dims:?}",
                self.d_sae()
            )));
        }
        let lead = &dims[..dims.len() - 1];
        let n: usize = lead.iter().product();
        let f2 = f.reshape((n, self.d_sae()))?;
        let y = self.arch.decode_linear(&self.w, &f2)?;
        let y = hp("hook_sae_recons", y.reshape(with_last(lead, self.d_out()))?)?;
        if self.is_transcoder() {
            return Ok(y);
        }
        let y2 = self.flat(&y, n, self.d_out(), "hook_sae_recons")?;
        let y2 = self.norm_out(&y2, st)?;
        match st.d_head {
            Some(dh)
                if self.cfg.reshape_activations == ReshapeActivations::HookZ
                    && dh > 0
                    && self.d_out().is_multiple_of(dh) =>
            {
                let mut shape = lead.to_vec();
                shape.push(self.d_out() / dh);
                shape.push(dh);
                Ok(y2.reshape(shape)?)
            }
            _ => Ok(y2.reshape(with_last(lead, self.d_out()))?),
        }
    }

    /// Feature activations `[..., d_sae]`.
    pub fn encode(&self, x: &Tensor) -> Result<Tensor> {
        Ok(self.encode_hooked(x, &mut noop())?.0)
    }

    /// `(feature activations, pre-activations)`, both `[..., d_sae]`. The pre-activation is
    /// the value at `hook_sae_acts_pre`: for gated SAEs the magnitude path; for topk with
    /// `rescale_acts_by_decoder_norm` *before* the rescaling by `‖W_dec‖` (SAELens's training
    /// classes return the rescaled value; multiply by the decoder norms to get it).
    pub fn encode_with_hidden_pre(&self, x: &Tensor) -> Result<(Tensor, Tensor)> {
        let (f, h, _) = self.encode_inner(x, &mut noop())?;
        Ok((f, h))
    }

    /// `(features, NormState)` without hooks.
    pub fn encode_with_state(&self, x: &Tensor) -> Result<(Tensor, NormState)> {
        self.encode_hooked(x, &mut noop())
    }

    /// `f W_dec + b_dec` (topk rescaling applied), `[..., d_out]`: the reconstruction in the
    /// SAE's *normalised* space, without `norm_out` (there is no per-input state here; use
    /// [`Sae::decode_with_state`] or [`Sae::forward`] for `constant_norm_rescale` /
    /// `layer_norm` SAEs) and without hook_z un-flattening. For `none` /
    /// `expected_average_only_in` SAEs this is the reconstruction.
    pub fn decode(&self, f: &Tensor) -> Result<Tensor> {
        let st = NormState::default();
        self.decode_hooked(f, &st, &mut noop())
    }

    /// Decode with the [`NormState`] of the encoded input (norm_out and hook_z reshape).
    pub fn decode_with_state(&self, f: &Tensor, st: &NormState) -> Result<Tensor> {
        self.decode_hooked(f, st, &mut noop())
    }

    /// Skip transcoders' `x W_skipᵀ` (`[..., d_out]`, `x` cast to the SAE dtype); `None` for
    /// other SAEs. Added by [`Sae::forward`], not by `encode`/`decode` (as in SAELens).
    pub fn skip_connection(&self, x: &Tensor) -> Result<Option<Tensor>> {
        let Some(ws) = &self.w.w_skip else {
            return Ok(None);
        };
        let x = x.to_device(&self.device)?.to_dtype(self.dtype)?;
        let dims = x.dims().to_vec();
        if dims.last() != Some(&self.d_in()) {
            return Err(Error::Invalid(format!(
                "skip connection: expected `[..., {}]`, got {dims:?}",
                self.d_in()
            )));
        }
        let lead = &dims[..dims.len() - 1];
        let n: usize = lead.iter().product();
        let y = x.reshape((n, self.d_in()))?.matmul(&ws.t()?)?;
        Ok(Some(y.reshape(with_last(lead, self.d_out()))?))
    }

    /// SAELens's standalone `SAE.forward` with hooks: `decode(encode(x))` (with the norm
    /// state); with `use_error_term`, `+ hook_sae_error(x − decode(encode(x)))` recomputed
    /// without hooks and detached; then `hook_sae_output`. Transcoders: `decode(encode(x))`
    /// (+ `x W_skipᵀ` for skip transcoders), no error term or output hook.
    pub fn forward_hooked(
        &self,
        x: &Tensor,
        use_error_term: bool,
        hp: &mut SaeHookFn,
    ) -> Result<Tensor> {
        if self.is_transcoder() {
            if use_error_term {
                return Err(Error::SaeConfig(format!(
                    "a transcoder ({}) has no standalone error term (its output lives at `{}`, \
                     not at its input); SAELens's Transcoder.forward ignores use_error_term",
                    self.architecture(),
                    self.hook_name_out()
                )));
            }
            let (f, st) = self.encode_hooked(x, hp)?;
            let y = self.decode_hooked(&f, &st, hp)?;
            return match self.skip_connection(x)? {
                Some(s) => Ok((y + s)?),
                None => Ok(y),
            };
        }
        let (f, st) = self.encode_hooked(x, hp)?;
        let mut y = self.decode_hooked(&f, &st, hp)?;
        if use_error_term {
            let xd = x.detach();
            let (f0, st0) = self.encode_hooked(&xd, &mut noop())?;
            let clean = self.decode_hooked(&f0, &st0, &mut noop())?;
            let xd = xd.to_device(&self.device)?.to_dtype(self.dtype)?;
            let xd = if xd.dims() != clean.dims() {
                xd.reshape(clean.dims())?
            } else {
                xd
            };
            let err = (xd - clean)?.detach();
            let err = hp("hook_sae_error", err)?;
            y = (y + err)?;
        }
        hp("hook_sae_output", y)
    }

    /// `decode(encode(x))`, with the normalisation undone (SAELens `SAE.forward`).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_hooked(x, false, &mut noop())
    }

    /// SAELens `SAE.forward` with `use_error_term = True`: equals `x` (cast to the SAE dtype)
    /// up to rounding.
    pub fn forward_with_error(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_hooked(x, true, &mut noop())
    }

    /// [`Sae::forward`] caching every hook: `hook_sae_input`, `hook_sae_acts_pre`,
    /// `hook_sae_acts_post`, `hook_sae_recons`, `hook_sae_output` (not for transcoders).
    pub fn run_with_cache(&self, x: &Tensor) -> Result<(Tensor, SaeCache)> {
        self.run_with_cache_opts(x, false)
    }

    /// [`Sae::run_with_cache`], optionally with the error term (adds `hook_sae_error`).
    pub fn run_with_cache_opts(
        &self,
        x: &Tensor,
        use_error_term: bool,
    ) -> Result<(Tensor, SaeCache)> {
        let mut cache = SaeCache::default();
        let out = {
            let mut hp = |name: &str, t: Tensor| {
                cache.entries.push((name.to_string(), t.clone()));
                Ok(t)
            };
            self.forward_hooked(x, use_error_term, &mut hp)?
        };
        Ok((out, cache))
    }

    // ---------------------------------------------------------------------------------------
    // Folding

    /// SAELens's `fold_W_dec_norm`: scale each decoder row to unit norm and move the norm into
    /// the encoder (`W_enc[:, i] *= n_i`, `b_enc *= n`; jumprelu `θ *= n`; gated `b_gate, b_mag
    /// *= n`), leaving `forward` unchanged and the features in "unit-decoder" units. Top-k SAEs
    /// only with `rescale_acts_by_decoder_norm` (an error otherwise, as in SAELens).
    pub fn fold_w_dec_norm(&mut self) -> Result<()> {
        let mut w = cast_weights(&self.w, self.work_dtype())?;
        self.arch.fold_w_dec_norm(&mut w)?;
        self.w = cast_weights(&w, self.dtype)?;
        Ok(())
    }

    /// SAELens's `fold_activation_norm_scaling_factor(s)`: `W_enc *= s`, `W_dec /= s`,
    /// `b_dec /= s`, then `normalize_activations = none`. For `expected_average_only_in` SAEs,
    /// with the training-time `s = √d_in / E‖x‖`, the SAE then takes raw activations.
    pub fn fold_activation_norm_scaling_factor(&mut self, s: f64) -> Result<()> {
        if !s.is_finite() || s == 0.0 {
            return Err(Error::Invalid(format!(
                "activation norm scaling factor must be finite and non-zero, got {s}"
            )));
        }
        let mut w = cast_weights(&self.w, self.work_dtype())?;
        w.w_enc = w.w_enc.affine(s, 0.0)?;
        w.w_dec = w.w_dec.affine(1.0 / s, 0.0)?;
        w.b_dec = w.b_dec.affine(1.0 / s, 0.0)?;
        self.w = cast_weights(&w, self.dtype)?;
        self.cfg.normalize_activations = NormalizeActivations::None;
        Ok(())
    }

    fn work_dtype(&self) -> DType {
        if self.dtype == DType::F64 {
            DType::F64
        } else {
            DType::F32
        }
    }
}

fn with_last(lead: &[usize], d: usize) -> Vec<usize> {
    let mut v = lead.to_vec();
    v.push(d);
    v
}

fn make_arch(cfg: &SaeConfig) -> Arc<dyn ArchImpl> {
    match cfg.architecture {
        Architecture::Standard => Arc::new(standard::Standard),
        Architecture::Gated => Arc::new(gated::Gated),
        Architecture::JumpRelu | Architecture::BatchTopK | Architecture::MatryoshkaBatchTopK => {
            Arc::new(jumprelu::JumpRelu)
        }
        Architecture::TopK | Architecture::AbsTopK => Arc::new(topk::TopK {
            k: cfg.k.unwrap_or(100),
            rescale_acts_by_decoder_norm: cfg.rescale_acts_by_decoder_norm,
            abs: cfg.architecture == Architecture::AbsTopK,
        }),
        Architecture::Transcoder => Arc::new(transcoder::Transcoder {
            jumprelu: false,
            skip: false,
        }),
        Architecture::SkipTranscoder => Arc::new(transcoder::Transcoder {
            jumprelu: false,
            skip: true,
        }),
        Architecture::JumpReluTranscoder => Arc::new(transcoder::Transcoder {
            jumprelu: true,
            skip: false,
        }),
        Architecture::JumpReluSkipTranscoder => Arc::new(transcoder::Transcoder {
            jumprelu: true,
            skip: true,
        }),
    }
}

/// Which architectures own which tensor names (for "architecture mismatch" hints).
fn owner_hint(name: &str) -> &'static str {
    match name {
        "threshold" => " (a JumpReLU tensor)",
        "b_gate" | "b_mag" | "r_mag" => " (a gated-SAE tensor)",
        "W_skip" => " (a skip-transcoder tensor)",
        "b_enc" => " (gated SAEs have no b_enc)",
        _ => "",
    }
}

fn check_tensor_set(
    t: &loaders::TensorMap,
    arch: &dyn ArchImpl,
    cfg: &SaeConfig,
    path: &Path,
) -> Result<()> {
    let mut expected: Vec<&str> = vec!["W_enc", "W_dec", "b_dec"];
    expected.extend(arch.extra_tensors());
    let missing: Vec<&str> = expected
        .iter()
        .copied()
        .filter(|n| !t.contains_key(*n))
        .collect();
    let unexpected: Vec<String> = t
        .keys()
        .filter(|k| !expected.contains(&k.as_str()))
        .map(|k| format!("{k}{}", owner_hint(k)))
        .collect();
    if missing.is_empty() && unexpected.is_empty() {
        return Ok(());
    }
    let mut msg = format!(
        "architecture mismatch: the config says `{}`, which has tensors {}",
        cfg.architecture,
        expected.join(", ")
    );
    if !missing.is_empty() {
        msg.push_str(&format!("; missing: {}", missing.join(", ")));
    }
    if !unexpected.is_empty() {
        msg.push_str(&format!("; unexpected: {}", unexpected.join(", ")));
    }
    msg.push_str(&format!(
        "; the file has: {}",
        t.keys().cloned().collect::<Vec<_>>().join(", ")
    ));
    Err(Error::sae_file(path, msg))
}

fn weights_from(t: &mut loaders::TensorMap, path: &Path) -> Result<SaeWeights> {
    let take = |t: &mut loaders::TensorMap, n: &str| loaders::files::take(t, n, path);
    let w = SaeWeights {
        w_enc: take(t, "W_enc")?,
        w_dec: take(t, "W_dec")?,
        b_dec: take(t, "b_dec")?,
        b_enc: t.remove("b_enc"),
        threshold: t.remove("threshold"),
        b_gate: t.remove("b_gate"),
        b_mag: t.remove("b_mag"),
        r_mag: t.remove("r_mag"),
        w_skip: t.remove("W_skip"),
    };
    Ok(w)
}

fn check_shapes(w: &SaeWeights, cfg: &SaeConfig, path: &Path) -> Result<()> {
    let (d_in, d_sae, d_out) = (cfg.d_in, cfg.d_sae, cfg.d_out());
    let check = |name: &str, t: &Tensor, want: &[usize]| -> Result<()> {
        if t.dims() == want {
            return Ok(());
        }
        let mut hint = String::new();
        if t.rank() == 2 && want.len() == 2 && t.dims()[0] == want[1] && t.dims()[1] == want[0] {
            hint = " (it looks transposed)".into();
        }
        Err(Error::sae_file(
            path,
            format!(
                "tensor `{name}` has shape {:?}, but the config (d_in = {d_in}, d_sae = {d_sae}{}) \
                 needs {want:?}{hint}",
                t.dims(),
                if cfg.architecture.is_transcoder() {
                    format!(", d_out = {d_out}")
                } else {
                    String::new()
                }
            ),
        ))
    };
    check("W_enc", &w.w_enc, &[d_in, d_sae])?;
    check("W_dec", &w.w_dec, &[d_sae, d_out])?;
    check("b_dec", &w.b_dec, &[d_out])?;
    for (n, t) in [
        ("b_enc", &w.b_enc),
        ("threshold", &w.threshold),
        ("b_gate", &w.b_gate),
        ("b_mag", &w.b_mag),
        ("r_mag", &w.r_mag),
    ] {
        if let Some(t) = t {
            check(n, t, &[d_sae])?;
        }
    }
    if let Some(t) = &w.w_skip {
        check("W_skip", t, &[d_out, d_in])?;
    }
    Ok(())
}

fn map_weights(w: &SaeWeights, f: impl Fn(&Tensor) -> Result<Tensor>) -> Result<SaeWeights> {
    let o = |t: &Option<Tensor>| t.as_ref().map(&f).transpose();
    Ok(SaeWeights {
        w_enc: f(&w.w_enc)?,
        w_dec: f(&w.w_dec)?,
        b_dec: f(&w.b_dec)?,
        b_enc: o(&w.b_enc)?,
        threshold: o(&w.threshold)?,
        b_gate: o(&w.b_gate)?,
        b_mag: o(&w.b_mag)?,
        r_mag: o(&w.r_mag)?,
        w_skip: o(&w.w_skip)?,
    })
}

fn cast_weights(w: &SaeWeights, dtype: DType) -> Result<SaeWeights> {
    map_weights(w, |t| Ok(t.to_dtype(dtype)?.contiguous()?))
}
