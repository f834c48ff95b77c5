//! [`PolicyHooks`]: a stateful scheduling policy, and the values it decides with.
//!
//! The closure policies of [`Policy`](super::Policy) are pure functions of what they are
//! shown. A policy that must remember what it decided or saw — which remote runs which
//! train of tests, how many tests a remote ran — implements [`PolicyHooks`] instead: every
//! method takes `&mut self`, and the scheduler also tells it what happened (a test started,
//! a test finished and what was decided, a remote released). [`NightlyPolicy`](super::NightlyPolicy)
//! is one.
//!
//! # How the state is held
//!
//! [`Policy::hooks`](super::Policy::hooks) moves the value behind a mutex. The scheduler is
//! one task and calls the hooks one at a time, never concurrently and never from an
//! `await` point, so the lock is never contended; a clone of the [`Policy`](super::Policy)
//! shares the same state (give each run a fresh one). A hook must not block: it runs on the
//! scheduler's task, between two messages.

use std::fmt;

use super::queue::{QueueView, TestHandle};
use super::test_info::TestInfo;
use crate::executor::ExecutorError;
use crate::verdict::Verdict;

/// A finished test attempt, as shown to destructive and rerun policies.
#[derive(Debug, Clone, Copy)]
pub struct Finished<'a> {
    /// The test.
    pub test: &'a TestInfo,
    /// The attempt's [verdict](crate::verdict): the worst status of its result lines, the
    /// exit code only when it wrote none, `infra` when it did not run to the end.
    pub verdict: Verdict,
    /// The exit code, when the test ran to the end.
    pub exit_code: Option<i32>,
    /// The executor error, when it did not.
    pub error: Option<&'a ExecutorError>,
    /// Whether the remote was lost (the connection broke) during the test.
    pub lost: bool,
    /// Which attempt this was: 0 for the first run, 1 for the first rerun, …
    pub attempt: u32,
    /// How many earlier attempts of this test lost their remote.
    pub lost_before: u32,
    /// The remote the test ran on.
    pub remote: &'a str,
    /// The remote's id within the run.
    pub remote_id: RemoteId,
}

impl Finished<'_> {
    /// Whether the attempt failed: its [`verdict`](Self::verdict) is not a pass (so also a
    /// test that reported `fail` and exited 0, and any attempt that did not run to the end).
    pub fn failed(&self) -> bool {
        !self.verdict.passed()
    }
}

/// What a custom picker knows about the remote that needs a test.
#[derive(Debug, Clone, Copy)]
pub struct PickContext<'a> {
    /// The remote's description.
    pub remote: &'a str,
    /// The remote's id within the run.
    pub remote_id: RemoteId,
    /// The test the remote just ran, or `None` for a freshly set-up remote (one that has
    /// run no test yet).
    pub previous: Option<&'a TestInfo>,
}

/// Identifies one remote held by a run, for as long as the run holds it; never reused
/// within a run. (Remote descriptions may repeat: an SSH pool hands the same host out
/// again after a release.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RemoteId(pub(crate) u64);

impl fmt::Display for RemoteId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "remote-{}", self.0)
    }
}

/// What a picker answers when a remote needs a test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pick {
    /// Run this queued test on the remote. A handle that is not queued is logged and the
    /// default order used instead.
    Run(TestHandle),
    /// No opinion: the later pickers, then the ordering policies, decide.
    Delegate,
    /// Nothing queued may run on this remote now (for example every queued test belongs to
    /// a train another remote runs): the remote waits idle and is offered the queue again
    /// after the next change (a test finished, a remote arrived or left). If every remote
    /// waits and nothing else is in flight, the scheduler falls back to the default order
    /// rather than hang, with a warning.
    Wait,
    /// Nothing queued may run on this remote at all (for example the next test needs a
    /// fresh remote): the remote is released
    /// ([`ReleaseReason::Declined`](crate::orchestrator::ReleaseReason::Declined)) and a
    /// replacement is requested while work is left. Answering this for a fresh remote
    /// makes the run replace remotes forever.
    Release,
}

impl From<Option<TestHandle>> for Pick {
    fn from(handle: Option<TestHandle>) -> Self {
        handle.map_or(Pick::Delegate, Pick::Run)
    }
}

/// What the scheduler decided about a finished attempt, after asking every policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decided {
    /// The remote is destroyed (retired and released; it runs no further test).
    pub destroyed: bool,
    /// The test was queued again.
    pub rerun: bool,
}

/// A stateful scheduling policy; add it with [`Policy::hooks`](super::Policy::hooks).
///
/// Every method has a default that has no opinion (or ignores the notification), so an
/// implementation overrides only what it needs. The decisions are consulted in policy
/// order like the closure policies ([`policy`](super::policy) module docs): the first
/// policy with an opinion decides. Notifications go to every hooks policy.
///
/// ```
/// use std::collections::HashMap;
/// use atex::orchestrator::adhoc::{
///     Pick, PickContext, Policy, PolicyHooks, QueueView, RemoteId, TestInfo,
/// };
///
/// /// At most three tests per remote; then the remote is replaced by a fresh one.
/// #[derive(Default)]
/// struct ThreePerRemote(HashMap<RemoteId, u32>);
///
/// impl PolicyHooks for ThreePerRemote {
///     fn next_test(&mut self, _queue: &QueueView<'_>, ctx: &PickContext<'_>) -> Pick {
///         if self.0.get(&ctx.remote_id).copied().unwrap_or(0) >= 3 {
///             Pick::Release
///         } else {
///             Pick::Delegate
///         }
///     }
///     fn test_started(&mut self, _test: &TestInfo, remote: RemoteId) {
///         *self.0.entry(remote).or_default() += 1;
///     }
///     fn remote_released(&mut self, remote: RemoteId) {
///         self.0.remove(&remote);
///     }
/// }
///
/// let policy = Policy::hooks(ThreePerRemote::default());
/// # let _ = policy;
/// ```
pub trait PolicyHooks: Send + 'static {
    /// Which queued test runs on the remote described by `ctx`; see [`Pick`].
    /// `queue` lists the queued tests in the order the ordering policies would run them.
    fn next_test(&mut self, queue: &QueueView<'_>, ctx: &PickContext<'_>) -> Pick {
        let _ = (queue, ctx);
        Pick::Delegate
    }

    /// Whether the attempt destroyed its remote (`None`: no opinion); see
    /// [`Policy::destructive_if`](super::Policy::destructive_if).
    fn destructive(&mut self, finished: &Finished<'_>) -> Option<bool> {
        let _ = finished;
        None
    }

    /// Whether a failed attempt is run again (`None`: no opinion); consulted only for
    /// failed attempts, see [`Policy::rerun_if`](super::Policy::rerun_if).
    fn rerun(&mut self, finished: &Finished<'_>) -> Option<bool> {
        let _ = finished;
        None
    }

    /// A test attempt started on `remote`.
    fn test_started(&mut self, test: &TestInfo, remote: RemoteId) {
        let _ = (test, remote);
    }

    /// An attempt finished and the scheduler decided `decided` about it (with every
    /// policy's opinion; a cancelled run never reruns).
    fn test_finished(&mut self, finished: &Finished<'_>, decided: Decided) {
        let _ = (finished, decided);
    }

    /// The run gives `remote` up (whatever the reason: destroyed, lost, spare, declined,
    /// done, cancelled); called when the release is decided, before it completes. The id
    /// is never seen again.
    fn remote_released(&mut self, remote: RemoteId) {
        let _ = remote;
    }
}
