//! The transformer's components with their TL hook points: norms, attention, MLP, block.
//! Weights are kept in matmul-friendly layouts (`[d_in, d_out]`, Q/K/V fused); the TL-shaped
//! views (`W_Q [n_heads, d_model, d_head]`, ...) are derived on demand by `HookedModel`.
use super::config::{ActFn, ModelConfig, Normalization};
use super::kernels;
use super::kv_cache::LayerKv;
use super::weights::StateDict;
use crate::error::Result;
use crate::hooks::{BlockHookNames, HookCtx};
use candle_core::{Device, Tensor, D};

/// LayerNorm / RMSNorm and their folded `Pre` variants, exactly as TL computes them.
#[derive(Clone)]
pub(crate) struct Norm {
    pub kind: Normalization,
    pub w: Option<Tensor>,
    pub b: Option<Tensor>,
    pub eps: f64,
}

impl Norm {
    /// The norm without hook points (TL's `recompute_ln` in `apply_ln_to_stack`).
    pub fn apply(&self, x: &Tensor) -> Result<Tensor> {
        self.forward(x, &mut HookCtx::default(), "", "")
    }

    pub fn forward(
        &self,
        x: &Tensor,
        ctx: &mut HookCtx,
        scale_name: &str,
        normalized_name: &str,
    ) -> Result<Tensor> {
        let fused = if ctx.wants(scale_name) || ctx.wants(normalized_name) {
            None
        } else {
            kernels::normalize(x, self.eps, self.kind.is_layer_norm())?
        };
        let x = match fused {
            Some(y) => y,
            None => {
                let center = self.kind.is_layer_norm();
                let (x, scale) = match kernels::center_and_scale(x, self.eps, center)? {
                    Some(pair) => pair,
                    None => {
                        let x = if center {
                            x.broadcast_sub(&x.mean_keepdim(D::Minus1)?)?
                        } else {
                            x.clone()
                        };
                        let scale = (x.sqr()?.mean_keepdim(D::Minus1)? + self.eps)?.sqrt()?;
                        (x, scale)
                    }
                };
                let scale = ctx.hp(scale_name, scale)?;
                match kernels::div_rows(&x, &scale)? {
                    Some(y) => y,
                    None => x.broadcast_div(&scale)?,
                }
            }
        };
        // TL hooks `normalized` before the weight and bias (LN and RMS alike).
        let y = ctx.hp(normalized_name, x)?;
        let y = match &self.w {
            Some(w) if self.kind.has_weights() => y.broadcast_mul(w)?,
            _ => y,
        };
        Ok(match &self.b {
            Some(b) if self.kind == Normalization::LN => y.broadcast_add(b)?,
            _ => y,
        })
    }
}

/// Rotary tables `[n_ctx, d_head/2]`, computed as TL does (angles = pos / base^(2i/d)).
#[derive(Clone)]
pub(crate) struct Rotary {
    pub cos: Tensor,
    pub sin: Tensor,
}

impl Rotary {
    pub fn new(base: f64, dim: usize, n_ctx: usize, device: &candle_core::Device) -> Result<Self> {
        let half = dim / 2;
        let mut cos = Vec::with_capacity(n_ctx * half);
        let mut sin = Vec::with_capacity(n_ctx * half);
        for p in 0..n_ctx {
            for i in 0..half {
                let freq = base.powf(i as f64 / half as f64);
                let a = p as f64 / freq;
                cos.push(a.cos() as f32);
                sin.push(a.sin() as f32);
            }
        }
        Ok(Rotary {
            cos: Tensor::from_vec(cos, (n_ctx, half), device)?,
            sin: Tensor::from_vec(sin, (n_ctx, half), device)?,
        })
    }
    /// Rotate `x [b, p, heads, d_head]` (half-split pairs) at positions `offset..offset + p`.
    pub fn apply(&self, x: &Tensor, offset: usize) -> Result<Tensor> {
        let p = x.dim(1)?;
        let n_ctx = self.cos.dim(0)?;
        if offset + p > n_ctx {
            return Err(crate::error::Error::Invalid(format!(
                "positions {offset}..{} exceed the model's context n_ctx = {n_ctx}",
                offset + p
            )));
        }
        let (cos, sin) = (
            self.cos.narrow(0, offset, p)?,
            self.sin.narrow(0, offset, p)?,
        );
        if x.track_op() {
            // candle's fused `rope_thd` has no backward (it silently cuts the graph).
            return rope_differentiable(x, &cos, &sin);
        }
        Ok(candle_nn::rotary_emb::rope_thd(
            &x.contiguous()?,
            &cos,
            &sin,
        )?)
    }
}

