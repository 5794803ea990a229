//! Sparse autoencoders with SAELens 6.x semantics (STUB: the public API below is the contract;
//! a helper is filling in the architectures, config parsing and loaders).
use crate::error::Result;
use candle_core::Tensor;
use std::path::Path;

pub mod config;
pub use config::SaeConfig;

/// Per-call normalisation state (`constant_norm_rescale` / `layer_norm` need the input's
/// statistics to undo the normalisation in `decode`).
#[derive(Clone, Debug, Default)]
pub struct NormState {
    pub scale: Option<Tensor>,
    pub mu: Option<Tensor>,
    pub std: Option<Tensor>,
}

/// A hook callback for the SAE's hook points: gets the SAE-local hook name
/// (`hook_sae_input`, `hook_sae_acts_pre`, `hook_sae_acts_post`, `hook_sae_recons`) and the
/// activation, returns the (possibly replaced) activation.
pub type SaeHookFn<'a> = dyn FnMut(&str, Tensor) -> Result<Tensor> + 'a;

/// A loaded SAE (any architecture).
pub struct Sae {
    cfg: SaeConfig,
}

impl Sae {
    /// SAELens folder: `cfg.json` + `sae_weights.safetensors`.
    pub fn load_from_disk(_dir: &Path) -> Result<Self> {
        todo!()
    }
    pub fn cfg(&self) -> &SaeConfig {
        &self.cfg
    }
    /// The hook the SAE reads (`metadata.hook_name`).
    pub fn hook_name(&self) -> &str {
        todo!()
    }
    /// The hook the SAE's output replaces (`hook_name_out` for transcoders, else `hook_name`).
    pub fn hook_name_out(&self) -> &str {
        todo!()
    }
    pub fn d_in(&self) -> usize {
        todo!()
    }
    /// Encode with hook points: dtype cast, hook_z flattening, `hook_sae_input`, norm_in,
    /// b_dec subtraction, pre-activation → `hook_sae_acts_pre`, activation → `hook_sae_acts_post`.
    pub fn encode_hooked(&self, _x: &Tensor, _hp: &mut SaeHookFn) -> Result<(Tensor, NormState)> {
        todo!()
    }
    /// Decode with hook points: `f W_dec + b_dec` → `hook_sae_recons` → norm_out → reshape_out.
    pub fn decode_hooked(&self, _f: &Tensor, _st: &NormState, _hp: &mut SaeHookFn) -> Result<Tensor> {
        todo!()
    }
}
