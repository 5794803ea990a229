//! An on-disk activation cache, so several SAEs train from one model pass.
//!
//! A cache directory holds `shard_00000.safetensors`, `shard_00001.safetensors`, ... (tensors
//! `activations` `[n_tokens, d_in]` and `token_ids` `[n_tokens]` u32) and `manifest.json`
//! ([`ActCacheManifest`]: model, hook, dtype, context_size, counts, the store settings used).
//! Rows are per token, in corpus order, after `seqpos_slice` and special-token exclusion.
//! Several hooks from one pass give one such directory per hook.
//!
//! [`CachedActivations`] reads a cache back as an [`ActivationSource`]: per epoch a seeded
//! order of the shards, taken `window_shards` at a time; each window's rows are served in a
//! seeded permutation. The position is three integers (epoch, window, cursor), so state and
//! restore are exact.
use super::activations::{ActivationStoreConfig, LlmBatcher};
use super::ActivationSource;
use crate::error::{Error, Result};
use crate::model::{HookedModel, LoadOptions};
use crate::rng::{derive_seed, permutation};
use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// File name of a cache directory's manifest.
pub const MANIFEST: &str = "manifest.json";
/// Format tag written to and required in [`ActCacheManifest::format`].
pub const FORMAT: &str = "saescope-activation-cache/1";

/// One shard file of a cache, as listed in the manifest.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ShardInfo {
    /// Shard file name, relative to the cache directory (`shard_NNNNN.safetensors`).
    pub file: String,
    /// Activation rows (tokens) in the shard.
    pub n_tokens: usize,
}

/// `manifest.json` of a cache directory.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ActCacheManifest {
    /// Format tag; must equal [`FORMAT`].
    pub format: String,
    /// Name of the model the activations came from.
    pub model: String,
    /// Hook point the activations were read at (SAELens `hook_name`).
    pub hook_name: String,
    /// Attention head selected at the hook, if any (SAELens `hook_head_index`).
    pub hook_head_index: Option<usize>,
    /// Width of each activation row.
    pub d_in: usize,
    /// Stored dtype of `activations` (always `float32`).
    pub dtype: String,
    /// Tokens per LLM row the model was run on (SAELens `context_size`).
    pub context_size: usize,
    /// Tokens per full LLM row after `seqpos_slice` (SAELens's `training_context_size`).
    pub training_context_size: usize,
    /// Whether each LLM row started with BOS (SAELens `prepend_bos`).
    pub prepend_bos: bool,
    /// Name of the dataset the rows were packed from.
    pub dataset: String,
    /// Token ids whose activations were dropped.
    pub excluded_token_ids: Vec<u32>,
    /// Activation rows in all shards together.
    pub n_tokens: u64,
    /// LLM rows (prompts) run through the model.
    pub n_sequences: u64,
    /// Rows per full shard (the last shard may hold fewer).
    pub shard_tokens: usize,
    /// The shards, in corpus order.
    pub shards: Vec<ShardInfo>,
    /// False while writing (or after a crash).
    pub complete: bool,
    /// The store settings used to produce it.
    pub store: ActivationStoreConfig,
}

impl ActCacheManifest {
    /// Read and check `dir/manifest.json` (errors if missing or of another format).
    pub fn read(dir: &Path) -> Result<Self> {
        let p = dir.join(MANIFEST);
        let b = std::fs::read(&p).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Error::Invalid(format!(
                    "{} is not an activation cache (no {MANIFEST}); create one with `saescope cache-activations`",
                    dir.display()
                ))
            } else {
                Error::io(&p, e)
            }
        })?;
        let m: Self = serde_json::from_slice(&b).map_err(|source| Error::Json {
            path: p.clone(),
            source,
        })?;
        if m.format != FORMAT {
            return Err(Error::Invalid(format!(
                "{}: unknown cache format `{}` (expected `{FORMAT}`)",
                p.display(),
                m.format
            )));
        }
        Ok(m)
    }

    fn write(&self, dir: &Path) -> Result<()> {
        let p = dir.join(MANIFEST);
        let tmp = dir.join(format!("{MANIFEST}.tmp"));
        let s = serde_json::to_string_pretty(self).map_err(|source| Error::Json {
            path: p.clone(),
            source,
        })?;
        std::fs::write(&tmp, s + "\n").map_err(|e| Error::io(&tmp, e))?;
        std::fs::rename(&tmp, &p).map_err(|e| Error::io(&p, e))
    }
}

