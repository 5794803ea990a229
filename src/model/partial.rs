//! Partial forward passes: TransformerLens's `forward(start_at_layer=...)` (run some blocks on
//! a given residual stream) and the final norm on its own.
use super::HookedModel;
use crate::error::Result;
use crate::hooks::HookCtx;
use candle_core::Tensor;

impl HookedModel {
    /// TL's `forward(resid, start_at_layer = start, stop_at_layer = stop)` without hooks: runs
    /// blocks `start..stop` (`stop` None = all) on `resid [batch, pos, d_model]`, the residual
    /// stream entering block `start` (`blocks.{start}.hook_resid_pre`) at positions `0..pos`,
    /// and returns the residual stream after the last block run (before the final norm).
    pub fn run_blocks(
        &self,
        resid: &Tensor,
        start_at_layer: usize,
        stop_at_layer: Option<usize>,
    ) -> Result<Tensor> {
        // Without a stop, run every block but stop before the final norm.
        let stop = stop_at_layer.unwrap_or(self.cfg.n_layers);
        self.run_from(resid, start_at_layer, &mut HookCtx::default(), Some(stop))
    }

    /// The model's final norm (`ln_final`, with its weights if they were not folded) on
    /// residual vectors `[..., d_model]`, each normalised with its own statistics.
    pub fn apply_ln_final(&self, x: &Tensor) -> Result<Tensor> {
        self.ln_final.apply(x)
    }
}

impl HookedModel {
    /// The final norm with its scale frozen (detached, so no gradient flows through the
    /// normalisation statistics): circuit-tracer's local replacement model at `ln_final`.
    pub(crate) fn apply_ln_final_frozen(&self, x: &Tensor) -> Result<Tensor> {
        let mut hooks = crate::hooks::Hooks::new();
        hooks.add_filter(
            |n: &str| n == "ln_final.hook_scale",
            |s: &Tensor, _: &str| Ok(Some(s.detach())),
        );
        let mut ctx = HookCtx {
            hooks: Some(&mut hooks),
            ..HookCtx::default()
        };
        self.ln_final.forward(
            x,
            &mut ctx,
            "ln_final.hook_scale",
            "ln_final.hook_normalized",
        )
    }
}

impl HookedModel {
    /// Block `layer`'s MLP alone on arbitrary residual-stream vectors `x [..., d_model]`: its
    /// input norm (`ln2`, each vector with its own statistics), the MLP and any post-norm —
    /// what the block adds to the residual stream (ARENA's `blocks[L].mlp(blocks[L].ln2(x))`).
    pub fn mlp_on(&self, layer: usize, x: &Tensor) -> Result<Tensor> {
        let b = self.blocks.get(layer).ok_or_else(|| {
            crate::error::Error::Invalid(format!(
                "layer {layer} out of range (n_layers = {})",
                self.cfg.n_layers
            ))
        })?;
        let dims = x.dims().to_vec();
        let d = self.cfg.d_model;
        let flat = x.reshape((1, x.elem_count() / d, d))?;
        let y = b.ln2.apply(&flat)?;
        let y = b
            .mlp
            .forward(&y, &mut HookCtx::default(), &self.names[layer])?;
        let y = match &b.ln2_post {
            Some(pn) => pn.norm.apply(&y)?,
            None => y,
        };
        Ok(y.reshape(dims)?)
    }
}
