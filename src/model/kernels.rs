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

/// A kernel's output as a tensor (None passes through: the caller falls back).
fn to_tensor(
    out: Option<Vec<f32>>,
    shape: impl Into<candle_core::Shape>,
    device: &candle_core::Device,
) -> Result<Option<Tensor>> {
    Ok(match out {
        Some(v) => Some(Tensor::from_vec(v, shape, device)?),
        None => None,
    })
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
    to_tensor(out, x.shape(), x.device())
}

/// The activation of a fused gated MLP kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum GatedAct {
    Silu,
    /// The tanh approximation of GELU (`gelu_new`, `gelu_pytorch_tanh`), as candle's `gelu`.
    GeluTanh,
}

#[inline]
fn gated_act(act: GatedAct, g: f32) -> f32 {
    match act {
        GatedAct::Silu => g / (1.0 + (-g).exp()),
        GatedAct::GeluTanh => {
            const SQRT_TWO_OVER_PI: f32 = 0.797_884_6;
            0.5 * g * (1.0 + (SQRT_TWO_OVER_PI * g * (1.0 + 0.044715 * g * g)).tanh())
        }
    }
}

/// For `h = [gate | up]` of shape `[n, 2 d_mlp]`: `act(gate) * up`, shape `[n, d_mlp]`.
pub(crate) fn act_mul_halves(h: &Tensor, d_mlp: usize, act: GatedAct) -> Result<Option<Tensor>> {
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
                        *o = gated_act(act, g) * u;
                    }
                }
            });
        out
    });
    to_tensor(out, (n, d_mlp), h.device())
}

/// How raw attention scores become TL's `hook_attn_scores`: `raw * scale`, then (Gemma-2)
/// `cap·tanh(x / cap)`, then the causal mask, narrowed to the last `window` keys for
/// sliding-window layers (key `j` is visible from query `i` iff `i − window < j ≤ i`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct ScoreMask {
    pub scale: f32,
    pub soft_cap: Option<f32>,
    pub window: Option<usize>,
}

impl ScoreMask {
    #[inline]
    fn score(&self, v: f32) -> f32 {
        let s = v * self.scale;
        match self.soft_cap {
            Some(c) => c * (s / c).tanh(),
            None => s,
        }
    }
    /// The first visible key of the query at absolute position `i`.
    #[inline]
    fn first_key(&self, i: usize) -> usize {
        self.window.map_or(0, |w| (i + 1).saturating_sub(w))
    }
}

/// Causal softmax of raw attention scores `[b, h, q, k]` under `m`: row `i` is the softmax of
/// the visible scores of `m`, zero elsewhere (what TL's masked `hook_attn_scores` →
/// `hook_pattern` gives). With `q < k` (a KV cache holding `k − q` earlier positions) query row
/// `i` sits at absolute position `i + k − q`.
pub(crate) fn causal_softmax(scores: &Tensor, m: ScoreMask) -> Result<Option<Tensor>> {
    map_score_rows(
        scores,
        |o, sr, lo, i| {
            let (row, o) = (&sr[lo..=i], &mut o[lo..=i]);
            for (o, &v) in o.iter_mut().zip(row) {
                *o = m.score(v);
            }
            let max = o.iter().fold(f32::NEG_INFINITY, |a, &v| a.max(v));
            let mut sum = 0f32;
            for o in o.iter_mut() {
                *o = (*o - max).exp();
                sum += *o;
            }
            let inv = 1.0 / sum;
            o.iter_mut().for_each(|v| *v *= inv);
        },
        m,
    )
}

/// Run `row(out_row, scores_row, lo, i)` on every query row of scores `[b, h, q, k]` and of a
/// zeroed output of the same shape, where `i` is the row's absolute position (`row + k − q`)
/// and `lo` its first visible key under `m`. `None` unless `q ≤ k` and the scores are
/// contiguous f32 on the CPU.
fn map_score_rows(
    scores: &Tensor,
    row: impl Fn(&mut [f32], &[f32], usize, usize) + Sync,
    m: ScoreMask,
) -> Result<Option<Tensor>> {
    let (_, _, q, k) = scores.dims4()?;
    if q > k {
        return Ok(None);
    }
    let past = k - q;
    let out = with_f32(scores, |s| {
        let mut out = vec![0f32; s.len()];
        out.par_chunks_mut(q * k)
            .zip(s.par_chunks(q * k))
            .for_each(|(o, si)| {
                for (r, (o, sr)) in o.chunks_mut(k).zip(si.chunks(k)).enumerate() {
                    let i = r + past;
                    row(o, sr, m.first_key(i), i);
                }
            });
        out
    });
    to_tensor(out, scores.shape(), scores.device())
}

