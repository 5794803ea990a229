//! Autointerp (ARENA 1.3.3, SAEBench's `autointerp` eval, which ARENA's exercises follow):
//! examples shown with their active tokens marked `<<…>>`, explanations parsed from the
//! explainer's answer, and detection scoring — the scorer names which of a shuffled set of
//! examples (top activating and random) it expects the latent to fire on, and the score is
//! the fraction it classifies correctly.
//!
//! The pipeline, as delphi runs it: [`gather_records`] takes one pass over a corpus and keeps,
//! for each latent, its top windows, windows drawn across activation quantiles and random
//! windows where it never fires ([`LatentRecord`]); [`run_autointerp`] asks an explainer for an
//! explanation of each latent and scores it by detection and fuzzing with a scorer model
//! (any [`ChatBackend`](crate::llm::ChatBackend)), writing delphi's records as JSONL and
//! resuming after a kill; [`AutointerpReport`] gives the fraction correct and the balanced
//! accuracy; [`random_baseline`] and [`top_tokens_baseline`] give the floors to compare with.
mod baselines;
mod gather;
mod prompts;
mod run;
mod score;

pub use baselines::{random_baseline, top_tokens_baseline};
pub use gather::{gather_records, GatherOptions, LatentRecord, QuantileExample};
pub use prompts::{
    classifier_prompt, explanation_prompt, parse_classifier_answer, parse_explanation,
    saebench_scoring_prompt, EXPLAIN_PREFILL,
};
pub use run::{run_autointerp, AutointerpOptions, AutointerpReport, LatentResult};
pub use score::{
    classification_metrics, samples, score_record, ClassificationMetrics, ClassifierOutput, Sample,
    ScoreKind,
};

/// One example sequence: its tokens as strings and the latent's activation on each.
#[derive(Clone, Debug, PartialEq)]
pub struct Example {
    /// The tokens, as strings.
    pub str_tokens: Vec<String>,
    /// The latent's activation on each token.
    pub acts: Vec<f32>,
    /// Tokens with an activation above this are active (SAEBench: 0.1 × the latent's largest
    /// activation in the examples gathered).
    pub act_threshold: f32,
}

impl Example {
    /// Whether each token is active (activation strictly above the threshold).
    pub fn active_tokens(&self) -> Vec<bool> {
        self.acts.iter().map(|&a| a > self.act_threshold).collect()
    }

    /// Whether any token is active: what the scorer has to predict.
    pub fn is_active(&self) -> bool {
        self.acts.iter().any(|&a| a > self.act_threshold)
    }

    /// The largest activation.
    pub fn max_act(&self) -> f32 {
        self.acts.iter().copied().fold(f32::MIN, f32::max)
    }

    /// The text as the prompts show it: the tokens joined, active ones wrapped in `<<…>>`
    /// when `mark` is set, `�` dropped and newlines shown as `↵`.
    pub fn to_text(&self, mark: bool) -> String {
        let active = self.active_tokens();
        let mut s = String::new();
        for (t, &on) in self.str_tokens.iter().zip(&active) {
            if mark && on {
                s.push_str("<<");
                s.push_str(t);
                s.push_str(">>");
            } else {
                s.push_str(t);
            }
        }
        s.replace('\u{FFFD}', "").replace('\n', "↵")
    }
}

/// The example numbers (1-based) in a scorer's answer such as `"2, 5 and 7."` or `"None"`
/// (SAEBench's `parse_predictions`): `Some(vec![])` for none, `None` when the answer is not a
/// list of numbers.
pub fn parse_predictions(answer: &str) -> Option<Vec<usize>> {
    let cleaned = answer
        .trim()
        .trim_end_matches('.')
        .replace("and", ",")
        .replace("None", "");
    let items: Vec<&str> = cleaned
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    items
        .iter()
        .map(|s| {
            if s.chars().all(|c| c.is_ascii_digit()) {
                s.parse().ok()
            } else {
                None
            }
        })
        .collect()
}

/// The fraction of `examples` classified correctly when the ones numbered in `predictions`
/// (1-based) are predicted active and the rest inactive (SAEBench's / ARENA's
/// `score_predictions`). 0 for no examples.
pub fn score_predictions(predictions: &[usize], examples: &[Example]) -> f64 {
    if examples.is_empty() {
        return 0.0;
    }
    let correct = examples
        .iter()
        .enumerate()
        .filter(|(i, ex)| predictions.contains(&(i + 1)) == ex.is_active())
        .count();
    correct as f64 / examples.len() as f64
}
