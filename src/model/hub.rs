//! Hub resolution through hf-hub: TL-style aliases, downloads into the standard hub cache
//! (`models--{org}--{name}/{blobs,refs,snapshots}`), and a purely local offline mode.
//!
//! Cache location: [`LoadOptions::hub_cache_dir`], else `HF_HUB_CACHE`, else `HF_HOME/hub`,
//! else hf-hub's default. Endpoint: [`LoadOptions::hub_endpoint`], else `HF_ENDPOINT`, else
//! hf-hub's default. Offline: [`LoadOptions::offline`], else `HF_HUB_OFFLINE` in
//! {1, true, yes, on}. Revision: [`LoadOptions::revision`], else `main`.
//!
//! Like huggingface_hub (Python), a file that the hub answered 404 for is remembered as
//! `.no_exist/{commit}/{file}`, so a second call for a fully cached repo makes no request.
use crate::error::{Error, Result};
use crate::model::LoadOptions;
use hf_hub::api::sync::{ApiBuilder, ApiError, ApiRepo};
use hf_hub::{Cache, Repo, RepoType};
use std::path::{Path, PathBuf};

/// TL-style aliases → hub repo id (`gpt2`, `gpt2-small` → `gpt2`). None when not an alias.
///
/// Matching ignores case and treats `_` like `-`. Full repo ids of the known models are
/// accepted too and mapped to their canonical spelling.
pub fn resolve_alias(name: &str) -> Option<&'static str> {
    let n = name.trim().to_ascii_lowercase().replace('_', "-");
    Some(match n.as_str() {
        "gpt2" | "gpt2-small" | "gpt-2" | "gpt-2-small" | "gpt2small" | "openai-community/gpt2" => {
            "gpt2"
        }
        "gpt2-medium" | "gpt-2-medium" | "openai-community/gpt2-medium" => "gpt2-medium",
        "gpt2-large" | "gpt-2-large" | "openai-community/gpt2-large" => "gpt2-large",
        "gpt2-xl" | "gpt-2-xl" | "openai-community/gpt2-xl" => "gpt2-xl",
        "distilgpt2"
        | "distil-gpt2"
        | "distillgpt2"
        | "distill-gpt2"
        | "gpt2-xs"
        | "distilbert/distilgpt2" => "distilgpt2",
        "smollm2-135m" | "smollm2-135m-base" | "huggingfacetb/smollm2-135m" => {
            "HuggingFaceTB/SmolLM2-135M"
        }
        "smollm2-135m-instruct"
        | "smollm2-135m-it"
        | "smollm2-135m-chat"
        | "huggingfacetb/smollm2-135m-instruct" => "HuggingFaceTB/SmolLM2-135M-Instruct",
        "smollm2-360m" | "huggingfacetb/smollm2-360m" => "HuggingFaceTB/SmolLM2-360M",
        "smollm2-360m-instruct" | "huggingfacetb/smollm2-360m-instruct" => {
            "HuggingFaceTB/SmolLM2-360M-Instruct"
        }
        _ => return None,
    })
}

const CONFIG: &str = "config.json";
const WEIGHTS: &str = "model.safetensors";
const WEIGHTS_INDEX: &str = "model.safetensors.index.json";
const TOKENIZER: &str = "tokenizer.json";
/// Fetched when the repo has them; their absence is fine.
const OPTIONAL: [&str; 3] = [
    TOKENIZER,
    "tokenizer_config.json",
    "special_tokens_map.json",
];

/// The effective hub settings after applying environment defaults.
#[derive(Debug, Clone)]
pub(crate) struct HubSettings {
    pub(crate) cache_dir: PathBuf,
    pub(crate) endpoint: Option<String>,
    pub(crate) offline: bool,
    pub(crate) revision: String,
}

