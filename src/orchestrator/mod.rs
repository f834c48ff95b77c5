//! Orchestrators tie provisioners, executors and aggregators together: they get remotes,
//! run tests on them and hand the artifacts to an aggregator.
//!
//! * [`SimpleOrchestrator`]: one remote, tests one after another.
//! * [`AdHocOrchestrator`]: a pool of remotes from one or many provisioners; a free remote
//!   immediately gets the next test; reruns, destructive tests, priorities and remotes
//!   joining mid-run are handled on the fly. It publishes typed [`events`], each carrying
//!   the run's [`RunStats`].
//!
//! [`render`] draws a run for humans: a live bar on a terminal, one line per event
//! otherwise, and the final summary table.

pub mod adhoc;
pub mod events;
mod reasons;
pub mod render;
mod simple;
mod stats;
mod summary;

pub use adhoc::AdHocOrchestrator;
pub use reasons::{CancelReason, ReleaseReason, RetireReason};
pub use simple::SimpleOrchestrator;
pub use stats::{RemoteStats, RunStats, VerdictCounts};
pub use summary::{RetiredRemote, RunSummary, TestReport};
pub(crate) use summary::{attempt_lines_results, attempt_results};

use crate::aggregator::AggregatorError;
use crate::executor::ExecutorError;
use crate::provisioner::ProvisionError;
pub use crate::verdict::Verdict;

/// Errors that stop a whole run. `Display` says what failed; the cause is the
/// [`source`](std::error::Error::source).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OrchestratorError {
    /// No remote could be had.
    #[error("no remote could be had")]
    Provision(#[from] ProvisionError),
    /// Preparing a remote failed.
    #[error("executor setup failed")]
    Setup(#[source] ExecutorError),
    /// An aggregator could not record results.
    #[error("recording results failed")]
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
    /// Too many remotes failed their setup (executor start); the last setup error is the
    /// source.
    #[error("setup retries limit exceeded after {failures} failed setups (broken infra?)")]
    SetupLimit {
        /// How many setups failed.
        failures: usize,
        /// The last setup error.
        #[source]
        last: ExecutorError,
    },
}
