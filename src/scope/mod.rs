//! Structured concurrency: a tree of [`Scope`]s.
//!
//! A `Scope` is one node of the task tree. It owns
//!
//! * a *graceful* [`CancellationToken`](tokio_util::sync::CancellationToken): "please stop" — running tests are terminated with
//!   SIGTERM and a grace period, remotes are released, results are flushed;
//! * a *force* token: "stop now" — process groups get SIGKILL at once. Forcing always
//!   implies graceful cancellation, never the reverse;
//! * a [`TaskTracker`](tokio_util::task::TaskTracker) for the tasks spawned in it, so that [`Scope::shutdown`] can wait for
//!   them, and so that the parent's wait covers the whole subtree;
//! * a handle to the root's [cleanup reaper](crate::guard), which runs the cleanups of
//!   guards dropped without an explicit release.
//!
//! The library never spawns a detached task: everything runs in some scope and is awaited by
//! the scope's owner, blocking work too ([`Scope::spawn_blocking`]). It never installs a
//! signal handler either; see [`crate::signal`] for the opt-in helper.
//!
//! ```
//! use std::time::Duration;
//! use atex::scope::{Scope, ShutdownOptions};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let root = Scope::root("run");
//! let child = root.child("worker");
//! let token = child.token().clone();
//! child.spawn("wait-for-cancel", async move { token.cancelled().await });
//! let report = root.shutdown(ShutdownOptions::default()).await;
//! assert!(report.is_clean());
//! # }
//! ```
//!
//! # The current scope
//!
//! A task started by [`Scope::spawn`] runs with that scope as its *current scope*. Library
//! code that has no scope parameter (a file copy behind `Connection::upload`, an
//! aggregator's ingest) runs its blocking work in the current scope, so that a shutdown
//! waits for it even when the future that started it was dropped.
//!
//! # Files
//!
//! * `node.rs` — [`Scope`]: tokens, task tracking, the current scope, shutdown;
//! * `shutdown.rs` — [`ShutdownOptions`] and [`ShutdownReport`];
//! * `reaper.rs` — the tree's cleanup reaper, reached by guards through a narrow handle;
//! * `processes.rs` — the tree's registry of local process groups, reached by process
//!   handles through a narrow handle.

mod node;
mod processes;
pub(crate) mod reaper;
mod shutdown;
#[cfg(test)]
mod tests;

pub(crate) use node::spawn_blocking;
pub use node::{DEFAULT_KILL_GRACE, Scope};
pub(crate) use processes::ProcessRegistry;
pub use shutdown::{ShutdownOptions, ShutdownReport};
