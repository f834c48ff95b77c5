//! Structured concurrency: a tree of [`Scope`]s.
//!
//! A `Scope` is one node of the task tree. It owns
//!
//! * a *graceful* [`CancellationToken`]: "please stop" — running tests are terminated with
//!   SIGTERM and a grace period, remotes are released, results are flushed;
//! * a *force* token: "stop now" — process groups get SIGKILL at once. Forcing always
//!   implies graceful cancellation, never the reverse;
//! * a [`TaskTracker`] for the tasks spawned in it, so that [`Scope::shutdown`] can wait for
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

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tokio_util::task::task_tracker::TaskTrackerToken;
use tracing::Instrument;

use crate::guard::{Reaper, ReaperDrain};

tokio::task_local! {
    /// The scope whose `spawn` started the running task.
    static CURRENT: Scope;
}

/// Runs the blocking closure `f` tracked by the [current scope](self#the-current-scope)
/// ([`Scope::spawn_blocking`]). Code that has no scope at hand (a trait method without a
/// scope parameter) uses this instead of `tokio::task::spawn_blocking`. Called outside any
/// scope's task (the caller awaits it from its own task), there is no tree to track it
/// in, and the closure runs as a plain blocking task that the caller awaits.
pub(crate) fn spawn_blocking<F, R>(task: &str, f: F) -> JoinHandle<R>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    match Scope::current() {
        Some(scope) => scope.spawn_blocking(task, f),
        None => {
            tracing::trace!(task, "blocking task outside any scope's task: not tracked");
            tokio::task::spawn_blocking(f)
        }
    }
}

/// Default grace period between SIGTERM and SIGKILL for local process groups.
pub const DEFAULT_KILL_GRACE: Duration = Duration::from_secs(3);

/// A node of the structured-concurrency tree. Cheap to clone (an `Arc`).
#[derive(Clone)]
pub struct Scope {
    inner: Arc<Inner>,
}

struct Inner {
    name: String,
    graceful: CancellationToken,
    force: CancellationToken,
    tracker: TaskTracker,
    /// The parent scope (kept alive by its children), whose trackers count this scope's
    /// tasks too.
    parent: Option<Scope>,
    shared: Arc<Shared>,
}

/// State shared by every scope of one tree.
pub(crate) struct Shared {
    pub(crate) reaper: Reaper,
    /// The runtime the tree was created on: tasks spawned from outside any runtime (a
    /// `Drop` on a foreign thread, after the runtime ended) go there.
    runtime: tokio::runtime::Handle,
    processes: ProcessRegistry,
    kill_grace: Mutex<Duration>,
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Shared")
    }
}

impl Shared {
    pub(crate) fn processes_unregister(&self, id: u64) {
        self.processes.unregister(id);
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Nobody can spawn into this scope any more: let waiters see it empty.
        self.tracker.close();
    }
}

impl fmt::Debug for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scope")
            .field("name", &self.inner.name)
            .field("cancelled", &self.is_cancelled())
            .field("killed", &self.is_killed())
            .field("tasks", &self.inner.tracker.len())
            .finish()
    }
}

impl Scope {
    /// Creates the root of a new scope tree and starts its cleanup reaper.
    ///
    /// # Panics
    ///
    /// Must be called from within a Tokio runtime (like `tokio::spawn`).
    pub fn root(name: impl Into<String>) -> Self {
        Self::root_with_token(name, CancellationToken::new())
    }

    /// Like [`Scope::root`], but graceful cancellation also follows `parent`, a token owned
    /// by the embedding application (for example its own Ctrl-C handling).
    pub fn root_with_token(name: impl Into<String>, parent: CancellationToken) -> Self {
        let shared = Arc::new(Shared {
            reaper: Reaper::start(),
            runtime: tokio::runtime::Handle::current(),
            processes: ProcessRegistry::default(),
            kill_grace: Mutex::new(DEFAULT_KILL_GRACE),
        });
        Self {
            inner: Arc::new(Inner {
                name: name.into(),
                graceful: parent.child_token(),
                force: CancellationToken::new(),
                tracker: TaskTracker::new(),
                parent: None,
                shared,
            }),
        }
    }

