//! Tensor comparisons for tests.
use saescope::{DType, Tensor};

/// All values as f32, flattened.
pub fn flat(t: &Tensor) -> Vec<f32> {
    t.to_dtype(DType::F32)
        .and_then(|t| t.flatten_all())
        .and_then(|t| t.to_vec1())
        .unwrap()
}

/// `max |t|`.
pub fn max_abs(t: &Tensor) -> f32 {
    flat(t).iter().fold(0f32, |m, v| m.max(v.abs()))
}

/// `max |a - b|`.
pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims(), "shapes differ");
    flat(a)
        .iter()
        .zip(flat(b))
        .fold(0f32, |m, (x, y)| m.max((x - y).abs()))
}

/// `max |a - b| / max |b|`.
pub fn rel_err(a: &Tensor, b: &Tensor) -> f32 {
    max_abs_diff(a, b) / max_abs(b).max(1e-12)
}
