//! Feature absorption on the first-letter task (Chanin et al.), with SAEBench's definitions
//! (`sae_bench/evals/absorption/`, `sae-bench` 0.6.0), plus its k-sparse first-letter probes.
//!
//! Pipeline ([`absorption`]), each step SAEBench's:
//!
//! 1. words: the alphabetic vocabulary ([`alpha_vocab`], `vocab.get_alpha_tokens`), one ICL
//!    prompt per word ([`icl_prompt`]: `max_icl_examples = 10` examples of
//!    `"{word} has the first letter:" + " X"`, separator `"\n"`, prepended too); hook activations
//!    at `prompt_token_pos = -6` (the word) and their SAE latents;
//! 2. per seed, an 80/20 split of the words (`create_dataset_probe_training`), a dense 26-way
//!    probe on the activations (Adam, BCE with `pos_weight`, batch 64, 50 epochs, lr 1e-2 decayed
//!    to 1e-5, weight decay 1e-4: `train_and_save_probes` / `train_linear_probe_for_task`);
//! 3. k-sparse probes (`train_k_sparse_probes`): an L1 multi-probe on the latents (`l1 = 0.01`,
//!    batch 4096, 50 epochs, L2 1e-6) ranks latents per letter by weight; for `k = 1..=10`,
//!    sklearn `LogisticRegression(max_iter=500, class_weight="balanced")` on the top `k`; test F1
//!    at logit > 0 (`build_metrics_df`); feature splits: the largest `k` reached while F1 grows
//!    by more than `f1_jump_threshold = 0.03` per step (`add_feature_splits_to_metrics_df`);
//! 4. absorption (`FeatureAbsorptionCalculator`) of each test word of a letter that the dense
//!    probe detects (logit > 0): with `p̂` the unit probe row and `cos_j = cos(p̂, W_dec[j])`,
//!    `absorption_fraction` (0 if the split latents' projection `Σ a_j cos_j` reaches the
//!    activation's `x·p̂` or the top 3 other latents with `cos ≥ 0.1` carry under 40 % of it; 1 if
//!    the split latents' projection ≤ 0; else `min(absorbers, x·p̂ − main) / (that + main)`),
//!    and full absorption (no split latent above 1e-8, the top-projecting latent has `cos ≥ 0.025`
//!    and carries ≥ 40 % of `x·p̂ ≥ 0`);
//! 5. per letter: the mean absorption fraction and the full-absorption rate over its probe true
//!    positives; overall: their means over letters whose probe F1 exceeds `min_gt_probe_f1 =
//!    0.6`, reported only when at least `min_feats_for_eval = 20` letters do.
//!
//! Deviations, for CPU budgets (all shared with the goldens, which feed SAEBench's functions
//! the same words, prompts and activations): `n_words` words are subsampled (SAEBench uses the
//! whole alphabetic vocabulary); words must encode to one token; ICL examples come from the
//! subsample and the same prompt (and activation) serves the probe data and the absorption
//! step, where SAEBench draws examples from each split and fresh prompts for step 4.
//!
//! ```no_run
//! use saescope::prelude::*;
//! let model = HookedModel::from_pretrained("smollm2")?;
//! let sae = Sae::shipped()?;
//! let r = absorption(&model, &sae, &AbsorptionOptions::default())?;
//! println!("{r}");
//! # Ok::<(), saescope::Error>(())
//! ```
mod metric;
mod prompts;

pub use metric::absorption_split;

pub use prompts::{
    alpha_vocab, first_letter_answer, first_letter_data, icl_prompt, FirstLetterData, LETTERS,
    MIN_PER_LETTER,
};

