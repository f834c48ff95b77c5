//! Orchestrators tie provisioners, executors and aggregators together: they get remotes,
//! run tests on them and hand the artifacts to an aggregator.
//!
//! * [`SimpleOrchestrator`]: one remote, tests one after another.
//! * [`AdHocOrchestrator`]: a pool of remotes from one or many provisioners; a free remote
//!   immediately gets the next test; reruns, destructive tests, priorities and remotes
//!   joining mid-run are handled on the fly. It publishes typed [`events`].

pub mod adhoc;
pub mod events;
#[cfg(feature = "progress")]
pub mod progress;
mod simple;

pub use adhoc::AdHocOrchestrator;
pub use simple::SimpleOrchestrator;

use std::time::Duration;

use crate::aggregator::AggregatorError;
use crate::executor::ExecutorError;
use crate::provisioner::ProvisionError;

/// Errors that stop a whole run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OrchestratorError {
    /// No remote could be had.
    #[error(transparent)]
    Provision(#[from] ProvisionError),
    /// Preparing a remote failed.
    #[error("executor setup failed: {0}")]
    Setup(#[source] ExecutorError),
    /// An aggregator could not record results.
    #[error(transparent)]
    Aggregate(#[from] AggregatorError),
    /// Creating a temporary artifacts directory failed.
    #[error("{context}")]
    Io {
        /// What was being done.
        context: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The run was cancelled.
    #[error("the run was cancelled")]
    Cancelled,
    /// Bad configuration (for example an empty test list).
    #[error("{0}")]
    Config(String),
    /// Too many remotes failed their setup (executor start).
    #[error("setup retries limit exceeded, broken infra? ({failures} failed setups, last: {last})")]
    SetupLimit {
        /// How many setups failed.
        failures: usize,
        /// The last setup error.
        last: String,
    },
}

/// What happened to one test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestReport {
    /// The test's name.
    pub name: String,
    /// Its exit code, when it ran to the end.
    pub exit_code: Option<i32>,
    /// Why it did not run to the end.
    pub error: Option<String>,
    /// How long it ran.
    pub duration: Duration,
    /// Whether its results were ingested.
    pub ingested: bool,
}

impl TestReport {
    /// Whether the test ran to the end with exit code 0.
    pub fn passed(&self) -> bool {
        self.exit_code == Some(0) && self.error.is_none()
    }
}

/// The outcome of a run.
#[derive(Debug, Clone, Default)]
pub struct RunSummary {
    /// One report per test run, in the order they finished.
    pub tests: Vec<TestReport>,
    /// Errors of ingests (the run went on).
    pub ingest_errors: Vec<String>,
    /// Whether the run was cancelled before every test ran.
    pub cancelled: bool,
    /// Attempts that were rerun (their results went to the old-results aggregator, if
    /// any), in the order they finished.
    pub reruns: Vec<TestReport>,
    /// Tests that never ran because the run was cancelled or aborted first.
    pub not_run: Vec<String>,
    /// Errors of failed remote setups (executor starts).
    pub setup_errors: Vec<String>,
    /// Events dropped because the event consumer was too slow.
    pub events_dropped: u64,
}

impl RunSummary {
    /// Number of tests that passed.
    pub fn passed(&self) -> usize {
        self.tests.iter().filter(|t| t.passed()).count()
    }

    /// Number of tests that did not pass.
    pub fn failed(&self) -> usize {
        self.tests.len() - self.passed()
    }
}
