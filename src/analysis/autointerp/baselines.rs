//! Floors to read autointerp scores against: a scorer that answers at random, and a
//! "top activating tokens" explainer whose scorer predicts a latent is present exactly when an
//! example contains one of those tokens (no language model in either).
use std::collections::BTreeMap;

use super::gather::LatentRecord;
use super::run::{run_with, AutointerpOptions, AutointerpReport, LatentResult};
use super::score::{samples, score_samples, Sample, ScoreKind};
use crate::error::Result;
use crate::rng::{derive_seed, Draw, Rng};

fn run_baseline(
    records: &[LatentRecord],
    opts: &AutointerpOptions,
    label: &str,
    explanation: impl Fn(&LatentRecord) -> String,
    predict: impl Fn(&LatentRecord, ScoreKind, &Sample, &mut Rng) -> bool,
) -> Result<AutointerpReport> {
    let mut report = run_with(records, opts, |r| {
        let mut scores = BTreeMap::new();
        for &k in &opts.scorers {
            let seed = derive_seed(opts.seed, &[r.latent as u64, k as u64]);
            let mut rng = Rng::new(derive_seed(seed, &[1]));
            let outs = score_samples(samples(r, k, seed), opts.n_examples_shown, seed, |bs| {
                Ok(bs
                    .iter()
                    .map(|b| Some(b.iter().map(|s| predict(r, k, s, &mut rng)).collect()))
                    .collect())
            })?;
            scores.insert(k.name().to_string(), outs);
        }
        Ok(LatentResult {
            module: r.module.clone(),
            latent: r.latent,
            explanation: explanation(r),
            scores,
        })
    })?;
    report.label = label.to_string();
    Ok(report)
}

/// Every example predicted by a fair coin (seeded by `opts.seed`): balanced accuracy ≈ 0.5.
pub fn random_baseline(
    records: &[LatentRecord],
    opts: &AutointerpOptions,
) -> Result<AutointerpReport> {
    run_baseline(
        records,
        opts,
        "random baseline",
        |_| "(coin flips)".to_string(),
        |_, _, _, rng| rng.uniform() < 0.5,
    )
}

/// The latent's `n_tokens` most frequent peak tokens in its explainer windows.
fn top_tokens(record: &LatentRecord, n_tokens: usize) -> Vec<String> {
    let mut counts: Vec<(String, usize)> = Vec::new();
    for ex in &record.explain {
        let Some(i) = (0..ex.acts.len()).max_by(|&a, &b| ex.acts[a].total_cmp(&ex.acts[b])) else {
            continue;
        };
        let t = &ex.str_tokens[i];
        match counts.iter_mut().find(|(s, _)| s == t) {
            Some(c) => c.1 += 1,
            None => counts.push((t.clone(), 1)),
        }
    }
    counts.sort_by_key(|c| std::cmp::Reverse(c.1));
    counts.into_iter().take(n_tokens).map(|(t, _)| t).collect()
}

/// The text of each `<<…>>` span of a sample.
fn marked_spans(text: &str) -> Vec<&str> {
    text.split("<<")
        .skip(1)
        .filter_map(|s| s.split(">>").next())
        .collect()
}

/// The "top activating tokens" baseline: the explanation is the latent's `n_tokens` most
/// frequent peak tokens; detection predicts an example active when it contains one of them,
/// fuzzing predicts its marks right when every marked span is one of them.
pub fn top_tokens_baseline(
    records: &[LatentRecord],
    n_tokens: usize,
    opts: &AutointerpOptions,
) -> Result<AutointerpReport> {
    let cache: BTreeMap<usize, Vec<String>> = records
        .iter()
        .map(|r| (r.latent, top_tokens(r, n_tokens)))
        .collect();
    let tokens = |r: &LatentRecord| cache.get(&r.latent).cloned().unwrap_or_default();
    run_baseline(
        records,
        opts,
        &format!("top-{n_tokens}-tokens baseline"),
        |r| {
            let quoted: Vec<String> = tokens(r).iter().map(|t| format!("{t:?}")).collect();
            format!("the tokens {}", quoted.join(", "))
        },
        |r, k, s, _| {
            let top = tokens(r);
            match k {
                ScoreKind::Detection => s.data.str_tokens.iter().any(|t| top.contains(t)),
                ScoreKind::Fuzz => {
                    let spans = marked_spans(&s.text);
                    !spans.is_empty() && spans.iter().all(|sp| top.iter().any(|t| t == sp))
                }
            }
        },
    )
}
