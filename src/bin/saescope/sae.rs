//! `saescope sae info` and `saescope sae apply`.
use anyhow::{bail, Context, Result};
use clap::Subcommand;
use saescope::{DType, Device, Sae, Tensor};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

#[derive(Subcommand)]
pub enum SaeCmd {
    /// Show an SAE's config, dimensions, hook and files: a directory, or RELEASE/SAE_ID from
    /// the pretrained directory (downloaded through the hub cache).
    Info {
        /// A directory, or `RELEASE/SAE_ID` (e.g. `gpt2-small-res-jb/blocks.8.hook_resid_pre`).
        sae: String,
    },
    /// Run an SAE over saved activations: writes the input rows `x` and their `feature_acts`,
    /// `hidden_pre` and `recons` (the layout `scripts/check_saelens_load.py` compares with
    /// SAELens).
    Apply {
        /// The SAE directory.
        #[arg(long)]
        sae: PathBuf,
        /// A safetensors file holding the activations `[..., d_in]`.
        #[arg(long)]
        input: PathBuf,
        /// Which tensor of the input file (default: its only tensor).
        #[arg(long)]
        key: Option<String>,
        /// Output safetensors file.
        #[arg(long)]
        out: PathBuf,
        /// Only the first N rows of the input (flattened to `[rows, d_in]`).
        #[arg(long)]
        rows: Option<usize>,
    },
}

pub fn main(cmd: SaeCmd) -> Result<()> {
    match cmd {
        SaeCmd::Info { sae } => info(&sae),
        SaeCmd::Apply {
            sae,
            input,
            key,
            out,
            rows,
        } => apply(&sae, &input, key.as_deref(), &out, rows),
    }
}

/// Split `RELEASE/SAE_ID`: the longest known release name that prefixes `spec`, else (as
/// SAELens does for unknown releases) `owner/repo` and the rest as the folder.
fn split_release_id(spec: &str) -> Result<(String, String)> {
    let names = saescope::sae::pretrained::release_names()?;
    if let Some(r) = names
        .iter()
        .filter(|r| {
            spec.len() > r.len() + 1 && spec.starts_with(*r) && spec.as_bytes()[r.len()] == b'/'
        })
        .max_by_key(|r| r.len())
    {
        return Ok((r.to_string(), spec[r.len() + 1..].to_string()));
    }
    let parts: Vec<&str> = spec.splitn(3, '/').collect();
    match parts.as_slice() {
        [owner, repo, id] => Ok((format!("{owner}/{repo}"), id.to_string())),
        _ => bail!(
            "`{spec}` is neither a directory nor RELEASE/SAE_ID; known releases: {}",
            names.join(", ")
        ),
    }
}

/// Load a directory, or a `RELEASE/SAE_ID` from the pretrained directory; also the files it
/// came from.
fn load_any(spec: &str) -> Result<(Sae, Vec<PathBuf>)> {
    let p = Path::new(spec);
    if p.exists() {
        let files = if p.is_dir() {
            let mut v: Vec<PathBuf> = std::fs::read_dir(p)?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .collect();
            v.sort();
            v
        } else {
            vec![p.to_path_buf()]
        };
        return Ok((Sae::load(p)?, files));
    }
    let (release, id) = split_release_id(spec)?;
    let sae = Sae::from_pretrained(&release, &id)?;
    // The downloaded files, in the hub cache's snapshot of the release's repo.
    let (repo, folder) = match saescope::sae::pretrained::release(&release) {
        Ok(r) => (
            r.repo_id.clone(),
            r.sae(&id).map(|s| s.path.clone()).unwrap_or(id.clone()),
        ),
        Err(_) => (release.clone(), id.clone()),
    };
    let mut files = Vec::new();
    if let Ok(cache) = saescope::model::hub::default_cache_dir() {
        let snaps = cache
            .join(format!("models--{}", repo.replace('/', "--")))
            .join("snapshots");
        for snap in std::fs::read_dir(&snaps).into_iter().flatten().flatten() {
            let dir = snap.path().join(&folder);
            for f in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                files.push(f.path());
            }
        }
    }
    files.sort();
    Ok((sae, files))
}

