//! A fused CPU training step for `topk` SAEs and `topk` / `batchtopk` transcoders: forward,
//! MSE + AuxK losses and every parameter gradient, computed from the selected
//! `(latent, value)` pairs only — no dense `[batch, d_sae]` activation or gradient tensor is
//! ever built. The only dense work is the encoder product `x̃ W_enc` (one matmul), the top-`k`
//! scan over it (per row; batchtopk: the batch's top `k · n` positive keys, with
//! `ops::batch_topk_mask`'s cut-off), and the dense parameter gradients Adam needs anyway.
//!
//! The maths is the graph path's ([`super::topk`]): with `r = ‖W_dec‖` rescaling, latents are
//! ranked by `h · r` but decode with `(h·r / r) W_dec = h W_dec`, so the gradient through `r`
//! cancels exactly (the autograd graph computes the same two terms and they sum to 0). For
//! each row `n`, with target `y` (the input `x` for SAEs; `[n, d_out]` for transcoders), `S`
//! its selection (value > 0) and `A` its AuxK selection among dead latents:
//!
//! - `x̂ = Σ_{j∈S} h_j W_dec[j] + b_dec`, `e = x̂ − y`, `mse = mean_n ‖e‖²`, `g = 2e / N`;
//! - `a = Σ_{j∈A} h_j W_dec[j] + e`, `aux = c · scale · mean_n ‖a‖²`, `g_a = 2 c scale a / N`
//!   (`k_aux = d_out / 2`);
//! - `∂W_dec[j] = Σ_{n: j∈S} h_j g + Σ_{n: j∈A} h_j g_a`, `∂h_j = g·W_dec[j] (+ g_a·W_dec[j])`;
//! - `∂W_enc[:, j] = Σ_n x̃ ∂h_j`, `∂b_enc = Σ_n ∂h`, `∂b_dec = Σ_n g − W_enc ∂b_enc` (the last
//!   term only when `b_dec` is subtracted from the input).
//!
//! Every reduction runs in a fixed order, so results do not depend on thread scheduling
//! (resumed runs stay bit-identical).
use super::fused::{dot, grads_in_order, FusedStep};
use super::TrainingSae;
use crate::error::{Error, Result};
use crate::ops::{batch_topk_cut, top_k, with_f32};
use candle_core::Tensor;
use rayon::prelude::*;

/// Rows per parallel work item.
const ROWS: usize = 64;

/// `Σ_i c_i · rows[i]` added into `out`.
fn axpy(out: &mut [f32], c: f32, row: &[f32]) {
    for (o, r) in out.iter_mut().zip(row) {
        *o += c * r;
    }
}

/// One selected pair in the backward pass, grouped by latent.
#[derive(Clone, Copy)]
struct Entry {
    row: u32,
    /// The activation `h` (coefficient of `W_dec[j]` in the decode).
    value: f32,
    /// `∂loss/∂h`.
    dh: f32,
    aux: bool,
}

/// Per row, the selected `(latent, value)` pairs and the AuxK `(latent, value)` pairs.
type Sel = (Vec<(u32, f32)>, Vec<(u32, f32)>);

