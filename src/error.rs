//! The crate's typed error. Every message says what went wrong and, where there is one, the fix.
use std::path::PathBuf;

/// Errors returned by saescope's library API.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A hook name that the model does not have; `suggestions` are the nearest valid names.
    #[error("unknown hook name `{name}`; nearest valid names: {}", suggestions.join(", "))]
    UnknownHook {
        /// The hook name that was asked for.
        name: String,
        /// Valid hook names closest to `name` (edit distance), best first.
        suggestions: Vec<String>,
    },

    /// A model file that is missing, truncated or corrupt.
    #[error("cannot load model file {}: {reason}", path.display())]
    ModelFile {
        /// Path of the model file (GGUF, safetensors, config.json, ...).
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },

    /// A model name or alias that cannot be resolved.
    #[error("unknown model `{name}`: {hint}")]
    UnknownModel {
        /// The model name, alias or path that was given.
        name: String,
        /// Why it did not resolve and what to try instead (aliases, path or `owner/name`).
        hint: String,
    },

    /// A config value that saescope does not support (or that is inconsistent).
    #[error("unsupported model config: {0}")]
    Config(String),

    /// Tokenizer problems (loading, encoding, a string that is not a single token, ...).
    #[error("tokenizer: {0}")]
    Tokenizer(String),

    /// Shape or argument errors in API calls, with the numbers involved.
    #[error("{0}")]
    Invalid(String),

    /// Downloading through the hub (hf-hub) failed.
    #[error("hub download of `{repo}/{file}` failed: {reason}")]
    Hub {
        /// Hub repo id (`owner/name`).
        repo: String,
        /// File in the repo that was being fetched.
        file: String,
        /// Why the download failed (client setup, network, offline mode with a cache miss, ...).
        reason: String,
    },

    /// An SAE file (config, weights, sparsity) that is missing, truncated, corrupt or
    /// inconsistent with its config (e.g. tensors of another architecture).
    #[error("cannot load SAE file {}: {reason}", path.display())]
    SaeFile {
        /// Path of the SAE file (cfg.json, sae_weights.safetensors, sparsity.safetensors, ...).
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },

    /// An SAE config value that is invalid or unsupported (unknown architecture, dtype, ...), or an
    /// operation the SAE's architecture does not support.
    #[error("SAE config: {0}")]
    SaeConfig(String),

    /// A pretrained SAE release or SAE id that is not in the directory; `hint` lists what exists.
    #[error("unknown SAE {what}: {hint}")]
    UnknownSae {
        /// What was not found: a release name, or an SAE id within a named release.
        what: String,
        /// The releases or SAE ids that do exist.
        hint: String,
    },

    /// An error from candle (tensor op, device, dtype, safetensors), passed through unchanged.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),

    /// Reading or writing a file or directory failed.
    #[error("I/O error on {}: {source}", path.display())]
    Io {
        /// The file or directory being read or written.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },

    /// A request to a chat-completions server that failed (after its retries), with why and,
    /// where there is one, the fix.
    #[error("chat completion request to {url} failed: {reason}")]
    Llm {
        /// The endpoint (`{base_url}/chat/completions`).
        url: String,
        /// What went wrong.
        reason: String,
    },

    /// A JSON file (config, tokenizer, metadata) that cannot be parsed or written.
    #[error("JSON error in {}: {source}", path.display())]
    Json {
        /// The JSON file being parsed or written.
        path: PathBuf,
        /// The underlying serde_json error.
        source: serde_json::Error,
    },
}

/// `Result` with saescope's [`Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn model_file(path: impl Into<PathBuf>, reason: impl std::fmt::Display) -> Self {
        Error::ModelFile {
            path: path.into(),
            reason: reason.to_string(),
        }
    }
    pub(crate) fn sae_file(path: impl Into<PathBuf>, reason: impl std::fmt::Display) -> Self {
        Error::SaeFile {
            path: path.into(),
            reason: reason.to_string(),
        }
    }
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}
