//! The same rows as [`super::frozen`], by propagating gradients through the local replacement
//! model by hand: with attention patterns and norm scales frozen and MLP outputs fixed, the
//! only path down the residual stream is `resid ← ln1 ← V ← pattern ← O`, so a target's
//! gradient is carried down with two matrix products and one small attention product per
//! layer, only through the layers below the target and the positions up to it (the autograd
//! path differentiates every layer and position, and Q/K/V as one product). Used for models
//! without post-norms.
use super::frozen::Target;
use super::setup::Setup;
use crate::error::Result;
use crate::model::{FrozenNorm, HookedModel, LinearBlock};
use candle_core::{DType, Device, IndexOp, Tensor, D};

/// The frozen quantities and the sources, grouped for matrix products.
pub(crate) struct Linear<'a> {
    blocks: Vec<LinearBlock<'a>>,
    ln2: Vec<FrozenNorm<'a>>,
    ln_final: FrozenNorm<'a>,
    /// Per layer `[pos]`: the frozen ln1 / ln2 scales; then the final norm's.
    s1: Vec<Vec<f32>>,
    s2: Vec<Vec<f32>>,
    s_final: Vec<f32>,
    /// Per layer `[n_heads, pos, pos]`.
    patterns: Vec<Tensor>,
    /// Per layer and position: (indices into the feature list, their scaled decoder rows
    /// `[n, d]`).
    groups: Vec<Vec<(Vec<usize>, Option<Tensor>)>>,
    /// Per layer `[pos, d]`.
    errors: Vec<Tensor>,
    tokens: Tensor,
    n_layers: usize,
    n_pos: usize,
    d: usize,
    n_f: usize,
    dev: Device,
}

