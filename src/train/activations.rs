//! The activation store (SAELens's `ActivationsStore` + `mixing_buffer`): packed token rows
//! from a dataset → the hooked model with `stop_at_layer` → the hook's activations (head dims
//! flattened or one head indexed, `seqpos_slice`, special tokens dropped) → a shuffling mixing
//! buffer → `[n, d_in]` training batches.
//!
//! Everything is deterministic: the mixing buffer's `k`-th permutation is drawn from a seeded
//! RNG keyed by `(seed, k)`, so [`ActivationSource::state`] (buffer contents, counters and the
//! corpus position) and [`ActivationSource::restore`] continue the identical stream.
//!
//! ```no_run
//! use saescope::train::activations::{ActivationStore, ActivationStoreConfig};
//! use saescope::train::ActivationSource;
//! use std::sync::Arc;
//! # fn main() -> saescope::Result<()> {
//! let model = Arc::new(saescope::HookedModel::from_pretrained("smollm2")?);
//! let cfg = ActivationStoreConfig {
//!     hook_name: "blocks.15.hook_resid_post".into(),
//!     dataset_path: "default".into(), // data/corpus/ (scripts/setup_corpus.sh)
//!     n_batches_in_buffer: 64,        // buffer 64 × 128 tokens ≥ the 4096-token batch
//!     store_batch_size_prompts: 16,
//!     ..Default::default()
//! };
//! let mut store = ActivationStore::new(model, cfg)?;
//! let x = store.next_batch(4096)?; // [4096, 576] f32
//! let state = store.state()?;      // save with the checkpoint; `restore` continues exactly
//! # Ok(()) }
//! ```
pub use super::batcher::{HookSpec, LlmBatcher, RawBatch};
use super::mixing::MixingBuffer;
pub use super::store_config::{slice_indices, ActivationStoreConfig};
use super::ActivationSource;
use crate::data::RowStreamState;
use crate::error::{Error, Result};
use crate::model::{HookedModel, LoadOptions};
use candle_core::{DType, Device, Tensor};
use std::collections::HashMap;
use std::sync::Arc;

/// SAELens's `ActivationsStore` over a live model: an [`ActivationSource`] with the mixing buffer.
pub struct ActivationStore {
    cfg: ActivationStoreConfig,
    llm: LlmBatcher,
    d_in: usize,
    buffer_size: usize,
    buf: MixingBuffer,
    served_tokens: u64,
}

const STATE_VERSION: i64 = 1;

fn bytes_tensor(b: &[u8]) -> Result<Tensor> {
    Ok(Tensor::from_vec(b.to_vec(), b.len(), &Device::Cpu)?)
}

fn tensor_bytes(t: &Tensor) -> Result<Vec<u8>> {
    Ok(t.to_dtype(DType::U8)?.flatten_all()?.to_vec1()?)
}

fn rows_tensor(v: &[f32], d: usize) -> Result<Tensor> {
    Ok(Tensor::from_vec(
        v.to_vec(),
        (v.len() / d, d),
        &Device::Cpu,
    )?)
}

fn get_state<'a>(state: &'a HashMap<String, Tensor>, k: &str) -> Result<&'a Tensor> {
    state.get(k).ok_or_else(|| {
        Error::Invalid(format!(
            "activation store state lacks `{k}` (a checkpoint from another source?)"
        ))
    })
}

impl ActivationStore {
    /// Open the dataset and check the hook (an unknown hook name is an error listing the
    /// nearest valid names).
    pub fn new(model: Arc<HookedModel>, cfg: ActivationStoreConfig) -> Result<Self> {
        Self::with_options(model, cfg, &LoadOptions::default())
    }

    /// As [`ActivationStore::new`], with hub settings for `hub:` datasets.
    pub fn with_options(
        model: Arc<HookedModel>,
        cfg: ActivationStoreConfig,
        opts: &LoadOptions,
    ) -> Result<Self> {
        if !(0.0..=1.0).contains(&cfg.activations_mixing_fraction) {
            return Err(Error::Invalid(format!(
                "activations_mixing_fraction must be in [0, 1], got {}",
                cfg.activations_mixing_fraction
            )));
        }
        let llm = LlmBatcher::new(
            model,
            &cfg,
            &[(cfg.hook_name.clone(), cfg.hook_head_index)],
            opts,
        )?;
        let d_in = llm.hooks()[0].d_in;
        let buffer_size = cfg.n_batches_in_buffer * cfg.training_context_size()?;
        let buf = MixingBuffer::new(d_in, buffer_size, cfg.activations_mixing_fraction, cfg.seed);
        Ok(ActivationStore {
            cfg,
            llm,
            d_in,
            buffer_size,
            buf,
            served_tokens: 0,
        })
    }

    /// The store's configuration.
    pub fn config(&self) -> &ActivationStoreConfig {
        &self.cfg
    }
    /// SAELens's mixing `buffer_size` in tokens (`n_batches_in_buffer × training_context_size`).
    pub fn buffer_size(&self) -> usize {
        self.buffer_size
    }
    /// Tokens served so far.
    pub fn served_tokens(&self) -> u64 {
        self.served_tokens
    }
    /// LLM batches run so far.
    pub fn llm_batches(&self) -> u64 {
        self.llm.n_batches
    }
    /// The model-side batcher (model, hooks and row stream).
    pub fn batcher(&self) -> &LlmBatcher {
        &self.llm
    }

