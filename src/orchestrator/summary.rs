//! What a run reports: [`RunSummary`] with a [`TestReport`] per test, the remotes it
//! retired ([`RetiredRemote`]) and its final [`RunStats`].

use std::fmt;
use std::time::Duration;

use serde::Serialize;

use super::reasons::{CancelReason, RetireReason};
use super::stats::RunStats;
use crate::verdict::Verdict;

/// What happened to one test attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestReport {
    /// The test's name.
    pub name: String,
    /// The attempt's [verdict](crate::verdict): the worst status of its result lines, the
    /// exit code only when it wrote none, `infra` when it did not run to the end.
    pub verdict: Verdict,
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
    /// Whether the attempt passed: its [`verdict`](Self::verdict) is `pass`, `info` or
    /// `skip`.
    pub fn passed(&self) -> bool {
        self.verdict.passed()
    }
}

/// A remote that was marked destroyed ([`Remote::mark_destroyed`]) before its release,
/// so that its provisioner never hands it out again (the SSH host pool quarantines it;
/// provisioners that never reuse systems throw it away as usual).
///
/// [`Remote::mark_destroyed`]: crate::provisioner::Remote::mark_destroyed
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RetiredRemote {
    /// The remote's description.
    pub remote: String,
    /// The test that destroyed it (or during which it broke).
    pub test: String,
    /// Why.
    pub reason: RetireReason,
}

impl fmt::Display for RetiredRemote {
    /// `remote X retired (destructive test /t)`, `(broken by test /t)` or
    /// `(connection lost during test /t)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let why = match self.reason {
            RetireReason::Destructive => "destructive test",
            RetireReason::Broken => "broken by test",
            RetireReason::Lost => "connection lost during test",
        };
        write!(f, "remote {} retired ({why} {})", self.remote, self.test)
    }
}

/// The outcome of a run.
#[derive(Debug, Clone, Default)]
pub struct RunSummary {
    /// One report per test run, in the order they finished.
    pub tests: Vec<TestReport>,
    /// Errors of ingests (the run went on).
    pub ingest_errors: Vec<String>,
    /// Attempts that were rerun (their results went to the old-results aggregator, if
    /// any), in the order they finished.
    pub reruns: Vec<TestReport>,
    /// Tests that never ran because the run was cancelled or aborted first.
    pub not_run: Vec<String>,
    /// Remotes marked destroyed before their release, in the order it happened.
    pub retired: Vec<RetiredRemote>,
    /// Errors of failed remote setups (executor starts).
    pub setup_errors: Vec<String>,
    /// The final statistics, kept by the orchestrator while it ran (the same as those of
    /// its last [event](super::events::EventKind::RunFinished)).
    pub stats: RunStats,
    /// Events dropped because the event consumer was too slow.
    pub events_dropped: u64,
}

impl RunSummary {
    /// Number of tests whose final attempt passed ([`TestReport::passed`]).
    pub fn passed(&self) -> usize {
        self.stats.passed()
    }

    /// Number of tests whose final attempt did not pass.
    pub fn failed(&self) -> usize {
        self.stats.not_passed()
    }

    /// Whether the run was cancelled before every test ran.
    pub fn cancelled(&self) -> bool {
        self.stats.cancelled()
    }

    /// Why the run was cancelled, if it was.
    pub fn cancel_reason(&self) -> Option<CancelReason> {
        self.stats.cancel
    }
}

/// [`attempt_results`] for result lines held in memory.
pub(crate) fn attempt_lines_results(test: &str, lines: &[u8]) -> Option<Verdict> {
    match crate::verdict::lines_verdict(lines) {
        Ok(v) => v,
        Err((line, e)) => {
            tracing::error!(test, line, error = %crate::error::chain(&e), "the results of the test cannot be judged");
            Some(Verdict::Infra)
        }
    }
}

/// The worst status among the result lines an attempt wrote into `dir` (one read of the
/// results file). A file that cannot be judged makes the attempt `infra`, logged here;
/// its ingest fails with the details.
pub(crate) fn attempt_results(test: &str, dir: &std::path::Path) -> Option<Verdict> {
    match crate::verdict::read_results(&dir.join(crate::artifacts::RESULTS_FILE)) {
        Ok(v) => v,
        Err(e) => {
            tracing::error!(test, error = %crate::error::chain(&e), "the results of the test cannot be judged");
            Some(Verdict::Infra)
        }
    }
}
