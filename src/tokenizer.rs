//! Tokenizers: byte-level BPE built from GGUF metadata, or a HF `tokenizer.json`.
//!
//! Ids are meant to equal HF transformers' for the same text. [`Tok::encode`] never adds
//! special tokens by itself (TL's `prepend_bos` is explicit), [`Tok::decode`] keeps special
//! tokens and does no clean-up (HF `decode(ids, clean_up_tokenization_spaces=False)`), and
//! [`Tok::str_tokens`] decodes every id on its own (TL's `to_str_tokens`).
use crate::error::{Error, Result};
use candle_core::quantized::gguf_file;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::BPE;
use tokenizers::normalizers::unicode::NFC;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::{AddedToken, SplitDelimiterBehavior};

/// A tokenizer with TL-relevant special ids. Wraps `tokenizers::Tokenizer`.
///
/// Special ids follow TransformerLens: when a tokenizer has no EOS but has `<|endoftext|>`,
/// that is the EOS; a missing BOS falls back to the EOS and a missing PAD to the EOS (TL's
/// `set_tokenizer`), so GPT-2 gets bos = eos = pad = `<|endoftext|>`.
#[derive(Clone)]
pub struct Tok {
    /// The wrapped Hugging Face tokenizer.
    pub inner: tokenizers::Tokenizer,
    /// BOS id (TL's `bos_token_id`; falls back to the EOS).
    pub bos_id: Option<u32>,
    /// EOS id (TL's `eos_token_id`; `<|endoftext|>` when the tokenizer declares none).
    pub eos_id: Option<u32>,
    /// PAD id (TL's `pad_token_id`; falls back to the EOS).
    pub pad_id: Option<u32>,
}

impl std::fmt::Debug for Tok {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tok")
            .field("vocab_size", &self.vocab_size())
            .field("bos_id", &self.bos_id)
            .field("eos_id", &self.eos_id)
            .field("pad_id", &self.pad_id)
            .finish()
    }
}

/// llama.cpp token types (`tokenizer.ggml.token_type`).
const TOKEN_TYPE_CONTROL: u32 = 3;
const TOKEN_TYPE_USER_DEFINED: u32 = 4;

/// The pre-tokenizer regexes llama.cpp uses for some `tokenizer.ggml.pre` values.
const REGEX_LLAMA3: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const REGEX_QWEN2: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

fn gguf_err(path: &Path, reason: impl std::fmt::Display) -> Error {
    Error::model_file(path, format!("GGUF tokenizer: {reason}"))
}

fn meta<'a>(content: &'a gguf_file::Content, key: &str) -> Option<&'a gguf_file::Value> {
    content.metadata.get(key)
}

fn value_u32(v: &gguf_file::Value) -> Option<u32> {
    use gguf_file::Value::*;
    let x: i128 = match v {
        U8(x) => *x as i128,
        I8(x) => *x as i128,
        U16(x) => *x as i128,
        I16(x) => *x as i128,
        U32(x) => *x as i128,
        I32(x) => *x as i128,
        U64(x) => *x as i128,
        I64(x) => *x as i128,
        _ => return None,
    };
    u32::try_from(x).ok()
}

fn meta_u32(content: &gguf_file::Content, path: &Path, key: &str) -> Result<Option<u32>> {
    match meta(content, key) {
        None => Ok(None),
        Some(v) => value_u32(v)
            .map(Some)
            .ok_or_else(|| gguf_err(path, format!("`{key}` is not a valid token id: {v:?}"))),
    }
}

fn meta_bool(content: &gguf_file::Content, key: &str) -> Option<bool> {
    match meta(content, key)? {
        gguf_file::Value::Bool(b) => Some(*b),
        v => value_u32(v).map(|x| x != 0),
    }
}

