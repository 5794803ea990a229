//! Where a dashboard's tokens come from: token rows (e.g. packed from a corpus with
//! [`corpus_rows`]) or an activation cache (`saescope cache-activations`) on the SAE's hook,
//! whose rows are rebuilt from the cache's dataset so that examples have their full context.
use crate::data::{PackOptions, RowStream, TextDataset};
use crate::error::{Error, Result};
use crate::model::{HookedModel, LoadOptions};
use crate::sae::Sae;
use crate::tokenizer::SpecialTokens;
use crate::train::act_cache::ActCacheManifest;
use candle_core::{DType, Device, Tensor};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The tokens a dashboard scans.
#[derive(Clone, Debug)]
pub enum DashboardInput {
    /// Token rows `[n_rows, ctx]` (integer dtype), BOS first as SAELens packs them; see
    /// [`corpus_rows`].
    Tokens(Tensor),
    /// An activation cache directory (`saescope cache-activations`) whose hook is the SAE's.
    /// The scan reads the cached activations (no model pass); the rows are rebuilt from the
    /// cache's dataset and store settings (checked against the cache's `token_ids`) for the
    /// examples' context windows and loss effects. `max_tokens`: scan only the first tokens.
    ActCache {
        /// The cache directory.
        dir: PathBuf,
        /// Scan at most this many cached tokens (`None`: all).
        max_tokens: Option<u64>,
    },
}

impl From<Tensor> for DashboardInput {
    fn from(t: Tensor) -> Self {
        DashboardInput::Tokens(t)
    }
}
impl From<&Tensor> for DashboardInput {
    fn from(t: &Tensor) -> Self {
        DashboardInput::Tokens(t.clone())
    }
}
impl From<&DashboardInput> for DashboardInput {
    fn from(i: &DashboardInput) -> Self {
        i.clone()
    }
}

impl DashboardInput {
    /// An activation cache, all of it.
    pub fn act_cache(dir: impl AsRef<Path>) -> Self {
        DashboardInput::ActCache {
            dir: dir.as_ref().to_path_buf(),
            max_tokens: None,
        }
    }
}

/// `n_tokens` tokens (rounded up to whole rows) of a dataset (`default` = the offline corpus,
/// a directory of text files, a `.jsonl` file, `hub:ORG/NAME`) packed as SAELens does: rows of
/// `context_size` tokens, BOS first, BOS between documents, documents in order. `[n_rows, ctx]` u32.
pub fn corpus_rows(
    model: &HookedModel,
    spec: &str,
    n_tokens: usize,
    context_size: usize,
) -> Result<Tensor> {
    if context_size < 2 || n_tokens == 0 {
        return Err(Error::Invalid(format!(
            "corpus_rows needs context_size ≥ 2 and n_tokens > 0 (got {context_size}, {n_tokens})"
        )));
    }
    let tok = model.tokenizer()?;
    let ds = TextDataset::load(spec, None, &LoadOptions::default())?;
    let opts = PackOptions::saelens(
        tok,
        context_size,
        true,
        Some(crate::data::SeparatorToken::Bos),
        false,
    )?;
    let mut rows = RowStream::new(Arc::new(ds), Some(tok.clone()), opts, None)?;
    let n_rows = n_tokens.div_ceil(context_size);
    let v = rows.next_rows(n_rows)?;
    Ok(Tensor::from_vec(v, (n_rows, context_size), &Device::Cpu)?)
}

/// The scanned rows, and (cache input) where the cached tokens sit in them.
pub(crate) struct Source {
    pub rows: Vec<Vec<u32>>,
    pub cache: Option<CacheSource>,
    pub description: String,
}

pub(crate) struct CacheSource {
    pub dir: PathBuf,
    pub manifest: ActCacheManifest,
    /// Tokens to scan.
    pub n_tokens: u64,
    /// Per row, the positions whose activations the cache holds, in order.
    pub kept: Vec<Vec<u32>>,
    /// Per row, the cache index (token number) of its first kept position.
    pub row_start: Vec<u64>,
}

impl Source {
    pub fn row_len(&self, r: u32) -> usize {
        self.rows.get(r as usize).map_or(0, |v| v.len())
    }

