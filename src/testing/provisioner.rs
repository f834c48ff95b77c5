//! [`MemoryProvisioner`] and its [`MemoryRemote`]s.

use std::fmt;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;

use crate::connection::{CommandSpec, Connection, ConnectionError, Process};
use crate::provisioner::{
    CreateError, Creator, Lease, LeasedRemote, Ledger, LedgerProvisioner, LedgerStats,
};
#[cfg(doc)]
use crate::provisioner::{Provisioner, Remote};
use crate::scope::Scope;

/// Counters of a [`MemoryProvisioner`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemoryStats {
    /// Remotes asked for with [`Provisioner::provision`] (`Unlimited` not counted).
    pub requested: usize,
    /// Calls of [`Provisioner::provision`].
    pub provision_calls: usize,
    /// Remotes handed out.
    pub provisioned: usize,
    /// Remotes released (or dropped).
    pub released: usize,
    /// Remotes handed out and not yet released.
    pub live: usize,
    /// Calls of [`Provisioner::clear`].
    pub clears: usize,
    /// Requests still outstanding (`usize::MAX` while `Unlimited`).
    pub outstanding: usize,
    /// Remotes released after [`Remote::mark_destroyed`].
    pub destroyed: usize,
}

impl From<LedgerStats> for MemoryStats {
    fn from(s: LedgerStats) -> Self {
        Self {
            requested: s.requested,
            provision_calls: s.provision_calls,
            provisioned: s.handed_out,
            released: s.released,
            live: s.live,
            clears: s.clears,
            outstanding: s.outstanding,
            destroyed: s.destroyed,
        }
    }
}

/// The connection of a [`MemoryRemote`]: it has a name and supports nothing else
/// (every operation fails with [`ConnectionError::NotSupported`]).
#[derive(Debug, Clone)]
pub struct MemoryConnection {
    name: String,
}

impl MemoryConnection {
    fn unsupported(&self, operation: &'static str) -> ConnectionError {
        ConnectionError::NotSupported {
            operation,
            target: self.name.clone(),
        }
    }
}

#[async_trait]
impl Connection for MemoryConnection {
    fn describe(&self) -> String {
        self.name.clone()
    }

    async fn spawn(&self, _cmd: CommandSpec, _scope: &Scope) -> Result<Process, ConnectionError> {
        Err(self.unsupported("spawn"))
    }

    async fn upload(&self, _local: &Path, _remote: &str) -> Result<(), ConnectionError> {
        Err(self.unsupported("upload"))
    }

    async fn download(&self, _remote: &str, _local: &Path) -> Result<(), ConnectionError> {
        Err(self.unsupported("download"))
    }
}

/// A remote of a [`MemoryProvisioner`]. Running commands on it is not supported.
pub type MemoryRemote = LeasedRemote<MemoryConnection>;

/// A provisioner of in-memory remotes, at most `capacity` alive at once. See the
/// [module docs](super).
#[derive(Clone)]
pub struct MemoryProvisioner {
    ledger: Ledger<MemoryConnection>,
}

impl fmt::Debug for MemoryProvisioner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryProvisioner")
            .field("name", &self.ledger.name())
            .field("stats", &self.stats())
            .finish()
    }
}

impl MemoryProvisioner {
    /// A provisioner named `memory` with room for `capacity` live remotes.
    pub fn new(capacity: usize) -> Self {
        Self::named("memory", capacity)
    }

    /// A provisioner with a name (remotes are called `<name>-<n>`).
    pub fn named(name: impl Into<String>, capacity: usize) -> Self {
        let name = name.into();
        let prefix = name.clone();
        let made = AtomicUsize::new(0);
        let creator = Creator::immediate(move |_cx| {
            let n = made.fetch_add(1, Ordering::Relaxed) + 1;
            Ok::<_, CreateError>(Lease::new(MemoryConnection {
                name: format!("{prefix}-{n}"),
            }))
        });
        Self {
            ledger: Ledger::new(name, Some(capacity), creator),
        }
    }

    /// Makes room for `n` more live remotes (new machines joining the pool).
    pub fn add_capacity(&self, n: usize) {
        self.ledger.add_capacity(n);
    }

    /// The counters so far.
    pub fn stats(&self) -> MemoryStats {
        self.ledger.stats().into()
    }
}

impl LedgerProvisioner for MemoryProvisioner {
    type Conn = MemoryConnection;

    fn ledger(&self) -> &Ledger<MemoryConnection> {
        &self.ledger
    }
}