fn meta_strings(content: &gguf_file::Content, path: &Path, key: &str) -> Result<Vec<String>> {
    let v = meta(content, key).ok_or_else(|| {
        gguf_err(
            path,
            format!("missing metadata key `{key}` (is this a GGUF with an embedded tokenizer?)"),
        )
    })?;
    let arr = match v {
        gguf_file::Value::Array(a) => a,
        other => {
            return Err(gguf_err(
                path,
                format!("`{key}` is not an array but {:?}", other.value_type()),
            ))
        }
    };
    arr.iter()
        .enumerate()
        .map(|(i, v)| match v {
            gguf_file::Value::String(s) => Ok(s.clone()),
            other => Err(gguf_err(
                path,
                format!("`{key}`[{i}] is not a string: {other:?}"),
            )),
        })
        .collect()
}

/// The pre-tokenizer for a `tokenizer.ggml.pre` value, mirroring the HF `tokenizer.json` of the
/// corresponding model family.
fn pre_tokenizer_for(pre: &str, add_prefix_space: bool) -> Result<(PreTokenizerWrapper, bool)> {
    let split = |re: &str| -> Result<PreTokenizerWrapper> {
        Split::new(
            SplitPattern::Regex(re.to_string()),
            SplitDelimiterBehavior::Isolated,
            false,
        )
        .map(Into::into)
        .map_err(|e| Error::Tokenizer(format!("bad pre-tokenizer regex: {e}")))
    };
    // Returns (pre-tokenizer, whether to NFC-normalize).
    Ok(match pre {
        // SmolLM / StarCoder: digits one by one, then GPT-2 byte-level (no prefix space).
        "smollm" | "starcoder" | "refact" | "codeshell" => (
            Sequence::new(vec![
                Digits::new(true).into(),
                ByteLevel::new(add_prefix_space, true, true).into(),
            ])
            .into(),
            false,
        ),
        "llama3" | "llama-bpe" | "smaug-bpe" | "lfm2" => (
            Sequence::new(vec![
                split(REGEX_LLAMA3)?,
                ByteLevel::new(false, true, false).into(),
            ])
            .into(),
            false,
        ),
        "qwen2" => (
            Sequence::new(vec![
                split(REGEX_QWEN2)?,
                ByteLevel::new(false, false, false).into(),
            ])
            .into(),
            true,
        ),
        // GPT-2 and anything unknown: the GPT-2 regex inside ByteLevel.
        _ => (ByteLevel::new(add_prefix_space, true, true).into(), false),
    })
}

/// Which tokens count as special where positions are excluded (SAELens's
/// `exclude_special_tokens`), one definition for splicing, training, evals and dashboards.
///
/// In configs (JSON) it is SAELens's value: `false` ([`SpecialTokens::None`]), `true`
/// ([`SpecialTokens::Structural`], what SAELens's activation store drops) or a list of ids;
/// saescope also reads and writes `"all"`, and reads `"none"` and `"structural"`.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "SpecialTokensJson", into = "SpecialTokensJson")]
pub enum SpecialTokens {
    /// None: every position counts.
    #[default]
    None,
    /// BOS, EOS and PAD: what SAELens's activation store and `run_evals` drop.
    Structural,
    /// Every special token (HF's `all_special_ids`): HookedSAETransformer's
    /// `exclude_special_tokens=True`.
    All,
    /// These ids.
    Ids(Vec<u32>),
}

/// The config forms of [`SpecialTokens`].
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(untagged)]
enum SpecialTokensJson {
    Flag(bool),
    Ids(Vec<u32>),
    Name(String),
}

impl TryFrom<SpecialTokensJson> for SpecialTokens {
    type Error = String;
    fn try_from(v: SpecialTokensJson) -> std::result::Result<Self, String> {
        Ok(match v {
            SpecialTokensJson::Flag(false) => SpecialTokens::None,
            SpecialTokensJson::Flag(true) => SpecialTokens::Structural,
            SpecialTokensJson::Ids(ids) => SpecialTokens::Ids(ids),
            SpecialTokensJson::Name(n) => match n.to_ascii_lowercase().as_str() {
                "none" => SpecialTokens::None,
                "structural" => SpecialTokens::Structural,
                "all" => SpecialTokens::All,
                _ => {
                    return Err(format!(
                        "exclude_special_tokens `{n}`: expected true, false, a list of token \
                         ids, or \"none\", \"structural\", \"all\""
                    ))
                }
            },
        })
    }
}