/// Writes one cache directory shard by shard.
pub struct ActCacheWriter {
    dir: PathBuf,
    manifest: ActCacheManifest,
    pending: Vec<f32>,
    pending_tokens: Vec<u32>,
}

impl ActCacheWriter {
    /// Start a cache in `dir` (created; old shards and manifest there are removed).
    pub fn create(dir: &Path, mut manifest: ActCacheManifest) -> Result<Self> {
        if manifest.shard_tokens == 0 {
            return Err(Error::Invalid("shard_tokens must be positive".into()));
        }
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        for e in std::fs::read_dir(dir)
            .map_err(|e| Error::io(dir, e))?
            .flatten()
        {
            let name = e.file_name().to_string_lossy().to_string();
            if (name.starts_with("shard_") && name.ends_with(".safetensors")) || name == MANIFEST {
                std::fs::remove_file(e.path()).map_err(|err| Error::io(e.path(), err))?;
            }
        }
        manifest.format = FORMAT.into();
        manifest.dtype = "float32".into();
        manifest.n_tokens = 0;
        manifest.n_sequences = 0;
        manifest.shards.clear();
        manifest.complete = false;
        manifest.write(dir)?;
        Ok(ActCacheWriter {
            dir: dir.to_path_buf(),
            manifest,
            pending: Vec::new(),
            pending_tokens: Vec::new(),
        })
    }

    /// The manifest as written so far.
    pub fn manifest(&self) -> &ActCacheManifest {
        &self.manifest
    }
    /// Rows pushed so far, including those not yet flushed to a shard.
    pub fn n_tokens(&self) -> u64 {
        self.manifest.n_tokens + self.pending_tokens.len() as u64
    }

    /// Append rows (`acts` row-major `[tokens.len(), d_in]`).
    pub fn push(&mut self, acts: &[f32], tokens: &[u32]) -> Result<()> {
        let d = self.manifest.d_in;
        if acts.len() != tokens.len() * d {
            return Err(Error::Invalid(format!(
                "cache push: {} activation values for {} tokens of width {d}",
                acts.len(),
                tokens.len()
            )));
        }
        self.pending.extend_from_slice(acts);
        self.pending_tokens.extend_from_slice(tokens);
        while self.pending_tokens.len() >= self.manifest.shard_tokens {
            self.flush_shard(self.manifest.shard_tokens)?;
        }
        Ok(())
    }

    /// Count `n` more LLM rows in the manifest's `n_sequences`.
    pub fn add_sequences(&mut self, n: u64) {
        self.manifest.n_sequences += n;
    }

    fn flush_shard(&mut self, n: usize) -> Result<()> {
        if n == 0 {
            return Ok(());
        }
        let d = self.manifest.d_in;
        let acts: Vec<f32> = self.pending.drain(..n * d).collect();
        let toks: Vec<u32> = self.pending_tokens.drain(..n).collect();
        let file = format!("shard_{:05}.safetensors", self.manifest.shards.len());
        let path = self.dir.join(&file);
        let tmp = self.dir.join(format!("{file}.tmp"));
        let mut m = HashMap::new();
        m.insert(
            "activations".to_string(),
            Tensor::from_vec(acts, (n, d), &Device::Cpu)?,
        );
        m.insert(
            "token_ids".to_string(),
            Tensor::from_vec(toks, n, &Device::Cpu)?,
        );
        candle_core::safetensors::save(&m, &tmp)?;
        std::fs::rename(&tmp, &path).map_err(|e| Error::io(&path, e))?;
        self.manifest.shards.push(ShardInfo { file, n_tokens: n });
        self.manifest.n_tokens += n as u64;
        self.manifest.write(&self.dir)
    }

    /// Write the last (partial) shard and mark the cache complete.
    pub fn finish(mut self) -> Result<ActCacheManifest> {
        let n = self.pending_tokens.len();
        self.flush_shard(n)?;
        self.manifest.complete = true;
        self.manifest.write(&self.dir)?;
        Ok(self.manifest)
    }
}

