//! `HookedModel`: the forward pass with TL hook points, `run_with_cache`, `run_with_hooks`,
//! the loss, and TL-shaped weight accessors.
use super::blocks::{Attention, Block, Mlp, Norm, PostNorm, Rotary};
use super::config::{ModelConfig, Positional};
use super::kv_cache::KvCache;
use super::memory;
use super::weights::StateDict;
use super::ActivationCache;
use crate::error::{Error, Result};
use crate::hooks::{BlockHookNames, HookCtx, NamesFilter};
use crate::tokenizer::Tok;
use candle_core::{DType, Device, Tensor, D};
use std::sync::Arc;

/// A transformer with TransformerLens's hook points, names, shapes and values.
///
/// Cloning is cheap: the clone shares the weights (e.g. to hand one to
/// [`LocalChat`](crate::llm::LocalChat) and keep using the other).
#[derive(Clone)]
pub struct HookedModel {
    pub(super) cfg: Arc<ModelConfig>,
    pub(super) tok: Option<Tok>,
    pub(super) w_e: Tensor,
    pub(super) w_pos: Option<Tensor>,
    pub(super) blocks: Vec<Block>,
    pub(super) ln_final: Norm,
    pub(super) w_u: Tensor,
    pub(super) b_u: Option<Tensor>,
    pub(super) names: Vec<BlockHookNames>,
    pub(super) hook_names: Vec<String>,
    pub(super) device: Device,
}

fn cat_cols(parts: &[Tensor]) -> Result<Tensor> {
    Ok(Tensor::cat(parts, 1)?.contiguous()?)
}

impl HookedModel {
    /// Turn a processed TL state dict into the runtime layout (consuming it tensor by tensor).
    pub(crate) fn build(
        mut sd: StateDict,
        cfg: ModelConfig,
        tok: Option<Tok>,
        device: &Device,
    ) -> Result<Self> {
        let dev = |t: Tensor| -> Result<Tensor> { Ok(t.to_device(device)?) };
        let (d, h, hkv, dh) = (cfg.d_model, cfg.n_heads, cfg.n_kv_heads, cfg.d_head);
        let rotary = match cfg.positional {
            Positional::Rotary { base, dim } => Some(Rotary::new(base, dim, cfg.n_ctx, device)?),
            Positional::Standard => None,
        };
        let norm = |sd: &mut StateDict, p: &str| -> Result<Norm> {
            let w = sd.remove(&format!("{p}.w")).map(dev).transpose()?;
            let b = sd.remove(&format!("{p}.b")).map(dev).transpose()?;
            if cfg.normalization.has_weights() && w.is_none() {
                return Err(Error::Config(format!(
                    "{p}: {:?} norm without weights",
                    cfg.normalization
                )));
            }
            Ok(Norm {
                kind: cfg.normalization,
                w,
                b,
                eps: cfg.eps,
            })
        };
        let mut blocks = Vec::with_capacity(cfg.n_layers);
        for l in 0..cfg.n_layers {
            let t = |s: &str| format!("blocks.{l}.{s}");
            let ln1 = norm(&mut sd, &t("ln1"))?;
            // W_X [n, d, dh] → [d, n, dh] views, concatenated into one [d, (h + 2 hkv) dh] copy:
            // fused Q | K | V.
            let mut ws = Vec::new();
            let mut bs = Vec::new();
            let mut any_bias = false;
            for (x, n) in [("Q", h), ("K", hkv), ("V", hkv)] {
                ws.push(sd.take(&t(&format!("attn.W_{x}")))?.permute((1, 0, 2))?);
                match sd.remove(&t(&format!("attn.b_{x}"))) {
                    Some(b) => {
                        any_bias = true;
                        bs.push(b.reshape(n * dh)?)
                    }
                    None => bs.push(Tensor::zeros(n * dh, DType::F32, &Device::Cpu)?),
                }
            }
            let w_qkv = dev(Tensor::cat(&ws, 1)?.reshape((d, (h + 2 * hkv) * dh))?)?;
            drop(ws);
            let b_qkv = if any_bias {
                Some(dev(Tensor::cat(&bs, 0)?)?)
            } else {
                None
            };
            let w_o = dev(sd
                .take(&t("attn.W_O"))?
                .contiguous()?
                .reshape((h * dh, d))?)?;
            let b_o = sd.remove(&t("attn.b_O")).map(dev).transpose()?;
            let attn = Attention {
                w_qkv,
                b_qkv,
                w_o,
                b_o,
                n_heads: h,
                n_kv_heads: hkv,
                d_head: dh,
                rotary: rotary.clone(),
                attn_scale: cfg.attn_scale(),
                soft_cap: cfg.attn_scores_soft_cap,
                window: cfg.window(l),
            };
            let ln1_post = PostNorm::take(&mut sd, &cfg, l, "ln1_post", device)?;
            let ln2 = norm(&mut sd, &t("ln2"))?;
            let ln2_post = PostNorm::take(&mut sd, &cfg, l, "ln2_post", device)?;
            let w_in = sd.take(&t("mlp.W_in"))?;
            let w_in = match sd.remove(&t("mlp.W_gate")) {
                Some(g) => cat_cols(&[g, w_in])?,
                None => w_in.contiguous()?,
            };
            let mlp = Mlp {
                w_in: dev(w_in)?,
                b_in: sd.remove(&t("mlp.b_in")).map(dev).transpose()?,
                w_out: dev(sd.take(&t("mlp.W_out"))?.contiguous()?)?,
                b_out: sd.remove(&t("mlp.b_out")).map(dev).transpose()?,
                gated: cfg.gated_mlp,
                act: cfg.act_fn,
                d_mlp: cfg.d_mlp,
            };
            blocks.push(Block {
                ln1,
                attn,
                ln1_post,
                ln2,
                mlp,
                ln2_post,
            });
        }
        let ln_final = norm(&mut sd, "ln_final")?;
        let w_e = dev(sd.take("embed.W_E")?)?;
        let w_pos = sd.remove("pos_embed.W_pos").map(dev).transpose()?;
        let w_u = dev(sd.take("unembed.W_U")?.contiguous()?)?;
        let b_u = sd.remove("unembed.b_U").map(dev).transpose()?;
        // Give back the pages freed while loading (many transient per-layer copies), then keep
        // what later passes free for the next pass (`memory`).
        memory::release_memory();
        memory::retain_freed_memory();
        let names: Vec<BlockHookNames> = (0..cfg.n_layers).map(BlockHookNames::new).collect();
        let mut model = HookedModel {
            cfg: Arc::new(cfg),
            tok,
            w_e,
            w_pos,
            blocks,
            ln_final,
            w_u,
            b_u,
            names,
            hook_names: Vec::new(),
            device: device.clone(),
        };
        model.hook_names = model.record_hook_names()?;
        Ok(model)
    }

