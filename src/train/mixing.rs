//! SAELens's `mixing_buffer` over rows of a fixed width: rows are pushed in, and when the
//! rows cut for serving run out the buffer is refilled to `buffer_size` rows, permuted (the
//! `k`-th permutation seeded by `(seed, k)`), `int(buffer_size · mix_fraction)` rows are kept
//! back and the rest is cut into whole batches to serve. The live activation store feeds it
//! from one hook; the transcoder runner keeps one per layer, fed `[input | target]` rows so
//! that the permutation keeps pairs together.
use crate::error::{Error, Result};
use crate::rng::{derive_seed, permutation};
use candle_core::{DType, Device, Tensor};
use std::collections::HashMap;

/// The mixing buffer's rows and counters (see the module docs).
#[derive(Clone, Debug)]
pub(crate) struct MixingBuffer {
    d: usize,
    buffer_size: usize,
    mix_fraction: f64,
    seed: u64,
    /// Rows waiting in the buffer (row-major `[n, d]`).
    pub(crate) storage: Vec<f32>,
    /// Rows cut from the last shuffled buffer; those before `serving_pos` are served.
    serving: Vec<f32>,
    serving_pos: usize,
    /// Buffer shuffles so far (keys the RNG of the next one).
    pub(crate) refills: u64,
}

impl MixingBuffer {
    /// An empty buffer of `d`-wide rows that mixes `buffer_size` rows at a time.
    pub(crate) fn new(d: usize, buffer_size: usize, mix_fraction: f64, seed: u64) -> Self {
        MixingBuffer {
            d,
            buffer_size,
            mix_fraction,
            seed,
            storage: Vec::new(),
            serving: Vec::new(),
            serving_pos: 0,
            refills: 0,
        }
    }

    /// Rows ready to serve.
    pub(crate) fn available(&self) -> usize {
        self.serving.len() / self.d - self.serving_pos
    }

    /// Rows waiting in the buffer (not yet cut for serving).
    pub(crate) fn stored(&self) -> usize {
        self.storage.len() / self.d
    }

    /// Whether a refill needs more rows pushed first.
    pub(crate) fn wants_rows(&self) -> bool {
        self.stored() < self.buffer_size
    }

    /// Append rows (row-major, a multiple of the width).
    pub(crate) fn push(&mut self, rows: &[f32]) {
        self.storage.extend_from_slice(rows);
    }

    /// Start a refill for batches of `batch` rows: rows cut for serving but not served go
    /// back to the front of the buffer. Then push rows while [`MixingBuffer::wants_rows`], and
    /// [`MixingBuffer::mix_and_cut`].
    pub(crate) fn reclaim(&mut self, batch: usize) -> Result<()> {
        if self.buffer_size < batch {
            return Err(Error::Invalid(format!(
                "Buffer size must be greater than or equal to batch size: n_batches_in_buffer × training_context_size = {} tokens < batch {batch} (raise n_batches_in_buffer)",
                self.buffer_size
            )));
        }
        let d = self.d;
        if self.serving_pos * d < self.serving.len() {
            let mut rest = self.serving.split_off(self.serving_pos * d);
            rest.extend_from_slice(&self.storage);
            self.storage = rest;
        }
        self.serving.clear();
        self.serving_pos = 0;
        Ok(())
    }

    /// The refill itself: permute what is stored, keep `int(buffer_size · mix_fraction)` rows
    /// back, cut the rest into whole batches to serve (at least one).
    pub(crate) fn mix_and_cut(&mut self, batch: usize) {
        let d = self.d;
        let n = self.stored();
        if self.mix_fraction > 0.0 {
            let perm = permutation(n, derive_seed(self.seed, &[0x4D49_5842, self.refills]));
            let mut shuffled = Vec::with_capacity(self.storage.len());
            for &i in &perm {
                let i = i as usize;
                shuffled.extend_from_slice(&self.storage[i * d..(i + 1) * d]);
            }
            self.storage = shuffled;
        }
        self.refills += 1;
        let keep = (self.buffer_size as f64 * self.mix_fraction) as usize;
        let num_to_serve = n.saturating_sub(keep);
        let nb = (num_to_serve / batch).max(1);
        let cutoff = nb * batch;
        let rest = self.storage.split_off(cutoff * d);
        self.serving = std::mem::replace(&mut self.storage, rest);
    }

    /// The next `n` served rows (check [`MixingBuffer::available`] first).
    pub(crate) fn take(&mut self, n: usize) -> &[f32] {
        let s = self.serving_pos * self.d;
        self.serving_pos += n;
        &self.serving[s..s + n * self.d]
    }

    /// The rows cut for serving and not yet served.
    pub(crate) fn unserved(&self) -> &[f32] {
        &self.serving[self.serving_pos * self.d..]
    }

    /// Continue from saved contents (`storage`, the unserved rows, the refill count).
    pub(crate) fn restore(&mut self, storage: Vec<f32>, unserved: Vec<f32>, refills: u64) {
        self.storage = storage;
        self.serving = unserved;
        self.serving_pos = 0;
        self.refills = refills;
    }

    /// Everything [`MixingBuffer::load_state`] needs (`mix.counters`, `mix.storage`,
    /// `mix.serving`; zero-row tensors are avoided with one padding row).
    pub(crate) fn state(&self) -> Result<HashMap<String, Tensor>> {
        let d = self.d;
        let counters = vec![
            1i64,
            self.refills as i64,
            self.stored() as i64,
            self.available() as i64,
            d as i64,
        ];
        let rows = |v: &[f32]| -> Result<Tensor> {
            let v = if v.is_empty() {
                vec![0f32; d]
            } else {
                v.to_vec()
            };
            let n = v.len() / d;
            Ok(Tensor::from_vec(v, (n, d), &Device::Cpu)?)
        };
        Ok(HashMap::from([
            (
                "mix.counters".to_string(),
                Tensor::from_vec(counters, 5, &Device::Cpu)?,
            ),
            ("mix.storage".to_string(), rows(&self.storage)?),
            ("mix.serving".to_string(), rows(self.unserved())?),
        ]))
    }

    /// Continue from a [`MixingBuffer::state`].
    pub(crate) fn load_state(&mut self, state: &HashMap<String, Tensor>) -> Result<()> {
        let get = |k: &str| {
            state
                .get(k)
                .ok_or_else(|| Error::Invalid(format!("mixing buffer state lacks `{k}`")))
        };
        let c: Vec<i64> = get("mix.counters")?.to_dtype(DType::I64)?.to_vec1()?;
        if c.len() != 5 || c[0] != 1 || c[4] != self.d as i64 {
            return Err(Error::Invalid(format!(
                "mixing buffer state: unknown layout or width (counters {c:?}, width {})",
                self.d
            )));
        }
        let rows = |k: &str, n: i64| -> Result<Vec<f32>> {
            let mut v: Vec<f32> = get(k)?.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
            v.truncate(n as usize * self.d);
            if v.len() != n as usize * self.d {
                return Err(Error::Invalid(format!(
                    "mixing buffer state: `{k}` too short"
                )));
            }
            Ok(v)
        };
        let (storage, unserved) = (rows("mix.storage", c[2])?, rows("mix.serving", c[3])?);
        self.restore(storage, unserved, c[1] as u64);
        Ok(())
    }
}
