//! Explaining and scoring many latents: a progress bar, one JSONL line per finished latent in
//! delphi's record layout, and resuming from that file after a kill.
use std::collections::BTreeMap;
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};

use super::gather::LatentRecord;
use super::prompts::{explanation_prompt, parse_explanation, EXPLAIN_PREFILL};
use super::score::{
    check_scorable, classification_metrics, score_record, ClassificationMetrics, ClassifierOutput,
    ScoreKind,
};
use crate::error::{Error, Result};
use crate::llm::{ChatBackend, ChatOptions};

/// Options of [`run_autointerp`]: ARENA's explanation settings, delphi's scorer settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AutointerpOptions {
    /// The explainer's answer is prefilled with this (ARENA: "this neuron fires on").
    pub prefill: String,
    /// Longest explanation, in tokens (ARENA: 50).
    pub explain_max_tokens: usize,
    /// The scorers to run (default: detection and fuzzing).
    pub scorers: Vec<ScoreKind>,
    /// Examples per scorer chat (delphi's `num_examples_per_scorer_prompt`, 5).
    pub n_examples_shown: usize,
    /// Longest scorer answer, in tokens.
    pub score_max_tokens: usize,
    /// Prefill of the scorer's answer, read back as part of it (default none, as delphi;
    /// `"["` helps small local models answer with a list).
    pub score_prefill: String,
    /// Seed of the sample shuffles and fuzzing marks.
    pub seed: u64,
    /// Latents with fewer activating windows are skipped (delphi's `min_examples`, 200).
    pub min_examples: usize,
    /// Append one JSON line per finished latent here; latents already in it are not run again.
    pub out: Option<PathBuf>,
    /// Show a progress bar over the latents.
    pub progress: bool,
}

impl Default for AutointerpOptions {
    fn default() -> Self {
        AutointerpOptions {
            prefill: EXPLAIN_PREFILL.to_string(),
            explain_max_tokens: 50,
            scorers: vec![ScoreKind::Detection, ScoreKind::Fuzz],
            n_examples_shown: 5,
            score_max_tokens: 40,
            score_prefill: String::new(),
            seed: 22,
            min_examples: 200,
            out: None,
            progress: true,
        }
    }
}

/// One latent's explanation and scored examples: a line of the JSONL output.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LatentResult {
    /// The hook the SAE reads.
    pub module: String,
    /// The latent.
    pub latent: usize,
    /// The explanation.
    pub explanation: String,
    /// Scored examples per scorer (`detection`, `fuzz`), as delphi's score files hold them.
    pub scores: BTreeMap<String, Vec<ClassifierOutput>>,
}

impl LatentResult {
    /// The metrics of one scorer on this latent (default when it was not run).
    pub fn metrics(&self, kind: ScoreKind) -> ClassificationMetrics {
        classification_metrics(self.scores.get(kind.name()).into_iter().flatten())
    }
}

/// Everything a run produced.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AutointerpReport {
    /// What the report is (e.g. the explainer's name), shown in its title.
    pub label: String,
    /// Finished latents, in the order asked (including those resumed from the output file).
    pub results: Vec<LatentResult>,
    /// Latents skipped for too few activating windows, with their count.
    pub skipped: Vec<(usize, usize)>,
    /// Latents whose backend call failed, with the error (a rerun retries them).
    pub failed: Vec<(usize, String)>,
}

impl AutointerpReport {
    /// One scorer's metrics pooled over every latent (delphi's headline figures).
    pub fn metrics(&self, kind: ScoreKind) -> ClassificationMetrics {
        classification_metrics(
            self.results
                .iter()
                .flat_map(|r| r.scores.get(kind.name()).into_iter().flatten()),
        )
    }

    /// Each latent's explanation (e.g. for [`LatentMap::with_explanations`]).
    ///
    /// [`LatentMap::with_explanations`]: crate::analysis::latent_map::LatentMap::with_explanations
    pub fn explanations(&self) -> std::collections::HashMap<usize, String> {
        self.results
            .iter()
            .map(|r| (r.latent, r.explanation.clone()))
            .collect()
    }