/// `rope_thd` from differentiable ops (for when gradients are tracked): with the halves
/// `x = [x1 | x2]`, `[x1 cos − x2 sin | x2 cos + x1 sin]`; `x [b, p, heads, d_head]`,
/// `cos`/`sin` `[p, d_head/2]`.
pub(crate) fn rope_differentiable(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    let (_, p, _, dh) = x.dims4()?;
    let half = dh / 2;
    let cos = cos.reshape((1, p, 1, half))?.to_dtype(x.dtype())?;
    let sin = sin.reshape((1, p, 1, half))?.to_dtype(x.dtype())?;
    let (x1, x2) = (x.narrow(3, 0, half)?, x.narrow(3, half, half)?);
    let a = (x1.broadcast_mul(&cos)? - x2.broadcast_mul(&sin)?)?;
    let b = (x2.broadcast_mul(&cos)? + x1.broadcast_mul(&sin)?)?;
    Ok(Tensor::cat(&[a, b], 3)?)
}

/// Softmax over the last dim. Without gradient tracking candle's fused kernel; with it, the
/// same from differentiable ops (the fused kernel has no backward). The row maximum is
/// subtracted detached: softmax does not depend on it, so the gradient is unchanged.
pub(crate) fn softmax_last_dim(x: &Tensor) -> Result<Tensor> {
    if !x.track_op() {
        return Ok(candle_nn::ops::softmax_last_dim(x)?);
    }
    let max = x.max_keepdim(D::Minus1)?.detach();
    // Fully masked rows (all −inf) would give NaN either way; keep the maximum finite.
    let max = max.clamp(f32::MIN as f64, f32::MAX as f64)?;
    let e = x.broadcast_sub(&max)?.exp()?;
    Ok(e.broadcast_div(&e.sum_keepdim(D::Minus1)?)?)
}

#[derive(Clone)]
pub(crate) struct Attention {
    /// `[d_model, (n_heads + 2 n_kv_heads) d_head]`: Q | K | V.
    pub w_qkv: Tensor,
    pub b_qkv: Option<Tensor>,
    /// `[n_heads d_head, d_model]`.
    pub w_o: Tensor,
    pub b_o: Option<Tensor>,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub d_head: usize,
    pub rotary: Option<Rotary>,
    /// What the scores are divided by (TL's `attn_scale`).
    pub attn_scale: f64,
    /// TL's `attn_scores_soft_cap` (Gemma-2).
    pub soft_cap: Option<f64>,
    /// Sliding window of a local-attention layer (Gemma-2's even layers).
    pub window: Option<usize>,
}

impl Attention {
    /// Attention over `x [b, p, d]`. With `kv`, the new keys and values are appended to the
    /// cached ones and the `p` queries sit at positions `kv.len()..kv.len() + p` (TL's
    /// `past_kv_cache_entry`).
    pub fn forward(
        &self,
        x: &Tensor,
        ctx: &mut HookCtx,
        n: &BlockHookNames,
        kv: Option<&mut LayerKv>,
    ) -> Result<Tensor> {
        let (b, p, d) = x.dims3()?;
        let (h, hkv, dh) = (self.n_heads, self.n_kv_heads, self.d_head);
        let mut qkv = x.reshape((b * p, d))?.matmul(&self.w_qkv)?;
        if let Some(bias) = &self.b_qkv {
            qkv = qkv.broadcast_add(bias)?;
        }
        // Q, K and V are strided views of the fused product (no copies).
        let qkv = qkv.reshape((b, p, h + 2 * hkv, dh))?;
        let q = ctx.hp(&n.q, qkv.narrow(2, 0, h)?)?;
        let k = ctx.hp(&n.k, qkv.narrow(2, h, hkv)?)?;
        let v = ctx.hp(&n.v, qkv.narrow(2, h + hkv, hkv)?)?;
        // TL caches K before the rotary embedding and rotates the whole sequence each pass.
        let (offset, k, v) = match kv {
            Some(cache) => {
                let offset = cache.len();
                let (k, v) = cache.append(k, v)?;
                (offset, k, v)
            }
            None => (0, k, v),
        };
        let t = offset + p;
        let (q, k) = match &self.rotary {
            Some(r) => (
                ctx.hp(&n.rot_q, r.apply(&q, offset)?)?,
                ctx.hp(&n.rot_k, r.apply(&k, 0)?)?,
            ),
            None => (q, k),
        };
        // Grouped-query attention without copying K/V: the `rep` query heads that share a KV head
        // are stacked along the query axis.
        let rep = h / hkv;
        let qg = q
            .transpose(1, 2)?
            .contiguous()?
            .reshape((b, hkv, rep * p, dh))?;
        let kt = k.transpose(1, 2)?.contiguous()?;
        let raw = qg.matmul(&kt.t()?)?.reshape((b, h, p, t))?;
        let mask = kernels::ScoreMask {
            scale: 1.0 / self.attn_scale as f32,
            soft_cap: self.soft_cap.map(|c| c as f32),
            window: self.window,
        };
        let fused = if ctx.wants(&n.attn_scores) {
            None
        } else {
            kernels::causal_softmax(&raw, mask)?
        };
        let pattern = match fused {
            Some(pattern) => pattern,
            None => {
                let masked = kernels::scale_and_mask(&raw, mask)?;
                let scores = match &masked {
                    Some(s) => s.clone(),
                    None => {
                        // TL: scale, soft-cap, then mask with -inf.
                        let mut s = (raw / self.attn_scale)?;
                        if let Some(c) = self.soft_cap {
                            s = ((s / c)?.tanh()? * c)?;
                        }
                        s.broadcast_add(&causal_mask(p, t, self.window, x.device())?)?
                    }
                };
                let scores = ctx.hp(&n.attn_scores, scores)?;
                // Scores no hook replaced are −inf exactly where `mask` masks: skip those.
                let sparse = match &masked {
                    Some(m) if m.id() == scores.id() => kernels::softmax_masked(&scores, mask)?,
                    _ => None,
                };
                match sparse {
                    Some(pattern) => pattern,
                    None => softmax_last_dim(&scores)?,
                }
            }
        };
        let pattern = ctx.hp(&n.pattern, pattern)?;
        let vt = v.transpose(1, 2)?.contiguous()?;
        let z = pattern
            .reshape((b, hkv, rep * p, t))?
            .matmul(&vt)?
            .reshape((b, h, p, dh))?;
        let z = ctx.hp(&n.z, z.transpose(1, 2)?.contiguous()?)?;
        let mut out = z.reshape((b * p, h * dh))?.matmul(&self.w_o)?;
        if let Some(bias) = &self.b_o {
            out = out.broadcast_add(bias)?;
        }
        Ok(out.reshape((b, p, d))?)
    }
}

