//! Per-layer transcoders trained from one streamed model pass (as EleutherAI's sparsify
//! trains every layer at once): each batch of context windows runs through the model once,
//! with the `2 × layers` hooks cached (stopping after the last layer needed), and every layer's
//! `(input, target)` pairs feed that layer's own trainer (its RNG stream, optimiser, dead-latent
//! counters, small mixing buffer and checkpoint). Nothing is cached on disk.
//!
//! Semantics (SAELens transcoders, `crate::sae` documents inference): input
//! `blocks.L.ln2.hook_normalized` of the processed model (the norm weight folded into `W_in`),
//! target `blocks.L.hook_mlp_out`; `h = x W_enc + b_enc` without `b_dec` subtraction; decode
//! `f W_dec + b_dec`; loss = `mean_b Σ_d (x̂ − y)²` plus the architecture's auxiliary loss
//! (AuxK on the residual `y − x̂`); `b_dec` initialised from the targets. With
//! `normalize_activations: expected_average_only_in` the input and the target are each
//! scaled to mean norm `√d` during training (their own factors, estimated at the start) and
//! the factors are folded into the saved weights. `batchtopk` (fused
//! CPU step) is saved as SAELens's `jumprelu_transcoder` with batchtopk's threshold
//! convention (`threshold = θ`, the EMA of the smallest active pre-activation, after the
//! decoder-norm fold), `jumprelu` likewise, `standard` as `transcoder`.
//!
//! ```no_run
//! use saescope::train::transcoders::{run_transcoders, TranscodersConfig};
//! # fn main() -> saescope::Result<()> {
//! let cfg = TranscodersConfig::from_file("configs/smollm2-transcoders.json".as_ref())?;
//! let transcoders = run_transcoders(&cfg)?; // or resume_transcoders(dir) after a kill
//! # Ok(()) }
//! ```
//!
//! # Run folder (`output_path`)
//!
//! - `transcoders_cfg.json`: the run config (written first; [`resume_transcoders`] reads it);
//! - `layer_LL/`: one trainer's folder: `runner_cfg.json` (the layer's derived config),
//!   `metrics.jsonl`, and at the end the transcoder in SAELens's folder format (`cfg.json`,
//!   `sae_weights.safetensors`, `sparsity.safetensors`) and `plots/`;
//! - `checkpoint/step_NNNNNNNN/`: the latest resumable state, one file per layer (the
//!   trainer's checkpoint with its mixing buffer) and `stream.json` (the corpus position);
//!   `checkpoint/LATEST` names it and is replaced atomically after every file is written, so
//!   a kill at any moment leaves a complete checkpoint. Resuming reproduces the uninterrupted
//!   run bit for bit;
//! - `progress.jsonl`: per logging step, throughput (tokens/s, model-pass and trainer time)
//!   and losses averaged over layers.
use crate::error::{Error, Result};
use crate::sae::Architecture;
use crate::train::config::{RunnerConfig, TrainSaeConfig};
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};

mod checkpoint;
mod progress;
mod run;
mod state;

pub use run::{resume_transcoders, run_transcoders};
pub use state::TranscoderRun;

/// File name of the run config in a transcoder run folder.
pub const TRANSCODERS_CFG: &str = "transcoders_cfg.json";

/// Default input hook template.
pub const DEFAULT_HOOK_IN: &str = "blocks.{layer}.ln2.hook_normalized";
/// Default target hook template.
pub const DEFAULT_HOOK_OUT: &str = "blocks.{layer}.hook_mlp_out";

/// The config of a multi-layer transcoder run: SAELens runner-config fields (the template of
/// every layer's [`RunnerConfig`]) plus the layers and the width.
///
/// ```json
/// { "model_name": "smollm2",
///   "hook_name": "blocks.{layer}.ln2.hook_normalized",
///   "hook_name_out": "blocks.{layer}.hook_mlp_out",
///   "layers": null, "expansion_factor": 2,
///   "sae": { "architecture": "batchtopk", "k": 32 },
///   "training_tokens": 3000000, "train_batch_size_tokens": 2048,
///   "save_weights_dtype": "float16", "output_path": "data/runs/smollm2-transcoders" }
/// ```
///
/// Defaults beyond [`RunnerConfig`]'s: the hooks above, every layer, the processed model
/// (`model_from_pretrained_kwargs` with `fold_ln`, `center_writing_weights`, `center_unembed`,
/// `fold_value_biases`: what `HookedModel::from_pretrained` gives, where the transcoders are
/// used), `apply_b_dec_to_input` false. `sae.d_in` / `sae.d_out` left at 0 / unset are the
/// hooks' widths; `sae.d_sae` 0 is `expansion_factor × d_in`. Layer `L` trains with seed
/// `seed + L`.
#[derive(Clone, Debug, PartialEq)]
pub struct TranscodersConfig {
    /// Every other field: the per-layer template (`hook_name` / `hook_name_out` with
    /// `{layer}`; `output_path` = the run folder).
    pub runner: RunnerConfig,
    /// Layers to train (`null` = all of the model's).
    pub layers: Option<Vec<usize>>,
    /// `d_sae = expansion_factor · d_in` when `sae.d_sae` is 0.
    pub expansion_factor: Option<f64>,
}

