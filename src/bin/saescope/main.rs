//! `saescope` command line: a thin layer over the library.
mod run;
mod sae;

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
}

fn main() -> Result<()> {
    match Cli::parse().cmd {
        Cmd::Run(a) => run::run(a),
        Cmd::Sae(c) => sae::main(c),
    }
}
