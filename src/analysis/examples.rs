//! Reading latents off cached activations, as ARENA's first SAE exercises do by hand: which
//! latents pick out a token (recall and precision), a latent's strongest examples with their
//! context (`display_top_seqs`), and the tokens its decoder direction boosts and suppresses
//! (`show_top_logits`, sae_vis's logit table).
use super::dashboard::types::LogitTable;
use super::dashboard::{feature_resid_dirs, latent_logits, TokenScore};
use crate::error::{Error, Result};
use crate::model::HookedModel;
use crate::sae::Sae;
use crate::tensor_ext::TensorExt;
use candle_core::{DType, IndexOp, Tensor, D};
use std::fmt;

/// How well one latent picks out a set of tokens ([`token_latents`]).
#[derive(Clone, Debug, PartialEq)]
pub struct TokenLatent {
    /// The latent.
    pub latent: usize,
    /// Of the positions holding one of the tokens, the fraction where the latent fires.
    pub recall: f32,
    /// Of the positions where the latent fires, the fraction holding one of the tokens.
    pub precision: f32,
}

/// Every latent ranked by how well its firing (activation > 0) separates the positions of
/// `tokens` from all others: by `recall × precision`, best first. `acts` is `[batch, pos, d_sae]`
/// (e.g. [`sae_acts`](super::sae_acts) over corpus rows) and `ids` the `[batch, pos]` token ids.
pub fn token_latents(acts: &Tensor, ids: &Tensor, tokens: &[u32]) -> Result<Vec<TokenLatent>> {
    let d_sae = acts.dim(D::Minus1)?;
    let fired = acts.reshape(((), d_sae))?.gt(0f64)?.to_dtype(DType::F32)?;
    let ids: Vec<u32> = ids.flatten_all()?.to_dtype(DType::U32)?.to_vec1()?;
    if ids.len() != fired.dim(0)? {
        return Err(Error::Invalid(format!(
            "token_latents: {} token ids for {} activation rows; pass the ids the activations were computed on",
            ids.len(),
            fired.dim(0)?
        )));
    }
    let is_target: Vec<f32> = ids
        .iter()
        .map(|t| f32::from(u8::from(tokens.contains(t))))
        .collect();
    let n_target: f32 = is_target.iter().sum();
    let is_target = Tensor::from_vec(is_target, (1, ids.len()), acts.device())?;
    let on_target = is_target.matmul(&fired)?.squeeze(0)?.to_f32_vec()?;
    let total = fired.sum(0)?.to_f32_vec()?;
    let mut ranked: Vec<TokenLatent> = (0..d_sae)
        .map(|latent| TokenLatent {
            latent,
            recall: on_target[latent] / n_target.max(1.0),
            precision: on_target[latent] / total[latent].max(1.0),
        })
        .collect();
    ranked.sort_by(|a, b| (b.recall * b.precision).total_cmp(&(a.recall * a.precision)));
    Ok(ranked)
}

impl fmt::Display for TokenLatent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "latent {:5}: recall {:.2}, precision {:.2}",
            self.latent, self.recall, self.precision
        )
    }
}

/// One strong activation of a latent with its context ([`top_examples`]).
#[derive(Clone, Debug, PartialEq)]
pub struct TopExample {
    /// Row of the batch.
    pub row: usize,
    /// Position in the row.
    pub pos: usize,
    /// The latent's activation there.
    pub act: f32,
    /// Up to 12 tokens before, as text.
    pub before: String,
    /// The token the latent fires on.
    pub token: String,
    /// Up to 3 tokens after, as text.
    pub after: String,
}

impl fmt::Display for TopExample {
    /// `  54.3  "context before" [[token]] " after"` (newlines shown as ⏎).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let show = |s: &str| format!("{:?}", s.replace('\n', "⏎"));
        write!(
            f,
            "{:6.1}  {} [[{}]] {}",
            self.act,
            show(&self.before),
            self.token,
            show(&self.after)
        )
    }
}

/// The `k` largest activations of `latent` in `acts [batch, pos, d_sae]` computed on the token
/// ids `ids [batch, pos]`, each with 12 tokens of context before and 3 after (ARENA's
/// `get_k_largest_indices` + `display_top_seqs`).
pub fn top_examples(
    model: &HookedModel,
    acts: &Tensor,
    ids: &Tensor,
    latent: usize,
    k: usize,
) -> Result<Vec<TopExample>> {
    let (batch, n_pos, d_sae) = acts.dims3()?;
    if latent >= d_sae {
        return Err(Error::Invalid(format!(
            "latent {latent} out of range (d_sae = {d_sae})"
        )));
    }
    let col = acts.i((.., .., latent))?.flatten_all()?;
    let ids: Vec<u32> = ids.flatten_all()?.to_dtype(DType::U32)?.to_vec1()?;
    if ids.len() != batch * n_pos {
        return Err(Error::Invalid(format!(
            "top_examples: {} token ids for activations of shape {:?}",
            ids.len(),
            acts.dims()
        )));
    }
    let top = col.topk(k.min(batch * n_pos))?;
    let values = top.values.to_f32_vec()?;
    let flat: Vec<u32> = top.indices.to_vec1()?;
    flat.iter()
        .zip(values)
        .map(|(&p, act)| {
            let (row, pos) = (p as usize / n_pos, p as usize % n_pos);
            let r = &ids[row * n_pos..(row + 1) * n_pos];
            Ok(TopExample {
                row,
                pos,
                act,
                before: model.to_string(&r[pos.saturating_sub(12)..pos])?,
                token: model.to_string(&r[pos..pos + 1])?,
                after: model.to_string(&r[pos + 1..(pos + 4).min(n_pos)])?,
            })
        })
        .collect()
}

/// The `k` most boosted and most suppressed tokens of `latent` (ARENA's `show_top_logits`).
pub fn logit_table(model: &HookedModel, sae: &Sae, latent: usize, k: usize) -> Result<LogitTable> {
    let logits = latent_logits(model, &feature_resid_dirs(model, sae, &[latent])?)?.i(0)?;
    token_score_table(model, &logits, k)
}

/// The `k` highest and lowest of per-token `scores` (`[d_vocab]`) as a [`LogitTable`].
pub(crate) fn token_score_table(
    model: &HookedModel,
    scores: &Tensor,
    k: usize,
) -> Result<LogitTable> {
    let k = k.min(scores.dim(0)?);
    let rows = |t: crate::tensor_ext::TopK, sign: f32| -> Result<Vec<TokenScore>> {
        let ids: Vec<u32> = t.indices.to_vec1()?;
        ids.iter()
            .zip(t.values.to_f32_vec()?)
            .map(|(&id, v)| {
                Ok(TokenScore {
                    id,
                    token: model.to_string(&[id])?,
                    value: sign * v,
                })
            })
            .collect()
    };
    Ok(LogitTable {
        top: rows(scores.topk(k)?, 1.0)?,
        bottom: rows(scores.neg()?.topk(k)?, -1.0)?,
    })
}