impl TranscodersConfig {
    /// Parse a JSON config (see the type's docs).
    pub fn from_json_str(s: &str) -> Result<Self> {
        let v: Value = serde_json::from_str(s)
            .map_err(|e| Error::Config(format!("transcoder config is not valid JSON: {e}")))?;
        Self::from_value(v)
    }

    /// Read a JSON config file.
    pub fn from_file(path: &Path) -> Result<Self> {
        let s = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::from_json_str(&s).map_err(|e| match e {
            Error::Config(m) => Error::Config(format!("{}: {m}", path.display())),
            e => e,
        })
    }

    /// Parse a config value.
    pub fn from_value(v: Value) -> Result<Self> {
        let Value::Object(mut m) = v else {
            return Err(Error::Config(
                "transcoder config must be a JSON object".into(),
            ));
        };
        let layers = match m.remove("layers") {
            None | Some(Value::Null) => None,
            Some(v) => Some(
                serde_json::from_value::<Vec<usize>>(v)
                    .map_err(|e| Error::Config(format!("layers: {e}")))?,
            ),
        };
        let expansion_factor = match m.remove("expansion_factor") {
            None | Some(Value::Null) => None,
            Some(v) => Some(
                v.as_f64()
                    .ok_or_else(|| Error::Config("expansion_factor must be a number".into()))?,
            ),
        };
        let explicit_centring = m
            .get("sae")
            .and_then(|s| s.get("apply_b_dec_to_input"))
            .and_then(Value::as_bool)
            == Some(true);
        if explicit_centring {
            return Err(Error::Config(
                "sae.apply_b_dec_to_input: transcoders encode their input without b_dec subtraction; set it to false or leave it out".into(),
            ));
        }
        for (k, d) in [
            ("hook_name", DEFAULT_HOOK_IN),
            ("hook_name_out", DEFAULT_HOOK_OUT),
        ] {
            m.entry(k).or_insert_with(|| d.into());
        }
        if m.get("model_from_pretrained_kwargs")
            .is_none_or(Value::is_null)
        {
            let mut kw = Map::new();
            for k in [
                "fold_ln",
                "center_writing_weights",
                "center_unembed",
                "fold_value_biases",
            ] {
                kw.insert(k.into(), true.into());
            }
            m.insert("model_from_pretrained_kwargs".into(), Value::Object(kw));
        }
        let mut runner = RunnerConfig::parse_value(Value::Object(m))?;
        runner.sae.apply_b_dec_to_input = false;
        let cfg = TranscodersConfig {
            runner,
            layers,
            expansion_factor,
        };
        cfg.check()?;
        Ok(cfg)
    }

    /// The JSON form (`transcoders_cfg.json`): the runner fields in SAELens's layout plus
    /// `layers` and `expansion_factor`.
    pub fn to_value(&self) -> Value {
        let mut v = self.runner.to_saelens_value();
        if let Value::Object(m) = &mut v {
            m.insert("layers".into(), serde_json::json!(self.layers));
            m.insert(
                "expansion_factor".into(),
                serde_json::json!(self.expansion_factor),
            );
        }
        v
    }

    /// The run folder.
    pub fn output_dir(&self) -> Result<PathBuf> {
        self.runner
            .output_path
            .as_ref()
            .map(PathBuf::from)
            .ok_or_else(|| Error::Config("the transcoder config needs an output_path".into()))
    }

    /// Checks that do not need the model (the per-layer configs are checked in full when the
    /// hooks' widths are known).
    fn check(&self) -> Result<()> {
        let r = &self.runner;
        let hooks = [Some(&r.store.hook_name), r.store.hook_name_out.as_ref()];
        let templated = hooks.iter().flatten().all(|h| h.contains("{layer}"));
        if !templated && self.layers.as_ref().is_none_or(|l| l.len() != 1) {
            return Err(Error::Config(
                "hook_name and hook_name_out must contain `{layer}` to train several layers".into(),
            ));
        }
        if r.sae.d_sae == 0 && self.expansion_factor.is_none_or(|e| e <= 0.0) {
            return Err(Error::Config(
                "set sae.d_sae or a positive expansion_factor".into(),
            ));
        }
        if r.use_cached_activations || r.synthetic.is_some() {
            return Err(Error::Config(
                "transcoders train from a live model pass (no activation cache, no synthetic data)"
                    .into(),
            ));
        }
        if self.layers.as_ref().is_some_and(|l| l.is_empty()) {
            return Err(Error::Config("layers is empty".into()));
        }
        let mut sae = r.sae.clone();
        sae.d_out = Some(sae.d_out.unwrap_or(1).max(1));
        sae.validate_transcoder()
    }

