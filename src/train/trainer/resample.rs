//! Anthropic-style resampling of dead latents.
use super::*;

impl Trainer {
    /// Anthropic-style resampling of dead latents: new directions from inputs drawn with
    /// probability ∝ (reconstruction loss)², decoder rows set to the unit input direction,
    /// encoder columns to it times `encoder_scale · mean ‖W_enc[:, alive]‖`, biases reset,
    /// Adam moments of those entries zeroed, their dead counters reset. Returns the count.
    pub fn resample_dead(
        &mut self,
        source: &mut dyn ActivationSource,
        rc: &crate::train::config::ResampleConfig,
    ) -> Result<usize> {
        let dead = self.dead_mask();
        let dead_idx: Vec<usize> = (0..dead.len()).filter(|i| dead[*i]).collect();
        if dead_idx.is_empty() {
            return Ok(0);
        }
        let bs = self.cfg.store.train_batch_size_tokens;
        let mut xs = vec![];
        for _ in 0..rc.n_batches.max(1) {
            xs.push(self.scale(source.next_batch(bs)?.to_dtype(DType::F32)?)?);
        }
        let x = Tensor::cat(&xs, 0)?;
        let p = &self.sae.params;
        let centered = if self.cfg.sae.apply_b_dec_to_input {
            x.broadcast_sub(p.get("b_dec")?)?
        } else {
            x.clone()
        };
        let (f, _) = self.sae.arch.encode_with_hidden_pre(p, &centered)?;
        let recon = self.sae.arch.decode(p, &f.detach())?.detach();
        let loss = ops::to_vec_f32(&(recon - &x)?.sqr()?.sum(D::Minus1)?)?;
        let w: Vec<f64> = loss.iter().map(|l| (*l as f64).powi(2)).collect();
        let (d_in, d_sae) = (self.cfg.sae.d_in, self.cfg.sae.d_sae);
        let xv = ops::to_vec_f32(&x)?;
        let mut w_enc = ops::to_vec_f32(p.get("W_enc")?)?;
        let mut w_dec = ops::to_vec_f32(p.get("W_dec")?)?;
        let mean_alive = mean_alive_col_norm(&w_enc, d_sae, &dead);
        let dirs = new_directions(
            &mut self.rng,
            &xv,
            d_in,
            &w,
            dead_idx.len(),
            rc.encoder_scale,
            mean_alive,
        );
        for (&i, (dec, enc)) in dead_idx.iter().zip(dirs) {
            w_dec[i * d_in..(i + 1) * d_in].copy_from_slice(&dec);
            for (r, e) in enc.into_iter().enumerate() {
                w_enc[r * d_sae + i] = e;
            }
        }
        let names = self.sae.params.names.clone();
        for (pi, name) in names.iter().enumerate() {
            let var = &self.sae.params.vars[pi];
            let idx: Vec<usize> = match name.as_str() {
                "W_enc" => {
                    var.set(&Tensor::from_vec(
                        w_enc.clone(),
                        (d_in, d_sae),
                        &self.device,
                    )?)?;
                    dead_idx
                        .iter()
                        .flat_map(|i| (0..d_in).map(move |r| r * d_sae + i))
                        .collect()
                }
                "W_dec" => {
                    var.set(&Tensor::from_vec(
                        w_dec.clone(),
                        (d_sae, d_in),
                        &self.device,
                    )?)?;
                    dead_idx
                        .iter()
                        .flat_map(|i| (0..d_in).map(move |r| i * d_in + r))
                        .collect()
                }
                n => {
                    let Some((_, fresh)) = self
                        .sae
                        .arch
                        .latent_biases()
                        .into_iter()
                        .find(|(b, _)| *b == n)
                    else {
                        continue;
                    };
                    let mut b = ops::to_vec_f32(var.as_tensor())?;
                    for &i in &dead_idx {
                        b[i] = fresh as f32;
                    }
                    var.set(&Tensor::from_vec(b, d_sae, &self.device)?)?;
                    dead_idx.clone()
                }
            };
            self.adam.reset_entries(pi, &idx);
        }
        for &i in &dead_idx {
            self.n_forward_passes_since_fired[i] = 0.0;
        }
        Ok(dead_idx.len())
    }
}

/// The mean norm of the encoder columns (`w_enc` row-major `[d_in, d_sae]`) of the latents that
/// are not `dead` (1 when all are).
pub(crate) fn mean_alive_col_norm(w_enc: &[f32], d_sae: usize, dead: &[bool]) -> f64 {
    let alive: Vec<usize> = (0..d_sae).filter(|i| !dead[*i]).collect();
    if alive.is_empty() {
        return 1.0;
    }
    let col_norm = |i: usize| -> f64 {
        w_enc
            .iter()
            .skip(i)
            .step_by(d_sae)
            .map(|v| (*v as f64).powi(2))
            .sum::<f64>()
            .sqrt()
    };
    alive.iter().map(|i| col_norm(*i)).sum::<f64>() / alive.len() as f64
}

/// Anthropic-style new directions for `n` dead latents (the trainer's and the toy SAE's): each
/// from an input row of `rows` (`[_, d]` row-major) drawn with probability ∝ `weights` (the
/// squared reconstruction losses), as `(decoder row, encoder column)`: the unit row, and it
/// times `scale · enc_norm` (computed in f64).
pub(crate) fn new_directions(
    rng: &mut impl Draw,
    rows: &[f32],
    d: usize,
    weights: &[f64],
    n: usize,
    scale: f64,
    enc_norm: f64,
) -> Vec<(Vec<f32>, Vec<f32>)> {
    (0..n)
        .map(|_| {
            let j = rng.categorical(weights);
            let v = &rows[j * d..(j + 1) * d];
            let nv = v
                .iter()
                .map(|a| (*a as f64).powi(2))
                .sum::<f64>()
                .sqrt()
                .max(1e-12);
            let unit = |s: f64, m: f64| v.iter().map(|a| (*a as f64 / nv * s * m) as f32).collect();
            (unit(1.0, 1.0), unit(scale, enc_norm))
        })
        .collect()
}
