//! Minibatch linear probes trained with torch's Adam / AdamW arithmetic (the crate's
//! [`Adam`]): SAEBench's two torch trainers.
//!
//! * absorption `probing.train_multi_probe`: `nn.Linear(d, c)`, `BCEWithLogitsLoss(pos_weight =
//!   #neg / #pos per class)`, Adam with L2 `weight_decay` (added to the gradient, bias included),
//!   an `ExponentialLR` from `lr` to `end_lr` over the epochs, an optional L1 term
//!   `l1·mean_c Σ_d |W_cd|` (`k_sparse_probing.train_sparse_multi_probe`);
//! * sparse probing `probe_training.train_probe_gpu`: `nn.Linear(d, 1)`, plain
//!   `BCEWithLogitsLoss`, `AdamW(lr)` (torch's default decoupled `weight_decay = 0.01`), and
//!   early stopping on the *test* accuracy (patience 10), keeping the best epoch's probe and
//!   reporting its test accuracy, as SAEBench does.
//!
//! Both start from `nn.Linear`'s default init (`U(±1/√d)` for weight and bias) and shuffle the
//! rows every epoch (`DataLoader(shuffle=True)` / `randperm`), here from the crate's RNG.
use crate::error::{Error, Result};
use crate::rng::{derive_seed, permutation, Draw, Rng};
use crate::train::optim::Adam;
use candle_core::{DType, Tensor, Var};

/// How to train a [`LinearProbe`].
#[derive(Clone, Debug)]
pub(crate) struct ProbeTrain {
    pub epochs: usize,
    pub batch_size: usize,
    pub lr: f64,
    /// `Some(end)`: exponential decay to `end` over the epochs (absorption's trainer).
    pub end_lr: Option<f64>,
    pub weight_decay: f64,
    /// AdamW (decoupled decay) instead of Adam's L2-in-the-gradient.
    pub decoupled: bool,
    pub l1: f64,
    /// `pos_weight = #neg / #pos` per output (absorption's multi-probe).
    pub pos_weight: bool,
    /// Early stopping patience on the eval accuracy (binary probes only).
    pub patience: Option<usize>,
    pub seed: u64,
}

/// A trained `[c, d]` probe (row-major weights) with `c` biases.
#[derive(Clone, Debug)]
pub(crate) struct LinearProbe {
    pub w: Tensor,
    pub b: Tensor,
}

impl LinearProbe {
    /// Logits `[n, c]` of `x` `[n, d]`.
    pub fn logits(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.matmul(&self.w.t()?)?.broadcast_add(&self.b)?)
    }
}

