//! TL's tokenization helpers on the model: `to_tokens`, `to_str_tokens`, `to_string`,
//! `to_single_token`, `get_token_position`, `test_prompt`.
use super::HookedModel;
use crate::error::{Error, Result};
use candle_core::{DType, IndexOp, Tensor, D};
use std::fmt;

impl HookedModel {
    /// Token ids `[1, pos]` (u32) for `text`, with BOS prepended (TL's default).
    pub fn to_tokens(&self, text: &str) -> Result<Tensor> {
        self.to_tokens_with(text, true)
    }
    /// Token ids `[1, pos]` (u32) for `text`, with BOS prepended iff `prepend_bos`.
    pub fn to_tokens_with(&self, text: &str, prepend_bos: bool) -> Result<Tensor> {
        let ids = self.tokenizer()?.encode(text, prepend_bos)?;
        if ids.is_empty() {
            return Err(Error::Tokenizer(format!("`{text}` tokenizes to nothing")));
        }
        let n = ids.len();
        Ok(Tensor::from_vec(ids, (1, n), self.device())?)
    }
    /// Several texts as one `[batch, max_pos]` tensor, right-padded with the pad token (as TL).
    /// With causal attention, padding on the right does not change the real positions.
    pub fn to_tokens_batch(&self, texts: &[&str], prepend_bos: bool) -> Result<Tensor> {
        let tok = self.tokenizer()?;
        let rows = texts
            .iter()
            .map(|t| tok.encode(t, prepend_bos))
            .collect::<Result<Vec<_>>>()?;
        let max = rows.iter().map(|r| r.len()).max().unwrap_or(0);
        if max == 0 {
            return Err(Error::Tokenizer("nothing to tokenize".into()));
        }
        let pad = tok.pad_id.or(tok.eos_id).unwrap_or(0);
        let flat: Vec<u32> = rows
            .iter()
            .flat_map(|r| {
                r.iter()
                    .copied()
                    .chain(std::iter::repeat_n(pad, max - r.len()))
            })
            .collect();
        Ok(Tensor::from_vec(flat, (rows.len(), max), self.device())?)
    }
    /// Each token of `text` (BOS first) as its own string.
    pub fn to_str_tokens(&self, text: &str) -> Result<Vec<String>> {
        let ids = self.tokenizer()?.encode(text, true)?;
        self.tokenizer()?.str_tokens(&ids)
    }
    /// Each id as its own string.
    pub fn ids_to_str_tokens(&self, ids: &[u32]) -> Result<Vec<String>> {
        self.tokenizer()?.str_tokens(ids)
    }
    /// Ids back to text.
    pub fn to_string(&self, ids: &[u32]) -> Result<String> {
        self.tokenizer()?.decode(ids)
    }
    /// The id of a string that must be exactly one token (no BOS).
    pub fn to_single_token(&self, s: &str) -> Result<u32> {
        let ids = self.tokenizer()?.encode(s, false)?;
        match ids.as_slice() {
            [id] => Ok(*id),
            _ => Err(Error::Tokenizer(format!(
                "`{s}` is not a single token: it tokenizes to {} tokens {:?}",
                ids.len(),
                self.tokenizer()?.str_tokens(&ids)?
            ))),
        }
    }
    /// Position of the first (or, with `last`, the last) occurrence of the single token
    /// `single_token` in `text` tokenized with BOS (TL's `get_token_position`).
    pub fn get_token_position(&self, single_token: &str, text: &str, last: bool) -> Result<usize> {
        let id = self.to_single_token(single_token)?;
        let ids = self.tokenizer()?.encode(text, true)?;
        let mut hits = ids
            .iter()
            .enumerate()
            .filter(|(_, t)| **t == id)
            .map(|(i, _)| i);
        let pos = if last { hits.next_back() } else { hits.next() };
        pos.ok_or_else(|| {
            Error::Tokenizer(format!(
                "token `{single_token}` (id {id}) does not occur in `{text}`"
            ))
        })
    }