    /// SAELens's `get_batch_tokens`: the next `n` packed rows `[n, context_size]` (u32, on the
    /// model's device) from the store's own row stream (used by evals; it advances the stream).
    pub fn get_batch_tokens(&mut self, n: usize) -> Result<Tensor> {
        self.llm.next_token_batch(n)
    }

    /// One filtered LLM batch `[n, d_in]` without mixing (SAELens's `get_filtered_llm_batch`).
    pub fn get_filtered_llm_batch(&mut self) -> Result<(Vec<f32>, Vec<u32>)> {
        let mut r = self.llm.next_raw()?;
        Ok((r.acts.remove(0), r.tokens))
    }

    /// SAELens's `mixing_buffer` step: fill to `buffer_size`, permute, keep
    /// `int(buffer_size · mix_fraction)` rows, cut the rest into whole batches to serve.
    fn refill(&mut self, batch: usize) -> Result<()> {
        self.buf.reclaim(batch)?;
        while self.buf.wants_rows() {
            let (acts, _) = self.get_filtered_llm_batch()?;
            self.buf.push(&acts);
        }
        self.buf.mix_and_cut(batch);
        Ok(())
    }
}

impl ActivationSource for ActivationStore {
    fn d_in(&self) -> usize {
        self.d_in
    }

    fn next_batch(&mut self, n: usize) -> Result<Tensor> {
        if n == 0 {
            return Err(Error::Invalid("batch size must be positive".into()));
        }
        let d = self.d_in;
        if self.buf.available() < n {
            self.refill(n)?;
        }
        let out = Tensor::from_vec(self.buf.take(n).to_vec(), (n, d), &Device::Cpu)?;
        self.served_tokens += n as u64;
        Ok(out)
    }

    fn state(&self) -> Result<HashMap<String, Tensor>> {
        let d = self.d_in;
        let mut m = HashMap::new();
        let meta = serde_json::json!({
            "hook_name": self.cfg.hook_name,
            "d_in": d,
            "seed": self.cfg.seed,
            "stream": self.llm.stream_state(),
        });
        m.insert(
            "act_store.meta".into(),
            bytes_tensor(meta.to_string().as_bytes())?,
        );
        m.insert(
            "act_store.counters".into(),
            Tensor::from_vec(
                vec![
                    STATE_VERSION,
                    self.buf.refills as i64,
                    self.served_tokens as i64,
                    self.llm.n_batches as i64,
                    self.buf.stored() as i64,
                    self.buf.available() as i64,
                ],
                6,
                &Device::Cpu,
            )?,
        );
        // Zero-row tensors are avoided (one padding row, counted out by `counters`).
        let pad = |v: &[f32]| -> Result<Tensor> {
            if v.is_empty() {
                rows_tensor(&vec![0f32; d], d)
            } else {
                rows_tensor(v, d)
            }
        };
        m.insert("act_store.storage".into(), pad(&self.buf.storage)?);
        m.insert("act_store.serving".into(), pad(self.buf.unserved())?);
        Ok(m)
    }

    fn restore(&mut self, state: &HashMap<String, Tensor>) -> Result<()> {
        let meta: serde_json::Value =
            serde_json::from_slice(&tensor_bytes(get_state(state, "act_store.meta")?)?)
                .map_err(|e| Error::Invalid(format!("activation store state: bad meta ({e})")))?;
        let d = self.d_in;
        if meta["hook_name"] != self.cfg.hook_name.as_str() || meta["d_in"] != d {
            return Err(Error::Invalid(format!(
                "activation store state is for hook {} (d_in {}), this store reads {} (d_in {d})",
                meta["hook_name"], meta["d_in"], self.cfg.hook_name
            )));
        }
        let stream: RowStreamState = serde_json::from_value(meta["stream"].clone())
            .map_err(|e| Error::Invalid(format!("activation store state: bad stream ({e})")))?;
        let c: Vec<i64> = get_state(state, "act_store.counters")?
            .to_dtype(DType::I64)?
            .to_vec1()?;
        if c.len() != 6 || c[0] != STATE_VERSION {
            return Err(Error::Invalid(
                "activation store state: unknown counters layout".into(),
            ));
        }
        let rows = |k: &str, n: i64| -> Result<Vec<f32>> {
            let t = get_state(state, k)?.to_dtype(DType::F32)?;
            let mut v: Vec<f32> = t.flatten_all()?.to_vec1()?;
            v.truncate(n as usize * d);
            if v.len() != n as usize * d {
                return Err(Error::Invalid(format!(
                    "activation store state: `{k}` too short"
                )));
            }
            Ok(v)
        };
        let storage = rows("act_store.storage", c[4])?;
        let unserved = rows("act_store.serving", c[5])?;
        self.buf.restore(storage, unserved, c[1] as u64);
        self.served_tokens = c[2] as u64;
        self.llm.n_batches = c[3] as u64;
        self.llm.restore_stream(stream)?;
        Ok(())
    }
}
