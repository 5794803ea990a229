//! Tokenisation and packing into `context_size` rows, exactly as SAELens's
//! `tokenization_and_batching.concat_and_batch_sequences` with the arguments its
//! `ActivationsStore` passes for untokenised text: `begin_batch_token_id = BOS if prepend_bos`,
//! `begin_sequence_token_id = None`, `sequence_separator_token_id = sequence_separator_token`
//! (BOS by default). Pre-tokenised rows are truncated to `context_size`.
use super::dataset::{Document, TextDataset};
use crate::error::{Error, Result};
use crate::rng::{derive_seed, permutation};
use crate::tokenizer::Tok;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::sync::Arc;

/// SAELens's `sequence_separator_token`: `"bos"`, `"eos"`, `"sep"` or a token id (`null` in a
/// config = no separator, i.e. `Option::None`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SeparatorToken {
    /// The tokenizer's BOS token (SAELens default).
    Bos,
    /// The tokenizer's EOS token.
    Eos,
    /// The tokenizer's SEP token; the tokenizers here have none, so nothing is inserted.
    Sep,
    /// An explicit token id.
    Id(u32),
}

impl SeparatorToken {
    /// The token id for a tokenizer; `None` for `sep` (no SEP token here: SAELens then inserts
    /// nothing). A missing BOS / EOS is an error.
    pub fn resolve(&self, tok: &Tok) -> Result<Option<u32>> {
        Ok(match self {
            SeparatorToken::Id(i) => Some(*i),
            SeparatorToken::Bos => Some(tok.bos_id.ok_or_else(|| {
                Error::Tokenizer(
                    "sequence_separator_token = \"bos\" but the tokenizer has no BOS token".into(),
                )
            })?),
            SeparatorToken::Eos => Some(tok.eos_id.ok_or_else(|| {
                Error::Tokenizer(
                    "sequence_separator_token = \"eos\" but the tokenizer has no EOS token".into(),
                )
            })?),
            // HF's sep_token_id is None for BPE models without one: SAELens then inserts nothing.
            SeparatorToken::Sep => None,
        })
    }
}

impl Serialize for SeparatorToken {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self {
            SeparatorToken::Bos => s.serialize_str("bos"),
            SeparatorToken::Eos => s.serialize_str("eos"),
            SeparatorToken::Sep => s.serialize_str("sep"),
            SeparatorToken::Id(i) => s.serialize_u32(*i),
        }
    }
}

impl<'de> Deserialize<'de> for SeparatorToken {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Id(u32),
            Name(String),
        }
        match Raw::deserialize(d)? {
            Raw::Id(i) => Ok(SeparatorToken::Id(i)),
            Raw::Name(n) => match n.as_str() {
                "bos" => Ok(SeparatorToken::Bos),
                "eos" => Ok(SeparatorToken::Eos),
                "sep" => Ok(SeparatorToken::Sep),
                other => Err(serde::de::Error::custom(format!(
                    "invalid sequence_separator_token `{other}` (expected \"bos\", \"eos\", \"sep\", a token id or null)"
                ))),
            },
        }
    }
}

/// Arguments of SAELens's `concat_and_batch_sequences`.
#[derive(Clone, Debug, PartialEq)]
pub struct PackOptions {
    /// Tokens per packed row (SAELens `context_size`).
    pub context_size: usize,
    /// Token at position 0 of each row (BOS when `prepend_bos`).
    pub begin_batch_token_id: Option<u32>,
    /// Token at the start of each document (SAELens's store passes None).
    pub begin_sequence_token_id: Option<u32>,
    /// Token between concatenated documents.
    pub sequence_separator_token_id: Option<u32>,
    /// One row per document (truncated; shorter documents dropped) instead of concatenating.
    pub disable_concat_sequences: bool,
}

