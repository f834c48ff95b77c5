//! `atex shvirt HOST_SPEC reservations|reserve|release`: the shared VM host by hand.
//!
//! HOST_SPEC is `local` or `[user@]host[:port]` (SSH). The helper (`atex virt-helper`) is
//! started there for the command's session; its reservations end with it. Exit codes: 0
//! done, 2 the command could not run (no helper, bad arguments, a failed reservation),
//! 130 interrupted before the domain was ready.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use atex::connection::ErrOutput;
use atex::provisioner::{Count, Provisioner, SharedVirtConfig, SharedVirtProvisioner};
use atex::scope::{Scope, ShutdownOptions};
use atex::virt::helper::HelperClient;

use crate::virt_run::{helper_argv, shvirt_host};

const EXIT_ERROR: u8 = 2;
const EXIT_INTERRUPTED: u8 = 130;

/// Arguments of `atex shvirt`.
#[derive(clap::Args, Debug)]
pub struct ShvirtArgs {
    /// The VM host: `local` or `[user@]host[:port]`.
    host: String,
    /// Command line of the helper on the VM host (split at white space).
    #[arg(
        long,
        value_name = "CMD",
        default_value = "atex virt-helper",
        global = true
    )]
    helper: String,
    /// libvirt URI the helper uses.
    #[arg(short = 'c', long = "connect", value_name = "URI", global = true)]
    uri: Option<String>,
    /// Private SSH key for the VM host.
    #[arg(long, value_name = "FILE", global = true)]
    host_key: Option<PathBuf>,
    /// SSH host-key policy for the VM host: strict, accept-new or insecure.
    #[arg(long, default_value = "strict", value_name = "POLICY", global = true)]
    ssh_host_key_policy: atex::connection::ssh::HostKeyPolicy,
    /// What to do.
    #[command(subcommand)]
    cmd: ShvirtCommand,
}

/// `atex shvirt` subcommands.
#[derive(clap::Subcommand, Debug)]
enum ShvirtCommand {
    /// List the host's persistent domains and who holds each.
    Reservations,
    /// Reserve a domain, copy IMAGE onto it, start it, print the ssh command, hold it until
    /// Ctrl-C, then shut it off and release it.
    Reserve {
        /// The image volume.
        image: String,
        /// `dir` pool of the image and of the domains' disks.
        #[arg(long, default_value = "default")]
        pool: String,
        /// Only domains whose name matches this regex in full.
        #[arg(long, value_name = "RE")]
        filter: Option<String>,
        /// Private SSH key the guest accepts.
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        /// Address of the domains' forwarded ports (default: the VM host's).
        #[arg(long, value_name = "ADDR")]
        domain_host: Option<String>,
        /// Name of this session in `reservations`.
        #[arg(long, value_name = "NAME")]
        name: Option<String>,
    },
    /// Free DOMAIN whoever holds it: the session holding it (another `atex`) has its helper
    /// terminated, which frees every domain of that session; that session then loses them.
    Release {
        /// The domain.
        domain: String,
    },
}

/// Runs `atex shvirt`.
pub fn run(args: ShvirtArgs) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("atex: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_ERROR);
        }
    };
    rt.block_on(async move {
        let scope = Scope::root("shvirt");
        let signals = match atex::signal::install(&scope) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("atex: cannot install signal handlers: {e}");
                return ExitCode::from(EXIT_ERROR);
            }
        };
        let res = session(args, &scope).await;
        let report = scope.shutdown(ShutdownOptions::default()).await;
        if !report.is_clean() {
            eprintln!("atex: cleanup incomplete: {report:?}");
        }
        match res {
            Ok(()) => ExitCode::SUCCESS,
            Err(_) if signals.interrupted() => ExitCode::from(EXIT_INTERRUPTED),
            Err(e) => {
                eprintln!("atex: {e}");
                ExitCode::from(EXIT_ERROR)
            }
        }
    })
}

async fn session(args: ShvirtArgs, scope: &Scope) -> Result<(), String> {
    let template =
        atex::connection::ssh::SshConfig::new("template").host_key_policy(args.ssh_host_key_policy);
    let (host, address) = shvirt_host(&args.host, args.host_key.as_ref(), &template)?;
    let argv = helper_argv(&args.helper, args.uri.as_deref())?;
    let chain = |e: &dyn std::error::Error| atex::error::chain(e).to_string();
    match args.cmd {
        ShvirtCommand::Reservations => {
            let client = HelperClient::spawn(host.as_ref(), argv, ErrOutput::Null, scope)
                .await
                .map_err(|e| chain(&e))?;
            let domains = client.reservations(scope).await.map_err(|e| chain(&e))?;
            for (domain, holder) in &domains {
                println!("{domain}\t{holder}");
            }
            client.close(Duration::from_secs(5)).await;
            Ok(())
        }
        ShvirtCommand::Release { domain } => {
            let client = HelperClient::spawn(host.as_ref(), argv, ErrOutput::Null, scope)
                .await
                .map_err(|e| chain(&e))?;
            let ended = client.evict(&domain, scope).await.map_err(|e| chain(&e));
            client.close(Duration::from_secs(5)).await;
            match ended? {
                Some(pid) => println!(
                    "{domain} released (its session's helper, pid {pid}, was ended; that \
                     session's other domains are free too)"
                ),
                None => println!("{domain} was not reserved"),
            }
            Ok(())
        }
        ShvirtCommand::Reserve {
            image,
            pool,
            filter,
            key,
            domain_host,
            name,
        } => {
            if !key.is_file() {
                return Err(format!("private key {} does not exist", key.display()));
            }
            let key = std::path::absolute(&key).unwrap_or(key);
            let mut cfg =
                SharedVirtConfig::new(argv, image, key.clone(), domain_host.unwrap_or(address));
            cfg.pool = pool;
            cfg.filter = filter;
            cfg.reserve_name = name;
            cfg.max_remotes = 1;
            let p = Arc::new(SharedVirtProvisioner::new(host, cfg.clone()));
            p.start(scope).await.map_err(|e| chain(&e))?;
            let held = async {
                p.provision(Count::N(1)).map_err(|e| chain(&e))?;
                let remote = match scope.run(p.get_remote()).await {
                    None => return Err("interrupted".to_string()),
                    Some(r) => r.map_err(|e| chain(&e))?,
                };
                let dest = remote.describe();
                let port = dest.rsplit(':').next().unwrap_or("22");
                println!(
                    "reserved; reachable with:\n  ssh -i {} -p {port} -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null {}@{}\nPress Ctrl-C to release it.",
                    key.display(),
                    cfg.user,
                    cfg.domain_host
                );
                use std::io::Write as _;
                let _ = std::io::stdout().flush();
                scope.cancelled().await;
                Ok(())
            }
            .await;
            let stopped = p.stop().await.map_err(|e| chain(&e));
            held?;
            stopped?;
            println!("released");
            Ok(())
        }
    }
}