fn human(n: u64) -> String {
    match n {
        n if n >= 1 << 30 => format!("{:.1} GiB", n as f64 / (1u64 << 30) as f64),
        n if n >= 1 << 20 => format!("{:.1} MiB", n as f64 / (1u64 << 20) as f64),
        n if n >= 1 << 10 => format!("{:.1} KiB", n as f64 / 1024.0),
        n => format!("{n} B"),
    }
}

fn info(spec: &str) -> Result<()> {
    let (sae, files) = load_any(spec)?;
    println!("SAE {spec}");
    println!("  architecture   {}", sae.architecture());
    println!(
        "  d_in {}  d_sae {}  d_out {}",
        sae.d_in(),
        sae.d_sae(),
        sae.d_out()
    );
    println!("  hook           {}", sae.hook_name());
    if sae.hook_name_out() != sae.hook_name() {
        println!("  hook_out       {}", sae.hook_name_out());
    }
    if let Some(np) = sae.neuronpedia_id() {
        println!("  neuronpedia    {np}");
    }
    let cfg = serde_json::to_string_pretty(&sae.cfg().to_json_value())?;
    println!(
        "  config         {}",
        cfg.replace('\n', "\n                 ")
    );
    println!("  files");
    for f in files {
        let n = std::fs::metadata(&f).map(|m| m.len()).unwrap_or(0);
        println!("    {:>10}  {}", human(n), f.display());
    }
    Ok(())
}

fn apply(
    dir: &Path,
    input: &Path,
    key: Option<&str>,
    out: &Path,
    rows: Option<usize>,
) -> Result<()> {
    let sae = Sae::load(dir)?;
    let map = saescope::candle_core::safetensors::load(input, &Device::Cpu)
        .with_context(|| format!("cannot read activations from {}", input.display()))?;
    let x = match key {
        Some(k) => map.get(k).cloned().with_context(|| {
            format!(
                "{} has no tensor `{k}` (it has: {:?})",
                input.display(),
                map.keys().collect::<Vec<_>>()
            )
        })?,
        None if map.len() == 1 => map
            .values()
            .next()
            .cloned()
            .unwrap_or_else(|| unreachable!()),
        None => bail!(
            "{} holds {} tensors {:?}: choose one with --key",
            input.display(),
            map.len(),
            map.keys().collect::<Vec<_>>()
        ),
    };
    let x = match rows {
        Some(n) => {
            let d = *x.dims().last().context("the activations are a scalar")?;
            let flat = x.reshape(((), d))?;
            flat.narrow(0, 0, n.min(flat.dim(0)?))?
        }
        None => x,
    };
    let (acts, pre) = sae.encode_with_hidden_pre(&x)?;
    let recons = sae.forward(&x)?;
    let mut outm: HashMap<String, Tensor> = HashMap::new();
    outm.insert("x".into(), x.to_dtype(DType::F32)?.contiguous()?);
    outm.insert(
        "feature_acts".into(),
        acts.to_dtype(DType::F32)?.contiguous()?,
    );
    outm.insert("hidden_pre".into(), pre.to_dtype(DType::F32)?.contiguous()?);
    outm.insert("recons".into(), recons.to_dtype(DType::F32)?.contiguous()?);
    saescope::candle_core::safetensors::save(&outm, out)
        .with_context(|| format!("cannot write {}", out.display()))?;
    let l0 = acts
        .ne(0f32)?
        .to_dtype(DType::F32)?
        .sum(saescope::D::Minus1)?
        .mean_all()?
        .to_scalar::<f32>()?;
    eprintln!(
        "{}: {:?} -> feature_acts {:?}, mean L0 {l0:.2}; wrote {}",
        sae.hook_name(),
        x.dims(),
        acts.dims(),
        out.display()
    );
    Ok(())
}
