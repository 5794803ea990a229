//! Optimiser and schedules with torch's exact arithmetic: `torch.optim.Adam` (single-tensor
//! path, as on CPU), `clip_grad_norm_`, SAELens's `get_lr_scheduler` (a `SequentialLR` of
//! `LinearLR` warm-up, constant / `CosineAnnealingLR` / `CosineAnnealingWarmRestarts`, and
//! `LinearLR` decay, with torch's recursive ("chainable") formulas), and SAELens's
//! `CoefficientScheduler`.
use crate::error::{Error, Result};
use crate::ops;
use candle_core::{Tensor, Var};
use rayon::prelude::*;

/// `torch.optim.Adam` (no weight decay, no amsgrad) over a list of parameters.
#[derive(Clone, Debug)]
pub struct Adam {
    /// Decay of the first moment (torch `betas[0]`).
    pub beta1: f64,
    /// Decay of the second moment (torch `betas[1]`).
    pub beta2: f64,
    /// Added to the denominator `√v̂` for stability (torch `eps`).
    pub eps: f64,
    /// Steps taken (torch's per-parameter `step`, equal for all parameters here).
    pub step: u64,
    /// First moments (torch `exp_avg`) per parameter (flattened).
    pub exp_avg: Vec<Vec<f32>>,
    /// Second moments (torch `exp_avg_sq`) per parameter (flattened).
    pub exp_avg_sq: Vec<Vec<f32>>,
}

impl Adam {
    /// Zeroed moments for `vars` with the given betas and eps.
    pub fn new(vars: &[Var], beta1: f64, beta2: f64, eps: f64) -> Self {
        Adam {
            beta1,
            beta2,
            eps,
            step: 0,
            exp_avg: vars.iter().map(|v| vec![0f32; v.elem_count()]).collect(),
            exp_avg_sq: vars.iter().map(|v| vec![0f32; v.elem_count()]).collect(),
        }
    }

    /// One step with learning rate `lr`; each gradient is multiplied by `grad_scale` first
    /// (the clip coefficient; `1.0` = unchanged, as torch's `grads *= clip_coef_clamped`).
    /// A parameter without a gradient (`None`) is skipped, as torch does.
    pub fn step(
        &mut self,
        vars: &[Var],
        grads: &[Option<Tensor>],
        lr: f64,
        grad_scale: f32,
    ) -> Result<()> {
        if vars.len() != grads.len() || vars.len() != self.exp_avg.len() {
            return Err(Error::Invalid("Adam: parameter count mismatch".into()));
        }
        self.step += 1;
        let step = self.step as f64;
        let bias_correction1 = 1.0 - self.beta1.powf(step);
        let bias_correction2 = 1.0 - self.beta2.powf(step);
        let step_size = (lr / bias_correction1) as f32;
        let bc2_sqrt = bias_correction2.sqrt() as f32;
        let w1 = (1.0 - self.beta1) as f32;
        let beta2 = self.beta2 as f32;
        let one_m_beta2 = (1.0 - self.beta2) as f32;
        let eps = self.eps as f32;
        for (i, (var, g)) in vars.iter().zip(grads).enumerate() {
            let Some(g) = g else { continue };
            let mut p = ops::to_vec_f32(var.as_tensor())?;
            let m = &mut self.exp_avg[i];
            let v = &mut self.exp_avg_sq[i];
            ops::with_f32(g, |g| {
                p.par_chunks_mut(4096)
                    .zip(m.par_chunks_mut(4096))
                    .zip(v.par_chunks_mut(4096))
                    .zip(g.par_chunks(4096))
                    .for_each(|(((p, m), v), g)| {
                        for j in 0..p.len() {
                            let gj = if grad_scale == 1.0 {
                                g[j]
                            } else {
                                g[j] * grad_scale
                            };
                            // exp_avg.lerp_(grad, 1 - beta1): weight < 0.5 → self + w·(end − self)
                            m[j] += w1 * (gj - m[j]);
                            // exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                            v[j] = v[j] * beta2 + one_m_beta2 * (gj * gj);
                            // denom = exp_avg_sq.sqrt() / bias_correction2_sqrt + eps
                            let denom = v[j].sqrt() / bc2_sqrt + eps;
                            // param.addcdiv_(exp_avg, denom, value=-step_size)
                            p[j] += -step_size * (m[j] / denom);
                        }
                    });
            })?;
            let t = Tensor::from_vec(p, var.shape(), var.device())?;
            var.set(&t)?;
        }
        Ok(())
    }

