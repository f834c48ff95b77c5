//! The cleanup reaper of one scope tree: runs the cleanups of
//! [`CleanupGuard`](crate::guard::CleanupGuard)s, those dropped without release and those
//! released explicitly, so that [`Scope::shutdown`](crate::scope::Scope::shutdown) can wait
//! for all of them and report what failed.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;

use crate::error::BoxError;
use tokio::sync::{Notify, mpsc, oneshot};
use tokio_util::task::TaskTracker;

/// How long one cleanup may take in the reaper before it is reported as failed.
pub const CLEANUP_TIMEOUT: Duration = Duration::from_secs(120);

/// A guard's cleanup, boxed for the reaper.
pub(crate) type CleanupFn = Box<dyn FnOnce() -> BoxFuture<'static, Result<(), BoxError>> + Send>;

/// Why the reaper could not give a cleanup's own outcome.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReaperFailure {
    /// The cleanup took longer than [`CLEANUP_TIMEOUT`].
    #[error("the cleanup timed out after {0:?}")]
    TimedOut(Duration),
    /// The reaper stopped before the cleanup ended.
    #[error("the cleanup reaper stopped before the cleanup ended (runtime shutting down?)")]
    Stopped,
}

struct Job {
    what: String,
    cleanup: CleanupFn,
    /// Where [`CleanupGuard::release`](crate::guard::CleanupGuard::release) waits for the outcome; `None` for dropped guards.
    /// An outcome nobody receives (the release future was dropped) is reported like the
    /// cleanup of a dropped guard.
    reply: Option<oneshot::Sender<Result<(), BoxError>>>,
}

/// Runs the cleanups of guards for one scope tree.
///
/// A cheap handle (a channel sender and an `Arc`): every guard keeps a clone to hand its
/// cleanup to the reaper of the tree it was created in.
#[derive(Clone)]
pub(crate) struct Reaper {
    tx: mpsc::UnboundedSender<Job>,
    state: Arc<ReaperState>,
}

#[derive(Default)]
struct ReaperState {
    pending: AtomicUsize,
    pending_what: Mutex<Vec<String>>,
    failed: Mutex<Vec<String>>,
    idle: Notify,
}

/// Outcome of [`Reaper::drain`].
pub(crate) struct ReaperDrain {
    pub(crate) failed: Vec<String>,
    pub(crate) pending: Vec<String>,
}

impl Reaper {
    /// Starts the reaper task on the current runtime.
    pub(crate) fn start() -> Self {
        let (tx, mut rx) = mpsc::unbounded_channel::<Job>();
        let state = Arc::new(ReaperState::default());
        let worker_state = state.clone();
        // The reaper lives as long as the runtime or until every sender is gone; its jobs are
        // awaited by `drain`, so it is not a detached fire-and-forget task.
        let jobs = TaskTracker::new();
        jobs.spawn(async move {
            let runner = TaskTracker::new();
            while let Some(job) = rx.recv().await {
                let state = worker_state.clone();
                runner.spawn(async move {
                    let Job {
                        what,
                        cleanup,
                        reply,
                    } = job;
                    let outcome = tokio::time::timeout(CLEANUP_TIMEOUT, cleanup()).await;
                    let outcome = match outcome {
                        Ok(r) => r,
                        Err(_) => Err(ReaperFailure::TimedOut(CLEANUP_TIMEOUT).into()),
                    };
                    // A release still waiting takes the outcome; otherwise it is ours to
                    // report.
                    let unreported = match reply {
                        Some(reply) => reply.send(outcome).err(),
                        None => Some(outcome),
                    };
                    if let Some(Err(error)) = unreported {
                        let error = crate::error::chain(&*error);
                        tracing::error!(resource = %what, %error,
                            "cleanup failed; clean this up by hand");
                        if let Ok(mut f) = state.failed.lock() {
                            f.push(format!("{what}: {error}"));
                        }
                    } else if unreported.is_some() {
                        tracing::debug!(resource = %what, "cleanup done by the reaper");
                    }
                    if let Ok(mut p) = state.pending_what.lock()
                        && let Some(pos) = p.iter().position(|w| *w == what)
                    {
                        p.swap_remove(pos);
                    }
                    state.pending.fetch_sub(1, Ordering::SeqCst);
                    state.idle.notify_waiters();
                });
            }
        });
        jobs.close();
        Self { tx, state }
    }

    /// Hands a dropped guard's cleanup to the reaper.
    pub(crate) fn submit(&self, what: String, cleanup: CleanupFn) {
        if let Err(job) = self.send(Job {
            what,
            cleanup,
            reply: None,
        }) {
            tracing::error!(resource = %job.what,
                "the cleanup reaper is gone (runtime shutting down?); clean this up by hand");
            if let Ok(mut f) = self.state.failed.lock() {
                f.push(format!("{}: reaper gone", job.what));
            }
        }
    }

    /// Hands a released guard's cleanup to the reaper; the receiver gets its outcome. An
    /// outcome nobody receives (the receiver was dropped) is reported like the cleanup of a
    /// dropped guard. Gives the cleanup back when the reaper is gone (its runtime is shutting
    /// down), for the caller to run itself.
    pub(crate) fn run(
        &self,
        what: String,
        cleanup: CleanupFn,
    ) -> Result<oneshot::Receiver<Result<(), BoxError>>, CleanupFn> {
        let (reply, outcome) = oneshot::channel();
        let job = Job {
            what,
            cleanup,
            reply: Some(reply),
        };
        match self.send(job) {
            Ok(()) => Ok(outcome),
            Err(job) => Err(job.cleanup),
        }
    }

    /// Queues `job`, counted as pending until it ends; gives it back when the reaper is gone.
    fn send(&self, job: Job) -> Result<(), Job> {
        self.state.pending.fetch_add(1, Ordering::SeqCst);
        if let Ok(mut p) = self.state.pending_what.lock() {
            p.push(job.what.clone());
        }
        match self.tx.send(job) {
            Ok(()) => Ok(()),
            Err(mpsc::error::SendError(job)) => {
                self.state.pending.fetch_sub(1, Ordering::SeqCst);
                if let Ok(mut p) = self.state.pending_what.lock()
                    && let Some(pos) = p.iter().position(|w| *w == job.what)
                {
                    p.swap_remove(pos);
                }
                Err(job)
            }
        }
    }

    /// Waits until every submitted cleanup finished, or `timeout` passed.
    pub(crate) async fn drain(&self, timeout: Duration) -> ReaperDrain {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.state.idle.notified();
            if self.state.pending.load(Ordering::SeqCst) == 0 {
                break;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                break;
            }
        }
        let failed = self
            .state
            .failed
            .lock()
            .map(|mut f| std::mem::take(&mut *f))
            .unwrap_or_default();
        let pending = self
            .state
            .pending_what
            .lock()
            .map(|p| p.clone())
            .unwrap_or_default();
        for what in &pending {
            tracing::error!(resource = %what, "cleanup did not finish in time; clean this up by hand");
        }
        ReaperDrain { failed, pending }
    }
}
