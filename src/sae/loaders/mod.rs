//! On-disk SAE formats, one file per format, each a port of the matching SAELens loader
//! (`NAMED_PRETRAINED_SAE_LOADERS`, spec §B.6). A loader reads its files through a
//! `FileSource` (a local directory or a hub repo) and returns a `RawSae`: a config object in
//! SAELens's layout (flat/pre-6.0 or 6.x; [`crate::sae::SaeConfig::from_json_value`] converts
//! it) and the tensors under SAELens's names.
use crate::error::{Error, Result};
use candle_core::Tensor;
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};

pub(crate) mod dictionary_learning;
pub(crate) mod files;
pub(crate) mod gemma_scope;
pub(crate) mod gemma_scope_2;
pub(crate) mod other;
pub(crate) mod saelens;
pub(crate) mod sparsify;

pub(crate) use files::TensorMap;

/// The on-disk formats [`crate::sae::Sae::load`] recognises.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SaeFormat {
    /// SAELens folder: `cfg.json` + `sae_weights.safetensors` (+ `sparsity.safetensors`).
    SaeLens,
    /// Gemma Scope (`gemma_2`): `params.npz`.
    GemmaScope,
    /// Gemma Scope transcoders (`gemma_2_transcoder`): `params.npz`.
    GemmaScopeTranscoder,
    /// Gemma Scope 2 (`gemma_3`): `params.safetensors` (+ optional `config.json`).
    GemmaScope2,
    /// EleutherAI sparsify: `sae.safetensors` + `cfg.json`.
    Sparsify,
    /// dictionary_learning (`dictionary_learning_1`): `ae.pt` + `config.json`.
    DictionaryLearning,
    /// Llama Scope: `hyperparams.json` + `checkpoints/final.safetensors`.
    LlamaScope,
}

impl SaeFormat {
    /// The SAELens conversion function name (`conversion_func` in the pretrained directory).
    pub fn conversion_func(&self) -> &'static str {
        match self {
            SaeFormat::SaeLens => "sae_lens",
            SaeFormat::GemmaScope => "gemma_2",
            SaeFormat::GemmaScopeTranscoder => "gemma_2_transcoder",
            SaeFormat::GemmaScope2 => "gemma_3",
            SaeFormat::Sparsify => "sparsify",
            SaeFormat::DictionaryLearning => "dictionary_learning_1",
            SaeFormat::LlamaScope => "llama_scope",
        }
    }
}

/// A loaded-but-unconverted SAE.
pub(crate) struct RawSae {
    /// Config in SAELens's loader layout (converted by `SaeConfig::from_json_value`).
    pub cfg: Map<String, Value>,
    /// Tensors under SAELens's names.
    pub tensors: TensorMap,
    /// `sparsity.safetensors` (`log10` firing frequencies) and its path, if any.
    pub sparsity: Option<(Tensor, PathBuf)>,
    /// The weights file (for error messages).
    pub weights_path: PathBuf,
    /// The file the config came from (for error messages): `cfg.json` and the like, or the
    /// weights file when the config is derived from the tensors (and the folder name); `None`
    /// for tensors given in memory.
    pub cfg_path: Option<PathBuf>,
}

/// Where a loader's files come from.
pub(crate) trait FileSource {
    /// A file that must exist (path relative to the source root, `/`-separated).
    fn require(&self, rel: &str) -> Result<PathBuf>;
    /// A file that may be absent.
    fn optional(&self, rel: &str) -> Result<Option<PathBuf>>;
}

/// A local directory.
pub(crate) struct LocalDir(pub PathBuf);

impl FileSource for LocalDir {
    fn require(&self, rel: &str) -> Result<PathBuf> {
        let p = self.0.join(rel);
        if p.is_file() {
            Ok(p)
        } else {
            let listing = list_dir(p.parent().unwrap_or(&self.0));
            Err(Error::sae_file(
                &p,
                format!("file not found (the folder has: {listing})"),
            ))
        }
    }
    fn optional(&self, rel: &str) -> Result<Option<PathBuf>> {
        let p = self.0.join(rel);
        Ok(p.is_file().then_some(p))
    }
}

/// A hub repo (downloads through `crate::model::hub`).
pub(crate) struct HubRepo(pub crate::model::hub::RepoFetcher);

impl FileSource for HubRepo {
    fn require(&self, rel: &str) -> Result<PathBuf> {
        self.0.require(rel)
    }
    fn optional(&self, rel: &str) -> Result<Option<PathBuf>> {
        self.0.optional(rel)
    }
}

/// What a loader is asked to load.
pub(crate) struct LoadCtx<'a> {
    pub src: &'a dyn FileSource,
    /// The hub repo id (or the best local guess; may be empty).
    pub repo_id: &'a str,
    /// The SAE's folder inside the source (`""` for a local directory).
    pub folder: &'a str,
    /// The string the SAELens loaders parse for layer / width / hook (the folder name on the
    /// hub; the directory path for local loads).
    pub hint: &'a str,
    /// Release `config_overrides` (+ `neuronpedia_id`, `dtype`, ...), merged into the config.
    pub overrides: &'a Map<String, Value>,
}

impl LoadCtx<'_> {
    /// `folder/name`.
    pub fn file(&self, name: &str) -> String {
        join(self.folder, name)
    }
    pub fn apply_overrides(&self, cfg: &mut Map<String, Value>) {
        for (k, v) in self.overrides {
            cfg.insert(k.clone(), v.clone());
        }
    }
}

