//! Splicing SAEs into a [`HookedModel`](crate::HookedModel), with SAELens's
//! `HookedSAETransformer` semantics: while an SAE is attached, the hook point it replaces
//! (`hook_name_out`) is swapped for the SAE, whose hook points
//! `<hook>.hook_sae_{input,acts_pre,acts_post,recons,error,output}` fire instead; with
//! `use_error_term` the SAE's error (recomputed without hooks, detached) is added back so that
//! without interventions the model's output equals the clean model's. The model sees only the
//! [`Replacement`](crate::hooks::Replacement) trait; attach SAEs with `model.run(prompt).saes(&[&sae])`.
use super::{Sae, SAE_HOOK_NAMES};
use crate::error::{Error, Result};
use crate::hooks::{HookName, LatentSite, ObserveFn, Replacement, SpliceInput};
use candle_core::Tensor;

/// A hook point of an SAE spliced into a model (SAELens's `hook_sae_*`), for
/// [`Sae::hook_point`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SaeHook {
    /// `hook_sae_input`: the activation the SAE reads.
    Input,
    /// `hook_sae_acts_pre`: the latents' pre-activations.
    ActsPre,
    /// `hook_sae_acts_post`: the latent activations.
    ActsPost,
    /// `hook_sae_recons`: the reconstruction.
    Recons,
    /// `hook_sae_error`: the reconstruction error (with the error term only).
    Error,
    /// `hook_sae_output`: what replaces the hook point.
    Output,
}

impl SaeHook {
    /// SAELens's local name (`hook_sae_acts_post`, ...).
    pub fn local_name(self) -> &'static str {
        SAE_HOOK_NAMES[self as usize]
    }
}

/// The six hook points of an SAE spliced at `hook`.
pub fn sae_hook_names(hook: &str) -> Vec<String> {
    SAE_HOOK_NAMES
        .iter()
        .map(|s| format!("{hook}.{s}"))
        .collect()
}

impl Sae {
    /// The full name of one of this SAE's hook points while it is spliced into a model, e.g.
    /// `sae.hook_point(SaeHook::ActsPost)` = `"blocks.15.hook_resid_post.hook_sae_acts_post"`
    /// (SAELens's `f"{sae.cfg.metadata.hook_name}.hook_sae_acts_post"`; for transcoders the
    /// hook points live under the output hook, `hook_name_out`).
    pub fn hook_point(&self, which: SaeHook) -> String {
        format!("{}.{}", self.hook_name_out(), which.local_name())
    }
}

impl LatentSite for Sae {
    fn latent_hook(&self) -> String {
        self.hook_point(SaeHook::ActsPost)
    }
    fn n_latents(&self) -> usize {
        self.d_sae()
    }
}

impl Replacement for Sae {
    fn hook_in(&self) -> &str {
        self.hook_name()
    }
    fn hook_out(&self) -> &str {
        self.hook_name_out()
    }
    fn local_hook_names(&self) -> Vec<String> {
        SAE_HOOK_NAMES.iter().map(|s| s.to_string()).collect()
    }

    /// The SAE wrapper's forward at its hook point.
    fn splice(&self, x: SpliceInput, hp: &mut ObserveFn) -> Result<Tensor> {
        let (inp, orig) = (x.input, x.orig);
        let dims = inp.dims();
        let width = if HookName::parse(self.hook_name()).is_head_hook() && dims.len() >= 2 {
            dims[dims.len() - 2] * dims[dims.len() - 1]
        } else {
            dims.last().copied().unwrap_or(0)
        };
        if width != self.d_in() {
            return Err(Error::Invalid(format!(
                "SAE d_in = {} does not match hook `{}`, whose activations have width {width} (shape {dims:?})",
                self.d_in(),
                self.hook_name()
            )));
        }
        let (f, st) = self.encode_hooked(inp, hp)?;
        let mut y = self.decode_hooked(&f, &st, hp)?;
        if y.dims() != orig.dims() {
            return Err(Error::Invalid(format!(
                "SAE output shape {:?} does not match hook `{}` shape {:?}",
                y.dims(),
                self.hook_name_out(),
                orig.dims()
            )));
        }
        if x.use_error_term {
            // Recomputed without hooks and detached, as SAELens does under no_grad.
            let mut noop = |_: &str, t: Tensor| Ok(t);
            let (f0, st0) = self.encode_hooked(&inp.detach(), &mut noop)?;
            let clean = self.decode_hooked(&f0, &st0, &mut noop)?;
            let err = (orig.detach() - clean)?.detach();
            let err = hp(SaeHook::Error.local_name(), err)?;
            y = (y + err)?;
        }
        let y = x.bypassed(y)?;
        hp(SaeHook::Output.local_name(), y)
    }
}
