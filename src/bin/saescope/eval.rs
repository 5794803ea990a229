//! `saescope eval`: SAELens's evals of an SAE on a model, printed as JSON.
use anyhow::{bail, Context, Result};
use clap::Args;
use saescope::analysis::circuits::TranscoderSet;
use saescope::data::CorpusSplit;
use saescope::eval::{
    dataset_tokens, eval_transcoders, run_evals, EvalDataset, EvalOptions, TranscoderEvalOptions,
    DEFAULT_EVAL_CONTEXT, DEFAULT_EVAL_TOKENS,
};
use saescope::model::LoadOptions;
use saescope::{DType, Device, HookedModel, Sae, SpecialTokens, Tensor};
use std::path::{Path, PathBuf};

#[derive(Args, Debug)]
pub struct EvalArgs {
    /// Model: `smollm2`, a `.gguf` file, an HF-layout directory or a TransformerLens alias.
    #[arg(long, default_value = "smollm2")]
    pub model: String,
    /// SAE directory (SAELens format, or any format `Sae::load` reads).
    #[arg(
        long,
        required_unless_present = "transcoders",
        conflicts_with = "transcoders"
    )]
    pub sae: Option<PathBuf>,
    /// Instead of an SAE, a per-layer transcoder set (one SAELens transcoder folder per
    /// layer): FVU of `hook_mlp_out`, L0, dead latents and the CE-loss score with each MLP
    /// replaced alone and with all replaced at once, as JSON.
    #[arg(long)]
    pub transcoders: Option<PathBuf>,
    /// Number of tokens to evaluate on (rounded up to whole rows of `--context-size`).
    #[arg(long, default_value_t = DEFAULT_EVAL_TOKENS)]
    pub tokens: usize,
    /// Tokens per row (BOS first; default: the SAE's `context_size`, else 128).
    #[arg(long)]
    pub context_size: Option<usize>,
    /// Rows per model pass.
    #[arg(long, default_value_t = 8)]
    pub batch: usize,
    /// A safetensors file with token rows `[n, ctx]` (tensor `tokens`, or its only tensor);
    /// overrides `--dataset` and `--context-size`.
    #[arg(long)]
    pub tokens_file: Option<PathBuf>,
    /// The dataset: `default:heldout` (the default: documents of the offline corpus in
    /// `data/corpus/` that the shipped SAE never trained on), `default` (the whole corpus),
    /// `default:train`, a directory of text files, a `.jsonl` file or `hub:ORG/NAME`; packed
    /// as SAELens does (BOS first, BOS between documents).
    #[arg(long)]
    pub dataset: Option<String>,
    /// Shuffle the dataset's documents with this seed (as `cache-activations`).
    #[arg(long = "dataset-shuffle-seed", alias = "shuffle-seed")]
    pub shuffle_seed: Option<u64>,
    /// Include special tokens (BOS/EOS/PAD) in the metrics.
    #[arg(long)]
    pub include_special_tokens: bool,
    /// Activation scaling factor the SAE expects (SAELens's ActivationScaler), if not folded.
    #[arg(long)]
    pub activation_scale: Option<f64>,
    /// Also print per-latent lists (density, consistent activation heuristic, weight metrics).
    #[arg(long)]
    pub per_feature: bool,
    /// Skip the CE/KL metrics (no full model passes); with `--transcoders`, skip the
    /// per-layer CE (the all-replaced CE is still measured).
    #[arg(long)]
    pub no_ce: bool,
}

/// Rows from `--dataset` (default: the held-out slice of the default corpus), packed as SAELens
/// does, with their record.
fn dataset_rows(model: &HookedModel, args: &EvalArgs, ctx: usize) -> Result<(Tensor, EvalDataset)> {
    if ctx < 2 {
        bail!("--context-size must be at least 2");
    }
    let tok = model
        .tokenizer()
        .context("the model has no tokenizer; pass --tokens-file")?;
    let spec = args
        .dataset
        .as_deref()
        .unwrap_or(CorpusSplit::HeldOut.spec());
    dataset_tokens(tok, spec, args.tokens, ctx, args.shuffle_seed)
        .with_context(|| format!("loading dataset `{spec}`"))
}

