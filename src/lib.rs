//! # atex — an async toolbox to provision machines and run FMF/tmt-style tests on them
//!
//! atex gets systems (the local machine, existing SSH hosts), runs tests on them as an
//! *ad-hoc pool* — a free system immediately gets the next test — and collects
//! the results. Its building blocks are independent; use only the ones you need:
//!
//! | block | job | implementations |
//! | --- | --- | --- |
//! | [`connection`] | run commands and copy files on one system | [`LocalConnection`](connection::LocalConnection), `SshConnection` (feature `ssh`) |
//! | [`provisioner`] | hand out connected systems ([`Remote`](provisioner::Remote)s) | [`LocalProvisioner`](provisioner::LocalProvisioner), `SshHostPool` (feature `ssh`) |
//! | [`executor`] | run one test on one system into an [`artifacts`] directory | [`CommandExecutor`](executor::CommandExecutor), [`FmfExecutor`](executor::fmf::FmfExecutor) (test-control protocol) |
//! | [`aggregator`] | ingest finished tests' artifacts; reports | [`JsonlAggregator`](aggregator::JsonlAggregator) (plain/gzip/xz), [`YamlAggregator`](aggregator::YamlAggregator), [`ReportAggregator`](aggregator::ReportAggregator) (JUnit XML, HTML), `ReportPortalAggregator` (feature `reportportal`), [`MultiAggregator`](aggregator::MultiAggregator) |
//! | [`results`] | read results files back (plain/gzip/xz) | [`read_rows`](results::read_rows), [`Report::add_results`](aggregator::Report::add_results) |
//! | [`fmf`] | parse FMF trees, adjust, filter, discover tests from tmt plans | pure Rust, byte-compatible with Python `fmf` |
//! | [`orchestrator`] | tie them together; typed run [`events`](orchestrator::events) carrying [`RunStats`](orchestrator::RunStats), drawn by [`render`](orchestrator::render) | [`SimpleOrchestrator`](orchestrator::SimpleOrchestrator), [`AdHocOrchestrator`](orchestrator::AdHocOrchestrator) (pool scheduling with [policies](orchestrator::adhoc::policy)) |
//! | [`verdict`] | one verdict per test attempt, from its results (exit code only without any) | [`Verdict`](verdict::Verdict) |
//! | [`testing`] | in-memory doubles and benchmark workloads for your own tests | [`MemoryProvisioner`](testing::MemoryProvisioner), [`MemoryPlan`](testing::MemoryPlan) |
//! | [`scope`], [`guard`], [`process`], [`signal`] | structured concurrency and cleanup | |
//! | [`error`] | error chains: every error keeps its cause as `source()`; print them whole | [`chain`](error::chain), [`find`](error::find) |
//!
//! ## Quick start
//!
//! ```
//! use std::sync::Arc;
//! use atex::aggregator::{Aggregator, JsonlAggregator, JsonlOptions};
//! use atex::executor::{CommandExecutor, Executor};
//! use atex::orchestrator::SimpleOrchestrator;
//! use atex::provisioner::{LocalProvisioner, Remote};
//! use atex::scope::{Scope, ShutdownOptions};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let out = tempfile::tempdir()?;
//! let scope = Scope::root("example");
//! let aggregator = Arc::new(JsonlAggregator::create(
//!     out.path().join("results.jsonl"), out.path().join("files"), JsonlOptions::default())?);
//! let factory = Arc::new(|remote: Arc<dyn Remote>| {
//!     Box::new(CommandExecutor::new(remote)
//!         .with_test("/hello", ["echo", "hello"])
//!         .with_test("/false", ["false"])) as Box<dyn Executor>
//! });
//! let run = SimpleOrchestrator::new(Arc::new(LocalProvisioner::new()), factory,
//!     aggregator.clone(), "local", vec!["/hello".into(), "/false".into()]);
//! let summary = run.run(&scope).await?;
//! aggregator.finish().await?;
//! assert_eq!((summary.passed(), summary.failed()), (1, 1));
//! assert!(scope.shutdown(ShutdownOptions::default()).await.is_clean());
//! # Ok(()) }
//! ```
//!
//! ## Cargo features
//!
//! | feature | default | what it adds |
//! | --- | --- | --- |
//! | `cli` | yes | the `atex` program (clap, tracing-subscriber; enables `progress`) |
//! | `ssh` | yes | in-process SSH connections and the SSH host pool (russh) |
//! | `testingfarm` | | the [Testing Farm](testingfarm) API client, its request journal and `atex tf` (reqwest, rustls with ring) |
//! | `libvirt` | | [virtual machines](virt): transient clones of an origin domain, cleanup of leftovers, the shared VM host helper and its client (`virsh` over any connection; xmltree) |
//! | `progress` | with `cli` | the live progress bar of [`render`](orchestrator::render) (indicatif) |
//! | `mimalloc` | | mimalloc as the global allocator of the `atex` program and the benchmark examples (faster FMF loads, higher peak memory with many remotes; benches/README.md §0) |
//!
//! With `default-features = false` the crate is the core library: no CLI, no SSH.
//!
//! ## Cancellation and cleanup guarantees
//!
//! * Everything runs in a [`Scope`](scope::Scope) tree. Cancelling a scope asks every task
//!   under it to stop; the library spawns no detached task and installs no signal handler
//!   ([`signal::install`] is opt-in) and never creates a runtime.
//! * Every local child process leads its own process group. Cancellation sends SIGTERM to
//!   the whole group, then SIGKILL after the scope's kill grace (at once on forced
//!   cancellation); dropping a process handle SIGKILLs the group synchronously.
//! * Outside resources (scratch directories, remote processes, remote work directories)
//!   sit in [`CleanupGuard`](guard::CleanupGuard)s. A guard dropped without release hands
//!   its cleanup to the scope tree's reaper, which [`Scope::shutdown`](scope::Scope::shutdown)
//!   awaits (with a deadline) and reports on; an explicit release runs in the reaper too, so
//!   a release cut short by a timeout or a dropped future still finishes and is reported.
//!   Blocking work runs through [`Scope::spawn_blocking`](scope::Scope::spawn_blocking), so
//!   a shutdown waits for it as well.
//! * Limits: cleanups handed to the reaper after the runtime stopped cannot run; they are
//!   logged at `error` level with a description precise enough to clean up by hand. A
//!   process killed with SIGKILL runs no cleanup at all.

pub mod aggregator;
pub mod artifacts;
pub mod connection;
pub mod duration;
pub mod error;
pub mod executor;
pub mod fmf;
pub mod fs_tree;
pub mod guard;
#[cfg(any(feature = "testingfarm", feature = "reportportal"))]
pub mod http_retry;
pub mod jsonfmt;
pub mod orchestrator;
#[cfg(feature = "podman")]
pub mod podman;
pub mod process;
pub mod provisioner;
mod pyfmt;
pub mod results;
pub mod scope;
pub mod signal;
pub mod testing;
#[cfg(feature = "testingfarm")]
pub mod testingfarm;
pub mod timestamp;
pub mod verdict;
#[cfg(feature = "libvirt")]
pub mod virt;
