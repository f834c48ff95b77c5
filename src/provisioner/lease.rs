//! [`LeasedRemote`]: any [`Connection`] turned into a [`Remote`] with release and
//! destroyed state, and the [`Lease`] a backend builds it from.
//!
//! Every provisioner of this crate hands out `LeasedRemote`s (through its
//! [`Ledger`](super::Ledger)), so the rules of the [`Remote`] contract live in one place:
//! a released remote refuses every operation with [`ConnectionError::released`], release
//! is idempotent and runs the backend's hooks exactly once, and a remote dropped without
//! release still gives its system back.

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;

use super::{ProvisionError, Remote};
use crate::connection::{CommandSpec, Connection, ConnectionError, Process};
use crate::error::BoxError;
use crate::guard::CleanupGuard;
use crate::scope::Scope;

/// A synchronous release hook; its argument tells whether the remote was marked destroyed.
type SyncHook = Box<dyn FnOnce(bool) + Send>;

/// What a backend made for one system: the connection to it and what to do when it is
/// released.
///
/// * [`on_release`](Self::on_release): synchronous bookkeeping (give a machine back to a
///   pool, count it). It runs exactly once: when the remote is released, or when it is
///   dropped without release (then on the dropping thread, without needing a runtime).
/// * [`with_guard`](Self::with_guard): the outside resource (a scratch directory, a
///   container, a reservation) in a [`CleanupGuard`]. Release runs its cleanup and reports
///   the outcome; a remote dropped without release hands it to the scope tree's reaper.
///
/// Release disconnects the connection first, then runs the hook, then the guard's cleanup.
///
/// ```
/// use atex::connection::LocalConnection;
/// use atex::provisioner::{Lease, LeasedRemote, Remote};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let (tx, rx) = std::sync::mpsc::channel();
/// let remote = LeasedRemote::new(
///     Lease::new(LocalConnection::new()).on_release(move |destroyed| {
///         let _ = tx.send(destroyed);
///     }),
/// );
/// remote.mark_destroyed();
/// remote.release().await?;
/// remote.release().await?; // idempotent: the hook ran once
/// assert_eq!(rx.try_iter().collect::<Vec<_>>(), [true]);
/// # Ok(()) }
/// ```
pub struct Lease<C> {
    conn: C,
    hook: Option<SyncHook>,
    guard: Option<CleanupGuard>,
}

impl<C: fmt::Debug> fmt::Debug for Lease<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lease")
            .field("conn", &self.conn)
            .field("hook", &self.hook.is_some())
            .field("guard", &self.guard)
            .finish()
    }
}

impl<C> Lease<C> {
    /// A lease with nothing to do on release but disconnecting.
    pub fn new(conn: C) -> Self {
        Self {
            conn,
            hook: None,
            guard: None,
        }
    }

    /// Runs `hook(destroyed)` once when the remote is released or dropped (see the type's
    /// docs). It must not block: it may run in `Drop`.
    pub fn on_release(mut self, hook: impl FnOnce(bool) + Send + 'static) -> Self {
        self.hook = Some(Box::new(hook));
        self
    }

    /// Hands the system's outside resource to the remote: released with it, or by the
    /// reaper when the remote is dropped without release.
    pub fn with_guard(mut self, guard: CleanupGuard) -> Self {
        self.guard = Some(guard);
        self
    }

    /// The connection.
    pub fn connection(&self) -> &C {
        &self.conn
    }
}

/// A value dropped last, once the remote's system is given up (the ledger's slot).
pub(crate) type Ticket = Box<dyn Send>;

/// What is left to do when the remote is released.
struct Pending {
    hook: Option<SyncHook>,
    guard: Option<CleanupGuard>,
    /// Dropped after the guard's cleanup ran (or travels inside the guard's cleanup).
    ticket: Option<Ticket>,
}

impl Pending {
    /// The remote was dropped without release: the hook now, the guard to the reaper, the
    /// ticket last (inside the guard's cleanup when there is a guard).
    fn abandon(mut self, destroyed: bool) {
        if let Some(hook) = self.hook.take() {
            hook(destroyed);
        }
        drop(self.guard.take());
        drop(self.ticket.take());
    }
}

/// A [`Connection`] handed out as a [`Remote`]: it forwards every connection method to
/// the wrapped connection until the remote is released, and refuses them afterwards.
///
/// # Contract
///
/// * After [`release`](Remote::release) has begun, [`spawn`](Connection::spawn),
///   [`upload`](Connection::upload), [`download`](Connection::download) and
///   [`reconnect`](Connection::reconnect) fail with [`ConnectionError::released`] and do
///   not reach the system (which may already belong to someone else).
/// * `release` disconnects the connection, runs the [`Lease`]'s hook, then its guard's
///   cleanup, each exactly once however often and however concurrently `release` is
///   called. Concurrent calls wait for the first to end; only the first reports a failure.
/// * Dropped without release, the hook runs in `Drop` and the guard goes to the reaper.
///
/// # Cancel safety
///
/// `release` is cancel-safe: dropped before the connection was disconnected, nothing was
/// given up yet and a later call (or the drop of the remote) does it all; dropped later,
/// the guard's cleanup runs to its end in the reaper.
pub struct LeasedRemote<C> {
    conn: C,
    released: AtomicBool,
    destroyed: Arc<AtomicBool>,
    pending: tokio::sync::Mutex<Option<Pending>>,
}

