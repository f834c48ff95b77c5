//! [`Ledger`]: the bookkeeping of the [`Provisioner`](super::Provisioner) contract,
//! written once for every provisioner, and the [`LedgerProvisioner`] trait that turns it
//! into a provisioner.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::future::Future;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use futures::future::BoxFuture;
use tokio::sync::Notify;

use super::lease::{Lease, LeasedRemote};
use super::{Count, ProvisionError, Remote};
use crate::connection::Connection;
use crate::scope::Scope;

/// Why a creation produced no system.
#[derive(Debug)]
pub enum CreateError {
    /// The creation failed: the error goes to one caller of
    /// [`get_remote`](Ledger::get_remote) or [`try_get_remote`](Ledger::try_get_remote)
    /// (an immediate creation's request is kept for a later try).
    Failed(ProvisionError),
    /// Nothing to report: the request is put back (unless the request was
    /// [`Count::Unlimited`] or [`clear`](Ledger::clear) came meanwhile) and, for task
    /// creations, another creation starts if capacity allows.
    Retry,
}

impl From<ProvisionError> for CreateError {
    fn from(e: ProvisionError) -> Self {
        CreateError::Failed(e)
    }
}

type ImmediateFn<C> = dyn Fn(&CreateContext<C>) -> Result<Lease<C>, CreateError> + Send + Sync;
type TaskFn<C> =
    dyn Fn(CreateContext<C>) -> BoxFuture<'static, Result<Lease<C>, CreateError>> + Send + Sync;

/// How a backend makes one system (see [`Ledger`]).
pub enum Creator<C> {
    /// Synchronous, in the caller of `get_remote`/`try_get_remote`.
    Immediate(Box<ImmediateFn<C>>),
    /// Asynchronous, one task of the provisioner's scope per request.
    Task(Box<TaskFn<C>>),
}

impl<C> fmt::Debug for Creator<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Creator::Immediate(_) => "Creator::Immediate",
            Creator::Task(_) => "Creator::Task",
        })
    }
}

impl<C> Creator<C> {
    /// A synchronous creator. It must not block for long: it runs in `get_remote`.
    pub fn immediate(
        f: impl Fn(&CreateContext<C>) -> Result<Lease<C>, CreateError> + Send + Sync + 'static,
    ) -> Self {
        Creator::Immediate(Box::new(f))
    }

    /// An asynchronous creator: `f(cx)` runs as a task, raced against `cx.scope()`, which
    /// [`clear`](Ledger::clear) and [`stop`](Ledger::stop) cancel. A backend keeps whatever
    /// it creates in a [`CleanupGuard`](crate::guard::CleanupGuard) until it returns the
    /// [`Lease`], so that a cancelled creation leaves nothing behind.
    pub fn task<F, Fut>(f: F) -> Self
    where
        F: Fn(CreateContext<C>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Lease<C>, CreateError>> + Send + 'static,
    {
        Creator::Task(Box::new(move |cx| Box::pin(f(cx))))
    }
}

/// What a creation gets: a scope to work in and a handle on its ledger.
pub struct CreateContext<C> {
    scope: Scope,
    ledger: LedgerHandle<C>,
}

impl<C> CreateContext<C> {
    /// The scope of the creation: guards are armed in it; task creations are cancelled
    /// with it.
    pub fn scope(&self) -> &Scope {
        &self.scope
    }

    /// The ledger, to change capacity or fail it from inside a creation or a release hook.
    pub fn ledger(&self) -> &LedgerHandle<C> {
        &self.ledger
    }
}

/// A weak handle on a [`Ledger`] for creations and release hooks (it does not keep the
/// ledger alive; calls on a dropped ledger do nothing).
pub struct LedgerHandle<C> {
    inner: Weak<Inner<C>>,
}

impl<C> Clone for LedgerHandle<C> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<C> fmt::Debug for LedgerHandle<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LedgerHandle").finish_non_exhaustive()
    }
}