/// `[q, k]` with 0 where query `i` (at absolute position `i + k - q`) sees key `j` (`j <= i`,
/// and `j > i - window` for a sliding window) and -inf elsewhere (TL masks with -inf).
fn causal_mask(
    q: usize,
    k: usize,
    window: Option<usize>,
    device: &candle_core::Device,
) -> Result<Tensor> {
    let m: Vec<f32> = (k - q..k)
        .flat_map(|i| {
            let lo = window.map_or(0, |w| (i + 1).saturating_sub(w));
            (0..k).map(move |j| {
                if (lo..=i).contains(&j) {
                    0.0
                } else {
                    f32::NEG_INFINITY
                }
            })
        })
        .collect();
    Ok(Tensor::from_vec(m, (q, k), device)?)
}

#[derive(Clone)]
pub(crate) struct Mlp {
    /// `[d_model, d_mlp]`, or `[d_model, 2 d_mlp]` = gate | in for gated MLPs.
    pub w_in: Tensor,
    pub b_in: Option<Tensor>,
    /// `[d_mlp, d_model]`.
    pub w_out: Tensor,
    pub b_out: Option<Tensor>,
    pub gated: bool,
    pub act: ActFn,
    pub d_mlp: usize,
}

fn act(f: ActFn, x: &Tensor) -> Result<Tensor> {
    Ok(match f {
        ActFn::GeluNew => x.gelu()?,
        ActFn::Gelu => x.gelu_erf()?,
        ActFn::Silu => x.silu()?,
        ActFn::Relu => x.relu()?,
    })
}

impl Mlp {
    pub fn forward(&self, x: &Tensor, ctx: &mut HookCtx, n: &BlockHookNames) -> Result<Tensor> {
        let (b, p, d) = x.dims3()?;
        let dm = self.d_mlp;
        let h = x.reshape((b * p, d))?.matmul(&self.w_in)?;
        let post = if self.gated {
            // TL's GatedMLP: post = act(x W_gate) * (x W_in) + b_in.
            let fused_act = match self.act {
                ActFn::Silu => Some(kernels::GatedAct::Silu),
                ActFn::GeluNew => Some(kernels::GatedAct::GeluTanh),
                _ => None,
            };
            // `hook_pre` and `hook_pre_linear` are strided views of `h` (no copies); when no
            // hook replaced them, one fused pass over `h` computes the product.
            let h3 = h.reshape((b, p, 2 * dm))?;
            let (pre0, lin0) = (h3.narrow(2, 0, dm)?, h3.narrow(2, dm, dm)?);
            let pre = ctx.hp(&n.mlp_pre, pre0.clone())?;
            let lin = ctx.hp(&n.mlp_pre_linear, lin0.clone())?;
            let fused = match fused_act {
                Some(a) if pre.id() == pre0.id() && lin.id() == lin0.id() => {
                    kernels::act_mul_halves(&h, dm, a)?
                }
                _ => None,
            };
            let mut post = match fused {
                Some(post) => post.reshape((b, p, dm))?,
                None => {
                    let fused = match self.act {
                        ActFn::Silu => kernels::silu_mul(&pre, &lin)?,
                        _ => None,
                    };
                    match fused {
                        Some(post) => post,
                        None => (act(self.act, &pre)? * lin)?,
                    }
                }
            };
            if let Some(bias) = &self.b_in {
                post = post.broadcast_add(bias)?;
            }
            ctx.hp(&n.mlp_post, post)?
        } else {
            let mut pre = h;
            if let Some(bias) = &self.b_in {
                pre = pre.broadcast_add(bias)?;
            }
            let pre = ctx.hp(&n.mlp_pre, pre.reshape((b, p, dm))?)?;
            ctx.hp(&n.mlp_post, act(self.act, &pre)?)?
        };
        let mut out = post.reshape((b * p, dm))?.matmul(&self.w_out)?;
        if let Some(bias) = &self.b_out {
            out = out.broadcast_add(bias)?;
        }
        Ok(out.reshape((b, p, d))?)
    }
}