impl<C: fmt::Debug> fmt::Debug for LeasedRemote<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LeasedRemote")
            .field("conn", &self.conn)
            .field("released", &self.released.load(Ordering::SeqCst))
            .field("destroyed", &self.destroyed.load(Ordering::SeqCst))
            .finish()
    }
}

impl<C> LeasedRemote<C> {
    /// A remote over `lease` that belongs to no provisioner.
    pub fn new(lease: Lease<C>) -> Self {
        let Lease { conn, hook, guard } = lease;
        Self {
            conn,
            released: AtomicBool::new(false),
            destroyed: Arc::new(AtomicBool::new(false)),
            pending: tokio::sync::Mutex::new(Some(Pending {
                hook,
                guard,
                ticket: None,
            })),
        }
    }

    /// A remote whose `ticket` is dropped once everything else is done at release or
    /// drop (the ledger's bookkeeping; `destroyed` is the flag it reads). With a guard, the
    /// ticket travels inside the guard's cleanup, so that it is dropped after the cleanup
    /// also when the remote is dropped (or when the reaper is gone and drops the cleanup).
    pub(crate) fn with_ticket(
        lease: Lease<C>,
        scope: &Scope,
        destroyed: Arc<AtomicBool>,
        ticket: Ticket,
    ) -> Self {
        let Lease { conn, hook, guard } = lease;
        let (guard, ticket) = match guard {
            Some(inner) => {
                let what = inner.what().to_string();
                let outer = CleanupGuard::new(scope, what, move || async move {
                    let outcome = inner.release().await.map_err(BoxError::from);
                    drop(ticket);
                    outcome
                });
                (Some(outer), None)
            }
            None => (None, Some(ticket)),
        };
        Self {
            conn,
            released: AtomicBool::new(false),
            destroyed,
            pending: tokio::sync::Mutex::new(Some(Pending {
                hook,
                guard,
                ticket,
            })),
        }
    }

    /// The wrapped connection (for methods beyond [`Connection`], such as
    /// [`SshConnection::forward`](crate::connection::SshConnection::forward)).
    pub fn connection(&self) -> &C {
        &self.conn
    }

    /// Whether [`Remote::mark_destroyed`] was called.
    pub fn is_destroyed(&self) -> bool {
        self.destroyed.load(Ordering::SeqCst)
    }

    fn refuse(&self) -> Result<(), ConnectionError>
    where
        C: Connection,
    {
        if self.released.load(Ordering::SeqCst) {
            Err(ConnectionError::released(self.conn.describe()))
        } else {
            Ok(())
        }
    }
}

impl<C> Drop for LeasedRemote<C> {
    fn drop(&mut self) {
        if let Some(pending) = self.pending.get_mut().take() {
            pending.abandon(self.destroyed.load(Ordering::SeqCst));
        }
    }
}

#[deny(clippy::missing_trait_methods)]
#[async_trait]
impl<C: Connection + 'static> Connection for LeasedRemote<C> {
    fn describe(&self) -> String {
        self.conn.describe()
    }

    async fn spawn(&self, cmd: CommandSpec, scope: &Scope) -> Result<Process, ConnectionError> {
        self.refuse()?;
        self.conn.spawn(cmd, scope).await
    }

    async fn upload(&self, local: &Path, remote: &str) -> Result<(), ConnectionError> {
        self.refuse()?;
        self.conn.upload(local, remote).await
    }

    async fn download(&self, remote: &str, local: &Path) -> Result<(), ConnectionError> {
        self.refuse()?;
        self.conn.download(remote, local).await
    }

    async fn reconnect(&self, scope: &Scope) -> Result<(), ConnectionError> {
        self.refuse()?;
        self.conn.reconnect(scope).await
    }

    async fn disconnect(&self) {
        self.conn.disconnect().await
    }

    fn supervises_process_groups(&self) -> bool {
        self.conn.supervises_process_groups()
    }

    /// `None` once released: nothing may be written to a released remote.
    fn local_path(&self, remote: &str) -> Option<std::path::PathBuf> {
        self.refuse().ok()?;
        self.conn.local_path(remote)
    }
}

#[deny(clippy::missing_trait_methods)]
#[async_trait]
impl<C: Connection + 'static> Remote for LeasedRemote<C> {
    async fn release(&self) -> Result<(), ProvisionError> {
        self.released.store(true, Ordering::SeqCst);
        // Held to the end, so that concurrent calls return once the release is done.
        let mut pending = self.pending.lock().await;
        if pending.is_none() {
            return Ok(());
        }
        self.conn.disconnect().await;
        let Some(Pending {
            hook,
            guard,
            ticket,
        }) = pending.take()
        else {
            return Ok(());
        };
        let destroyed = self.destroyed.load(Ordering::SeqCst);
        if let Some(hook) = hook {
            hook(destroyed);
        }
        let outcome = match guard {
            Some(guard) => guard
                .release()
                .await
                .map_err(|e| ProvisionError::release(self.conn.describe(), e)),
            None => Ok(()),
        };
        drop(ticket);
        outcome
    }

    fn is_released(&self) -> bool {
        self.released.load(Ordering::SeqCst)
    }

    fn mark_destroyed(&self) {
        self.destroyed.store(true, Ordering::SeqCst);
    }
}
