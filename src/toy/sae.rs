//! ARENA's toy SAE (`ToySAE`, `GatedToySAE`, `JumpReLUToySAE`) with resampling.
use super::model::lr_at;
use crate::error::{Error, Result};
use crate::rng::{Draw, Rng};
use crate::train::arch::jumprelu::{jumprelu_ste, step_ste};
use crate::train::optim::Adam;
use crate::train::trainer::resample::{mean_alive_col_norm, new_directions};
use candle_core::{DType, Device, Tensor, Var, D};
use std::collections::VecDeque;

/// Toy SAE architecture.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ToySaeArch {
    /// `z = ReLU((h − b_dec) W_enc + b_enc)`, L1 penalty `Σ|z|`.
    #[default]
    Standard,
    /// Gated SAE (Rajamanoharan et al.): gate `π = (h − b_dec) W_enc + b_enc` (`b_enc` is the
    /// gate bias), magnitude `(h − b_dec)(W_enc ⊙ e^{r_mag}) + b_mag`, `z = 1[π > 0] ⊙
    /// ReLU(mag)`; loss `L_rec + λ Σ ReLU(π) + Σ_d (ReLU(π) Ŵ_dec.detach() + b_dec.detach() −
    /// h)²`.
    Gated,
    /// JumpReLU with a learnt threshold `θ = e^{log θ}` (init `log 0.1`), straight-through
    /// estimator with the rectangle kernel of width `ste_epsilon`; penalty `λ·L0`.
    JumpRelu,
}

/// ARENA's `ToySAEConfig`.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct ToySaeConfig {
    /// SAE instances trained in parallel (ARENA `n_inst`; default 1).
    pub n_inst: usize,
    /// Input (activation) dimension (ARENA `d_in`; default 2).
    pub d_in: usize,
    /// Number of latents (ARENA `d_sae`; default 5).
    pub d_sae: usize,
    /// Sparsity penalty coefficient λ (ARENA `sparsity_coeff`; default 0.2).
    pub sparsity_coeff: f64,
    /// Added to decoder row norms when normalising (ARENA `weight_normalize_eps`; default 1e-8).
    pub weight_normalize_eps: f64,
    /// `W_dec = W_encᵀ` (normalised).
    pub tied_weights: bool,
    /// Encoder variant (ARENA `architecture`; default standard).
    pub architecture: ToySaeArch,
    /// JumpReLU's kernel width ε.
    pub ste_epsilon: f64,
    /// JumpReLU's initial threshold.
    pub init_threshold: f64,
}

impl Default for ToySaeConfig {
    fn default() -> Self {
        ToySaeConfig {
            n_inst: 1,
            d_in: 2,
            d_sae: 5,
            sparsity_coeff: 0.2,
            weight_normalize_eps: 1e-8,
            tied_weights: false,
            architecture: ToySaeArch::Standard,
            ste_epsilon: 0.01,
            init_threshold: 0.1,
        }
    }
}

/// How dead latents are resampled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResampleMethod {
    /// Random unit directions: `W_dec[i] = v̂`, `W_enc[:, i] = scale·v̂`, `b_enc[i] = 0`.
    Simple,
    /// Anthropic-style: inputs drawn with probability ∝ their squared reconstruction loss;
    /// `W_dec[i] = normalise(h − b_dec)`, `W_enc[:, i] = W_dec[i]·mean‖W_enc[:, alive]‖·scale`.
    Advanced,
}

