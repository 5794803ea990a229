//! The toy model of superposition: `x' = ReLU(WᵀW x + b)`, batched over instances.
use crate::error::{Error, Result};
use crate::rng::{Draw, Rng};
use crate::train::optim::Adam;
use candle_core::{DType, Device, Tensor, Var, D};

/// Shape of a [`ToyModel`] (ARENA's `ToyModelConfig`).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ToyModelConfig {
    /// Independent model instances trained in parallel (ARENA `n_inst`; default 8).
    pub n_inst: usize,
    /// Input features per instance (ARENA `n_features`; default 5).
    pub n_features: usize,
    /// Hidden (bottleneck) dimension per instance (ARENA `d_hidden`; default 2).
    pub d_hidden: usize,
    /// Features `0..2·n_correlated_pairs` come in pairs that are present together.
    pub n_correlated_pairs: usize,
    /// The next `2·n_anticorrelated_pairs` features come in pairs that are never present
    /// together.
    pub n_anticorrelated_pairs: usize,
}

impl Default for ToyModelConfig {
    fn default() -> Self {
        ToyModelConfig {
            n_inst: 8,
            n_features: 5,
            d_hidden: 2,
            n_correlated_pairs: 0,
            n_anticorrelated_pairs: 0,
        }
    }
}

/// Adam training of a toy model.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct TrainOptions {
    /// Optimizer steps (default 5000).
    pub steps: usize,
    /// Batch size per step, generated fresh each step (default 1024).
    pub batch_size: usize,
    /// Peak Adam learning rate (default 1e-3).
    pub lr: f64,
    /// Cosine decay of the learning rate to 0 (ARENA's `cosine_decay_lr`); constant otherwise.
    pub cosine_decay: bool,
    /// Record the loss every this many steps (and at the last step).
    pub log_every: usize,
}

impl Default for TrainOptions {
    fn default() -> Self {
        TrainOptions {
            steps: 5000,
            batch_size: 1024,
            lr: 1e-3,
            cosine_decay: false,
            log_every: 100,
        }
    }
}

pub(crate) fn lr_at(opts_lr: f64, cosine: bool, step: usize, steps: usize) -> f64 {
    if cosine {
        opts_lr * (0.5 * (1.0 + (std::f64::consts::PI * step as f64 / steps.max(1) as f64).cos()))
    } else {
        opts_lr
    }
}

/// ARENA's `ToyModel`: `W [inst, d_hidden, feats]` (Xavier-normal per instance), `b_final
/// [inst, feats]` (zeros), importance and feature probability `[inst, feats]`.
///
/// Batches are `[batch, inst, feats]`.
pub struct ToyModel {
    /// The model's shape.
    pub cfg: ToyModelConfig,
    w: Var,
    b_final: Var,
    importance: Tensor,
    feature_probability: Tensor,
    prob: Vec<f32>,
    rng: Rng,
    device: Device,
}

fn broadcast_param(
    v: &[f32],
    n_inst: usize,
    n_feat: usize,
    what: &str,
    per_inst: bool,
) -> Result<Vec<f32>> {
    let n = v.len();
    if n == n_inst * n_feat {
        return Ok(v.to_vec());
    }
    if n == 1 {
        return Ok(vec![v[0]; n_inst * n_feat]);
    }
    if per_inst && n == n_inst {
        return Ok((0..n_inst * n_feat).map(|i| v[i / n_feat]).collect());
    }
    if !per_inst && n == n_feat {
        return Ok((0..n_inst * n_feat).map(|i| v[i % n_feat]).collect());
    }
    Err(Error::Invalid(format!(
        "{what}: {n} values; give 1, {} or n_inst·n_features = {}",
        if per_inst {
            format!("n_inst = {n_inst}")
        } else {
            format!("n_features = {n_feat}")
        },
        n_inst * n_feat
    )))
}

impl ToyModel {
    /// `importance`: `[n_features]` (shared by the instances), `[n_inst·n_features]` or one
    /// value. `feature_probability`: `[n_inst]` (one per instance, ARENA's sweeps),
    /// `[n_inst·n_features]` or one value.
    pub fn new(
        cfg: ToyModelConfig,
        importance: &[f32],
        feature_probability: &[f32],
        seed: u64,
    ) -> Result<Self> {
        let (ni, nf, dh) = (cfg.n_inst, cfg.n_features, cfg.d_hidden);
        if ni == 0 || nf == 0 || dh == 0 {
            return Err(Error::Invalid(format!("toy model: empty dims {cfg:?}")));
        }
        if 2 * (cfg.n_correlated_pairs + cfg.n_anticorrelated_pairs) > nf {
            return Err(Error::Invalid(format!(
                "toy model: {} correlated + {} anticorrelated pairs need more than {nf} features",
                cfg.n_correlated_pairs, cfg.n_anticorrelated_pairs
            )));
        }
        let dev = Device::Cpu;
        let imp = broadcast_param(importance, ni, nf, "importance", false)?;
        let prob = broadcast_param(feature_probability, ni, nf, "feature_probability", true)?;
        let mut rng = Rng::new(seed);
        let std = (2.0 / (dh + nf) as f32).sqrt();
        let w = Var::from_tensor(&rng.normal_tensor((ni, dh, nf), std as f64, &dev)?)?;
        let b_final = Var::from_tensor(&Tensor::zeros((ni, nf), DType::F32, &dev)?)?;
        Ok(ToyModel {
            importance: Tensor::from_vec(imp, (ni, nf), &dev)?,
            feature_probability: Tensor::from_vec(prob.clone(), (ni, nf), &dev)?,
            prob,
            cfg,
            w,
            b_final,
            rng,
            device: dev,
        })
    }

