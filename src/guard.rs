//! Cleanup guards for outside resources. Their cleanups run in the reaper of the
//! [scope](crate::scope) tree the guard was created in.
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
//!     Ok(tokio::fs::remove_dir_all(&path).await?)
//! });
//! drop(guard); // no explicit release: the reaper does it
//! assert!(scope.shutdown(ShutdownOptions::default()).await.is_clean());
//! assert!(!dir.exists());
//! # }
//! ```

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use tracing::Instrument;

use crate::error::BoxError;
use crate::scope::Scope;
use crate::scope::reaper::{CleanupFn, Reaper, ReaperFailure};

pub use crate::scope::reaper::CLEANUP_TIMEOUT;

/// The error of a failed cleanup; the cleanup's own error is the source.
#[derive(Debug, Clone, thiserror::Error)]
#[error("cleanup '{what}' failed")]
pub struct CleanupError {
    /// The guard's description of the resource.
    pub what: String,
    /// What went wrong: the cleanup's error, or why it could not finish (timeout, the
    /// reaper stopped).
    #[source]
    pub source: Arc<dyn std::error::Error + Send + Sync>,
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
    reaper: Reaper,
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
    /// (for example `podman rm -f 3f2a…` or `DELETE /requests/1234`). The cleanup's error
    /// (`?` converts any error, `.into()` a message) becomes the source of the
    /// [`CleanupError`].
    pub fn new<F, Fut>(scope: &Scope, what: impl Into<String>, cleanup: F) -> Self
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), BoxError>> + Send + 'static,
    {
        Self {
            what: what.into(),
            cleanup: Some(Box::new(move || Box::pin(cleanup()))),
            reaper: scope.reaper().clone(),
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
        let err = |source: BoxError| CleanupError {
            what: what.clone(),
            source: Arc::from(source),
        };
        // Keep the caller's span on the cleanup, though it runs in the reaper's task.
        let span = tracing::Span::current();
        let cleanup: CleanupFn = Box::new(move || Box::pin(cleanup().instrument(span)));
        match self.reaper.run(what.clone(), cleanup) {
            Ok(outcome) => match outcome.await {
                Ok(r) => r.map_err(err),
                Err(_) => Err(err(ReaperFailure::Stopped.into())),
            },
            // No reaper any more (its runtime is shutting down): run it here.
            Err(cleanup) => cleanup().await.map_err(err),
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
            self.reaper.submit(std::mem::take(&mut self.what), cleanup);
        }
    }
}
