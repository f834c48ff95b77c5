//! Executors run one test at a time on a connected system and write its
//! [artifacts](crate::artifacts): a `results` JSON-lines file and a `files/` tree.
//!
//! * [`Executor::start`] prepares the system (upload tests, plan prepare steps);
//! * [`Executor::run_test`] runs one test into an existing, empty artifacts directory and
//!   returns its exit code; cancelling the scope passed to it stops the test;
//! * [`Executor::stop`] cleans up (plan finish steps, work directory) and tolerates a dead
//!   connection.
//!
//! Implementations: [`CommandExecutor`] (an argv per test); the FMF executor, with
//! [`beakerlib`] tests through its framework hooks.

pub mod beakerlib;
mod command;
pub mod fmf;

pub use command::{CommandExecutor, Evaluate};

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::connection::ConnectionError;
use crate::error::BoxError;
use crate::provisioner::Remote;
use crate::scope::Scope;

/// Errors of executors.
///
/// `Display` names what failed (the test, the setup step); the cause is the
/// [`source`](std::error::Error::source). A connection error stays reachable through the
/// chain wherever it is wrapped: [`connection`](Self::connection) finds it and
/// [`is_remote_lost`](Self::is_remote_lost) tells whether the remote is gone.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExecutorError {
    /// The executor knows no test of that name.
    #[error("unknown test '{0}'")]
    UnknownTest(String),
    /// Preparing the system or the test failed.
    #[error("setup of {what} failed")]
    Setup {
        /// What was being set up (`executor`, `plan prepare`, a test name).
        what: String,
        /// The cause (a failed command with its output, a failed upload, …).
        #[source]
        source: BoxError,
    },
    /// The test was aborted (timeout, broken control stream, a wrapper that died). A
    /// connection that broke while the test ran is [`Connection`](Self::Connection)
    /// instead: the remote is lost.
    #[error("test '{test}' aborted")]
    Aborted {
        /// The test.
        test: String,
        /// Why.
        #[source]
        reason: BoxError,
    },
    /// The test was cancelled (the scope was cancelled).
    #[error("test '{test}' cancelled")]
    Cancelled {
        /// The test.
        test: String,
    },
    /// The connection failed. When [`ConnectionError::is_disconnect`] holds, the remote is
    /// lost (orchestrators replace it); executors still leave an `infra` result line.
    #[error("{}", match test {
        Some(test) => format!("the connection failed during test '{test}'"),
        None => "the connection failed".to_string(),
    })]
    Connection {
        /// The test that was running, if any.
        test: Option<String>,
        /// The cause.
        #[source]
        source: ConnectionError,
    },
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

impl From<ConnectionError> for ExecutorError {
    fn from(source: ConnectionError) -> Self {
        ExecutorError::Connection { test: None, source }
    }
}

impl ExecutorError {
    /// Whether the error is a cancellation rather than a failure.
    pub fn is_cancelled(&self) -> bool {
        matches!(self, ExecutorError::Cancelled { .. })
    }

    /// The first [`ConnectionError`] in the chain of this error, wherever it is wrapped
    /// (the connection of a test, an upload under a setup, a command under an abort).
    pub fn connection(&self) -> Option<&ConnectionError> {
        crate::error::find::<ConnectionError>(self)
    }

    /// Whether the remote is lost: a [`ConnectionError`] in the chain says the connection
    /// broke ([`ConnectionError::is_disconnect`]). Orchestrators replace the remote and do
    /// not stop its executor.
    pub fn is_remote_lost(&self) -> bool {
        self.connection()
            .is_some_and(ConnectionError::is_disconnect)
    }

    /// A connection error while `test` ran.
    pub fn connection_in(test: impl Into<String>, source: ConnectionError) -> Self {
        ExecutorError::Connection {
            test: Some(test.into()),
            source,
        }
    }

    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        ExecutorError::Io {
            context: context.into(),
            source,
        }
    }

    pub(crate) fn setup(what: impl Into<String>, source: impl Into<BoxError>) -> Self {
        ExecutorError::Setup {
            what: what.into(),
            source: source.into(),
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

    /// Runs `test` like [`run_test`](Executor::run_test), except that the executor may
    /// hand the attempt's result lines back (`Some(lines)`: exactly the bytes the `results`
    /// file would hold) instead of writing that file. Everything else is as with
    /// `run_test`: the `files/` tree, the exit code, the errors, and the `infra` line of a
    /// test that could not run to its end, which is written to the `results` file. Never
    /// both: when it returns lines, no `results` file exists.
    ///
    /// Callers that pass the attempt straight on to an aggregator
    /// ([`Aggregator::ingest_lines`](crate::aggregator::Aggregator::ingest_lines)) save
    /// writing, reading back and removing a file per test (the AdHoc orchestrator does).
    /// The default runs `run_test` and returns `None`; the [`CommandExecutor`] overrides it.
    ///
    /// # Cancel safety
    ///
    /// As [`run_test`](Executor::run_test).
    async fn run_test_lines(
        &mut self,
        test: &str,
        artifacts: &Path,
        scope: &Scope,
    ) -> Result<(TestOutcome, Option<Vec<u8>>), ExecutorError> {
        self.run_test(test, artifacts, scope)
            .await
            .map(|outcome| (outcome, None))
    }

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
