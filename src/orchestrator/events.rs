//! Typed run events: what an orchestrator did, for progress displays and user code.
//!
//! The orchestrator's scheduler is the only publisher. It keeps the run's [`RunStats`]
//! and every [`Event`] carries a copy taken when it was published, so no consumer
//! recounts: the latest event read tells the state of the run. Publishing never waits:
//! events go into a bounded channel with `try_send`, and an event that does not fit (a slow
//! consumer) is counted in [`EventKind::RunFinished`]'s `events_dropped` instead of
//! stalling scheduling; the next event delivered still carries up-to-date statistics. The
//! library never prints by itself; [`render`](super::render) draws events for humans.
//!
//! Consume the stream with [`EventStream::recv`] or as a [`futures::Stream`]:
//!
//! ```
//! use atex::orchestrator::events::{event_channel, EventKind};
//! use atex::orchestrator::{CancelReason, RunStats};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let (tx, mut rx) = event_channel(16);
//! let mut stats = RunStats::default();
//! stats.cancel = Some(CancelReason::Interrupt);
//! tx.emit(&stats, EventKind::CancelBegun { reason: CancelReason::Interrupt });
//! drop(tx);
//! let event = rx.recv().await.expect("one event");
//! assert!(matches!(event.kind, EventKind::CancelBegun { reason: CancelReason::Interrupt }));
//! assert!(event.stats.cancelled() && rx.stats().cancelled());
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

pub use super::reasons::{CancelReason, ReleaseReason, RetireReason};
pub use super::stats::{RemoteStats, RunStats, VerdictCounts};
use crate::verdict::Verdict;

/// One thing that happened during a run, with the run's statistics just after it.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
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
    /// The run's statistics when the event was published (this event included).
    pub stats: RunStats,
}

