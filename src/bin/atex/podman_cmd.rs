//! `atex podman`: containers atex left behind, images without a registry; and the
//! `podman:IMAGE` provisioner of `atex run`.
//!
//! podman reads its settings as usual: set `CONTAINERS_CONF` to use a project's own
//! `containers.conf`. Exit codes: 0 done, 1 some leftovers could not be removed, 2 the
//! command could not run (podman missing, bad arguments), 130 interrupted.

use std::path::PathBuf;
use std::process::ExitCode;

use atex::podman::cleanup::{find_leftovers, remove_leftovers};
use atex::podman::image::{BuildOptions, ImportOptions, build_with_deps, import_rootfs};
use atex::podman::{Podman, PodmanConfig, PodmanProvisioner};
use atex::scope::{Scope, ShutdownOptions};

use crate::errors;
use crate::fmf_cmd::{DiscoveryFlags, required_packages};

const EXIT_PARTIAL: u8 = 1;
const EXIT_ERROR: u8 = 2;
const EXIT_INTERRUPTED: u8 = 130;

/// The podman options of `atex run` (for `--provisioner podman:IMAGE`).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct PodmanRunArgs {
    /// `podman:` containers boot systemd as init (ready when systemd runs; tests may
    /// reboot them).
    #[arg(long)]
    podman_systemd: bool,
    /// Extra `podman run` argument for `podman:` containers (repeatable), for example
    /// `--podman-run-arg=--cap-add=all`.
    #[arg(
        long = "podman-run-arg",
        value_name = "ARG",
        allow_hyphen_values = true
    )]
    podman_run_args: Vec<String>,
    /// Run id in the names and `atex.run` labels of `podman:` containers (default:
    /// random; logged), for `atex podman cleanup --run ID`.
    #[arg(long, value_name = "ID")]
    podman_run_id: Option<String>,
}

/// The `podman:IMAGE` provisioner with `remotes` containers at most.
pub fn provisioner(
    image: &str,
    remotes: u32,
    args: &PodmanRunArgs,
) -> Result<PodmanProvisioner, atex::podman::provisioner::ConfigError> {
    let mut config = PodmanConfig::new(image);
    config.max_remotes = remotes as usize;
    config.systemd = args.podman_systemd;
    config.run_args = args.podman_run_args.clone();
    if let Some(id) = &args.podman_run_id {
        config.run_id = id.clone();
    }
    tracing::info!(run = %config.run_id, image, "podman containers of this run are labelled atex.run={}", config.run_id);
    PodmanProvisioner::new(config)
}

/// Arguments of `atex podman`.
#[derive(clap::Args, Debug)]
pub struct PodmanArgs {
    /// What to do.
    #[command(subcommand)]
    cmd: PodmanCommand,
}

/// `atex podman` subcommands.
#[derive(clap::Subcommand, Debug)]
enum PodmanCommand {
    /// Remove the containers atex created (found by their `atex` label), after a run was
    /// killed.
    Cleanup {
        /// Only the containers of this run (`atex.run` label).
        #[arg(long, value_name = "ID")]
        run: Option<String>,
        /// Only list what would be removed.
        #[arg(long)]
        dry_run: bool,
    },
    /// Images without a registry.
    Image {
        #[command(subcommand)]
        cmd: ImageCommand,
    },
}

