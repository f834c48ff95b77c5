//! Typed reasons carried by run [events](super::events) and the [summary](super::RunSummary):
//! why a run is cancelled ([`CancelReason`]), why a remote was released ([`ReleaseReason`])
//! and why it was retired ([`RetireReason`]).

use std::fmt;

use serde::Serialize;

/// Why a run is being cancelled, ordered by severity: a run's reason only ever
/// [escalates](CancelReason::escalate) (an aborted run that is then interrupted is
/// `Interrupt`, a second signal makes it `Kill`).
///
/// Every reason stops scheduling, cancels the running tests (they get an `infra` result,
/// which is still ingested) and releases every remote; they differ in what started it and
/// how hard running processes are stopped.
///
/// ```
/// use atex::orchestrator::CancelReason;
///
/// let mut reason = None;
/// assert!(CancelReason::escalate(&mut reason, CancelReason::SetupLimit));
/// assert!(CancelReason::escalate(&mut reason, CancelReason::Kill));
/// // A milder reason later changes nothing.
/// assert!(!CancelReason::escalate(&mut reason, CancelReason::Interrupt));
/// assert_eq!(reason, Some(CancelReason::Kill));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum CancelReason {
    /// Too many remote setups failed: the infrastructure looks broken. The run ends with
    /// [`OrchestratorError::SetupLimit`](super::OrchestratorError::SetupLimit).
    SetupLimit,
    /// No provisioner can supply remotes any more (every one failed) and none is held.
    NoRemotes,
    /// The run's scope was cancelled: the first SIGINT/SIGTERM when
    /// [`signal::install`](crate::signal::install) is used, or the embedding program. Running
    /// tests get SIGTERM and the scope's kill grace.
    Interrupt,
    /// The run's scope was killed (forced cancellation, the second signal): running
    /// process groups get SIGKILL at once.
    Kill,
}

impl CancelReason {
    /// Raises `current` to `to` when `to` is more severe (or nothing was set yet); returns
    /// whether it changed.
    pub fn escalate(current: &mut Option<CancelReason>, to: CancelReason) -> bool {
        if current.is_some_and(|c| c >= to) {
            return false;
        }
        *current = Some(to);
        true
    }

    /// The reason as serialised (`setup-limit`, `no-remotes`, `interrupt`, `kill`).
    pub fn as_str(self) -> &'static str {
        match self {
            CancelReason::SetupLimit => "setup-limit",
            CancelReason::NoRemotes => "no-remotes",
            CancelReason::Interrupt => "interrupt",
            CancelReason::Kill => "kill",
        }
    }

    /// A sentence for humans: what happens now.
    pub fn describe(self) -> &'static str {
        match self {
            CancelReason::SetupLimit => "too many setups failed: stopping running tests",
            CancelReason::NoRemotes => "no provisioner can supply remotes: stopping",
            CancelReason::Interrupt => "interrupted: stopping running tests (again to kill)",
            CancelReason::Kill => "killing running tests",
        }
    }
}

impl fmt::Display for CancelReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// Why a remote was released.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum ReleaseReason {
    /// No work is left for it (the queue is empty and no test runs that could be rerun).
    Done,
    /// It arrived or finished its setup when enough remotes were already there.
    Spare,
    /// It arrived while the run already held `max_remotes` remotes.
    OverLimit,
    /// Its setup (executor start) failed.
    SetupFailed,
    /// A destructive test destroyed it ([`RetireReason::Destructive`]).
    Destroyed,
    /// A test broke it: the test did not run to the end ([`RetireReason::Broken`]), or it
    /// cannot run tests any more.
    Broken,
    /// Its connection was lost during a test ([`RetireReason::Lost`]).
    Lost,
    /// The run was cancelled.
    Cancelled,
    /// A policy declined to run any queued test on it
    /// ([`Pick::Release`](crate::orchestrator::adhoc::Pick::Release); for example the next
    /// test needs a fresh remote).
    Declined,
}

impl ReleaseReason {
    /// The reason as serialised (`done`, `spare`, `over-limit`, `setup-failed`,
    /// `destroyed`, `broken`, `lost`, `cancelled`, `declined`).
    pub fn as_str(self) -> &'static str {
        match self {
            ReleaseReason::Done => "done",
            ReleaseReason::Spare => "spare",
            ReleaseReason::OverLimit => "over-limit",
            ReleaseReason::SetupFailed => "setup-failed",
            ReleaseReason::Destroyed => "destroyed",
            ReleaseReason::Broken => "broken",
            ReleaseReason::Lost => "lost",
            ReleaseReason::Cancelled => "cancelled",
            ReleaseReason::Declined => "declined",
        }
    }
}

impl fmt::Display for ReleaseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl From<RetireReason> for ReleaseReason {
    fn from(r: RetireReason) -> Self {
        match r {
            RetireReason::Destructive => ReleaseReason::Destroyed,
            RetireReason::Broken => ReleaseReason::Broken,
            RetireReason::Lost => ReleaseReason::Lost,
        }
    }
}

/// Why a remote was retired (marked destroyed before its release).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum RetireReason {
    /// The destructive policy said the test destroyed it.
    Destructive,
    /// The test did not run to the end (executor error, timeout, broken control stream):
    /// the system may be in any state.
    Broken,
    /// The connection broke during the test.
    Lost,
}

impl fmt::Display for RetireReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            RetireReason::Destructive => "destructive",
            RetireReason::Broken => "broken",
            RetireReason::Lost => "lost",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [CancelReason; 4] = [
        CancelReason::SetupLimit,
        CancelReason::NoRemotes,
        CancelReason::Interrupt,
        CancelReason::Kill,
    ];

    #[test]
    fn cancel_reasons_are_ordered_by_severity() {
        assert!(ALL.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn cancel_reason_only_escalates() {
        for (i, &first) in ALL.iter().enumerate() {
            for (j, &then) in ALL.iter().enumerate() {
                let mut current = None;
                assert!(CancelReason::escalate(&mut current, first));
                let changed = CancelReason::escalate(&mut current, then);
                assert_eq!(changed, j > i, "{first:?} then {then:?}");
                assert_eq!(current, Some(ALL[i.max(j)]), "{first:?} then {then:?}");
            }
        }
    }

    #[test]
    fn reasons_serialise_as_their_names() {
        for r in ALL {
            assert_eq!(serde_json::to_value(r).ok(), Some(r.as_str().into()));
        }
        for r in [
            ReleaseReason::Done,
            ReleaseReason::Spare,
            ReleaseReason::OverLimit,
            ReleaseReason::SetupFailed,
            ReleaseReason::Destroyed,
            ReleaseReason::Broken,
            ReleaseReason::Lost,
            ReleaseReason::Cancelled,
            ReleaseReason::Declined,
        ] {
            assert_eq!(serde_json::to_value(r).ok(), Some(r.to_string().into()));
        }
        assert_eq!(
            ReleaseReason::from(RetireReason::Destructive),
            ReleaseReason::Destroyed
        );
    }
}