    /// `loss.backward()`, then one step with learning rate `lr` (no clipping): a plain training
    /// loop's step (the toy models').
    pub fn backward_step(&mut self, vars: &[Var], loss: &Tensor, lr: f64) -> Result<()> {
        self.step(vars, &grads_of(vars, loss)?, lr, 1.0)
    }

    /// Zero the moments of some entries (dead-latent resampling): for parameter `i`, the
    /// flattened indices in `idx`.
    pub fn reset_entries(&mut self, i: usize, idx: &[usize]) {
        for &j in idx {
            self.exp_avg[i][j] = 0.0;
            self.exp_avg_sq[i][j] = 0.0;
        }
    }
}

/// The gradient of `loss` with respect to each of `vars` (`None` where it does not depend on
/// one), from one backward pass.
pub fn grads_of(vars: &[Var], loss: &Tensor) -> Result<Vec<Option<Tensor>>> {
    let grads = loss.backward()?;
    Ok(vars
        .iter()
        .map(|v| grads.get(v.as_tensor()).cloned())
        .collect())
}

/// `torch.nn.utils.clip_grad_norm_(params, max_norm)`: returns `(total_norm, coefficient)`,
/// with `coefficient = min(max_norm / (total_norm + 1e-6), 1)` to multiply every gradient by.
pub fn clip_grad_norm_coef(grads: &[Option<Tensor>], max_norm: f64) -> Result<(f64, f32)> {
    let mut norms = vec![];
    for g in grads.iter().flatten() {
        // Chunk sums collected in order, then added sequentially: deterministic whatever the
        // thread scheduling (resumed runs must match bit for bit).
        let s = ops::with_f32(g, |v| {
            v.par_chunks(16384)
                .map(|c| c.iter().map(|x| (*x as f64) * (*x as f64)).sum::<f64>())
                .collect::<Vec<f64>>()
                .into_iter()
                .sum::<f64>()
        })?;
        norms.push(s.sqrt() as f32);
    }
    let total = norms
        .iter()
        .map(|n| (*n as f64) * (*n as f64))
        .sum::<f64>()
        .sqrt() as f32;
    let coef = (max_norm as f32) / (total + 1e-6);
    Ok((total as f64, coef.min(1.0)))
}

/// One sub-scheduler of SAELens's `SequentialLR`.
#[derive(Clone, Debug, PartialEq)]
enum Sched {
    Linear {
        start: f64,
        end: f64,
        total: usize,
    },
    Constant,
    Cosine {
        t_max: usize,
        eta_min: f64,
    },
    CosineRestarts {
        t_0: usize,
        eta_min: f64,
        t_i: usize,
        t_cur: f64,
    },
}