impl PackOptions {
    /// What SAELens's `ActivationsStore` uses for a model's tokenizer.
    pub fn saelens(
        tok: &Tok,
        context_size: usize,
        prepend_bos: bool,
        separator: Option<SeparatorToken>,
        disable_concat_sequences: bool,
    ) -> Result<Self> {
        let bos = if prepend_bos {
            Some(tok.bos_id.ok_or_else(|| {
                Error::Tokenizer(
                    "prepend_bos = true but the tokenizer has no BOS token; set prepend_bos = false".into(),
                )
            })?)
        } else {
            None
        };
        let sep = match separator {
            Some(s) => s.resolve(tok)?,
            None => None,
        };
        Ok(PackOptions {
            context_size,
            begin_batch_token_id: bos,
            begin_sequence_token_id: None,
            sequence_separator_token_id: sep,
            disable_concat_sequences,
        })
    }

    fn check(&self) -> Result<()> {
        if self.context_size == 0 {
            return Err(Error::Invalid("context_size must be positive".into()));
        }
        // With as many prefix tokens as positions no document token ever fits (SAELens loops
        // forever there).
        let prefixes = usize::from(self.begin_batch_token_id.is_some())
            + usize::from(self.begin_sequence_token_id.is_some());
        if !self.disable_concat_sequences && self.context_size <= prefixes {
            return Err(Error::Invalid(format!(
                "context_size {} leaves no room for tokens after the {prefixes} begin token(s)",
                self.context_size
            )));
        }
        Ok(())
    }
}

/// SAELens's `_add_tokens_to_batch`: append (part of) `tokens[offset..]` to the row being
/// built. Returns the new offset and whether a sequence start is still pending.
fn add_tokens_to_batch(
    batch: &mut Option<Vec<u32>>,
    tokens: &[u32],
    offset: usize,
    o: &PackOptions,
    is_start_of_sequence: bool,
) -> (usize, bool) {
    let ctx = o.context_size;
    let mut prefix: Vec<u32> = Vec::new();
    let mut pending = false;
    let mut first = tokens[offset];
    if is_start_of_sequence {
        if let Some(bst) = o.begin_sequence_token_id {
            if first != bst {
                prefix.insert(0, bst);
                pending = true;
                first = bst;
            }
        }
    }
    let Some(b) = batch.as_mut() else {
        if let Some(bbt) = o.begin_batch_token_id {
            if first != bbt {
                prefix.insert(0, bbt);
            }
        }
        let needed = ctx.saturating_sub(prefix.len());
        let end = (offset + needed).min(tokens.len());
        let mut row: Vec<u32> = prefix.iter().take(ctx).copied().collect();
        row.extend_from_slice(&tokens[offset..end]);
        *batch = Some(row);
        return (offset + needed, pending && prefix.len() > ctx);
    };
    if let Some(sep) = o.sequence_separator_token_id {
        if first != sep {
            prefix.insert(0, sep);
        }
    }
    let needed = ctx.saturating_sub(b.len() + prefix.len());
    let prefix_needed = ctx.saturating_sub(b.len());
    b.extend(prefix.iter().take(prefix_needed));
    let end = (offset + needed).min(tokens.len());
    b.extend_from_slice(&tokens[offset..end]);
    (offset + needed, pending && prefix.len() > prefix_needed)
}

/// SAELens's `concat_and_batch_sequences` over already-tokenised documents: all full rows.
pub fn pack(docs: impl IntoIterator<Item = Vec<u32>>, o: &PackOptions) -> Result<Vec<Vec<u32>>> {
    o.check()?;
    let mut out = Vec::new();
    let mut p = Packer::default();
    for d in docs {
        p.start_doc(d);
        while let Some(r) = p.step(o) {
            out.push(r);
        }
    }
    Ok(out)
}

/// The packing state machine (one document at a time).
#[derive(Clone, Debug, Default)]
struct Packer {
    batch: Option<Vec<u32>>,
    cur: Vec<u32>,
    offset: usize,
    is_start: bool,
}

impl Packer {
    fn start_doc(&mut self, tokens: Vec<u32>) {
        self.cur = tokens;
        self.offset = 0;
        self.is_start = true;
    }