impl From<SpecialTokens> for SpecialTokensJson {
    fn from(s: SpecialTokens) -> Self {
        match s {
            SpecialTokens::None => SpecialTokensJson::Flag(false),
            SpecialTokens::Structural => SpecialTokensJson::Flag(true),
            SpecialTokens::All => SpecialTokensJson::Name("all".into()),
            SpecialTokens::Ids(ids) => SpecialTokensJson::Ids(ids),
        }
    }
}

impl SpecialTokens {
    /// The excluded ids, sorted.
    pub fn ids(&self, tok: &Tok) -> Vec<u32> {
        self.ids_with(Some(tok))
    }
    /// The excluded ids, sorted, for a model that may lack a tokenizer (then only
    /// [`SpecialTokens::Ids`] excludes anything).
    pub fn ids_with(&self, tok: Option<&Tok>) -> Vec<u32> {
        let mut v = match (self, tok) {
            (SpecialTokens::Ids(v), _) => v.clone(),
            (SpecialTokens::None, _) | (_, None) => Vec::new(),
            (SpecialTokens::Structural, Some(tok)) => [tok.bos_id, tok.eos_id, tok.pad_id]
                .into_iter()
                .flatten()
                .collect(),
            (SpecialTokens::All, Some(tok)) => tok.special_ids(),
        };
        v.sort_unstable();
        v.dedup();
        v
    }
}

