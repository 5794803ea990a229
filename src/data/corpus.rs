//! The default offline corpus (`data/corpus/`, built by `scripts/setup_corpus.sh`) and its
//! held-out slice.
//!
//! The held-out slice is a fixed list of documents, `data/corpus.heldout.txt` (compiled into
//! the library): the last [`HELD_OUT_DOCUMENTS`] documents of the corpus shuffled with seed 42
//! (epoch 0 of [`RowStream`](super::RowStream)'s shuffle) — the order in which the shipped SAE's
//! activations were cached. That SAE read only the first 2 M tokens of this order (about a third
//! of the corpus), so it never trained on a held-out document (`tests/data.rs` checks it).
//! Documents are named by their source id (`package:path`), which stays the same across Debian
//! revisions of the corpus packages.
//!
//! Dataset specs ([`TextDataset::load`](super::TextDataset::load)): `default` (the whole corpus, in corpus order),
//! `default:train` (without the held-out slice: train new SAEs on this), `default:heldout`
//! (only the held-out slice: what `saescope eval` measures by default).
use crate::error::{Error, Result};
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// The held-out documents' source ids, one per line (`#` lines are comments).
const HELD_OUT_LIST: &str = include_str!("../../data/corpus.heldout.txt");

/// How many documents the held-out slice has.
pub const HELD_OUT_DOCUMENTS: usize = 1000;

/// The seed of the shuffle whose last documents are held out (the shipped SAE's cache order).
pub const HELD_OUT_SHUFFLE_SEED: u64 = 42;

const SETUP_HINT: &str = "run scripts/setup_corpus.sh to build the default corpus (it fetches Debian packages with apt-get download)";

/// Which documents of the default corpus to read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CorpusSplit {
    /// Every document (`default`).
    #[default]
    All,
    /// Every document but the held-out slice (`default:train`).
    Train,
    /// Only the held-out slice (`default:heldout`).
    HeldOut,
}

impl CorpusSplit {
    /// The dataset spec that names this split (`default`, `default:train`, `default:heldout`).
    pub fn spec(self) -> &'static str {
        match self {
            CorpusSplit::All => "default",
            CorpusSplit::Train => "default:train",
            CorpusSplit::HeldOut => "default:heldout",
        }
    }

    /// The split a dataset spec names, if it names the default corpus.
    pub fn from_spec(spec: &str) -> Option<Self> {
        match spec.trim() {
            "" | "default" | "corpus" => Some(CorpusSplit::All),
            "default:train" | "corpus:train" => Some(CorpusSplit::Train),
            "default:heldout" | "corpus:heldout" | "heldout" => Some(CorpusSplit::HeldOut),
            _ => None,
        }
    }
}

/// The source ids of the held-out slice.
pub fn held_out_sources() -> HashSet<&'static str> {
    HELD_OUT_LIST
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect()
}

/// `data/corpus/` of the data directory ([`crate::model::default_data_dir`]).
pub fn default_corpus_dir() -> PathBuf {
    crate::model::default_data_dir().join("corpus")
}

fn shards(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut shards: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.extension().is_some_and(|e| e == "jsonl")
                    && p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with("corpus-"))
            })
            .collect(),
        Err(_) => Vec::new(),
    };
    shards.sort();
    if shards.is_empty() || !dir.join(".complete").exists() {
        return Err(Error::Invalid(format!(
            "the default corpus is missing or incomplete at {}: {SETUP_HINT}",
            dir.display()
        )));
    }
    Ok(shards)
}

/// One shard line: `{"text": ..., "source": ...}`.
fn parse_line(line: &str, path: &Path, n: usize) -> Result<(String, String)> {
    let bad = |why: &str| {
        Error::Invalid(format!(
            "{}:{n}: {why}; rebuild the corpus with scripts/setup_corpus.sh --force",
            path.display()
        ))
    };
    let v: serde_json::Value = serde_json::from_str(line).map_err(|_| bad("not valid JSON"))?;
    let text = v["text"].as_str().ok_or_else(|| bad("no `text` string"))?;
    let source = v["source"].as_str().unwrap_or_default();
    Ok((text.to_string(), source.to_string()))
}

/// The documents (texts) and their source ids of one split of a corpus directory written by
/// `scripts/setup_corpus.sh` (`corpus-*.jsonl`), with the dataset's name.
pub(crate) fn read_split(
    dir: &Path,
    split: CorpusSplit,
) -> Result<(Vec<String>, Vec<String>, String)> {
    let held = held_out_sources();
    let (mut docs, mut sources) = (Vec::new(), Vec::new());
    for path in shards(dir)? {
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let (text, source) = parse_line(line, &path, i + 1)?;
            let keep = match split {
                CorpusSplit::All => true,
                CorpusSplit::Train => !held.contains(source.as_str()),
                CorpusSplit::HeldOut => held.contains(source.as_str()),
            };
            if keep {
                docs.push(text);
                sources.push(source);
            }
        }
    }
    if docs.is_empty() {
        return Err(Error::Invalid(format!(
            "the default corpus at {} has no documents in its {} split: {SETUP_HINT}",
            dir.display(),
            split.spec()
        )));
    }
    let name = match split {
        CorpusSplit::All => "saescope-default-corpus".to_string(),
        s => format!("saescope-default-corpus ({})", s.spec()),
    };
    Ok((docs, sources, name))
}
