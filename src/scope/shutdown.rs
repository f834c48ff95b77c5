//! What [`Scope::shutdown`](crate::scope::Scope::shutdown) takes and reports.

use std::time::Duration;

/// Deadlines of [`Scope::shutdown`](crate::scope::Scope::shutdown).
#[derive(Debug, Clone, Copy)]
pub struct ShutdownOptions {
    /// How long tasks get to finish after graceful cancellation.
    pub grace: Duration,
    /// How long tasks get to finish after forced cancellation.
    pub kill_grace: Duration,
    /// How long the reaper gets to finish the cleanups of dropped guards.
    pub cleanup_timeout: Duration,
}

impl Default for ShutdownOptions {
    fn default() -> Self {
        Self {
            grace: Duration::from_secs(10),
            kill_grace: Duration::from_secs(5),
            cleanup_timeout: Duration::from_secs(60),
        }
    }
}

/// What [`Scope::shutdown`](crate::scope::Scope::shutdown) could not finish.
#[derive(Debug, Default, Clone)]
#[non_exhaustive]
pub struct ShutdownReport {
    /// Whether the grace period ran out and the scope had to be forced.
    pub forced: bool,
    /// Tasks still running when shutdown gave up waiting.
    pub tasks_left: usize,
    /// Cleanups that failed, with their descriptions and errors.
    pub cleanups_failed: Vec<String>,
    /// Cleanups that did not finish in time, with their descriptions.
    pub cleanups_pending: Vec<String>,
    /// Local process groups that were still alive and got SIGKILL at the very end.
    pub processes_killed: usize,
}

impl ShutdownReport {
    /// True when every task ended and every cleanup succeeded.
    pub fn is_clean(&self) -> bool {
        self.tasks_left == 0
            && self.cleanups_failed.is_empty()
            && self.cleanups_pending.is_empty()
            && self.processes_killed == 0
    }
}
