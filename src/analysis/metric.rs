//! The scalar a latent is judged by (ARENA's `logits_to_ave_logit_diff`, the loss, or any
//! function of the logits): what ablation measures and attribution patching differentiates.
use crate::error::{Error, Result};
use crate::model::HookedModel;
use candle_core::{DType, Tensor};
use std::fmt;
use std::sync::Arc;

/// A user metric: `(logits [batch, pos, d_vocab], tokens [batch, pos]) → scalar`. For
/// attribution patching it must be built from differentiable candle ops.
pub type MetricFn = dyn Fn(&Tensor, &Tensor) -> Result<Tensor> + Send + Sync;

/// A scalar function of one forward pass's logits; every variant averages over the batch.
#[derive(Clone)]
pub enum Metric {
    /// `logits[b, pos, correct[b]] − logits[b, pos, incorrect[b]]`, averaged over the batch
    /// (ARENA's `logits_to_ave_logit_diff`). `pos = None` is the last position; `correct` and
    /// `incorrect` hold one token each (used for every row) or one per batch row; an empty
    /// `incorrect` makes it the plain logit of `correct`.
    LogitDiff {
        /// Position read (`None`: the last).
        pos: Option<usize>,
        /// Token id(s) whose logit counts positively: one for every row, or one per row.
        correct: Vec<u32>,
        /// Token id(s) whose logit is subtracted: one, one per row, or none.
        incorrect: Vec<u32>,
    },
    /// Mean next-token cross-entropy loss (TL's `loss_fn`).
    Loss,
    /// Any differentiable scalar function of `(logits, tokens)`.
    Custom(Arc<MetricFn>),
}

impl fmt::Debug for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Metric::LogitDiff {
                pos,
                correct,
                incorrect,
            } => write!(
                f,
                "LogitDiff {{ pos: {pos:?}, correct: {correct:?}, incorrect: {incorrect:?} }}"
            ),
            Metric::Loss => write!(f, "Loss"),
            Metric::Custom(_) => write!(f, "Custom(..)"),
        }
    }
}

impl Metric {
    /// The logit difference between two strings that are single tokens (e.g. `" Paris"`,
    /// `" London"`) at the last position.
    pub fn logit_diff(model: &HookedModel, correct: &str, incorrect: &str) -> Result<Self> {
        Ok(Metric::LogitDiff {
            pos: None,
            correct: vec![model.to_single_token(correct)?],
            incorrect: vec![model.to_single_token(incorrect)?],
        })
    }

    /// A custom metric from a closure over `(logits, tokens)`.
    pub fn custom(f: impl Fn(&Tensor, &Tensor) -> Result<Tensor> + Send + Sync + 'static) -> Self {
        Metric::Custom(Arc::new(f))
    }

    /// The metric as a scalar tensor (differentiable when `logits` track gradients).
    /// `tokens` are the `[batch, pos]` ids the logits were computed from.
    pub fn eval(&self, model: &HookedModel, logits: &Tensor, tokens: &Tensor) -> Result<Tensor> {
        let (b, p, v) = logits.dims3()?;
        let t = match self {
            Metric::LogitDiff {
                pos,
                correct,
                incorrect,
            } => {
                let pos = pos.unwrap_or(p - 1);
                if pos >= p {
                    return Err(Error::Invalid(format!(
                        "metric position {pos} is out of range for {p} positions (None = last)"
                    )));
                }
                let ids = |toks: &[u32], what: &str| -> Result<Tensor> {
                    let ids: Vec<u32> = match toks.len() {
                        1 => vec![toks[0]; b],
                        n if n == b => toks.to_vec(),
                        n => {
                            return Err(Error::Invalid(format!(
                                "LogitDiff: {n} {what} tokens for a batch of {b}; give one token \
                                 or one per batch row"
                            )))
                        }
                    };
                    if let Some(bad) = ids.iter().find(|&&i| i as usize >= v) {
                        return Err(Error::Invalid(format!(
                            "LogitDiff: {what} token id {bad} is out of range for d_vocab = {v}"
                        )));
                    }
                    Ok(Tensor::from_vec(ids, (b, 1), logits.device())?)
                };
                let row = logits.narrow(1, pos, 1)?.squeeze(1)?.contiguous()?;
                let c = row.gather(&ids(correct, "correct")?, 1)?;
                if incorrect.is_empty() {
                    c.mean_all()?
                } else {
                    let i = row.gather(&ids(incorrect, "incorrect")?, 1)?;
                    (c - i)?.mean_all()?
                }
            }
            Metric::Loss => model.loss(tokens, logits)?,
            Metric::Custom(f) => f(logits, tokens)?,
        };
        self.check_scalar(t)
    }

    /// `t` as a 0-dim tensor; an error unless it holds exactly one number.
    pub(crate) fn check_scalar(&self, t: Tensor) -> Result<Tensor> {
        if t.elem_count() != 1 {
            return Err(Error::Invalid(format!(
                "a metric must be a scalar; the custom metric returned shape {:?}",
                t.dims()
            )));
        }
        Ok(t.reshape(())?)
    }

    /// [`Metric::eval`] as a number.
    pub fn value(&self, model: &HookedModel, logits: &Tensor, tokens: &Tensor) -> Result<f64> {
        Ok(self
            .eval(model, logits, tokens)?
            .to_dtype(DType::F64)?
            .to_scalar::<f64>()?)
    }
}
