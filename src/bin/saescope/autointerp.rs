//! `saescope autointerp`: explain latents with a language model and score the explanations by
//! detection and fuzzing (delphi's), offline with a local instruct model or against any
//! OpenAI-compatible server; delphi's records as JSONL (resumable), baselines next to them.
use anyhow::{bail, Context, Result};
use saescope::analysis::autointerp::{
    gather_records, random_baseline, run_autointerp, top_tokens_baseline, AutointerpOptions,
    GatherOptions, ScoreKind,
};
use saescope::data::token_rows;
use saescope::llm::{ChatBackend, LocalChat, OpenAiClient};
use saescope::{HookedModel, LoadOptions, Sae};
use std::path::PathBuf;
use std::time::Instant;

use crate::dashboard::parse_latents;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The model the SAE reads: `smollm2` (default), a hub repo id, a directory or a .gguf file.
    #[arg(long, default_value = "smollm2")]
    pub model: String,
    /// SAE directory, or `shipped` for the shipped SAE.
    #[arg(long, default_value = "shipped")]
    pub sae: String,
    /// Latents: comma-separated indices and ranges, e.g. `1,2,5-9`.
    #[arg(long)]
    pub latents: String,
    /// Corpus tokens to scan for examples (rounded up to whole rows).
    #[arg(long, default_value_t = 65_536)]
    pub tokens: usize,
    /// Row length of the scanned corpus.
    #[arg(long, default_value_t = 128)]
    pub context_size: usize,
    /// Corpus: `default` (the offline corpus), a directory of text files or a `.jsonl` file.
    #[arg(long, default_value = "default")]
    pub corpus: String,
    /// Chat-completions server (`{base_url}/chat/completions`) for the explainer and scorer;
    /// without it, the local instruct model `--local-model` runs in-process.
    #[arg(long)]
    pub base_url: Option<String>,
    /// Model name sent to the server.
    #[arg(long, default_value = "gpt-4o-mini")]
    pub llm: String,
    /// Environment variable holding the server's API key (sent only when set).
    #[arg(long, default_value = "OPENAI_API_KEY")]
    pub api_key_env: String,
    /// Local instruct model for explaining and scoring offline.
    #[arg(long, default_value = "smollm2")]
    pub local_model: String,
    /// Activating examples to score per latent (delphi: 50; drawn across 10 quantiles).
    #[arg(long, default_value_t = 50)]
    pub n_test: usize,
    /// Non-activating examples to score per latent (delphi: 50).
    #[arg(long, default_value_t = 50)]
    pub n_not_active: usize,
    /// Examples per scorer chat (delphi: 5).
    #[arg(long, default_value_t = 5)]
    pub examples_shown: usize,
    /// Skip latents with fewer activating windows (delphi: 200).
    #[arg(long, default_value_t = 200)]
    pub min_examples: usize,
    /// Scorers: `detection`, `fuzz` or both, comma-separated.
    #[arg(long, default_value = "detection,fuzz")]
    pub scorers: String,
    /// Append delphi's records here, one JSON line per latent; a rerun resumes from it.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Also write delphi's folder layout (explanations/, scores/) here.
    #[arg(long)]
    pub delphi_dir: Option<PathBuf>,
    /// Also run the random and top-activating-tokens baselines.
    #[arg(long)]
    pub baselines: bool,
    /// Hide progress bars.
    #[arg(long)]
    pub quiet: bool,
}

fn scorers(s: &str) -> Result<Vec<ScoreKind>> {
    s.split(',')
        .map(|k| match k.trim() {
            "detection" => Ok(ScoreKind::Detection),
            "fuzz" | "fuzzing" => Ok(ScoreKind::Fuzz),
            other => bail!("--scorers: unknown scorer `{other}`; use detection and/or fuzz"),
        })
        .collect()
}

pub fn run(args: Args) -> Result<()> {
    let model = HookedModel::from_pretrained_with(&args.model, &LoadOptions::default())
        .with_context(|| format!("loading model `{}`", args.model))?;
    let sae = if args.sae == "shipped" {
        Sae::shipped()?
    } else {
        Sae::load(std::path::Path::new(&args.sae))
            .with_context(|| format!("loading SAE {}", args.sae))?
    };
    let latents = parse_latents(&args.latents)?;
    let rows = args.tokens.div_ceil(args.context_size).max(1);
    let tokens = token_rows(
        model.tokenizer()?,
        &args.corpus,
        rows,
        args.context_size,
        Some(22),
    )?;
    let gather = GatherOptions {
        n_test: args.n_test,
        n_not_active: args.n_not_active,
        progress: !args.quiet,
        ..Default::default()
    };
    let t = Instant::now();
    let records = gather_records(&model, &sae, &tokens, &latents, &gather)?;
    eprintln!(
        "gathered examples of {} latents over {} tokens in {:.1}s",
        latents.len(),
        rows * args.context_size,
        t.elapsed().as_secs_f64()
    );
    let opts = AutointerpOptions {
        scorers: scorers(&args.scorers)?,
        n_examples_shown: args.examples_shown,
        min_examples: args.min_examples,
        out: args.out.clone(),
        progress: !args.quiet,
        ..Default::default()
    };
    let backend: Box<dyn ChatBackend> = match &args.base_url {
        Some(url) => Box::new(
            OpenAiClient::new(url.as_str(), args.llm.as_str())
                .api_key_env(args.api_key_env.as_str()),
        ),
        None if args.local_model == args.model => Box::new(LocalChat::new(model.clone())?),
        None => Box::new(LocalChat::new(HookedModel::from_pretrained_with(
            &args.local_model,
            &LoadOptions::default(),
        )?)?),
    };
    let opts = if args.base_url.is_none() {
        // Small local models answer with a list more often when it is started for them.
        AutointerpOptions {
            score_prefill: "[".into(),
            ..opts
        }
    } else {
        opts
    };
    let t = Instant::now();
    let mut report = run_autointerp(&records, backend.as_ref(), backend.as_ref(), &opts)?;
    let secs = t.elapsed().as_secs_f64();
    report.label = match &args.base_url {
        Some(u) => format!("explainer and scorer: {} at {u}", args.llm),
        None => format!("explainer and scorer: {} (local)", args.local_model),
    };
    println!("{report}");
    let n = report.results.len();
    println!(
        "{n} latents in {secs:.1}s ({:.2} latents/minute)",
        n as f64 / secs.max(1e-9) * 60.0
    );
    if let Some(dir) = &args.delphi_dir {
        report.write_delphi(dir)?;
    }
    if args.baselines {
        let base = AutointerpOptions {
            out: None,
            progress: false,
            ..opts
        };
        println!("{}", top_tokens_baseline(&records, 5, &base)?);
        println!("{}", random_baseline(&records, &base)?);
    }
    Ok(())
}