impl<C: Connection + 'static> LedgerHandle<C> {
    /// Room for `n` more systems (no effect without a capacity limit).
    pub fn add_capacity(&self, n: usize) {
        if let Some(inner) = self.inner.upgrade() {
            inner.add_capacity(n);
        }
    }

    /// `n` systems fewer for good (a machine of a fixed pool turned out broken).
    pub fn retire(&self, n: usize) {
        if let Some(inner) = self.inner.upgrade() {
            let mut st = inner.lock();
            st.capacity = st.capacity.map(|c| c.saturating_sub(n));
        }
    }

    /// No system will ever come any more: every waiting and later
    /// [`get_remote`](Ledger::get_remote) fails with [`ProvisionError::Failed`] carrying
    /// `message` (systems already made are still handed out first).
    pub fn fail(&self, message: impl Into<String>) {
        if let Some(inner) = self.inner.upgrade() {
            inner.lock().failed = Some(message.into());
            inner.wake.notify_waiters();
        }
    }
}

/// Counters and gauges of a [`Ledger`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct LedgerStats {
    /// Calls of [`provision`](Ledger::provision).
    pub provision_calls: usize,
    /// Systems asked for with [`Count::N`], summed (`Unlimited` not counted).
    pub requested: usize,
    /// Calls of [`clear`](Ledger::clear).
    pub clears: usize,
    /// Systems made.
    pub created: usize,
    /// Creations that failed ([`CreateError::Failed`]).
    pub failed_creations: usize,
    /// Remotes handed out.
    pub handed_out: usize,
    /// Handed-out remotes released (or dropped).
    pub released: usize,
    /// Handed-out remotes released (or dropped) after [`Remote::mark_destroyed`].
    pub destroyed: usize,
    /// Remotes handed out and not yet released.
    pub live: usize,
    /// Creations in flight.
    pub creating: usize,
    /// Systems made and not yet handed out.
    pub ready: usize,
    /// Requests not yet started (`usize::MAX` while `Unlimited`).
    pub outstanding: usize,
}

type Made<C> = (u64, Arc<LeasedRemote<C>>);

struct State<C> {
    requested: usize,
    unlimited: bool,
    /// Bumped by `clear`: a creation that retries after it does not put its request back.
    generation: u64,
    capacity: Option<usize>,
    /// Places taken: creations in flight + ready systems + live remotes.
    held: usize,
    creating: usize,
    ready: VecDeque<Result<Made<C>, ProvisionError>>,
    /// Handed-out remotes, by id, until their slot is freed.
    live: HashMap<u64, Weak<LeasedRemote<C>>>,
    next_id: u64,
    /// The provisioner's scope, from `start` to `stop`.
    scope: Option<Scope>,
    /// The scope of task creations; replaced when `clear` cancels it.
    creations: Option<Scope>,
    stopped: bool,
    failed: Option<String>,
    /// `get_remote` calls waiting (bounds task creations for `Unlimited` without capacity).
    waiters: usize,
    stats: LedgerStats,
}

struct Inner<C> {
    name: String,
    creator: Creator<C>,
    state: Mutex<State<C>>,
    /// Something changed for waiting `get_remote` calls.
    wake: Notify,
    /// A creation task ended.
    settled: Notify,
}