    /// TL's `test_prompt`: how the model ranks each token of `answer` after `prompt`, and its
    /// top `top_k` predictions there. `Display` prints TL's report.
    pub fn test_prompt(
        &self,
        prompt: &str,
        answer: &str,
        prepend_space_to_answer: bool,
        top_k: usize,
    ) -> Result<TestPromptResult> {
        let answer = if prepend_space_to_answer && !answer.starts_with(' ') {
            format!(" {answer}")
        } else {
            answer.to_string()
        };
        let tok = self.tokenizer()?;
        let p_ids = tok.encode(prompt, true)?;
        let a_ids = tok.encode(&answer, false)?;
        if a_ids.is_empty() {
            return Err(Error::Tokenizer("test_prompt: empty answer".into()));
        }
        let all: Vec<u32> = p_ids.iter().chain(&a_ids).copied().collect();
        let n = all.len();
        let logits = self
            .forward(&Tensor::from_vec(all.clone(), (1, n), self.device())?)?
            .i(0)?;
        let probs = candle_nn::ops::softmax(&logits, D::Minus1)?;
        let mut rows = Vec::new();
        for (j, &ans) in a_ids.iter().enumerate() {
            let at = p_ids.len() + j - 1;
            let lg: Vec<f32> = logits.i(at)?.to_dtype(DType::F32)?.to_vec1()?;
            let pr: Vec<f32> = probs.i(at)?.to_dtype(DType::F32)?.to_vec1()?;
            let mut order: Vec<usize> = (0..pr.len()).collect();
            order.sort_by(|a, b| pr[*b].total_cmp(&pr[*a]));
            let rank = order
                .iter()
                .position(|&i| i as u32 == ans)
                .unwrap_or(order.len());
            let top = order[..top_k.min(order.len())]
                .iter()
                .map(|&i| Ok((tok.decode(&[i as u32])?, lg[i], pr[i])))
                .collect::<Result<Vec<_>>>()?;
            rows.push(AnswerRow {
                token: tok.decode(&[ans])?,
                rank,
                logit: lg[ans as usize],
                prob: pr[ans as usize],
                top,
            });
        }
        Ok(TestPromptResult {
            prompt_str_tokens: tok.str_tokens(&p_ids)?,
            answer_str_tokens: tok.str_tokens(&a_ids)?,
            rows,
        })
    }
}

/// One answer token's rank and the model's top predictions at that position.
#[derive(Clone, Debug)]
pub struct AnswerRow {
    /// The answer token as a string.
    pub token: String,
    /// Its 0-based rank among all vocabulary tokens by probability (0 = top prediction).
    pub rank: usize,
    /// Its logit at the predicting position.
    pub logit: f32,
    /// Its softmax probability at the predicting position.
    pub prob: f32,
    /// `(token, logit, prob)`, most probable first.
    pub top: Vec<(String, f32, f32)>,
}

/// What [`HookedModel::test_prompt`] found.
#[derive(Clone, Debug)]
pub struct TestPromptResult {
    /// The prompt's tokens as strings (BOS included).
    pub prompt_str_tokens: Vec<String>,
    /// The answer's tokens as strings (no BOS).
    pub answer_str_tokens: Vec<String>,
    /// One row per answer token, in order.
    pub rows: Vec<AnswerRow>,
}

impl TestPromptResult {
    /// Each answer token's rank (0 = top prediction), in order.
    pub fn ranks(&self) -> Vec<usize> {
        self.rows.iter().map(|r| r.rank).collect()
    }
}

impl fmt::Display for TestPromptResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "Tokenized prompt: {:?}", self.prompt_str_tokens)?;
        writeln!(f, "Tokenized answer: {:?}", self.answer_str_tokens)?;
        for r in &self.rows {
            writeln!(f, "Performance on answer token:")?;
            writeln!(
                f,
                "Rank: {:<8} Logit: {:5.2} Prob: {:6.2}% Token: |{}|",
                r.rank,
                r.logit,
                r.prob * 100.0,
                r.token
            )?;
            for (i, (t, l, p)) in r.top.iter().enumerate() {
                writeln!(
                    f,
                    "Top {i}th token. Logit: {l:5.2} Prob: {:6.2}% Token: |{t}|",
                    p * 100.0
                )?;
            }
        }
        write!(f, "Ranks of the answer tokens: {:?}", self.ranks())
    }
}