impl Event {
    /// An event that happened `elapsed` after the run started, now (for replaying recorded
    /// runs and for tests of event consumers).
    pub fn new(elapsed: Duration, kind: EventKind, stats: RunStats) -> Self {
        Self {
            ts: SystemTime::now(),
            elapsed,
            kind,
            stats,
        }
    }
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
        /// Why.
        reason: ReleaseReason,
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
    /// Cancellation began, or escalated to a more severe [`CancelReason`]: scheduling
    /// stopped, running tests are being cancelled. Published once per reason, each more
    /// severe than the one before.
    CancelBegun {
        /// Why.
        reason: CancelReason,
    },
    /// The run finished; everything is stopped. Its [`Event::stats`] are the final ones.
    RunFinished {
        /// Events that could not be delivered because the consumer was too slow (this
        /// one excluded).
        events_dropped: u64,
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
    let start = Instant::now();
    (
        EventSender {
            tx: Some(tx),
            start,
            dropped: dropped.clone(),
        },
        EventStream {
            rx,
            dropped,
            start,
            stats: RunStats::default(),
        },
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

    /// Publishes `kind` with a copy of `stats` (the statistics as they are after it) now,
    /// unless the channel is full (then the event is counted as dropped) or closed.
    pub fn emit(&self, stats: &RunStats, kind: EventKind) {
        let Some(tx) = &self.tx else { return };
        let event = Event {
            ts: SystemTime::now(),
            elapsed: self.start.elapsed(),
            kind,
            stats: *stats,
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
    pub fn emit_with(&self, stats: &RunStats, make: impl FnOnce() -> EventKind) {
        if self.is_enabled() {
            self.emit(stats, make());
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
    start: Instant,
    stats: RunStats,
}

impl EventStream {
    /// The next event; `None` once the publisher is gone and everything was read.
    pub async fn recv(&mut self) -> Option<Event> {
        let event = self.rx.recv().await;
        self.seen(event)
    }

    /// The next event if one is waiting now.
    pub fn try_recv(&mut self) -> Option<Event> {
        let event = self.rx.try_recv().ok();
        self.seen(event)
    }

    fn seen(&mut self, event: Option<Event>) -> Option<Event> {
        if let Some(e) = &event {
            self.stats = e.stats;
        }
        event
    }

    /// The run's statistics as of the last event read (all zero before the first).
    pub fn stats(&self) -> &RunStats {
        &self.stats
    }

    /// Time since the channel was created: the clock of [`Event::elapsed`].
    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }

    /// Number of events dropped so far because this consumer was too slow.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

impl futures::Stream for EventStream {
    type Item = Event;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        match self.rx.poll_recv(cx) {
            Poll::Ready(event) => Poll::Ready(self.seen(event)),
            Poll::Pending => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CANCEL: EventKind = EventKind::CancelBegun {
        reason: CancelReason::Interrupt,
    };

    #[tokio::test]
    async fn full_channel_counts_dropped_and_never_blocks() {
        let (tx, mut rx) = event_channel(2);
        let stats = RunStats::default();
        for _ in 0..5 {
            tx.emit(&stats, CANCEL);
        }
        assert_eq!(tx.dropped(), 3);
        assert_eq!(rx.dropped(), 3);
        assert!(rx.try_recv().is_some());
        assert!(rx.try_recv().is_some());
        assert!(rx.try_recv().is_none());
    }

    #[test]
    fn serialises_flat_with_tag_and_stats() {
        let (tx, mut rx) = event_channel(2);
        let mut stats = RunStats {
            tests: 3,
            running: 1,
            ..RunStats::default()
        };
        stats.verdicts.add(Verdict::Pass);
        tx.emit(
            &stats,
            EventKind::TestStarted {
                test: "/a".into(),
                remote: "r".into(),
                attempt: 0,
            },
        );
        let ev = rx.try_recv().expect("event");
        assert_eq!(rx.stats(), &stats);
        let v = serde_json::to_value(&ev).expect("json");
        assert_eq!(v["event"], "test_started");
        assert_eq!(v["test"], "/a");
        assert!(v["ts"].as_f64().is_some_and(|t| t > 0.0));
        assert!(v["elapsed"].as_f64().is_some());
        assert_eq!(v["stats"]["tests"], 3);
        assert_eq!(v["stats"]["running"], 1);
        assert_eq!(v["stats"]["verdicts"]["pass"], 1);
        assert_eq!(v["stats"]["remotes"]["active"], 0);
        assert!(v["stats"]["cancel"].is_null());
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
    fn reasons_and_verdicts_serialise_lowercase() {
        let (tx, mut rx) = event_channel(4);
        let stats = RunStats::default();
        tx.emit(&stats, finished("/a", Verdict::Warn, false));
        tx.emit(
            &stats,
            EventKind::RemoteRetired {
                remote: "r".into(),
                test: "/a".into(),
                reason: RetireReason::Destructive,
            },
        );
        tx.emit(
            &stats,
            EventKind::RemoteReleased {
                remote: "r".into(),
                reason: ReleaseReason::SetupFailed,
            },
        );
        tx.emit(
            &stats,
            EventKind::CancelBegun {
                reason: CancelReason::SetupLimit,
            },
        );
        let mut next = || serde_json::to_value(rx.try_recv().expect("event")).expect("json");
        let v = next();
        assert_eq!(
            (v["event"].as_str(), v["verdict"].as_str()),
            (Some("test_finished"), Some("warn"))
        );
        let v = next();
        assert_eq!(v["event"], "remote_retired");
        assert_eq!(v["reason"], "destructive");
        let v = next();
        assert_eq!(v["reason"], "setup-failed");
        let v = next();
        assert_eq!(v["event"], "cancel_begun");
        assert_eq!(v["reason"], "setup-limit");
    }

    #[test]
    fn disabled_sender_is_silent() {
        let tx = EventSender::disabled();
        assert!(!tx.is_enabled());
        tx.emit(&RunStats::default(), CANCEL);
        assert_eq!(tx.dropped(), 0);
    }
}
