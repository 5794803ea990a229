//! The model's linear parts, for code that propagates gradients through circuit-tracer's
//! local replacement model by hand (attention patterns and norm scales frozen, MLPs removed):
//! per block, what the residual stream's gradient meets on its way down.
use super::HookedModel;
use candle_core::Tensor;

/// A norm with its scale frozen: `y = centre(x) / s · w` (`w` None when folded away).
pub(crate) struct FrozenNorm<'a> {
    /// LayerNorm subtracts the mean first (RMSNorm does not).
    pub center: bool,
    /// The weight the normalised activation is multiplied by, if not folded.
    pub w: Option<&'a Tensor>,
}

/// One block's attention path: `resid → ln1 → V → pattern → O`.
pub(crate) struct LinearBlock<'a> {
    /// The attention input norm.
    pub ln1: FrozenNorm<'a>,
    /// `[d_model, n_kv_heads · d_head]`: the value projection.
    pub w_v: Tensor,
    /// `[n_heads · d_head, d_model]`: the output projection.
    pub w_o: &'a Tensor,
    /// Query heads, key/value heads, head width.
    pub n_heads: usize,
    /// Key/value heads (query heads `kv·rep .. kv·rep + rep` share head `kv`).
    pub n_kv_heads: usize,
    /// Head width.
    pub d_head: usize,
}

fn norm(n: &super::blocks::Norm) -> FrozenNorm<'_> {
    FrozenNorm {
        center: n.kind.is_layer_norm(),
        w: n.w.as_ref().filter(|_| n.kind.has_weights()),
    }
}

impl HookedModel {
    /// The attention paths, the MLP input norms and the final norm, or None for models whose
    /// blocks have post-norms (Gemma-2), which this view does not cover.
    pub(crate) fn linear_view(
        &self,
    ) -> Option<(Vec<LinearBlock<'_>>, Vec<FrozenNorm<'_>>, FrozenNorm<'_>)> {
        let mut blocks = Vec::new();
        let mut ln2 = Vec::new();
        for b in &self.blocks {
            if b.ln1_post.is_some() || b.ln2_post.is_some() {
                return None;
            }
            let a = &b.attn;
            let (h, hkv, dh) = (a.n_heads, a.n_kv_heads, a.d_head);
            let w_v = a.w_qkv.narrow(1, (h + hkv) * dh, hkv * dh).ok()?;
            blocks.push(LinearBlock {
                ln1: norm(&b.ln1),
                w_v,
                w_o: &a.w_o,
                n_heads: h,
                n_kv_heads: hkv,
                d_head: dh,
            });
            ln2.push(norm(&b.ln2));
        }
        Some((blocks, ln2, norm(&self.ln_final)))
    }
}
