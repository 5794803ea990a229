//! Detection and fuzzing as delphi scores an explanation: samples from a latent's record
//! (activating examples from several quantiles plus non-activating ones), shuffled and shown
//! in batches; each answer parsed into one prediction per sample; the records of delphi's
//! `ClassifierOutput`; and delphi's confusion counts, balanced accuracy, precision, recall
//! and F1.
use serde::{Deserialize, Serialize};

use super::gather::LatentRecord;
use super::prompts::{classifier_prompt, parse_classifier_answer};
use super::run::AutointerpOptions;
use super::Example;
use crate::error::{Error, Result};
use crate::llm::{ChatBackend, ChatMessage, ChatOptions};
use crate::rng::{derive_seed, permutation, Draw, Rng};

/// Which of delphi's classifier scorers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScoreKind {
    /// Does the latent fire anywhere in this example? (Plain text.)
    Detection,
    /// Are the marked tokens the ones it fires on? (Activating examples marked where it
    /// fires, non-activating ones marked at random.)
    Fuzz,
}

impl ScoreKind {
    /// delphi's name for the scorer (its scores folder).
    pub fn name(self) -> &'static str {
        match self {
            ScoreKind::Detection => "detection",
            ScoreKind::Fuzz => "fuzz",
        }
    }
}

/// One scored example: delphi's `ClassifierOutput`, the layout of its score records.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClassifierOutput {
    /// The example's tokens.
    pub str_tokens: Vec<String>,
    /// The latent's activation on each token.
    pub activations: Vec<f32>,
    /// The activation quantile of an activating example; -1 for a random non-activating one.
    pub distance: f64,
    /// Whether the example is a positive (activating, correctly marked).
    pub activating: bool,
    /// The scorer's prediction; `None` when its answer could not be parsed.
    pub prediction: Option<bool>,
    /// The probability of a positive (delphi fills it from log-probabilities; not used here).
    pub probability: Option<f64>,
    /// Whether the prediction is right; `None` when there is none.
    pub correct: Option<bool>,
}

/// An example as the scorer sees it, with its record.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// The text shown (fuzzing marks tokens `<<…>>`; newlines shown as `↵`).
    pub text: String,
    /// The record the prediction is written into.
    pub data: ClassifierOutput,
}

/// delphi's fuzzing marks tokens at or above this fraction of the example's largest activation.
const FUZZ_THRESHOLD: f32 = 0.3;

fn output(ex: &Example, distance: f64, activating: bool) -> ClassifierOutput {
    ClassifierOutput {
        str_tokens: ex.str_tokens.clone(),
        activations: ex.acts.clone(),
        distance,
        activating,
        prediction: None,
        probability: None,
        correct: None,
    }
}

/// Tokens joined, each run of marked tokens wrapped in one `<<…>>` (delphi's `_highlight`).
fn highlight(tokens: &[String], marked: &[bool]) -> String {
    let mut s = String::new();
    for (i, t) in tokens.iter().enumerate() {
        let on = marked.get(i).copied().unwrap_or(false);
        let prev = i > 0 && marked.get(i - 1).copied().unwrap_or(false);
        let next = marked.get(i + 1).copied().unwrap_or(false);
        if on && !prev {
            s.push_str("<<");
        }
        s.push_str(t);
        if on && !next {
            s.push_str(">>");
        }
    }
    s.replace('\n', "↵")
}

/// Marks for a non-activating fuzzing example: `n` tokens below the threshold, always
/// including the one where an activating example would have its peak (delphi).
fn false_marks(ex: &Example, n: usize, rng: &mut Rng) -> Vec<bool> {
    let limit = FUZZ_THRESHOLD * ex.max_act().max(0.0);
    let below: Vec<usize> = (0..ex.acts.len())
        .filter(|&i| ex.acts[i] <= limit)
        .collect();
    let n = n.min(below.len());
    let peak = ex.acts.len() - ex.acts.len() / 4;
    let mut chosen: Vec<usize> = Vec::new();
    if n > 0 && below.contains(&peak) {
        chosen.push(peak);
    }
    let rest: Vec<usize> = below.iter().copied().filter(|&i| i != peak).collect();
    let order = permutation(rest.len(), rng.next_u64());
    chosen.extend(
        order
            .iter()
            .take(n - chosen.len())
            .map(|&k| rest[k as usize]),
    );
    let mut marks = vec![false; ex.acts.len()];
    for i in chosen {
        marks[i] = true;
    }
    marks
}