    /// A model from given weights `W [inst, d_hidden, feats]` and `b_final [inst, feats]`.
    pub fn from_weights(
        w: &Tensor,
        b_final: &Tensor,
        importance: &[f32],
        feature_probability: &[f32],
        seed: u64,
    ) -> Result<Self> {
        let (ni, dh, nf) = w.dims3()?;
        let m = ToyModel::new(
            ToyModelConfig {
                n_inst: ni,
                n_features: nf,
                d_hidden: dh,
                ..Default::default()
            },
            importance,
            feature_probability,
            seed,
        )?;
        m.w.set(&w.to_dtype(DType::F32)?)?;
        m.b_final
            .set(&b_final.to_dtype(DType::F32)?.reshape((ni, nf))?)?;
        Ok(m)
    }

    /// `W [inst, d_hidden, feats]`.
    pub fn w(&self) -> Result<Tensor> {
        Ok(self.w.as_tensor().detach())
    }
    /// `b_final [inst, feats]`.
    pub fn b_final(&self) -> Result<Tensor> {
        Ok(self.b_final.as_tensor().detach())
    }
    /// Feature importance `[inst, feats]` (weights the MSE).
    pub fn importance(&self) -> &Tensor {
        &self.importance
    }
    /// Probability each feature is present, `[inst, feats]`.
    pub fn feature_probability(&self) -> &Tensor {
        &self.feature_probability
    }

    /// Instance `i` replicated `n_inst` times (ARENA's toy SAE copies instance 0 of the
    /// trained model into every SAE instance).
    pub fn replicate_instance(&self, i: usize, n_inst: usize, seed: u64) -> Result<ToyModel> {
        let nf = self.cfg.n_features;
        let w = self.w()?.narrow(0, i, 1)?;
        let dh = self.cfg.d_hidden;
        let w = w.broadcast_as((n_inst, dh, nf))?.contiguous()?;
        let b = self
            .b_final()?
            .narrow(0, i, 1)?
            .broadcast_as((n_inst, nf))?
            .contiguous()?;
        let imp = self
            .importance
            .narrow(0, i, 1)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        let p: Vec<f32> = (0..n_inst)
            .flat_map(|_| self.prob[i * nf..(i + 1) * nf].iter().copied())
            .collect();
        let mut m = ToyModel::from_weights(&w, &b, &imp, &p, seed)?;
        m.cfg.n_correlated_pairs = self.cfg.n_correlated_pairs;
        m.cfg.n_anticorrelated_pairs = self.cfg.n_anticorrelated_pairs;
        Ok(m)
    }

    /// ARENA's `generate_batch`: `[batch, inst, feats]`; a feature is present with its
    /// probability and then has a magnitude uniform in `[0, 1)`. Correlated pairs share the
    /// presence draw of their first feature; anticorrelated pairs are never both present
    /// (`M1 ~ p`, `M2 ~ p/(1−p)`, the second present iff `¬M1 ∧ M2`).
    pub fn generate_batch(&mut self, batch: usize) -> Result<Tensor> {
        let (ni, nf) = (self.cfg.n_inst, self.cfg.n_features);
        let nc = 2 * self.cfg.n_correlated_pairs;
        let na = 2 * self.cfg.n_anticorrelated_pairs;
        let mut v = vec![0f32; batch * ni * nf];
        for b in 0..batch {
            for i in 0..ni {
                let base = (b * ni + i) * nf;
                let p = &self.prob[i * nf..(i + 1) * nf];
                let mut f = 0;
                while f < nc {
                    let on = (self.rng.uniform() as f32) <= p[f];
                    let (m1, m2) = ((self.rng.uniform() as f32), (self.rng.uniform() as f32));
                    if on {
                        v[base + f] = m1;
                        v[base + f + 1] = m2;
                    }
                    f += 2;
                }
                while f < nc + na {
                    let pf = p[f];
                    let s1 = (self.rng.uniform() as f32) <= pf;
                    let s2 = (self.rng.uniform() as f32) <= pf / (1.0 - pf).max(1e-12);
                    let (m1, m2) = ((self.rng.uniform() as f32), (self.rng.uniform() as f32));
                    if s1 {
                        v[base + f] = m1;
                    } else if s2 {
                        v[base + f + 1] = m2;
                    }
                    f += 2;
                }
                while f < nf {
                    let on = (self.rng.uniform() as f32) <= p[f];
                    let m = self.rng.uniform() as f32;
                    if on {
                        v[base + f] = m;
                    }
                    f += 1;
                }
            }
        }
        Ok(Tensor::from_vec(v, (batch, ni, nf), &self.device)?)
    }

