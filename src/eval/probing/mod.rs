//! Probing with SAEBench's definitions (`sae-bench` 0.6.0): k-sparse probes on SAE latents
//! against dense probes on the model's activations, with reseed error bars.
//!
//! [`sparse_probing`] mirrors `sae_bench/evals/sparse_probing/main.py` on an offline task:
//! SAEBench's datasets (bias_in_bios, Amazon reviews, AG News, GitHub code, Europarl) are not
//! reachable here, so the task is **a local stand-in**: documents of the default corpus (the
//! first `docs_per_class` per package in corpus order with at least `context` tokens; the
//! held-out slice alone has too few long documents of some packages) labelled by their Debian
//! package (`python3.11-doc`, `debian-reference-en`,
//! `fortunes`, `libpython3.11-stdlib`, `libpython3.11-minimal`: prose, manual, quips and two
//! sets of Python source; packages short of `docs_per_class` such documents are left out),
//! one-vs-rest per package as SAEBench does per profession. Everything
//! downstream of the activations is SAEBench's:
//!
//! * features: the hook activations (and their SAE latents) mean-pooled over the non-BOS/EOS/PAD
//!   tokens of each document (`create_meaned_model_activations`, `get_sae_meaned_activations`
//!   with `mask_bos_pad_eos_tokens=True`), first `context` tokens of documents at least that long;
//! * per class, balanced data (`prepare_probe_data`: all positives, as many negatives drawn
//!   evenly from the other classes);
//! * `sae_top_k`: the `k ∈ {1, 2, 5}` latents with the largest `|mean_pos − mean_neg|` on the
//!   train split (`get_top_k_mean_diff_mask`), then sklearn `LogisticRegression(C=1,
//!   max_iter=1000)` ([`fit_logistic_regression`]); `llm_top_k`: the same on activation channels;
//! * `llm` (dense): `train_probe_gpu` on all activation channels (AdamW lr 1e-2, batch 250,
//!   100 epochs, early stopping on test accuracy with patience 10, its best test accuracy);
//! * each figure is the test accuracy averaged over classes.
//!
//! Reseed error bars: each of `n_seeds` seeds re-splits the pooled documents into train and test
//! and re-draws the negatives and the probe's init and batch order; the report gives mean ± std
//! (sample std) over seeds.
//!
//! ```no_run
//! use saescope::prelude::*;
//! let model = HookedModel::from_pretrained("smollm2")?;
//! let sae = Sae::shipped()?;
//! let r = sparse_probing(&model, &sae, &ProbingOptions::default())?;
//! println!("{r}");
//! # Ok::<(), saescope::Error>(())
//! ```
mod data;
mod linear;
mod logreg;
mod sparse;

pub use data::{pooled_activations, PooledActivations};
pub(crate) use linear::{train_probe, ProbeTrain};
pub use logreg::{fit_logistic_regression, LogRegOptions, LogisticRegression};
pub(crate) use sparse::shuffle;

use crate::error::{Error, Result};
use crate::model::HookedModel;
use crate::rng::{derive_seed, Rng};
use crate::sae::Sae;
use serde::{Deserialize, Serialize};
use sparse::{prepare_probe_data, sklearn_probe_accuracy, top_k_mean_diff, torch_probe_accuracy};
use std::fmt;

/// Options of [`sparse_probing`] (SAEBench's `SparseProbingEvalConfig` where it applies; the
/// sizes are CPU-sized subsamples of its 4000 / 1000 documents at 128 tokens).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ProbingOptions {
    /// `k` values of the k-sparse probes (SAEBench `k_values`).
    pub k_values: Vec<usize>,
    /// Tokens read from each document (SAEBench `context_length` = 128).
    pub context: usize,
    /// Documents per class in the pooled set (split `train_fraction` / rest per seed).
    pub docs_per_class: usize,
    /// Fraction of each class's documents in the train split (SAEBench: 4000 / 5000 = 0.8).
    pub train_fraction: f64,
    /// Seeds of the split and the probes (error bars).
    pub n_seeds: usize,
    /// First seed (SAEBench `random_seed` = 42); seed `i` is `seed + i`.
    pub seed: u64,
    /// Documents per model pass.
    pub batch_size: usize,
    /// Also train the dense torch probe (`llm_test_accuracy`; the slowest step).
    pub dense_probe: bool,
}

impl Default for ProbingOptions {
    fn default() -> Self {
        ProbingOptions {
            k_values: vec![1, 2, 5],
            context: 64,
            docs_per_class: 60,
            train_fraction: 0.8,
            n_seeds: 3,
            seed: 42,
            batch_size: 16,
            dense_probe: true,
        }
    }
}

/// Mean ± sample std over seeds, with the per-seed values.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct SeedStat {
    /// Mean over seeds.
    pub mean: f64,
    /// Sample standard deviation over seeds (0 with one seed).
    pub std: f64,
    /// One value per seed.
    pub values: Vec<f64>,
}

impl SeedStat {
    /// The statistics of `values`.
    pub fn new(values: Vec<f64>) -> Self {
        let n = values.len() as f64;
        let mean = values.iter().sum::<f64>() / n.max(1.0);
        let std = if values.len() > 1 {
            (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()
        } else {
            0.0
        };
        SeedStat { mean, std, values }
    }
}

impl fmt::Display for SeedStat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.4} ± {:.4}", self.mean, self.std)
    }
}

/// One k-sparse probing figure.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct KStat {
    /// Latents (or channels) the probe sees.
    pub k: usize,
    /// Test accuracy averaged over classes, over seeds.
    pub accuracy: SeedStat,
}

