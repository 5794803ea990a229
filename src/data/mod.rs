//! Datasets: text corpora, tokenization and packing (SAELens semantics).
//!
//! - [`TextDataset`]: documents from a directory of text files, a JSONL file (a `text` field by
//!   default; pre-tokenised `tokens` / `input_ids` fields too), the default offline corpus
//!   (`data/corpus/`, built by `scripts/setup_corpus.sh`), or a hub dataset repo via hf-hub.
//! - [`pack`]: SAELens's `concat_and_batch_sequences` (each row starts with BOS when
//!   `prepend_bos`; documents separated by the separator token, BOS by default; concatenate
//!   then chunk into `context_size` rows).
//! - [`RowStream`]: the same packing as a resumable, deterministic stream of rows over epochs,
//!   with optional seeded document shuffling.
mod dataset;
mod hub;
mod packing;
pub mod rng;

pub use dataset::{default_corpus_dir, Document, TextDataset};
pub use packing::{pack, PackOptions, RowStream, RowStreamState, SeparatorToken};