impl Sched {
    /// torch's `get_lr()` for `last_epoch = e` (the chainable form), from the current lr.
    fn get_lr(&mut self, e: usize, lr: f64, base: f64, step_count: usize) -> f64 {
        match self {
            Sched::Linear { start, end, total } => {
                if e == 0 {
                    lr * *start
                } else if e > *total {
                    lr
                } else {
                    lr * (1.0
                        + (*end - *start)
                            / (*total as f64 * *start + (e as f64 - 1.0) * (*end - *start)))
                }
            }
            Sched::Constant => base,
            Sched::Cosine { t_max, eta_min } => {
                let t = *t_max as f64;
                let pi = std::f64::consts::PI;
                if e == 0 {
                    lr
                } else if step_count == 1 && e > 0 {
                    *eta_min + (base - *eta_min) * (1.0 + (e as f64 * pi / t).cos()) / 2.0
                } else if (e as i64 - 1 - *t_max as i64).rem_euclid(2 * *t_max as i64) == 0 {
                    lr + (base - *eta_min) * (1.0 - (pi / t).cos()) / 2.0
                } else {
                    (1.0 + (pi * e as f64 / t).cos()) / (1.0 + (pi * (e as f64 - 1.0) / t).cos())
                        * (lr - *eta_min)
                        + *eta_min
                }
            }
            Sched::CosineRestarts {
                eta_min,
                t_i,
                t_cur,
                ..
            } => {
                *eta_min
                    + (base - *eta_min)
                        * (1.0 + (std::f64::consts::PI * *t_cur / *t_i as f64).cos())
                        / 2.0
            }
        }
    }
    /// torch's `_get_closed_form_lr` (used by `SequentialLR` at a milestone, `step(0)`).
    fn closed_form(&self, base: f64) -> f64 {
        match self {
            Sched::Linear { start, .. } => base * *start,
            Sched::Constant => base,
            Sched::Cosine { .. } => base,
            Sched::CosineRestarts { .. } => base,
        }
    }
}

/// SAELens's LR schedule, stepped like torch (`lr()` is the value the next optimiser step
/// uses; `step()` after each optimiser step).
#[derive(Clone, Debug)]
pub struct LrScheduler {
    base: f64,
    lr: f64,
    scheds: Vec<Sched>,
    /// per sub-scheduler: (last_epoch, _step_count)
    epochs: Vec<(i64, usize)>,
    milestones: Vec<usize>,
    last_epoch: usize,
}

impl LrScheduler {
    /// `get_lr_scheduler(name, lr, warm_up_steps, decay_steps, training_steps, lr_end,
    /// num_cycles)`.
    pub fn new(
        name: &str,
        lr: f64,
        warm_up_steps: usize,
        decay_steps: usize,
        training_steps: usize,
        lr_end: f64,
        num_cycles: usize,
    ) -> Result<Self> {
        let base_steps = training_steps as i64 - warm_up_steps as i64 - decay_steps as i64;
        let name = name.to_lowercase();
        let main = match name.as_str() {
            "constant" => Sched::Constant,
            "cosineannealing" => Sched::Cosine {
                t_max: base_steps.max(0) as usize,
                eta_min: lr_end,
            },
            "cosineannealingwarmrestarts" => {
                let t_0 = (base_steps.max(0) as usize) / num_cycles.max(1);
                if t_0 == 0 {
                    return Err(Error::Config(
                        "cosineannealingwarmrestarts needs (steps − warm-up − decay) / n_restart_cycles ≥ 1".into(),
                    ));
                }
                Sched::CosineRestarts {
                    t_0,
                    eta_min: lr_end,
                    t_i: t_0,
                    t_cur: 0.0,
                }
            }
            s => return Err(Error::Config(format!("Unsupported scheduler: {s}"))),
        };
        let lr_end = if name == "constant" { lr } else { lr_end };
        let mut scheds = vec![];
        let mut milestones = vec![];
        if warm_up_steps > 0 {
            scheds.push(Sched::Linear {
                start: 1.0 / warm_up_steps as f64,
                end: 1.0,
                total: warm_up_steps - 1,
            });
            milestones.push(warm_up_steps);
        }
        scheds.push(main);
        if decay_steps > 0 {
            if lr_end == 0.0 {
                return Err(Error::Config(
                    "Cannot have decay_steps with lr_end=0.0, this would decay from 0 to 0 and be a waste.".into(),
                ));
            }
            scheds.push(Sched::Linear {
                start: lr_end / lr,
                end: 0.0,
                total: decay_steps,
            });
            milestones.push(training_steps - decay_steps);
        }
        // Each sub-scheduler's constructor performs an initial step (last_epoch 0) that
        // modifies the lr; SequentialLR then resets the lr and redoes only the first one's.
        let mut lr_now = lr;
        let mut epochs = vec![];
        for s in scheds.iter_mut() {
            lr_now = s.get_lr(0, lr_now, lr, 1);
            epochs.push((0i64, 1usize));
        }
        let _ = lr_now;
        for e in epochs.iter_mut() {
            e.0 -= 1;
        }
        // _initial_step of the first scheduler: step() → last_epoch 0, _step_count += 1.
        let mut this = LrScheduler {
            base: lr,
            lr,
            scheds,
            epochs,
            milestones,
            last_epoch: 0,
        };
        this.epochs[0].1 = 0;
        this.sub_step(0, None);
        Ok(this)
    }

