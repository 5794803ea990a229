//! Comparing next-token predictions across runs (clean, ablated, steered ...): the top tokens
//! of one run with their log-probabilities in every run, and the probability a run puts on a
//! set of tokens.
use crate::error::{Error, Result};
use crate::model::HookedModel;
use crate::tensor_ext::TensorExt;
use candle_core::{IndexOp, Tensor};
use std::fmt;

/// Next-token log-probabilities of several runs side by side ([`next_token_table`]).
#[derive(Clone, Debug, PartialEq)]
pub struct NextTokenTable {
    /// One name per run.
    pub runs: Vec<String>,
    /// `(token, log-probability in each run)`, ordered by the first run.
    pub rows: Vec<(String, Vec<f32>)>,
}

/// The log-probabilities at the last position of the first row of each run's logits
/// `[batch, pos, d_vocab]`, for the first run's top `k` tokens.
pub fn next_token_table(
    model: &HookedModel,
    runs: &[(&str, &Tensor)],
    k: usize,
) -> Result<NextTokenTable> {
    let first = runs
        .first()
        .ok_or_else(|| Error::Invalid("next_token_table needs at least one run".into()))?;
    let lps = runs
        .iter()
        .map(|(_, logits)| last_row(logits)?.log_softmax()?.to_f32_vec())
        .collect::<Result<Vec<_>>>()?;
    let top: Vec<u32> = last_row(first.1)?
        .topk(k.min(lps[0].len()))?
        .indices
        .to_vec1()?;
    let rows = top
        .iter()
        .map(|&t| {
            let cols = lps.iter().map(|lp| lp[t as usize]).collect();
            Ok((model.to_string(&[t])?, cols))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(NextTokenTable {
        runs: runs.iter().map(|(n, _)| n.to_string()).collect(),
        rows,
    })
}

impl fmt::Display for NextTokenTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:>22}", "next token")?;
        for r in &self.runs {
            write!(f, " {r:>12}")?;
        }
        for (token, cols) in &self.rows {
            write!(f, "\n{:>22}", format!("{token:?}"))?;
            for v in cols {
                write!(f, " {v:12.3}")?;
            }
        }
        Ok(())
    }
}

/// The probability the next token after the last position of `logits`' first row is one of
/// `ids` (e.g. `model.tokens_where(|s| s.contains("Error"))?`).
pub fn prob_mass(logits: &Tensor, ids: &[u32]) -> Result<f32> {
    let p = last_row(logits)?.softmax()?.to_f32_vec()?;
    ids.iter()
        .map(|&i| {
            p.get(i as usize).copied().ok_or_else(|| {
                Error::Invalid(format!("token id {i} past the vocabulary ({})", p.len()))
            })
        })
        .sum()
}

/// `logits[0, -1]`.
fn last_row(logits: &Tensor) -> Result<Tensor> {
    Ok(logits.last_pos()?.i(0)?)
}