impl Tok {
    /// Byte-level BPE from GGUF metadata (tokenizer.ggml.*), matching HF transformers' ids.
    ///
    /// `path` is only used in error messages.
    pub fn from_gguf(content: &gguf_file::Content, path: &Path) -> Result<Self> {
        let model = match meta(content, "tokenizer.ggml.model") {
            Some(gguf_file::Value::String(s)) => s.to_lowercase(),
            Some(v) => return Err(gguf_err(path, format!("`tokenizer.ggml.model` is not a string: {v:?}"))),
            None => {
                return Err(gguf_err(
                    path,
                    "missing metadata key `tokenizer.ggml.model` (is this a GGUF with an embedded tokenizer?)",
                ))
            }
        };
        if model != "gpt2" {
            return Err(gguf_err(
                path,
                format!("tokenizer model `{model}` is not supported (only byte-level BPE, `gpt2`)"),
            ));
        }
        let tokens = meta_strings(content, path, "tokenizer.ggml.tokens")?;
        if tokens.is_empty() {
            return Err(gguf_err(path, "`tokenizer.ggml.tokens` is empty"));
        }
        let n = tokens.len();
        let merges_raw = meta_strings(content, path, "tokenizer.ggml.merges")?;
        let mut merges = Vec::with_capacity(merges_raw.len());
        for (i, m) in merges_raw.iter().enumerate() {
            let (a, b) = m.split_once(' ').ok_or_else(|| {
                gguf_err(path, format!("merge #{i} `{m}` has no space separator"))
            })?;
            merges.push((a.to_string(), b.to_string()));
        }
        // Like transformers' GGUF converter (`{word: i for i, word in enumerate(tokens)}`), a
        // duplicated token string maps to its last id.
        let vocab: tokenizers::models::bpe::Vocab = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.clone(), i as u32))
            .collect();
        let bpe = BPE::builder()
            .vocab_and_merges(vocab, merges)
            .build()
            .map_err(|e| gguf_err(path, format!("cannot build BPE: {e}")))?;
        let mut tok = tokenizers::Tokenizer::new(bpe);

        let pre = match meta(content, "tokenizer.ggml.pre") {
            Some(gguf_file::Value::String(s)) => s.clone(),
            _ => "gpt2".to_string(),
        };
        let add_prefix_space =
            meta_bool(content, "tokenizer.ggml.add_space_prefix").unwrap_or(false);
        let (pre_tok, nfc) = pre_tokenizer_for(&pre, add_prefix_space)?;
        if nfc {
            tok.with_normalizer(Some(NFC))
                .map_err(|e| gguf_err(path, format!("cannot set normalizer: {e}")))?;
        }
        tok.with_pre_tokenizer(Some(pre_tok));
        tok.with_decoder(Some(ByteLevelDecoder::new(add_prefix_space, true, true)));

        let check_id = |key: &str| -> Result<Option<u32>> {
            match meta_u32(content, path, key)? {
                Some(id) if (id as usize) >= n => Err(gguf_err(
                    path,
                    format!("`{key}` = {id} is outside the vocabulary of {n} tokens"),
                )),
                other => Ok(other),
            }
        };
        let bos_id = check_id("tokenizer.ggml.bos_token_id")?;
        let eos_id = check_id("tokenizer.ggml.eos_token_id")?;
        let pad_id = check_id("tokenizer.ggml.padding_token_id")?;
        let unk_id = match check_id("tokenizer.ggml.unknown_token_id")? {
            Some(x) => Some(x),
            None => check_id("tokenizer.ggml.unk_token_id")?,
        };

        // Control tokens (and the explicit special ids) are matched in the text as special
        // tokens, like HF does; user-defined tokens are matched as (non-special) added tokens.
        let mut special_ids: Vec<u32> = Vec::new();
        let mut user_ids: Vec<u32> = Vec::new();
        if let Some(v) = meta(content, "tokenizer.ggml.token_type") {
            let arr = match v {
                gguf_file::Value::Array(a) => a,
                other => {
                    return Err(gguf_err(
                        path,
                        format!(
                            "`tokenizer.ggml.token_type` is not an array: {:?}",
                            other.value_type()
                        ),
                    ))
                }
            };
            for (i, t) in arr.iter().enumerate().take(n) {
                match value_u32(t) {
                    Some(TOKEN_TYPE_CONTROL) => special_ids.push(i as u32),
                    Some(TOKEN_TYPE_USER_DEFINED) => user_ids.push(i as u32),
                    Some(_) => {}
                    None => {
                        return Err(gguf_err(
                            path,
                            format!("`tokenizer.ggml.token_type`[{i}] is not an integer: {t:?}"),
                        ))
                    }
                }
            }
        }
        let mut seen = HashSet::new();
        let specials: Vec<AddedToken> = special_ids
            .iter()
            .copied()
            .chain([bos_id, eos_id, pad_id, unk_id].into_iter().flatten())
            .filter(|id| seen.insert(*id))
            .map(|id| AddedToken::from(tokens[id as usize].clone(), true))
            .collect();
        let users: Vec<AddedToken> = user_ids
            .iter()
            .filter(|id| !seen.contains(id))
            .map(|&id| AddedToken::from(tokens[id as usize].clone(), false).normalized(false))
            .collect();
        if !specials.is_empty() {
            tok.add_special_tokens(specials)
                .map_err(|e| gguf_err(path, format!("cannot add special tokens: {e}")))?;
        }
        if !users.is_empty() {
            tok.add_tokens(users)
                .map_err(|e| gguf_err(path, format!("cannot add user-defined tokens: {e}")))?;
        }
        Ok(Self::with_tl_defaults(tok, bos_id, eos_id, pad_id))
    }

    /// Read the GGUF at `path` and build its tokenizer. Errors (missing, truncated or corrupt
    /// file) name the file.
    pub fn from_gguf_file(path: &Path) -> Result<Self> {
        let content = read_gguf_content(path)?;
        Self::from_gguf(&content, path)
    }

    /// From a `tokenizer.json` (plus `tokenizer_config.json` / `special_tokens_map.json` /
    /// `config.json` beside it for BOS/EOS/PAD when present).
    pub fn from_file(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let inner = tokenizers::Tokenizer::from_bytes(&bytes)
            .map_err(|e| Error::Tokenizer(format!("cannot parse {}: {e}", path.display())))?;
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let specials = SpecialNames::from_dir(&dir)?;
        let resolve = |name: &Option<String>, id: Option<u32>, what: &str| -> Result<Option<u32>> {
            if let Some(name) = name {
                return inner.token_to_id(name).map(Some).ok_or_else(|| {
                    Error::Tokenizer(format!(
                        "{what} token `{name}` (from the tokenizer config in {}) is not in the vocabulary of {}",
                        dir.display(),
                        path.display()
                    ))
                });
            }
            Ok(id.filter(|&i| inner.id_to_token(i).is_some()))
        };
        let bos = resolve(&specials.bos, specials.bos_id, "BOS")?;
        let mut eos = resolve(&specials.eos, specials.eos_id, "EOS")?;
        let pad = resolve(&specials.pad, specials.pad_id, "PAD")?;
        if eos.is_none() {
            // TL: a tokenizer without EOS gets `<|endoftext|>` (GPT-2 style).
            eos = inner.token_to_id("<|endoftext|>");
        }
        Ok(Self::with_tl_defaults(inner, bos, eos, pad))
    }

    /// TL's `set_tokenizer` defaults: missing BOS and PAD fall back to EOS.
    fn with_tl_defaults(
        inner: tokenizers::Tokenizer,
        bos: Option<u32>,
        eos: Option<u32>,
        pad: Option<u32>,
    ) -> Self {
        Self {
            inner,
            bos_id: bos.or(eos),
            eos_id: eos,
            pad_id: pad.or(eos),
        }
    }

    /// Encode without adding any special token; prepend BOS when `prepend_bos`.
    pub fn encode(&self, text: &str, prepend_bos: bool) -> Result<Vec<u32>> {
        let enc = self.inner.encode(text, false).map_err(|e| {
            Error::Tokenizer(format!("cannot encode {:?}: {e}", truncate_for_msg(text)))
        })?;
        let ids = enc.get_ids();
        if !prepend_bos {
            return Ok(ids.to_vec());
        }
        let bos = self.bos_id.ok_or_else(|| {
            Error::Tokenizer("prepend_bos=true but this tokenizer has no BOS (or EOS) token; use prepend_bos=false".into())
        })?;
        let mut out = Vec::with_capacity(ids.len() + 1);
        out.push(bos);
        out.extend_from_slice(ids);
        Ok(out)
    }

    /// Decode ids to a string (special tokens kept, no clean-up), like HF `decode(ids, clean_up_tokenization_spaces=False)`.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.check_ids(ids)?;
        self.inner
            .decode(ids, false)
            .map_err(|e| Error::Tokenizer(format!("cannot decode {} ids: {e}", ids.len())))
    }

    /// Each id decoded on its own (TL's `to_str_tokens`).
    pub fn str_tokens(&self, ids: &[u32]) -> Result<Vec<String>> {
        self.check_ids(ids)?;
        ids.iter()
            .map(|&id| {
                self.inner
                    .decode(&[id], false)
                    .map_err(|e| Error::Tokenizer(format!("cannot decode id {id}: {e}")))
            })
            .collect()
    }

    /// Every special token id: the tokenizer's special added tokens plus BOS/EOS/PAD (HF's
    /// `all_special_ids`; HookedSAETransformer's `exclude_special_tokens=True`).
    pub fn special_ids(&self) -> Vec<u32> {
        let mut ids: Vec<u32> = self
            .inner
            .get_added_tokens_decoder()
            .iter()
            .filter(|(_, t)| t.special)
            .map(|(id, _)| *id)
            .chain(
                [self.bos_id, self.eos_id, self.pad_id]
                    .into_iter()
                    .flatten(),
            )
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// Number of tokens including added/special tokens (HF `len(tokenizer)`).
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// The raw vocabulary string of an id (e.g. `"ĠThe"`), None when out of range.
    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// The id of a raw vocabulary string (e.g. `"ĠThe"` or `"<|endoftext|>"`).
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// TL's `to_single_token`: the id of a string that encodes to exactly one token.
    pub fn to_single_token(&self, text: &str) -> Result<u32> {
        let ids = self.encode(text, false)?;
        match ids.as_slice() {
            [id] => Ok(*id),
            _ => Err(Error::Tokenizer(format!(
                "{text:?} is not a single token: it encodes to {} tokens {:?}",
                ids.len(),
                ids
            ))),
        }
    }

    fn check_ids(&self, ids: &[u32]) -> Result<()> {
        let n = self.vocab_size();
        if let Some((pos, id)) = ids
            .iter()
            .enumerate()
            .find(|(_, &id)| self.inner.id_to_token(id).is_none())
        {
            return Err(Error::Tokenizer(format!(
                "token id {id} at position {pos} is outside the vocabulary (size {n})"
            )));
        }
        Ok(())
    }
}