/// Training options for [`ToySae::optimize`] (ARENA's `optimize` defaults).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct SaeTrainOptions {
    /// Optimizer steps (default 10 000).
    pub steps: usize,
    /// Batch size per step (default 1024).
    pub batch_size: usize,
    /// Peak Adam learning rate (default 1e-3).
    pub lr: f64,
    /// Cosine decay of the learning rate to 0 (ARENA `cosine_decay_lr`); constant otherwise.
    pub cosine_decay: bool,
    /// Record loss, L0 and `frac_active` every this many steps and at the last (ARENA `log_freq`;
    /// default 100).
    pub log_every: usize,
    /// Dead-latent resampling; `None` disables it (ARENA `resample_method`; default `None`).
    pub resample_method: Option<ResampleMethod>,
    /// Resample every this many steps (ARENA `resample_freq`; default 2500).
    pub resample_freq: usize,
    /// A latent is dead if inactive over all of the last this many steps (ARENA `resample_window`;
    /// default 500).
    pub resample_window: usize,
    /// Scale of a resampled latent's encoder column (ARENA `resample_scale`; default 0.5).
    pub resample_scale: f64,
    /// Seed of the resampling RNG (default 0).
    pub seed: u64,
}

impl Default for SaeTrainOptions {
    fn default() -> Self {
        SaeTrainOptions {
            steps: 10_000,
            batch_size: 1024,
            lr: 1e-3,
            cosine_decay: false,
            log_every: 100,
            resample_method: None,
            resample_freq: 2500,
            resample_window: 500,
            resample_scale: 0.5,
            seed: 0,
        }
    }
}

/// One forward pass: tensors are `[batch, inst, ...]`.
pub struct ToySaeLoss {
    /// `mean_batch Σ_inst (L_rec + λ L_sp (+ L_aux))`, the quantity backpropagated.
    pub loss: Tensor,
    /// `mean_{d_in}(ĥ − h)²`, `[batch, inst]`.
    pub l_reconstruction: Tensor,
    /// `Σ|z|` (standard), `Σ ReLU(π_gate)` (gated), `Σ H(z − θ)` (JumpReLU): `[batch, inst]`.
    pub l_sparsity: Tensor,
    /// Gated only: the auxiliary reconstruction `[batch, inst]`.
    pub l_aux: Option<Tensor>,
    /// Latent activations `[batch, inst, d_sae]`.
    pub acts: Tensor,
    /// Reconstruction `[batch, inst, d_in]`.
    pub h_hat: Tensor,
}

/// What [`ToySae::optimize`] records.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct ToySaeLog {
    /// The logged steps (0-based).
    pub steps: Vec<usize>,
    /// Mean over the batch of the summed loss.
    pub loss: Vec<f32>,
    /// Mean L0 over batch and instances.
    pub l0: Vec<f32>,
    /// `mean_batch(|z| > 1e-8)` at the logged steps, `[inst·d_sae]` row-major.
    pub frac_active: Vec<Vec<f32>>,
    /// `(step, number of latents resampled)` at each resampling.
    pub resampled: Vec<(usize, usize)>,
}

/// A batched toy SAE: `W_enc [inst, d_in, d_sae]`, `W_dec [inst, d_sae, d_in]` (absent when
/// tied), `b_enc [inst, d_sae]`, `b_dec [inst, d_in]`; gated adds `r_mag`, `b_mag`; JumpReLU
/// adds `log_theta` (all `[inst, d_sae]`).
pub struct ToySae {
    /// The SAE's configuration.
    pub cfg: ToySaeConfig,
    w_enc: Var,
    w_dec: Option<Var>,
    b_enc: Var,
    b_dec: Var,
    r_mag: Option<Var>,
    b_mag: Option<Var>,
    log_theta: Option<Var>,
    rng: Rng,
}

fn var_vec(v: &Var) -> Result<Vec<f32>> {
    Ok(v.as_tensor().flatten_all()?.to_vec1::<f32>()?)
}

fn set_vec(v: &Var, data: Vec<f32>) -> Result<()> {
    let t = Tensor::from_vec(data, v.as_tensor().shape(), v.as_tensor().device())?;
    v.set(&t)?;
    Ok(())
}

