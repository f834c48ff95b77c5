//! Executors run one test at a time on a connected system and write its
//! [artifacts](crate::artifacts): a `results` JSON-lines file and a `files/` tree.
//!
//! * [`Executor::start`] prepares the system (upload tests, plan prepare steps);
//! * [`Executor::run_test`] runs one test into an existing, empty artifacts directory and
//!   returns its exit code; cancelling the scope passed to it stops the test;
//! * [`Executor::stop`] cleans up (plan finish steps, work directory) and tolerates a dead
//!   connection.
//!
//! Implementations: [`CommandExecutor`] (an argv per test); the FMF executor.

mod command;
pub mod fmf;

pub use command::{CommandExecutor, Evaluate};

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::connection::ConnectionError;
use crate::provisioner::Remote;
use crate::scope::Scope;

/// Errors of executors.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExecutorError {
    /// The executor knows no test of that name.
    #[error("unknown test '{0}'")]
    UnknownTest(String),
    /// Preparing the system or the test failed.
    #[error("setup of {what} failed: {message}")]
    Setup {
        /// What was being set up (`executor`, a test name).
        what: String,
        /// Details (often the output of the failed command).
        message: String,
    },
    /// The test was aborted (timeout, broken control stream, a wrapper that died). A
    /// connection that broke while the test ran is [`Connection`](Self::Connection)
    /// instead: the remote is lost.
    #[error("test '{test}' aborted: {reason}")]
    Aborted {
        /// The test.
        test: String,
        /// Why.
        reason: String,
    },
    /// The test was cancelled (the scope was cancelled).
    #[error("test '{test}' cancelled")]
    Cancelled {
        /// The test.
        test: String,
    },
    /// The connection failed. When [`ConnectionError::is_disconnect`] holds, the remote is
    /// lost (orchestrators replace it); executors still leave an `infra` result line.
    #[error(transparent)]
    Connection(#[from] ConnectionError),
    /// Local I/O on the artifacts directory failed.
    #[error("{context}")]
    Io {
        /// What was being done.
        context: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

impl ExecutorError {
    /// Whether the error is a cancellation rather than a failure.
    pub fn is_cancelled(&self) -> bool {
        matches!(self, ExecutorError::Cancelled { .. })
    }

    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        ExecutorError::Io {
            context: context.into(),
            source,
        }
    }
}

/// What [`Executor::run_test`] reports about a finished test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TestOutcome {
    /// The test's exit code (128 + signal when killed), after the executor's evaluation.
    pub exit_code: i32,
    /// How long the test ran.
    pub duration: Duration,
}

/// Runs tests, one at a time, on one system.
///
/// # Contract
///
/// What every implementation guarantees (checked by `atex::testing::conformance::executor`,
/// feature `conformance`):
///
/// * [`start`](Executor::start) comes first; [`run_test`](Executor::run_test) then runs any
///   number of tests one after the other; [`stop`](Executor::stop) ends (also without a
///   `start`, and twice).
/// * `run_test` writes only into its artifacts directory (existing and empty): a `results`
///   file of JSON objects, one per result line, and a `files/` tree where every file a
///   result lists lives at [`file_location`](crate::artifacts::file_location) — nothing
///   else. It returns the test's exit code; the verdict of the attempt
///   ([`Verdict::of_attempt`](crate::verdict::Verdict::of_attempt)) follows the results.
/// * An unknown test is an error naming it.
/// * A test that cannot run to its end (cancelled, timed out, its connection lost) still
///   leaves an `infra` result line saying why; the error says which: a cancellation
///   ([`ExecutorError::is_cancelled`]), a lost connection ([`ExecutorError::Connection`]).
#[async_trait]
pub trait Executor: Send + fmt::Debug {
    /// Prepares the system. Called once before the first test.
    ///
    /// # Cancel safety
    ///
    /// Cancel through `scope`: a cancelled start returns an error and `stop` still cleans
    /// up what it made.
    async fn start(&mut self, scope: &Scope) -> Result<(), ExecutorError>;

    /// Runs `test` into `artifacts` (an existing, empty directory). Cancelling `scope` stops
    /// the test; the executor still leaves a result line saying why.
    ///
    /// # Cancel safety
    ///
    /// Cancel through `scope`, not by dropping the future: cancelling terminates the test's
    /// whole process tree and returns a cancellation error after writing the `infra` line.
    /// A dropped future kills the test's processes (their handles are dropped) but may
    /// leave the artifacts without a result line.
    async fn run_test(
        &mut self,
        test: &str,
        artifacts: &Path,
        scope: &Scope,
    ) -> Result<TestOutcome, ExecutorError>;

    /// Cleans up the system. Tolerates a dead connection.
    ///
    /// # Cancel safety
    ///
    /// Runs its cleanup even under a gracefully cancelled `scope` (in a shielded child);
    /// forcing the scope cuts it short.
    async fn stop(&mut self, scope: &Scope) -> Result<(), ExecutorError>;
}

/// Creates an executor for each remote an orchestrator gets.
///
/// # Contract
///
/// `create` is cheap and does no I/O: the executor works on the remote from
/// [`Executor::start`] on. Orchestrators call it from any task, once per remote.
pub trait ExecutorFactory: Send + Sync {
    /// A new executor bound to `remote`.
    fn create(&self, remote: Arc<dyn Remote>) -> Box<dyn Executor>;
}

impl<F> ExecutorFactory for F
where
    F: Fn(Arc<dyn Remote>) -> Box<dyn Executor> + Send + Sync,
{
    fn create(&self, remote: Arc<dyn Remote>) -> Box<dyn Executor> {
        self(remote)
    }
}