fn load_tokens_file(path: &PathBuf) -> Result<Tensor> {
    let map = saescope::candle_core::safetensors::load(path, &Device::Cpu)
        .with_context(|| format!("reading {}", path.display()))?;
    let t = match map.get("tokens") {
        Some(t) => t.clone(),
        None if map.len() == 1 => map.into_values().next().unwrap(),
        None => bail!(
            "{} has tensors {:?}; name the token rows `tokens`",
            path.display(),
            map.keys().collect::<Vec<_>>()
        ),
    };
    let t = match t.dtype() {
        DType::U32 => t,
        _ => t.to_dtype(DType::I64)?.to_dtype(DType::U32)?,
    };
    Ok(t)
}

/// The eval rows: `--tokens-file` as is, else `--dataset` packed into rows of `ctx`.
fn eval_rows(model: &HookedModel, args: &EvalArgs, ctx: usize) -> Result<(Tensor, EvalDataset)> {
    match &args.tokens_file {
        Some(p) => {
            let t = load_tokens_file(p)?;
            let (rows, ctx) = t.dims2().context("the tokens file must hold [rows, ctx]")?;
            let record = EvalDataset {
                name: format!("tokens file {}", p.display()),
                rows,
                context_size: ctx,
                tokens: rows * ctx,
                ..Default::default()
            };
            Ok((t, record))
        }
        None => dataset_rows(model, args, ctx),
    }
}

/// `--transcoders DIR`: the set's evals as JSON (with the dataset's record).
fn run_transcoders(model: &HookedModel, args: &EvalArgs, dir: &Path) -> Result<()> {
    let tcs = TranscoderSet::load(dir)
        .with_context(|| format!("loading transcoders from {}", dir.display()))?;
    let ctx = args.context_size.unwrap_or(DEFAULT_EVAL_CONTEXT);
    let (tokens, record) = eval_rows(model, args, ctx)?;
    eprintln!(
        "saescope eval: {} transcoders on {} rows of {} tokens from {}; {} passes per batch of {}",
        tcs.len(),
        record.rows,
        record.context_size,
        record.name,
        if args.no_ce { 3 } else { 3 + 2 * tcs.len() },
        args.batch
    );
    let opts = TranscoderEvalOptions {
        batch: args.batch,
        per_layer_ce: !args.no_ce,
    };
    let report = eval_transcoders(model, &tcs, &tokens, &opts)?;
    let mut v = serde_json::to_value(&report)?;
    v["dataset"] = serde_json::to_value(&record)?;
    println!("{}", serde_json::to_string_pretty(&v)?);
    Ok(())
}

pub fn run(args: EvalArgs) -> Result<()> {
    let model = HookedModel::from_pretrained_with(&args.model, &LoadOptions::default())
        .with_context(|| format!("loading model `{}`", args.model))?;
    if let Some(dir) = &args.transcoders {
        return run_transcoders(&model, &args, dir);
    }
    let path = args
        .sae
        .as_ref()
        .context("pass --sae DIR or --transcoders DIR")?;
    let sae = Sae::load(path).with_context(|| format!("loading SAE {}", path.display()))?;
    let ctx = args
        .context_size
        .or(sae.cfg().metadata.context_size)
        .unwrap_or(DEFAULT_EVAL_CONTEXT);
    let (tokens, record) = eval_rows(&model, &args, ctx)?;
    let opts = EvalOptions {
        batch_size: args.batch,
        compute_ce_loss: !args.no_ce,
        compute_kl: !args.no_ce,
        compute_featurewise: args.per_feature,
        exclude_tokens: if args.include_special_tokens {
            SpecialTokens::None
        } else {
            SpecialTokens::Structural
        },
        activation_scale: args.activation_scale,
        ..Default::default()
    };
    eprintln!(
        "saescope eval: {} rows of {} tokens from {}; three model passes per batch of {}",
        record.rows, record.context_size, record.name, args.batch
    );
    let mut report = run_evals(&model, &sae, &tokens, &opts)?;
    report.dataset = Some(record);
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}
