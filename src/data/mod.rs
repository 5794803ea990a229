//! Datasets: text corpora, tokenization and packing (SAELens semantics).
//!
//! - [`TextDataset`]: documents from a directory of text files, a JSONL file (a `text` field by
//!   default; pre-tokenised `tokens` / `input_ids` fields too), the default offline corpus
//!   (`data/corpus/`, built by `scripts/setup_corpus.sh`; [`CorpusSplit`] names its held-out
//!   slice), or a hub dataset repo via hf-hub.
//! - [`pack`]: SAELens's `concat_and_batch_sequences` (each row starts with BOS when
//!   `prepend_bos`; documents separated by the separator token, BOS by default; concatenate
//!   then chunk into `context_size` rows).
//! - [`RowStream`]: the same packing as a resumable, deterministic stream of rows over epochs,
//!   with optional seeded document shuffling.
//! - [`token_rows`]: the first `n` packed rows of a dataset as a `[n, context_size]` tensor
//!   (evals, dashboards, notebooks).
mod corpus;
mod dataset;
mod hub;
mod packing;

pub use corpus::{
    default_corpus_dir, held_out_sources, CorpusSplit, HELD_OUT_DOCUMENTS, HELD_OUT_SHUFFLE_SEED,
};
pub use dataset::{Document, TextDataset};
pub use packing::{pack, PackOptions, RowStream, RowStreamState, SeparatorToken};

use crate::error::Result;
use crate::model::LoadOptions;
use crate::tokenizer::Tok;
use candle_core::{Device, Tensor};

/// The first `n_rows` rows `[n_rows, context_size]` (u32) of dataset `spec` packed as SAELens
/// does (BOS first, BOS between documents), documents shuffled with `shuffle_seed` if given.
/// `spec`: `default` (the offline corpus), a directory of text files, a `.jsonl` file or
/// `hub:ORG/NAME[:FILES]`.
pub fn token_rows(
    tok: &Tok,
    spec: &str,
    n_rows: usize,
    context_size: usize,
    shuffle_seed: Option<u64>,
) -> Result<Tensor> {
    let ds = TextDataset::load(spec, None, &LoadOptions::default())?;
    let opts = PackOptions::saelens(tok, context_size, true, Some(SeparatorToken::Bos), false)?;
    let mut rows = RowStream::new(
        std::sync::Arc::new(ds),
        Some(tok.clone()),
        opts,
        shuffle_seed,
    )?;
    let v = rows.next_rows(n_rows)?;
    Ok(Tensor::from_vec(v, (n_rows, context_size), &Device::Cpu)?)
}
