//! Opt-in Ctrl-C / SIGTERM / SIGHUP handling: the cancellation ladder.
//!
//! The library installs no signal handler by itself (registering one disables the default
//! "terminate" action for the life of the process). A program that wants the usual
//! behaviour calls [`install`] once with its root [`Scope`]:
//!
//! 1. the first SIGINT, SIGTERM or SIGHUP (the terminal or session went away) cancels the
//!    scope gracefully: running tests get SIGTERM and a grace period, remotes are
//!    released, finished results are kept;
//! 2. the second one forces: process groups get SIGKILL at once;
//! 3. the third one SIGKILLs every registered local process group synchronously and exits
//!    the process with status 130.
//!
//! ```no_run
//! # #[tokio::main] async fn main() -> std::io::Result<()> {
//! let scope = atex::scope::Scope::root("run");
//! let signals = atex::signal::install(&scope)?;
//! // ... run things in `scope` ...
//! if signals.count() > 0 {
//!     std::process::exit(130);
//! }
//! # Ok(()) }
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::signal::unix::{SignalKind, signal};
use tokio_util::task::AbortOnDropHandle;

use crate::scope::Scope;

/// Keeps the signal listener alive; dropping it stops listening (the handlers stay
/// registered with the OS, as Tokio cannot unregister them).
#[derive(Debug)]
pub struct SignalHandler {
    count: Arc<AtomicUsize>,
    _task: AbortOnDropHandle<()>,
}

impl SignalHandler {
    /// How many SIGINT/SIGTERM/SIGHUP signals arrived so far.
    pub fn count(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }

    /// Whether at least one signal arrived (the run was interrupted).
    pub fn interrupted(&self) -> bool {
        self.count() > 0
    }
}

/// Starts listening for SIGINT, SIGTERM and SIGHUP and drives `scope` down the
/// cancellation ladder.
pub fn install(scope: &Scope) -> std::io::Result<SignalHandler> {
    let mut int = signal(SignalKind::interrupt())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut hup = signal(SignalKind::hangup())?;
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    let scope = scope.clone();
    let task = tokio::spawn(async move {
        loop {
            let name = tokio::select! {
                Some(()) = int.recv() => "SIGINT",
                Some(()) = term.recv() => "SIGTERM",
                Some(()) = hup.recv() => "SIGHUP",
                else => return,
            };
            let n = seen.fetch_add(1, Ordering::SeqCst) + 1;
            match n {
                1 => {
                    tracing::warn!(
                        signal = name,
                        "interrupted: cancelling gracefully (again to force)"
                    );
                    scope.cancel();
                }
                2 => {
                    tracing::warn!(
                        signal = name,
                        "second signal: killing running processes (again to exit at once)"
                    );
                    scope.kill();
                }
                _ => {
                    let killed = scope.kill_all_processes_now();
                    tracing::error!(signal = name, killed, "third signal: exiting immediately");
                    std::process::exit(130);
                }
            }
        }
    });
    Ok(SignalHandler {
        count,
        _task: AbortOnDropHandle::new(task),
    })
}