pub(crate) fn env_nonempty(key: &str) -> Option<String> {
    std::env::var(key)
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

fn env_truthy(key: &str) -> bool {
    env_nonempty(key)
        .is_some_and(|v| matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on"))
}

/// The hub cache directory used when `LoadOptions::hub_cache_dir` is None.
pub fn default_cache_dir() -> Result<PathBuf> {
    if let Some(p) = env_nonempty("HF_HUB_CACHE") {
        return Ok(PathBuf::from(p));
    }
    if env_nonempty("HF_HOME").is_some() {
        return Ok(Cache::from_env().path().clone());
    }
    // hf-hub's default location is under the home directory; its constructor panics without one.
    #[allow(deprecated)]
    let has_home = std::env::home_dir().is_some();
    if !has_home {
        return Err(Error::Invalid(
            "cannot locate the hub cache: no home directory; set LoadOptions::hub_cache_dir, HF_HUB_CACHE or HF_HOME".into(),
        ));
    }
    Ok(Cache::from_env().path().clone())
}

impl HubSettings {
    pub(crate) fn new(opts: &LoadOptions) -> Result<Self> {
        let cache_dir = match &opts.hub_cache_dir {
            Some(p) => p.clone(),
            None => default_cache_dir()?,
        };
        // Absolute, so the returned snapshot path does not depend on the working directory.
        let cache_dir = std::path::absolute(&cache_dir).unwrap_or(cache_dir);
        let endpoint = opts
            .hub_endpoint
            .clone()
            .or_else(|| env_nonempty("HF_ENDPOINT"))
            .map(|e| e.trim_end_matches('/').to_string());
        let offline = opts.offline.unwrap_or_else(|| env_truthy("HF_HUB_OFFLINE"));
        let revision = opts
            .revision
            .clone()
            .filter(|r| !r.trim().is_empty())
            .unwrap_or_else(|| "main".to_string());
        Ok(Self {
            cache_dir,
            endpoint,
            offline,
            revision,
        })
    }
}

/// `name` or `org/name` with letters, digits, `-`, `_`, `.` (the hub's repo id rules).
pub(crate) fn is_valid_repo_id(repo_id: &str) -> bool {
    !repo_id.is_empty()
        && repo_id.len() <= 96
        && repo_id.split('/').count() <= 2
        && repo_id
            .split('/')
            .all(|p| !p.is_empty() && p != "." && p != ".." && !p.starts_with('-'))
        && repo_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
}

fn validate_repo_id(repo_id: &str) -> Result<()> {
    if !is_valid_repo_id(repo_id) {
        return Err(Error::UnknownModel {
            name: repo_id.to_string(),
            hint: "not a valid hub repo id (expected `name` or `org/name` with letters, digits, `-`, `_`, `.`)".into(),
        });
    }
    Ok(())
}

/// A repo's location inside the hub cache, with the `.no_exist` bookkeeping hf-hub lacks.
struct CacheView {
    cache: Cache,
    repo: Repo,
    repo_dir: PathBuf,
}

impl CacheView {
    fn new(cache_dir: &Path, repo: &Repo) -> Self {
        Self {
            cache: Cache::new(cache_dir.to_path_buf()),
            repo: repo.clone(),
            repo_dir: cache_dir.join(repo.folder_name()),
        }
    }

    /// The commit the revision points to, if the cache knows it.
    fn commit(&self) -> Option<String> {
        let r = std::fs::read_to_string(self.repo_dir.join("refs").join(self.repo.revision())).ok();
        let r = r.map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
        match r {
            Some(c) => Some(c),
            // A revision that is itself a commit hash may have a snapshot without a ref file.
            None if is_commit_hash(self.repo.revision())
                && self
                    .repo_dir
                    .join("snapshots")
                    .join(self.repo.revision())
                    .is_dir() =>
            {
                Some(self.repo.revision().to_string())
            }
            None => None,
        }
    }

    fn get(&self, file: &str) -> Option<PathBuf> {
        if let Some(p) = self.cache.repo(self.repo.clone()).get(file) {
            return Some(p);
        }
        let commit = self.commit()?;
        let p = self.repo_dir.join("snapshots").join(commit).join(file);
        p.exists().then_some(p)
    }

    fn known_missing(&self, file: &str) -> bool {
        self.commit()
            .is_some_and(|c| self.repo_dir.join(".no_exist").join(c).join(file).exists())
    }

    fn mark_missing(&self, file: &str) {
        if let Some(c) = self.commit() {
            let p = self.repo_dir.join(".no_exist").join(c).join(file);
            if let Some(parent) = p.parent() {
                let _ = std::fs::create_dir_all(parent);
            }
            let _ = std::fs::write(p, b"");
        }
    }
}

fn is_commit_hash(s: &str) -> bool {
    s.len() == 40 && s.chars().all(|c| c.is_ascii_hexdigit())
}

/// How a single-file lookup ended.
enum Fetched {
    Found(PathBuf),
    /// The hub answered 404 (or the cache records the file as absent).
    Missing,
}

/// Where files come from: the network (through hf-hub) or the cache alone.
enum Source {
    Online {
        api: Box<ApiRepo>,
        endpoint_desc: String,
    },
    Offline,
}

struct Fetcher {
    repo_id: String,
    settings: HubSettings,
    view: CacheView,
    source: Source,
}

impl Fetcher {
    fn new(repo_id: &str, settings: HubSettings) -> Result<Self> {
        let repo = Repo::with_revision(
            repo_id.to_string(),
            RepoType::Model,
            settings.revision.clone(),
        );
        let view = CacheView::new(&settings.cache_dir, &repo);
        let source = if settings.offline {
            Source::Offline
        } else {
            let mut builder = ApiBuilder::from_cache(Cache::new(settings.cache_dir.clone()));
            if let Some(ep) = &settings.endpoint {
                builder = builder.with_endpoint(ep.clone());
            }
            if let Some(token) = env_nonempty("HF_TOKEN") {
                builder = builder.with_token(Some(token));
            }
            let api = builder.build().map_err(|e| Error::Hub {
                repo: repo_id.to_string(),
                file: CONFIG.into(),
                reason: format!("cannot create the hub client: {e}"),
            })?;
            let endpoint_desc = settings
                .endpoint
                .clone()
                .unwrap_or_else(|| "the default hub endpoint".to_string());
            Source::Online {
                api: Box::new(api.repo(repo)),
                endpoint_desc,
            }
        };
        Ok(Self {
            repo_id: repo_id.to_string(),
            settings,
            view,
            source,
        })
    }

    fn offline_missing(&self, file: &str, what: &str) -> Error {
        Error::Hub {
            repo: self.repo_id.clone(),
            file: file.to_string(),
            reason: format!(
                "offline mode (LoadOptions::offline or HF_HUB_OFFLINE) and {what} is not in the hub cache at {} \
                 (revision `{}`); fix: unset HF_HUB_OFFLINE / set offline to false to download it, or populate the cache \
                 (e.g. run once online, or copy a `{}` folder into that cache directory)",
                self.settings.cache_dir.display(),
                self.settings.revision,
                self.view.repo.folder_name(),
            ),
        }
    }

    /// Resolve one file: cache first, then (online) the hub.
    fn fetch(&self, file: &str) -> Result<Fetched> {
        if let Some(p) = self.view.get(file) {
            return Ok(Fetched::Found(p));
        }
        if self.view.known_missing(file) {
            return Ok(Fetched::Missing);
        }
        let (api, endpoint_desc) = match &self.source {
            Source::Offline => return Ok(Fetched::Missing),
            Source::Online { api, endpoint_desc } => (api, endpoint_desc),
        };
        let url = api.url(file);
        // hf-hub has a few internal asserts/unwraps; a panic there must not take the caller down.
        let got = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| api.get(file)))
            .map_err(|_| {
                self.hub_err(
                    file,
                    format!("the hub client panicked while fetching {url}"),
                )
            })?;
        match got {
            Ok(p) => Ok(Fetched::Found(p)),
            Err(e) => {
                let (status, msg) = classify(e);
                match status {
                    Some(404) => {
                        self.view.mark_missing(file);
                        Ok(Fetched::Missing)
                    }
                    Some(401) | Some(403) => Err(self.hub_err(
                        file,
                        format!(
                            "access denied ({msg}) at {url}: the repo may be gated or private; accept its terms and \
                             provide a token (HF_TOKEN, or the `token` file next to the hub cache)"
                        ),
                    )),
                    Some(code) => Err(self.hub_err(file, format!("HTTP status {code} from {url}: {msg}"))),
                    None => Err(self.hub_err(
                        file,
                        format!(
                            "{msg} (endpoint: {endpoint_desc}, cache: {}); if the files are already cached, set \
                             LoadOptions::offline = Some(true) or HF_HUB_OFFLINE=1",
                            self.settings.cache_dir.display()
                        ),
                    )),
                }
            }
        }
    }

    fn hub_err(&self, file: &str, reason: String) -> Error {
        Error::Hub {
            repo: self.repo_id.clone(),
            file: file.to_string(),
            reason,
        }
    }

    fn require(&self, file: &str, what: &str) -> Result<PathBuf> {
        match self.fetch(file)? {
            Fetched::Found(p) => Ok(p),
            Fetched::Missing => Err(match &self.source {
                Source::Offline => self.offline_missing(file, what),
                Source::Online { api, .. } => self.hub_err(
                    file,
                    format!(
                        "not found (404) at {}: check the model name `{}` and the revision `{}`",
                        api.url(file),
                        self.repo_id,
                        self.settings.revision
                    ),
                ),
            }),
        }
    }

    fn run(&self) -> Result<PathBuf> {
        let config = self.require(CONFIG, "config.json")?;
        let snapshot = config.parent().map(Path::to_path_buf).ok_or_else(|| {
            self.hub_err(
                CONFIG,
                format!("unexpected cache path {}", config.display()),
            )
        })?;
        let mut files: Vec<(String, PathBuf)> = vec![(CONFIG.to_string(), config.clone())];

        match self.fetch(WEIGHTS)? {
            Fetched::Found(p) => files.push((WEIGHTS.to_string(), p)),
            Fetched::Missing => match self.fetch(WEIGHTS_INDEX)? {
                Fetched::Found(index) => {
                    let shards = shard_names(&index)?;
                    files.push((WEIGHTS_INDEX.to_string(), index));
                    for s in shards {
                        let p = self.require(&s, &format!("weight shard `{s}` (listed in {WEIGHTS_INDEX})"))?;
                        files.push((s, p));
                    }
                }
                Fetched::Missing => {
                    return Err(match &self.source {
                        Source::Offline => self.offline_missing(WEIGHTS, "neither model.safetensors nor model.safetensors.index.json"),
                        Source::Online { .. } => self.hub_err(
                            WEIGHTS,
                            format!(
                                "the repo has neither {WEIGHTS} nor {WEIGHTS_INDEX} at revision `{}` (only safetensors \
                                 weights are supported; pytorch_model.bin is not)",
                                self.settings.revision
                            ),
                        ),
                    })
                }
            },
        }
        // Optional files: absent is fine, and so is failing to get them (e.g. a complete
        // hand-made cache while the network is down); the model loader reports what it lacks.
        for f in OPTIONAL {
            if let Ok(Fetched::Found(p)) = self.fetch(f) {
                files.push((f.to_string(), p));
            }
        }
        // If the revision moved between downloads, files can sit in different snapshots:
        // link the strays into the config's snapshot so one directory holds everything.
        for (name, p) in &files {
            let want = snapshot.join(name);
            if !want.exists() {
                link_or_copy(p, &want).map_err(|e| {
                    self.hub_err(
                        name,
                        format!(
                            "cannot place {} into snapshot {}: {e}",
                            p.display(),
                            snapshot.display()
                        ),
                    )
                })?;
            }
        }
        Ok(snapshot)
    }
}