/// A norm on a sublayer's output (TL's `ln1_post` / `ln2_post`, Gemma-2), with its hook names.
#[derive(Clone)]
pub(crate) struct PostNorm {
    pub norm: Norm,
    pub scale_name: String,
    pub normalized_name: String,
}

impl PostNorm {
    /// `blocks.{layer}.{name}` (`ln1_post` or `ln2_post`) from the state dict, when the model has
    /// TL's `use_normalization_before_and_after`: a norm with weights (RMSNorm for RMS models),
    /// never folded.
    pub fn take(
        sd: &mut StateDict,
        cfg: &ModelConfig,
        layer: usize,
        name: &str,
        device: &Device,
    ) -> Result<Option<Self>> {
        if !cfg.use_normalization_before_and_after {
            return Ok(None);
        }
        let p = |s: &str| format!("blocks.{layer}.{name}.{s}");
        let kind = if cfg.normalization.is_layer_norm() {
            Normalization::LN
        } else {
            Normalization::RMS
        };
        let norm = Norm {
            kind,
            w: Some(sd.take(&p("w"))?.to_device(device)?),
            b: sd
                .remove(&p("b"))
                .map(|b| b.to_device(device))
                .transpose()?,
            eps: cfg.eps,
        };
        Ok(Some(PostNorm {
            norm,
            scale_name: p("hook_scale"),
            normalized_name: p("hook_normalized"),
        }))
    }
    fn forward(this: &Option<Self>, x: Tensor, ctx: &mut HookCtx) -> Result<Tensor> {
        match this {
            Some(pn) => pn
                .norm
                .forward(&x, ctx, &pn.scale_name, &pn.normalized_name),
            None => Ok(x),
        }
    }
}

#[derive(Clone)]
pub(crate) struct Block {
    pub ln1: Norm,
    pub attn: Attention,
    /// Norm on the attention output, before `hook_attn_out` (Gemma-2).
    pub ln1_post: Option<PostNorm>,
    pub ln2: Norm,
    pub mlp: Mlp,
    /// Norm on the MLP output, before `hook_mlp_out` (Gemma-2).
    pub ln2_post: Option<PostNorm>,
}

impl Block {
    pub fn forward(
        &self,
        resid_pre: Tensor,
        ctx: &mut HookCtx,
        n: &BlockHookNames,
        kv: Option<&mut LayerKv>,
    ) -> Result<Tensor> {
        let resid_pre = ctx.hp(&n.resid_pre, resid_pre)?;
        let x = self
            .ln1
            .forward(&resid_pre, ctx, &n.ln1_scale, &n.ln1_normalized)?;
        let attn_out = self.attn.forward(&x, ctx, n, kv)?;
        let attn_out = PostNorm::forward(&self.ln1_post, attn_out, ctx)?;
        let attn_out = ctx.hp(&n.attn_out, attn_out)?;
        let resid_mid = ctx.hp(&n.resid_mid, (resid_pre + attn_out)?)?;
        let x = self
            .ln2
            .forward(&resid_mid, ctx, &n.ln2_scale, &n.ln2_normalized)?;
        // HookedSAETransformer's extra `mlp.hook_in` (transcoders read it): SAE runs only.
        let x = ctx.hp_sae_only(&n.mlp_in, x)?;
        let mlp_out = self.mlp.forward(&x, ctx, n)?;
        let mlp_out = PostNorm::forward(&self.ln2_post, mlp_out, ctx)?;
        let mlp_out = ctx.hp(&n.mlp_out, mlp_out)?;
        ctx.hp(&n.resid_post, (resid_mid + mlp_out)?)
    }
}
