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
