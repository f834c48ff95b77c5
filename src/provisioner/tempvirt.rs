//! [`TempVirtProvisioner`]: transient libvirt domains cloned from a shut-off origin domain
//! (feature `libvirt`), handed out as SSH remotes.
//!
//! [`start`](crate::provisioner::Provisioner::start) reads the origin through `virsh`
//! (an unknown origin, a running origin or an unreachable libvirt fail the start, naming
//! it) and prepares a [`CloneFactory`]. Each request then makes one clone in a creation
//! task of the provisioner's [`Ledger`]: overlay, transient domain with its own forwarded
//! SSH port (`virsh create` retried on a new port when it fails), readiness by the sshd
//! banner, an SSH session. The clone's [`CleanupGuard`](crate::guard::CleanupGuard) travels
//! with the remote: releasing the remote (or dropping it, or stopping the provisioner, or
//! cancelling a creation mid-boot) destroys the domain, deletes the overlay and frees the
//! port. A clone that never becomes reachable is an error of `get_remote` naming the
//! domain; its leftovers are removed the same way.
//!
//! Reboots inside a test work through [`Connection::reconnect`](crate::connection::Connection::reconnect)
//! of the SSH connection: the transient domain survives a guest reboot and its overlay
//! keeps what the test wrote.

use std::fmt;
use std::sync::{Arc, Mutex};

use super::{
    CreateContext, CreateError, Creator, Lease, Ledger, LedgerProvisioner, ProvisionError,
};
use crate::connection::SshConnection;
use crate::scope::Scope;
use crate::virt::{CloneConfig, CloneFactory, Virsh, VirtError};

/// Default number of clones at once.
pub const DEFAULT_MAX_REMOTES: usize = 3;

/// The factory, once [`start`](crate::provisioner::Provisioner::start) prepared it.
type FactorySlot = Arc<Mutex<Option<Arc<CloneFactory>>>>;

/// Hands out transient clones of an origin domain; see the [module docs](self).
pub struct TempVirtProvisioner {
    ledger: Ledger<SshConnection>,
    virsh: Virsh,
    config: CloneConfig,
    factory: FactorySlot,
    name: String,
}

impl fmt::Debug for TempVirtProvisioner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TempVirtProvisioner")
            .field("name", &self.name)
            .field("virsh", &self.virsh.describe())
            .field("ledger", &self.ledger)
            .finish_non_exhaustive()
    }
}

impl TempVirtProvisioner {
    /// Clones of `config.origin` on the libvirt host `virsh` talks to, at most
    /// `max_remotes` at once.
    pub fn new(virsh: Virsh, config: CloneConfig, max_remotes: usize) -> Self {
        let name = format!("virt:{}", config.origin);
        let factory: FactorySlot = Arc::new(Mutex::new(None));
        let slot = factory.clone();
        let describe = name.clone();
        let creator = Creator::task(move |cx: CreateContext| {
            let slot = slot.clone();
            let describe = describe.clone();
            async move { create(&slot, &describe, cx).await }
        });
        Self {
            ledger: Ledger::new(name.clone(), Some(max_remotes.max(1)), creator),
            virsh,
            config,
            factory,
            name,
        }
    }

    /// The clone settings.
    pub fn config(&self) -> &CloneConfig {
        &self.config
    }

    /// virsh of the libvirt host.
    pub fn virsh(&self) -> &Virsh {
        &self.virsh
    }
}

/// One creation: a clone, its connection and guard as a lease.
async fn create(
    slot: &FactorySlot,
    describe: &str,
    cx: CreateContext,
) -> Result<Lease<SshConnection>, CreateError> {
    let factory = slot
        .lock()
        .map_err(|_| ProvisionError::failed(describe, "the clone factory is poisoned"))?
        .clone()
        .ok_or_else(|| ProvisionError::Stopped(describe.to_string()))?;
    match factory.create(cx.scope()).await {
        Ok(domain) => {
            tracing::info!(provisioner = %describe, domain = %domain.name(), port = domain.port(),
                "clone ready");
            let (conn, guard) = domain.into_parts();
            let lease = Lease::new(conn);
            Ok(match guard {
                Some(guard) => lease.with_guard(guard),
                None => lease,
            })
        }
        // Cancelled by `clear` or `stop`: nothing to report (the guard cleans up).
        Err(VirtError::Cancelled) => Err(CreateError::Retry),
        Err(e) => Err(CreateError::Failed(ProvisionError::failed(describe, e))),
    }
}

#[async_trait::async_trait]
impl LedgerProvisioner for TempVirtProvisioner {
    type Conn = SshConnection;

    fn ledger(&self) -> &Ledger<SshConnection> {
        &self.ledger
    }

    fn description(&self) -> String {
        self.name.clone()
    }

    async fn before_start(&self, scope: &Scope) -> Result<(), ProvisionError> {
        let ready = self.factory.lock().map(|f| f.is_some()).unwrap_or(false);
        if ready {
            return Ok(());
        }
        let factory = CloneFactory::prepare(self.virsh.clone(), self.config.clone(), scope)
            .await
            .map_err(|e| ProvisionError::failed(self.name.clone(), e))?;
        if let Ok(mut slot) = self.factory.lock() {
            *slot = Some(Arc::new(factory));
        }
        Ok(())
    }
}