pub(crate) fn join(folder: &str, name: &str) -> String {
    let f = folder.trim_matches('/');
    if f.is_empty() {
        name.to_string()
    } else {
        format!("{f}/{name}")
    }
}

pub(crate) type LoaderFn = fn(&LoadCtx) -> Result<RawSae>;

/// The loader for a SAELens `conversion_func` name.
pub(crate) fn loader_for(conversion_func: &str) -> Result<LoaderFn> {
    Ok(match conversion_func {
        "sae_lens" => saelens::load,
        "gemma_2" => gemma_scope::load,
        "gemma_2_transcoder" => gemma_scope::load_transcoder,
        "gemma_3" => gemma_scope_2::load,
        "sparsify" => sparsify::load,
        "dictionary_learning_1" => dictionary_learning::load,
        "connor_rob_hook_z" => other::load_connor_rob_hook_z,
        "llama_scope" => other::load_llama_scope,
        "llama_scope_r1_distill" => other::load_llama_scope_r1_distill,
        "deepseek_r1" => other::load_deepseek_r1,
        "goodfire" => other::load_goodfire,
        other => {
            return Err(Error::SaeConfig(format!(
                "SAELens conversion `{other}` is not supported by saescope; supported: {}",
                SUPPORTED_CONVERSIONS.join(", ")
            )))
        }
    })
}

pub(crate) const SUPPORTED_CONVERSIONS: [&str; 11] = [
    "sae_lens",
    "gemma_2",
    "gemma_2_transcoder",
    "gemma_3",
    "sparsify",
    "dictionary_learning_1",
    "connor_rob_hook_z",
    "llama_scope",
    "llama_scope_r1_distill",
    "deepseek_r1",
    "goodfire",
];

/// The format of a local SAE directory, from the files it holds.
pub(crate) fn detect_format(dir: &Path) -> Result<SaeFormat> {
    let has = |f: &str| dir.join(f).is_file();
    let s = dir.to_string_lossy().to_ascii_lowercase();
    if has("sae_weights.safetensors") || (has("cfg.json") && !has("sae.safetensors")) {
        return Ok(SaeFormat::SaeLens);
    }
    if has("params.npz") {
        return Ok(if s.contains("transcoder") {
            SaeFormat::GemmaScopeTranscoder
        } else {
            SaeFormat::GemmaScope
        });
    }
    if has("params.safetensors") {
        return Ok(SaeFormat::GemmaScope2);
    }
    if has("sae.safetensors") {
        return Ok(SaeFormat::Sparsify);
    }
    if has("ae.pt") {
        return Ok(SaeFormat::DictionaryLearning);
    }
    if has("hyperparams.json") {
        return Ok(SaeFormat::LlamaScope);
    }
    Err(Error::sae_file(
        dir,
        format!(
            "not a recognised SAE folder (it has: {}); expected one of: cfg.json + \
             sae_weights.safetensors (SAELens), params.npz (Gemma Scope), params.safetensors \
             (Gemma Scope 2), cfg.json + sae.safetensors (sparsify), ae.pt + config.json \
             (dictionary_learning), hyperparams.json (Llama Scope)",
            list_dir(dir)
        ),
    ))
}

fn list_dir(dir: &Path) -> String {
    match std::fs::read_dir(dir) {
        Ok(rd) => {
            let mut v: Vec<String> = rd
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect();
            v.sort();
            if v.is_empty() {
                "nothing".into()
            } else {
                v.join(", ")
            }
        }
        Err(_) => "(folder does not exist)".into(),
    }
}

/// The `layer_(\d+)` number in a string.
pub(crate) fn find_number_after(s: &str, prefix: &str) -> Option<usize> {
    let mut rest = s;
    while let Some(i) = rest.find(prefix) {
        let after = &rest[i + prefix.len()..];
        let digits: String = after.chars().take_while(|c| c.is_ascii_digit()).collect();
        if !digits.is_empty() {
            return digits.parse().ok();
        }
        rest = &rest[i + prefix.len()..];
    }
    None
}

/// A hub repo id guessed from a local path: a hub-cache `models--org--name` component.
pub(crate) fn repo_id_from_path(p: &Path) -> Option<String> {
    p.components().find_map(|c| {
        let s = c.as_os_str().to_string_lossy();
        s.strip_prefix("models--")
            .map(|r| r.splitn(2, "--").collect::<Vec<_>>().join("/"))
    })
}

/// Read a JSON object.
pub(crate) fn read_json_object(path: &Path) -> Result<Map<String, Value>> {
    match super::config::read_json(path)? {
        Value::Object(m) => Ok(m),
        other => Err(Error::sae_file(
            path,
            format!("expected a JSON object, got {}", kind(&other)),
        )),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A required field of a JSON object.
pub(crate) fn field<'a>(m: &'a Map<String, Value>, key: &str, path: &Path) -> Result<&'a Value> {
    m.get(key)
        .ok_or_else(|| Error::sae_file(path, format!("missing key `{key}`")))
}

/// A required non-negative integer field.
pub(crate) fn field_usize(m: &Map<String, Value>, key: &str, path: &Path) -> Result<usize> {
    let v = field(m, key, path)?;
    v.as_u64()
        .map(|u| u as usize)
        .or_else(|| {
            v.as_f64()
                .filter(|f| *f >= 0.0 && f.fract() == 0.0)
                .map(|f| f as usize)
        })
        .ok_or_else(|| Error::sae_file(path, format!("`{key}` should be an integer, got {v}")))
}

/// Build a JSON object from pairs.
pub(crate) fn obj(pairs: Vec<(&str, Value)>) -> Map<String, Value> {
    pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}
