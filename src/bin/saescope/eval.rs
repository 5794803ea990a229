//! `saescope eval`: SAELens's evals of an SAE on a model, printed as JSON.
use anyhow::{bail, Context, Result};
use clap::Args;
use saescope::eval::{run_evals, EvalOptions, ExcludeTokens};
use saescope::model::LoadOptions;
use saescope::{DType, Device, HookedModel, Sae, Tensor};
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct EvalArgs {
    /// Model: `smollm2`, a `.gguf` file, an HF-layout directory or a TransformerLens alias.
    #[arg(long, default_value = "smollm2")]
    pub model: String,
    /// SAE directory (SAELens format, or any format `Sae::load` reads).
    #[arg(long)]
    pub sae: PathBuf,
    /// Number of tokens to evaluate on (rounded up to whole rows of `--context-size`).
    #[arg(long, default_value_t = 4096)]
    pub tokens: usize,
    /// Tokens per row (BOS first).
    #[arg(long, default_value_t = 128)]
    pub context_size: usize,
    /// Rows per model pass.
    #[arg(long, default_value_t = 8)]
    pub batch: usize,
    /// A safetensors file with token rows `[n, ctx]` (tensor `tokens`, or its only tensor);
    /// overrides the built-in texts and `--context-size`.
    #[arg(long)]
    pub tokens_file: Option<PathBuf>,
    /// Evaluate on a dataset instead of the built-in texts: `default` (the offline corpus in
    /// `data/corpus/`), a directory of text files, a `.jsonl` file or `hub:ORG/NAME`; packed
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
    /// Skip the CE/KL metrics (no full model passes).
    #[arg(long)]
    pub no_ce: bool,
}

/// A few paragraphs of prose and code used when no tokens file is given.
const BUILTIN_TEXTS: &[&str] = &[
    "The river rose slowly through the night, and by morning the low fields were under water. \
     Farmers moved their animals to the hills, while children watched from the bridge as \
     branches and barrels drifted past. The old mill, which had stood for two hundred years, \
     groaned against the current but did not fall.",
    "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n    a, b = 0, 1\n    \
     for _ in range(n):\n        a, b = b, a + b\n    return a\n\n\nif __name__ == \"__main__\":\n    \
     for i in range(10):\n        print(i, fibonacci(i))\n",
    "In mathematics, a prime number is a natural number greater than one that has no positive \
     divisors other than one and itself. The first few primes are two, three, five, seven and \
     eleven. Euclid proved that there are infinitely many of them: given any finite list, \
     multiply them together and add one.",
    "She opened the letter with trembling hands. It had been ten years since she had last \
     heard from her brother, who had left for the city with nothing but a suitcase and a \
     promise to write. The paper was thin and the ink had faded, but the handwriting was \
     unmistakably his.",
    "fn main() {\n    let words = vec![\"apple\", \"banana\", \"cherry\"];\n    for (i, w) in \
     words.iter().enumerate() {\n        println!(\"{}: {}\", i, w.to_uppercase());\n    }\n    \
     let total: usize = words.iter().map(|w| w.len()).sum();\n    println!(\"total {}\", total);\n}\n",
    "The committee met on Tuesday to discuss the budget for the coming year. Several members \
     argued that more money should go to schools and public transport, while others warned \
     that taxes could not rise again. After four hours of debate, a compromise was reached \
     and the meeting was adjourned.",
    "Photosynthesis is the process by which green plants use sunlight to make food from carbon \
     dioxide and water. It takes place mainly in the leaves, inside small structures called \
     chloroplasts, and releases oxygen as a by-product. Almost all life on Earth depends on it.",
    "SELECT name, COUNT(*) AS orders\nFROM customers c\nJOIN orders o ON o.customer_id = c.id\n\
     WHERE o.created_at > '2024-01-01'\nGROUP BY name\nORDER BY orders DESC\nLIMIT 10;\n",
];

/// Rows `[n, ctx]`, BOS first, from the built-in texts (each text prefixed by BOS in the
/// stream, cycled until there are enough tokens).
fn builtin_rows(model: &HookedModel, n_tokens: usize, ctx: usize) -> Result<Tensor> {
    if ctx < 2 {
        bail!("--context-size must be at least 2");
    }
    let tok = model
        .tokenizer()
        .context("the model has no tokenizer; pass --tokens-file")?;
    let bos = tok.bos_id;
    let mut stream: Vec<u32> = Vec::new();
    for t in BUILTIN_TEXTS {
        stream.extend(tok.encode(t, false)?);
        if let Some(e) = tok.eos_id.or(bos) {
            stream.push(e);
        }
    }
    let body = if bos.is_some() { ctx - 1 } else { ctx };
    let n_rows = n_tokens.div_ceil(ctx).max(1);
    let mut rows = Vec::with_capacity(n_rows * ctx);
    let mut pos = 0usize;
    for _ in 0..n_rows {
        if let Some(b) = bos {
            rows.push(b);
        }
        for _ in 0..body {
            rows.push(stream[pos % stream.len()]);
            pos += 1;
        }
    }
    Ok(Tensor::from_vec(rows, (n_rows, ctx), &Device::Cpu)?)
}

/// Rows `[n, ctx]` packed from a dataset (SAELens's packing through `saescope::data`).
fn dataset_rows(
    model: &HookedModel,
    spec: &str,
    n_tokens: usize,
    ctx: usize,
    seed: Option<u64>,
) -> Result<Tensor> {
    let tok = model
        .tokenizer()
        .context("the model has no tokenizer; pass --tokens-file")?;
    let n_rows = n_tokens.div_ceil(ctx).max(1);
    saescope::data::token_rows(tok, spec, n_rows, ctx, seed)
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

pub fn run(args: EvalArgs) -> Result<()> {
    let model = HookedModel::from_pretrained_with(&args.model, &LoadOptions::default())
        .with_context(|| format!("loading model `{}`", args.model))?;
    let sae =
        Sae::load(&args.sae).with_context(|| format!("loading SAE {}", args.sae.display()))?;
    let tokens = match &args.tokens_file {
        Some(p) => load_tokens_file(p)?,
        None => match &args.dataset {
            Some(spec) => dataset_rows(
                &model,
                spec,
                args.tokens,
                args.context_size,
                args.shuffle_seed,
            )?,
            None => builtin_rows(&model, args.tokens, args.context_size)?,
        },
    };
    let opts = EvalOptions {
        batch_size: args.batch,
        compute_ce_loss: !args.no_ce,
        compute_kl: !args.no_ce,
        compute_featurewise: args.per_feature,
        exclude_tokens: if args.include_special_tokens {
            ExcludeTokens::None
        } else {
            ExcludeTokens::Special
        },
        activation_scale: args.activation_scale,
        ..Default::default()
    };
    let report = run_evals(&model, &sae, &tokens, &opts)?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}