/// The samples a scorer sees for `record`, unshuffled: the non-activating examples, then the
/// activating ones (delphi's `_prepare`).
pub fn samples(record: &LatentRecord, kind: ScoreKind, seed: u64) -> Vec<Sample> {
    let mut out = Vec::new();
    match kind {
        ScoreKind::Detection => {
            for ex in &record.not_active {
                let text = ex.str_tokens.concat().replace('\n', "↵");
                out.push(Sample {
                    text,
                    data: output(ex, -1.0, false),
                });
            }
            for q in &record.test {
                let text = q.example.str_tokens.concat().replace('\n', "↵");
                out.push(Sample {
                    text,
                    data: output(&q.example, q.quantile as f64, true),
                });
            }
        }
        ScoreKind::Fuzz => {
            let n_active: usize = record
                .test
                .iter()
                .map(|q| q.example.acts.iter().filter(|&&a| a != 0.0).count())
                .sum();
            let n_incorrect = n_active.div_ceil(record.test.len().max(1));
            let mut rng = Rng::new(seed);
            for ex in &record.not_active {
                let text = highlight(&ex.str_tokens, &false_marks(ex, n_incorrect, &mut rng));
                out.push(Sample {
                    text,
                    data: output(ex, -1.0, false),
                });
            }
            for q in &record.test {
                let ex = &q.example;
                let limit = FUZZ_THRESHOLD * ex.max_act();
                let marks: Vec<bool> = ex.acts.iter().map(|&a| a >= limit).collect();
                let text = highlight(&ex.str_tokens, &marks);
                out.push(Sample {
                    text,
                    data: output(ex, q.quantile as f64, true),
                });
            }
        }
    }
    out
}

/// Shuffles `samples`, cuts them into batches of `n_shown`, lets `predict` answer every batch
/// (one `Option` per batch: `None` when the answer could not be parsed) and writes the
/// predictions into the records.
pub(crate) fn score_samples(
    samples: Vec<Sample>,
    n_shown: usize,
    seed: u64,
    predict: impl FnOnce(&[Vec<Sample>]) -> Result<Vec<Option<Vec<bool>>>>,
) -> Result<Vec<ClassifierOutput>> {
    let n_shown = n_shown.max(1);
    let mut slots: Vec<Option<Sample>> = samples.into_iter().map(Some).collect();
    let order = permutation(slots.len(), seed);
    let shuffled: Vec<Sample> = order
        .iter()
        .filter_map(|&i| slots[i as usize].take())
        .collect();
    let batches: Vec<Vec<Sample>> = shuffled.chunks(n_shown).map(|c| c.to_vec()).collect();
    let preds = predict(&batches)?;
    let mut out = Vec::new();
    for (batch, pred) in batches.into_iter().zip(preds) {
        for (i, s) in batch.into_iter().enumerate() {
            let mut d = s.data;
            d.prediction = pred.as_ref().map(|p| p[i]);
            d.correct = d.prediction.map(|p| p == d.activating);
            out.push(d);
        }
    }
    Ok(out)
}

