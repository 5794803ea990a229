//! Tensor ids across evcxr cells.
//!
//! candle numbers tensors from a counter in a `static`, and its backward pass keys gradients by
//! that number. evcxr links every notebook cell as a library of its own, each with its own copy
//! of candle and so of the counter, which restarts at 1 in every cell. A model loaded in one
//! cell and differentiated in another then shares ids with the new cell's tensors, and the
//! backward pass mixes them up (e.g. `shape mismatch in add, lhs: [576, 49152], rhs: [1, 6, 9,
//! 32]`). Models and SAEs record the next id when they are built ([`next_id`]); before a
//! backward pass saescope moves this copy's counter past them ([`advance_past`]). Objects that
//! keep trait objects (training architectures) note the copy that made them ([`copy_id`]) and
//! are rebuilt in the calling copy; a custom metric whose result was made by another copy's
//! counter makes `get_cache_fwd_and_bwd` start again far above that counter. In an ordinary
//! program there is one counter and all of this costs nothing.
//! `tests/notebooks/evcxr-cross-cell.ipynb` is the regression test (it needs a real kernel).
use candle_core::{DType, Device, Tensor};

/// The number behind `t`'s id (0 if it cannot be read).
pub(crate) fn id_of(t: &Tensor) -> usize {
    // `TensorId` has no public accessor; its Debug form is `TensorId(N)`.
    let s = format!("{:?}", t.id());
    s.trim_start_matches("TensorId(")
        .trim_end_matches(')')
        .parse::<usize>()
        .unwrap_or(0)
}

/// The id the next tensor made by this copy of candle gets (0 if it cannot be read).
pub(crate) fn next_id() -> usize {
    Tensor::zeros((), DType::U8, &Device::Cpu)
        .ok()
        .map(|t| id_of(&t))
        .filter(|&n| n > 0)
        .map_or(0, |n| n + 1)
}

/// Identifies the copy of saescope this code runs in (the address of one of its functions):
/// objects that keep trait objects compare it to rebuild them in the calling cell's copy.
pub(crate) fn copy_id() -> usize {
    copy_id as fn() -> usize as usize
}

/// Make throwaway tensors until this copy's next id is at least `mark` (a few thousand for a
/// model: about 0.1 ms per thousand).
pub(crate) fn advance_past(mark: usize) {
    let mut next = next_id();
    while next != 0 && next < mark {
        for _ in 0..(mark - next).min(1 << 16) {
            let _ = Tensor::zeros((), DType::U8, &Device::Cpu);
        }
        next = next_id();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advance_moves_the_counter() {
        let a = next_id();
        assert!(a > 0, "the Debug form of TensorId changed");
        assert!(next_id() > a, "every tensor takes a new id");
        advance_past(a + 5000);
        assert!(next_id() >= a + 5000);
        let b = next_id();
        advance_past(10); // already past: nothing to do
        assert_eq!(next_id(), b + 2); // one tensor each for the two calls
        let t = Tensor::zeros(3, DType::F32, &Device::Cpu).unwrap();
        assert_eq!(id_of(&t) + 1, next_id() - 1);
        assert_eq!(copy_id(), copy_id());
    }
}