    /// Creates a child scope. Cancelling the parent cancels the child; cancelling the child
    /// leaves the parent and its siblings alone. The parent's [`shutdown`](Self::shutdown)
    /// waits for the child's tasks too.
    pub fn child(&self, name: impl Into<String>) -> Scope {
        let name = format!("{}/{}", self.inner.name, name.into());
        // Forcing a parent also cancels the child's graceful token: the child's graceful
        // token follows the parent's graceful token, which `kill()` cancels as well.
        Scope {
            inner: Arc::new(Inner {
                name,
                graceful: self.inner.graceful.child_token(),
                force: self.inner.force.child_token(),
                tracker: TaskTracker::new(),
                parent: Some(self.clone()),
                shared: self.inner.shared.clone(),
            }),
        }
    }

    /// Creates a *shielded* child scope: graceful cancellation of the parent does not reach
    /// it, forced cancellation does. Work that must still happen when a run is cancelled
    /// (plan `finish` steps, releasing a reservation) runs here: it gets the parent's
    /// shutdown grace period to finish, and is killed when the parent is forced. Cancelling
    /// the shielded scope itself still works as for any scope. Its tasks count in the
    /// parent's tracker, so [`shutdown`](Self::shutdown) waits for them.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let root = atex::scope::Scope::root("run");
    /// let cleanup = root.shielded("finish");
    /// root.cancel();
    /// assert!(!cleanup.is_cancelled());
    /// root.kill();
    /// assert!(cleanup.is_cancelled() && cleanup.is_killed());
    /// # }
    /// ```
    pub fn shielded(&self, name: impl Into<String>) -> Scope {
        let name = format!("{}/{}", self.inner.name, name.into());
        let force = self.inner.force.child_token();
        Scope {
            inner: Arc::new(Inner {
                name,
                // Forcing the parent cancels `force`, which cancels this child token too.
                graceful: force.child_token(),
                force,
                tracker: TaskTracker::new(),
                parent: Some(self.clone()),
                shared: self.inner.shared.clone(),
            }),
        }
    }

    /// The scope's name, a `/`-separated path from the root.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The graceful cancellation token ("please stop").
    pub fn token(&self) -> &CancellationToken {
        &self.inner.graceful
    }

    /// The force token ("stop now"); cancelled only by [`kill`](Self::kill).
    pub fn force_token(&self) -> &CancellationToken {
        &self.inner.force
    }

    /// Asks everything in this scope (and below) to stop gracefully.
    pub fn cancel(&self) {
        self.inner.graceful.cancel();
    }

    /// Asks everything in this scope (and below) to stop at once: implies [`cancel`](Self::cancel).
    pub fn kill(&self) {
        self.inner.force.cancel();
        self.inner.graceful.cancel();
    }

    /// Whether graceful cancellation was requested.
    pub fn is_cancelled(&self) -> bool {
        self.inner.graceful.is_cancelled()
    }

    /// Whether forced cancellation was requested.
    pub fn is_killed(&self) -> bool {
        self.inner.force.is_cancelled()
    }

    /// Resolves when graceful cancellation is requested.
    pub async fn cancelled(&self) {
        self.inner.graceful.cancelled().await
    }

    /// Runs `fut` unless the scope is cancelled first; `None` means it was cancelled.
    pub async fn run<F: Future>(&self, fut: F) -> Option<F::Output> {
        self.inner.graceful.run_until_cancelled(fut).await
    }

    /// Spawns a task tracked by this scope, inside a tracing span naming the scope and task.
    ///
    /// The task is *not* aborted by cancellation: it is expected to watch
    /// [`token`](Self::token) and return promptly, running its cleanup on the way out.
    ///
    /// While it runs, the task's [current scope](self#the-current-scope) is this scope.
    ///
    /// Callable from any thread: outside a Tokio runtime (a `Drop` on a foreign thread) the
    /// task goes to the runtime the tree was created on. Once that runtime has shut down,
    /// the task is dropped without running; this never panics.
    pub fn spawn<F>(&self, task: &str, fut: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let span = tracing::debug_span!("task", scope = %self.inner.name, task = %task);
        let ancestors = self.ancestor_tokens();
        let fut = async move {
            let _ancestors = ancestors;
            fut.await
        };
        self.inner.tracker.spawn_on(
            CURRENT.scope(self.clone(), fut).instrument(span),
            &self.runtime(),
        )
    }

