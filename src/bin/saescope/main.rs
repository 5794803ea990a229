//! `saescope` command line: a thin layer over the library.
mod attribute;
mod autointerp;
mod cache;
mod dashboard;
mod eval;
mod run;
mod sae;
mod train;
mod transcoders;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "saescope",
    version,
    about = "Sparse-autoencoder interpretability on real language models"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run a model on a prompt (or a tokens file), print its top next-token predictions, and
    /// optionally save the activations of chosen hooks under their TransformerLens names.
    Run(run::RunArgs),
    /// Inspect SAEs and apply them to saved activations.
    #[command(subcommand)]
    Sae(sae::SaeCmd),
    /// Run the model over a corpus once and write a hook's activations to disk (safetensors
    /// shards), so that several SAEs can train from one model pass.
    CacheActivations(cache::Args),
    /// Train an SAE from a JSON config (SAELens runner-config fields).
    Train(train::TrainArgs),
    /// Continue a training run from its last checkpoint.
    Resume(train::ResumeArgs),
    /// Train per-layer transcoders (ln2.hook_normalized → hook_mlp_out) from one streamed
    /// model pass, or resume such a run (`--resume DIR`).
    TrainTranscoders(transcoders::TranscoderArgs),
    /// Evaluate an SAE with SAELens's metrics and print JSON.
    Eval(eval::EvalArgs),
    /// Feature dashboards (sae_vis): top examples, quantile groups, histograms, logits,
    /// correlations and loss effects for chosen latents, as one self-contained HTML file.
    Dashboard(dashboard::Args),
    /// An attribution graph (circuit-tracer's) of a prompt's next-token prediction through
    /// per-layer transcoders: circuit-tracer's graph JSON and/or an HTML view.
    Attribute(attribute::AttributeArgs),
    /// Explain latents with a language model and score the explanations by detection and
    /// fuzzing (delphi's), offline or against an OpenAI-compatible server; delphi's records as
    /// resumable JSONL, with random and top-token baselines.
    Autointerp(autointerp::Args),
}

fn main() -> Result<()> {
    match Cli::parse().cmd {
        Cmd::Run(a) => run::run(a),
        Cmd::Autointerp(a) => autointerp::run(a),
        Cmd::Sae(c) => sae::main(c),
        Cmd::CacheActivations(a) => cache::run(a),
        Cmd::Train(a) => train::train(a),
        Cmd::Resume(a) => train::resume(a),
        Cmd::TrainTranscoders(a) => transcoders::run(a),
        Cmd::Eval(a) => eval::run(a),
        Cmd::Dashboard(a) => dashboard::run(a),
        Cmd::Attribute(a) => attribute::run(a),
    }
}