/// The bookkeeping of the [`Provisioner`](super::Provisioner) contract, written once for
/// every provisioner.
///
/// A backend says how to make one system (a [`Creator`]); the ledger does the rest:
/// outstanding requests (a number or [`Count::Unlimited`]), waiting
/// [`get_remote`](Ledger::get_remote) calls, capacity (`max_remotes`), the remotes it handed
/// out (as [`LeasedRemote`]s), creations in flight, [`clear`](Ledger::clear) and
/// [`stop`](Ledger::stop). A provisioner's [`Provisioner`](super::Provisioner) methods then
/// forward to it (or implement [`LedgerProvisioner`]).
///
/// Two ways to make a system:
///
/// * [`Creator::immediate`]: quick and synchronous (a scratch directory, an in-memory
///   double). It runs in the caller of `get_remote`/`try_get_remote`, only when one of them
///   finds a request and free capacity, so `try_get_remote` right after `provision` returns
///   a remote.
/// * [`Creator::task`]: slow and asynchronous (connect and set up a machine, start a
///   container, reserve a VM). Each request with free capacity starts one creation task in
///   the provisioner's scope; its result waits in a queue for the next `get_remote` (so a
///   dropped `get_remote` loses nothing); `clear` and `stop` cancel creations still in
///   flight. A creation may report [`CreateError::Retry`]: the request is put back and
///   another creation starts (a machine that turned out broken, a reservation to try
///   again).
///
/// Capacity counts every system that exists or is being made: creations in flight, created
/// systems not yet handed out, and handed-out remotes not yet released. A released (or
/// dropped) remote frees its place only after its release hook and guard have run, so
/// `max_remotes` bounds real systems.
///
/// ```
/// use atex::connection::LocalConnection;
/// use atex::provisioner::{Count, CreateError, Creator, Lease, Ledger, Remote};
/// use atex::scope::Scope;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// // A provisioner of at most two local "systems", created in background tasks.
/// let ledger = Ledger::new("demo", Some(2), Creator::task(|_cx| async {
///     Ok::<_, CreateError>(Lease::new(LocalConnection::new()))
/// }));
/// let scope = Scope::root("doc");
/// ledger.start(&scope);
/// ledger.provision(Count::Unlimited)?;
/// let a = ledger.get_remote().await?;
/// let b = ledger.get_remote().await?;
/// assert_eq!(ledger.stats().live, 2);
/// a.release().await?; // frees a place: a third system is made
/// let c = ledger.get_remote().await?;
/// ledger.stop().await?; // releases b and c
/// assert!(b.is_released() && c.is_released());
/// # Ok(()) }
/// ```
///
/// Cheap to clone (clones share the state). Every method can be called from any task.
pub struct Ledger<C> {
    inner: Arc<Inner<C>>,
}

impl<C> Clone for Ledger<C> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<C: Connection + 'static> fmt::Debug for Ledger<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ledger")
            .field("name", &self.inner.name)
            .field("creator", &self.inner.creator)
            .field("stats", &self.stats())
            .finish()
    }
}

/// Frees a remote's place in its ledger when dropped (the last step of its release).
struct Slot<C: Connection + 'static> {
    ledger: Weak<Inner<C>>,
    id: u64,
    destroyed: Arc<AtomicBool>,
}

impl<C: Connection + 'static> Drop for Slot<C> {
    fn drop(&mut self) {
        if let Some(inner) = self.ledger.upgrade() {
            let destroyed = self.destroyed.load(std::sync::atomic::Ordering::SeqCst);
            inner.free(self.id, destroyed);
        }
    }
}

/// Counts a waiting `get_remote` call while it lives.
struct Waiting<'a, C: Connection + 'static>(&'a Arc<Inner<C>>);

impl<'a, C: Connection + 'static> Waiting<'a, C> {
    fn new(inner: &'a Arc<Inner<C>>) -> Self {
        inner.lock().waiters += 1;
        Self(inner)
    }
}

impl<C: Connection + 'static> Drop for Waiting<'_, C> {
    fn drop(&mut self) {
        let mut st = self.0.lock();
        st.waiters = st.waiters.saturating_sub(1);
    }
}

enum Next<C> {
    Ready(Result<Made<C>, ProvisionError>),
    Create(Scope),
    Nothing,
}

impl<C: Connection + 'static> State<C> {
    fn wants(&self) -> bool {
        self.unlimited || self.requested > 0
    }

    fn has_room(&self) -> bool {
        self.capacity.is_none_or(|c| self.held < c)
    }

    /// Takes one request and one place.
    fn reserve(&mut self) {
        if !self.unlimited {
            self.requested -= 1;
        }
        self.held += 1;
    }

    /// Gives a place back, and the request too if `generation` is still current.
    fn unreserve(&mut self, generation: u64, restore_request: bool) {
        self.held = self.held.saturating_sub(1);
        if restore_request && !self.unlimited && !self.stopped && generation == self.generation {
            self.requested = self.requested.saturating_add(1);
        }
    }
}