/// Settings of [`cache_activations`] besides the store config.
#[derive(Clone, Debug)]
pub struct CacheJob {
    /// `(hook name, head index)` per hook; one directory per hook.
    pub hooks: Vec<(String, Option<usize>)>,
    /// Tokens to cache (per hook; the last LLM batch is cut to this).
    pub n_tokens: u64,
    /// Output directory (one subdirectory per hook when caching several hooks).
    pub out: PathBuf,
    /// Rows per shard file.
    pub shard_tokens: usize,
    /// Model name recorded in the manifest.
    pub model_name: String,
}

/// The directory of `hook` under `out` when caching several hooks (`out/<hook_name>`).
pub fn hook_dir(out: &Path, hook: &str, n_hooks: usize) -> PathBuf {
    if n_hooks == 1 {
        out.to_path_buf()
    } else {
        out.join(hook)
    }
}

/// Run the model over the dataset once and write `job.n_tokens` tokens of activations for each
/// hook. `progress(done_tokens)` is called after every LLM batch. Returns one manifest per hook.
pub fn cache_activations(
    model: Arc<HookedModel>,
    cfg: &ActivationStoreConfig,
    job: &CacheJob,
    opts: &LoadOptions,
    progress: &mut dyn FnMut(u64),
) -> Result<Vec<ActCacheManifest>> {
    if job.n_tokens == 0 {
        return Err(Error::Invalid("--tokens must be positive".into()));
    }
    let mut llm = LlmBatcher::new(model, cfg, &job.hooks, opts)?;
    let excluded = cfg.exclude_special_tokens.ids(llm.model().tokenizer()?);
    let tcs = cfg.training_context_size()?;
    let n_hooks = llm.hooks().len();
    let mut writers = Vec::new();
    for h in llm.hooks() {
        let mut store = cfg.clone();
        store.hook_name = h.name.clone();
        store.hook_head_index = h.head_index;
        let m = ActCacheManifest {
            format: FORMAT.into(),
            model: job.model_name.clone(),
            hook_name: h.name.clone(),
            hook_head_index: h.head_index,
            d_in: h.d_in,
            dtype: "float32".into(),
            context_size: cfg.context_size,
            training_context_size: tcs,
            prepend_bos: cfg.prepend_bos,
            dataset: llm.rows().dataset().name.clone(),
            excluded_token_ids: excluded.clone(),
            n_tokens: 0,
            n_sequences: 0,
            shard_tokens: job.shard_tokens,
            shards: Vec::new(),
            complete: false,
            store,
        };
        writers.push(ActCacheWriter::create(
            &hook_dir(&job.out, &h.name, n_hooks),
            m,
        )?);
    }
    let mut done = 0u64;
    let seqs = cfg.store_batch_size_prompts as u64;
    while done < job.n_tokens {
        let raw = llm.next_raw()?;
        let take = (raw.tokens.len() as u64).min(job.n_tokens - done) as usize;
        for (w, (a, h)) in writers.iter_mut().zip(raw.acts.iter().zip(llm.hooks())) {
            w.push(&a[..take * h.d_in], &raw.tokens[..take])?;
            w.add_sequences(seqs);
        }
        done += take as u64;
        progress(done);
    }
    writers.into_iter().map(|w| w.finish()).collect()
}

/// A cache directory read back as an [`ActivationSource`] (seeded shuffled batches, exact resume).
pub struct CachedActivations {
    dir: PathBuf,
    manifest: ActCacheManifest,
    seed: Option<u64>,
    window_shards: usize,
    epoch: u64,
    window: usize,
    cursor: usize,
    /// (epoch, window) → its rows and their serving order.
    loaded: Option<(u64, usize, Vec<f32>, Vec<u32>)>,
}

