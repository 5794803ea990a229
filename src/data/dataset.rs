//! Loading documents: text files, JSONL, the default offline corpus, hub dataset repos.
use super::corpus::{default_corpus_dir, read_split, CorpusSplit};
use crate::error::{Error, Result};
use crate::model::LoadOptions;
use std::path::{Path, PathBuf};

/// One dataset record: raw text (tokenised on the fly, SAELens's untokenised path) or a
/// pre-tokenised row (truncated to `context_size`, SAELens's tokenised path).
#[derive(Clone, Debug, PartialEq)]
pub enum Document {
    /// Raw text, tokenised when packed.
    Text(String),
    /// A pre-tokenised row of token ids.
    Tokens(Vec<u32>),
}

/// An in-memory list of documents, in a deterministic order.
#[derive(Clone, Debug, Default)]
pub struct TextDataset {
    docs: Vec<Document>,
    /// Each document's source id (`package:path` in the default corpus); empty when unknown.
    sources: Vec<String>,
    /// Where it came from (for manifests and messages).
    pub name: String,
}

fn io_err(p: &Path, e: std::io::Error) -> Error {
    Error::io(p, e)
}

/// SAELens's column detection order for a record: `tokens`, `input_ids`, `text`, `problem`.
const AUTO_FIELDS: [&str; 4] = ["tokens", "input_ids", "text", "problem"];

fn record_to_doc(
    v: &serde_json::Value,
    field: Option<&str>,
    path: &Path,
    line: usize,
) -> Result<Option<Document>> {
    let bad = |why: String| Error::Invalid(format!("{}:{line}: {why}", path.display()));
    let obj = match v {
        serde_json::Value::Object(o) => o,
        serde_json::Value::String(s) if field.is_none() => {
            return Ok(Some(Document::Text(s.clone())))
        }
        _ => return Err(bad("expected a JSON object per line".into())),
    };
    let (key, val) = match field {
        Some(f) => match obj.get(f) {
            Some(v) => (f, v),
            None => {
                let keys: Vec<&str> = obj.keys().map(|k| k.as_str()).collect();
                return Err(bad(format!(
                    "no field `{f}` (fields: {}); choose the text field",
                    keys.join(", ")
                )));
            }
        },
        None => match AUTO_FIELDS
            .iter()
            .find_map(|f| obj.get(*f).map(|v| (*f, v)))
        {
            Some(kv) => kv,
            None => {
                let keys: Vec<&str> = obj.keys().map(|k| k.as_str()).collect();
                return Err(bad(format!(
                    "record has none of the fields tokens / input_ids / text / problem (fields: {})",
                    keys.join(", ")
                )));
            }
        },
    };
    match val {
        serde_json::Value::String(s) => Ok(Some(Document::Text(s.clone()))),
        serde_json::Value::Array(a) => {
            let mut ids = Vec::with_capacity(a.len());
            for x in a {
                let id = x
                    .as_u64()
                    .filter(|&i| i <= u32::MAX as u64)
                    .ok_or_else(|| bad(format!("field `{key}` holds a non-token value {x}")))?;
                ids.push(id as u32);
            }
            Ok(Some(Document::Tokens(ids)))
        }
        serde_json::Value::Null => Ok(None),
        other => Err(bad(format!(
            "field `{key}` is neither a string nor a list of token ids: {}",
            other.to_string().chars().take(60).collect::<String>()
        ))),
    }
}

/// Files of a directory tree, sorted, hidden entries skipped.
fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| io_err(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            !p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with('.'))
        })
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            walk(&p, out)?;
        } else if p.is_file() {
            out.push(p);
        }
    }
    Ok(())
}

fn is_jsonl(p: &Path) -> bool {
    matches!(
        p.extension().and_then(|e| e.to_str()),
        Some("jsonl") | Some("ndjson")
    )
}

impl TextDataset {
    /// Documents from strings.
    pub fn from_texts<S: Into<String>>(texts: impl IntoIterator<Item = S>) -> Self {
        TextDataset {
            docs: texts
                .into_iter()
                .map(|s| Document::Text(s.into()))
                .collect(),
            name: "texts".into(),
            sources: Vec::new(),
        }
    }

    /// Pre-tokenised rows.
    pub fn from_token_rows(rows: impl IntoIterator<Item = Vec<u32>>) -> Self {
        TextDataset {
            docs: rows.into_iter().map(Document::Tokens).collect(),
            name: "token rows".into(),
            sources: Vec::new(),
        }
    }

