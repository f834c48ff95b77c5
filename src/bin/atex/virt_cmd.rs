//! `atex virt`: transient libvirt domains; `atex virt-helper`: the shared VM host's helper.
//!
//! The libvirt URI comes from `--connect`, else `LIBVIRT_DEFAULT_URI`, else virsh's own
//! default. Exit codes: 0 done, 1 some leftovers could not be removed, 2 the command could
//! not run (libvirt missing, bad arguments), 130 interrupted.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use atex::connection::LocalConnection;
use atex::scope::{Scope, ShutdownOptions};
use atex::virt::Virsh;
use atex::virt::cleanup::{find_leftovers, remove_leftovers};

const EXIT_PARTIAL: u8 = 1;
const EXIT_ERROR: u8 = 2;
const EXIT_INTERRUPTED: u8 = 130;

/// Arguments of `atex virt`.
#[derive(clap::Args, Debug)]
pub struct VirtArgs {
    /// libvirt URI (default: $LIBVIRT_DEFAULT_URI, else virsh's default).
    #[arg(short = 'c', long = "connect", value_name = "URI", global = true)]
    uri: Option<String>,
    /// What to do.
    #[command(subcommand)]
    cmd: VirtCommand,
}

/// `atex virt` subcommands.
#[derive(clap::Subcommand, Debug)]
enum VirtCommand {
    /// Destroy domains atex created (found by their metadata) and delete their overlay
    /// volumes, after a run was killed.
    Cleanup {
        /// Only what this run created.
        #[arg(long, value_name = "ID")]
        run: Option<String>,
        /// Also delete `atex-*.qcow2` volumes of this storage pool (repeatable).
        #[arg(long = "pool", value_name = "POOL")]
        pools: Vec<String>,
        /// Only list what would be removed.
        #[arg(long)]
        dry_run: bool,
    },
}

/// Arguments of `atex virt-helper`.
#[derive(clap::Args, Debug)]
pub struct HelperArgs {
    /// libvirt URI the helper's virsh and virt-install use.
    uri: Option<String>,
    /// Directory of the reservation lock files (default: ~/.atex-virt-helper for users
    /// with a home, else /var/lib/atex-virt-helper).
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
}

fn runtime() -> Option<tokio::runtime::Runtime> {
    match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => Some(rt),
        Err(e) => {
            eprintln!("atex: cannot start the async runtime: {e}");
            None
        }
    }
}

/// Runs `atex virt`.
pub fn run(args: VirtArgs) -> ExitCode {
    let Some(rt) = runtime() else {
        return ExitCode::from(EXIT_ERROR);
    };
    rt.block_on(async move {
        let scope = Scope::root("virt");
        let signals = match atex::signal::install(&scope) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("atex: cannot install signal handlers: {e}");
                return ExitCode::from(EXIT_ERROR);
            }
        };
        let uri = args
            .uri
            .or_else(|| std::env::var("LIBVIRT_DEFAULT_URI").ok());
        let virsh = Virsh::new(Arc::new(LocalConnection::new()), uri);
        let code = match args.cmd {
            VirtCommand::Cleanup {
                run,
                pools,
                dry_run,
            } => cleanup(&virsh, run.as_deref(), &pools, dry_run, &scope).await,
        };
        let _ = scope.shutdown(ShutdownOptions::default()).await;
        if signals.interrupted() {
            return ExitCode::from(EXIT_INTERRUPTED);
        }
        code
    })
}

async fn cleanup(
    virsh: &Virsh,
    run: Option<&str>,
    pools: &[String],
    dry_run: bool,
    scope: &Scope,
) -> ExitCode {
    let found = match find_leftovers(virsh, run, pools, scope).await {
        Ok(f) => f,
        Err(e) => {
            eprintln!("atex: {e}");
            return ExitCode::from(EXIT_ERROR);
        }
    };
    for d in &found.domains {
        println!(
            "domain {} (run {}, origin {})",
            d.name, d.metadata.run, d.metadata.origin
        );
    }
    for (pool, vol) in &found.volumes {
        println!("volume {vol} (pool {pool})");
    }
    if dry_run || found.is_empty() {
        return ExitCode::SUCCESS;
    }
    let errors = remove_leftovers(virsh, &found, scope).await;
    for e in &errors {
        eprintln!("atex: {e}");
    }
    if errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_PARTIAL)
    }
}

/// Runs `atex virt-helper` on stdin/stdout until stdin ends.
pub fn helper(args: HelperArgs) -> ExitCode {
    // One thread: `setname` renames the process's main thread, which is what others see.
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("atex virt-helper: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_ERROR);
        }
    };
    let options = atex::virt::helper::ServerOptions {
        uri: args.uri,
        state_dir: args.state_dir,
    };
    match rt.block_on(async move {
        let scope = Scope::root("virt-helper");
        let res = atex::virt::helper::serve_stdio(options, &scope).await;
        let _ = scope.shutdown(ShutdownOptions::default()).await;
        res
    }) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("atex virt-helper: {e}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}
