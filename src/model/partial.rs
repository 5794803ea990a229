//! Partial forward passes: TransformerLens's `forward(start_at_layer=...)` (run some blocks on
//! a given residual stream) and the final norm on its own.
use super::HookedModel;
use crate::error::{Error, Result};
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
        let n = self.cfg.n_layers;
        let stop = stop_at_layer.unwrap_or(n);
        if start_at_layer > stop || stop > n {
            return Err(Error::Invalid(format!(
                "run_blocks: need start_at_layer ≤ stop_at_layer ≤ n_layers ({start_at_layer}, {stop}, {n})"
            )));
        }
        let (_, p, d) = resid.dims3()?;
        if d != self.cfg.d_model || p > self.cfg.n_ctx {
            return Err(Error::Invalid(format!(
                "run_blocks: resid {:?} must be [batch, pos ≤ {}, {}]",
                resid.dims(),
                self.cfg.n_ctx,
                self.cfg.d_model
            )));
        }
        let mut x = resid.to_device(&self.device)?;
        let mut ctx = HookCtx::default();
        for (block, names) in self
            .blocks
            .iter()
            .zip(&self.names)
            .take(stop)
            .skip(start_at_layer)
        {
            x = block.forward(x, &mut ctx, names, None)?;
        }
        Ok(x)
    }

    /// The model's final norm (`ln_final`, with its weights if they were not folded) on
    /// residual vectors `[..., d_model]`, each normalised with its own statistics.
    pub fn apply_ln_final(&self, x: &Tensor) -> Result<Tensor> {
        self.ln_final.apply(x)
    }
}
