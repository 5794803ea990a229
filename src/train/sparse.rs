//! Sparse decode for top-k SAEs: `f W_dec` where `f` `[n, d_sae]` has few non-zeros per row
//! (k), without the dense `[n, d_sae] × [d_sae, d_in]` product, in the forward pass and in
//! both gradients.
//!
//! Gradients: `∂/∂W_dec[j] = Σ_n f[n, j] · g[n]` (only non-zero `f[n, j]` contribute) and
//! `∂/∂f[n, j] = g[n] · W_dec[j]` **at the non-zero entries of `f` only** (zero elsewhere).
//! That is exact wherever `f` comes from a detached selection mask (`f = h ⊙ mask`, as in
//! top-k / batch top-k / AuxK, optionally times a per-latent scale): the gradient at unselected
//! entries is multiplied by 0 downstream anyway.
use crate::error::Result;
use crate::ops::with_f32;
use candle_core::{CpuStorage, CustomOp2, Layout, Shape, Tensor};
use rayon::prelude::*;

struct SparseDecode;

/// Row-wise non-zeros of `f` `[n, s]`: per row, `(column, value)` pairs.
fn nonzeros(f: &[f32], s: usize) -> Vec<Vec<(u32, f32)>> {
    f.par_chunks(s)
        .map(|row| {
            row.iter()
                .enumerate()
                .filter(|(_, v)| **v != 0.0)
                .map(|(j, v)| (j as u32, *v))
                .collect()
        })
        .collect()
}

fn decode(nz: &[Vec<(u32, f32)>], w: &[f32], d: usize) -> Vec<f32> {
    let mut out = vec![0f32; nz.len() * d];
    out.par_chunks_mut(d)
        .zip(nz.par_iter())
        .for_each(|(o, row)| {
            for &(j, v) in row {
                let wr = &w[j as usize * d..(j as usize + 1) * d];
                for (a, b) in o.iter_mut().zip(wr) {
                    *a += v * b;
                }
            }
        });
    out
}

impl CustomOp2 for SparseDecode {
    fn name(&self) -> &'static str {
        "sparse-decode"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (CpuStorage::F32(f), CpuStorage::F32(w)) = (s1, s2) else {
            candle_core::bail!("sparse-decode: f32 only")
        };
        let (Some((fa, fb)), Some((wa, wb))) = (l1.contiguous_offsets(), l2.contiguous_offsets())
        else {
            candle_core::bail!("sparse-decode: contiguous inputs only")
        };
        let (n, s) = l1.shape().dims2()?;
        let (s2_, d) = l2.shape().dims2()?;
        if s != s2_ {
            candle_core::bail!("sparse-decode: shapes {:?} x {:?}", l1.shape(), l2.shape())
        }
        let nz = nonzeros(&f[fa..fb], s);
        let out = decode(&nz, &w[wa..wb], d);
        Ok((CpuStorage::F32(out), Shape::from((n, d))))
    }
    fn bwd(
        &self,
        f: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let (n, s) = f.dims2()?;
        let d = w.dim(1)?;
        let run = || -> Result<(Tensor, Tensor)> {
            let nz = with_f32(f, |fv| nonzeros(fv, s))?;
            let (gf, gw) = with_f32(grad, |g| {
                with_f32(w, |wv| {
                    // ∂/∂f at the non-zeros
                    let mut gf = vec![0f32; n * s];
                    gf.par_chunks_mut(s)
                        .zip(nz.par_iter())
                        .zip(g.par_chunks(d))
                        .for_each(|((gfr, row), gr)| {
                            for &(j, _) in row {
                                let wr = &wv[j as usize * d..(j as usize + 1) * d];
                                gfr[j as usize] = wr.iter().zip(gr).map(|(a, b)| a * b).sum();
                            }
                        });
                    // ∂/∂W_dec: per latent, its (token, value) list
                    let mut cols: Vec<Vec<(u32, f32)>> = vec![vec![]; s];
                    for (r, row) in nz.iter().enumerate() {
                        for &(j, v) in row {
                            cols[j as usize].push((r as u32, v));
                        }
                    }
                    let mut gw = vec![0f32; s * d];
                    gw.par_chunks_mut(d)
                        .zip(cols.par_iter())
                        .for_each(|(o, col)| {
                            for &(r, v) in col {
                                let gr = &g[r as usize * d..(r as usize + 1) * d];
                                for (a, b) in o.iter_mut().zip(gr) {
                                    *a += v * b;
                                }
                            }
                        });
                    (gf, gw)
                })
            })??;
            Ok((
                Tensor::from_vec(gf, (n, s), f.device())?,
                Tensor::from_vec(gw, (s, d), w.device())?,
            ))
        };
        let (gf, gw) = run().map_err(|e| candle_core::Error::Msg(e.to_string()))?;
        Ok((Some(gf), Some(gw)))
    }
}

