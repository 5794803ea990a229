//! Fused CPU kernels for the forward pass's elementwise work, used only where nothing observes
//! the intermediate hook points and no gradient is tracked (otherwise the plain candle ops,
//! which TL's hook semantics and autograd need, run instead). Each returns `None` when its
//! input is not a contiguous f32 CPU tensor, so callers fall back.
use crate::error::Result;
use candle_core::{Storage, Tensor};
use rayon::prelude::*;

/// Rows handed to one rayon task: enough work to amortise scheduling.
fn rows_per_task(row_len: usize) -> usize {
    (16384 / row_len.max(1)).max(1)
}

/// Run `f` on the contiguous f32 data of `t` (CPU only).
fn with_f32<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> R) -> Option<R> {
    if t.dtype() != candle_core::DType::F32 || t.track_op() {
        return None;
    }
    let (storage, layout) = t.storage_and_layout();
    let (start, end) = layout.contiguous_offsets()?;
    match &*storage {
        Storage::Cpu(cpu) => cpu.as_slice::<f32>().ok().map(|s| f(&s[start..end])),
        _ => None,
    }
}

/// `x / sqrt(mean(x²) + eps)` over the last dim, after centring when `center` (TL's LNPre and
/// RMSPre, i.e. a norm whose weights are folded).
pub(crate) fn normalize(x: &Tensor, eps: f64, center: bool) -> Result<Option<Tensor>> {
    let d = x.dim(candle_core::D::Minus1)?;
    let out = with_f32(x, |xs| {
        let mut out = vec![0f32; xs.len()];
        out.par_chunks_mut(d * rows_per_task(d))
            .zip(xs.par_chunks(d * rows_per_task(d)))
            .for_each(|(o, xi)| {
                for (o, xr) in o.chunks_mut(d).zip(xi.chunks(d)) {
                    let mean = if center {
                        xr.iter().map(|&v| v as f64).sum::<f64>() / d as f64
                    } else {
                        0.0
                    } as f32;
                    let ss: f64 = xr.iter().map(|&v| ((v - mean) as f64).powi(2)).sum();
                    let inv = 1.0 / ((ss / d as f64 + eps).sqrt() as f32);
                    for (o, &v) in o.iter_mut().zip(xr) {
                        *o = (v - mean) * inv;
                    }
                }
            });
        out
    });
    match out {
        Some(v) => Ok(Some(Tensor::from_vec(v, x.shape(), x.device())?)),
        None => Ok(None),
    }
}

/// For `h = [gate | up]` of shape `[n, 2 d_mlp]`: `silu(gate) * up`, shape `[n, d_mlp]`.
pub(crate) fn silu_mul_halves(h: &Tensor, d_mlp: usize) -> Result<Option<Tensor>> {
    let n = h.dim(0)?;
    let out = with_f32(h, |hs| {
        let mut out = vec![0f32; n * d_mlp];
        let rows = rows_per_task(d_mlp);
        out.par_chunks_mut(d_mlp * rows)
            .zip(hs.par_chunks(2 * d_mlp * rows))
            .for_each(|(o, hi)| {
                for (o, hr) in o.chunks_mut(d_mlp).zip(hi.chunks(2 * d_mlp)) {
                    let (g, u) = hr.split_at(d_mlp);
                    for ((o, &g), &u) in o.iter_mut().zip(g).zip(u) {
                        *o = g / (1.0 + (-g).exp()) * u;
                    }
                }
            });
        out
    });
    match out {
        Some(v) => Ok(Some(Tensor::from_vec(v, (n, d_mlp), h.device())?)),
        None => Ok(None),
    }
}

/// Causal softmax of raw attention scores `[b, h, q, k]` scaled by `scale`: row `i` is the
/// softmax of `scores[.., i, ..=i] * scale`, zero beyond the diagonal (what TL's
/// masked `hook_attn_scores` → `hook_pattern` gives).
pub(crate) fn causal_softmax(scores: &Tensor, scale: f32) -> Result<Option<Tensor>> {
    let (_, _, q, k) = scores.dims4()?;
    if q != k {
        return Ok(None);
    }
    let out = with_f32(scores, |s| {
        let mut out = vec![0f32; s.len()];
        out.par_chunks_mut(q * k)
            .zip(s.par_chunks(q * k))
            .for_each(|(o, si)| {
                for (i, (o, sr)) in o.chunks_mut(k).zip(si.chunks(k)).enumerate() {
                    let row = &sr[..=i];
                    let max = row.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v * scale));
                    let mut sum = 0f32;
                    for (o, &v) in o[..=i].iter_mut().zip(row) {
                        *o = (v * scale - max).exp();
                        sum += *o;
                    }
                    let inv = 1.0 / sum;
                    o[..=i].iter_mut().for_each(|v| *v *= inv);
                }
            });
        out
    });
    match out {
        Some(v) => Ok(Some(Tensor::from_vec(v, scores.shape(), scores.device())?)),
        None => Ok(None),
    }
}