    /// The current runtime, or the tree's when called outside any runtime.
    fn runtime(&self) -> tokio::runtime::Handle {
        tokio::runtime::Handle::try_current().unwrap_or_else(|_| self.inner.shared.runtime.clone())
    }

    /// Runs the blocking closure `f` on Tokio's blocking thread pool, tracked by this scope
    /// like a task of [`spawn`](Self::spawn) (and, like it, callable from any thread):
    /// [`shutdown`](Self::shutdown) of this scope or an ancestor waits for it (and reports
    /// it in [`ShutdownReport::tasks_left`] when it outlives the deadlines).
    ///
    /// A blocking closure cannot be cancelled: dropping the returned handle (or a future
    /// awaiting it) leaves it running, still tracked, until it returns.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let root = atex::scope::Scope::root("run");
    /// let sum = root.spawn_blocking("add", || (1..=10).sum::<u32>());
    /// assert_eq!(sum.await.unwrap(), 55);
    /// assert!(root.shutdown(Default::default()).await.is_clean());
    /// # }
    /// ```
    pub fn spawn_blocking<F, R>(&self, task: &str, f: F) -> JoinHandle<R>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        let span = tracing::debug_span!("blocking", scope = %self.inner.name, task = %task);
        let ancestors = self.ancestor_tokens();
        self.inner.tracker.spawn_blocking_on(
            move || {
                let _ancestors = ancestors;
                let _entered = span.enter();
                f()
            },
            &self.runtime(),
        )
    }

    /// Tokens of every ancestor's tracker: a task holding them counts in every ancestor's
    /// tracker, so that waiting for a scope covers its whole subtree (without a waiter task
    /// per child scope).
    fn ancestor_tokens(&self) -> Vec<TaskTrackerToken> {
        let mut ancestors = Vec::new();
        let mut parent = self.inner.parent.as_ref();
        while let Some(p) = parent {
            ancestors.push(p.inner.tracker.token());
            parent = p.inner.parent.as_ref();
        }
        ancestors
    }

    /// The scope of the task this is called from (the scope whose [`spawn`](Self::spawn)
    /// started it), if any.
    pub(crate) fn current() -> Option<Scope> {
        CURRENT.try_with(Scope::clone).ok()
    }

    /// Number of tasks running in this scope and its child scopes.
    pub fn task_count(&self) -> usize {
        self.inner.tracker.len()
    }

    /// Grace period between SIGTERM and SIGKILL used for local process groups in this tree.
    pub fn kill_grace(&self) -> Duration {
        self.inner
            .shared
            .kill_grace
            .lock()
            .map(|g| *g)
            .unwrap_or(DEFAULT_KILL_GRACE)
    }

    /// Sets the grace period between SIGTERM and SIGKILL for the whole tree.
    pub fn set_kill_grace(&self, grace: Duration) {
        if let Ok(mut g) = self.inner.shared.kill_grace.lock() {
            *g = grace;
        }
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.inner.shared
    }

    pub(crate) fn reaper(&self) -> &Reaper {
        &self.inner.shared.reaper
    }

    pub(crate) fn processes(&self) -> &ProcessRegistry {
        &self.inner.shared.processes
    }

    /// Sends SIGKILL to every local process group still registered in this tree. Needs no
    /// runtime and never blocks; used by the third-signal path of [`crate::signal`].
    pub fn kill_all_processes_now(&self) -> usize {
        self.inner.shared.processes.kill_all()
    }

    /// Stops this scope and everything below it, in order:
    ///
    /// 1. cancel gracefully and wait up to `options.grace` for the tasks to end;
    /// 2. if some are still running, force (SIGKILL process groups) and wait up to
    ///    `options.kill_grace`;
    /// 3. wait up to `options.cleanup_timeout` for the reaper to finish the cleanups of
    ///    dropped guards;
    /// 4. SIGKILL any local process group still registered.
    ///
    /// Returns what could not be finished, so a caller can tell the user what to clean by hand.
    pub async fn shutdown(&self, options: ShutdownOptions) -> ShutdownReport {
        let mut report = ShutdownReport::default();
        self.cancel();
        self.inner.tracker.close();
        let tracker = self.inner.tracker.clone();
        if tokio::time::timeout(options.grace, tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!(scope = %self.inner.name, tasks = tracker.len(),
                "tasks still running after the grace period, forcing");
            report.forced = true;
            self.kill();
            if tokio::time::timeout(options.kill_grace, tracker.wait())
                .await
                .is_err()
            {
                report.tasks_left = tracker.len();
                tracing::error!(scope = %self.inner.name, tasks = report.tasks_left,
                    "tasks still running after the kill grace period");
            }
        }
        let drain: ReaperDrain = self.reaper().drain(options.cleanup_timeout).await;
        report.cleanups_failed = drain.failed;
        report.cleanups_pending = drain.pending;
        report.processes_killed = self.kill_all_processes_now();
        if report.processes_killed > 0 {
            tracing::warn!(scope = %self.inner.name, groups = report.processes_killed,
                "killed process groups left after shutdown");
        }
        report
    }
}