fn truncate_for_msg(s: &str) -> String {
    if s.chars().count() <= 60 {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(60).collect::<String>())
    }
}

/// Read GGUF metadata from `path` with errors that name the file; never panics on a corrupt
/// file (a panic inside the reader is turned into an error).
pub fn read_gguf_content(path: &Path) -> Result<gguf_file::Content> {
    let file = std::fs::File::open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            Error::model_file(path, "file not found")
        } else {
            Error::io(path, e)
        }
    })?;
    // Buffered, with the position kept here: the header is tens of thousands of small reads
    // (one per vocabulary string), each preceded by a position query.
    let mut file = PositionedReader {
        inner: std::io::BufReader::new(file),
        pos: 0,
    };
    let res = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        gguf_file::Content::read(&mut file)
    }));
    match res {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(e)) => Err(Error::model_file(
            path,
            format!("not a valid GGUF file (truncated or corrupt?): {e}"),
        )),
        Err(_) => Err(Error::model_file(
            path,
            "not a valid GGUF file: the GGUF reader panicked on its header",
        )),
    }
}

/// A buffered reader that tracks its own position, so that `stream_position` is not a system
/// call.
struct PositionedReader<R> {
    inner: std::io::BufReader<R>,
    pos: u64,
}

impl<R: std::io::Read> std::io::Read for PositionedReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl<R: std::io::Read + std::io::Seek> std::io::Seek for PositionedReader<R> {
    fn seek(&mut self, to: std::io::SeekFrom) -> std::io::Result<u64> {
        self.pos = self.inner.seek(to)?;
        Ok(self.pos)
    }
    fn stream_position(&mut self) -> std::io::Result<u64> {
        Ok(self.pos)
    }
}

