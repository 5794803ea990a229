//! Tensor ids across evcxr cells, in one place: the rest of the crate calls [`advance_past`]
//! before a backward pass and [`call_foreign`] around user closures, and knows nothing else.
//!
//! candle numbers tensors from a counter in a `static`, and its backward pass keys gradients by
//! that number. evcxr links every notebook cell as a library of its own, each with its own copy
//! of candle and so of the counter, which restarts at 1 in every cell. A model loaded in one
//! cell and differentiated in another then shares ids with the new cell's tensors, and the
//! backward pass mixes them up (e.g. `shape mismatch in add, lhs: [576, 49152], rhs: [1, 6, 9,
//! 32]`). So before a backward pass this copy's counter is moved past every tensor the pass
//! will meet that it did not make itself: the parameters, the input ([`advance_past`]). Code
//! always runs in the calling cell's copy, because the crate keeps no trait objects across
//! calls (architectures are enums). The exception is a user closure (a custom metric) compiled
//! in an earlier cell: it makes tensors with that cell's counter, which [`call_foreign`]
//! detects so that the caller can start again above it. In an ordinary program there is one
//! counter and all of this costs a few microseconds. `:allow_static_linking 0` (which would
//! share one candle between cells) does not build with evcxr 0.22.
//! `tests/notebooks/evcxr-cross-cell.ipynb` is the regression test (it needs a real kernel).
use crate::error::Result;
use candle_core::{DType, Device, Tensor};

/// Room left for the tensors of a closure made in another evcxr cell.
const FOREIGN_ID_MARGIN: usize = 1 << 20;

/// The number behind `t`'s id (0 if it cannot be read).
fn id_of(t: &Tensor) -> usize {
    // `TensorId` has no public accessor; its Debug form is `TensorId(N)`.
    let s = format!("{:?}", t.id());
    s.trim_start_matches("TensorId(")
        .trim_end_matches(')')
        .parse::<usize>()
        .unwrap_or(0)
}

/// The id the next tensor made by this copy of candle gets (0 if it cannot be read).
fn next_id() -> usize {
    Tensor::zeros((), DType::U8, &Device::Cpu)
        .ok()
        .map(|t| id_of(&t))
        .filter(|&n| n > 0)
        .map_or(0, |n| n + 1)
}

/// Make throwaway tensors until this copy's next id is at least `mark` (a few thousand for a
/// model: about 0.1 ms per thousand).
fn advance_to(mark: usize) {
    let mut next = next_id();
    while next != 0 && next < mark {
        for _ in 0..(mark - next).min(1 << 16) {
            let _ = Tensor::zeros((), DType::U8, &Device::Cpu);
        }
        next = next_id();
    }
}

/// Move this copy's tensor-id counter past every tensor in `held` (what a backward pass will
/// meet that may come from another evcxr cell: parameters, inputs).
pub(crate) fn advance_past<'a>(held: impl IntoIterator<Item = &'a Tensor>) {
    let mark = held.into_iter().map(id_of).max().unwrap_or(0);
    advance_to(mark + 1);
}

/// Call `f` (a user closure) and return its tensor, with `true` when that tensor was made by
/// another copy's counter (a closure compiled in an earlier evcxr cell). This copy's counter
/// is then already moved far above it, so the caller can run its pass again with ids that
/// cannot meet the closure's.
pub(crate) fn call_foreign(f: impl FnOnce() -> Result<Tensor>) -> Result<(Tensor, bool)> {
    let before = next_id();
    let t = f()?;
    let id = id_of(&t);
    let ours = before <= id && id < next_id();
    if !ours {
        advance_to(id + FOREIGN_ID_MARGIN);
    }
    Ok((t, !ours))
}

#[cfg(test)]
mod tests {
    use super::*;

    // Other tests make tensors concurrently, so only lower bounds are checked.
    #[test]
    fn advance_moves_the_counter() {
        let a = next_id();
        assert!(a > 0, "the Debug form of TensorId changed");
        assert!(next_id() > a, "every tensor takes a new id");
        advance_to(a + 5000);
        assert!(next_id() >= a + 5000);
        let t = Tensor::zeros(3, DType::F32, &Device::Cpu).unwrap();
        assert!(id_of(&t) >= a + 5000);
        advance_past([&t]);
        assert!(next_id() > id_of(&t));
    }

    #[test]
    fn a_closure_of_this_copy_is_not_foreign() {
        let made = || Ok(Tensor::zeros(2, DType::F32, &Device::Cpu)?);
        let (t, foreign) = call_foreign(made).unwrap();
        assert!(!foreign);
        let old = t.clone();
        let (_, foreign) = call_foreign(|| Ok(old)).unwrap();
        assert!(
            foreign,
            "a tensor made before the call counts as another copy's"
        );
        assert!(next_id() > id_of(&t) + FOREIGN_ID_MARGIN);
    }
}