impl ToySae {
    /// Kaiming-uniform weights (torch's fan-in rule for 3-d tensors: `d_in·d_sae` for `W_enc`,
    /// `d_sae·d_in` for `W_dec`), zero biases.
    pub fn new(cfg: ToySaeConfig, seed: u64) -> Result<Self> {
        let (ni, di, ds) = (cfg.n_inst, cfg.d_in, cfg.d_sae);
        if ni == 0 || di == 0 || ds == 0 {
            return Err(Error::Invalid(format!("toy SAE: empty dims {cfg:?}")));
        }
        let dev = Device::Cpu;
        let mut rng = Rng::new(seed);
        let b = (6.0 / (di * ds) as f64).sqrt();
        let w_enc = Var::from_tensor(&rng.uniform_tensor((ni, di, ds), -b, b, &dev)?)?;
        let w_dec = if cfg.tied_weights {
            None
        } else {
            let w = rng.uniform_tensor((ni, ds, di), -b, b, &dev)?;
            Some(Var::from_tensor(&w)?)
        };
        let z = |shape: (usize, usize)| -> Result<Var> {
            Ok(Var::from_tensor(&Tensor::zeros(shape, DType::F32, &dev)?)?)
        };
        let (r_mag, b_mag) = if cfg.architecture == ToySaeArch::Gated {
            (Some(z((ni, ds))?), Some(z((ni, ds))?))
        } else {
            (None, None)
        };
        let log_theta = if cfg.architecture == ToySaeArch::JumpRelu {
            let t = Tensor::full(cfg.init_threshold.ln() as f32, (ni, ds), &dev)?;
            Some(Var::from_tensor(&t)?)
        } else {
            None
        };
        let sae = ToySae {
            b_enc: z((ni, ds))?,
            b_dec: z((ni, di))?,
            cfg,
            w_enc,
            w_dec,
            r_mag,
            b_mag,
            log_theta,
            rng,
        };
        sae.renormalize_decoder()?;
        Ok(sae)
    }

    fn vars(&self) -> Vec<Var> {
        let mut v = vec![self.w_enc.clone(), self.b_enc.clone(), self.b_dec.clone()];
        v.extend(self.w_dec.iter().cloned());
        v.extend(self.r_mag.iter().cloned());
        v.extend(self.b_mag.iter().cloned());
        v.extend(self.log_theta.iter().cloned());
        v
    }

    /// `W_enc [inst, d_in, d_sae]`.
    pub fn w_enc(&self) -> Tensor {
        self.w_enc.as_tensor().detach()
    }
    /// `b_enc [inst, d_sae]` (the gate bias for gated SAEs).
    pub fn b_enc(&self) -> Tensor {
        self.b_enc.as_tensor().detach()
    }
    /// `b_dec [inst, d_in]`.
    pub fn b_dec(&self) -> Tensor {
        self.b_dec.as_tensor().detach()
    }
    /// Overwrite `b_enc [inst, d_sae]` (e.g. to kill latents in experiments).
    pub fn set_b_enc(&self, b: &Tensor) -> Result<()> {
        self.b_enc.set(
            &b.to_dtype(DType::F32)?
                .reshape(self.b_enc.as_tensor().shape())?,
        )?;
        Ok(())
    }

    /// JumpReLU thresholds `θ [inst, d_sae]`.
    pub fn threshold(&self) -> Result<Option<Tensor>> {
        Ok(match &self.log_theta {
            Some(l) => Some(l.as_tensor().exp()?.detach()),
            None => None,
        })
    }

    /// `W_dec / (‖W_dec‖ + eps)` (with gradient), `[inst, d_sae, d_in]`.
    fn w_dec_norm_graph(&self) -> Result<Tensor> {
        let w = match &self.w_dec {
            Some(w) => w.as_tensor().clone(),
            None => self.w_enc.as_tensor().transpose(1, 2)?.contiguous()?,
        };
        let n = (w.sqr()?.sum_keepdim(D::Minus1)?.sqrt()? + self.cfg.weight_normalize_eps)?;
        Ok(w.broadcast_div(&n)?)
    }

    /// The normalised decoder `[inst, d_sae, d_in]`.
    pub fn w_dec_normalized(&self) -> Result<Tensor> {
        Ok(self.w_dec_norm_graph()?.detach())
    }