/// Deadlines of [`Scope::shutdown`].
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

/// What [`Scope::shutdown`] could not finish.
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

/// Local process groups alive in one scope tree, for the last-resort synchronous kill.
#[derive(Default)]
pub(crate) struct ProcessRegistry {
    next: AtomicU64,
    groups: Mutex<HashMap<u64, i32>>,
}

impl ProcessRegistry {
    pub(crate) fn register(&self, pgid: i32) -> u64 {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut g) = self.groups.lock() {
            g.insert(id, pgid);
        }
        id
    }

    pub(crate) fn unregister(&self, id: u64) {
        if let Ok(mut g) = self.groups.lock() {
            g.remove(&id);
        }
    }

    fn kill_all(&self) -> usize {
        let groups: Vec<i32> = match self.groups.lock() {
            Ok(mut g) => g.drain().map(|(_, pgid)| pgid).collect(),
            Err(_) => return 0,
        };
        groups
            .into_iter()
            .filter(|pgid| killpg(Pid::from_raw(*pgid), Signal::SIGKILL).is_ok())
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn child_cancel_leaves_parent_and_siblings() {
        let root = Scope::root("t");
        let a = root.child("a");
        let b = root.child("b");
        a.cancel();
        assert!(a.is_cancelled());
        assert!(!b.is_cancelled());
        assert!(!root.is_cancelled());
        root.cancel();
        assert!(b.is_cancelled());
    }

    #[tokio::test]
    async fn kill_implies_cancel_in_children() {
        let root = Scope::root("t");
        let a = root.child("a");
        root.kill();
        assert!(a.is_killed());
        assert!(a.is_cancelled());
    }

    #[tokio::test]
    async fn shutdown_waits_for_child_tasks() {
        let root = Scope::root("t");
        let child = root.child("c");
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = done.clone();
        let token = child.token().clone();
        child.spawn("task", async move {
            token.cancelled().await;
            tokio::time::sleep(Duration::from_millis(50)).await;
            flag.store(true, Ordering::SeqCst);
        });
        drop(child);
        let report = root.shutdown(ShutdownOptions::default()).await;
        assert!(done.load(Ordering::SeqCst));
        assert!(report.is_clean(), "{report:?}");
    }

    #[tokio::test]
    async fn shielded_child_ignores_graceful_obeys_force() {
        let root = Scope::root("t");
        let mid = root.child("mid");
        let shielded = mid.shielded("finish");
        let below = shielded.child("step");
        root.cancel();
        assert!(mid.is_cancelled());
        assert!(!shielded.is_cancelled() && !below.is_cancelled());
        root.kill();
        assert!(shielded.is_cancelled() && shielded.is_killed());
        assert!(below.is_cancelled() && below.is_killed());
    }

    #[tokio::test]
    async fn shutdown_gives_shielded_work_the_grace_period() {
        let root = Scope::root("t");
        let shielded = root.shielded("finish");
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = done.clone();
        let token = shielded.token().clone();
        let (started_tx, started_rx) = tokio::sync::oneshot::channel();
        shielded.spawn("finish", async move {
            let _ = started_tx.send(());
            // Real work that ignores graceful cancellation but ends on its own.
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(100)) => flag.store(true, Ordering::SeqCst),
                _ = token.cancelled() => {}
            }
        });
        let _ = started_rx.await;
        drop(shielded);
        let report = root.shutdown(ShutdownOptions::default()).await;
        assert!(done.load(Ordering::SeqCst), "shielded work was cut short");
        assert!(!report.forced);
        assert!(report.is_clean(), "{report:?}");
    }

    /// A blocking closure that reports its start and then waits for the gate.
    fn gated_blocking(
        done: Arc<std::sync::atomic::AtomicBool>,
    ) -> (
        impl FnOnce() + Send + 'static,
        std::sync::mpsc::Receiver<()>,
        std::sync::mpsc::Sender<()>,
    ) {
        let (started_tx, started_rx) = std::sync::mpsc::channel();
        let (gate_tx, gate_rx) = std::sync::mpsc::channel::<()>();
        let f = move || {
            let _ = started_tx.send(());
            let _ = gate_rx.recv();
            done.store(true, Ordering::SeqCst);
        };
        (f, started_rx, gate_tx)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn shutdown_waits_for_a_blocking_task() {
        let root = Scope::root("t");
        let child = root.child("c");
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (f, started, gate) = gated_blocking(done.clone());
        // The handle is dropped at once: nobody awaits the closure but the scope.
        drop(child.spawn_blocking("gated", f));
        drop(child);
        started.recv().unwrap();
        let shutdown = tokio::spawn(async move { root.shutdown(ShutdownOptions::default()).await });
        tokio::task::yield_now().await;
        assert!(!shutdown.is_finished(), "shutdown did not wait");
        gate.send(()).unwrap();
        let report = shutdown.await.unwrap();
        assert!(
            done.load(Ordering::SeqCst),
            "shutdown returned before the blocking task ended"
        );
        assert!(report.is_clean(), "{report:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stuck_blocking_task_is_reported() {
        let root = Scope::root("t");
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (f, started, gate) = gated_blocking(done.clone());
        // Started through the current scope of a task that ends (drops the handle) at once.
        let task = root.child("c").spawn("starter", async move {
            drop(super::spawn_blocking("gated", f));
        });
        task.await.unwrap();
        started.recv().unwrap();
        let report = root
            .shutdown(ShutdownOptions {
                grace: Duration::from_millis(50),
                kill_grace: Duration::from_millis(50),
                cleanup_timeout: Duration::from_secs(1),
            })
            .await;
        assert!(report.forced);
        assert_eq!(report.tasks_left, 1, "{report:?}");
        gate.send(()).unwrap();
    }

    #[test]
    fn spawn_outside_any_runtime_uses_the_trees_runtime() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let root = rt.block_on(async { Scope::root("t") });
        let r = root.clone();
        let (task, blocking) =
            std::thread::spawn(move || (r.spawn("x", async { 42 }), r.spawn_blocking("y", || 7)))
                .join()
                .unwrap();
        assert_eq!(rt.block_on(task).unwrap(), 42);
        assert_eq!(rt.block_on(blocking).unwrap(), 7);
        drop(rt);
        // The tree's runtime is gone: nothing runs, nothing panics.
        let r = root.clone();
        std::thread::spawn(move || {
            drop(r.spawn("late", async {}));
            drop(r.spawn_blocking("late", || ()));
        })
        .join()
        .expect("spawning after the runtime ended panicked");
    }

    #[tokio::test]
    async fn current_scope_is_the_spawning_scope() {
        let root = Scope::root("t");
        assert!(Scope::current().is_none());
        let child = root.child("c");
        let name = child
            .spawn("probe", async {
                Scope::current().map(|s| s.name().to_string())
            })
            .await
            .unwrap();
        assert_eq!(name.as_deref(), Some("t/c"));
    }

    #[tokio::test]
    async fn shutdown_escalates_to_force() {
        let root = Scope::root("t");
        let force = root.force_token().clone();
        // Ignores graceful cancellation, obeys force.
        root.spawn("stubborn", async move { force.cancelled().await });
        let report = root
            .shutdown(ShutdownOptions {
                grace: Duration::from_millis(50),
                kill_grace: Duration::from_secs(5),
                cleanup_timeout: Duration::from_secs(1),
            })
            .await;
        assert!(report.forced);
        assert_eq!(report.tasks_left, 0);
    }
}
