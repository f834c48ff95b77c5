//! The `atex` command-line program.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod fmf_cmd;

/// Provision machines and run FMF/tmt-style tests on them.
#[derive(Parser, Debug)]
#[command(name = "atex", version)]
struct Cli {
    #[command(subcommand)]
    cmd: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// FMF metadata: dump, discover, show.
    Fmf(fmf_cmd::FmfArgs),
}

fn main() -> ExitCode {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .try_init();
    let cli = Cli::parse();
    match cli.cmd {
        Command::Fmf(args) => fmf_cmd::run(args),
    }
}
