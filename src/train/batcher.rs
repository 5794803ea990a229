//! Token rows → the hooked model (with `stop_at_layer`) → per-hook activations: the model side
//! of the activation store, shared by the live [`super::activations::ActivationStore`] and
//! `saescope cache-activations` (several hooks from one pass).
use super::store_config::ActivationStoreConfig;
use crate::data::{PackOptions, RowStream, RowStreamState, TextDataset};
use crate::error::{Error, Result};
use crate::hooks::{nearest_names, HookName};
use crate::model::{HookedModel, LoadOptions};
use candle_core::{DType, Device, Tensor};
use std::sync::Arc;

/// A hook whose activations are extracted, and how.
#[derive(Clone, Debug)]
pub struct HookSpec {
    /// Hook point name (e.g. `blocks.5.hook_resid_post`).
    pub name: String,
    /// Attention head to keep at a `[batch, pos, head, d_head]` hook; `None` flattens the heads.
    pub head_index: Option<usize>,
    /// Width of one activation row at this hook (after head selection/flattening).
    pub d_in: usize,
}

/// Token rows → the model → per-hook `[tokens, d_in]` activations (no mixing). Shared by the
/// live store and `saescope cache-activations` (several hooks from one pass).
pub struct LlmBatcher {
    model: Arc<HookedModel>,
    rows: RowStream,
    hooks: Vec<HookSpec>,
    stop_at_layer: Option<usize>,
    positions: Vec<usize>,
    context_size: usize,
    batch_prompts: usize,
    exclude: Vec<u32>,
    /// LLM batches run so far.
    pub n_batches: u64,
}

/// One LLM batch: activations per hook (row-major `[n, d_in]`) and the tokens they belong to.
pub struct RawBatch {
    /// Activations per hook, in hook order, each row-major `[tokens.len(), d_in]`.
    pub acts: Vec<Vec<f32>>,
    /// Token id of each row (after `seqpos_slice` and special-token exclusion).
    pub tokens: Vec<u32>,
}

impl LlmBatcher {
    /// Check the hooks, open the dataset, and probe each hook's width.
    pub fn new(
        model: Arc<HookedModel>,
        cfg: &ActivationStoreConfig,
        hooks: &[(String, Option<usize>)],
        opts: &LoadOptions,
    ) -> Result<Self> {
        if hooks.is_empty() {
            return Err(Error::Invalid("no hook given".into()));
        }
        for (h, _) in hooks {
            if !model.hook_names().iter().any(|n| n == h) {
                return Err(Error::UnknownHook {
                    name: h.clone(),
                    suggestions: nearest_names(h, model.hook_names().iter().map(|s| s.as_str()), 5),
                });
            }
        }
        if cfg.store_batch_size_prompts == 0 {
            return Err(Error::Invalid(
                "store_batch_size_prompts must be positive".into(),
            ));
        }
        let positions = cfg.seqpos_indices()?;
        if positions.is_empty() {
            return Err(Error::Invalid(format!(
                "seqpos_slice {:?} keeps no position of context_size {}",
                cfg.seqpos_slice, cfg.context_size
            )));
        }
        let max_ctx = model.cfg().n_ctx;
        if cfg.context_size > max_ctx {
            return Err(Error::Invalid(format!(
                "context_size {} exceeds the model's n_ctx {max_ctx}",
                cfg.context_size
            )));
        }
        let tok = model.tokenizer()?.clone();
        let exclude = cfg.exclude_special_tokens.ids(&tok);
        let ds = TextDataset::load(&cfg.dataset_path, cfg.dataset_text_field.as_deref(), opts)?;
        let pack = PackOptions::saelens(
            &tok,
            cfg.context_size,
            cfg.prepend_bos,
            cfg.sequence_separator_token,
            cfg.disable_concat_sequences,
        )?;
        let rows = RowStream::new(
            Arc::new(ds),
            Some(tok.clone()),
            pack,
            cfg.dataset_shuffle_seed,
        )?;
        let stops: Vec<Option<usize>> = hooks
            .iter()
            .map(|(h, _)| HookName::parse(h).stop_at_layer())
            .collect();
        let stop_at_layer = if stops.iter().any(|s| s.is_none()) {
            None
        } else {
            stops.iter().flatten().max().copied()
        };
        let mut b = LlmBatcher {
            model,
            rows,
            hooks: Vec::new(),
            stop_at_layer,
            positions,
            context_size: cfg.context_size,
            batch_prompts: cfg.store_batch_size_prompts,
            exclude,
            n_batches: 0,
        };
        // Probe the widths on a two-token input.
        let probe_tok = tok.bos_id.or(tok.eos_id).unwrap_or(0);
        let probe = Tensor::from_vec(vec![probe_tok; 2], (1, 2), b.model.device())?;
        let names: Vec<String> = hooks.iter().map(|(h, _)| h.clone()).collect();
        let (_, cache) = b
            .model
            .run(&probe)
            .names(names)
            .stop_at_layer(b.stop_at_layer)
            .cache()?;
        for (h, head) in hooks {
            let a = cache.get(h.as_str())?;
            let dims = a.dims().to_vec();
            let d_in = match (dims.len(), head) {
                (3, None) => dims[2],
                (4, None) => dims[2] * dims[3],
                (4, Some(i)) if *i < dims[2] => dims[3],
                (4, Some(i)) => {
                    return Err(Error::Invalid(format!(
                        "hook_head_index {i} out of range: `{h}` has {} heads",
                        dims[2]
                    )))
                }
                (_, Some(_)) => {
                    return Err(Error::Invalid(format!(
                        "hook_head_index given but `{h}` has no head dimension (shape {dims:?})"
                    )))
                }
                _ => {
                    return Err(Error::Invalid(format!(
                        "`{h}` has shape {dims:?}; expected [batch, pos, d] or [batch, pos, head, d_head]"
                    )))
                }
            };
            b.hooks.push(HookSpec {
                name: h.clone(),
                head_index: *head,
                d_in,
            });
        }
        Ok(b)
    }

