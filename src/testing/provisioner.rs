//! [`MemoryProvisioner`] and its [`MemoryRemote`]s.

use std::fmt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};

use async_trait::async_trait;
use tokio::sync::Notify;

use crate::connection::{CommandSpec, Connection, ConnectionError, Process};
use crate::provisioner::{Count, ProvisionError, Provisioner, Remote};
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
    /// Remotes released.
    pub released: usize,
    /// Remotes handed out and not yet released.
    pub live: usize,
    /// Calls of [`Provisioner::clear`].
    pub clears: usize,
    /// Requests still outstanding.
    pub outstanding: usize,
    /// Remotes marked destroyed ([`Remote::mark_destroyed`]), each counted once.
    pub destroyed: usize,
}

#[derive(Default)]
struct ProvState {
    capacity: usize,
    requested: usize,
    unlimited: bool,
    started: bool,
    stopped: bool,
    stats: MemoryStats,
    remotes: Vec<Weak<MemoryRemote>>,
}

struct ProvShared {
    name: String,
    state: Mutex<ProvState>,
    wake: Notify,
}

impl ProvShared {
    fn lock(&self) -> std::sync::MutexGuard<'_, ProvState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A provisioner of in-memory remotes, at most `capacity` alive at once. See the
/// [module docs](super).
#[derive(Clone)]
pub struct MemoryProvisioner {
    shared: Arc<ProvShared>,
}

impl fmt::Debug for MemoryProvisioner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryProvisioner")
            .field("name", &self.shared.name)
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
        Self {
            shared: Arc::new(ProvShared {
                name: name.into(),
                state: Mutex::new(ProvState {
                    capacity,
                    ..ProvState::default()
                }),
                wake: Notify::new(),
            }),
        }
    }

    /// Makes room for `n` more live remotes (new machines joining the pool).
    pub fn add_capacity(&self, n: usize) {
        self.shared.lock().capacity += n;
        self.shared.wake.notify_waiters();
    }

    /// The counters so far.
    pub fn stats(&self) -> MemoryStats {
        let st = self.shared.lock();
        let mut stats = st.stats;
        stats.outstanding = st.requested;
        stats
    }

    fn take_one(&self) -> Result<Option<Arc<dyn Remote>>, ProvisionError> {
        let mut st = self.shared.lock();
        if st.stopped || !st.started {
            return Err(ProvisionError::Stopped(self.shared.name.clone()));
        }
        if (!st.unlimited && st.requested == 0) || st.stats.live >= st.capacity {
            return Ok(None);
        }
        if !st.unlimited {
            st.requested -= 1;
        }
        st.stats.provisioned += 1;
        st.stats.live += 1;
        let remote = Arc::new(MemoryRemote {
            name: format!("{}-{}", self.shared.name, st.stats.provisioned),
            released: AtomicBool::new(false),
            destroyed: AtomicBool::new(false),
            provisioner: Arc::downgrade(&self.shared),
        });
        if st.remotes.len() >= 64 && st.remotes.len().is_power_of_two() {
            st.remotes.retain(|r| r.strong_count() > 0);
        }
        st.remotes.push(Arc::downgrade(&remote));
        Ok(Some(remote))
    }
}

#[async_trait]
impl Provisioner for MemoryProvisioner {
    fn describe(&self) -> String {
        self.shared.name.clone()
    }

    async fn start(&self, _scope: &Scope) -> Result<(), ProvisionError> {
        let mut st = self.shared.lock();
        st.started = true;
        st.stopped = false;
        Ok(())
    }

    fn provision(&self, count: Count) -> Result<(), ProvisionError> {
        {
            let mut st = self.shared.lock();
            if st.stopped {
                return Err(ProvisionError::Stopped(self.shared.name.clone()));
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
        self.shared.wake.notify_waiters();
        Ok(())
    }

    async fn get_remote(&self) -> Result<Arc<dyn Remote>, ProvisionError> {
        loop {
            let notified = self.shared.wake.notified();
            if let Some(remote) = self.take_one()? {
                return Ok(remote);
            }
            notified.await;
        }
    }

    fn try_get_remote(&self) -> Result<Option<Arc<dyn Remote>>, ProvisionError> {
        self.take_one()
    }

    fn clear(&self) {
        let mut st = self.shared.lock();
        st.requested = 0;
        st.unlimited = false;
        st.stats.clears += 1;
    }

    async fn stop(&self) -> Result<(), ProvisionError> {
        let remotes: Vec<Arc<MemoryRemote>> = {
            let mut st = self.shared.lock();
            st.stopped = true;
            st.requested = 0;
            st.unlimited = false;
            st.remotes.drain(..).filter_map(|w| w.upgrade()).collect()
        };
        self.shared.wake.notify_waiters();
        for remote in remotes {
            remote.release().await?;
        }
        Ok(())
    }
}

/// A remote of a [`MemoryProvisioner`]. Running commands on it is not supported.
pub struct MemoryRemote {
    name: String,
    released: AtomicBool,
    destroyed: AtomicBool,
    provisioner: Weak<ProvShared>,
}

impl fmt::Debug for MemoryRemote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryRemote")
            .field("name", &self.name)
            .field("released", &self.is_released())
            .field("destroyed", &self.destroyed.load(Ordering::SeqCst))
            .finish()
    }
}

#[async_trait]
impl Connection for MemoryRemote {
    fn describe(&self) -> String {
        self.name.clone()
    }

    async fn spawn(&self, _cmd: CommandSpec, _scope: &Scope) -> Result<Process, ConnectionError> {
        Err(ConnectionError::NotSupported {
            operation: "spawn",
            target: self.name.clone(),
        })
    }

    async fn upload(&self, _local: &Path, _remote: &str) -> Result<(), ConnectionError> {
        Err(ConnectionError::NotSupported {
            operation: "upload",
            target: self.name.clone(),
        })
    }

    async fn download(&self, _remote: &str, _local: &Path) -> Result<(), ConnectionError> {
        Err(ConnectionError::NotSupported {
            operation: "download",
            target: self.name.clone(),
        })
    }
}

#[async_trait]
impl Remote for MemoryRemote {
    async fn release(&self) -> Result<(), ProvisionError> {
        if self.released.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        if let Some(shared) = self.provisioner.upgrade() {
            {
                let mut st = shared.lock();
                st.stats.released += 1;
                st.stats.live = st.stats.live.saturating_sub(1);
            }
            shared.wake.notify_waiters();
        }
        Ok(())
    }

    fn is_released(&self) -> bool {
        self.released.load(Ordering::SeqCst)
    }

    fn mark_destroyed(&self) {
        if !self.destroyed.swap(true, Ordering::SeqCst)
            && let Some(shared) = self.provisioner.upgrade()
        {
            shared.lock().stats.destroyed += 1;
        }
    }
}
