//! Provisioners hand out [`Remote`]s: connected systems to run tests on.
//!
//! The contract follows upstream ATEX and is deliberately loose:
//!
//! * [`Provisioner::provision`] politely asks for more systems (a number or
//!   [`Count::Unlimited`]); there is no exact relation between requests and what arrives;
//! * [`Provisioner::get_remote`] waits until a connected remote is ready (or the provisioner
//!   is stopped); [`Provisioner::try_get_remote`] returns `None` when nothing is ready now;
//! * [`Provisioner::clear`] forgets outstanding requests (the only way to undo
//!   `Unlimited`); in-flight reservations may still complete and be returned;
//! * [`Provisioner::stop`] releases every remote it handed out and not yet released, and
//!   cancels in-flight reservations.
//!
//! A [`Remote`] is a [`Connection`] plus an idempotent [`Remote::release`]. Every outside
//! resource behind a remote sits in a [`CleanupGuard`](crate::guard::CleanupGuard), so even
//! a remote that is dropped without release is cleaned up by the scope's reaper.
//!
//! Writing a provisioner: say how to make one system (a [`Creator`] returning a [`Lease`])
//! and let a [`Ledger`] keep the contract's bookkeeping (requests, waiters, capacity,
//! handed-out remotes as [`LeasedRemote`]s, clear, stop); the `Provisioner` methods forward
//! to it. [`LocalProvisioner`], [`SshHostPool`] and the in-memory
//! [`MemoryProvisioner`](crate::testing::MemoryProvisioner) are written that way. Check a
//! new provisioner with the conformance suite (`atex::testing::conformance`, feature
//! `conformance`).

mod lease;
mod ledger;
mod local;
#[cfg(feature = "libvirt")]
pub mod shvirt;
#[cfg(feature = "ssh")]
pub mod ssh_pool;
#[cfg(feature = "libvirt")]
pub mod tempvirt;
#[cfg(all(feature = "testingfarm", feature = "ssh"))]
pub mod testingfarm;

pub use lease::{Lease, LeasedRemote};
pub use ledger::{
    CreateContext, CreateError, Creator, Ledger, LedgerHandle, LedgerProvisioner, LedgerStats,
};
pub use local::{LocalProvisioner, LocalRemote};
#[cfg(feature = "libvirt")]
pub use shvirt::{SharedVirtConfig, SharedVirtProvisioner};
#[cfg(feature = "ssh")]
pub use ssh_pool::{SshHostPool, SshPoolRemote};
#[cfg(feature = "libvirt")]
pub use tempvirt::TempVirtProvisioner;

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;

use crate::connection::Connection;
use crate::error::BoxError;
use crate::scope::Scope;

/// How many systems to ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Count {
    /// This many more.
    N(usize),
    /// As many as the provisioner can give.
    Unlimited,
}

/// Errors of provisioners. `Display` says what failed; the cause is the
/// [`source`](std::error::Error::source).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProvisionError {
    /// The provisioner was stopped (or never started).
    #[error("the provisioner {0} is stopped")]
    Stopped(String),
    /// Creating a system failed.
    #[error("{provisioner}: provisioning failed")]
    Failed {
        /// The provisioner's description.
        provisioner: String,
        /// The cause.
        #[source]
        source: BoxError,
    },
    /// Releasing a system failed.
    #[error("releasing {remote} failed")]
    Release {
        /// The remote's description.
        remote: String,
        /// The cause.
        #[source]
        source: BoxError,
    },
    /// A connection-level failure.
    #[error("the connection to a system failed")]
    Connection(#[from] crate::connection::ConnectionError),
    /// Cancelled while waiting.
    #[error("cancelled")]
    Cancelled,
}

impl ProvisionError {
    /// [`Failed`](Self::Failed): `provisioner` could not provide a system because of
    /// `source` (an error, or a message).
    pub fn failed(provisioner: impl Into<String>, source: impl Into<BoxError>) -> Self {
        ProvisionError::Failed {
            provisioner: provisioner.into(),
            source: source.into(),
        }
    }

    /// [`Release`](Self::Release): releasing `remote` failed because of `source`.
    pub fn release(remote: impl Into<String>, source: impl Into<BoxError>) -> Self {
        ProvisionError::Release {
            remote: remote.into(),
            source: source.into(),
        }
    }
}