impl CachedActivations {
    /// Open `dir`; `seed` None → rows in file order, Some → seeded shuffling (4 shards per window).
    pub fn open(dir: impl AsRef<Path>, seed: Option<u64>) -> Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        let manifest = ActCacheManifest::read(&dir)?;
        let mp = dir.join(MANIFEST);
        if !manifest.complete {
            return Err(Error::Invalid(format!(
                "activation cache {} is incomplete (interrupted while writing?); rerun `saescope cache-activations`",
                mp.display()
            )));
        }
        if manifest.n_tokens == 0 || manifest.shards.is_empty() {
            return Err(Error::Invalid(format!(
                "activation cache {} lists no tokens",
                mp.display()
            )));
        }
        // Each shard's rows are checked against the manifest when it is read; here the
        // manifest itself must add up (an empty shard or width would never yield a row).
        let listed: u64 = manifest.shards.iter().map(|s| s.n_tokens as u64).sum();
        if manifest.d_in == 0
            || manifest.shards.iter().any(|s| s.n_tokens == 0)
            || listed != manifest.n_tokens
        {
            return Err(Error::Invalid(format!(
                "activation cache {} is corrupt: d_in = {}, n_tokens = {}, shards of {:?} tokens",
                mp.display(),
                manifest.d_in,
                manifest.n_tokens,
                manifest
                    .shards
                    .iter()
                    .map(|s| s.n_tokens)
                    .collect::<Vec<_>>()
            )));
        }
        for s in &manifest.shards {
            if !dir.join(&s.file).is_file() {
                return Err(Error::Invalid(format!(
                    "activation cache {}: shard {} listed in {MANIFEST} is missing",
                    dir.display(),
                    s.file
                )));
            }
        }
        Ok(CachedActivations {
            dir,
            manifest,
            seed,
            window_shards: 4,
            epoch: 0,
            window: 0,
            cursor: 0,
            loaded: None,
        })
    }

    /// Shards shuffled together (memory: `window_shards × shard_tokens × d_in × 4` bytes).
    pub fn with_window_shards(mut self, k: usize) -> Self {
        self.window_shards = k.max(1);
        self.loaded = None;
        self
    }

    /// The cache's manifest.
    pub fn manifest(&self) -> &ActCacheManifest {
        &self.manifest
    }
    /// Completed passes over the cache.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    fn n_windows(&self) -> usize {
        self.manifest.shards.len().div_ceil(self.window_shards)
    }

    /// Read one shard: activations (row-major) and token ids.
    pub fn read_shard(&self, i: usize) -> Result<(Vec<f32>, Vec<u32>)> {
        let s = self.manifest.shards.get(i).ok_or_else(|| {
            Error::Invalid(format!(
                "activation cache {}: no shard {i} (it has {})",
                self.dir.display(),
                self.manifest.shards.len()
            ))
        })?;
        let p = self.dir.join(&s.file);
        let bad = |m: String| Error::Invalid(format!("cache shard {}: {m}", p.display()));
        let m = candle_core::safetensors::load(&p, &Device::Cpu)
            .map_err(|e| Error::Invalid(format!("cannot read cache shard {}: {e}", p.display())))?;
        let a = m
            .get("activations")
            .ok_or_else(|| bad("no `activations`".into()))?;
        if a.dims() != [s.n_tokens, self.manifest.d_in] {
            return Err(bad(format!(
                "activations {:?}, {MANIFEST} says [{}, {}]",
                a.dims(),
                s.n_tokens,
                self.manifest.d_in
            )));
        }
        let as_vec = |t: &Tensor, dtype: DType| t.to_dtype(dtype)?.flatten_all();
        let acts: Vec<f32> = as_vec(a, DType::F32)
            .and_then(|t| t.to_vec1())
            .map_err(|e| bad(format!("activations: {e}")))?;
        let toks: Vec<u32> = match m.get("token_ids") {
            Some(t) if t.dims() == [s.n_tokens] => as_vec(t, DType::U32)
                .and_then(|t| t.to_vec1())
                .map_err(|e| bad(format!("token_ids: {e}")))?,
            Some(t) => {
                return Err(bad(format!(
                    "token_ids {:?}, {MANIFEST} says [{}]",
                    t.dims(),
                    s.n_tokens
                )))
            }
            None => Vec::new(),
        };
        Ok((acts, toks))
    }

    /// The shards of `window` in `epoch`, in reading order.
    fn window_shards_of(&self, epoch: u64, window: usize) -> Vec<usize> {
        let n_shards = self.manifest.shards.len();
        let order: Vec<u32> = match self.seed {
            Some(s) => permutation(n_shards, derive_seed(s, &[epoch])),
            None => (0..n_shards as u32).collect(),
        };
        let k = self.window_shards;
        order
            .iter()
            .skip(window.saturating_mul(k))
            .take(k)
            .map(|&i| i as usize)
            .collect()
    }

    fn ensure_loaded(&mut self) -> Result<()> {
        if matches!(&self.loaded, Some((e, w, _, _)) if *e == self.epoch && *w == self.window) {
            return Ok(());
        }
        let mut rows = Vec::new();
        for si in self.window_shards_of(self.epoch, self.window) {
            rows.extend(self.read_shard(si)?.0);
        }
        let n = rows.len() / self.manifest.d_in;
        let perm = match self.seed {
            Some(s) => permutation(n, derive_seed(s, &[self.epoch, self.window as u64, 1])),
            None => (0..n as u32).collect(),
        };
        self.loaded = Some((self.epoch, self.window, rows, perm));
        Ok(())
    }
}