    /// Documents with a name (for manifests and messages).
    pub fn from_documents(docs: Vec<Document>, name: impl Into<String>) -> Self {
        TextDataset {
            docs,
            name: name.into(),
            ..Default::default()
        }
    }

    /// The same documents, each with a source id (`sources.len()` must equal `len()`, else
    /// the ids are dropped).
    pub fn with_sources(mut self, sources: Vec<String>) -> Self {
        self.sources = if sources.len() == self.docs.len() {
            sources
        } else {
            Vec::new()
        };
        self
    }

    /// The source id of document `i` (`package:path` in the default corpus), if known.
    pub fn source(&self, i: usize) -> Option<&str> {
        self.sources.get(i).map(String::as_str)
    }

    /// One document per JSONL line. `field`: the text (or token-list) field; `None` → SAELens's
    /// detection (`tokens`, `input_ids`, `text`, `problem`; a bare JSON string is a document).
    /// Blank lines and records whose field is `null` are skipped.
    pub fn from_jsonl(path: impl AsRef<Path>, field: Option<&str>) -> Result<Self> {
        let path = path.as_ref();
        let mut ds = TextDataset {
            docs: Vec::new(),
            name: path.display().to_string(),
            sources: Vec::new(),
        };
        ds.append_jsonl(path, field)?;
        Ok(ds)
    }

