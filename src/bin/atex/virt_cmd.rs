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
    /// Start one transient clone of ORIGIN, print the ssh command that reaches it, hold it
    /// until Ctrl-C (or SIGTERM), then destroy it.
    Reserve(ReserveArgs),
}

/// Arguments of `atex virt reserve`.
#[derive(clap::Args, Debug)]
struct ReserveArgs {
    /// The shut-off origin domain.
    origin: String,
    /// `dir` storage pool for the overlay.
    #[arg(long, value_name = "POOL", default_value = "default")]
    pool: String,
    /// Private SSH key the guest accepts.
    #[arg(long, value_name = "FILE")]
    key: PathBuf,
    /// Guest user.
    #[arg(long, value_name = "USER", default_value = "root")]
    user: String,
    /// Host ports to forward SSH from, `START-END`.
    #[arg(long, value_name = "RANGE", default_value = "5100-5999",
          value_parser = crate::virt_run::parse_ports)]
    ports: std::ops::RangeInclusive<u16>,
    /// Cut the clone off every network but its forwarded SSH port.
    #[arg(long)]
    isolated: bool,
    /// Seconds the clone may take from start to a working SSH session.
    #[arg(long, value_name = "SECS", default_value_t = 300)]
    boot_timeout: u64,
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
            VirtCommand::Reserve(r) => match reserve(virsh, r, &scope).await {
                // Ctrl-C is how a reservation ends.
                Ok(Reservation::Held) => return finish(scope, ExitCode::SUCCESS).await,
                // Before the clone was ready, it is an interruption.
                Ok(Reservation::Interrupted) => {
                    return finish(scope, ExitCode::from(EXIT_INTERRUPTED)).await;
                }
                Err(e) if scope.is_cancelled() => {
                    tracing::debug!(error = %e, "reservation interrupted");
                    return finish(scope, ExitCode::from(EXIT_INTERRUPTED)).await;
                }
                Err(e) => {
                    eprintln!("atex: {e}");
                    ExitCode::from(EXIT_ERROR)
                }
            },
        };
        let _ = scope.shutdown(ShutdownOptions::default()).await;
        if signals.interrupted() {
            return ExitCode::from(EXIT_INTERRUPTED);
        }
        code
    })
}

/// Shuts the scope down (waiting for every cleanup) and returns `code`.
async fn finish(scope: Scope, code: ExitCode) -> ExitCode {
    let report = scope.shutdown(ShutdownOptions::default()).await;
    if !report.is_clean() {
        eprintln!("atex: cleanup incomplete: {report:?}");
        return ExitCode::from(EXIT_PARTIAL);
    }
    code
}

/// How `atex virt reserve` ended (without an error).
enum Reservation {
    /// The clone was handed out and held until Ctrl-C, then destroyed.
    Held,
    /// Ctrl-C came before the clone was ready.
    Interrupted,
}

/// `atex virt reserve`: one clone, held until the scope is cancelled (Ctrl-C).
async fn reserve(virsh: Virsh, args: ReserveArgs, scope: &Scope) -> Result<Reservation, String> {
    use crate::virt_run::{CloneOptions, clone_config, new_run_id};
    let cfg = clone_config(
        CloneOptions {
            origin: &args.origin,
            pool: &args.pool,
            key: Some(&args.key),
            user: &args.user,
            ports: args.ports.clone(),
            isolated: args.isolated,
            boot_timeout: std::time::Duration::from_secs(args.boot_timeout),
            run_id: new_run_id(),
        },
        "virt reserve",
    )?;
    let factory = atex::virt::CloneFactory::prepare(virsh, cfg, scope)
        .await
        .map_err(|e| atex::error::chain(&e).to_string())?;
    let domain = match factory.create(scope).await {
        Ok(d) => d,
        Err(atex::virt::VirtError::Cancelled) => return Ok(Reservation::Interrupted),
        Err(e) => return Err(atex::error::chain(&e).to_string()),
    };
    let c = factory.config();
    println!(
        "domain {} is reachable with:\n  ssh -i {} -p {} -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null {}@{}\nPress Ctrl-C to destroy it.",
        domain.name(),
        c.key.display(),
        domain.port(),
        c.user,
        c.ssh_host
    );
    use std::io::Write as _;
    let _ = std::io::stdout().flush();
    scope.cancelled().await;
    let name = domain.name().to_string();
    domain
        .destroy()
        .await
        .map_err(|e| atex::error::chain(&e).to_string())?;
    println!("domain {name} destroyed");
    Ok(Reservation::Held)
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
    let code = rt.block_on(async move {
        let scope = Scope::root("virt-helper");
        // SIGTERM (a client's stop, another session's `evict`) ends the session cleanly:
        // its temporary directory is removed and its locks dropped.
        let _signals = match atex::signal::install(&scope) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("atex virt-helper: cannot install signal handlers: {e}");
                return ExitCode::from(EXIT_ERROR);
            }
        };
        let res = atex::virt::helper::serve_stdio(options, &scope).await;
        let _ = scope.shutdown(ShutdownOptions::default()).await;
        match res {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("atex virt-helper: {e}");
                ExitCode::from(EXIT_ERROR)
            }
        }
    });
    // Stdin is read by a blocking thread that cannot be interrupted: after a signal, do
    // not wait for its read to end.
    rt.shutdown_background();
    code
}