    fn sub_step(&mut self, i: usize, epoch: Option<usize>) {
        self.epochs[i].1 += 1;
        match epoch {
            None => {
                self.epochs[i].0 += 1;
                let e = self.epochs[i].0.max(0) as usize;
                if let Sched::CosineRestarts {
                    t_0, t_i, t_cur, ..
                } = &mut self.scheds[i]
                {
                    // torch: epoch None and last_epoch < 0 → epoch 0
                    if e == 0 {
                        *t_cur = 0.0;
                    } else {
                        *t_cur += 1.0;
                        if *t_cur >= *t_i as f64 {
                            *t_cur -= *t_i as f64;
                            *t_i *= 1; // T_mult = 1
                        }
                    }
                    let _ = t_0;
                }
                let sc = self.epochs[i].1;
                self.lr = self.scheds[i].get_lr(e, self.lr, self.base, sc);
            }
            Some(ep) => {
                self.epochs[i].0 = ep as i64;
                if let Sched::CosineRestarts {
                    t_0, t_i, t_cur, ..
                } = &mut self.scheds[i]
                {
                    *t_cur = ep as f64;
                    *t_i = *t_0;
                }
                // closed form when available, else get_lr
                self.lr = match &self.scheds[i] {
                    Sched::Constant | Sched::CosineRestarts { .. } => {
                        self.scheds[i].get_lr(ep, self.lr, self.base, 2)
                    }
                    s => s.closed_form(self.base),
                };
            }
        }
    }

    /// The learning rate the next optimiser step uses.
    pub fn lr(&self) -> f64 {
        self.lr
    }

    /// `SequentialLR.step()`.
    pub fn step(&mut self) {
        self.last_epoch += 1;
        let idx = self.milestones.partition_point(|m| *m <= self.last_epoch);
        if idx > 0 && self.milestones[idx - 1] == self.last_epoch {
            self.sub_step(idx, Some(0));
        } else {
            self.sub_step(idx, None);
        }
    }

    /// The first `n` learning rates (the values used by optimiser steps 0..n).
    pub fn schedule(mut self, n: usize) -> Vec<f64> {
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(self.lr);
            self.step();
        }
        out
    }
}

/// SAELens's `CoefficientScheduler`: the value used at step `t` is
/// `final · min(t, W) / W` (`final` when `W = 0`).
#[derive(Clone, Debug, PartialEq)]
pub struct CoefficientScheduler {
    /// Steps of linear warm-up (0 = the final value from the start).
    pub warm_up_steps: usize,
    /// Value after warm-up.
    pub final_value: f64,
    /// Steps taken so far.
    pub current_step: usize,
    /// Value at `current_step`.
    pub current_value: f64,
}

impl CoefficientScheduler {
    /// A scheduler at step 0.
    pub fn new(warm_up_steps: usize, final_value: f64) -> Self {
        CoefficientScheduler {
            warm_up_steps,
            final_value,
            current_step: 0,
            current_value: if warm_up_steps > 0 { 0.0 } else { final_value },
        }
    }
    /// The value at the current step.
    pub fn value(&self) -> f64 {
        self.current_value
    }
    /// Advance one step and return the new value.
    pub fn step(&mut self) -> f64 {
        self.current_value = if self.current_step < self.warm_up_steps {
            self.final_value * ((self.current_step + 1) as f64 / self.warm_up_steps as f64)
        } else {
            self.final_value
        };
        self.current_step += 1;
        self.current_value
    }
    /// `load_state_dict({"current_step": s})`.
    pub fn set_step(&mut self, s: usize) {
        self.current_step = s;
        self.current_value = if s < self.warm_up_steps {
            self.final_value * (s as f64 / self.warm_up_steps as f64)
        } else {
            self.final_value
        };
    }
}
