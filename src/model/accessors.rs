//! TransformerLens-shaped views of the weights (`W_Q [n_heads, d_model, d_head]`, `W_U`, ...),
//! derived on demand from the runtime layouts, plus small inspection helpers.
use super::blocks::{Attention, Block, Mlp, Norm, PostNorm, Rotary};
use super::HookedModel;
use crate::error::{Error, Result};
use candle_core::{DType, IndexOp, Tensor};

impl HookedModel {
    fn block(&self, layer: usize) -> Result<&Block> {
        self.blocks.get(layer).ok_or_else(|| {
            Error::Invalid(format!(
                "layer {layer} out of range (n_layers = {})",
                self.cfg.n_layers
            ))
        })
    }
    /// `W_E [d_vocab, d_model]`.
    pub fn w_e(&self) -> &Tensor {
        &self.w_e
    }
    /// `W_pos [n_ctx, d_model]` (None for rotary models).
    pub fn w_pos(&self) -> Option<&Tensor> {
        self.w_pos.as_ref()
    }
    /// `W_U [d_model, d_vocab]`.
    pub fn w_u(&self) -> &Tensor {
        &self.w_u
    }
    /// `b_U [d_vocab]` (zeros when the model has none).
    pub fn b_u(&self) -> Result<Tensor> {
        match &self.b_u {
            Some(b) => Ok(b.clone()),
            None => Ok(Tensor::zeros(self.cfg.d_vocab, DType::F32, &self.device)?),
        }
    }
    fn qkv_part(&self, layer: usize, start_heads: usize, n: usize) -> Result<Tensor> {
        let (d, dh) = (self.cfg.d_model, self.cfg.d_head);
        let w = &self.block(layer)?.attn.w_qkv;
        Ok(w.narrow(1, start_heads * dh, n * dh)?
            .reshape((d, n, dh))?
            .permute((1, 0, 2))?)
    }
    /// `W_Q [n_heads, d_model, d_head]`.
    pub fn w_q(&self, layer: usize) -> Result<Tensor> {
        self.qkv_part(layer, 0, self.cfg.n_heads)
    }
    /// `W_K [n_kv_heads, d_model, d_head]`.
    pub fn w_k(&self, layer: usize) -> Result<Tensor> {
        self.qkv_part(layer, self.cfg.n_heads, self.cfg.n_kv_heads)
    }
    /// `W_V [n_kv_heads, d_model, d_head]`.
    pub fn w_v(&self, layer: usize) -> Result<Tensor> {
        self.qkv_part(
            layer,
            self.cfg.n_heads + self.cfg.n_kv_heads,
            self.cfg.n_kv_heads,
        )
    }
    /// `W_O [n_heads, d_head, d_model]`.
    pub fn w_o(&self, layer: usize) -> Result<Tensor> {
        let c = &self.cfg;
        Ok(self
            .block(layer)?
            .attn
            .w_o
            .reshape((c.n_heads, c.d_head, c.d_model))?)
    }
    /// `b_O [d_model]`.
    pub fn b_o(&self, layer: usize) -> Result<Tensor> {
        match &self.block(layer)?.attn.b_o {
            Some(b) => Ok(b.clone()),
            None => Ok(Tensor::zeros(self.cfg.d_model, DType::F32, &self.device)?),
        }
    }
    /// `W_in [d_model, d_mlp]` (the up projection for gated MLPs).
    pub fn w_in(&self, layer: usize) -> Result<Tensor> {
        let m = &self.block(layer)?.mlp;
        Ok(if m.gated {
            m.w_in.narrow(1, m.d_mlp, m.d_mlp)?
        } else {
            m.w_in.clone()
        })
    }
    /// `W_gate [d_model, d_mlp]` (gated MLPs only).
    pub fn w_gate(&self, layer: usize) -> Result<Option<Tensor>> {
        let m = &self.block(layer)?.mlp;
        Ok(if m.gated {
            Some(m.w_in.narrow(1, 0, m.d_mlp)?)
        } else {
            None
        })
    }
    /// `W_out [d_mlp, d_model]`.
    pub fn w_out(&self, layer: usize) -> Result<Tensor> {
        Ok(self.block(layer)?.mlp.w_out.clone())
    }
    /// Number of parameters in the runtime weights.
    pub fn n_params(&self) -> usize {
        let mut n = self.w_e.elem_count() + self.w_u.elem_count();
        n += self.w_pos.as_ref().map_or(0, |t| t.elem_count());
        for b in &self.blocks {
            n += b.attn.w_qkv.elem_count()
                + b.attn.w_o.elem_count()
                + b.mlp.w_in.elem_count()
                + b.mlp.w_out.elem_count();
        }
        n
    }
    /// Every tensor the model holds (weights, biases, rotary tables), as PyTorch's
    /// `parameters()` plus buffers: a new tensor field must be listed here (the blocks' parts
    /// are destructured exhaustively).
    pub(crate) fn tensors(&self) -> Vec<&Tensor> {
        let mut out = vec![&self.w_e, &self.w_u];
        out.extend(self.w_pos.iter().chain(&self.b_u));
        norm_tensors(&self.ln_final, &mut out);
        for b in &self.blocks {
            let Attention {
                w_qkv,
                b_qkv,
                w_o,
                b_o,
                rotary,
                n_heads: _,
                n_kv_heads: _,
                d_head: _,
                attn_scale: _,
                soft_cap: _,
                window: _,
            } = &b.attn;
            let Mlp {
                w_in,
                b_in,
                w_out,
                b_out,
                gated: _,
                act: _,
                d_mlp: _,
            } = &b.mlp;
            out.extend([w_qkv, w_o, w_in, w_out]);
            out.extend(b_qkv.iter().chain(b_o).chain(b_in).chain(b_out));
            if let Some(Rotary { cos, sin }) = rotary {
                out.extend([cos, sin]);
            }
            let post = [&b.ln1_post, &b.ln2_post].map(|p| p.as_ref().map(|p: &PostNorm| &p.norm));
            for n in [Some(&b.ln1), Some(&b.ln2)]
                .into_iter()
                .chain(post)
                .flatten()
            {
                norm_tensors(n, &mut out);
            }
        }
        out
    }
    /// The token ids of `logits`' top `k` at position `pos` of batch 0, with their logits.
    pub fn top_k(&self, logits: &Tensor, pos: usize, k: usize) -> Result<Vec<(u32, f32)>> {
        let row: Vec<f32> = logits.i((0, pos))?.to_dtype(DType::F32)?.to_vec1()?;
        let mut idx: Vec<u32> = (0..row.len() as u32).collect();
        let k = k.min(row.len());
        idx.select_nth_unstable_by(k.saturating_sub(1), |a, b| {
            row[*b as usize].total_cmp(&row[*a as usize])
        });
        let mut top: Vec<(u32, f32)> = idx[..k].iter().map(|&i| (i, row[i as usize])).collect();
        top.sort_by(|a, b| b.1.total_cmp(&a.1));
        Ok(top)
    }
    /// The top `k` next tokens after the last position of `logits`' first row, as
    /// `(token, logit)` (what `utils.test_prompt` lists).
    pub fn top_tokens(&self, logits: &Tensor, k: usize) -> Result<Vec<(String, f32)>> {
        let last = logits
            .dim(1)?
            .checked_sub(1)
            .ok_or_else(|| Error::Invalid("top_tokens: logits have no positions".into()))?;
        self.top_k(logits, last, k)?
            .into_iter()
            .map(|(id, logit)| Ok((self.to_string(&[id])?, logit)))
            .collect()
    }
    /// Every token id whose text satisfies `pred` (e.g. `|s| s.contains("Error")`).
    pub fn tokens_where(&self, pred: impl Fn(&str) -> bool) -> Result<Vec<u32>> {
        let mut ids = Vec::new();
        for id in 0..self.cfg.d_vocab as u32 {
            if pred(&self.to_string(&[id])?) {
                ids.push(id);
            }
        }
        Ok(ids)
    }
}

/// A norm's weight and bias, if any.
fn norm_tensors<'a>(n: &'a Norm, out: &mut Vec<&'a Tensor>) {
    out.extend(n.w.iter().chain(&n.b));
}