    /// Hidden activations `h = W x`: `[batch, inst, feats]` → `[batch, inst, d_hidden]`.
    pub fn hidden(&self, x: &Tensor) -> Result<Tensor> {
        let xt = x.transpose(0, 1)?.contiguous()?; // [inst, b, f]
        let h = xt.matmul(&self.w.as_tensor().transpose(1, 2)?.contiguous()?)?; // [inst, b, h]
        Ok(h.transpose(0, 1)?.contiguous()?)
    }

    /// A fresh batch's hidden activations `[batch, inst, d_hidden]`: the toy SAE's input
    /// (`ToySae::optimize(&mut |b| model.hidden_batch(b), ..)`).
    pub fn hidden_batch(&mut self, batch: usize) -> Result<Tensor> {
        let x = self.generate_batch(batch)?;
        self.hidden(&x)
    }

    /// `ReLU(WᵀW x + b)`: `[batch, inst, feats]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let xt = x.transpose(0, 1)?.contiguous()?;
        let w = self.w.as_tensor();
        let h = xt.matmul(&w.transpose(1, 2)?.contiguous()?)?;
        let out = h
            .matmul(w)?
            .broadcast_add(&self.b_final.as_tensor().unsqueeze(1)?)?
            .relu()?;
        Ok(out.transpose(0, 1)?.contiguous()?)
    }

    /// `Σ_inst mean_{batch, feat} I·(x − x')²` (scalar).
    pub fn calculate_loss(&self, out: &Tensor, x: &Tensor) -> Result<Tensor> {
        Ok(self.loss_per_instance(out, x)?.sum_all()?)
    }

    /// `mean_{batch, feat} I·(x − x')²` per instance: `[inst]`.
    pub fn loss_per_instance(&self, out: &Tensor, x: &Tensor) -> Result<Tensor> {
        let e = (out - x)?
            .sqr()?
            .broadcast_mul(&self.importance.unsqueeze(0)?)?;
        Ok(e.mean(2)?.mean(0)?)
    }

    /// Train with Adam; returns `(step, loss per instance)` every `log_every` steps.
    pub fn optimize(&mut self, opts: &TrainOptions) -> Result<Vec<(usize, Vec<f32>)>> {
        let vars = [self.w.clone(), self.b_final.clone()];
        let mut opt = Adam::new(&vars, 0.9, 0.999, 1e-8);
        let mut log = Vec::new();
        for step in 0..opts.steps {
            let lr = lr_at(opts.lr, opts.cosine_decay, step, opts.steps);
            let x = self.generate_batch(opts.batch_size)?;
            let out = self.forward(&x)?;
            let per = self.loss_per_instance(&out, &x)?;
            opt.backward_step(&vars, &per.sum_all()?, lr)?;
            if (opts.log_every > 0 && step % opts.log_every == 0) || step + 1 == opts.steps {
                log.push((step, per.to_vec1::<f32>()?));
            }
        }
        Ok(log)
    }

    /// Loss per instance on a fresh batch.
    pub fn evaluate(&mut self, batch: usize) -> Result<Vec<f32>> {
        let x = self.generate_batch(batch)?;
        let out = self.forward(&x)?;
        Ok(self.loss_per_instance(&out, &x)?.to_vec1::<f32>()?)
    }
}

/// ARENA's `compute_dimensionality`: `‖W_i‖² / Σ_j (Ŵ_i·W_j)²` for `W [inst, d_hidden,
/// feats]`; returns `[inst, feats]`.
pub fn compute_dimensionality(w: &Tensor) -> Result<Tensor> {
    let w = w.to_dtype(DType::F32)?;
    let norms = w.sqr()?.sum(1)?; // [inst, feats]
    let wn = w.broadcast_div(&norms.sqrt()?.unsqueeze(1)?.maximum(1e-12f64)?)?;
    let inter = wn.transpose(1, 2)?.contiguous()?.matmul(&w)?; // [inst, feats, feats]
    let denom = inter.sqr()?.sum(D::Minus1)?;
    Ok(norms.div(&denom.maximum(1e-12f64)?)?)
}
