//! Where in the model an analysis acts: the layer of a hook name and a checked position.
use crate::error::{Error, Result};

/// The layer of a `blocks.{L}.…` hook name.
pub(crate) fn hook_layer(hook: &str) -> Option<usize> {
    hook.strip_prefix("blocks.")?
        .split('.')
        .next()?
        .parse()
        .ok()
}

/// `pos` (None = last) checked against `n` positions.
pub(crate) fn resolve_pos(pos: Option<usize>, n: usize) -> Result<usize> {
    match pos {
        None if n > 0 => Ok(n - 1),
        Some(p) if p < n => Ok(p),
        _ => Err(Error::Invalid(format!(
            "position {pos:?} is out of range for {n} positions (None = last)"
        ))),
    }
}