/// What [`sparse_probing`] returns (SAEBench's `sae_top_k_test_accuracy`,
/// `llm_top_k_test_accuracy`, `llm_test_accuracy`, averaged over classes).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ProbingReport {
    /// The task (`corpus-package`, the local stand-in).
    pub task: String,
    /// Class names.
    pub classes: Vec<String>,
    /// The options used.
    pub options: ProbingOptions,
    /// k-sparse probes on SAE latents (`sae_top_{k}_test_accuracy`).
    pub sae_top_k: Vec<KStat>,
    /// k-sparse probes on activation channels (`llm_top_{k}_test_accuracy`).
    pub llm_top_k: Vec<KStat>,
    /// The dense probe on all channels (`llm_test_accuracy`), when trained.
    pub llm: Option<SeedStat>,
}

impl fmt::Display for ProbingReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "sparse probing ({}, {} classes, {} seeds; test accuracy, mean ± std)",
            self.task,
            self.classes.len(),
            self.options.n_seeds
        )?;
        writeln!(f, "| probe | SAE latents | activation channels |")?;
        writeln!(f, "|---|---|---|")?;
        for (s, l) in self.sae_top_k.iter().zip(&self.llm_top_k) {
            writeln!(f, "| k = {} | {} | {} |", s.k, s.accuracy, l.accuracy)?;
        }
        if let Some(d) = &self.llm {
            writeln!(f, "| dense | | {d} |")?;
        }
        Ok(())
    }
}

/// SAEBench's sparse probing of `sae` on the local corpus-package task (see the module docs).
pub fn sparse_probing(
    model: &HookedModel,
    sae: &Sae,
    opts: &ProbingOptions,
) -> Result<ProbingReport> {
    let data = pooled_activations(model, sae, opts)?;
    sparse_probing_pooled(&data, opts)
}

/// The probing half of [`sparse_probing`] on already pooled activations.
pub fn sparse_probing_pooled(
    data: &PooledActivations,
    opts: &ProbingOptions,
) -> Result<ProbingReport> {
    if opts.n_seeds == 0 || !(opts.train_fraction > 0.0 && opts.train_fraction < 1.0) {
        return Err(Error::Invalid(format!(
            "sparse_probing: need n_seeds ≥ 1 and 0 < train_fraction < 1 (got {}, {})",
            opts.n_seeds, opts.train_fraction
        )));
    }
    let nk = opts.k_values.len();
    let (mut sae_k, mut llm_k, mut dense) = (vec![vec![]; nk], vec![vec![]; nk], vec![]);
    for s in 0..opts.n_seeds {
        let seed = opts.seed + s as u64;
        let split = data.split(opts.train_fraction, seed);
        let r = probe_one_seed(data, &split, opts, seed)?;
        for i in 0..nk {
            sae_k[i].push(r.0[i]);
            llm_k[i].push(r.1[i]);
        }
        if let Some(d) = r.2 {
            dense.push(d);
        }
    }
    let stats = |v: Vec<Vec<f64>>| -> Vec<KStat> {
        opts.k_values
            .iter()
            .zip(v)
            .map(|(k, v)| KStat {
                k: *k,
                accuracy: SeedStat::new(v),
            })
            .collect()
    };
    Ok(ProbingReport {
        task: data.task.clone(),
        classes: data.classes.clone(),
        options: opts.clone(),
        sae_top_k: stats(sae_k),
        llm_top_k: stats(llm_k),
        llm: (!dense.is_empty()).then(|| SeedStat::new(dense)),
    })
}

/// Train/test rows per class.
pub(crate) type Split = (Vec<Vec<usize>>, Vec<Vec<usize>>);

/// One seed: class-averaged test accuracies `(sae_top_k, llm_top_k, dense)`.
fn probe_one_seed(
    data: &PooledActivations,
    split: &Split,
    opts: &ProbingOptions,
    seed: u64,
) -> Result<(Vec<f64>, Vec<f64>, Option<f64>)> {
    let nc = data.classes.len();
    let nk = opts.k_values.len();
    let (mut sae_k, mut llm_k, mut dense) = (vec![0.0; nk], vec![0.0; nk], 0.0);
    for c in 0..nc {
        let mut rng = Rng::new(derive_seed(seed, &[c as u64]));
        let (tr, ytr) = prepare_probe_data(&split.0, c, &mut rng);
        let (te, yte) = prepare_probe_data(&split.1, c, &mut rng);
        for (feats, out) in [(&data.sae, &mut sae_k), (&data.resid, &mut llm_k)] {
            let (xtr, xte) = (feats.select(&tr, None), feats.select(&te, None));
            for (i, k) in opts.k_values.iter().enumerate() {
                let cols = top_k_mean_diff(&xtr, &ytr, *k);
                out[i] +=
                    sklearn_probe_accuracy((&xtr, &ytr), (&xte, &yte), Some(&cols))? / nc as f64;
            }
        }
        if opts.dense_probe {
            let (xtr, xte) = (data.resid.select(&tr, None), data.resid.select(&te, None));
            dense += torch_probe_accuracy((&xtr, &ytr), (&xte, &yte), rng.fork_seed())? / nc as f64;
        }
    }
    Ok((sae_k, llm_k, opts.dense_probe.then_some(dense)))
}

trait ForkSeed {
    fn fork_seed(&mut self) -> u64;
}
impl ForkSeed for Rng {
    fn fork_seed(&mut self) -> u64 {
        use crate::rng::Draw;
        self.next_u64()
    }
}
