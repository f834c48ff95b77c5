//! Typed run events: what an orchestrator did, for progress displays and user code.
//!
//! The orchestrator's scheduler is the only publisher, so counts derived from the stream are
//! consistent. Publishing never waits: events go into a bounded channel with `try_send`, and
//! an event that does not fit (a slow consumer) is counted in
//! [`EventKind::RunFinished`]'s `events_dropped` instead of stalling scheduling. The library
//! never prints; it only emits.
//!
//! Consume the stream with [`EventStream::recv`] or as a [`futures::Stream`]:
//!
//! ```
//! use atex::orchestrator::events::{event_channel, EventKind};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let (tx, mut rx) = event_channel(16);
//! tx.emit(EventKind::CancelBegun);
//! drop(tx);
//! let event = rx.recv().await.expect("one event");
//! assert!(matches!(event.kind, EventKind::CancelBegun));
//! assert!(rx.recv().await.is_none());
//! # }
//! ```

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Serialize, Serializer};
use tokio::sync::mpsc;

use super::RetireReason;
use crate::verdict::Verdict;

/// One thing that happened during a run.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    /// Wall-clock time, serialised as seconds since the Unix epoch.
    #[serde(serialize_with = "ser_system_time")]
    pub ts: SystemTime,
    /// Time since the event channel was created (usually: since the run started),
    /// serialised as seconds.
    #[serde(serialize_with = "ser_duration")]
    pub elapsed: Duration,
    /// What happened.
    #[serde(flatten)]
    pub kind: EventKind,
}

/// Statistics of a finished run, carried by [`EventKind::RunFinished`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RunStats {
    /// Tests whose final attempt passed (its verdict is `pass`, `info` or `skip`).
    pub passed: usize,
    /// Tests whose final attempt did not pass.
    pub failed: usize,
    /// Tests never run (the run was cancelled or aborted first).
    pub not_run: usize,
    /// Attempts that were rerun (their results went to the old-results aggregator).
    pub reruns: usize,
    /// Remotes acquired from provisioners.
    pub remotes_acquired: usize,
    /// Remotes marked destroyed before their release.
    pub remotes_retired: usize,
    /// Setups (executor starts) that failed.
    pub setup_failures: usize,
    /// Ingests that failed.
    pub ingest_errors: usize,
    /// Whether the run was cancelled.
    pub cancelled: bool,
    /// Events that could not be delivered because the consumer was too slow.
    pub events_dropped: u64,
}

/// The kinds of [`Event`]. New kinds may be added in minor releases.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
#[non_exhaustive]
pub enum EventKind {
    /// The run started.
    RunStarted {
        /// Number of tests queued.
        tests: usize,
        /// Number of provisioners.
        provisioners: usize,
        /// Upper limit on remotes held at once, if any.
        max_remotes: Option<usize>,
    },
    /// Remotes were requested from a provisioner.
    RemoteRequested {
        /// The provisioner's description.
        provisioner: String,
        /// How many.
        count: usize,
    },
    /// A remote arrived from a provisioner; its setup starts.
    RemoteAcquired {
        /// The remote's description.
        remote: String,
        /// The provisioner's description.
        provisioner: String,
    },
    /// A remote's setup (executor start) finished; it is ready for tests.
    RemoteReady {
        /// The remote.
        remote: String,
    },
    /// A remote's setup failed; the remote is released.
    SetupFailed {
        /// The remote.
        remote: String,
        /// The error.
        error: String,
    },
    /// A remote is no longer used and was released.
    RemoteReleased {
        /// The remote.
        remote: String,
        /// Why: `done`, `spare`, `destructive`, `broken`, `setup-failed`, `cancelled`,
        /// `over-limit`.
        reason: String,
    },
    /// A remote was marked destroyed: it is released next and its provisioner never hands
    /// it out again.
    RemoteRetired {
        /// The remote.
        remote: String,
        /// The test that destroyed it (or during which it broke).
        test: String,
        /// Why.
        reason: RetireReason,
    },
    /// A remote was lost while a test ran on it (the connection broke).
    RemoteLost {
        /// The remote.
        remote: String,
        /// The test that was running.
        test: String,
        /// The error.
        error: String,
    },
    /// A test started on a remote.
    TestStarted {
        /// The test.
        test: String,
        /// The remote.
        remote: String,
        /// 0 for the first attempt, 1 for the first rerun, …
        attempt: u32,
    },
    /// A test attempt finished.
    TestFinished {
        /// The test.
        test: String,
        /// The remote.
        remote: String,
        /// Its [verdict](crate::verdict): from its result lines, the exit code only when it
        /// wrote none, `infra` when it did not run to the end.
        verdict: Verdict,
        /// Its exit code, when it ran to the end.
        exit_code: Option<i32>,
        /// The executor error, when it did not.
        error: Option<String>,
        /// How long it ran, in seconds.
        #[serde(serialize_with = "ser_duration")]
        duration: Duration,
        /// Whether this attempt will be rerun (then its results go to the old-results
        /// aggregator).
        rerun: bool,
    },
    /// A failed test was queued again.
    RerunScheduled {
        /// The test.
        test: String,
        /// The attempt that will run next (1 = first rerun).
        attempt: u32,
    },
    /// A test's results were ingested (or the ingest failed).
    TestIngested {
        /// The test.
        test: String,
        /// Whether they went to the old-results aggregator.
        old: bool,
        /// The ingest error, if it failed.
        error: Option<String>,
    },
    /// Scheduling stopped because of cancellation; running tests are being cancelled.
    CancelBegun,
    /// The run finished; everything is stopped.
    RunFinished {
        /// What happened overall.
        stats: RunStats,
    },
}