impl<C: Connection + 'static> Inner<C> {
    fn lock(&self) -> MutexGuard<'_, State<C>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn add_capacity(self: &Arc<Self>, n: usize) {
        {
            let mut st = self.lock();
            if let Some(c) = st.capacity.as_mut() {
                *c = c.saturating_add(n);
            }
        }
        self.wake.notify_waiters();
        self.pump();
    }

    fn stopped_error(&self) -> ProvisionError {
        ProvisionError::Stopped(self.name.clone())
    }

    fn context(self: &Arc<Self>, scope: Scope) -> CreateContext<C> {
        CreateContext {
            scope,
            ledger: LedgerHandle {
                inner: Arc::downgrade(self),
            },
        }
    }

    /// Wraps a made system into a remote that frees its place when released.
    fn wrap(self: &Arc<Self>, lease: Lease<C>, scope: &Scope) -> Made<C> {
        let id = {
            let mut st = self.lock();
            st.next_id += 1;
            st.stats.created += 1;
            st.next_id
        };
        let destroyed = Arc::new(AtomicBool::new(false));
        let slot = Slot {
            ledger: Arc::downgrade(self),
            id,
            destroyed: destroyed.clone(),
        };
        let remote = LeasedRemote::with_ticket(lease, scope, destroyed, Box::new(slot));
        (id, Arc::new(remote))
    }

    fn hand_out(&self, (id, remote): Made<C>) -> Arc<dyn Remote> {
        let mut st = self.lock();
        st.live.insert(id, Arc::downgrade(&remote));
        st.stats.handed_out += 1;
        remote
    }

    /// A remote's place is free again (its release ended, or it was dropped).
    fn free(self: &Arc<Self>, id: u64, destroyed: bool) {
        {
            let mut st = self.lock();
            st.held = st.held.saturating_sub(1);
            if st.live.remove(&id).is_some() {
                st.stats.released += 1;
                if destroyed {
                    st.stats.destroyed += 1;
                }
            }
        }
        self.wake.notify_waiters();
        self.pump();
    }

    /// A remote now, if one is ready or can be made at once.
    fn try_take(self: &Arc<Self>) -> Result<Option<Arc<dyn Remote>>, ProvisionError> {
        let next = {
            let mut st = self.lock();
            let Some(scope) = st.scope.clone().filter(|_| !st.stopped) else {
                return Err(self.stopped_error());
            };
            if let Some(item) = st.ready.pop_front() {
                Next::Ready(item)
            } else if let Some(message) = st.failed.clone() {
                return Err(ProvisionError::Failed {
                    provisioner: self.name.clone(),
                    message,
                });
            } else if matches!(self.creator, Creator::Immediate(_)) && st.wants() && st.has_room() {
                st.reserve();
                Next::Create(scope)
            } else {
                Next::Nothing
            }
        };
        match next {
            Next::Ready(Ok(made)) => Ok(Some(self.hand_out(made))),
            Next::Ready(Err(e)) => Err(e),
            Next::Create(scope) => self.create_now(scope),
            Next::Nothing => {
                self.pump();
                Ok(None)
            }
        }
    }

    fn create_now(
        self: &Arc<Self>,
        scope: Scope,
    ) -> Result<Option<Arc<dyn Remote>>, ProvisionError> {
        let Creator::Immediate(create) = &self.creator else {
            return Ok(None);
        };
        let generation = self.lock().generation;
        match create(&self.context(scope.clone())) {
            Ok(lease) => {
                let made = self.wrap(lease, &scope);
                Ok(Some(self.hand_out(made)))
            }
            Err(error) => {
                let mut st = self.lock();
                st.unreserve(generation, true);
                match error {
                    CreateError::Failed(e) => {
                        st.stats.failed_creations += 1;
                        Err(e)
                    }
                    CreateError::Retry => Ok(None),
                }
            }
        }
    }

    /// Starts task creations for outstanding requests while there is room.
    fn pump(self: &Arc<Self>) {
        let Creator::Task(create) = &self.creator else {
            return;
        };
        // Without a runtime (a remote dropped on a foreign thread) nothing can start; the
        // next call on the ledger pumps again.
        if tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        loop {
            let (scope, generation) = {
                let mut st = self.lock();
                let Some(scope) = st.creations.clone() else {
                    return;
                };
                let bounded_by_waiters = st.capacity.is_none() && st.unlimited;
                if st.stopped
                    || st.failed.is_some()
                    || !st.wants()
                    || !st.has_room()
                    || (bounded_by_waiters && st.creating + st.ready.len() >= st.waiters)
                {
                    return;
                }
                st.reserve();
                st.creating += 1;
                (scope, st.generation)
            };
            let fut = create(self.context(scope.clone()));
            let me = self.clone();
            let task_scope = scope.clone();
            scope.spawn("provisioner-create", async move {
                let outcome = task_scope.run(fut).await;
                me.creation_ended(outcome, generation, &task_scope).await;
            });
        }
    }

    async fn creation_ended(
        self: &Arc<Self>,
        outcome: Option<Result<Lease<C>, CreateError>>,
        generation: u64,
        scope: &Scope,
    ) {
        let late = match outcome {
            Some(Ok(lease)) => {
                let made = self.wrap(lease, scope);
                let mut st = self.lock();
                if st.stopped {
                    Some(made)
                } else {
                    st.ready.push_back(Ok(made));
                    None
                }
            }
            Some(Err(CreateError::Failed(e))) => {
                let mut st = self.lock();
                st.unreserve(generation, false);
                st.stats.failed_creations += 1;
                if st.stopped {
                    tracing::debug!(provisioner = %self.name, error = %e,
                        "creation failed after stop");
                } else {
                    st.ready.push_back(Err(e));
                }
                None
            }
            Some(Err(CreateError::Retry)) => {
                self.lock().unreserve(generation, true);
                None
            }
            // Cancelled by `clear` or `stop`.
            None => {
                self.lock().unreserve(generation, false);
                None
            }
        };
        if let Some((_, remote)) = late {
            // Made after `stop`: nobody will take it.
            if let Err(e) = remote.release().await {
                tracing::warn!(provisioner = %self.name, remote = %remote.describe(), error = %e,
                    "releasing a system made after stop failed");
            }
            drop(remote);
        }
        {
            let mut st = self.lock();
            st.creating = st.creating.saturating_sub(1);
        }
        self.settled.notify_waiters();
        self.wake.notify_waiters();
        self.pump();
    }
}

