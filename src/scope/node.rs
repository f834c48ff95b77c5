//! [`Scope`], one node of the structured-concurrency tree.

use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tokio_util::task::task_tracker::TaskTrackerToken;
use tracing::Instrument;

use super::processes::ProcessRegistry;
use super::reaper::{Reaper, ReaperDrain};
use super::shutdown::{ShutdownOptions, ShutdownReport};

tokio::task_local! {
    /// The scope whose `spawn` started the running task.
    static CURRENT: Scope;
}

/// Runs the blocking closure `f` tracked by the [current scope](crate::scope#the-current-scope)
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
struct Shared {
    reaper: Reaper,
    /// The runtime the tree was created on: tasks spawned from outside any runtime (a
    /// `Drop` on a foreign thread, after the runtime ended) go there.
    runtime: tokio::runtime::Handle,
    processes: ProcessRegistry,
    kill_grace: Mutex<Duration>,
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
    /// While it runs, the task's [current scope](crate::scope#the-current-scope) is this scope.
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

    /// The tree's cleanup reaper: a handle for guards to hand their cleanups to.
    pub(crate) fn reaper(&self) -> &Reaper {
        &self.inner.shared.reaper
    }

    /// The tree's registry of local process groups: a handle for process handles to
    /// register their groups in.
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
