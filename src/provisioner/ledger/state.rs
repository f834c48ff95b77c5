//! The ledger's state and the work behind its methods: taking a remote, starting
//! creations, handling their outcome, freeing a released remote's place.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use tokio::sync::Notify;

use super::creator::{Capacity, CreateContext, CreateError, Creator, LedgerHandle, SharedError};
use crate::connection::Connection;
use crate::provisioner::lease::{Lease, LeasedRemote};
use crate::provisioner::{ProvisionError, Remote};
use crate::scope::Scope;

/// Counters and gauges of a [`Ledger`](super::Ledger).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct LedgerStats {
    /// Calls of [`provision`](crate::provisioner::Ledger::provision).
    pub provision_calls: usize,
    /// Systems asked for with [`Count::N`](crate::provisioner::Count::N), summed (`Unlimited` not counted).
    pub requested: usize,
    /// Calls of [`clear`](crate::provisioner::Ledger::clear).
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

pub(super) type Made<C> = (u64, Arc<LeasedRemote<C>>);

pub(super) struct State<C> {
    pub(super) requested: usize,
    pub(super) unlimited: bool,
    /// Bumped by `clear`: a creation that retries after it does not put its request back.
    pub(super) generation: u64,
    pub(super) capacity: Option<usize>,
    /// Places taken: creations in flight + ready systems + live remotes.
    pub(super) held: usize,
    pub(super) creating: usize,
    pub(super) ready: VecDeque<Result<Made<C>, ProvisionError>>,
    /// Handed-out remotes, by id, until their slot is freed.
    pub(super) live: HashMap<u64, Weak<LeasedRemote<C>>>,
    pub(super) next_id: u64,
    /// The provisioner's scope, from `start` to `stop`.
    pub(super) scope: Option<Scope>,
    /// The scope of task creations; replaced when `clear` cancels it.
    pub(super) creations: Option<Scope>,
    pub(super) stopped: bool,
    pub(super) failed: Option<SharedError>,
    /// `get_remote` calls waiting (bounds task creations for `Unlimited` without capacity).
    pub(super) waiters: usize,
    pub(super) stats: LedgerStats,
}

pub(super) struct Inner<C> {
    pub(super) name: String,
    pub(super) creator: Creator<C>,
    pub(super) state: Mutex<State<C>>,
    /// Something changed for waiting `get_remote` calls.
    pub(super) wake: Notify,
    /// A creation task ended.
    pub(super) settled: Notify,
    /// Itself, for the handle's calls that start creations.
    me: Weak<Inner<C>>,
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
pub(super) struct Waiting<'a, C: Connection + 'static>(&'a Arc<Inner<C>>);

impl<'a, C: Connection + 'static> Waiting<'a, C> {
    pub(super) fn new(inner: &'a Arc<Inner<C>>) -> Self {
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
    pub(super) fn lock(&self) -> MutexGuard<'_, State<C>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn new(name: String, capacity: Option<usize>, creator: Creator<C>) -> Arc<Self> {
        Arc::new_cyclic(|me| Inner {
            name,
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
            me: me.clone(),
        })
    }

    pub(super) fn add_capacity(self: &Arc<Self>, n: usize) {
        {
            let mut st = self.lock();
            if let Some(c) = st.capacity.as_mut() {
                *c = c.saturating_add(n);
            }
        }
        self.wake.notify_waiters();
        self.pump();
    }

    pub(super) fn stopped_error(&self) -> ProvisionError {
        ProvisionError::Stopped(self.name.clone())
    }

    /// A weak handle on this ledger.
    pub(super) fn handle(&self) -> LedgerHandle {
        let me: Weak<dyn Capacity> = self.me.clone();
        LedgerHandle { inner: me }
    }

    fn context(self: &Arc<Self>, scope: Scope) -> CreateContext {
        CreateContext {
            scope,
            ledger: self.handle(),
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
    pub(super) fn try_take(self: &Arc<Self>) -> Result<Option<Arc<dyn Remote>>, ProvisionError> {
        let next = {
            let mut st = self.lock();
            let Some(scope) = st.scope.clone().filter(|_| !st.stopped) else {
                return Err(self.stopped_error());
            };
            if let Some(item) = st.ready.pop_front() {
                Next::Ready(item)
            } else if let Some(cause) = st.failed.clone() {
                return Err(ProvisionError::failed(self.name.clone(), cause));
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
    pub(super) fn pump(self: &Arc<Self>) {
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
                    tracing::debug!(provisioner = %self.name, error = %crate::error::chain(&e),
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
                tracing::warn!(provisioner = %self.name, remote = %remote.describe(),
                    error = %crate::error::chain(&e),
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

impl<C: Connection + 'static> Capacity for Inner<C> {
    fn add_capacity(&self, n: usize) {
        if let Some(me) = self.me.upgrade() {
            me.add_capacity(n);
        }
    }

    fn retire(&self, n: usize) {
        let mut st = self.lock();
        st.capacity = st.capacity.map(|c| c.saturating_sub(n));
    }

    fn fail(&self, cause: SharedError) {
        self.lock().failed = Some(cause);
        self.wake.notify_waiters();
    }
}