impl ActivationSource for CachedActivations {
    fn d_in(&self) -> usize {
        self.manifest.d_in
    }

    fn next_batch(&mut self, n: usize) -> Result<Tensor> {
        let d = self.manifest.d_in;
        // Reserved once the first window is read: its shape has been checked against d_in.
        let mut out = Vec::new();
        let mut need = n;
        while need > 0 {
            self.ensure_loaded()?;
            out.reserve_exact((n * d).saturating_sub(out.len()));
            let (_, _, rows, perm) = self.loaded.as_ref().expect("loaded");
            if self.cursor > perm.len() {
                return Err(Error::Invalid(format!(
                    "activation cache {}: position {} is past the {} rows of window {} (a state from another cache?)",
                    self.dir.display(),
                    self.cursor,
                    perm.len(),
                    self.window
                )));
            }
            let avail = perm.len() - self.cursor;
            let take = avail.min(need);
            for &i in &perm[self.cursor..self.cursor + take] {
                let i = i as usize;
                out.extend_from_slice(&rows[i * d..(i + 1) * d]);
            }
            self.cursor += take;
            need -= take;
            if self.cursor == perm.len() {
                self.cursor = 0;
                self.window += 1;
                if self.window >= self.n_windows() {
                    self.window = 0;
                    self.epoch += 1;
                }
            }
        }
        Ok(Tensor::from_vec(out, (n, d), &Device::Cpu)?)
    }

    fn state(&self) -> Result<HashMap<String, Tensor>> {
        let mut m = HashMap::new();
        m.insert(
            "act_cache.pos".into(),
            Tensor::from_vec(
                vec![
                    self.epoch as i64,
                    self.window as i64,
                    self.cursor as i64,
                    self.window_shards as i64,
                    self.manifest.n_tokens as i64,
                    self.manifest.d_in as i64,
                ],
                6,
                &Device::Cpu,
            )?,
        );
        Ok(m)
    }

    fn restore(&mut self, state: &HashMap<String, Tensor>) -> Result<()> {
        let t = state.get("act_cache.pos").ok_or_else(|| {
            Error::Invalid("state lacks `act_cache.pos` (not from an activation cache?)".into())
        })?;
        let v: Vec<i64> = t.to_dtype(DType::I64)?.to_vec1()?;
        if v.len() != 6 {
            return Err(Error::Invalid("act_cache.pos: unknown layout".into()));
        }
        if v[4] as u64 != self.manifest.n_tokens || v[5] as usize != self.manifest.d_in {
            return Err(Error::Invalid(format!(
                "state is for a cache of {} tokens × {}, this one has {} × {}",
                v[4], v[5], self.manifest.n_tokens, self.manifest.d_in
            )));
        }
        let n_shards = self.manifest.shards.len();
        let k = usize::try_from(v[3]).unwrap_or(0);
        let window = usize::try_from(v[1]).unwrap_or(usize::MAX);
        let not_here = || {
            Error::Invalid(format!(
                "act_cache.pos {v:?} is not a position in this cache of {n_shards} shards"
            ))
        };
        if v[0] < 0 || v[2] < 0 || k == 0 || window >= n_shards.div_ceil(k) {
            return Err(not_here());
        }
        let (old_k, epoch) = (self.window_shards, v[0] as u64);
        self.window_shards = k;
        let rows: usize = self
            .window_shards_of(epoch, window)
            .iter()
            .map(|&i| self.manifest.shards[i].n_tokens)
            .sum();
        if v[2] as u64 > rows as u64 {
            self.window_shards = old_k;
            return Err(not_here());
        }
        self.epoch = epoch;
        self.window = window;
        self.cursor = v[2] as usize;
        self.loaded = None;
        Ok(())
    }
}