/// A provisioned, connected system: a [`Connection`] plus [`release`](Remote::release).
///
/// Implementations: [`LeasedRemote`] (every provisioner of this crate hands those out).
///
/// # Contract
///
/// * A remote is handed out connected; its [`Connection`] methods work until it is
///   released.
/// * [`release`](Remote::release) frees (de-provisions) the system. It is idempotent, also
///   when called concurrently: only the first call does the work (later calls return
///   `Ok`). From its first call on, [`spawn`](Connection::spawn),
///   [`upload`](Connection::upload), [`download`](Connection::download) and
///   [`reconnect`](Connection::reconnect) fail with [`ConnectionError::released`] without
///   reaching the system, which may already belong to someone else.
/// * [`is_released`](Remote::is_released) is true from the first `release` call on.
/// * A remote dropped without `release` still gives its system back (its cleanup goes to
///   the scope tree's reaper).
/// * [`mark_destroyed`](Remote::mark_destroyed) before `release` keeps a provisioner that
///   reuses systems from handing this one out again.
///
/// [`ConnectionError::released`]: crate::connection::ConnectionError::released
#[async_trait]
pub trait Remote: Connection {
    /// Frees (de-provisions) the system. Idempotent: only the first call does work.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: the release either has not begun (a later call or the remote's drop
    /// does it) or its cleanup runs to its end in the reaper.
    async fn release(&self) -> Result<(), ProvisionError>;

    /// Whether [`release`](Remote::release) was called.
    fn is_released(&self) -> bool;

    /// Marks the system as broken (for example a test left it unusable), so that
    /// [`release`](Remote::release) retires it instead of handing it out again.
    /// Provisioners that never reuse systems ignore it (the default).
    fn mark_destroyed(&self) {}
}

/// Hands out [`Remote`]s. See the [module docs](self) for the contract's spirit.
///
/// # Contract
///
/// * [`start`](Provisioner::start) comes first; `provision`, `get_remote`,
///   `try_get_remote` and `clear` may then be called from any task, concurrently.
/// * [`provision`](Provisioner::provision) adds a request ([`Count::N`] or
///   [`Count::Unlimited`]); it fails once stopped.
/// * [`get_remote`](Provisioner::get_remote) eventually returns a connected remote for an
///   outstanding request (or an error saying why none will come: stopped, failed).
///   [`try_get_remote`](Provisioner::try_get_remote) never waits. A provisioner may hand
///   out fewer or more remotes than asked for, earlier or later; callers do not rely on
///   `get_remote` blocking because nothing was asked for.
/// * With a capacity limit (`max_remotes`), at most that many systems exist at once, and
///   releasing one lets the next request through.
/// * [`clear`](Provisioner::clear) forgets outstanding requests (the only way to undo
///   `Unlimited`); systems already being made may still be handed out (or be cancelled).
/// * [`stop`](Provisioner::stop) makes waiting and later `get_remote` calls fail with
///   [`ProvisionError::Stopped`], cancels creations in flight, and releases every system it
///   made and every remote it handed out and not yet released. A release that fails is
///   logged and the others go on; the error returned names every failure.
/// * A remote handed out is released once, by its holder or by `stop`; a released remote
///   frees its place.
///
/// The conformance suite (`atex::testing::conformance::provisioner`, feature
/// `conformance`) checks these points against a provisioner.
#[async_trait]
pub trait Provisioner: Send + Sync + fmt::Debug {
    /// A short description (`local`, `ssh-pool(2 machines)`, …).
    fn describe(&self) -> String;

    /// Starts the provisioner; its background work runs in a child of `scope`.
    async fn start(&self, scope: &Scope) -> Result<(), ProvisionError>;

    /// Asks for `count` more systems.
    fn provision(&self, count: Count) -> Result<(), ProvisionError>;

    /// Waits for a connected remote. Errors with [`ProvisionError::Stopped`] once stopped.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: dropping the future loses no remote; the system it would have
    /// returned goes to the next call.
    async fn get_remote(&self) -> Result<Arc<dyn Remote>, ProvisionError>;

    /// A connected remote if one is ready now.
    fn try_get_remote(&self) -> Result<Option<Arc<dyn Remote>>, ProvisionError>;

    /// Forgets outstanding [`provision`](Provisioner::provision) requests.
    fn clear(&self);

    /// Stops: releases every remote handed out and not yet released, cancels in-flight
    /// reservations, and makes waiting [`get_remote`](Provisioner::get_remote) calls fail.
    ///
    /// # Cancel safety
    ///
    /// Not cancel-safe: dropping the future leaves the provisioner stopped but possibly
    /// with remotes not yet released (their drop and the reaper still clean them up).
    async fn stop(&self) -> Result<(), ProvisionError>;
}