    pub fn new(model: &HookedModel, sae: &Sae, input: &DashboardInput) -> Result<Self> {
        match input {
            DashboardInput::Tokens(t) => {
                let t = match t.rank() {
                    1 => t.unsqueeze(0)?,
                    2 => t.clone(),
                    r => {
                        return Err(Error::Invalid(format!(
                            "dashboard tokens must be [n_rows, ctx], got rank {r}"
                        )))
                    }
                };
                let t = match t.dtype() {
                    DType::U32 => t,
                    DType::I64 | DType::U8 => t.to_dtype(DType::U32)?,
                    d => {
                        return Err(Error::Invalid(format!(
                            "dashboard tokens must be an integer tensor, got {d:?}"
                        )))
                    }
                };
                let (n, p) = t.dims2()?;
                if n == 0 || p < 2 {
                    return Err(Error::Invalid(format!(
                        "dashboard tokens [{n}, {p}]: need at least one row of 2 tokens"
                    )));
                }
                let rows: Vec<Vec<u32>> = t.to_device(&Device::Cpu)?.to_vec2()?;
                Ok(Source {
                    description: format!("{n} rows × {p} tokens"),
                    rows,
                    cache: None,
                })
            }
            DashboardInput::ActCache { dir, max_tokens } => {
                Self::from_cache(model, sae, dir, *max_tokens)
            }
        }
    }

    fn from_cache(
        model: &HookedModel,
        sae: &Sae,
        dir: &Path,
        max_tokens: Option<u64>,
    ) -> Result<Self> {
        let m = ActCacheManifest::read(dir)?;
        if !m.complete {
            return Err(Error::Invalid(format!(
                "activation cache {} is incomplete; rerun `saescope cache-activations`",
                dir.display()
            )));
        }
        if m.hook_name != sae.hook_name() || m.hook_head_index.is_some() || m.d_in != sae.d_in() {
            return Err(Error::Invalid(format!(
                "activation cache {} holds `{}` (head {:?}, width {}) but the SAE reads `{}` \
                 (width {}); use a cache of the SAE's hook or scan token rows instead",
                dir.display(),
                m.hook_name,
                m.hook_head_index,
                m.d_in,
                sae.hook_name(),
                sae.d_in()
            )));
        }
        let n_tokens = max_tokens.map_or(m.n_tokens, |n| n.min(m.n_tokens));
        if n_tokens == 0 {
            return Err(Error::Invalid("activation cache: 0 tokens to scan".into()));
        }
        let (rows, kept) = rebuild_rows(model, &m, n_tokens).map_err(|e| {
            Error::Invalid(format!(
                "cannot rebuild the token rows of activation cache {} from its dataset `{}` \
                 (needed for the examples' context): {e}. Make the dataset available, or scan \
                 token rows (DashboardInput::Tokens / --corpus) instead",
                dir.display(),
                m.store.dataset_path
            ))
        })?;
        let mut row_start = Vec::with_capacity(kept.len());
        let mut acc = 0u64;
        for k in &kept {
            row_start.push(acc);
            acc += k.len() as u64;
        }
        Ok(Source {
            description: format!(
                "activation cache {} ({n_tokens} of {} tokens, {} rows)",
                dir.display(),
                m.n_tokens,
                rows.len()
            ),
            rows,
            cache: Some(CacheSource {
                dir: dir.to_path_buf(),
                manifest: m,
                n_tokens,
                kept,
                row_start,
            }),
        })
    }
}

type TokenRows = Vec<Vec<u32>>;

/// The cache's rows, packed again with its store settings, until they hold `n_tokens` kept
/// (cached) positions; and per row the kept positions.
fn rebuild_rows(
    model: &HookedModel,
    m: &ActCacheManifest,
    n_tokens: u64,
) -> Result<(TokenRows, TokenRows)> {
    let st = &m.store;
    let tok = model.tokenizer()?;
    let ds = TextDataset::load(
        &st.dataset_path,
        st.dataset_text_field.as_deref(),
        &LoadOptions::default(),
    )?;
    let opts = PackOptions::saelens(
        tok,
        st.context_size,
        st.prepend_bos,
        st.sequence_separator_token,
        st.disable_concat_sequences,
    )?;
    let mut stream = RowStream::new(
        Arc::new(ds),
        Some(tok.clone()),
        opts,
        st.dataset_shuffle_seed,
    )?;
    let positions = st.seqpos_indices()?;
    let excluded: Vec<u32> = match &st.exclude_special_tokens {
        SpecialTokens::None => Vec::new(),
        _ => m.excluded_token_ids.clone(),
    };
    let (mut rows, mut kept) = (Vec::new(), Vec::new());
    let mut have = 0u64;
    while have < n_tokens {
        let row = stream.next_row()?;
        let k: Vec<u32> = positions
            .iter()
            .filter(|&&p| !excluded.contains(&row[p]))
            .map(|&p| p as u32)
            .collect();
        have += k.len() as u64;
        rows.push(row);
        kept.push(k);
    }
    Ok((rows, kept))
}