/// `atex podman image` subcommands.
#[derive(clap::Subcommand, Debug)]
enum ImageCommand {
    /// Make an image of a root filesystem directory or tarball (`podman import`).
    Import {
        /// The root filesystem: a directory or a tarball.
        rootfs: PathBuf,
        /// The image name to give it (`localhost/name:tag`).
        tag: String,
        /// A `--change` instruction (`CMD ["/bin/bash"]`, `ENV PATH=...`), repeatable.
        #[arg(long = "change", value_name = "INSTRUCTION")]
        changes: Vec<String>,
    },
    /// Derive an image with extra packages from an existing one (`podman build`: the
    /// base's own package manager installs them): the packages given with `-p` and those
    /// an FMF tree's tests and plan need (`--fmf-root`: what `atex fmf --root DIR requires`
    /// prints). Prints the new image's id.
    BuildWithDeps {
        /// The base image (local: nothing is pulled).
        base: String,
        /// The new image's name.
        tag: String,
        /// A package to install (repeatable).
        #[arg(long = "package", short = 'p', value_name = "NAME")]
        packages: Vec<String>,
        /// Also install what the tests of this FMF tree (and the plan) require and
        /// recommend.
        #[arg(long = "fmf-root", value_name = "DIR")]
        fmf_root: Option<PathBuf>,
        /// The tmt plan whose tests' packages to install (default: every test of the tree).
        #[arg(long = "fmf-plan", value_name = "NAME", requires = "fmf_root")]
        fmf_plan: Option<String>,
        /// Context dimension `KEY=VALUE` for the tree's adjust (repeatable; last wins).
        #[arg(
            short = 'c',
            long = "fmf-context",
            value_name = "KEY=VALUE",
            requires = "fmf_root"
        )]
        fmf_context: Vec<String>,
        #[command(flatten)]
        discovery: DiscoveryFlags,
        /// `podman build --network MODE` for the install (`host`: this machine's network).
        #[arg(long, value_name = "MODE")]
        network: Option<String>,
    },
}

/// Runs `atex podman`.
pub fn run(args: PodmanArgs) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            errors::print(&errors::CliError::failed(
                "cannot start the async runtime",
                e,
            ));
            return ExitCode::from(EXIT_ERROR);
        }
    };
    rt.block_on(async move {
        let scope = Scope::root("podman");
        let signals = atex::signal::install(&scope).ok();
        let code = command(args, &scope).await;
        let _ = scope.shutdown(ShutdownOptions::default()).await;
        if signals.is_some_and(|s| s.interrupted()) {
            return ExitCode::from(EXIT_INTERRUPTED);
        }
        code
    })
}

async fn command(args: PodmanArgs, scope: &Scope) -> ExitCode {
    let podman = Podman::new();
    match args.cmd {
        PodmanCommand::Cleanup { run, dry_run } => {
            let found = match find_leftovers(&podman, run.as_deref(), scope).await {
                Ok(f) => f,
                Err(e) => {
                    errors::print(&e);
                    return ExitCode::from(EXIT_ERROR);
                }
            };
            for l in &found {
                println!("{}\t{}\t{}", l.name, l.run, l.id);
            }
            if dry_run || found.is_empty() {
                return ExitCode::SUCCESS;
            }
            match remove_leftovers(&podman, &found, scope).await {
                Ok(n) => {
                    eprintln!("removed {n} containers");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    errors::print(&e);
                    ExitCode::from(EXIT_PARTIAL)
                }
            }
        }
        PodmanCommand::Image { cmd } => {
            let res = match cmd {
                ImageCommand::Import {
                    rootfs,
                    tag,
                    changes,
                } => import_rootfs(&podman, &rootfs, &tag, &ImportOptions { changes }, scope).await,
                ImageCommand::BuildWithDeps {
                    base,
                    tag,
                    mut packages,
                    fmf_root,
                    fmf_plan,
                    fmf_context,
                    discovery,
                    network,
                } => {
                    if let Some(root) = fmf_root {
                        match required_packages(root, fmf_plan, &fmf_context, &discovery) {
                            Ok(required) => packages.extend(required),
                            Err(e) => {
                                errors::print(&e);
                                return ExitCode::from(EXIT_ERROR);
                            }
                        }
                    }
                    packages.sort();
                    packages.dedup();
                    tracing::info!(%base, %tag, ?packages, "building an image with packages");
                    let options = BuildOptions { network };
                    build_with_deps(&podman, &base, &packages, &tag, &options, scope).await
                }
            };
            match res {
                Ok(id) => {
                    println!("{id}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    errors::print(&e);
                    ExitCode::from(EXIT_ERROR)
                }
            }
        }
    }
}
