//! The fused `standard` step (L1 penalty with `lp_norm = 1`). With `r_j = ‖W_dec[j]‖`,
//! `x̃ = x − b_dec` (when `apply_b_dec_to_input`), `h = x̃ W_enc + b_enc`, `f = ReLU(h)`:
//!
//! - `x̂ = f W_dec + b_dec`, `mse = mean_n ‖x̂ − y‖²`, `g = 2 (x̂ − y) / N` (target `y`: `x`
//!   for SAEs, the output hook for transcoders);
//! - `l1 = λ · mean_n Σ_j f_j r_j`;
//! - `∂W_dec = fᵀ g + (λ/N) (Σ_n f_j) W_dec[j] / r_j`;
//! - `∂h = (g W_decᵀ + λ r / N) ⊙ [h > 0]`;
//! - `∂W_enc = x̃ᵀ ∂h`, `∂b_enc = Σ_n ∂h`, `∂b_dec = Σ_n g − W_enc ∂b_enc`.
use super::fused::{col_sums, dot, grads_in_order, FusedStep};
use super::TrainingSae;
use crate::error::Result;
use crate::ops::with_f32;
use candle_core::Tensor;
use rayon::prelude::*;

impl TrainingSae {
    pub(super) fn standard_step(
        &self,
        x: &Tensor,
        target: &Tensor,
        l1_coef: f64,
    ) -> Result<FusedStep> {
        let p = &self.params;
        // d: the reconstruction's width (d_out; d_in for SAEs)
        let (n, d) = target.dims2()?;
        let s = self.cfg.d_sae;
        let dev = x.device();
        let get = |name: &str| -> Result<Tensor> { Ok(p.get(name)?.detach()) };
        let (w_enc, w_dec, b_dec, b_enc) =
            (get("W_enc")?, get("W_dec")?, get("b_dec")?, get("b_enc")?);
        let xc = if self.cfg.apply_b_dec_to_input {
            x.broadcast_sub(&b_dec)?
        } else {
            x.clone()
        };
        let r: Vec<f32> = with_f32(&w_dec, |w| {
            w.par_chunks(d).map(|row| dot(row, row).sqrt()).collect()
        })?;
        let b_enc_v = with_f32(&b_enc, |v| v.to_vec())?;
        // f = ReLU(x̃ W_enc + b_enc), and its firing counts / L1 per row.
        let h = xc.matmul(&w_enc)?;
        let f: Vec<f32> = with_f32(&h, |hv| {
            let mut f = vec![0f32; n * s];
            f.par_chunks_mut(s)
                .zip(hv.par_chunks(s))
                .for_each(|(fr, hr)| {
                    for ((o, h), b) in fr.iter_mut().zip(hr).zip(&b_enc_v) {
                        *o = (h + b).max(0.0);
                    }
                });
            f
        })?;
        drop(h);
        let f = Tensor::from_vec(f, (n, s), dev)?;
        let out = f.matmul(&w_dec)?.broadcast_add(&b_dec)?;
        // MSE and its gradient.
        let (g_out, se) = with_f32(&out, |o| {
            with_f32(target, |xv| {
                let mut g = vec![0f32; n * d];
                let parts: Vec<f64> = g
                    .par_chunks_mut(d * 64)
                    .zip(o.par_chunks(d * 64).zip(xv.par_chunks(d * 64)))
                    .map(|(gb, (ob, xb))| {
                        let mut se = 0f64;
                        for ((gj, oj), xj) in gb.iter_mut().zip(ob).zip(xb) {
                            let e = oj - xj;
                            se += (e as f64) * (e as f64);
                            *gj = e * (2.0 / n as f32);
                        }
                        se
                    })
                    .collect();
                (g, parts.iter().sum::<f64>())
            })
        })??;
        let mse = se / n as f64;
        let g_out = Tensor::from_vec(g_out, (n, d), dev)?;
        // ∂h = (g W_decᵀ + λ r / N) ⊙ [f > 0]; firing counts and Σ_n f per latent.
        let gf = g_out.matmul(&w_dec.t()?)?;
        let lam = (l1_coef / n as f64) as f32;
        let (dh, f_sum, fire, l1_sum) = with_f32(&f, |fv| {
            with_f32(&gf, |gv| {
                let mut dh = vec![0f32; n * s];
                dh.par_chunks_mut(s)
                    .zip(fv.par_chunks(s).zip(gv.par_chunks(s)))
                    .for_each(|(dr, (fr, gr))| {
                        for (((o, f), g), rj) in dr.iter_mut().zip(fr).zip(gr).zip(&r) {
                            *o = if *f > 0.0 { g + lam * rj } else { 0.0 };
                        }
                    });
                let f_sum = col_sums(fv, s);
                let l1_sum: f64 = fv
                    .par_chunks(s * 64)
                    .map(|blk| {
                        blk.chunks(s)
                            .map(|row| {
                                row.iter()
                                    .zip(&r)
                                    .map(|(f, rj)| (f * rj) as f64)
                                    .sum::<f64>()
                            })
                            .sum::<f64>()
                    })
                    .collect::<Vec<f64>>()
                    .iter()
                    .sum();
                let fire: Vec<f32> = fv
                    .par_chunks(s * 64)
                    .map(|blk| {
                        let mut c = vec![0f32; s];
                        for row in blk.chunks(s) {
                            for (cj, v) in c.iter_mut().zip(row) {
                                if *v > 0.0 {
                                    *cj += 1.0;
                                }
                            }
                        }
                        c
                    })
                    .collect::<Vec<_>>()
                    .into_iter()
                    .fold(vec![0f32; s], |mut a, b| {
                        a.iter_mut().zip(b).for_each(|(x, y)| *x += y);
                        a
                    });
                (dh, f_sum, fire, l1_sum)
            })
        })??;
        drop(gf);
        let l1 = l1_coef * l1_sum / n as f64;
        let dh = Tensor::from_vec(dh, (n, s), dev)?;
        // Parameter gradients.
        let gw_enc = xc.t()?.matmul(&dh)?;
        let gb_enc: Vec<f32> = with_f32(&dh, |v| col_sums(v, s))?
            .iter()
            .map(|v| *v as f32)
            .collect();
        drop(dh);
        let gw_dec = f.t()?.matmul(&g_out)?;
        let gw_dec = with_f32(&gw_dec, |gv| {
            with_f32(&w_dec, |wv| {
                let mut out = gv.to_vec();
                out.par_chunks_mut(d)
                    .zip(wv.par_chunks(d))
                    .enumerate()
                    .for_each(|(j, (o, w))| {
                        let c = (l1_coef / n as f64 * f_sum[j]) as f32 / r[j];
                        for (a, b) in o.iter_mut().zip(w) {
                            *a += c * b;
                        }
                    });
                out
            })
        })??;
        let mut gb_dec = with_f32(&g_out, |v| col_sums(v, d))?;
        if self.cfg.apply_b_dec_to_input {
            with_f32(&w_enc, |we| {
                for (i, row) in we.chunks(s).enumerate() {
                    gb_dec[i] -= row
                        .iter()
                        .zip(&gb_enc)
                        .map(|(w, g)| (w * g) as f64)
                        .sum::<f64>();
                }
            })?;
        }
        let gw_dec = Tensor::from_vec(gw_dec, (s, d), dev)?;
        let gb_dec = Tensor::from_vec(gb_dec.iter().map(|v| *v as f32).collect(), d, dev)?;
        let gb_enc = Tensor::from_vec(gb_enc, s, dev)?;
        let grads = grads_in_order(&p.names, [gw_enc, gw_dec, gb_dec, gb_enc]);
        Ok(FusedStep {
            loss: mse + l1,
            losses: vec![("mse_loss".into(), mse), ("l1_loss".into(), l1)],
            sae_out: out,
            fire_counts: fire,
            grads,
            min_active: None,
        })
    }
}