    /// Every hook point, in the order the forward pass fires them: recorded from a one-token
    /// pass that caches everything, so the list cannot drift from the forward.
    fn record_hook_names(&self) -> Result<Vec<String>> {
        let one = Tensor::zeros((1, 1), DType::U32, &self.device)?;
        let filter = NamesFilter::All;
        let mut ctx = HookCtx {
            filter: Some(&filter),
            ..HookCtx::default()
        };
        self.run_inner(&one, &mut ctx, None, None, false)?;
        Ok(ctx.cache.into_iter().map(|(n, _)| n).collect())
    }

    pub(crate) fn set_model_name(&mut self, name: &str) {
        Arc::make_mut(&mut self.cfg).model_name = name.to_string();
    }

    /// The model's config (TL's `cfg`).
    pub fn cfg(&self) -> &ModelConfig {
        &self.cfg
    }
    /// The device the weights are on.
    pub fn device(&self) -> &Device {
        &self.device
    }
    /// The tokenizer; an error for models loaded without one.
    pub fn tokenizer(&self) -> Result<&Tok> {
        self.tok.as_ref().ok_or_else(|| {
            Error::Tokenizer(format!(
                "model `{}` was loaded without a tokenizer (no tokenizer.json)",
                self.cfg.model_name
            ))
        })
    }
    /// Attach (or replace) the tokenizer used by `to_tokens`, `to_str_tokens`, ...
    pub fn set_tokenizer(&mut self, tok: Tok) {
        self.tok = Some(tok);
    }
    /// Every hook point of this model, in forward order (TL's `hook_dict` keys).
    pub fn hook_names(&self) -> &[String] {
        &self.hook_names
    }

    /// Logits `[batch, pos, d_vocab]` for `tokens` (`[batch, pos]` or `[pos]`, integer dtype).
    pub fn forward(&self, tokens: &Tensor) -> Result<Tensor> {
        self.run_inner(tokens, &mut HookCtx::default(), None, None, false)
    }

