//! Random access to an activation cache's rows (memory-mapped shards), so that the example rows
//! of a cache scan need no model pass up to the SAE's layer: their activations are read back,
//! and for loss effects only the blocks after a residual-stream hook are run
//! ([`HookedModel::run_blocks`]).
use super::source::{CacheSource, Source};
use crate::error::{Error, Result};
use crate::model::HookedModel;
use crate::sae::Sae;
use candle_core::safetensors::MmapedSafetensors;
use candle_core::{DType, Device, Tensor};
use std::collections::HashMap;

pub(crate) struct CachedRows<'a> {
    c: &'a CacheSource,
    shards: Vec<MmapedSafetensors>,
    /// Cache index of each shard's first token.
    shard_start: Vec<u64>,
    d_in: usize,
    /// SAE input at position 0 per token id (for rows starting with an uncached special token:
    /// the first position's residual depends on its token only).
    first: HashMap<u32, Vec<f32>>,
}

impl<'a> CachedRows<'a> {
    pub fn open(c: &'a CacheSource) -> Result<Self> {
        let mut shards = Vec::new();
        let mut shard_start = Vec::new();
        let mut acc = 0u64;
        for s in &c.manifest.shards {
            let p = c.dir.join(&s.file);
            // SAFETY: the shard is only read; like the model loader, this assumes the file is
            // not modified while mapped.
            let m = unsafe { MmapedSafetensors::new(&p) }.map_err(|e| {
                Error::Invalid(format!("cannot map cache shard {}: {e}", p.display()))
            })?;
            shards.push(m);
            shard_start.push(acc);
            acc += s.n_tokens as u64;
        }
        if c.manifest.dtype != "float32" {
            return Err(Error::Invalid(format!(
                "activation cache dtype `{}`: only float32 caches are supported",
                c.manifest.dtype
            )));
        }
        Ok(CachedRows {
            c,
            shards,
            shard_start,
            d_in: c.manifest.d_in,
            first: HashMap::new(),
        })
    }

    /// Whether positions `1..need` of `row` are all in the cache (position 0 may be an
    /// uncached special token, recomputed from its id).
    pub fn available(&self, row: u32, need: usize) -> bool {
        let kept = &self.c.kept[row as usize];
        let n_in = kept.partition_point(|&p| (p as usize) < need);
        let expected = if kept.first() == Some(&0) {
            need
        } else {
            need - 1
        };
        n_in == expected && self.c.row_start[row as usize] + n_in as u64 <= self.c.manifest.n_tokens
    }

    fn token(&self, i: u64, out: &mut Vec<f32>) -> Result<()> {
        let s = self.shard_start.partition_point(|&st| st <= i) - 1;
        let view = self.shards[s]
            .get("activations")
            .map_err(|e| Error::Invalid(format!("activation cache shard {s}: {e}")))?;
        let off = (i - self.shard_start[s]) as usize * self.d_in * 4;
        let bytes = &view.data()[off..off + self.d_in * 4];
        out.extend(
            bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        );
        Ok(())
    }

    fn first_position(&mut self, model: &HookedModel, sae: &Sae, id: u32) -> Result<Vec<f32>> {
        if let Some(v) = self.first.get(&id) {
            return Ok(v.clone());
        }
        let hook = sae.hook_name();
        let t = Tensor::from_vec(vec![id], (1, 1), model.device())?;
        let stop = crate::hooks::HookName::parse(hook).stop_at_layer();
        let (_, cache) = model.run(&t).names(hook).stop_at_layer(stop).cache()?;
        let v: Vec<f32> = cache
            .get(hook)?
            .to_dtype(DType::F32)?
            .flatten_all()?
            .to_vec1()?;
        self.first.insert(id, v.clone());
        Ok(v)
    }

    /// The SAE inputs of positions `0..l` of `rows` (zeros past a row's `need`), `[B, l, d_in]`.
    pub fn gather(
        &mut self,
        model: &HookedModel,
        sae: &Sae,
        src: &Source,
        rows: &[(u32, usize)],
        l: usize,
    ) -> Result<Tensor> {
        let d = self.d_in;
        let mut out = Vec::with_capacity(rows.len() * l * d);
        for &(r, need) in rows {
            let kept = &self.c.kept[r as usize];
            let start = self.c.row_start[r as usize];
            let before = out.len();
            if kept.first() != Some(&0) {
                let id = src.rows[r as usize][0];
                out.extend(self.first_position(model, sae, id)?);
            }
            for (j, &p) in kept.iter().enumerate() {
                if p as usize >= need {
                    break;
                }
                self.token(start + j as u64, &mut out)?;
            }
            if out.len() != before + need * d {
                return Err(Error::Invalid(format!(
                    "activation cache row {r}: positions 0..{need} are not all cached"
                )));
            }
            out.resize(before + l * d, 0.0);
        }
        Ok(Tensor::from_vec(out, (rows.len(), l, d), &Device::Cpu)?)
    }
}