use crate::error::{Error, Result};
use crate::eval::probing::SeedStat;
use crate::model::HookedModel;
use crate::sae::Sae;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Options of [`absorption`]: SAEBench's `AbsorptionEvalConfig` and calculator constants, plus
/// the CPU subsample and the seeds.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AbsorptionOptions {
    /// Words subsampled from the alphabetic vocabulary (SAEBench: all of it).
    pub n_words: usize,
    /// Seeds of the split and the probes (error bars); seed `i` is `seed + i`.
    pub n_seeds: usize,
    /// Seed of the subsample and prompts, and the first probe seed (SAEBench `random_seed`).
    pub seed: u64,
    /// `prompt_template`.
    pub prompt_template: String,
    /// `prompt_token_pos`.
    pub prompt_token_pos: i64,
    /// `max_icl_examples` of the prompts.
    pub max_icl_examples: usize,
    /// `create_dataset_probe_training(train_test_fraction)`.
    pub train_fraction: f64,
    /// `max_k_value`.
    pub max_k_value: usize,
    /// `f1_jump_threshold`.
    pub f1_jump_threshold: f64,
    /// `k_sparse_probe_l1_decay`.
    pub k_sparse_probe_l1_decay: f64,
    /// `k_sparse_probe_num_epochs`.
    pub k_sparse_probe_num_epochs: usize,
    /// `min_GT_probe_f1`.
    pub min_gt_probe_f1: f64,
    /// `min_feats_for_eval`.
    pub min_feats_for_eval: usize,
    /// `FULL_ABSORPTION_PROBE_COS_THRESHOLD` (feature_absorption.py).
    pub full_absorption_probe_cos_threshold: f64,
    /// `ABSORPTION_FRACTION_PROBE_COS_THRESHOLD`.
    pub absorption_fraction_probe_cos_threshold: f64,
    /// `ABSORPTION_PROBE_PROJECTION_PROPORTION_THRESHOLD`.
    pub probe_projection_proportion_threshold: f64,
    /// `ABSORPTION_FRACTION_MAX_ABSORBING_LATENTS`.
    pub absorption_fraction_max_absorbing_latents: usize,
    /// Prompts per model pass.
    pub batch_size: usize,
}

impl Default for AbsorptionOptions {
    fn default() -> Self {
        AbsorptionOptions {
            n_words: 1200,
            n_seeds: 3,
            seed: 42,
            prompt_template: "{word} has the first letter:".into(),
            prompt_token_pos: -6,
            max_icl_examples: 10,
            train_fraction: 0.8,
            max_k_value: 10,
            f1_jump_threshold: 0.03,
            k_sparse_probe_l1_decay: 0.01,
            k_sparse_probe_num_epochs: 50,
            min_gt_probe_f1: 0.6,
            min_feats_for_eval: 20,
            full_absorption_probe_cos_threshold: 0.025,
            absorption_fraction_probe_cos_threshold: 0.1,
            probe_projection_proportion_threshold: 0.4,
            absorption_fraction_max_absorbing_latents: 3,
            batch_size: 32,
        }
    }
}

/// One letter's figures (SAEBench's `AbsorptionResultDetail` plus the probe F1).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LetterResult {
    /// The letter.
    pub letter: char,
    /// Test F1 of the dense probe for the letter.
    pub f1_probe: f64,
    /// Mean absorption fraction over the letter's probe true positives.
    pub mean_absorption_fraction: f64,
    /// Fraction of those words fully absorbed.
    pub full_absorption_rate: f64,
    /// Words fully absorbed.
    pub num_full_absorption: usize,
    /// Test words of the letter the probe detects.
    pub num_probe_true_positives: usize,
    /// Latents of the feature split.
    pub num_split_features: usize,
}

/// What [`absorption`] returns: means over letters, then mean ± std over seeds.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AbsorptionReport {
    /// The options used.
    pub options: AbsorptionOptions,
    /// Words used (after subsampling).
    pub n_words: usize,
    /// `mean_absorption_fraction_score` over the seeds with at least `min_feats_for_eval`
    /// letters above the F1 bar (`None` when no seed has).
    pub mean_absorption_fraction: Option<SeedStat>,
    /// `mean_full_absorption_score`.
    pub mean_full_absorption: Option<SeedStat>,
    /// `mean_num_split_features`.
    pub mean_num_split_features: Option<SeedStat>,
    /// Letters above `min_gt_probe_f1`, per seed.
    pub letters_evaluated: Vec<usize>,
    /// Dense probe test F1 averaged over letters.
    pub probe_f1: SeedStat,
    /// k-sparse probe test F1 averaged over letters, for `k = 1..=max_k_value`.
    pub k_sparse_f1: Vec<SeedStat>,
    /// Per-letter results of the first seed.
    pub letters: Vec<LetterResult>,
}