    /// The mean over latents of one scorer's per-latent balanced accuracy.
    pub fn mean_balanced_accuracy(&self, kind: ScoreKind) -> f64 {
        let v: Vec<f64> = self
            .results
            .iter()
            .filter(|r| r.scores.contains_key(kind.name()))
            .map(|r| r.metrics(kind).balanced_accuracy)
            .collect();
        v.iter().sum::<f64>() / v.len().max(1) as f64
    }

    /// Writes delphi's folder layout: `explanations/{name}.txt` (a JSON string) and
    /// `scores/{scorer}/{name}.txt` (a JSON list of records), where `name` is
    /// `{module}_latent{i}`; delphi's `log_results` reads it.
    pub fn write_delphi(&self, dir: impl AsRef<Path>) -> Result<()> {
        let dir = dir.as_ref();
        let write = |path: PathBuf, text: String| -> Result<()> {
            if let Some(d) = path.parent() {
                std::fs::create_dir_all(d).map_err(|e| Error::io(d, e))?;
            }
            std::fs::write(&path, text).map_err(|e| Error::io(&path, e))
        };
        for r in &self.results {
            let name = format!("{}_latent{}", r.module, r.latent);
            let path = dir.join("explanations").join(format!("{name}.txt"));
            write(path, to_json(&r.explanation, dir)?)?;
            for (kind, outs) in &r.scores {
                let path = dir.join("scores").join(kind).join(format!("{name}.txt"));
                write(path, to_json(outs, dir)?)?;
            }
        }
        Ok(())
    }
}

impl fmt::Display for AutointerpReport {
    /// A table: latent, detection and fuzzing balanced accuracy, explanation; then the pooled
    /// figures.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.label.is_empty() {
            writeln!(f, "{}", self.label)?;
        }
        writeln!(
            f,
            "{:>7}  {:>9}  {:>5}  explanation",
            "latent", "detection", "fuzz"
        )?;
        let cell = |r: &LatentResult, k: ScoreKind| {
            if r.scores.contains_key(k.name()) {
                format!("{:.2}", r.metrics(k).balanced_accuracy)
            } else {
                "-".into()
            }
        };
        for r in &self.results {
            let e: String = r.explanation.chars().take(70).collect();
            let (d, z) = (cell(r, ScoreKind::Detection), cell(r, ScoreKind::Fuzz));
            writeln!(f, "{:>7}  {d:>9}  {z:>5}  {e}", r.latent)?;
        }
        for k in [ScoreKind::Detection, ScoreKind::Fuzz] {
            let m = self.metrics(k);
            if m.n + m.failed > 0 {
                writeln!(
                    f,
                    "{}: balanced accuracy {:.3} (fraction correct {:.3}, {} examples, {} unparsed)",
                    k.name(),
                    m.balanced_accuracy,
                    m.accuracy,
                    m.n,
                    m.failed
                )?;
            }
        }
        if !self.skipped.is_empty() {
            writeln!(
                f,
                "skipped (too few activating windows): {}",
                self.skipped.len()
            )?;
        }
        for (l, e) in &self.failed {
            writeln!(f, "latent {l} failed: {e}")?;
        }
        Ok(())
    }
}

/// The explanation of `record` by `explainer` (ARENA's prompt and prefill on the top windows).
pub fn explain(
    record: &LatentRecord,
    explainer: &dyn ChatBackend,
    opts: &AutointerpOptions,
) -> Result<String> {
    let chat = explanation_prompt(&record.explain, &opts.prefill);
    let chat_opts = ChatOptions {
        max_tokens: opts.explain_max_tokens,
        temperature: 0.0,
    };
    Ok(parse_explanation(&explainer.complete(&chat, &chat_opts)?))
}