/// BOS/EOS/PAD as named in the HF config files beside a `tokenizer.json`.
#[derive(Default, Debug)]
struct SpecialNames {
    bos: Option<String>,
    eos: Option<String>,
    pad: Option<String>,
    bos_id: Option<u32>,
    eos_id: Option<u32>,
    pad_id: Option<u32>,
}

fn read_json_opt(path: &Path) -> Result<Option<serde_json::Value>> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|source| Error::Json {
                path: path.to_path_buf(),
                source,
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(path, e)),
    }
}

/// A special token entry: `"<s>"` or `{"content": "<s>", ...}`.
fn token_name(v: Option<&serde_json::Value>) -> Option<String> {
    match v? {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Object(m) => m
            .get("content")
            .and_then(|c| c.as_str())
            .map(str::to_string),
        _ => None,
    }
}

/// A token id entry: `50256` or `[2, 3]` (first one wins, as in HF generation configs).
fn token_id(v: Option<&serde_json::Value>) -> Option<u32> {
    match v? {
        serde_json::Value::Number(n) => n.as_u64().and_then(|x| u32::try_from(x).ok()),
        serde_json::Value::Array(a) => token_id(a.first()),
        _ => None,
    }
}

impl SpecialNames {
    fn from_dir(dir: &Path) -> Result<Self> {
        let mut out = SpecialNames::default();
        let files: [PathBuf; 2] = [
            dir.join("tokenizer_config.json"),
            dir.join("special_tokens_map.json"),
        ];
        for f in &files {
            if let Some(j) = read_json_opt(f)? {
                out.bos = out.bos.take().or_else(|| token_name(j.get("bos_token")));
                out.eos = out.eos.take().or_else(|| token_name(j.get("eos_token")));
                out.pad = out.pad.take().or_else(|| token_name(j.get("pad_token")));
            }
        }
        if let Some(j) = read_json_opt(&dir.join("config.json"))? {
            out.bos_id = token_id(j.get("bos_token_id"));
            out.eos_id = token_id(j.get("eos_token_id"));
            out.pad_id = token_id(j.get("pad_token_id"));
        }
        Ok(out)
    }
}
