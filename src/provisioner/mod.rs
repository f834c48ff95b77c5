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

mod local;
#[cfg(feature = "ssh")]
pub mod ssh_pool;

pub use local::{LocalProvisioner, LocalRemote};
#[cfg(feature = "ssh")]
pub use ssh_pool::{SshHostPool, SshPoolRemote};

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
#[async_trait]
pub trait Remote: Connection {
    /// Frees (de-provisions) the system. Idempotent: only the first call does work.
    async fn release(&self) -> Result<(), ProvisionError>;

    /// Whether [`release`](Remote::release) was called.
    fn is_released(&self) -> bool;

    /// Marks the system as broken (for example a test left it unusable), so that
    /// [`release`](Remote::release) retires it instead of handing it out again.
    /// Provisioners that never reuse systems ignore it (the default).
    fn mark_destroyed(&self) {}
}

/// Hands out [`Remote`]s. See the [module docs](self) for the contract.
#[async_trait]
pub trait Provisioner: Send + Sync + fmt::Debug {
    /// A short description (`local`, `ssh-pool(2 machines)`, …).
    fn describe(&self) -> String;

    /// Starts the provisioner; its background work runs in a child of `scope`.
    async fn start(&self, scope: &Scope) -> Result<(), ProvisionError>;

    /// Asks for `count` more systems.
    fn provision(&self, count: Count) -> Result<(), ProvisionError>;

    /// Waits for a connected remote. Errors with [`ProvisionError::Stopped`] once stopped.
    /// Cancel-safe: dropping the future loses no remote.
    async fn get_remote(&self) -> Result<Arc<dyn Remote>, ProvisionError>;

    /// A connected remote if one is ready now.
    fn try_get_remote(&self) -> Result<Option<Arc<dyn Remote>>, ProvisionError>;

    /// Forgets outstanding [`provision`](Provisioner::provision) requests.
    fn clear(&self);

    /// Stops: releases every remote handed out and not yet released, cancels in-flight
    /// reservations, and makes waiting [`get_remote`](Provisioner::get_remote) calls fail.
    async fn stop(&self) -> Result<(), ProvisionError>;
}