/// Explains and scores every record: skips those with fewer than `min_examples` activating
/// windows, appends each finished latent to `opts.out` (resuming from it), and keeps going
/// when a backend call fails (the latent is listed in `failed`, and a rerun retries it).
pub fn run_autointerp(
    records: &[LatentRecord],
    explainer: &dyn ChatBackend,
    scorer: &dyn ChatBackend,
    opts: &AutointerpOptions,
) -> Result<AutointerpReport> {
    run_with(records, opts, |r| {
        let explanation = explain(r, explainer, opts)?;
        let mut scores = BTreeMap::new();
        for &k in &opts.scorers {
            let outs = score_record(r, &explanation, k, scorer, opts)?;
            scores.insert(k.name().to_string(), outs);
        }
        Ok(LatentResult {
            module: r.module.clone(),
            latent: r.latent,
            explanation,
            scores,
        })
    })
}

/// The runner shared by [`run_autointerp`] and the baselines: resume, skip, progress, JSONL.
pub(crate) fn run_with(
    records: &[LatentRecord],
    opts: &AutointerpOptions,
    mut one: impl FnMut(&LatentRecord) -> Result<LatentResult>,
) -> Result<AutointerpReport> {
    let mut done = match &opts.out {
        Some(p) => read_jsonl(p)?,
        None => BTreeMap::new(),
    };
    let mut report = AutointerpReport::default();
    let bar = if opts.progress {
        let b = ProgressBar::new(records.len() as u64);
        b.set_style(
            ProgressStyle::with_template(
                "autointerp {bar:30} {pos}/{len} latents [{elapsed} < {eta}]",
            )
            .map_err(|e| Error::Invalid(e.to_string()))?,
        );
        b
    } else {
        ProgressBar::hidden()
    };
    for r in records {
        bar.inc(1);
        if let Some(prev) = done.remove(&(r.module.clone(), r.latent)) {
            report.results.push(prev);
            continue;
        }
        if r.n_windows < opts.min_examples.max(1) {
            report.skipped.push((r.latent, r.n_windows));
            continue;
        }
        if let Err(e) = check_scorable(r) {
            report.skipped.push((r.latent, r.n_windows));
            bar.suspend(|| eprintln!("autointerp: skipped: {e}"));
            continue;
        }
        match one(r) {
            Ok(res) => {
                if let Some(p) = &opts.out {
                    append_jsonl(p, &res)?;
                }
                report.results.push(res);
            }
            Err(e) => report.failed.push((r.latent, e.to_string())),
        }
    }
    bar.finish_and_clear();
    Ok(report)
}

/// The latents already in a JSONL output. A last line cut off by a kill is dropped (and cut
/// from the file, so that appends start on a fresh line).
fn to_json(v: &impl Serialize, path: &Path) -> Result<String> {
    serde_json::to_string(v).map_err(|source| Error::Json {
        path: path.to_path_buf(),
        source,
    })
}

fn read_jsonl(path: &Path) -> Result<BTreeMap<(String, usize), LatentResult>> {
    let io = |e: std::io::Error| Error::io(path, e);
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(e) => return Err(io(e)),
    };
    let mut out = BTreeMap::new();
    let mut good = 0;
    for line in text.split_inclusive('\n') {
        if !line.ends_with('\n') {
            break;
        }
        let r: LatentResult = serde_json::from_str(line).map_err(|e| {
            Error::Invalid(format!(
                "{}: a line is not an autointerp record ({e}); move the file away to start over",
                path.display()
            ))
        })?;
        good += line.len();
        out.insert((r.module.clone(), r.latent), r);
    }
    if good < text.len() {
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(io)?;
        f.set_len(good as u64).map_err(io)?;
    }
    Ok(out)
}

fn append_jsonl(path: &Path, r: &LatentResult) -> Result<()> {
    let io = |e: std::io::Error| Error::io(path, e);
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(io)?;
    let mut line = to_json(r, path)?;
    line.push('\n');
    f.write_all(line.as_bytes()).map_err(io)?;
    f.sync_data().map_err(io)
}
