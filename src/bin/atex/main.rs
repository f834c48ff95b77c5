//! `atex`: provision machines and run FMF/tmt-style tests on them.

use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

mod fmf_cmd;
mod progress;
mod run_cmd;
#[cfg(feature = "testingfarm")]
mod tf_cmd;
#[cfg(feature = "libvirt")]
mod virt_cmd;

/// Provision machines, run FMF/tmt-style tests on them as an ad-hoc pool, collect results.
#[derive(Debug, Parser)]
#[command(name = "atex", version, about, long_about = None)]
struct Cli {
    /// More logging (-v info, -vv debug, -vvv trace); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    /// Only errors.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    quiet: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// FMF metadata: dump, discover, show.
    Fmf(fmf_cmd::FmfArgs),
    /// Discover FMF tests and run them on a pool of remotes; results as JSON lines.
    Run(run_cmd::RunArgs),
    /// Testing Farm: whoami, composes, requests, pipeline logs, journal cleanup.
    #[cfg(feature = "testingfarm")]
    #[command(visible_alias = "testingfarm")]
    Tf(tf_cmd::TfArgs),
    /// libvirt virtual machines: clean up what killed runs left.
    #[cfg(feature = "libvirt")]
    Virt(virt_cmd::VirtArgs),
    /// The shared VM host's helper: JSON lines on stdin/stdout (run on the VM host).
    #[cfg(feature = "libvirt")]
    VirtHelper(virt_cmd::HelperArgs),
}

fn init_logging(cli: &Cli) {
    let default = if cli.quiet {
        "error"
    } else {
        match cli.verbose {
            0 => "warn",
            1 => "info",
            2 => "debug",
            _ => "trace",
        }
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli);
    match cli.command {
        None => {
            let _ = Cli::command().print_help();
            ExitCode::from(2)
        }
        Some(Command::Fmf(args)) => fmf_cmd::run(args),
        Some(Command::Run(args)) => run_cmd::run(args, cli.quiet),
        #[cfg(feature = "testingfarm")]
        Some(Command::Tf(args)) => tf_cmd::run(args),
        #[cfg(feature = "libvirt")]
        Some(Command::Virt(args)) => virt_cmd::run(args),
        #[cfg(feature = "libvirt")]
        Some(Command::VirtHelper(args)) => virt_cmd::helper(args),
    }
}
