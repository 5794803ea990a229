//! `saescope train --config FILE` and `saescope resume DIR`.
use anyhow::{bail, Context, Result};
use clap::Args;
use saescope::train::config::RunnerConfig;
use saescope::train::trainer::{self, Trainer};
use saescope::train::ActivationSource;
use std::path::{Path, PathBuf};

/// Train an SAE from a JSON config (SAELens's `LanguageModelSAERunnerConfig` fields, with the
/// nested `sae:` architecture config). The run folder (`output_path`, or `--output`) gets the
/// config, a resumable checkpoint every `checkpoint_every_n_steps`, `metrics.jsonl`, and at the
/// end the SAE in SAELens's folder format plus `plots/`.
#[derive(Args, Debug)]
pub struct TrainArgs {
    /// The JSON config file.
    #[arg(long)]
    pub config: PathBuf,
    /// Run folder (overrides the config's `output_path`).
    #[arg(long, short)]
    pub output: Option<PathBuf>,
    /// Override `training_tokens`.
    #[arg(long)]
    pub training_tokens: Option<u64>,
    /// Override `seed`.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Hide the progress bar.
    #[arg(long)]
    pub quiet: bool,
}

/// Continue an interrupted run from its folder (its `runner_cfg.json` and latest
/// checkpoint); the result equals an uninterrupted run bit for bit.
#[derive(Args, Debug)]
pub struct ResumeArgs {
    /// The run folder.
    pub dir: PathBuf,
    /// Hide the progress bar.
    #[arg(long)]
    pub quiet: bool,
}

/// Builds the activation source for a config.
pub type SourceBuilder<'a> = dyn Fn(&RunnerConfig) -> Result<Box<dyn ActivationSource>> + 'a;

/// The activation source a config asks for (the library's `train::source_for`).
pub fn default_source(cfg: &RunnerConfig) -> Result<Box<dyn ActivationSource>> {
    Ok(saescope::train::source_for(cfg)?)
}

pub fn train(args: TrainArgs) -> Result<()> {
    train_with(args, &default_source)
}

pub fn resume(args: ResumeArgs) -> Result<()> {
    resume_with(args, &default_source)
}

/// `saescope train` with a caller-provided activation source builder.
pub fn train_with(args: TrainArgs, build: &SourceBuilder) -> Result<()> {
    let mut cfg = RunnerConfig::from_file(&args.config)?;
    if let Some(t) = args.training_tokens {
        cfg.training_tokens = t;
    }
    if let Some(s) = args.seed {
        cfg.store.seed = s;
    }
    if args.quiet {
        cfg.progress_bar = false;
    }
    if let Some(o) = &args.output {
        cfg.output_path = Some(o.to_string_lossy().into_owned());
    }
    cfg.validate()?;
    let dir = cfg
        .output_path
        .clone()
        .map(PathBuf::from)
        .context("the config has no output_path; pass --output DIR")?;
    if dir.join(trainer::CHECKPOINT).exists() {
        bail!(
            "{} already holds a training run; continue it with `saescope resume {}` or choose another --output",
            dir.display(),
            dir.display()
        );
    }
    let mut source = build(&cfg)?;
    let mut t = Trainer::new(&cfg, Some(dir.clone()))?;
    let sae = t.fit(source.as_mut())?;
    report(&dir, &t, &sae);
    Ok(())
}

/// `saescope resume` with a caller-provided activation source builder.
pub fn resume_with(args: ResumeArgs, build: &SourceBuilder) -> Result<()> {
    let mut cfg = trainer::read_run_config(&args.dir)
        .with_context(|| format!("{} is not a saescope training run", args.dir.display()))?;
    if args.quiet {
        cfg.progress_bar = false;
    }
    let mut source = build(&cfg)?;
    let mut t = Trainer::new(&cfg, Some(args.dir.clone()))?;
    let resumed = t.load_checkpoint(source.as_mut())?;
    if cfg.verbose {
        if resumed {
            eprintln!(
                "resuming {} at step {} of {}",
                args.dir.display(),
                t.n_training_steps,
                cfg.total_training_steps()
            );
        } else {
            eprintln!(
                "no checkpoint in {}: starting from the beginning",
                args.dir.display()
            );
        }
    }
    let sae = t.fit(source.as_mut())?;
    report(&args.dir, &t, &sae);
    Ok(())
}

fn report(dir: &Path, t: &Trainer, sae: &saescope::Sae) {
    let l0 = sae
        .cfg()
        .metadata
        .extra
        .get("l0")
        .and_then(|v| v.as_f64())
        .unwrap_or(f64::NAN);
    let dead = t.dead_mask().iter().filter(|d| **d).count();
    println!(
        "{}",
        serde_json::json!({
            "output": dir,
            "architecture": sae.architecture().as_str(),
            "d_in": sae.d_in(),
            "d_sae": sae.d_sae(),
            "steps": t.n_training_steps,
            "training_tokens": t.n_training_samples,
            "l0": l0,
            "dead_features": dead,
            "last_metrics": t
                .last_metrics
                .iter()
                .map(|(k, v)| (k.clone(), serde_json::json!(v)))
                .collect::<serde_json::Map<String, serde_json::Value>>(),
        })
    );
}
