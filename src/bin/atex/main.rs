//! `atex`: provision machines and run FMF/tmt-style tests on them.

use std::io::IsTerminal as _;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

mod debug_log;
mod errors;
mod fmf_cmd;
mod merged_events;
#[cfg(feature = "podman")]
mod podman_cmd;
mod report_cmd;
#[cfg(feature = "reportportal")]
mod rp_cmd;
mod run_cmd;
mod run_file;
mod setup_hooks;
#[cfg(feature = "libvirt")]
mod shvirt_cmd;
#[cfg(feature = "testingfarm")]
mod tf_cmd;
#[cfg(all(feature = "testingfarm", feature = "ssh"))]
mod tf_provisioner;
#[cfg(all(feature = "testingfarm", feature = "ssh"))]
mod tf_reserve;
#[cfg(feature = "libvirt")]
mod virt_cmd;
#[cfg(feature = "libvirt")]
mod virt_run;

/// With the opt-in feature `mimalloc`, the program's allocator: large FMF trees load faster
/// than with glibc malloc, whose per-thread arenas grow a few pages at a time, at the cost
/// of a higher peak RSS with many remotes (figures in benches/README.md section 0).
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    Run(Box<run_cmd::RunArgs>),
    /// JUnit XML, HTML, YAML and ReportPortal reports from results directories or files.
    Report(report_cmd::ReportArgs),
    /// ReportPortal launches: start, finish, list.
    #[cfg(feature = "reportportal")]
    #[command(visible_alias = "reportportal")]
    Rp(rp_cmd::RpArgs),
    /// Testing Farm: whoami, composes, requests, pipeline logs, journal cleanup.
    #[cfg(feature = "testingfarm")]
    #[command(visible_alias = "testingfarm")]
    Tf(tf_cmd::TfArgs),
    /// libvirt virtual machines: reserve a transient clone, clean up what killed runs left.
    #[cfg(feature = "libvirt")]
    Virt(virt_cmd::VirtArgs),
    /// The shared VM host by hand: list reservations, reserve a domain.
    #[cfg(feature = "libvirt")]
    Shvirt(shvirt_cmd::ShvirtArgs),
    /// Podman: remove containers killed runs left, build images without a registry.
    #[cfg(feature = "podman")]
    Podman(podman_cmd::PodmanArgs),
    /// The shared VM host's helper: JSON lines on stdin/stdout (run on the VM host).
    #[cfg(feature = "libvirt")]
    VirtHelper(virt_cmd::HelperArgs),
}

/// Sets up logging: the console at the level `-v`/`-q`/`RUST_LOG` say and, with a
/// `debug_log`, every debug-level event into that file as well.
fn init_logging(
    cli: &Cli,
    debug_log: Option<&std::path::Path>,
) -> Result<Option<debug_log::DebugLog>, debug_log::DebugLogError> {
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;

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
    // Colour only on a terminal (and never with NO_COLOR set): a log piped to a file or a CI
    // log must not carry escape sequences.
    let colour = std::io::stderr().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let console = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(colour)
        .with_filter(filter);
    let (log, file) = match debug_log {
        Some(path) => {
            let (log, writer) = debug_log::DebugLog::create(path)?;
            let layer = tracing_subscriber::fmt::layer()
                .with_writer(writer)
                .with_ansi(false)
                .with_filter(tracing_subscriber::filter::LevelFilter::DEBUG);
            (Some(log), Some(layer))
        }
        None => (None, None),
    };
    tracing_subscriber::registry()
        .with(console)
        .with(file)
        .init();
    Ok(log)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let debug_log = match &cli.command {
        Some(Command::Run(args)) => args.debug_log.clone(),
        _ => None,
    };
    let log = match init_logging(&cli, debug_log.as_deref()) {
        Ok(log) => log,
        Err(e) => {
            errors::print(&e);
            return ExitCode::from(2);
        }
    };
    let code = run_command(cli);
    if let Some(log) = log {
        tracing::debug!("closing the debug log");
        if let Err(e) = log.finish() {
            errors::print(&e);
            return ExitCode::from(2);
        }
    }
    code
}

fn run_command(cli: Cli) -> ExitCode {
    match cli.command {
        None => {
            let _ = Cli::command().print_help();
            ExitCode::from(2)
        }
        Some(Command::Fmf(args)) => fmf_cmd::run(args),
        Some(Command::Run(args)) => run_cmd::run(*args, cli.quiet),
        Some(Command::Report(args)) => report_cmd::run(args),
        #[cfg(feature = "reportportal")]
        Some(Command::Rp(args)) => rp_cmd::run(args),
        #[cfg(feature = "testingfarm")]
        Some(Command::Tf(args)) => tf_cmd::run(args),
        #[cfg(feature = "libvirt")]
        Some(Command::Virt(args)) => virt_cmd::run(args),
        #[cfg(feature = "podman")]
        Some(Command::Podman(args)) => podman_cmd::run(args),
        #[cfg(feature = "libvirt")]
        Some(Command::Shvirt(args)) => shvirt_cmd::run(args),
        #[cfg(feature = "libvirt")]
        Some(Command::VirtHelper(args)) => virt_cmd::helper(args),
    }
}