/// The shard file names listed in a `model.safetensors.index.json` (`weight_map` values).
fn shard_names(index: &Path) -> Result<Vec<String>> {
    let bytes = std::fs::read(index).map_err(|e| Error::io(index, e))?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).map_err(|source| Error::Json {
        path: index.to_path_buf(),
        source,
    })?;
    let map = v
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| Error::model_file(index, "no `weight_map` object"))?;
    let mut names: Vec<String> = Vec::new();
    for (tensor, f) in map {
        let f = f.as_str().ok_or_else(|| {
            Error::model_file(
                index,
                format!("weight_map entry for `{tensor}` is not a file name"),
            )
        })?;
        if f.is_empty() || f.starts_with('/') || f.split('/').any(|c| c == "..") {
            return Err(Error::model_file(
                index,
                format!("weight_map entry for `{tensor}` has an unsafe file name `{f}`"),
            ));
        }
        if !names.iter().any(|n| n == f) {
            names.push(f.to_string());
        }
    }
    if names.is_empty() {
        return Err(Error::model_file(index, "`weight_map` is empty"));
    }
    names.sort();
    Ok(names)
}

fn link_or_copy(src: &Path, dst: &Path) -> std::io::Result<()> {
    if let Some(parent) = dst.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let target = std::fs::canonicalize(src)?;
    #[cfg(unix)]
    {
        if std::os::unix::fs::symlink(&target, dst).is_ok() {
            return Ok(());
        }
    }
    std::fs::copy(&target, dst).map(|_| ())
}

