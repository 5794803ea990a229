//! A set of per-layer transcoders (circuit-tracer's `TranscoderSet`): one transcoder for every
//! block's MLP, each reading `blocks.L.ln2.hook_normalized` and writing `blocks.L.hook_mlp_out`.
use crate::error::{Error, Result};
use crate::hooks::HookName;
use crate::model::HookedModel;
use crate::sae::Sae;
use std::path::{Path, PathBuf};

/// The transcoders shipped with saescope: one BatchTopK (k = 32) transcoder per layer of
/// SmolLM2-135M-Instruct, 576 → 1152 → 576, stored as SAELens `jumprelu_transcoder` folders
/// in float16, trained by `scripts/train_transcoders.sh` (evals in its `eval.json`).
pub const SHIPPED_TRANSCODERS: &str = "data/transcoders/smollm2-mlp-batchtopk-k32-1152";

/// Per-layer transcoders replacing every MLP of a model (circuit-tracer's `TranscoderSet`).
#[derive(Clone, Debug)]
pub struct TranscoderSet {
    /// One transcoder per layer, in layer order.
    pub transcoders: Vec<Sae>,
    /// Where they were loaded from (for messages), if anywhere.
    pub source: Option<PathBuf>,
}

/// [`SHIPPED_TRANSCODERS`] inside this crate's source tree (where `cargo` and evcxr's `:dep`
/// find it).
pub fn shipped_transcoders_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(SHIPPED_TRANSCODERS)
}

impl TranscoderSet {
    /// The shipped SmolLM2 set ([`SHIPPED_TRANSCODERS`], inside this crate's source tree).
    pub fn shipped() -> Result<Self> {
        let dir = shipped_transcoders_dir();
        if !dir.is_dir() {
            return Err(Error::Invalid(format!(
                "the shipped transcoders are missing from {}; restore them with `git checkout \
                 {SHIPPED_TRANSCODERS}` or retrain them with scripts/train_transcoders.sh",
                dir.display()
            )));
        }
        Self::load(dir)
    }

    /// Read the transcoders in `dir`: one SAELens transcoder folder per layer, named
    /// `layer_{L}` (or any sub-folders whose transcoders read `blocks.L.…`), sorted by layer.
    pub fn load(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|e| {
                Error::Invalid(format!(
                    "cannot read the transcoder folder {}: {e}; pass a folder holding one \
                     transcoder folder per layer (layer_0, layer_1, …)",
                    dir.display()
                ))
            })?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_dir())
            .collect();
        entries.sort();
        let mut transcoders = entries
            .iter()
            .map(|p| Sae::load(p))
            .collect::<Result<Vec<_>>>()?;
        transcoders.sort_by_key(|t| HookName::parse(t.hook_name()).layer);
        if transcoders.is_empty() {
            return Err(Error::Invalid(format!(
                "no transcoder folders in {}; expected layer_0, layer_1, … (SAELens folders)",
                dir.display()
            )));
        }
        Ok(TranscoderSet {
            transcoders,
            source: Some(dir.to_path_buf()),
        })
    }

    /// A set from transcoders already in memory (in layer order).
    pub fn new(transcoders: Vec<Sae>) -> Self {
        TranscoderSet {
            transcoders,
            source: None,
        }
    }

    /// The number of layers covered.
    pub fn len(&self) -> usize {
        self.transcoders.len()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.transcoders.is_empty()
    }

    /// The transcoder of `layer`.
    pub fn layer(&self, layer: usize) -> &Sae {
        &self.transcoders[layer]
    }

    /// Check that the set replaces every MLP of `model`: one transcoder per layer, reading
    /// `blocks.L.ln2.hook_normalized` and writing `blocks.L.hook_mlp_out`, widths d_model.
    /// The error names both the set and the model.
    pub fn check_fits(&self, model: &HookedModel) -> Result<()> {
        let cfg = model.cfg();
        let what = || {
            format!(
                "the transcoder set{} does not fit model `{}` ({} layers, d_model {})",
                self.source
                    .as_ref()
                    .map(|p| format!(" {}", p.display()))
                    .unwrap_or_default(),
                cfg.model_name,
                cfg.n_layers,
                cfg.d_model
            )
        };
        if self.len() != cfg.n_layers {
            return Err(Error::Invalid(format!(
                "{}: it has {} transcoders, one per layer is needed",
                what(),
                self.len()
            )));
        }
        for (l, t) in self.transcoders.iter().enumerate() {
            let want_in = format!("blocks.{l}.ln2.hook_normalized");
            let want_out = format!("blocks.{l}.hook_mlp_out");
            if !t.is_transcoder() || t.hook_name() != want_in || t.hook_name_out() != want_out {
                return Err(Error::Invalid(format!(
                    "{}: transcoder {l} reads `{}` and writes `{}`; expected `{want_in}` → \
                     `{want_out}`",
                    what(),
                    t.hook_name(),
                    t.hook_name_out()
                )));
            }
            if t.d_in() != cfg.d_model || t.d_out() != cfg.d_model {
                return Err(Error::Invalid(format!(
                    "{}: transcoder {l} maps width {} → {}, the model's d_model is {}",
                    what(),
                    t.d_in(),
                    t.d_out(),
                    cfg.d_model
                )));
            }
        }
        Ok(())
    }
}