fn ser_duration<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

fn ser_system_time<S: Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    s.serialize_f64(secs)
}

/// Creates a bounded event channel holding up to `capacity` undelivered events
/// (at least 1).
pub fn event_channel(capacity: usize) -> (EventSender, EventStream) {
    let (tx, rx) = mpsc::channel(capacity.max(1));
    let dropped = Arc::new(AtomicU64::new(0));
    (
        EventSender {
            tx: Some(tx),
            start: Instant::now(),
            dropped: dropped.clone(),
        },
        EventStream { rx, dropped },
    )
}

/// The publishing side of an event channel. Never blocks.
#[derive(Debug, Clone)]
pub struct EventSender {
    tx: Option<mpsc::Sender<Event>>,
    start: Instant,
    dropped: Arc<AtomicU64>,
}

impl Default for EventSender {
    fn default() -> Self {
        Self::disabled()
    }
}

impl EventSender {
    /// A sender that discards everything (no consumer); emitting costs nothing.
    pub fn disabled() -> Self {
        Self {
            tx: None,
            start: Instant::now(),
            dropped: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Whether anybody may be listening.
    pub fn is_enabled(&self) -> bool {
        self.tx.as_ref().is_some_and(|tx| !tx.is_closed())
    }

    /// Publishes `kind` now, unless the channel is full (then the event is counted as
    /// dropped) or closed.
    pub fn emit(&self, kind: EventKind) {
        let Some(tx) = &self.tx else { return };
        let event = Event {
            ts: SystemTime::now(),
            elapsed: self.start.elapsed(),
            kind,
        };
        match tx.try_send(event) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }

    /// Publishes the event built by `make`, building it only when somebody listens.
    pub fn emit_with(&self, make: impl FnOnce() -> EventKind) {
        if self.is_enabled() {
            self.emit(make());
        }
    }

    /// Number of events dropped so far because the channel was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// The consuming side of an event channel: call [`recv`](Self::recv) or use it as a
/// [`futures::Stream`]. Ends when the run finished and every event was read.
#[derive(Debug)]
pub struct EventStream {
    rx: mpsc::Receiver<Event>,
    dropped: Arc<AtomicU64>,
}

impl EventStream {
    /// The next event; `None` once the publisher is gone and everything was read.
    pub async fn recv(&mut self) -> Option<Event> {
        self.rx.recv().await
    }

    /// The next event if one is waiting now.
    pub fn try_recv(&mut self) -> Option<Event> {
        self.rx.try_recv().ok()
    }

    /// Number of events dropped so far because this consumer was too slow.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

impl futures::Stream for EventStream {
    type Item = Event;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        self.rx.poll_recv(cx)
    }
}

/// Running totals folded from a run's events: what a progress display shows.
///
/// ```
/// use atex::orchestrator::events::{EventKind, RunTally};
/// use atex::verdict::Verdict;
/// use std::time::Duration;
///
/// let mut tally = RunTally::default();
/// tally.apply(&EventKind::RunStarted { tests: 2, provisioners: 1, max_remotes: None });
/// tally.apply(&EventKind::TestStarted { test: "/a".into(), remote: "r".into(), attempt: 0 });
/// assert_eq!(tally.running, 1);
/// tally.apply(&EventKind::TestFinished {
///     test: "/a".into(), remote: "r".into(), verdict: Verdict::Pass, exit_code: Some(0),
///     error: None, duration: Duration::from_millis(5), rerun: false,
/// });
/// assert_eq!((tally.passed, tally.done(), tally.total), (1, 1, 2));
/// assert_eq!(tally.line(), "1/2 done: 1 passed, 0 failed, 0 errors, 0 reruns; 0 running on 0 remotes");
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunTally {
    /// Tests in the run.
    pub total: usize,
    /// Final attempts that passed (verdict `pass`, `info` or `skip`).
    pub passed: usize,
    /// Final attempts that failed (verdict `fail` or `warn`).
    pub failed: usize,
    /// Final attempts that errored or did not run to the end (verdict `error` or `infra`).
    pub errors: usize,
    /// Attempts that will be rerun.
    pub reruns: usize,
    /// Tests running now.
    pub running: usize,
    /// Remotes held now (acquired and not yet released).
    pub remotes: usize,
    /// Setups that failed.
    pub setup_failures: usize,
    /// Whether cancellation began.
    pub cancelling: bool,
    /// Whether the run finished.
    pub finished: bool,
}

impl RunTally {
    /// Updates the totals with one event.
    pub fn apply(&mut self, kind: &EventKind) {
        match kind {
            EventKind::RunStarted { tests, .. } => self.total = *tests,
            EventKind::RemoteAcquired { .. } => self.remotes += 1,
            EventKind::RemoteReleased { .. } => self.remotes = self.remotes.saturating_sub(1),
            EventKind::SetupFailed { .. } => self.setup_failures += 1,
            EventKind::TestStarted { .. } => self.running += 1,
            EventKind::TestFinished { verdict, rerun, .. } => {
                self.running = self.running.saturating_sub(1);
                match (rerun, verdict) {
                    (true, _) => self.reruns += 1,
                    (false, v) if v.passed() => self.passed += 1,
                    (false, Verdict::Fail | Verdict::Warn) => self.failed += 1,
                    (false, _) => self.errors += 1,
                }
            }
            EventKind::CancelBegun => self.cancelling = true,
            EventKind::RunFinished { .. } => self.finished = true,
            _ => {}
        }
    }

    /// Tests whose final attempt finished.
    pub fn done(&self) -> usize {
        self.passed + self.failed + self.errors
    }

    /// A one-line summary for humans.
    pub fn line(&self) -> String {
        format!(
            "{}/{} done: {} passed, {} failed, {} errors, {} reruns; {} running on {} remotes{}",
            self.done(),
            self.total,
            self.passed,
            self.failed,
            self.errors,
            self.reruns,
            self.running,
            self.remotes,
            if self.cancelling { " (cancelling)" } else { "" }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn full_channel_counts_dropped_and_never_blocks() {
        let (tx, mut rx) = event_channel(2);
        for _ in 0..5 {
            tx.emit(EventKind::CancelBegun);
        }
        assert_eq!(tx.dropped(), 3);
        assert_eq!(rx.dropped(), 3);
        assert!(rx.try_recv().is_some());
        assert!(rx.try_recv().is_some());
        assert!(rx.try_recv().is_none());
    }

    #[test]
    fn serialises_flat_with_tag() {
        let (tx, mut rx) = event_channel(2);
        tx.emit(EventKind::TestStarted {
            test: "/a".into(),
            remote: "r".into(),
            attempt: 0,
        });
        let ev = rx.try_recv().expect("event");
        let v = serde_json::to_value(&ev).expect("json");
        assert_eq!(v["event"], "test_started");
        assert_eq!(v["test"], "/a");
        assert!(v["ts"].as_f64().is_some_and(|t| t > 0.0));
        assert!(v["elapsed"].as_f64().is_some());
    }

    fn finished(test: &str, verdict: Verdict, rerun: bool) -> EventKind {
        EventKind::TestFinished {
            test: test.into(),
            remote: "r".into(),
            verdict,
            exit_code: Some(0),
            error: None,
            duration: Duration::ZERO,
            rerun,
        }
    }

    #[test]
    fn tally_counts_final_verdicts() {
        let mut tally = RunTally::default();
        for (i, v) in Verdict::ALL.into_iter().enumerate() {
            tally.apply(&EventKind::TestStarted {
                test: format!("/{i}"),
                remote: "r".into(),
                attempt: 0,
            });
            tally.apply(&finished(&format!("/{i}"), v, false));
        }
        tally.apply(&finished("/again", Verdict::Fail, true));
        assert_eq!(
            (tally.passed, tally.failed, tally.errors, tally.reruns),
            (3, 2, 2, 1)
        );
    }

    #[test]
    fn verdicts_and_retirements_serialise_lowercase() {
        let (tx, mut rx) = event_channel(4);
        tx.emit(finished("/a", Verdict::Warn, false));
        tx.emit(EventKind::RemoteRetired {
            remote: "r".into(),
            test: "/a".into(),
            reason: RetireReason::Destructive,
        });
        let v = serde_json::to_value(rx.try_recv().expect("event")).expect("json");
        assert_eq!(
            (v["event"].as_str(), v["verdict"].as_str()),
            (Some("test_finished"), Some("warn"))
        );
        let v = serde_json::to_value(rx.try_recv().expect("event")).expect("json");
        assert_eq!(v["event"], "remote_retired");
        assert_eq!(v["reason"], "destructive");
    }

    #[test]
    fn disabled_sender_is_silent() {
        let tx = EventSender::disabled();
        assert!(!tx.is_enabled());
        tx.emit(EventKind::CancelBegun);
        assert_eq!(tx.dropped(), 0);
    }
}