/// The HTTP status (if the server answered) and a readable message for an hf-hub error.
fn classify(e: ApiError) -> (Option<u16>, String) {
    let msg = e.to_string();
    match e {
        ApiError::RequestError(inner) => {
            let status = (*inner).into_response().map(|r| r.status());
            (status, msg)
        }
        ApiError::MissingHeader(h) => (
            None,
            format!("{msg}: the server did not answer like a model hub (missing `{h}` header on the file request)"),
        ),
        _ => (None, msg),
    }
}

/// Download (or find in the hub cache) the files of a model repo and return the snapshot directory
/// holding `config.json`, the safetensors weights (single or sharded) and `tokenizer.json` if any.
///
/// `tokenizer_config.json` and `special_tokens_map.json` come along when the repo has them.
/// With `offline`, nothing is requested and every required file must already be cached.
pub fn fetch_model_files(repo_id: &str, opts: &LoadOptions) -> Result<PathBuf> {
    validate_repo_id(repo_id)?;
    let settings = HubSettings::new(opts)?;
    Fetcher::new(repo_id, settings)?.run()
}

/// Files of any hub repo (SAE repos, ...), with the same cache / endpoint / offline / revision
/// settings as [`fetch_model_files`]. `file` paths may contain `/` (files in sub-folders).
pub(crate) struct RepoFetcher {
    inner: Fetcher,
}