    /// The next full row from the current document, or None when it is used up.
    fn step(&mut self, o: &PackOptions) -> Option<Vec<u32>> {
        if o.disable_concat_sequences {
            let seq = std::mem::take(&mut self.cur);
            self.offset = 0;
            return no_concat_row(seq, o);
        }
        while self.offset < self.cur.len() {
            let (off, start) =
                add_tokens_to_batch(&mut self.batch, &self.cur, self.offset, o, self.is_start);
            self.offset = off;
            self.is_start = start;
            if self
                .batch
                .as_ref()
                .is_some_and(|b| b.len() == o.context_size)
            {
                return self.batch.take();
            }
        }
        None
    }
}

/// `disable_concat_sequences=True`: one row per document, BOS-prefixed, shorter ones dropped.
fn no_concat_row(mut seq: Vec<u32>, o: &PackOptions) -> Option<Vec<u32>> {
    let ctx = o.context_size;
    let bst = o.begin_sequence_token_id.or(o.begin_batch_token_id);
    if seq.is_empty() {
        return None;
    }
    if let Some(b) = bst {
        if seq.len() + 1 >= ctx && seq[0] != b {
            seq.truncate(ctx - 1);
            seq.insert(0, b);
        }
    }
    if seq.len() >= ctx {
        seq.truncate(ctx);
        Some(seq)
    } else {
        None
    }
}

/// Where a [`RowStream`] is, for exact resumption.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RowStreamState {
    /// Completed passes over the dataset (the epoch being read).
    pub epoch: u64,
    /// Index (into the epoch's document order) of the next document to read.
    pub next_doc: usize,
    /// Whether the document before `next_doc` is still being consumed.
    pub in_doc: bool,
    /// Offset into the current document's tokens of the next token to pack.
    pub offset: usize,
    /// Whether the current document's start (begin-sequence token) is still pending.
    pub is_start: bool,
    /// The partially filled row.
    pub batch: Option<Vec<u32>>,
    /// Rows produced so far, over all epochs.
    pub rows: u64,
    /// Rows produced so far in the current epoch.
    pub rows_this_epoch: u64,
}

/// Packed rows over a dataset, epoch after epoch, deterministic and resumable. Documents are
/// read in order, or (with `shuffle_seed`) in a seeded permutation that changes every epoch.
/// At the end of an epoch the partly built row is dropped (SAELens restarts its generator).
pub struct RowStream {
    dataset: Arc<TextDataset>,
    tok: Option<Tok>,
    opts: PackOptions,
    shuffle_seed: Option<u64>,
    order: Vec<u32>,
    packer: Packer,
    st: RowStreamState,
}

impl RowStream {
    /// `tok` is needed for text documents; pre-tokenised ones are used as they are.
    pub fn new(
        dataset: Arc<TextDataset>,
        tok: Option<Tok>,
        opts: PackOptions,
        shuffle_seed: Option<u64>,
    ) -> Result<Self> {
        opts.check()?;
        if dataset.is_empty() {
            return Err(Error::Invalid(format!(
                "dataset `{}` is empty",
                dataset.name
            )));
        }
        if tok.is_none()
            && dataset
                .docs()
                .iter()
                .any(|d| matches!(d, Document::Text(_)))
        {
            return Err(Error::Tokenizer(
                "the dataset holds text but no tokenizer was given".into(),
            ));
        }
        let mut s = RowStream {
            dataset,
            tok,
            opts,
            shuffle_seed,
            order: Vec::new(),
            packer: Packer::default(),
            st: RowStreamState {
                is_start: true,
                ..Default::default()
            },
        };
        s.order = s.make_order(0);
        Ok(s)
    }

    /// The packing options.
    pub fn options(&self) -> &PackOptions {
        &self.opts
    }
    /// The dataset being streamed.
    pub fn dataset(&self) -> &Arc<TextDataset> {
        &self.dataset
    }
    /// Completed epochs so far.
    pub fn epoch(&self) -> u64 {
        self.st.epoch
    }
    /// Rows produced so far.
    pub fn rows(&self) -> u64 {
        self.st.rows
    }