impl<'a> Linear<'a> {
    /// None for models this path does not cover (post-norms).
    pub fn new(model: &'a HookedModel, tokens: &Tensor, s: &Setup) -> Result<Option<Self>> {
        let Some((blocks, ln2, ln_final)) = model.linear_view() else {
            return Ok(None);
        };
        let (n_layers, n_pos, d) = (s.n_layers, s.n_pos, s.d_model);
        let dev = Device::Cpu;
        let names: Vec<String> = (0..n_layers)
            .flat_map(|l| {
                [
                    format!("blocks.{l}.ln1.hook_scale"),
                    format!("blocks.{l}.ln2.hook_scale"),
                    format!("blocks.{l}.attn.hook_pattern"),
                ]
            })
            .chain(["ln_final.hook_scale".to_string()])
            .collect();
        let (_, cache) = model.run(tokens).names(names).cache()?;
        let scale = |n: String| -> Result<Vec<f32>> {
            Ok(cache
                .get(n)?
                .to_dtype(DType::F32)?
                .flatten_all()?
                .to_vec1()?)
        };
        let mut s1 = Vec::new();
        let mut s2 = Vec::new();
        let mut patterns = Vec::new();
        for l in 0..n_layers {
            s1.push(scale(format!("blocks.{l}.ln1.hook_scale"))?);
            s2.push(scale(format!("blocks.{l}.ln2.hook_scale"))?);
            let a = cache.get(format!("blocks.{l}.attn.hook_pattern"))?.i(0)?;
            patterns.push(a.to_dtype(DType::F32)?.to_device(&dev)?.contiguous()?);
        }
        let s_final = scale("ln_final.hook_scale".into())?;
        let mut groups: Vec<Vec<(Vec<usize>, Option<Tensor>)>> =
            vec![vec![(vec![], None); n_pos]; n_layers];
        for (i, f) in s.features.iter().enumerate() {
            groups[f.layer][f.pos].0.push(i);
        }
        for layer in groups.iter_mut() {
            for (idx, mat) in layer.iter_mut() {
                if idx.is_empty() {
                    continue;
                }
                let mut rows = Vec::with_capacity(idx.len() * d);
                for &i in idx.iter() {
                    rows.extend_from_slice(&s.decoder_vecs[i * d..(i + 1) * d]);
                }
                *mat = Some(
                    Tensor::from_vec(rows, (idx.len(), d), &dev)?
                        .t()?
                        .contiguous()?,
                );
            }
        }
        let errors = (0..n_layers)
            .map(|l| {
                let e = s.error_vecs[l * n_pos * d..(l + 1) * n_pos * d].to_vec();
                Tensor::from_vec(e, (n_pos, d), &dev)
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        let tokens = Tensor::from_vec(s.token_vecs.clone(), (n_pos, d), &dev)?;
        Ok(Some(Linear {
            blocks,
            ln2,
            ln_final,
            s1,
            s2,
            s_final,
            patterns,
            groups,
            errors,
            tokens,
            n_layers,
            n_pos,
            d,
            n_f: s.features.len(),
            dev,
        }))
    }

    /// The gradient at the residual stream of a target's injected vector (through its norm).
    fn seed(&self, t: &Target) -> Vec<f32> {
        let (norm, s) = if t.layer == self.n_layers {
            (&self.ln_final, self.s_final[t.pos])
        } else {
            (&self.ln2[t.layer], self.s2[t.layer][t.pos])
        };
        let mut v = t.vector.to_vec();
        // The transcoder reads ln2's normalised value (before its weight); logits read the
        // final norm's output (after it).
        if t.layer == self.n_layers {
            if let Some(w) = norm
                .w
                .and_then(|w| w.to_dtype(DType::F32).ok()?.to_vec1::<f32>().ok())
            {
                v.iter_mut().zip(&w).for_each(|(x, w)| *x *= w);
            }
        }
        v.iter_mut().for_each(|x| *x /= s);
        if norm.center {
            let m = v.iter().sum::<f32>() / v.len() as f32;
            v.iter_mut().for_each(|x| *x -= m);
        }
        v
    }

    /// Back through block `l`'s attention: `g [t, pm, d]` at resid_mid → its contribution at
    /// resid_pre (the residual connection is added by the caller).
    fn attn_backward(&self, l: usize, g: &Tensor) -> Result<Tensor> {
        let b = &self.blocks[l];
        let (t, pm, d) = g.dims3()?;
        let (h, hkv, dh) = (b.n_heads, b.n_kv_heads, b.d_head);
        let gz = g.reshape((t * pm, d))?.matmul(&b.w_o.t()?)?;
        let gz = gz.reshape((t, pm, h, dh))?.transpose(1, 2)?.contiguous()?;
        let at = self.patterns[l]
            .narrow(1, 0, pm)?
            .narrow(2, 0, pm)?
            .transpose(1, 2)?
            .contiguous()?
            .unsqueeze(0)?;
        let dv = at.broadcast_matmul(&gz)?; // [t, h, pm(keys), dh]
        let dv = dv.reshape((t, hkv, h / hkv, pm, dh))?.sum(2)?;
        let dv = dv
            .transpose(1, 2)?
            .contiguous()?
            .reshape((t * pm, hkv * dh))?;
        let mut dn = dv.matmul(&b.w_v.t()?)?;
        if let Some(w) = b.ln1.w {
            dn = dn.broadcast_mul(&w.to_dtype(DType::F32)?)?;
        }
        let inv: Vec<f32> = self.s1[l][..pm].iter().map(|s| 1.0 / s).collect();
        let inv = Tensor::from_vec(inv, (1, pm, 1), &self.dev)?;
        let mut dn = dn.reshape((t, pm, d))?.broadcast_mul(&inv)?;
        if b.ln1.center {
            dn = dn.broadcast_sub(&dn.mean_keepdim(D::Minus1)?)?;
        }
        Ok(dn)
    }

    /// Rows of direct effects for `targets` (any layers and positions).
    pub fn rows(&self, targets: &[Target]) -> Result<Vec<Vec<f32>>> {
        let (nl, np, d, n_f) = (self.n_layers, self.n_pos, self.d, self.n_f);
        let t = targets.len();
        let mut out = vec![vec![0f32; n_f + (nl + 1) * np]; t];
        if t == 0 {
            return Ok(out);
        }
        let pm = targets.iter().map(|x| x.pos).max().unwrap_or(0) + 1;
        let top = targets.iter().map(|x| x.layer).max().unwrap_or(0);
        let seed_at = |layer: usize| -> Result<Option<Tensor>> {
            let mut any = false;
            let mut v = vec![0f32; t * pm * d];
            for (row, x) in targets.iter().enumerate() {
                if x.layer == layer {
                    any = true;
                    let o = (row * pm + x.pos) * d;
                    v[o..o + d].copy_from_slice(&self.seed(x));
                }
            }
            Ok(if any {
                Some(Tensor::from_vec(v, (t, pm, d), &self.dev)?)
            } else {
                None
            })
        };
        let mut g = match seed_at(nl)? {
            Some(s) => s,
            None => Tensor::zeros((t, pm, d), DType::F32, &self.dev)?,
        };
        let start = if top == nl { nl - 1 } else { top };
        for l in (0..=start).rev() {
            if l < top {
                self.read_layer(l, &g, pm, &mut out)?;
            }
            if let Some(s) = seed_at(l)? {
                g = (g + s)?;
            }
            g = (&g + self.attn_backward(l, &g)?)?;
        }
        // Tokens: the gradient at the embeddings.
        let tok = g
            .broadcast_mul(&self.tokens.narrow(0, 0, pm)?.unsqueeze(0)?)?
            .sum(D::Minus1)?;
        let tok = tok.to_vec2::<f32>()?;
        for (row, vals) in out.iter_mut().zip(tok) {
            row[n_f + nl * np..n_f + nl * np + pm].copy_from_slice(&vals);
        }
        Ok(out)
    }

    /// The sources writing at layer `l`'s MLP output: features and errors, `g` being the
    /// gradient there.
    fn read_layer(&self, l: usize, g: &Tensor, pm: usize, out: &mut [Vec<f32>]) -> Result<()> {
        let np = self.n_pos;
        for p in 0..pm {
            let (idx, mat) = &self.groups[l][p];
            let Some(mat) = mat else { continue };
            let gp = g.i((.., p))?.contiguous()?; // [t, d]
            let r = gp.matmul(mat)?.to_vec2::<f32>()?; // [t, n]
            for (row, vals) in out.iter_mut().zip(r) {
                for (&i, v) in idx.iter().zip(vals) {
                    row[i] = v;
                }
            }
        }
        let e = g
            .broadcast_mul(&self.errors[l].narrow(0, 0, pm)?.unsqueeze(0)?)?
            .sum(D::Minus1)?
            .to_vec2::<f32>()?;
        for (row, vals) in out.iter_mut().zip(e) {
            let o = self.n_f + l * np;
            row[o..o + pm].copy_from_slice(&vals);
        }
        Ok(())
    }
}
