//! SAEBench's sparse-probing steps (`sae_bench/evals/sparse_probing/probe_training.py`) on
//! pooled features: the balanced one-vs-rest data of `prepare_probe_data`, the top-`k`
//! mean-difference selection of `get_top_k_mean_diff_mask`, the sklearn probe of
//! `train_sklearn_probe` and the torch probe of `train_probe_gpu`.
use super::linear::{train_probe, ProbeTrain};
use super::logreg::{fit_logistic_regression, LogRegOptions};
use crate::error::{Error, Result};
use crate::rng::{Draw, Rng};
use candle_core::{Device, Tensor};

/// Row-major `[n, d]` features.
#[derive(Clone, Debug)]
pub(crate) struct Rows {
    pub d: usize,
    pub data: Vec<f32>,
}

impl Rows {
    pub fn n(&self) -> usize {
        self.data.len() / self.d.max(1)
    }
    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.d..(i + 1) * self.d]
    }
    /// The rows `idx`, keeping only columns `cols` (all when `None`).
    pub fn select(&self, idx: &[usize], cols: Option<&[usize]>) -> Rows {
        let mut data = vec![];
        for &i in idx {
            let r = self.row(i);
            match cols {
                Some(c) => data.extend(c.iter().map(|j| r[*j])),
                None => data.extend_from_slice(r),
            }
        }
        Rows {
            d: cols.map_or(self.d, |c| c.len()),
            data,
        }
    }
    pub fn tensor(&self) -> Result<Tensor> {
        Ok(Tensor::from_slice(
            &self.data,
            (self.n(), self.d),
            &Device::Cpu,
        )?)
    }
}

/// `prepare_probe_data` (not SCR): all rows of `class` as positives; from each other class
/// `ceil(#pos / #other classes)` random rows, then `#pos` of those at random as negatives; the
/// union shuffled. `by_class[c]` lists the rows of class `c`. Returns `(rows, labels)`.
pub(crate) fn prepare_probe_data(
    by_class: &[Vec<usize>],
    class: usize,
    rng: &mut Rng,
) -> (Vec<usize>, Vec<bool>) {
    let pos = &by_class[class];
    let others: Vec<usize> = (0..by_class.len()).filter(|c| *c != class).collect();
    let per = pos.len().div_ceil(others.len().max(1));
    let mut neg = vec![];
    for c in others {
        let mut rows = by_class[c].clone();
        shuffle(&mut rows, rng);
        neg.extend(rows.into_iter().take(per));
    }
    shuffle(&mut neg, rng);
    neg.truncate(pos.len());
    let mut all: Vec<(usize, bool)> = pos.iter().map(|r| (*r, true)).collect();
    all.extend(neg.into_iter().map(|r| (r, false)));
    shuffle(&mut all, rng);
    all.into_iter().unzip()
}

/// Fisher–Yates with the crate's RNG.
pub(crate) fn shuffle<T>(v: &mut [T], rng: &mut Rng) {
    for i in (1..v.len()).rev() {
        let j = rng.below(i + 1);
        v.swap(i, j);
    }
}

/// `get_top_k_mean_diff_mask`: the `k` columns with the largest `|mean_pos − mean_neg|`, in
/// ascending column order (the order `apply_topk_mask_reduce_dim` keeps).
pub(crate) fn top_k_mean_diff(x: &Rows, y: &[bool], k: usize) -> Vec<usize> {
    let mut diff = vec![0f64; x.d];
    let (np, nn) = (
        y.iter().filter(|v| **v).count().max(1) as f64,
        y.iter().filter(|v| !**v).count().max(1) as f64,
    );
    for (i, yi) in y.iter().enumerate() {
        let s = if *yi { 1.0 / np } else { -1.0 / nn };
        for (dj, xj) in diff.iter_mut().zip(x.row(i)) {
            *dj += s * *xj as f64;
        }
    }
    let keys: Vec<f32> = diff.iter().map(|v| v.abs() as f32).collect();
    let mut cols: Vec<usize> = crate::ops::top_k(k.min(x.d), &keys, None)
        .into_iter()
        .map(|j| j as usize)
        .collect();
    cols.sort_unstable();
    cols
}

/// Test accuracy of sklearn's `LogisticRegression(C=1, max_iter=1000)` trained on `cols` of
/// the train rows (`train_sklearn_probe`).
pub(crate) fn sklearn_probe_accuracy(
    train: (&Rows, &[bool]),
    test: (&Rows, &[bool]),
    cols: Option<&[usize]>,
) -> Result<f64> {
    let all_train: Vec<usize> = (0..train.0.n()).collect();
    let all_test: Vec<usize> = (0..test.0.n()).collect();
    let xtr = train.0.select(&all_train, cols);
    let xte = test.0.select(&all_test, cols);
    let lr = fit_logistic_regression(&xtr.data, train.1, &LogRegOptions::default())?;
    Ok(lr.accuracy(&xte.data, test.1))
}

/// `train_probe_gpu` as sparse probing calls it for the dense probes (batch 250, 100 epochs,
/// AdamW lr 1e-2, early stopping with patience 10 on test accuracy): the best test accuracy.
pub(crate) fn torch_probe_accuracy(
    train: (&Rows, &[bool]),
    test: (&Rows, &[bool]),
    seed: u64,
) -> Result<f64> {
    if train.0.n() == 0 || test.0.n() == 0 {
        return Err(Error::Invalid("torch_probe_accuracy: empty split".into()));
    }
    let y: Vec<f32> = train.1.iter().map(|v| *v as u8 as f32).collect();
    let y = Tensor::from_vec(y, (train.1.len(), 1), &Device::Cpu)?;
    let o = ProbeTrain {
        epochs: 100,
        batch_size: 250,
        lr: 1e-2,
        end_lr: None,
        weight_decay: 0.01,
        decoupled: true,
        l1: 0.0,
        pos_weight: false,
        patience: Some(10),
        seed,
    };
    let xt = test.0.tensor()?;
    let (_, acc) = train_probe(&train.0.tensor()?, &y, &o, Some((&xt, test.1)))?;
    acc.ok_or_else(|| Error::Invalid("torch_probe_accuracy: no accuracy".into()))
}