    /// Layer `layer`'s full config: hook names filled in, widths `d_in` → `d_out`, seed
    /// `seed + layer`, run folder `<output_path>/layer_LL`.
    pub fn layer_config(&self, layer: usize, d_in: usize, d_out: usize) -> Result<RunnerConfig> {
        let mut c = self.runner.clone();
        let fill = |t: &str| t.replace("{layer}", &layer.to_string());
        c.store.hook_name = fill(&c.store.hook_name);
        c.store.hook_name_out = Some(fill(c.store.hook_name_out.as_deref().unwrap_or("")));
        c.store.seed = self.runner.store.seed.wrapping_add(layer as u64);
        if c.sae.d_in == 0 {
            c.sae.d_in = d_in;
        }
        if c.sae.d_out.is_none_or(|d| d == 0) {
            c.sae.d_out = Some(d_out);
        }
        if (c.sae.d_in, c.sae.d_out) != (d_in, Some(d_out)) {
            return Err(Error::Config(format!(
                "sae.d_in / d_out = {} / {:?}, but the hooks of layer {layer} are {d_in} → {d_out} wide",
                c.sae.d_in, c.sae.d_out
            )));
        }
        if c.sae.d_sae == 0 {
            c.sae.d_sae = (self.expansion_factor.unwrap_or(0.0) * d_in as f64).round() as usize;
        }
        c.sae.apply_b_dec_to_input = false;
        c.output_path = Some(layer_dir(&self.output_dir()?, layer).display().to_string());
        c.progress_bar = false;
        c.validate()?;
        Ok(c)
    }
}

/// `<dir>/layer_LL` (two digits, more for models with ≥ 100 layers).
pub fn layer_dir(dir: &Path, layer: usize) -> PathBuf {
    dir.join(format!("layer_{layer:02}"))
}

impl TrainSaeConfig {
    /// A transcoder: `d_out` is set (it reconstructs another hook).
    pub fn is_transcoder(&self) -> bool {
        self.d_out.is_some()
    }

    /// Width of what the decoder reconstructs: `d_out`, or `d_in` for an SAE.
    pub fn d_out(&self) -> usize {
        self.d_out.unwrap_or(self.d_in)
    }

    /// Transcoder checks (nothing for SAEs).
    pub(crate) fn validate_transcoder(&self) -> Result<()> {
        let Some(d_out) = self.d_out else {
            return Ok(());
        };
        let bad = |m: String| Err(Error::Config(format!("sae: {m}")));
        if d_out == 0 {
            return bad("d_out must be positive".into());
        }
        if self.apply_b_dec_to_input {
            return bad("transcoders encode their input without b_dec subtraction; set apply_b_dec_to_input to false".into());
        }
        if !matches!(
            self.architecture,
            Architecture::BatchTopK | Architecture::JumpRelu | Architecture::Standard
        ) {
            return bad(format!(
                "architecture `{}` cannot be trained as a transcoder (SAELens has ReLU and JumpReLU transcoders): use batchtopk (saved as jumprelu_transcoder), jumprelu or standard",
                self.architecture
            ));
        }
        if self.reshape_activations != "none" {
            return bad("transcoders need reshape_activations `none`".into());
        }
        Ok(())
    }
}

impl RunnerConfig {
    /// Transcoder checks: `hook_name_out` and `sae.d_out` together, no resampling, a valid
    /// `save_weights_dtype`.
    pub(crate) fn validate_transcoder_run(&self) -> Result<()> {
        crate::train::trainer::save_weights_dtype(self.save_weights_dtype.as_deref())?;
        let bad = |m: &str| Err(Error::Config(m.to_string()));
        match (self.sae.d_out.is_some(), self.store.hook_name_out.is_some()) {
            (true, false) => {
                return bad("sae.d_out is set (a transcoder) but hook_name_out is not")
            }
            (false, true) => {
                return bad("hook_name_out is set (a transcoder) but sae.d_out is not")
            }
            _ => {}
        }
        if self.sae.is_transcoder() && self.resample_dead.is_some() {
            return bad("resample_dead is not supported for transcoders");
        }
        Ok(())
    }
}