    fn append_jsonl(&mut self, path: &Path, field: Option<&str>) -> Result<()> {
        let text = std::fs::read_to_string(path).map_err(|e| io_err(path, e))?;
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let v: serde_json::Value = serde_json::from_str(line).map_err(|e| {
                Error::Invalid(format!(
                    "{}:{}: not valid JSON ({e}); expected one JSON object per line",
                    path.display(),
                    i + 1
                ))
            })?;
            if let Some(d) = record_to_doc(&v, field, path, i + 1)? {
                self.docs.push(d);
            }
        }
        Ok(())
    }

    /// Every file under `dir` (recursively, sorted by path, hidden files skipped): `*.jsonl`
    /// files contribute one document per record (`field`, see [`TextDataset::from_jsonl`]),
    /// every other file is one text document (invalid UTF-8 replaced).
    pub fn from_dir(dir: impl AsRef<Path>, field: Option<&str>) -> Result<Self> {
        let dir = dir.as_ref();
        if !dir.is_dir() {
            return Err(Error::Invalid(format!(
                "dataset directory {} does not exist",
                dir.display()
            )));
        }
        let mut files = Vec::new();
        walk(dir, &mut files)?;
        let mut ds = TextDataset {
            docs: Vec::new(),
            name: dir.display().to_string(),
            sources: Vec::new(),
        };
        for f in files {
            if is_jsonl(&f) {
                ds.append_jsonl(&f, field)?;
            } else {
                let b = std::fs::read(&f).map_err(|e| io_err(&f, e))?;
                let s = String::from_utf8_lossy(&b).into_owned();
                if !s.is_empty() {
                    ds.docs.push(Document::Text(s));
                }
            }
        }
        if ds.docs.is_empty() {
            return Err(Error::Invalid(format!(
                "dataset directory {} holds no documents",
                dir.display()
            )));
        }
        Ok(ds)
    }

    /// Files of a hub dataset repo (`datasets--{org}--{name}` in the hub cache), with the
    /// cache / endpoint / offline / revision settings of `opts` (as model downloads).
    /// `files`: paths inside the repo (`*.jsonl`, or any other text file = one document);
    /// empty → every `*.jsonl` / `*.txt` file the hub's repo listing shows.
    pub fn from_hub(
        repo_id: &str,
        files: &[&str],
        field: Option<&str>,
        opts: &LoadOptions,
    ) -> Result<Self> {
        let paths = super::hub::fetch_dataset_files(repo_id, files, opts)?;
        let mut ds = TextDataset {
            docs: Vec::new(),
            name: format!("hub:{repo_id}"),
            sources: Vec::new(),
        };
        for (name, p) in paths {
            if name.ends_with(".parquet") {
                return Err(Error::Invalid(format!(
                    "hub dataset `{repo_id}`: `{name}` is Parquet, which saescope does not read; use a JSONL or text file of the repo"
                )));
            }
            if is_jsonl(Path::new(&name)) {
                ds.append_jsonl(&p, field)?;
            } else {
                let b = std::fs::read(&p).map_err(|e| io_err(&p, e))?;
                ds.docs
                    .push(Document::Text(String::from_utf8_lossy(&b).into_owned()));
            }
        }
        Ok(ds)
    }

    /// A dataset named by a string (SAELens's `dataset_path`, and the CLI's `--dataset`):
    /// - `""`, `default` or `corpus` → the default corpus; `default:train` → without its
    ///   held-out slice, `default:heldout` → only that slice ([`CorpusSplit`]);
    /// - `hub:ORG/NAME` or `hub:ORG/NAME:FILE[,FILE...]` → a hub dataset repo;
    /// - a directory → [`TextDataset::from_dir`]; a `*.jsonl` file → [`TextDataset::from_jsonl`];
    ///   any other file → the whole file as one document.
    pub fn load(spec: &str, field: Option<&str>, opts: &LoadOptions) -> Result<Self> {
        let s = spec.trim();
        if let Some(split) = CorpusSplit::from_spec(s) {
            return Self::default_corpus_split(split);
        }
        if let Some(rest) = s.strip_prefix("hub:") {
            let (repo, files) = match rest.split_once(':') {
                Some((r, f)) => (r, f.split(',').filter(|x| !x.is_empty()).collect()),
                None => (rest, Vec::new()),
            };
            return Self::from_hub(repo, &files, field, opts);
        }
        let p = Path::new(s);
        if p.is_dir() {
            return Self::from_dir(p, field);
        }
        if p.is_file() {
            if is_jsonl(p) {
                return Self::from_jsonl(p, field);
            }
            let b = std::fs::read(p).map_err(|e| io_err(p, e))?;
            return Ok(TextDataset {
                docs: vec![Document::Text(String::from_utf8_lossy(&b).into_owned())],
                name: p.display().to_string(),
                sources: Vec::new(),
            });
        }
        Err(Error::Invalid(format!(
            "dataset `{s}` is neither `default`, `hub:ORG/NAME[:FILES]`, nor an existing file or directory"
        )))
    }

    /// Number of documents.
    pub fn len(&self) -> usize {
        self.docs.len()
    }
    /// Whether the dataset holds no documents.
    pub fn is_empty(&self) -> bool {
        self.docs.is_empty()
    }
    /// All documents, in dataset order.
    pub fn docs(&self) -> &[Document] {
        &self.docs
    }
    /// Document `i`, or `None` if out of range.
    pub fn get(&self, i: usize) -> Option<&Document> {
        self.docs.get(i)
    }
    /// Total UTF-8 bytes of the text documents.
    pub fn text_bytes(&self) -> usize {
        self.docs
            .iter()
            .map(|d| match d {
                Document::Text(s) => s.len(),
                Document::Tokens(_) => 0,
            })
            .sum()
    }
    /// True when every document is pre-tokenised (SAELens's `is_dataset_tokenized`).
    pub fn is_tokenized(&self) -> bool {
        matches!(self.docs.first(), Some(Document::Tokens(_)))
    }
}

impl TextDataset {
    /// The default offline corpus (`data/corpus/`), every document in corpus order.
    pub fn default_corpus() -> Result<Self> {
        Self::from_corpus_dir(default_corpus_dir())
    }

    /// One split of the default corpus (see [`CorpusSplit`]).
    pub fn default_corpus_split(split: CorpusSplit) -> Result<Self> {
        Self::from_corpus_dir_split(default_corpus_dir(), split)
    }

    /// A corpus directory written by `scripts/setup_corpus.sh` (`corpus-*.jsonl`).
    pub fn from_corpus_dir(dir: impl AsRef<Path>) -> Result<Self> {
        Self::from_corpus_dir_split(dir, CorpusSplit::All)
    }

    /// One split of a corpus directory written by `scripts/setup_corpus.sh`. Each document keeps
    /// its source id ([`TextDataset::source`]).
    pub fn from_corpus_dir_split(dir: impl AsRef<Path>, split: CorpusSplit) -> Result<Self> {
        let (docs, sources, name) = read_split(dir.as_ref(), split)?;
        let docs = docs.into_iter().map(Document::Text).collect();
        Ok(TextDataset::from_documents(docs, name).with_sources(sources))
    }
}