    /// Renormalise `W_dec` in place (untied weights; done after every optimizer step).
    pub fn renormalize_decoder(&self) -> Result<()> {
        if let Some(w) = &self.w_dec {
            w.set(&self.w_dec_norm_graph()?.detach())?;
        }
        Ok(())
    }

    fn check_input(&self, h: &Tensor) -> Result<()> {
        let d = h.dims();
        if d.len() != 3 || d[1] != self.cfg.n_inst || d[2] != self.cfg.d_in {
            return Err(Error::Invalid(format!(
                "toy SAE input must be [batch, n_inst = {}, d_in = {}], got {d:?}",
                self.cfg.n_inst, self.cfg.d_in
            )));
        }
        Ok(())
    }

    /// Forward pass and losses for `h [batch, inst, d_in]`.
    pub fn forward(&self, h: &Tensor) -> Result<ToySaeLoss> {
        self.check_input(h)?;
        let ht = h.to_dtype(DType::F32)?.transpose(0, 1)?.contiguous()?; // [inst, b, d_in]
        let b_dec = self.b_dec.as_tensor().unsqueeze(1)?;
        let hc = ht.broadcast_sub(&b_dec)?;
        let w_enc = self.w_enc.as_tensor();
        let pre = hc
            .matmul(w_enc)?
            .broadcast_add(&self.b_enc.as_tensor().unsqueeze(1)?)?; // [inst, b, d_sae]
        let w_dec = self.w_dec_norm_graph()?;
        let mut l_aux = None;
        let (acts, l_sp) = match self.cfg.architecture {
            ToySaeArch::Standard => {
                let acts = pre.relu()?;
                let l_sp = acts.abs()?.sum(D::Minus1)?;
                (acts, l_sp)
            }
            ToySaeArch::Gated => {
                let (r_mag, b_mag) = match (&self.r_mag, &self.b_mag) {
                    (Some(r), Some(b)) => (r.as_tensor(), b.as_tensor()),
                    _ => return Err(Error::Invalid("gated toy SAE without r_mag".into())),
                };
                let active = pre.gt(0f64)?.to_dtype(DType::F32)?.detach();
                let w_mag = w_enc.broadcast_mul(&r_mag.exp()?.unsqueeze(1)?)?;
                let mag = hc.matmul(&w_mag)?.broadcast_add(&b_mag.unsqueeze(1)?)?;
                let acts = (active * mag.relu()?)?;
                let gate = pre.relu()?;
                let l_sp = gate.sum(D::Minus1)?;
                let via = gate
                    .matmul(&w_dec.detach())?
                    .broadcast_add(&b_dec.detach())?;
                l_aux = Some((via - &ht)?.sqr()?.sum(D::Minus1)?);
                (acts, l_sp)
            }
            ToySaeArch::JumpRelu => {
                let lt = match &self.log_theta {
                    Some(l) => l.as_tensor(),
                    None => return Err(Error::Invalid("jumprelu toy SAE without θ".into())),
                };
                let theta = lt.exp()?.unsqueeze(1)?; // [inst, 1, d_sae]
                let z = pre.relu()?;
                let eps = self.cfg.ste_epsilon;
                let acts = jumprelu_ste(&z, &theta, eps, false)?;
                let heav = step_ste(&z, &theta, eps, false)?;
                (acts, heav.sum(D::Minus1)?)
            }
        };
        let h_hat = acts.matmul(&w_dec)?.broadcast_add(&b_dec)?; // [inst, b, d_in]
        let l_rec = (&h_hat - &ht)?.sqr()?.mean(D::Minus1)?; // [inst, b]
        let mut per = (&l_rec + (&l_sp * self.cfg.sparsity_coeff)?)?;
        if let Some(a) = &l_aux {
            per = (per + a)?;
        }
        let loss = per.mean(1)?.sum_all()?;
        Ok(ToySaeLoss {
            loss,
            l_reconstruction: l_rec.t()?.contiguous()?,
            l_sparsity: l_sp.t()?.contiguous()?,
            l_aux: match l_aux {
                Some(a) => Some(a.t()?.contiguous()?),
                None => None,
            },
            acts: acts.transpose(0, 1)?.contiguous()?,
            h_hat: h_hat.transpose(0, 1)?.contiguous()?,
        })
    }