impl RepoFetcher {
    pub(crate) fn new(repo_id: &str, opts: &LoadOptions) -> Result<Self> {
        validate_repo_id(repo_id)?;
        let settings = HubSettings::new(opts)?;
        Ok(Self {
            inner: Fetcher::new(repo_id, settings)?,
        })
    }

    fn check_file(&self, file: &str) -> Result<()> {
        if file.is_empty()
            || file.starts_with('/')
            || file.contains('\\')
            || file
                .split('/')
                .any(|c| c.is_empty() || c == "." || c == "..")
        {
            return Err(self
                .inner
                .hub_err(file, "not a valid file path inside a repo".into()));
        }
        Ok(())
    }

    /// A file that must exist (cache first, then the hub).
    pub(crate) fn require(&self, file: &str) -> Result<PathBuf> {
        self.check_file(file)?;
        self.inner.require(file, &format!("`{file}`"))
    }

    /// A file the repo may lack: `None` when the hub answers 404 (or, offline, when it is not
    /// cached).
    pub(crate) fn optional(&self, file: &str) -> Result<Option<PathBuf>> {
        self.check_file(file)?;
        Ok(match self.inner.fetch(file)? {
            Fetched::Found(p) => Some(p),
            Fetched::Missing => None,
        })
    }
}
