//! `saescope dashboard`: sae_vis-style feature dashboards as one self-contained HTML file
//! (and optionally Neuronpedia-style JSON).
use anyhow::{bail, Context, Result};
use saescope::analysis::dashboard::{
    corpus_rows, feature_dashboards_with_progress, prompt_centric, Correlations, DashboardConfig,
    DashboardInput, LatentSelection, Progress, RankBy, Stage,
};
use saescope::{HookedModel, LoadOptions, Sae};
use std::path::PathBuf;
use std::time::Instant;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// `smollm2` (default model), `gpt2`, a hub repo id, an HF-layout directory or a .gguf file.
    #[arg(long, default_value = "smollm2")]
    pub model: String,
    /// SAE directory (any format `Sae::load` reads), or `shipped` for the shipped SAE.
    #[arg(long)]
    pub sae: String,
    /// Latents to show: comma-separated indices and ranges, e.g. `1,2,3` or `0-99`.
    #[arg(long, conflicts_with = "top", required_unless_present = "top")]
    pub latents: Option<String>,
    /// Show the N latents with the highest maximum activation on the scanned tokens (or the
    /// highest density with `--rank-by density`); costs one extra scan.
    #[arg(long)]
    pub top: Option<usize>,
    /// Ranking for `--top`: `max` (maximum activation) or `density` (fraction of tokens active).
    #[arg(long, default_value = "max")]
    pub rank_by: String,
    /// Tokens to scan: `default` (the offline corpus), a directory of text files or a `.jsonl`
    /// file, packed as SAELens does.
    #[arg(long, default_value = "default", conflicts_with = "act_cache")]
    pub corpus: String,
    /// Scan an activation cache of the SAE's hook instead (`saescope cache-activations`).
    #[arg(long)]
    pub act_cache: Option<PathBuf>,
    /// Tokens to scan (corpus: rounded up to whole rows; cache: at most this many).
    #[arg(long)]
    pub tokens: Option<u64>,
    /// Row length for `--corpus` (default: the SAE's context_size, else 128).
    #[arg(long)]
    pub context_size: Option<usize>,
    /// Output HTML file.
    #[arg(long)]
    pub out: PathBuf,
    /// Also write Neuronpedia-style JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Also write a prompt-centric view of this prompt next to `--out` (`*.prompt.html`).
    #[arg(long)]
    pub prompt: Option<String>,
    /// Correlation table against `all` latents, the `selected` ones, or `none`.
    #[arg(long, default_value = "all")]
    pub correlations: String,
    /// Skip the per-token loss effect (no full model passes on the example rows).
    #[arg(long)]
    pub no_loss_effect: bool,
    /// Seed of the interval groups' random examples.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Rows per model pass.
    #[arg(long, default_value_t = 8)]
    pub batch_size: usize,
    /// Hide the progress bar.
    #[arg(long)]
    pub quiet: bool,
}

/// `1,2,5-7` → [1, 2, 5, 6, 7].
pub fn parse_latents(s: &str) -> Result<Vec<usize>> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (usize, usize) = (
                    a.trim()
                        .parse()
                        .with_context(|| format!("--latents: `{a}` is not an index"))?,
                    b.trim()
                        .parse()
                        .with_context(|| format!("--latents: `{b}` is not an index"))?,
                );
                if b < a {
                    bail!("--latents: empty range `{part}`");
                }
                out.extend(a..=b);
            }
            None => out.push(
                part.parse()
                    .with_context(|| format!("--latents: `{part}` is not an index"))?,
            ),
        }
    }
    if out.is_empty() {
        bail!("--latents: no index given (e.g. `--latents 1,2,3` or `--latents 0-9`)");
    }
    Ok(out)
}

pub fn run(args: Args) -> Result<()> {
    let t0 = Instant::now();
    let model = HookedModel::from_pretrained_with(&args.model, &LoadOptions::default())
        .with_context(|| format!("cannot load model `{}`", args.model))?;
    let sae = if args.sae == "shipped" {
        Sae::shipped()?
    } else {
        Sae::load(std::path::Path::new(&args.sae))
            .with_context(|| format!("cannot load SAE {}", args.sae))?
    };
    let selection = match (&args.latents, args.top) {
        (Some(l), _) => LatentSelection::Indices(parse_latents(l)?),
        (None, Some(n)) => LatentSelection::Top {
            n,
            by: match args.rank_by.as_str() {
                "max" => RankBy::MaxActivation,
                "density" => RankBy::Density,
                o => bail!("--rank-by: `{o}` is not `max` or `density`"),
            },
        },
        (None, None) => bail!("give --latents or --top"),
    };
    let input = match &args.act_cache {
        Some(dir) => DashboardInput::ActCache {
            dir: dir.clone(),
            max_tokens: args.tokens,
        },
        None => {
            let ctx = args
                .context_size
                .or(sae.cfg().metadata.context_size)
                .unwrap_or(128);
            let n = args.tokens.unwrap_or(65_536) as usize;
            DashboardInput::Tokens(
                corpus_rows(&model, &args.corpus, n, ctx)
                    .with_context(|| format!("cannot read corpus `{}`", args.corpus))?,
            )
        }
    };
    let cfg = DashboardConfig {
        correlations: match args.correlations.as_str() {
            "all" => Correlations::AllLatents,
            "selected" => Correlations::AmongSelected,
            "none" => Correlations::None,
            o => bail!("--correlations: `{o}` is not all, selected or none"),
        },
        loss_effect: !args.no_loss_effect,
        seed: args.seed,
        batch_size: args.batch_size.max(1),
        ..Default::default()
    };
    let bar = if args.quiet {
        indicatif::ProgressBar::hidden()
    } else {
        indicatif::ProgressBar::new(0)
    };
    let style = |unit: &str| {
        indicatif::ProgressStyle::with_template(&format!(
            "{{spinner}} {{msg}} [{{elapsed_precise}}] {{wide_bar}} {{human_pos}}/{{human_len}} {unit} ({{per_sec}}, eta {{eta}})"
        ))
        .expect("valid template")
    };
    let mut stage = None;
    let mut on_progress = |p: Progress| {
        if stage != Some(p.stage) {
            stage = Some(p.stage);
            let (msg, unit) = match p.stage {
                Stage::Select => ("choosing latents", "tokens"),
                Stage::Scan => ("scanning", "tokens"),
                Stage::Examples => ("examples", "rows"),
            };
            bar.reset();
            bar.set_style(style(unit));
            bar.set_message(msg);
            bar.set_length(p.total);
        }
        bar.set_position(p.done);
    };
    let dash =
        feature_dashboards_with_progress(&model, &sae, &input, &selection, &cfg, &mut on_progress)?;
    bar.finish_and_clear();
    dash.save_html(&args.out)?;
    println!(
        "{} dashboards ({} tokens scanned, {}) → {}",
        dash.features.len(),
        dash.n_tokens,
        dash.source,
        args.out.display()
    );
    if let Some(j) = &args.json {
        dash.save_json(j)?;
        println!("Neuronpedia-style JSON → {}", j.display());
    }
    if let Some(p) = &args.prompt {
        let view = prompt_centric(&model, &sae, p, Some(&dash), 10)?;
        let path = args.out.with_extension("prompt.html");
        saescope::viz::Html(format!(
            "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>prompt view</title></head><body>{}</body></html>",
            view.to_html()
        ))
        .save(&path)?;
        println!("prompt-centric view → {}", path.display());
    }
    println!("{:.1}s", t0.elapsed().as_secs_f64());
    Ok(())
}