    /// Latent activations `[batch, inst, d_sae]` (detached).
    pub fn encode(&self, h: &Tensor) -> Result<Tensor> {
        Ok(self.forward(h)?.acts.detach())
    }

    /// Train on batches from `data(batch_size) -> [batch, inst, d_in]` with Adam (ARENA's
    /// `optimize`): the decoder is renormalised after each step, `frac_active` recorded every
    /// step, and dead latents (inactive over the last `resample_window` steps) resampled every
    /// `resample_freq` steps when `resample_method` is set.
    pub fn optimize(
        &mut self,
        data: &mut dyn FnMut(usize) -> Result<Tensor>,
        opts: &SaeTrainOptions,
    ) -> Result<ToySaeLog> {
        let vars = self.vars();
        let mut opt = Adam::new(&vars, 0.9, 0.999, 1e-8);
        let mut log = ToySaeLog::default();
        let mut window: VecDeque<Vec<f32>> = VecDeque::new();
        self.rng = Rng::new(opts.seed ^ 0x5AE);
        for step in 0..opts.steps {
            let lr = lr_at(opts.lr, opts.cosine_decay, step, opts.steps);
            let h = data(opts.batch_size)?;
            let out = self.forward(&h)?;
            opt.backward_step(&vars, &out.loss, lr)?;
            self.renormalize_decoder()?;
            let frac = out
                .acts
                .detach()
                .abs()?
                .gt(1e-8f64)?
                .to_dtype(DType::F32)?
                .mean(0)?
                .flatten_all()?
                .to_vec1::<f32>()?;
            if opts.log_every > 0 && (step % opts.log_every == 0 || step + 1 == opts.steps) {
                log.steps.push(step);
                log.loss.push(out.loss.to_scalar::<f32>()?);
                let l0 = frac.iter().sum::<f32>() / self.cfg.n_inst as f32;
                log.l0.push(l0);
                log.frac_active.push(frac.clone());
            }
            window.push_back(frac);
            while window.len() > opts.resample_window.max(1) {
                window.pop_front();
            }
            if let Some(m) = opts.resample_method {
                if opts.resample_freq > 0 && (step + 1) % opts.resample_freq == 0 {
                    let n = match m {
                        ResampleMethod::Simple => {
                            self.resample_simple(&window, opts.resample_scale)?
                        }
                        ResampleMethod::Advanced => {
                            let h = data(opts.batch_size)?;
                            self.resample_advanced(&window, &h, opts.resample_scale)?
                        }
                    };
                    log.resampled.push((step, n));
                }
            }
        }
        Ok(log)
    }

    /// `[inst][d_sae]`: dead if `frac_active < 1e-8` at every step of the window.
    pub fn dead_latents(&self, window: &VecDeque<Vec<f32>>) -> Vec<Vec<bool>> {
        let (ni, ds) = (self.cfg.n_inst, self.cfg.d_sae);
        (0..ni)
            .map(|i| {
                (0..ds)
                    .map(|j| !window.is_empty() && window.iter().all(|f| f[i * ds + j] < 1e-8))
                    .collect()
            })
            .collect()
    }

    /// Resample dead latents along random unit directions; returns how many.
    pub fn resample_simple(&mut self, window: &VecDeque<Vec<f32>>, scale: f64) -> Result<usize> {
        let dead = self.dead_latents(window);
        let di = self.cfg.d_in;
        let mut dirs = Vec::new();
        for (i, row) in dead.iter().enumerate() {
            for (j, d) in row.iter().enumerate() {
                if *d {
                    let mut v = (0..di)
                        .map(|_| self.rng.normal() as f32)
                        .collect::<Vec<f32>>();
                    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
                    v.iter_mut().for_each(|x| *x /= n);
                    dirs.push((
                        i,
                        j,
                        v.clone(),
                        v.iter().map(|x| x * scale as f32).collect(),
                    ));
                }
            }
        }
        self.write_latents(&dirs)?;
        Ok(dirs.len())
    }