    /// The `ActivationCache` of a finished pass.
    pub(crate) fn cache_from(&self, ctx: HookCtx) -> ActivationCache {
        let (order, map) = ctx.into_map();
        ActivationCache::new(
            order,
            map,
            self.cfg.clone(),
            self.w_u.clone(),
            self.ln_final.clone(),
        )
    }

    pub(crate) fn check_tokens(&self, tokens: &Tensor) -> Result<Tensor> {
        let t = match tokens.rank() {
            1 => tokens.unsqueeze(0)?,
            2 => tokens.clone(),
            r => {
                return Err(Error::Invalid(format!(
                    "tokens must be [batch, pos] or [pos], got rank {r} {:?}",
                    tokens.dims()
                )))
            }
        };
        let t = match t.dtype() {
            DType::U32 => t,
            DType::I64 | DType::U8 => t.to_dtype(DType::U32)?,
            other => {
                return Err(Error::Invalid(format!(
                    "tokens must be an integer tensor, got {other:?}"
                )))
            }
        };
        let p = t.dim(1)?;
        if p == 0 {
            return Err(Error::Invalid("tokens: empty sequence".into()));
        }
        if matches!(self.cfg.positional, Positional::Standard) && p > self.cfg.n_ctx {
            return Err(Error::Invalid(format!(
                "sequence length {p} exceeds the model's context n_ctx = {}",
                self.cfg.n_ctx
            )));
        }
        let max = t.max_all()?.to_scalar::<u32>()? as usize;
        if max >= self.cfg.d_vocab {
            return Err(Error::Invalid(format!(
                "token id {max} is out of range for d_vocab = {}",
                self.cfg.d_vocab
            )));
        }
        Ok(t.to_device(&self.device)?)
    }

    /// The forward pass. With `kv`, `tokens` are the positions after the cached ones (TL's
    /// `past_kv_cache`); they are appended to the cache when the pass completes. With
    /// `last_only` and no hook on the final norm or the unembedding, only the last position's
    /// logits are computed (`[batch, 1, d_vocab]`).
    pub(crate) fn run_inner(
        &self,
        tokens: &Tensor,
        ctx: &mut HookCtx,
        stop_at_layer: Option<usize>,
        kv: Option<&mut KvCache>,
        last_only: bool,
    ) -> Result<Tensor> {
        let tokens = self.check_tokens(tokens)?;
        let (b, p) = tokens.dims2()?;
        let d = self.cfg.d_model;
        let offset = match &kv {
            Some(c) => {
                c.check(self.cfg.n_layers, b)?;
                if stop_at_layer.is_some() {
                    return Err(Error::Invalid(
                        "stop_at_layer cannot be used with a KV cache (the cache needs every layer)"
                            .into(),
                    ));
                }
                c.len()
            }
            None => 0,
        };
        if offset + p > self.cfg.n_ctx {
            return Err(Error::Invalid(format!(
                "{offset} cached + {p} new positions exceed the model's context n_ctx = {}",
                self.cfg.n_ctx
            )));
        }
        if let Some(s) = stop_at_layer {
            if s > self.cfg.n_layers {
                return Err(Error::Invalid(format!(
                    "stop_at_layer {s} > n_layers {}",
                    self.cfg.n_layers
                )));
            }
        }
        let embed = self
            .w_e
            .index_select(&tokens.flatten_all()?, 0)?
            .reshape((b, p, d))?;
        let mut resid = ctx.hp("hook_embed", embed)?;
        if let Some(w_pos) = &self.w_pos {
            let pos = w_pos
                .narrow(0, offset, p)?
                .unsqueeze(0)?
                .broadcast_as((b, p, d))?
                .contiguous()?;
            let pos = ctx.hp("hook_pos_embed", pos)?;
            resid = (resid + pos)?;
        }
        let n_run = stop_at_layer.unwrap_or(self.cfg.n_layers);
        match kv {
            Some(cache) => {
                // Work on a copy (tensors are shared, not copied) so a failed pass leaves the
                // cache untouched.
                let mut layers = cache.layers.clone();
                for ((block, names), lkv) in self.blocks.iter().zip(&self.names).zip(&mut layers) {
                    resid = block.forward(resid, ctx, names, Some(lkv))?;
                }
                let logits = self.unembed(resid, ctx, last_only)?;
                cache.layers = layers;
                cache.len += p;
                cache.batch = Some(b);
                return Ok(logits);
            }
            None => {
                for (block, names) in self.blocks.iter().zip(&self.names).take(n_run) {
                    resid = block.forward(resid, ctx, names, None)?;
                }
            }
        }
        if stop_at_layer.is_some() {
            return Ok(resid);
        }
        self.unembed(resid, ctx, last_only)
    }