impl<C: Connection + 'static> Ledger<C> {
    /// A ledger for a provisioner called `name` (used in errors and logs), with room for
    /// `capacity` systems at once (`None`: no limit), making systems with `creator`.
    pub fn new(name: impl Into<String>, capacity: Option<usize>, creator: Creator<C>) -> Self {
        Self {
            inner: Arc::new(Inner {
                name: name.into(),
                creator,
                state: Mutex::new(State {
                    requested: 0,
                    unlimited: false,
                    generation: 0,
                    capacity,
                    held: 0,
                    creating: 0,
                    ready: VecDeque::new(),
                    live: HashMap::new(),
                    next_id: 0,
                    scope: None,
                    creations: None,
                    stopped: false,
                    failed: None,
                    waiters: 0,
                    stats: LedgerStats::default(),
                }),
                wake: Notify::new(),
                settled: Notify::new(),
            }),
        }
    }

    /// The provisioner's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// A weak handle (for creators and release hooks).
    pub fn handle(&self) -> LedgerHandle<C> {
        LedgerHandle {
            inner: Arc::downgrade(&self.inner),
        }
    }

    /// The counters so far.
    pub fn stats(&self) -> LedgerStats {
        let st = self.inner.lock();
        let mut stats = st.stats;
        stats.live = st.live.len();
        stats.creating = st.creating;
        stats.ready = st.ready.iter().filter(|r| r.is_ok()).count();
        stats.outstanding = if st.unlimited {
            usize::MAX
        } else {
            st.requested
        };
        stats
    }

    /// Room for `n` more systems at once (no effect without a capacity limit).
    pub fn add_capacity(&self, n: usize) {
        self.inner.add_capacity(n);
    }

    /// Starts (or restarts after [`stop`](Self::stop)) handing out remotes; creations and
    /// guards live in a child of `scope`.
    pub fn start(&self, scope: &Scope) {
        {
            let mut st = self.inner.lock();
            let own = scope.child(self.inner.name.clone());
            st.creations = Some(own.child("creations"));
            st.scope = Some(own);
            st.stopped = false;
        }
        self.inner.pump();
    }

    /// [`Provisioner::provision`](super::Provisioner::provision): asks for `count` more
    /// systems. Fails once stopped.
    pub fn provision(&self, count: Count) -> Result<(), ProvisionError> {
        {
            let mut st = self.inner.lock();
            if st.stopped {
                return Err(self.inner.stopped_error());
            }
            st.stats.provision_calls += 1;
            match count {
                Count::N(n) => {
                    st.requested = st.requested.saturating_add(n);
                    st.stats.requested = st.stats.requested.saturating_add(n);
                }
                Count::Unlimited => st.unlimited = true,
            }
        }
        self.inner.wake.notify_waiters();
        self.inner.pump();
        Ok(())
    }

    /// [`Provisioner::get_remote`](super::Provisioner::get_remote): waits for a remote.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: a remote is taken only in the poll that returns it, so dropping the
    /// future loses none.
    pub async fn get_remote(&self) -> Result<Arc<dyn Remote>, ProvisionError> {
        let _waiting = Waiting::new(&self.inner);
        loop {
            let notified = self.inner.wake.notified();
            if let Some(remote) = self.inner.try_take()? {
                return Ok(remote);
            }
            notified.await;
        }
    }

    /// [`Provisioner::try_get_remote`](super::Provisioner::try_get_remote): a remote if one
    /// is ready now (or can be made at once by an immediate creator).
    pub fn try_get_remote(&self) -> Result<Option<Arc<dyn Remote>>, ProvisionError> {
        self.inner.try_take()
    }

    /// [`Provisioner::clear`](super::Provisioner::clear): forgets outstanding requests and
    /// cancels task creations in flight. Systems already made stay ready to be handed out.
    pub fn clear(&self) {
        let cancelled = {
            let mut st = self.inner.lock();
            st.requested = 0;
            st.unlimited = false;
            st.generation += 1;
            st.stats.clears += 1;
            match (&st.scope, st.creating) {
                (Some(scope), 1..) => {
                    let fresh = scope.child("creations");
                    st.creations.replace(fresh)
                }
                _ => None,
            }
        };
        if let Some(old) = cancelled {
            old.cancel();
        }
    }

    /// [`Provisioner::stop`](super::Provisioner::stop): fails waiting and later
    /// `get_remote` calls, cancels creations in flight (and waits for them), then releases
    /// every system made and every remote handed out and not yet released, concurrently.
    /// Each failed release is logged and the others go on; the error names them all.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future after it began leaves the provisioner stopped; releases not yet
    /// begun are left to the remotes' holders, their `Drop` and the reaper.
    pub async fn stop(&self) -> Result<(), ProvisionError> {
        let (ready, live, creations) = {
            let mut st = self.inner.lock();
            st.stopped = true;
            st.requested = 0;
            st.unlimited = false;
            st.scope = None;
            let ready: Vec<_> = st.ready.drain(..).collect();
            let live: Vec<Arc<LeasedRemote<C>>> =
                st.live.values().filter_map(Weak::upgrade).collect();
            (ready, live, st.creations.take())
        };
        self.inner.wake.notify_waiters();
        if let Some(creations) = creations {
            creations.cancel();
        }
        loop {
            let settled = self.inner.settled.notified();
            if self.inner.lock().creating == 0 {
                break;
            }
            settled.await;
        }
        let mut remotes = live;
        for item in ready {
            match item {
                Ok((_, remote)) => remotes.push(remote),
                Err(e) => tracing::debug!(provisioner = %self.inner.name, error = %e,
                    "a creation error nobody took"),
            }
        }
        let total = remotes.len();
        let outcomes = futures::future::join_all(remotes.iter().map(|remote| async move {
            let outcome = remote.release().await;
            (remote.describe(), outcome)
        }))
        .await;
        drop(remotes);
        let failures: Vec<String> = outcomes
            .into_iter()
            .filter_map(|(remote, outcome)| {
                let error = outcome.err()?;
                tracing::warn!(provisioner = %self.inner.name, remote = %remote, error = %error,
                    "release failed while stopping");
                Some(format!("{remote}: {error}"))
            })
            .collect();
        if failures.is_empty() {
            Ok(())
        } else {
            Err(ProvisionError::Release {
                remote: format!(
                    "{} of {total} remotes of {}",
                    failures.len(),
                    self.inner.name
                ),
                message: failures.join("; "),
            })
        }
    }
}