impl TrainingSae {
    /// The fused `topk` step (`batch`: `batchtopk`'s batch-wide selection) reconstructing
    /// `target` from `x`.
    pub(super) fn topk_step(
        &self,
        x: &Tensor,
        target: &Tensor,
        dead: &[bool],
        batch: bool,
    ) -> Result<FusedStep> {
        let p = &self.params;
        let cfg = &self.cfg;
        let (n, di) = x.dims2()?;
        let d = cfg.d_out();
        if target.dims() != [n, d] {
            return Err(Error::Invalid(format!(
                "fused step: target has shape {:?}, expected [{n}, {d}]",
                target.dims()
            )));
        }
        let s = cfg.d_sae;
        let k = (cfg.k as usize).min(s);
        let get =
            |name: &str| -> Result<Vec<f32>> { with_f32(&p.get(name)?.detach(), |v| v.to_vec()) };
        let (w_dec, b_dec, b_enc) = (get("W_dec")?, get("b_dec")?, get("b_enc")?);
        let xv = with_f32(x, |v| v.to_vec())?;
        let yv = with_f32(target, |v| v.to_vec())?;
        let xc: Vec<f32> = if cfg.apply_b_dec_to_input {
            xv.par_chunks(di)
                .flat_map_iter(|r| r.iter().zip(&b_dec).map(|(a, b)| a - b))
                .collect()
        } else {
            xv
        };
        let key_scale: Option<Vec<f32>> = cfg
            .rescale_acts_by_decoder_norm
            .then(|| w_dec.par_chunks(d).map(|r| dot(r, r).sqrt()).collect());
        // Dense pre-activations (without b_enc), one matmul.
        let xc_t = Tensor::from_slice(&xc, (n, di), x.device())?;
        let h = xc_t.matmul(&p.get("W_enc")?.detach())?;
        drop(xc_t);
        let dead_cols: Vec<u32> = (0..s as u32).filter(|&j| dead[j as usize]).collect();
        let n_dead = dead_cols.len();
        let k_aux_full = d / 2;
        let k_aux = k_aux_full.min(n_dead);
        let aux_scale = (n_dead as f64 / k_aux_full as f64).min(1.0);
        let aux_coef = cfg.aux_loss_coefficient * aux_scale;

        // keys = (h + b_enc) (· ‖W_dec‖); the values decode uses are h + b_enc.
        let fill_keys = |keys: &mut [f32], hr: &[f32]| match &key_scale {
            Some(r) => {
                for (((kj, h), b), r) in keys.iter_mut().zip(hr).zip(&b_enc).zip(r) {
                    *kj = (h + b) * r;
                }
            }
            None => {
                for ((kj, h), b) in keys.iter_mut().zip(hr).zip(&b_enc) {
                    *kj = h + b;
                }
            }
        };
        let aux_of = |keys: &[f32], hr: &[f32]| -> Vec<(u32, f32)> {
            if k_aux == 0 {
                return vec![];
            }
            top_k(k_aux, keys, Some(&dead_cols))
                .into_iter()
                .map(|j| (j, hr[j as usize] + b_enc[j as usize]))
                .collect()
        };
        // Selection: per row, the active latents and AuxK among dead latents.
        let (sel, min_active): (Vec<Sel>, Option<f32>) = if batch {
            // batchtopk: the top `k · n` positive keys of the whole batch (ops' rule).
            let keys = with_f32(&h, |hv| {
                let mut keys = vec![0f32; n * s];
                keys.par_chunks_mut(s)
                    .zip(hv.par_chunks(s))
                    .for_each(|(kr, hr)| fill_keys(kr, hr));
                keys
            })?;
            let cut = batch_topk_cut(&keys, (cfg.k * n as f64) as usize);
            let sel: Vec<(Sel, Option<f32>)> = with_f32(&h, |hv| {
                hv.par_chunks(s)
                    .zip(keys.par_chunks(s))
                    .map(|(hr, kr)| {
                        let mut min: Option<f32> = None;
                        let mut top = Vec::new();
                        for (j, &key) in kr.iter().enumerate() {
                            if key > 0.0 && key >= cut {
                                top.push((j as u32, hr[j] + b_enc[j]));
                                min = Some(min.map_or(key, |m: f32| m.min(key)));
                            }
                        }
                        ((top, aux_of(kr, hr)), min)
                    })
                    .collect()
            })?;
            let min = sel.iter().filter_map(|(_, m)| *m).reduce(f32::min);
            (sel.into_iter().map(|(s, _)| s).collect(), min)
        } else {
            let sel = with_f32(&h, |hv| {
                hv.par_chunks(s)
                    .map_init(
                        || vec![0f32; s],
                        |keys, hr| {
                            fill_keys(keys, hr);
                            let top: Vec<(u32, f32)> = top_k(k, keys, None)
                                .into_iter()
                                .filter(|&j| keys[j as usize] > 0.0)
                                .map(|j| (j, hr[j as usize] + b_enc[j as usize]))
                                .collect();
                            (top, aux_of(keys, hr))
                        },
                    )
                    .collect()
            })?;
            (sel, None)
        };
        drop(h);

        // Forward: reconstruction, losses, and the output gradients per row.
        let scale_mse = 2.0 / n as f32;
        let scale_aux = (2.0 * aux_coef / n as f64) as f32;
        let mut out = vec![0f32; n * d];
        let mut g_out = vec![0f32; n * d];
        let mut g_aux = vec![0f32; n * d];
        let mut sums: Vec<(f64, f64)> = vec![(0.0, 0.0); n.div_ceil(ROWS)];
        let wrow = |j: u32| &w_dec[j as usize * d..(j as usize + 1) * d];
        out.par_chunks_mut(ROWS * d)
            .zip(g_out.par_chunks_mut(ROWS * d))
            .zip(g_aux.par_chunks_mut(ROWS * d))
            .zip(sums.par_iter_mut())
            .enumerate()
            .for_each(|(c, (((o, g), ga), sum))| {
                let rows = o.chunks_mut(d).zip(g.chunks_mut(d)).zip(ga.chunks_mut(d));
                for (i, ((orow, grow), garow)) in rows.enumerate() {
                    let r = c * ROWS + i;
                    let (top, aux) = &sel[r];
                    orow.copy_from_slice(&b_dec);
                    for &(j, v) in top {
                        axpy(orow, v, wrow(j));
                    }
                    let yr = &yv[r * d..(r + 1) * d];
                    for ((gj, oj), xj) in grow.iter_mut().zip(orow.iter()).zip(yr) {
                        let e = oj - xj;
                        sum.0 += (e as f64) * (e as f64);
                        *gj = e;
                    }
                    if k_aux > 0 {
                        // a = Σ_A h W_dec[j] − sg(x − x̂) = Σ_A h W_dec[j] + e
                        garow.copy_from_slice(grow);
                        for &(j, v) in aux {
                            axpy(garow, v, wrow(j));
                        }
                        for a in garow.iter_mut() {
                            sum.1 += (*a as f64) * (*a as f64);
                            *a *= scale_aux;
                        }
                    }
                    grow.iter_mut().for_each(|gj| *gj *= scale_mse);
                }
            });
        let (se, sa): (f64, f64) = sums
            .iter()
            .fold((0.0, 0.0), |acc, s| (acc.0 + s.0, acc.1 + s.1));
        let mse = se / n as f64;
        let aux_loss = aux_coef * sa / n as f64;

        // Backward: ∂h for every selected pair, grouped by latent.
        let mut counts = vec![0usize; s];
        for (top, aux) in &sel {
            for &(j, _) in top.iter().chain(aux) {
                counts[j as usize] += 1;
            }
        }
        let mut start = vec![0usize; s + 1];
        for j in 0..s {
            start[j + 1] = start[j] + counts[j];
        }
        let dh_rows: Vec<Vec<f32>> = sel
            .par_iter()
            .enumerate()
            .map(|(r, (top, aux))| {
                let g = &g_out[r * d..(r + 1) * d];
                let mut v: Vec<f32> = top.iter().map(|&(j, _)| dot(g, wrow(j))).collect();
                if k_aux > 0 {
                    let ga = &g_aux[r * d..(r + 1) * d];
                    v.extend(aux.iter().map(|&(j, _)| dot(ga, wrow(j))));
                }
                v
            })
            .collect();
        let mut entries = vec![
            Entry {
                row: 0,
                value: 0.0,
                dh: 0.0,
                aux: false
            };
            start[s]
        ];
        let mut fill = start.clone();
        for (r, ((top, aux), dh)) in sel.iter().zip(&dh_rows).enumerate() {
            let tagged = top
                .iter()
                .map(|p| (p, false))
                .chain(aux.iter().map(|p| (p, true)));
            for ((&(j, value), is_aux), &dh) in tagged.zip(dh) {
                entries[fill[j as usize]] = Entry {
                    row: r as u32,
                    value,
                    dh,
                    aux: is_aux,
                };
                fill[j as usize] += 1;
            }
        }
        drop(dh_rows);
        let mut gw_dec = vec![0f32; s * d];
        let mut gw_enc_t = vec![0f32; s * di];
        let mut gb_enc = vec![0f32; s];
        gw_dec
            .par_chunks_mut(d)
            .zip(gw_enc_t.par_chunks_mut(di))
            .zip(gb_enc.par_iter_mut())
            .enumerate()
            .for_each(|(j, ((gd, ge), gb))| {
                for e in &entries[start[j]..start[j + 1]] {
                    let r = e.row as usize;
                    let g = if e.aux { &g_aux } else { &g_out };
                    axpy(gd, e.value, &g[r * d..(r + 1) * d]);
                    axpy(ge, e.dh, &xc[r * di..(r + 1) * di]);
                    *gb += e.dh;
                }
            });
        drop(entries);
        // ∂b_dec = Σ_n g − W_enc ∂b_enc (when b_dec is subtracted from the input).
        let mut gb_dec: Vec<f64> = vec![0.0; d];
        for row in g_out.chunks(d) {
            for (a, b) in gb_dec.iter_mut().zip(row) {
                *a += *b as f64;
            }
        }
        if cfg.apply_b_dec_to_input {
            let w_enc_t = with_f32(&p.get("W_enc")?.detach().t()?.contiguous()?, |v| v.to_vec())?;
            for (j, &gb) in gb_enc.iter().enumerate() {
                let wr = &w_enc_t[j * di..(j + 1) * di];
                for (a, w) in gb_dec.iter_mut().zip(wr) {
                    *a -= (gb * w) as f64;
                }
            }
        }
        let dev = x.device();
        let gw_enc = Tensor::from_vec(gw_enc_t, (s, di), dev)?
            .t()?
            .contiguous()?;
        let gw_dec = Tensor::from_vec(gw_dec, (s, d), dev)?;
        let gb_dec = Tensor::from_vec(gb_dec.iter().map(|v| *v as f32).collect(), d, dev)?;
        let gb_enc = Tensor::from_vec(gb_enc, s, dev)?;
        let grads = grads_in_order(&p.names, [gw_enc, gw_dec, gb_dec, gb_enc]);
        let mut fire = vec![0f32; s];
        for (top, _) in &sel {
            for &(j, _) in top {
                fire[j as usize] += 1.0;
            }
        }
        Ok(FusedStep {
            loss: mse + aux_loss,
            losses: vec![
                ("mse_loss".into(), mse),
                ("auxiliary_reconstruction_loss".into(), aux_loss),
            ],
            sae_out: Tensor::from_vec(out, (n, d), dev)?,
            fire_counts: fire,
            grads,
            min_active,
        })
    }
}