    /// The hooks, in the order given, with their widths.
    pub fn hooks(&self) -> &[HookSpec] {
        &self.hooks
    }
    /// The hooked model.
    pub fn model(&self) -> &Arc<HookedModel> {
        &self.model
    }
    /// The packed-row stream feeding the model.
    pub fn rows(&self) -> &RowStream {
        &self.rows
    }
    /// Tokens per LLM batch before special-token exclusion.
    pub fn tokens_per_batch(&self) -> usize {
        self.batch_prompts * self.positions.len()
    }

    /// Run the model on the next `store_batch_size_prompts` rows.
    pub fn next_raw(&mut self) -> Result<RawBatch> {
        let b = self.batch_prompts;
        let ctx = self.context_size;
        let toks = self.rows.next_rows(b)?;
        let t = Tensor::from_vec(toks.clone(), (b, ctx), self.model.device())?;
        let names: Vec<String> = self.hooks.iter().map(|h| h.name.clone()).collect();
        let (_, cache) = self
            .model
            .run(&t)
            .names(names)
            .stop_at_layer(self.stop_at_layer)
            .cache()?;
        self.n_batches += 1;
        let all_pos = self.positions.len() == ctx;
        let contiguous = self.positions.windows(2).all(|w| w[1] == w[0] + 1);
        // Token ids at the kept positions, and the keep mask.
        let mut tokens = Vec::with_capacity(b * self.positions.len());
        for r in 0..b {
            for &p in &self.positions {
                tokens.push(toks[r * ctx + p]);
            }
        }
        let keep: Option<Vec<bool>> = if self.exclude.is_empty() {
            None
        } else {
            Some(
                tokens
                    .iter()
                    .map(|t| self.exclude.binary_search(t).is_err())
                    .collect(),
            )
        };
        let mut acts = Vec::with_capacity(self.hooks.len());
        for h in &self.hooks {
            let mut a = cache.get(h.name.as_str())?.clone();
            if !all_pos {
                a = if contiguous {
                    a.narrow(1, self.positions[0], self.positions.len())?
                } else {
                    let idx = Tensor::from_vec(
                        self.positions.iter().map(|&p| p as u32).collect::<Vec<_>>(),
                        self.positions.len(),
                        a.device(),
                    )?;
                    a.index_select(&idx, 1)?
                };
            }
            if let Some(i) = h.head_index {
                a = a.narrow(2, i, 1)?.squeeze(2)?;
            }
            let n = b * self.positions.len();
            let a = a
                .to_dtype(DType::F32)?
                .to_device(&Device::Cpu)?
                .reshape((n, h.d_in))?
                .contiguous()?;
            let mut v: Vec<f32> = a.flatten_all()?.to_vec1()?;
            if let Some(keep) = &keep {
                let d = h.d_in;
                let mut w = 0;
                for (i, &k) in keep.iter().enumerate() {
                    if k {
                        if w != i {
                            v.copy_within(i * d..(i + 1) * d, w * d);
                        }
                        w += 1;
                    }
                }
                v.truncate(w * d);
            }
            acts.push(v);
        }
        if let Some(keep) = &keep {
            let mut k = keep.iter();
            tokens.retain(|_| *k.next().unwrap());
        }
        Ok(RawBatch { acts, tokens })
    }

    /// The next `n` packed rows `[n, context_size]` (u32, on the model's device).
    pub fn next_token_batch(&mut self, n: usize) -> Result<Tensor> {
        let toks = self.rows.next_rows(n)?;
        Ok(Tensor::from_vec(
            toks,
            (n, self.context_size),
            self.model.device(),
        )?)
    }

    /// The row stream's position (for checkpoints).
    pub fn stream_state(&self) -> RowStreamState {
        self.rows.state()
    }
    /// Continue the row stream from a saved position.
    pub fn restore_stream(&mut self, s: RowStreamState) -> Result<()> {
        self.rows.restore(s)
    }
}
