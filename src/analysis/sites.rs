//! Where in the prompt an analysis acts: a checked position.
use crate::error::{Error, Result};

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