    /// Anthropic-style resampling with the inputs `h [batch, inst, d_in]`; returns how many.
    pub fn resample_advanced(
        &mut self,
        window: &VecDeque<Vec<f32>>,
        h: &Tensor,
        scale: f64,
    ) -> Result<usize> {
        self.check_input(h)?;
        let dead = self.dead_latents(window);
        let (ni, di, ds) = (self.cfg.n_inst, self.cfg.d_in, self.cfg.d_sae);
        let l_rec = self.forward(h)?.l_reconstruction.detach(); // [b, inst]
        let b = h.dim(0)?;
        let l = l_rec.flatten_all()?.to_vec1::<f32>()?;
        let hv = h.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
        let b_dec = var_vec(&self.b_dec)?;
        let w_enc = var_vec(&self.w_enc)?;
        let mut dirs = Vec::new();
        for i in 0..ni {
            if !dead[i].iter().any(|d| *d) {
                continue;
            }
            let li: Vec<f64> = (0..b).map(|r| l[r * ni + i] as f64).collect();
            if li.iter().cloned().fold(0.0, f64::max) < 1e-6 {
                continue;
            }
            let w: Vec<f64> = li.iter().map(|x| x * x).collect();
            // Inputs centred by b_dec, `[b, d_in]`; the instance's encoder `[d_in, d_sae]`.
            let rows: Vec<f32> = (0..b * di)
                .map(|e| hv[((e / di) * ni + i) * di + e % di] - b_dec[i * di + e % di])
                .collect();
            let enc = &w_enc[i * di * ds..(i + 1) * di * ds];
            let mean_norm = mean_alive_col_norm(enc, ds, &dead[i]);
            let latents = (0..ds).filter(|j| dead[i][*j]);
            let n = latents.clone().count();
            let new = new_directions(&mut self.rng, &rows, di, &w, n, scale, mean_norm);
            dirs.extend(latents.zip(new).map(|(j, (v, e))| (i, j, v, e)));
        }
        self.write_latents(&dirs)?;
        Ok(dirs.len())
    }

    /// Set `(inst, latent, decoder row, encoder column)` and zero the latent's biases.
    fn write_latents(&mut self, dirs: &[(usize, usize, Vec<f32>, Vec<f32>)]) -> Result<()> {
        if dirs.is_empty() {
            return Ok(());
        }
        let (di, ds) = (self.cfg.d_in, self.cfg.d_sae);
        let mut we = var_vec(&self.w_enc)?;
        let mut be = var_vec(&self.b_enc)?;
        let mut wd = match &self.w_dec {
            Some(w) => Some(var_vec(w)?),
            None => None,
        };
        let mut extra: Vec<(Var, Vec<f32>)> = Vec::new();
        for v in [&self.r_mag, &self.b_mag].into_iter().flatten() {
            extra.push((v.clone(), var_vec(v)?));
        }
        for (i, j, dec, enc) in dirs {
            for k in 0..di {
                we[(i * di + k) * ds + j] = enc[k];
                if let Some(wd) = wd.as_mut() {
                    wd[(i * ds + j) * di + k] = dec[k];
                }
            }
            be[i * ds + j] = 0.0;
            for (_, e) in extra.iter_mut() {
                e[i * ds + j] = 0.0;
            }
        }
        set_vec(&self.w_enc, we)?;
        set_vec(&self.b_enc, be)?;
        if let (Some(w), Some(v)) = (&self.w_dec, wd) {
            set_vec(w, v)?;
        }
        for (var, v) in extra {
            set_vec(&var, v)?;
        }
        Ok(())
    }
}
