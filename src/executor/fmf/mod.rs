//! The FMF executor: runs tmt-style tests through a remote wrapper that speaks the
//! test-control protocol (`spec/test-control.md`, `spec/executors.md` §5).
//!
//! - [`control`]: the test-control stream parser;
//! - [`reporter`]: results and uploaded files in the artifacts directory;
//! - [`test`](mod@test): the test and plan descriptions the executor consumes;
//! - [`scripts`]: the bash scripts run on the system;
//! - [`FmfExecutor`] (`executor.rs`): the [`Executor`](crate::executor::Executor) over any
//!   [`Connection`](crate::connection::Connection), with [`FmfOptions`] (`options.rs`) and
//!   the [`FmfExecutorFactory`] over discovery results (`factory.rs`);
//! - [`framework`]: hooks for tests of a `framework` ([`TestFramework`]; BeakerLib is
//!   [`crate::executor::beakerlib`]); [`helpers`]: tmt's helper commands (`tmt-report-result`,
//!   `tmt-file-submit`, `tmt-reboot`, `tmt-abort`) on the `PATH` of every test;
//! - the phases of a test, one file each: the work directory (`workdir.rs`), the per-test
//!   setup (`setup.rs`), how the test is started (`launch.rs`), the run (`run.rs`: start, control loop, wait for exit, reconnect),
//!   why a run was aborted (`abort.rs`), killing and cleaning up on the system
//!   (`cleanup.rs`); with the environment (`env.rs`) and scripts run on the system
//!   (`shell.rs`).
//!
//! # How a test runs
//!
//! [`Executor::start`](crate::executor::Executor::start) creates a work directory `W` on the system (in `/var/tmp`, else
//! `$HOME`, else `/tmp`, or [`FmfOptions::work_base`]), uploads the tests tree to `W/tests`
//! with the connection's own upload and runs the plan's `prepare` steps.
//!
//! [`Executor::run_test`](crate::executor::Executor::run_test) first runs a setup script (install `require`/`recommend` with the
//! system's package manager, write `W/test/metadata.yaml`, the bash wrapper and the test
//! script); its failure records `{"status": "infra", "note": "TestSetupError(...)"}`. Then
//! the wrapper runs the test; its stdout is the control channel, the test's combined output
//! goes to `testout.temp` (exactly what the test printed: the wrapper's own messages go to
//! `W/test/wrapper.N.log` and are quoted in the abort note when the wrapper fails). The
//! deadline (test `duration`, default 5 minutes) starts when the test starts.
//!
//! On a connection that supervises process groups itself
//! ([`Connection::supervises_process_groups`](crate::connection::Connection::supervises_process_groups):
//! the local one) a test starts without the wrapper, one shell per test instead of two
//! (`launch.rs`): `test.sh` begins by moving the control channel to a high descriptor, the
//! connection kills what the test left in its process group, and the exit status is the
//! `exitcode`. The test sees the same working directory, descriptors and environment
//! (without the wrapper's own `ATEX_TEST_PGID_FILE` and `ATEX_WRAPPER_LOG`); its parent is
//! the atex process. `tty: true`, [`FmfOptions::contain_daemons`],
//! [`FmfOptions::no_bg_kill`] and [`FmfOptions::always_wrap`] keep the wrapper.
//!
//! A test that cannot be finished is *aborted*: timeout, cancellation, a broken control
//! stream, an invalid `duration`/`exitcode` argument, a wrapper that died, a lost
//! connection. Its remote process tree is killed and the fallback result is
//! `{"status": "infra", "note": "<ErrorType>(<message>)", "files": ["output.txt"]}`
//! (test-control.md §5.4). A connection that breaks mid-test is returned as
//! [`ExecutorError::Connection`](crate::executor::ExecutorError::Connection), so that orchestrators treat the remote as lost.
//!
//! The control channel is read until it ends; once the wrapper reported `exitcode` (its
//! last message), for [`FmfOptions::exit_drain`] ([`EXIT_DRAIN`], 2 s) at most: a daemon
//! the test left behind may hold it open. It is then closed and the test is finished with
//! the reported exit code.
//!
//! After `disconnect` the channel is closed at once (further writes to it fail with EPIPE,
//! over SSH too), and after a non-zero wrapper exit (the system rebooted) the connection is
//! re-established with [`Connection::reconnect`](crate::connection::Connection::reconnect) until the deadline, and the test starts
//! again with `TMT_REBOOT_COUNT` and `TMT_TEST_RESTART_COUNT` incremented.
//!
//! [`Executor::stop`](crate::executor::Executor::stop) runs the plan's `finish` steps and removes `W`, also when the run was
//! cancelled: cleanups run in a [shielded](crate::scope::Scope::shielded) child of the caller's scope,
//! which graceful cancellation does not reach and forcing does.
//!
//! ```no_run
//! use std::sync::Arc;
//! use atex::connection::LocalConnection;
//! use atex::executor::Executor;
//! use atex::executor::fmf::{FmfExecutor, FmfPlan, FmfTest};
//! use atex::scope::Scope;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let scope = Scope::root("doc");
//! let tests = vec![FmfTest::new("/smoke", "echo hello")];
//! let mut exec = FmfExecutor::new(Arc::new(LocalConnection::new()), "tests-tree", tests, FmfPlan::default());
//! exec.start(&scope).await?;
//! let artifacts = tempfile::tempdir()?;
//! let outcome = exec.run_test("/smoke", artifacts.path(), &scope).await;
//! exec.stop(&scope).await?;
//! assert_eq!(outcome?.exit_code, 0);
//! # Ok(()) }
//! ```

mod abort;
mod cleanup;
pub mod control;
mod env;
mod executor;
mod factory;
pub mod framework;
pub mod helpers;
mod launch;
mod options;
pub mod reporter;
mod run;
pub mod scripts;
mod setup;
mod shell;
pub mod test;
mod workdir;

#[cfg(test)]
mod tests;

pub use executor::{EvalExitCode, FRAMEWORK_REFUSED_EXIT, FmfExecutor};
pub use factory::FmfExecutorFactory;
pub use framework::{FrameworkContext, TestFramework};
pub use options::{DEFAULT_DURATION, EXIT_DRAIN, FmfOptions};
pub use test::{FmfPlan, FmfTest, FmfTestSet, PlanStep};