    /// TL's `forward(resid, start_at_layer=start, stop_at_layer=stop)` with hooks: blocks
    /// `start..stop` on the residual stream `resid [batch, pos, d_model]` entering block
    /// `start`, then (without `stop`) the final norm and unembedding.
    pub(crate) fn run_from(
        &self,
        resid: &Tensor,
        start: usize,
        ctx: &mut HookCtx,
        stop_at_layer: Option<usize>,
    ) -> Result<Tensor> {
        let n = self.cfg.n_layers;
        let stop = stop_at_layer.unwrap_or(n);
        if start > stop || stop > n {
            return Err(Error::Invalid(format!(
                "need start_at_layer ≤ stop_at_layer ≤ n_layers, got {start}, {stop}, {n}"
            )));
        }
        let (_, p, d) = resid.dims3()?;
        if d != self.cfg.d_model || p > self.cfg.n_ctx {
            return Err(Error::Invalid(format!(
                "the residual stream {:?} must be [batch, pos ≤ {}, d_model = {}]",
                resid.dims(),
                self.cfg.n_ctx,
                self.cfg.d_model
            )));
        }
        let mut x = resid.to_device(&self.device)?.to_dtype(self.w_e.dtype())?;
        for (block, names) in self.blocks.iter().zip(&self.names).take(stop).skip(start) {
            x = block.forward(x, ctx, names, None)?;
        }
        match stop_at_layer {
            Some(_) => Ok(x),
            None => self.unembed(x, ctx, false),
        }
    }

    /// The final norm, the unembedding and (Gemma-2) the logit soft cap.
    fn unembed(&self, resid: Tensor, ctx: &mut HookCtx, last_only: bool) -> Result<Tensor> {
        const FINAL_HOOKS: [&str; 4] = [
            "ln_final.hook_scale",
            "ln_final.hook_normalized",
            "unembed.hook_in",
            "unembed.hook_out",
        ];
        let (b, p, d) = resid.dims3()?;
        let (resid, p) = if last_only && p > 1 && !FINAL_HOOKS.iter().any(|h| ctx.wants(h)) {
            (resid.narrow(1, p - 1, 1)?.contiguous()?, 1)
        } else {
            (resid, p)
        };
        let x = self.ln_final.forward(
            &resid,
            ctx,
            "ln_final.hook_scale",
            "ln_final.hook_normalized",
        )?;
        let x = ctx.hp("unembed.hook_in", x)?;
        let mut logits = x.reshape((b * p, d))?.matmul(&self.w_u)?;
        if let Some(b_u) = &self.b_u {
            logits = logits.broadcast_add(b_u)?;
        }
        let logits = ctx.hp(
            "unembed.hook_out",
            logits.reshape((b, p, self.cfg.d_vocab))?,
        )?;
        // TL soft-caps the returned logits after `unembed.hook_out` (Gemma-2).
        match self.cfg.output_logits_soft_cap {
            Some(c) => Ok(((logits / c)?.tanh()? * c)?),
            None => Ok(logits),
        }
    }

    /// Per-token next-token cross-entropy `[batch, pos-1]` (TL's `lm_cross_entropy_loss(per_token=True)`).
    pub fn per_token_loss(&self, tokens: &Tensor, logits: &Tensor) -> Result<Tensor> {
        let tokens = self.check_tokens(tokens)?;
        let (b, p, v) = logits.dims3()?;
        if tokens.dims() != [b, p] {
            return Err(Error::Invalid(format!(
                "logits {:?} do not match tokens {:?}",
                logits.dims(),
                tokens.dims()
            )));
        }
        if p < 2 {
            return Err(Error::Invalid("the loss needs at least 2 positions".into()));
        }
        let lp = candle_nn::ops::log_softmax(&logits.narrow(1, 0, p - 1)?, D::Minus1)?;
        let next = tokens.narrow(1, 1, p - 1)?.contiguous()?.unsqueeze(2)?;
        let _ = v;
        Ok(lp.gather(&next, 2)?.squeeze(2)?.neg()?)
    }

    /// Mean next-token cross-entropy (scalar), TL's `loss_fn`.
    pub fn loss(&self, tokens: &Tensor, logits: &Tensor) -> Result<Tensor> {
        Ok(self.per_token_loss(tokens, logits)?.mean_all()?)
    }
}