/// The first half of a norm: `(x − mean(x))` when `center` (else `x`) and the scale
/// `sqrt(mean(x²) + eps)` `[.., 1]`, in one pass, for when `hook_scale` is observed.
pub(crate) fn center_and_scale(
    x: &Tensor,
    eps: f64,
    center: bool,
) -> Result<Option<(Tensor, Tensor)>> {
    let d = x.dim(candle_core::D::Minus1)?;
    let out = with_f32(x, |xs| {
        let rows = xs.len() / d.max(1);
        let mut xc = if center {
            vec![0f32; xs.len()]
        } else {
            Vec::new()
        };
        let mut scale = vec![0f32; rows];
        let per = rows_per_task(d);
        let body = |(s, xi): (&mut [f32], &[f32]), xc: Option<&mut [f32]>| {
            let mut xc = xc;
            for (r, (s, xr)) in s.iter_mut().zip(xi.chunks(d)).enumerate() {
                let mean = if center {
                    (xr.iter().map(|&v| v as f64).sum::<f64>() / d as f64) as f32
                } else {
                    0.0
                };
                let ss: f64 = xr.iter().map(|&v| ((v - mean) as f64).powi(2)).sum();
                *s = (ss / d as f64 + eps).sqrt() as f32;
                if let Some(xc) = xc.as_deref_mut() {
                    for (o, &v) in xc[r * d..(r + 1) * d].iter_mut().zip(xr) {
                        *o = v - mean;
                    }
                }
            }
        };
        if center {
            scale
                .par_chunks_mut(per)
                .zip(xs.par_chunks(d * per))
                .zip(xc.par_chunks_mut(d * per))
                .for_each(|((s, xi), c)| body((s, xi), Some(c)));
        } else {
            scale
                .par_chunks_mut(per)
                .zip(xs.par_chunks(d * per))
                .for_each(|(s, xi)| body((s, xi), None));
        }
        (xc, scale)
    });
    let Some((xc, scale)) = out else {
        return Ok(None);
    };
    let mut sshape = x.dims().to_vec();
    *sshape.last_mut().expect("rank >= 1") = 1;
    let scale = Tensor::from_vec(scale, sshape, x.device())?;
    let xc = if center {
        Tensor::from_vec(xc, x.shape(), x.device())?
    } else {
        x.clone()
    };
    Ok(Some((xc, scale)))
}

/// Attention scores `[b, h, q, k]` under `m`, −inf where masked (TL's masked
/// `hook_attn_scores`); query row `i` sits at absolute position `i + k − q`.
pub(crate) fn scale_and_mask(raw: &Tensor, m: ScoreMask) -> Result<Option<Tensor>> {
    map_score_rows(
        raw,
        |o, sr, lo, i| {
            for (j, (o, &v)) in o.iter_mut().zip(sr).enumerate() {
                *o = if (lo..=i).contains(&j) {
                    m.score(v)
                } else {
                    f32::NEG_INFINITY
                };
            }
        },
        m,
    )
}

/// The softmax over the last dim of scores that [`scale_and_mask`] made under `m` (−inf exactly
/// where `m` masks), bit for bit what candle's `softmax_last_dim` gives for them, without the
/// exponentials of the masked entries (`exp(−inf) = 0`): the same row maximum and the same
/// summation over the whole row, then the same division.
pub(crate) fn softmax_masked(scores: &Tensor, m: ScoreMask) -> Result<Option<Tensor>> {
    use candle_core::cpu::kernels::VecOps;
    map_score_rows(
        scores,
        |o, sr, lo, i| {
            let (mut max, mut sum) = (f32::NEG_INFINITY, 0f32);
            // SAFETY: `sr` holds the row's `k` elements.
            unsafe { f32::vec_reduce_max(sr.as_ptr(), &mut max, sr.len()) };
            for (o, &v) in o[lo..=i].iter_mut().zip(&sr[lo..=i]) {
                *o = (v - max).exp();
            }
            // SAFETY: `o` holds the row's `k` elements.
            unsafe { f32::vec_reduce_sum(o.as_ptr(), &mut sum, o.len()) };
            o[lo..=i].iter_mut().for_each(|v| *v /= sum);
        },
        m,
    )
}

/// `silu(a) * b` for two contiguous f32 tensors of one shape.
pub(crate) fn silu_mul(a: &Tensor, b: &Tensor) -> Result<Option<Tensor>> {
    if a.dims() != b.dims() {
        return Ok(None);
    }
    let out = with_f32(a, |av| {
        with_f32(b, |bv| {
            let mut out = vec![0f32; av.len()];
            out.par_chunks_mut(16384)
                .zip(av.par_chunks(16384))
                .zip(bv.par_chunks(16384))
                .for_each(|((o, a), b)| {
                    for ((o, &g), &u) in o.iter_mut().zip(a).zip(b) {
                        *o = g / (1.0 + (-g).exp()) * u;
                    }
                });
            out
        })
    })
    .flatten();
    to_tensor(out, a.shape(), a.device())
}

/// `x / scale` for `x [.., d]` and `scale [.., 1]` (a norm's division by `hook_scale`), the
/// same f32 division per element as candle's `broadcast_div`.
pub(crate) fn div_rows(x: &Tensor, scale: &Tensor) -> Result<Option<Tensor>> {
    let d = x.dim(candle_core::D::Minus1)?;
    let (xd, sd) = (x.dims(), scale.dims());
    if xd.len() != sd.len() || xd[..xd.len() - 1] != sd[..sd.len() - 1] || sd[sd.len() - 1] != 1 {
        return Ok(None);
    }
    let out = with_f32(x, |xs| {
        with_f32(scale, |ss| {
            let mut out = vec![0f32; xs.len()];
            let per = rows_per_task(d);
            out.par_chunks_mut(d * per)
                .zip(xs.par_chunks(d * per))
                .zip(ss.par_chunks(per))
                .for_each(|((o, xi), si)| {
                    for ((o, xr), &s) in o.chunks_mut(d).zip(xi.chunks(d)).zip(si) {
                        for (o, &v) in o.iter_mut().zip(xr) {
                            *o = v / s;
                        }
                    }
                });
            out
        })
    })
    .flatten();
    to_tensor(out, x.shape(), x.device())
}
