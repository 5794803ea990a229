//! The tokens an eval runs on: by default the held-out slice of the default corpus
//! ([`CorpusSplit::HeldOut`]: documents the shipped SAE never trained on), packed as SAELens
//! packs (rows of `context_size`, BOS first, BOS between documents), and a record of them for
//! the report.
use super::{run_evals, EvalOptions, EvalReport};
use crate::data::{CorpusSplit, PackOptions, RowStream, SeparatorToken, TextDataset};
use crate::error::Result;
use crate::model::{HookedModel, LoadOptions};
use crate::sae::Sae;
use crate::tokenizer::Tok;
use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Tokens [`run_default_evals`] and `saescope eval` use when no dataset is named: 32 Ki tokens
/// (256 rows of 128) of the held-out slice.
pub const DEFAULT_EVAL_TOKENS: usize = 32_768;

/// Row length when the SAE names none (SAELens's `context_size` default for small models).
pub const DEFAULT_EVAL_CONTEXT: usize = 128;

/// Where an eval's tokens came from (the report's `dataset` group).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct EvalDataset {
    /// The dataset spec (`default:heldout`, a path, `hub:ORG/NAME`) or the tokens file.
    pub name: String,
    /// Documents in the dataset (not all need have been read); 0 for a tokens file.
    pub documents: usize,
    /// Rows evaluated.
    pub rows: usize,
    /// Tokens per row.
    pub context_size: usize,
    /// `rows × context_size`, special tokens included.
    pub tokens: usize,
    /// The document shuffle seed, if the documents were shuffled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shuffle_seed: Option<u64>,
    /// What is held out and why, when the tokens come from a split of the default corpus.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub held_out: Option<String>,
}

/// The first `n_tokens` (rounded up to whole rows of `context_size`) of dataset `spec`, packed
/// as SAELens does, documents shuffled with `shuffle_seed` if given, with their record.
pub fn dataset_tokens(
    tok: &Tok,
    spec: &str,
    n_tokens: usize,
    context_size: usize,
    shuffle_seed: Option<u64>,
) -> Result<(Tensor, EvalDataset)> {
    let ds = Arc::new(TextDataset::load(spec, None, &LoadOptions::default())?);
    let opts = PackOptions::saelens(tok, context_size, true, Some(SeparatorToken::Bos), false)?;
    let rows = n_tokens.div_ceil(context_size).max(1);
    let mut stream = RowStream::new(ds.clone(), Some(tok.clone()), opts, shuffle_seed)?;
    let ids = stream.next_rows(rows)?;
    let split = CorpusSplit::from_spec(spec);
    let record = EvalDataset {
        name: split.map_or(spec.to_string(), |s| s.spec().to_string()),
        documents: ds.len(),
        rows,
        context_size,
        tokens: rows * context_size,
        shuffle_seed,
        held_out: split.map(held_out_note),
    };
    Ok((
        Tensor::from_vec(ids, (rows, context_size), &Device::Cpu)?,
        record,
    ))
}

fn held_out_note(split: CorpusSplit) -> String {
    let slice = format!(
        "{} documents listed in data/corpus.heldout.txt (the last of the corpus shuffled with seed {}), which the shipped SAE never trained on",
        crate::data::HELD_OUT_DOCUMENTS,
        crate::data::HELD_OUT_SHUFFLE_SEED
    );
    match split {
        CorpusSplit::HeldOut => format!("only the held-out slice: {slice}"),
        CorpusSplit::Train => format!("the held-out slice is excluded: {slice}"),
        CorpusSplit::All => {
            format!("none: the whole corpus, including the held-out slice ({slice})")
        }
    }
}

/// [`DEFAULT_EVAL_TOKENS`] tokens of the default corpus's held-out slice, in rows of
/// `context_size`.
pub fn held_out_tokens(
    tok: &Tok,
    n_tokens: usize,
    context_size: usize,
) -> Result<(Tensor, EvalDataset)> {
    dataset_tokens(
        tok,
        CorpusSplit::HeldOut.spec(),
        n_tokens,
        context_size,
        None,
    )
}

/// SAELens's evals of `sae` on [`DEFAULT_EVAL_TOKENS`] held-out tokens of the default corpus,
/// in rows of the SAE's `context_size` (else 128). The report's `dataset` names them. A
/// missing corpus is an error naming `scripts/setup_corpus.sh`.
pub fn run_default_evals(model: &HookedModel, sae: &Sae, opts: &EvalOptions) -> Result<EvalReport> {
    let ctx = sae
        .cfg()
        .metadata
        .context_size
        .filter(|&c| c >= 2)
        .unwrap_or(DEFAULT_EVAL_CONTEXT);
    let (tokens, record) = held_out_tokens(model.tokenizer()?, DEFAULT_EVAL_TOKENS, ctx)?;
    let mut report = run_evals(model, sae, &tokens, opts)?;
    report.dataset = Some(record);
    Ok(report)
}