    fn make_order(&self, epoch: u64) -> Vec<u32> {
        match self.shuffle_seed {
            Some(seed) => permutation(self.dataset.len(), derive_seed(seed, &[epoch])),
            None => (0..self.dataset.len() as u32).collect(),
        }
    }

    fn tokens_of(&self, i: usize) -> Result<Vec<u32>> {
        match &self.dataset.docs()[i] {
            Document::Tokens(t) => Ok(t.clone()),
            Document::Text(s) => self.tok.as_ref().expect("checked in new").encode(s, false),
        }
    }

    /// The next `[context_size]` row.
    pub fn next_row(&mut self) -> Result<Vec<u32>> {
        let ctx = self.opts.context_size;
        loop {
            if self.st.in_doc {
                self.packer.batch = self.st.batch.take();
                self.packer.offset = self.st.offset;
                self.packer.is_start = self.st.is_start;
                let row = self.packer.step(&self.opts);
                self.st.batch = self.packer.batch.take();
                self.st.offset = self.packer.offset;
                self.st.is_start = self.packer.is_start;
                if let Some(r) = row {
                    self.st.rows += 1;
                    self.st.rows_this_epoch += 1;
                    return Ok(r);
                }
                self.st.in_doc = false;
                self.packer.cur.clear();
            }
            if self.st.next_doc >= self.order.len() {
                if self.st.rows_this_epoch == 0 {
                    return Err(Error::Invalid(format!(
                        "dataset `{}` is too small: a whole pass gives no full row of {ctx} tokens",
                        self.dataset.name
                    )));
                }
                self.st.epoch += 1;
                self.st.next_doc = 0;
                self.st.batch = None;
                self.st.rows_this_epoch = 0;
                self.order = self.make_order(self.st.epoch);
            }
            let i = self.order[self.st.next_doc] as usize;
            self.st.next_doc += 1;
            if let Document::Tokens(t) = &self.dataset.docs()[i] {
                // Pre-tokenised: the row truncated to context_size (SAELens's tokenised path).
                if t.len() < ctx {
                    return Err(Error::Invalid(format!(
                        "pre-tokenised row {i} of `{}` has {} tokens, fewer than context_size {ctx}",
                        self.dataset.name,
                        t.len()
                    )));
                }
                self.st.rows += 1;
                self.st.rows_this_epoch += 1;
                return Ok(t[..ctx].to_vec());
            }
            self.packer.start_doc(self.tokens_of(i)?);
            self.st.in_doc = true;
            self.st.offset = 0;
            self.st.is_start = true;
        }
    }

    /// `n` rows as one `Vec` (row-major `[n, context_size]`).
    pub fn next_rows(&mut self, n: usize) -> Result<Vec<u32>> {
        let mut out = Vec::with_capacity(n * self.opts.context_size);
        for _ in 0..n {
            out.extend(self.next_row()?);
        }
        Ok(out)
    }

    /// A snapshot of the stream position, for [`RowStream::restore`].
    pub fn state(&self) -> RowStreamState {
        self.st.clone()
    }

    /// Continue from `state` (re-tokenises the current document).
    pub fn restore(&mut self, state: RowStreamState) -> Result<()> {
        if state.next_doc > self.dataset.len() {
            return Err(Error::Invalid(format!(
                "stream state points at document {} of a dataset with {}: a different dataset?",
                state.next_doc,
                self.dataset.len()
            )));
        }
        self.order = self.make_order(state.epoch);
        self.packer = Packer::default();
        if state.in_doc {
            if state.next_doc == 0 {
                return Err(Error::Invalid(
                    "corrupt stream state (in_doc at document 0)".into(),
                ));
            }
            let i = self.order[state.next_doc - 1] as usize;
            self.packer.cur = self.tokens_of(i)?;
        }
        self.st = state;
        Ok(())
    }
}
