//! [`Ledger`]: the bookkeeping of the [`Provisioner`](super::Provisioner) contract,
//! written once for every provisioner, and the [`LedgerProvisioner`] trait that turns it
//! into a provisioner.

mod creator;
mod provisioner;
mod state;
#[cfg(test)]
mod tests;

pub use creator::{CreateContext, CreateError, Creator, LedgerHandle};
pub use provisioner::LedgerProvisioner;
pub use state::LedgerStats;

use std::fmt;
use std::sync::{Arc, Weak};

use super::lease::LeasedRemote;
use super::{Count, ProvisionError, Remote};
use crate::connection::Connection;
use crate::scope::Scope;
use state::{Inner, Waiting};

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

impl<C: Connection + 'static> Ledger<C> {
    /// A ledger for a provisioner called `name` (used in errors and logs), with room for
    /// `capacity` systems at once (`None`: no limit), making systems with `creator`.
    pub fn new(name: impl Into<String>, capacity: Option<usize>, creator: Creator<C>) -> Self {
        Self {
            inner: Inner::new(name.into(), capacity, creator),
        }
    }

    /// The provisioner's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// A weak handle (for creators and release hooks).
    pub fn handle(&self) -> LedgerHandle {
        self.inner.handle()
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
                let error = crate::error::chain(&error).to_string();
                tracing::warn!(provisioner = %self.inner.name, remote = %remote, %error,
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
                source: failures.join("; ").into(),
            })
        }
    }
}