impl fmt::Display for AbsorptionReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "absorption (first letter, {} words, {} seeds; mean ± std over seeds)",
            self.n_words, self.options.n_seeds
        )?;
        writeln!(f, "| metric | value |\n|---|---|")?;
        let opt = |s: &Option<SeedStat>| {
            s.as_ref().map_or(
                "not evaluated (too few letters above the F1 bar)".into(),
                |s| s.to_string(),
            )
        };
        writeln!(
            f,
            "| mean absorption fraction | {} |",
            opt(&self.mean_absorption_fraction)
        )?;
        writeln!(
            f,
            "| mean full absorption | {} |",
            opt(&self.mean_full_absorption)
        )?;
        writeln!(
            f,
            "| mean split features | {} |",
            opt(&self.mean_num_split_features)
        )?;
        writeln!(f, "| dense probe F1 | {} |", self.probe_f1)?;
        for (k, s) in self.k_sparse_f1.iter().enumerate() {
            if [0, 1, 4].contains(&k) {
                writeln!(f, "| k-sparse F1, k = {} | {s} |", k + 1)?;
            }
        }
        writeln!(
            f,
            "letters evaluated per seed: {:?}",
            self.letters_evaluated
        )
    }
}

/// SAEBench's absorption eval of `sae` with `model` (see the module docs).
pub fn absorption(
    model: &HookedModel,
    sae: &Sae,
    opts: &AbsorptionOptions,
) -> Result<AbsorptionReport> {
    let data = first_letter_data(model, sae, opts)?;
    absorption_on(&data, sae, opts)
}

/// The probing and absorption half of [`absorption`] on gathered data.
pub fn absorption_on(
    data: &FirstLetterData,
    sae: &Sae,
    opts: &AbsorptionOptions,
) -> Result<AbsorptionReport> {
    if opts.n_seeds == 0
        || opts.max_k_value == 0
        || !(opts.train_fraction > 0.0 && opts.train_fraction < 1.0)
    {
        return Err(Error::Invalid(format!(
            "absorption: need n_seeds ≥ 1, max_k_value ≥ 1, 0 < train_fraction < 1 (got {}, {}, {})",
            opts.n_seeds, opts.max_k_value, opts.train_fraction
        )));
    }
    let (mut frac, mut full, mut split, mut n_eval, mut pf1) =
        (vec![], vec![], vec![], vec![], vec![]);
    let mut ks = vec![vec![]; opts.max_k_value];
    let mut first = None;
    for s in 0..opts.n_seeds {
        let r = metric::run_seed(data, sae, opts, opts.seed + s as u64)?;
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
        pf1.push(mean(&r.f1_probe));
        for (k, v) in r.f1_sparse.iter().enumerate() {
            ks[k].push(mean(v));
        }
        let good: Vec<&LetterResult> = r
            .letters
            .iter()
            .filter(|l| l.f1_probe > opts.min_gt_probe_f1)
            .collect();
        let n_good = r
            .f1_probe
            .iter()
            .filter(|f| **f > opts.min_gt_probe_f1)
            .count();
        n_eval.push(good.len());
        if n_good >= opts.min_feats_for_eval && !good.is_empty() {
            let m = |f: &dyn Fn(&LetterResult) -> f64| {
                good.iter().map(|l| f(l)).sum::<f64>() / good.len() as f64
            };
            frac.push(m(&|l| l.mean_absorption_fraction));
            full.push(m(&|l| l.full_absorption_rate));
            split.push(m(&|l| l.num_split_features as f64));
        }
        first.get_or_insert(r.letters);
    }
    Ok(AbsorptionReport {
        options: opts.clone(),
        n_words: data.words.len(),
        mean_absorption_fraction: (!frac.is_empty()).then(|| SeedStat::new(frac)),
        mean_full_absorption: (!full.is_empty()).then(|| SeedStat::new(full)),
        mean_num_split_features: (!split.is_empty()).then(|| SeedStat::new(split)),
        letters_evaluated: n_eval,
        probe_f1: SeedStat::new(pf1),
        k_sparse_f1: ks.into_iter().map(SeedStat::new).collect(),
        letters: first.unwrap_or_default(),
    })
}