/// Train on `x` `[n, d]` f32 and targets `y` `[n, c]` in {0, 1}; `eval` (binary only):
/// `(x_test, y_test)` for early stopping. Returns the probe and, with `eval`, the best test
/// accuracy.
pub(crate) fn train_probe(
    x: &Tensor,
    y: &Tensor,
    o: &ProbeTrain,
    eval: Option<(&Tensor, &[bool])>,
) -> Result<(LinearProbe, Option<f64>)> {
    let (n, d) = x.dims2()?;
    let (ny, c) = y.dims2()?;
    if n != ny || n == 0 || o.batch_size == 0 || o.epochs == 0 {
        return Err(Error::Invalid(format!(
            "train_probe: need x [n, d], y [n, c] with n > 0 and batch, epochs > 0 \
             (x {:?}, y {:?}, batch {}, epochs {})",
            x.dims(),
            y.dims(),
            o.batch_size,
            o.epochs
        )));
    }
    let dev = x.device();
    let mut rng = Rng::new(o.seed);
    let bound = 1.0 / (d as f64).sqrt();
    let w = Var::from_tensor(&rng.uniform_tensor((c, d), -bound, bound, dev)?)?;
    let b = Var::from_tensor(&rng.uniform_tensor(c, -bound, bound, dev)?)?;
    let vars = [w.clone(), b.clone()];
    let mut adam = Adam::new(&vars, 0.9, 0.999, 1e-8);
    let pw = if o.pos_weight {
        let pos = y.sum(0)?;
        let neg = (pos.neg()? + n as f64)?;
        // A class without positives would be inf in torch (a NaN loss); weight 1 instead.
        let safe = pos.maximum(1e-12)?;
        let ratio = neg.div(&safe)?;
        pos.gt(0.0)?
            .where_cond(&ratio, &Tensor::ones(c, DType::F32, dev)?)?
    } else {
        Tensor::ones(c, DType::F32, dev)?
    };
    let gamma = o
        .end_lr
        .map(|e| ((e / o.lr).ln() / o.epochs as f64).exp())
        .unwrap_or(1.0);
    let mut lr = o.lr;
    let mut best: Option<(f64, LinearProbe)> = None;
    let mut since_best = 0;
    for epoch in 0..o.epochs {
        let perm = permutation(n, derive_seed(o.seed, &[epoch as u64]));
        for chunk in perm.chunks(o.batch_size) {
            let idx = Tensor::new(chunk, dev)?;
            let (xb, yb) = (x.index_select(&idx, 0)?, y.index_select(&idx, 0)?);
            let grads = grads(&w, &b, &xb, &yb, &pw, o, c)?;
            if o.decoupled && o.weight_decay > 0.0 {
                for v in &vars {
                    v.set(&(v.as_tensor() * (1.0 - lr * o.weight_decay))?)?;
                }
            }
            adam.step(&vars, &grads, lr, 1.0)?;
        }
        lr *= gamma;
        if let (Some((xt, yt)), Some(p)) = (eval, o.patience) {
            let probe = LinearProbe {
                w: w.as_tensor().copy()?,
                b: b.as_tensor().copy()?,
            };
            let acc = binary_accuracy(&probe, xt, yt)?;
            if best.as_ref().is_none_or(|(a, _)| acc > *a) {
                best = Some((acc, probe));
                since_best = 0;
            } else {
                since_best += 1;
                if since_best >= p {
                    break;
                }
            }
        }
    }
    if let Some((acc, probe)) = best {
        return Ok((probe, Some(acc)));
    }
    let probe = LinearProbe {
        w: w.as_tensor().copy()?,
        b: b.as_tensor().copy()?,
    };
    let acc = eval
        .map(|(xt, yt)| binary_accuracy(&probe, xt, yt))
        .transpose()?;
    Ok((probe, acc))
}

/// Accuracy of `logit > 0` of output 0 against `y`.
pub(crate) fn binary_accuracy(p: &LinearProbe, x: &Tensor, y: &[bool]) -> Result<f64> {
    let z = p
        .logits(x)?
        .narrow(1, 0, 1)?
        .flatten_all()?
        .to_vec1::<f32>()?;
    let pred: Vec<bool> = z.iter().map(|v| *v > 0.0).collect();
    Ok(super::logreg::accuracy(&pred, y))
}

/// Gradients of `mean BCEWithLogits(pos_weight) + l1·mean_c Σ|W_c| (+ L2 decay)` by hand.
fn grads(
    w: &Var,
    b: &Var,
    x: &Tensor,
    y: &Tensor,
    pw: &Tensor,
    o: &ProbeTrain,
    c: usize,
) -> Result<Vec<Option<Tensor>>> {
    let nb = x.dim(0)?;
    let z = x
        .matmul(&w.as_tensor().t()?)?
        .broadcast_add(b.as_tensor())?;
    let sig = candle_nn::ops::sigmoid(&z)?;
    // d/dz of −[p·y·log σ + (1−y)·log(1−σ)] = σ·(1 − y + p·y) − p·y.
    let py = y.broadcast_mul(pw)?;
    let dz = ((sig * ((py.clone() - y)? + 1.0)?)? - py)?;
    let dz = (dz / (nb * c) as f64)?;
    let mut gw = dz.t()?.matmul(x)?;
    let mut gb = dz.sum(0)?;
    if o.l1 > 0.0 {
        gw = (gw + (w.as_tensor().sign()? * (o.l1 / c as f64))?)?;
    }
    if !o.decoupled && o.weight_decay > 0.0 {
        gw = (gw + (w.as_tensor() * o.weight_decay)?)?;
        gb = (gb + (b.as_tensor() * o.weight_decay)?)?;
    }
    Ok(vec![Some(gw), Some(gb)])
}
