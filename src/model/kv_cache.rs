//! The key/value cache of incremental decoding, TransformerLens's
//! `TransformerLensKeyValueCache`: per layer the keys and values of every position seen so far,
//! so that a forward pass over new tokens computes only their positions.
//!
//! As in TL, the keys are cached *before* the rotary embedding (after `hook_k`), and each pass
//! rotates the whole key sequence again: `hook_rot_k` then has the full key length, while
//! `hook_q`, `hook_k`, `hook_v`, `hook_rot_q`, `hook_z` and every residual hook have the new
//! positions only, and `hook_attn_scores` / `hook_pattern` are `[batch, head, new, total]`.
use crate::error::{Error, Result};
use candle_core::Tensor;

/// One layer's cached keys and values, `[batch, pos, n_kv_heads, d_head]`.
#[derive(Clone, Default)]
pub(crate) struct LayerKv {
    pub k: Option<Tensor>,
    pub v: Option<Tensor>,
}

impl LayerKv {
    /// Positions held.
    pub fn len(&self) -> usize {
        self.k.as_ref().map_or(0, |k| k.dims()[1])
    }

    /// Append the new positions' keys and values; returns the whole sequences.
    pub fn append(&mut self, k: Tensor, v: Tensor) -> Result<(Tensor, Tensor)> {
        let (k, v) = match (&self.k, &self.v) {
            (Some(pk), Some(pv)) => (Tensor::cat(&[pk, &k], 1)?, Tensor::cat(&[pv, &v], 1)?),
            _ => (k.contiguous()?, v.contiguous()?),
        };
        self.k = Some(k.clone());
        self.v = Some(v.clone());
        Ok((k, v))
    }
}

/// A key/value cache for [`crate::HookedModel::forward_with_kv_cache`] and generation (TL's
/// `past_kv_cache`). A pass appends its positions only when it completes, so a pass that fails
/// leaves the cache as it was.
#[derive(Clone)]
pub struct KvCache {
    pub(crate) layers: Vec<LayerKv>,
    pub(crate) batch: Option<usize>,
    pub(crate) len: usize,
}

impl KvCache {
    /// An empty cache for a model with `n_layers` blocks.
    pub fn new(n_layers: usize) -> Self {
        KvCache {
            layers: vec![LayerKv::default(); n_layers],
            batch: None,
            len: 0,
        }
    }

    /// Positions cached (TL's `pos_offset` of the next pass).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no position is cached yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Batch size of the cached sequences (None while empty).
    pub fn batch_size(&self) -> Option<usize> {
        self.batch
    }

    /// Number of layers the cache is for.
    pub fn n_layers(&self) -> usize {
        self.layers.len()
    }

    /// Cached keys of `layer`, `[batch, pos, n_kv_heads, d_head]`, before the rotary embedding.
    pub fn keys(&self, layer: usize) -> Option<&Tensor> {
        self.layers.get(layer).and_then(|l| l.k.as_ref())
    }

    /// Cached values of `layer`, `[batch, pos, n_kv_heads, d_head]`.
    pub fn values(&self, layer: usize) -> Option<&Tensor> {
        self.layers.get(layer).and_then(|l| l.v.as_ref())
    }

    /// Forget every position.
    pub fn clear(&mut self) {
        let n = self.layers.len();
        *self = KvCache::new(n);
    }

    /// Check that a pass over `[batch, new]` tokens can extend this cache.
    pub(crate) fn check(&self, n_layers: usize, batch: usize) -> Result<()> {
        if self.layers.len() != n_layers {
            return Err(Error::Invalid(format!(
                "KV cache has {} layers but the model has {n_layers}; make it with model.new_kv_cache()",
                self.layers.len()
            )));
        }
        if let Some(b) = self.batch {
            if b != batch {
                return Err(Error::Invalid(format!(
                    "KV cache holds batch size {b}, but the tokens have batch size {batch}"
                )));
            }
        }
        Ok(())
    }
}

impl std::fmt::Debug for KvCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KvCache")
            .field("n_layers", &self.layers.len())
            .field("batch", &self.batch)
            .field("len", &self.len)
            .finish()
    }
}