impl TranscoderSet {
    /// Write the set in circuit-tracer's transcoder-set layout to `dir`: `layer_{L}.safetensors`
    /// (`W_enc [d_sae, d_in]`, `W_dec [d_sae, d_out]`, `b_enc`, `b_dec`,
    /// `activation_function.threshold` for JumpReLU, `W_skip` for skip transcoders; f32) and a
    /// `config.yaml` (`model_kind: transcoder_set`, the hooks, `scan`, the files). Upload the
    /// folder to a hub repo and circuit-tracer's `ReplacementModel.from_pretrained(model,
    /// "org/repo")` reads it; locally, `load_transcoder_set({L: path})` does. circuit-tracer's
    /// JumpReLU is `x·(x > θ)` and it never subtracts `b_dec` from the input, so SAELens's
    /// `apply_b_dec_to_input` is folded into `b_enc`.
    pub fn save_circuit_tracer(&self, dir: impl AsRef<Path>, scan: &str) -> Result<()> {
        use candle_core::{DType, Tensor};
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::Invalid(format!("cannot create {}: {e}", dir.display())))?;
        let mut files = Vec::new();
        for (l, t) in self.transcoders.iter().enumerate() {
            if !t.is_transcoder() {
                return Err(Error::Invalid(format!(
                    "layer {l}: `{}` is not a transcoder",
                    t.hook_name()
                )));
            }
            let f32 = |x: &Tensor| -> Result<Tensor> { Ok(x.to_dtype(DType::F32)?.contiguous()?) };
            let w_enc = f32(t.w_enc())?;
            let mut b_enc = f32(t.b_enc().ok_or_else(|| {
                Error::Invalid(format!("layer {l}: the transcoder has no b_enc"))
            })?)?;
            if t.cfg().apply_b_dec_to_input {
                let shift = f32(t.b_dec())?.unsqueeze(0)?.matmul(&w_enc)?.squeeze(0)?;
                b_enc = (b_enc - shift)?;
            }
            let mut tensors = vec![
                ("W_enc".to_string(), w_enc.t()?.contiguous()?),
                ("W_dec".to_string(), f32(t.w_dec())?),
                ("b_enc".to_string(), b_enc),
                ("b_dec".to_string(), f32(t.b_dec())?),
            ];
            if let Some(th) = t.threshold() {
                tensors.push(("activation_function.threshold".into(), f32(th)?));
            }
            if let Some(ws) = t.w_skip() {
                tensors.push(("W_skip".into(), f32(ws)?));
            }
            let name = format!("layer_{l}.safetensors");
            let map: std::collections::HashMap<String, Tensor> = tensors.into_iter().collect();
            candle_core::safetensors::save(&map, dir.join(&name))?;
            files.push(name);
        }
        let mut yaml = String::from("model_kind: transcoder_set\n");
        yaml.push_str("feature_input_hook: ln2.hook_normalized\n");
        yaml.push_str("feature_output_hook: hook_mlp_out\n");
        yaml.push_str(&format!("scan: {scan}\n"));
        yaml.push_str("transcoders:\n");
        for f in &files {
            yaml.push_str(&format!("  - {f}\n"));
        }
        std::fs::write(dir.join("config.yaml"), yaml).map_err(|e| {
            Error::Invalid(format!(
                "cannot write {}: {e}",
                dir.join("config.yaml").display()
            ))
        })?;
        Ok(())
    }
}