/// `f W_dec` for sparse `f` (see the module docs for the gradient convention). CPU, f32.
pub fn sparse_decode(f: &Tensor, w_dec: &Tensor) -> Result<Tensor> {
    Ok(f.contiguous()?
        .apply_op2(&w_dec.contiguous()?, SparseDecode)?)
}

/// `x W` whose backward assumes a sparse incoming gradient (top-k: only selected entries of
/// the pre-activation receive gradient): `∂/∂x = g Wᵀ` and `∂/∂W = xᵀ g` are computed from the
/// non-zeros of `g` only. The forward is the ordinary dense product (computed beforehand and
/// held by the op).
struct SparseGradMatmul {
    out: Tensor,
}

impl CustomOp2 for SparseGradMatmul {
    fn name(&self) -> &'static str {
        "sparse-grad-matmul"
    }
    fn cpu_fwd(
        &self,
        _s1: &CpuStorage,
        _l1: &Layout,
        _s2: &CpuStorage,
        _l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let v = with_f32(&self.out, |o| o.to_vec())
            .map_err(|e| candle_core::Error::Msg(e.to_string()))?;
        Ok((CpuStorage::F32(v), self.out.shape().clone()))
    }
    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let (n, d) = x.dims2()?;
        let s = w.dim(1)?;
        let run = || -> Result<(Tensor, Tensor)> {
            let nz = with_f32(grad, |g| nonzeros(g, s))?;
            let wt = w.t()?.contiguous()?; // [s, d]
            let gx = with_f32(&wt, |wt| decode(&nz, wt, d))?;
            let mut cols: Vec<Vec<(u32, f32)>> = vec![vec![]; s];
            for (r, row) in nz.iter().enumerate() {
                for &(j, v) in row {
                    cols[j as usize].push((r as u32, v));
                }
            }
            let gwt = with_f32(x, |xv| {
                let mut gwt = vec![0f32; s * d];
                gwt.par_chunks_mut(d)
                    .zip(cols.par_iter())
                    .for_each(|(o, col)| {
                        for &(r, v) in col {
                            let xr = &xv[r as usize * d..(r as usize + 1) * d];
                            for (a, b) in o.iter_mut().zip(xr) {
                                *a += v * b;
                            }
                        }
                    });
                gwt
            })?;
            let gw = Tensor::from_vec(gwt, (s, d), w.device())?
                .t()?
                .contiguous()?;
            Ok((Tensor::from_vec(gx, (n, d), x.device())?, gw))
        };
        let (gx, gw) = run().map_err(|e| candle_core::Error::Msg(e.to_string()))?;
        Ok((Some(gx), Some(gw)))
    }
}

/// `x W` (`[n, d] × [d, s]`) with a backward that only visits the non-zeros of the incoming
/// gradient — exact when the gradient is sparse by construction (top-k selections). CPU, f32.
pub fn sparse_grad_matmul(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    let out = x.detach().matmul(&w.detach())?;
    Ok(x.contiguous()?
        .apply_op2(&w.contiguous()?, SparseGradMatmul { out })?)
}