/// Scores `explanation` of `record` with one of delphi's classifiers run by `scorer`: every
/// batch's chat is sent through `complete_many`; an unparseable answer leaves its samples
/// without prediction, and a backend error fails the latent (so that a rerun retries it).
pub fn score_record(
    record: &LatentRecord,
    explanation: &str,
    kind: ScoreKind,
    scorer: &dyn ChatBackend,
    opts: &AutointerpOptions,
) -> Result<Vec<ClassifierOutput>> {
    let seed = derive_seed(opts.seed, &[record.latent as u64, kind as u64]);
    let chat_opts = ChatOptions {
        max_tokens: opts.score_max_tokens,
        temperature: 0.0,
    };
    score_samples(
        samples(record, kind, seed),
        opts.n_examples_shown,
        seed,
        |batches| {
            let chats: Vec<_> = batches
                .iter()
                .map(|b| {
                    let texts: Vec<&str> = b.iter().map(|s| s.text.as_str()).collect();
                    let mut chat = classifier_prompt(kind == ScoreKind::Fuzz, explanation, &texts);
                    if !opts.score_prefill.is_empty() {
                        chat.push(ChatMessage::assistant(opts.score_prefill.as_str()));
                    }
                    chat
                })
                .collect();
            scorer
                .complete_many(&chats, &chat_opts)
                .into_iter()
                .zip(batches)
                .map(|(answer, b)| {
                    let answer = format!("{}{}", opts.score_prefill, answer?);
                    Ok(parse_classifier_answer(&answer, b.len()))
                })
                .collect()
        },
    )
}

/// delphi's classification metrics of scored examples (`compute_confusion` +
/// `compute_classification_metrics`): examples without a prediction are left out and counted
/// as failed.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ClassificationMetrics {
    /// Examples with a prediction.
    pub n: usize,
    /// Examples whose answer could not be parsed.
    pub failed: usize,
    /// Positives predicted positive.
    pub true_positives: usize,
    /// Negatives predicted negative.
    pub true_negatives: usize,
    /// Negatives predicted positive.
    pub false_positives: usize,
    /// Positives predicted negative.
    pub false_negatives: usize,
    /// Fraction correct, `(tp + tn) / n`.
    pub accuracy: f64,
    /// `(tp / positives + tn / negatives) / 2`, each term 0 when its class is empty (what
    /// delphi reports as "accuracy").
    pub balanced_accuracy: f64,
    /// `tp / (tp + fp)`.
    pub precision: f64,
    /// `tp / positives`.
    pub recall: f64,
    /// Harmonic mean of precision and recall.
    pub f1: f64,
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

/// The metrics of `outputs`, pooled as delphi pools every example of a scorer.
pub fn classification_metrics<'a>(
    outputs: impl IntoIterator<Item = &'a ClassifierOutput>,
) -> ClassificationMetrics {
    let mut m = ClassificationMetrics::default();
    for o in outputs {
        match (o.prediction, o.activating) {
            (None, _) => m.failed += 1,
            (Some(true), true) => m.true_positives += 1,
            (Some(false), false) => m.true_negatives += 1,
            (Some(true), false) => m.false_positives += 1,
            (Some(false), true) => m.false_negatives += 1,
        }
    }
    let pos = m.true_positives + m.false_negatives;
    let neg = m.true_negatives + m.false_positives;
    m.n = pos + neg;
    m.accuracy = ratio(m.true_positives + m.true_negatives, m.n);
    m.balanced_accuracy = (ratio(m.true_positives, pos) + ratio(m.true_negatives, neg)) / 2.0;
    m.precision = ratio(m.true_positives, m.true_positives + m.false_positives);
    m.recall = ratio(m.true_positives, pos);
    m.f1 = if m.precision + m.recall > 0.0 {
        2.0 * m.precision * m.recall / (m.precision + m.recall)
    } else {
        0.0
    };
    m
}

/// Checks that a record can be scored (it has both kinds of example).
pub(crate) fn check_scorable(record: &LatentRecord) -> Result<()> {
    if record.test.is_empty() || record.not_active.is_empty() {
        return Err(Error::Invalid(format!(
            "latent {}: no {} examples to score; gather over more tokens",
            record.latent,
            if record.test.is_empty() {
                "activating"
            } else {
                "non-activating"
            }
        )));
    }
    Ok(())
}
