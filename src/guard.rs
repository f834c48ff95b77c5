//! Cleanup guards for outside resources, and the reaper that runs the cleanups of guards
//! that were dropped without an explicit release.
//!
//! The normal path is [`CleanupGuard::release`]: an `async` call that runs the cleanup now and
//! reports its outcome. [`Drop`] is the safety net: it never blocks and needs no runtime; it
//! hands the cleanup to the reaper of the scope tree the guard was created in, and
//! [`Scope::shutdown`](crate::scope::Scope::shutdown) waits for the reaper before returning.
//! A cleanup that cannot run any more (the reaper is gone because the runtime is shutting
//! down) is logged at `error` level with its description, so that a person can clean up by
//! hand.
//!
//! ```
//! use atex::guard::CleanupGuard;
//! use atex::scope::{Scope, ShutdownOptions};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let scope = Scope::root("doc");
//! let dir = tempfile::tempdir().unwrap().keep();
//! let path = dir.clone();
//! let guard = CleanupGuard::new(&scope, format!("remove {}", dir.display()), move || async move {
//!     tokio::fs::remove_dir_all(&path).await.map_err(|e| e.to_string())
//! });
//! drop(guard); // no explicit release: the reaper does it
//! assert!(scope.shutdown(ShutdownOptions::default()).await.is_clean());
//! assert!(!dir.exists());
//! # }
//! ```

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::sync::{Notify, mpsc, oneshot};
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::scope::Scope;

/// How long one cleanup may take in the reaper before it is reported as failed.
pub const CLEANUP_TIMEOUT: Duration = Duration::from_secs(120);

type CleanupFn = Box<dyn FnOnce() -> BoxFuture<'static, Result<(), String>> + Send>;

struct Job {
    what: String,
    cleanup: CleanupFn,
    /// Where [`CleanupGuard::release`] waits for the outcome; `None` for dropped guards.
    /// An outcome nobody receives (the release future was dropped) is reported like the
    /// cleanup of a dropped guard.
    reply: Option<oneshot::Sender<Result<(), String>>>,
}

/// The error of a failed cleanup.
#[derive(Debug, Clone, thiserror::Error)]
#[error("cleanup '{what}' failed: {message}")]
pub struct CleanupError {
    /// The guard's description of the resource.
    pub what: String,
    /// What went wrong.
    pub message: String,
}

/// Runs the cleanups of dropped guards for one scope tree.
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
                        Err(_) => Err(format!("timed out after {CLEANUP_TIMEOUT:?}")),
                    };
                    // A release still waiting takes the outcome; otherwise it is ours to
                    // report.
                    let unreported = match reply {
                        Some(reply) => reply.send(outcome).err(),
                        None => Some(outcome),
                    };
                    if let Some(Err(error)) = unreported {
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
    fn submit(&self, what: String, cleanup: CleanupFn) {
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

/// Owns the cleanup of one outside resource (a container, a reservation, a temporary
/// directory, a remote process group).
///
/// Call [`release`](Self::release) on the normal path; if the guard is dropped instead
/// (an early return, a panic, a cancelled future), its cleanup is handed to the reaper of
/// the scope tree it was created in.
pub struct CleanupGuard {
    what: String,
    cleanup: Option<CleanupFn>,
    reaper_owner: Arc<crate::scope::Shared>,
}

impl fmt::Debug for CleanupGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CleanupGuard")
            .field("what", &self.what)
            .field("armed", &self.cleanup.is_some())
            .finish()
    }
}

impl CleanupGuard {
    /// Arms a guard. `what` describes the resource well enough to clean it up by hand
    /// (for example `podman rm -f 3f2a…` or `DELETE /requests/1234`).
    pub fn new<F, Fut>(scope: &Scope, what: impl Into<String>, cleanup: F) -> Self
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        Self {
            what: what.into(),
            cleanup: Some(Box::new(move || Box::pin(cleanup()))),
            reaper_owner: scope.shared().clone(),
        }
    }

    /// The description given at creation.
    pub fn what(&self) -> &str {
        &self.what
    }

    /// Whether the cleanup is still to be done.
    pub fn is_armed(&self) -> bool {
        self.cleanup.is_some()
    }

    /// Runs the cleanup now, waits for its outcome, and disarms the guard.
    ///
    /// The cleanup runs in the scope tree's reaper (within [`CLEANUP_TIMEOUT`]), the
    /// caller only waits for it.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: once called, the cleanup belongs to the reaper. If this future is
    /// dropped or cut short by a timeout, the cleanup still runs to its end,
    /// [`Scope::shutdown`](crate::scope::Scope::shutdown) waits for it, and a failure
    /// nobody received is reported in its
    /// [`ShutdownReport`](crate::scope::ShutdownReport) like the cleanup of a dropped guard.
    pub async fn release(mut self) -> Result<(), CleanupError> {
        let Some(cleanup) = self.cleanup.take() else {
            return Ok(());
        };
        let what = self.what.clone();
        let err = |message| CleanupError {
            what: what.clone(),
            message,
        };
        // Keep the caller's span on the cleanup, though it runs in the reaper's task.
        let span = tracing::Span::current();
        let cleanup: CleanupFn = Box::new(move || Box::pin(cleanup().instrument(span)));
        let (reply, outcome) = oneshot::channel();
        let job = Job {
            what: what.clone(),
            cleanup,
            reply: Some(reply),
        };
        match self.reaper_owner.reaper.send(job) {
            Ok(()) => match outcome.await {
                Ok(r) => r.map_err(err),
                Err(_) => Err(err(
                    "the cleanup reaper stopped before the cleanup ended (runtime shutting down?)"
                        .into(),
                )),
            },
            // No reaper any more (its runtime is shutting down): run it here.
            Err(job) => (job.cleanup)().await.map_err(err),
        }
    }

    /// Disarms the guard without cleaning up (the resource was handed over or is gone).
    pub fn disarm(mut self) {
        self.cleanup = None;
    }
}

impl Drop for CleanupGuard {
    fn drop(&mut self) {
        if let Some(cleanup) = self.cleanup.take() {
            tracing::debug!(resource = %self.what, "guard dropped without release; reaper takes over");
            self.reaper_owner
                .reaper
                .submit(std::mem::take(&mut self.what), cleanup);
        }
    }
}
