//! Replacing a hook point for one pass, as SAELens's `HookedSAETransformer` swaps a
//! `HookPoint` module for an SAE module. The hook layer knows only this trait: what replaces
//! the hook point (an SAE, a transcoder, a future CLT) implements it in its own module.
use super::HookCtx;
use crate::error::{Error, Result};
use candle_core::Tensor;

/// Callback a [`Replacement`] calls at each of its own hook points: gets the hook point's
/// local name (e.g. `hook_sae_acts_post`) and the activation, returns the activation after the
/// user's hooks ran (and caches it when asked).
pub type ObserveFn<'a> = dyn FnMut(&str, Tensor) -> Result<Tensor> + 'a;

/// What a replacement sees of one spliced pass.
pub struct SpliceInput<'a> {
    /// The activation at [`Replacement::hook_in`] (equal to `orig` unless it reads another hook).
    pub input: &'a Tensor,
    /// The activation it replaces, at [`Replacement::hook_out`].
    pub orig: &'a Tensor,
    /// Add the reconstruction error back (SAELens's `use_error_term`).
    pub use_error_term: bool,
    bypass: Option<&'a Tensor>,
}

impl SpliceInput<'_> {
    /// `y` with the positions that bypass the replacement (SAELens's
    /// `exclude_special_tokens`) set back to `orig`; call it before the last hook point.
    pub fn bypassed(&self, y: Tensor) -> Result<Tensor> {
        let Some(mask) = self.bypass else {
            return Ok(y);
        };
        let mut shape = mask.dims().to_vec();
        shape.resize(self.orig.rank(), 1);
        let m = mask.reshape(shape)?.broadcast_as(self.orig.shape())?;
        Ok(m.where_cond(self.orig, &y)?)
    }
}

/// A module that replaces the hook point [`Replacement::hook_out`] while it is attached.
pub trait Replacement {
    /// The hook point whose activation it reads (transcoders read another hook).
    fn hook_in(&self) -> &str;
    /// The hook point it replaces; its own hook points are `<hook_out>.<local name>`.
    fn hook_out(&self) -> &str;
    /// Its own hook points' local names, in firing order.
    fn local_hook_names(&self) -> Vec<String>;
    /// Compute the replacement of `x.orig` (same shape), calling `observe` at each of its own
    /// hook points, the last one included.
    fn splice(&self, x: SpliceInput, observe: &mut ObserveFn) -> Result<Tensor>;
}

/// One replacement attached for a pass.
pub(crate) struct Attached<'a> {
    pub rep: &'a dyn Replacement,
    pub use_error_term: bool,
    /// `[batch, pos]` u8, 1 where the position bypasses the replacement.
    pub bypass: Option<Tensor>,
}

/// The replacement's forward at hook point `name` (called from [`HookCtx::hp`]).
pub(crate) fn splice(
    ctx: &mut HookCtx,
    a: &Attached,
    i: usize,
    name: &str,
    orig: Tensor,
) -> Result<Tensor> {
    let input = ctx.captured[i].take().unwrap_or_else(|| orig.clone());
    let mut observe = |local: &str, t: Tensor| ctx.observe(&format!("{name}.{local}"), t);
    let x = SpliceInput {
        input: &input,
        orig: &orig,
        use_error_term: a.use_error_term,
        bypass: a.bypass.as_ref(),
    };
    let y = a.rep.splice(x, &mut observe)?;
    if y.dims() != orig.dims() {
        return Err(Error::Invalid(format!(
            "the replacement of hook `{name}` returned shape {:?}, but the activation has shape {:?}",
            y.dims(),
            orig.dims()
        )));
    }
    Ok(y)
}
