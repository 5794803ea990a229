//! `saescope train-transcoders --config FILE` and `saescope train-transcoders --resume DIR`.
use anyhow::{bail, Context, Result};
use clap::Args;
use saescope::train::transcoders::{TranscoderRun, TranscodersConfig, TRANSCODERS_CFG};
use std::path::PathBuf;

/// Train per-layer transcoders (`blocks.L.ln2.hook_normalized` → `blocks.L.hook_mlp_out` by
/// default) from one streamed model pass: every layer's trainer is fed from the same forward
/// pass, nothing is cached on disk. The run folder (`output_path`, or `--output`) gets the
/// config, a resumable checkpoint every `checkpoint_every_n_steps`, per-layer metrics and
/// `progress.jsonl`, and at the end `layer_LL/` SAELens folders (JumpReLU transcoders for
/// batchtopk training).
#[derive(Args, Debug)]
#[command(group = clap::ArgGroup::new("what").required(true).args(["config", "resume"]))]
pub struct TranscoderArgs {
    /// The JSON config file (SAELens runner-config fields plus `layers`, `expansion_factor`,
    /// `hook_name_out`; see `saescope::train::transcoders::TranscodersConfig`).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Continue the run in this folder from its latest checkpoint (bit-identical to an
    /// uninterrupted run).
    #[arg(long)]
    pub resume: Option<PathBuf>,
    /// Run folder (overrides the config's `output_path`).
    #[arg(long, short)]
    pub output: Option<PathBuf>,
    /// Override `training_tokens`.
    #[arg(long)]
    pub training_tokens: Option<u64>,
    /// Hide the progress bar and status lines.
    #[arg(long)]
    pub quiet: bool,
}

pub fn run(args: TranscoderArgs) -> Result<()> {
    let mut run = match (&args.config, &args.resume) {
        (_, Some(dir)) => {
            if !dir.join(TRANSCODERS_CFG).exists() {
                bail!(
                    "{} is not a transcoder run (no {TRANSCODERS_CFG})",
                    dir.display()
                );
            }
            let mut r = TranscoderRun::resume(dir)?;
            if args.quiet {
                r.cfg.runner.progress_bar = false;
            }
            r
        }
        (Some(path), None) => {
            let mut cfg = TranscodersConfig::from_file(path)?;
            if let Some(t) = args.training_tokens {
                cfg.runner.training_tokens = t;
            }
            if let Some(o) = &args.output {
                cfg.runner.output_path = Some(o.to_string_lossy().into_owned());
            }
            if args.quiet {
                cfg.runner.progress_bar = false;
            }
            let dir = cfg
                .output_dir()
                .context("the config has no output_path; pass --output DIR")?;
            if dir.join(TRANSCODERS_CFG).exists() {
                bail!(
                    "{} already holds a transcoder run; continue it with `saescope train-transcoders --resume {}` or choose another --output",
                    dir.display(),
                    dir.display()
                );
            }
            TranscoderRun::new(&cfg)?
        }
        (None, None) => bail!("pass --config FILE or --resume DIR"),
    };
    let saes = run.fit()?;
    let layers: Vec<serde_json::Value> = run
        .layers
        .iter()
        .zip(&saes)
        .zip(&run.trainers)
        .map(|((l, s), t)| {
            let m = |k: &str| t.last_metrics.iter().find(|(n, _)| n == k).map(|(_, v)| *v);
            serde_json::json!({
                "layer": l,
                "folder": t.out_dir(),
                "architecture": s.architecture().as_str(),
                "d_in": s.d_in(), "d_sae": s.d_sae(), "d_out": s.d_out(),
                "explained_variance": m("metrics/explained_variance"),
                "l0": m("metrics/l0"),
                "dead_features": t.dead_mask().iter().filter(|d| **d).count(),
            })
        })
        .collect();
    println!(
        "{}",
        serde_json::json!({
            "output": run.dir(),
            "steps": run.step(),
            "model_seconds": run.model_seconds,
            "train_seconds": run.train_seconds,
            "layers": layers,
        })
    );
    Ok(())
}