/// A provisioner whose bookkeeping is a [`Ledger`]: implementing this trait implements
/// [`Provisioner`](super::Provisioner) (every method forwards to the ledger, `start`
/// after [`before_start`](Self::before_start)).
///
/// ```
/// use atex::connection::LocalConnection;
/// use atex::provisioner::{Count, CreateError, Creator, Lease, Ledger, LedgerProvisioner, Provisioner};
/// use atex::scope::Scope;
///
/// #[derive(Debug)]
/// struct Here(Ledger<LocalConnection>);
///
/// impl LedgerProvisioner for Here {
///     type Conn = LocalConnection;
///     fn ledger(&self) -> &Ledger<LocalConnection> {
///         &self.0
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let here = Here(Ledger::new("here", None, Creator::immediate(|_| {
///     Ok::<_, CreateError>(Lease::new(LocalConnection::new()))
/// })));
/// let scope = Scope::root("doc");
/// here.start(&scope).await?;
/// here.provision(Count::N(1))?;
/// assert!(here.try_get_remote()?.is_some());
/// here.stop().await?;
/// # Ok(()) }
/// ```
#[async_trait::async_trait]
pub trait LedgerProvisioner: Send + Sync + fmt::Debug {
    /// The connection type of the remotes.
    type Conn: Connection + 'static;

    /// The ledger.
    fn ledger(&self) -> &Ledger<Self::Conn>;

    /// [`Provisioner::describe`](super::Provisioner::describe); default: the ledger's name.
    fn description(&self) -> String {
        self.ledger().name().to_string()
    }

    /// Work before the ledger starts handing out remotes (create a base directory, log in
    /// to an API). Default: nothing.
    async fn before_start(&self, scope: &Scope) -> Result<(), ProvisionError> {
        let _ = scope;
        Ok(())
    }
}

#[async_trait::async_trait]
impl<T: LedgerProvisioner> super::Provisioner for T {
    fn describe(&self) -> String {
        self.description()
    }

    async fn start(&self, scope: &Scope) -> Result<(), ProvisionError> {
        self.before_start(scope).await?;
        self.ledger().start(scope);
        Ok(())
    }

    fn provision(&self, count: Count) -> Result<(), ProvisionError> {
        self.ledger().provision(count)
    }

    async fn get_remote(&self) -> Result<Arc<dyn Remote>, ProvisionError> {
        self.ledger().get_remote().await
    }

    fn try_get_remote(&self) -> Result<Option<Arc<dyn Remote>>, ProvisionError> {
        self.ledger().try_get_remote()
    }

    fn clear(&self) {
        self.ledger().clear()
    }

    async fn stop(&self) -> Result<(), ProvisionError> {
        self.ledger().stop().await
    }
}
