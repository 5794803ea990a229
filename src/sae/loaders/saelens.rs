//! SAELens folders (`sae_lens` conversion): `cfg.json` + `sae_weights.safetensors`, plus an
//! optional `sparsity.safetensors` (key `sparsity`, `[d_sae]`, `log10(freq + 1e-10)`).
use super::files::{read_safetensors, take};
use super::{read_json_object, LoadCtx, RawSae};
use crate::error::{Error, Result};
use candle_core::Device;

pub(crate) const CFG: &str = "cfg.json";
pub(crate) const WEIGHTS: &str = "sae_weights.safetensors";
pub(crate) const SPARSITY: &str = "sparsity.safetensors";

pub(crate) fn load(ctx: &LoadCtx) -> Result<RawSae> {
    let cfg_path = ctx.src.require(&ctx.file(CFG))?;
    let mut cfg = read_json_object(&cfg_path)?;
    ctx.apply_overrides(&mut cfg);
    let weights_path = ctx.src.require(&ctx.file(WEIGHTS)).map_err(|e| match e {
        // A folder with only cfg.json may be a sparsify folder that lost its weights.
        Error::SaeFile { path, reason } => Error::SaeFile {
            path,
            reason: format!(
                "{reason}; a SAELens folder has cfg.json + {WEIGHTS} (sparsify: cfg.json + {})",
                super::sparsify::WEIGHTS
            ),
        },
        e => e,
    })?;
    let tensors = read_safetensors(&weights_path, &Device::Cpu)?;
    let sparsity = match ctx.src.optional(&ctx.file(SPARSITY))? {
        Some(p) => {
            let mut m = read_safetensors(&p, &Device::Cpu)?;
            Some((take(&mut m, "sparsity", &p)?, p))
        }
        None => None,
    };
    Ok(RawSae {
        cfg,
        tensors,
        sparsity,
        cfg_path: Some(cfg_path),
        weights_path,
    })
}
