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
        let bs = self.cfg.train_batch_size_tokens;
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
        let total: f64 = w.iter().sum();
        let (d_in, d_sae) = (self.cfg.sae.d_in, self.cfg.sae.d_sae);
        let xv = ops::to_vec_f32(&x)?;
        let mut w_enc = ops::to_vec_f32(p.get("W_enc")?)?;
        let mut w_dec = ops::to_vec_f32(p.get("W_dec")?)?;
        // mean encoder column norm over alive latents
        let col_norm = |w_enc: &[f32], i: usize| -> f64 {
            (0..d_in)
                .map(|r| (w_enc[r * d_sae + i] as f64).powi(2))
                .sum::<f64>()
                .sqrt()
        };
        let alive: Vec<usize> = (0..d_sae).filter(|i| !dead[*i]).collect();
        let mean_alive = if alive.is_empty() {
            1.0
        } else {
            alive.iter().map(|i| col_norm(&w_enc, *i)).sum::<f64>() / alive.len() as f64
        };
        for &i in &dead_idx {
            let j = if total > 0.0 {
                let mut u = self.rng.uniform() * total;
                let mut pick = w.len() - 1;
                for (k, wk) in w.iter().enumerate() {
                    if u < *wk {
                        pick = k;
                        break;
                    }
                    u -= wk;
                }
                pick
            } else {
                self.rng.below(w.len())
            };
            let v = &xv[j * d_in..(j + 1) * d_in];
            let nv = v
                .iter()
                .map(|a| (*a as f64).powi(2))
                .sum::<f64>()
                .sqrt()
                .max(1e-12);
            for r in 0..d_in {
                let u = v[r] as f64 / nv;
                w_dec[i * d_in + r] = u as f32;
                w_enc[r * d_sae + i] = (u * rc.encoder_scale * mean_alive) as f32;
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
