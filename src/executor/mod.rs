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
#[async_trait]
pub trait Executor: Send + fmt::Debug {
    /// Prepares the system. Called once before the first test.
    async fn start(&mut self, scope: &Scope) -> Result<(), ExecutorError>;

    /// Runs `test` into `artifacts` (an existing, empty directory). Cancelling `scope` stops
    /// the test; the executor still leaves a result line saying why.
    async fn run_test(
        &mut self,
        test: &str,
        artifacts: &Path,
        scope: &Scope,
    ) -> Result<TestOutcome, ExecutorError>;

    /// Cleans up the system. Tolerates a dead connection.
    async fn stop(&mut self, scope: &Scope) -> Result<(), ExecutorError>;
}

/// Creates an executor for each remote an orchestrator gets.
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
