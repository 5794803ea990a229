//! `saescope cache-activations`: run the model over a dataset once and write the activations
//! of one or more hooks as safetensors shards, so several SAEs can train from one pass.
use anyhow::{Context, Result};
use saescope::data::SeparatorToken;
use saescope::train::act_cache::{cache_activations, hook_dir, ActCacheManifest, CacheJob};
use saescope::train::activations::ActivationStoreConfig;
use saescope::SpecialTokens;
use saescope::{HookedModel, LoadOptions};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// `smollm2` (default model), `gpt2`, a hub repo id, an HF-layout directory or a .gguf file.
    #[arg(long, default_value = "smollm2")]
    pub model: String,
    /// TransformerLens hook name, e.g. `blocks.15.hook_resid_post`; repeat for several hooks from
    /// one pass (then each goes to OUT/<hook name>/).
    #[arg(long, required = true)]
    pub hook: Vec<String>,
    /// Take one head of a `[batch, pos, head, d_head]` hook (SAELens's `hook_head_index`).
    #[arg(long)]
    pub hook_head_index: Option<usize>,
    /// Tokens to cache (per hook).
    #[arg(long)]
    pub tokens: u64,
    /// Output directory (created; an older cache there is replaced).
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long, default_value_t = 128)]
    pub context_size: usize,
    /// Tokens per shard file.
    #[arg(long, default_value_t = 65_536)]
    pub shard_tokens: usize,
    /// Rows per model forward pass (SAELens's `store_batch_size_prompts`).
    #[arg(long, default_value_t = 16)]
    pub batch_size_prompts: usize,
    /// `default` (data/corpus/, from scripts/setup_corpus.sh), `hub:ORG/NAME[:FILES]`, a
    /// directory of text files or a JSONL file.
    #[arg(long, default_value = "default")]
    pub dataset: String,
    /// JSONL field with the text (default: SAELens's detection of tokens / input_ids / text).
    #[arg(long)]
    pub dataset_text_field: Option<String>,
    /// Shuffle the documents with this seed (default: corpus order).
    #[arg(long)]
    pub dataset_shuffle_seed: Option<u64>,
    /// Start each row with BOS (SAELens's `prepend_bos`).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub prepend_bos: bool,
    /// Separator between documents: bos, eos, sep, none or a token id.
    #[arg(long, default_value = "bos")]
    pub sequence_separator_token: String,
    /// Drop the activations of BOS / EOS / PAD tokens (SAELens's `exclude_special_tokens = true`).
    #[arg(long)]
    pub exclude_special_tokens: bool,
    /// SAELens's `seqpos_slice` as up to three comma-separated Python slice values, e.g. `1,` or `1,,2`.
    #[arg(long)]
    pub seqpos_slice: Option<String>,
    /// Hide the progress bar.
    #[arg(long)]
    pub quiet: bool,
    /// Recompute even when OUT already holds a complete cache made with the same settings.
    #[arg(long)]
    pub force: bool,
}

/// True when every hook's directory already holds a complete cache of at least `tokens`
/// tokens made with the same model and store settings.
fn already_cached(args: &Args, cfg: &ActivationStoreConfig) -> bool {
    args.hook.iter().all(|h| {
        let dir = hook_dir(&args.out, h, args.hook.len());
        match ActCacheManifest::read(&dir) {
            Ok(m) => {
                let mut want = cfg.clone();
                want.hook_name = h.clone();
                want.hook_head_index = args.hook_head_index;
                m.complete
                    && m.model == args.model
                    && m.n_tokens == args.tokens
                    && m.shard_tokens == args.shard_tokens
                    && m.store == want
            }
            Err(_) => false,
        }
    })
}

fn parse_slice(s: &str) -> Result<Vec<Option<i64>>> {
    s.split(',')
        .map(|p| {
            let p = p.trim();
            if p.is_empty() || p == "None" || p == "none" {
                Ok(None)
            } else {
                p.parse::<i64>()
                    .map(Some)
                    .with_context(|| format!("--seqpos-slice: `{p}` is not an integer"))
            }
        })
        .collect()
}

fn parse_sep(s: &str) -> Result<Option<SeparatorToken>> {
    Ok(match s {
        "none" | "null" | "None" => None,
        "bos" => Some(SeparatorToken::Bos),
        "eos" => Some(SeparatorToken::Eos),
        "sep" => Some(SeparatorToken::Sep),
        n => Some(SeparatorToken::Id(n.parse().with_context(|| {
            format!("--sequence-separator-token: `{n}` is not bos, eos, sep, none or a token id")
        })?)),
    })
}

pub fn run(args: Args) -> Result<()> {
    let cfg = ActivationStoreConfig {
        hook_name: args.hook[0].clone(),
        hook_head_index: args.hook_head_index,
        dataset_path: args.dataset.clone(),
        dataset_text_field: args.dataset_text_field.clone(),
        dataset_shuffle_seed: args.dataset_shuffle_seed,
        context_size: args.context_size,
        store_batch_size_prompts: args.batch_size_prompts,
        prepend_bos: args.prepend_bos,
        seqpos_slice: match &args.seqpos_slice {
            Some(s) => parse_slice(s)?,
            None => vec![None],
        },
        exclude_special_tokens: if args.exclude_special_tokens {
            SpecialTokens::Structural
        } else {
            SpecialTokens::None
        },
        sequence_separator_token: parse_sep(&args.sequence_separator_token)?,
        ..Default::default()
    };
    if !args.force && already_cached(&args, &cfg) {
        println!(
            "{} already holds this cache ({} tokens of {}); --force recomputes it",
            args.out.display(),
            args.tokens,
            args.hook.join(", ")
        );
        return Ok(());
    }
    let opts = LoadOptions::default();
    let t0 = Instant::now();
    let model = HookedModel::from_pretrained_with(&args.model, &opts)
        .with_context(|| format!("cannot load model `{}`", args.model))?;
    let model = Arc::new(model);
    eprintln!(
        "loaded {} in {:.1}s; caching {} tokens of {} into {}",
        args.model,
        t0.elapsed().as_secs_f64(),
        args.tokens,
        args.hook.join(", "),
        args.out.display()
    );
    let job = CacheJob {
        hooks: args
            .hook
            .iter()
            .map(|h| (h.clone(), args.hook_head_index))
            .collect(),
        n_tokens: args.tokens,
        out: args.out.clone(),
        shard_tokens: args.shard_tokens,
        model_name: args.model.clone(),
    };
    let bar = if args.quiet {
        indicatif::ProgressBar::hidden()
    } else {
        indicatif::ProgressBar::new(args.tokens)
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {human_pos}/{human_len} tokens ({per_sec}, eta {eta})",
        )
        .expect("valid template"),
    );
    let t1 = Instant::now();
    let manifests =
        cache_activations(model, &cfg, &job, &opts, &mut |done| bar.set_position(done))?;
    bar.finish_and_clear();
    let secs = t1.elapsed().as_secs_f64();
    for m in &manifests {
        println!(
            "{}: {} tokens × {} ({} shards) → {}",
            m.hook_name,
            m.n_tokens,
            m.d_in,
            m.shards.len(),
            hook_dir(&args.out, &m.hook_name, manifests.len()).display()
        );
    }
    println!(
        "{:.1}s, {:.0} tokens/s",
        secs,
        args.tokens as f64 / secs.max(1e-9)
    );
    Ok(())
}
