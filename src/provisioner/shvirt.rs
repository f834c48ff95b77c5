//! [`SharedVirtProvisioner`]: persistent domains of a shared VM host, reserved through
//! atex's helper (`atex virt-helper`, feature `libvirt`).
//!
//! [`start`](Provisioner::start) runs the helper on the VM host through any
//! [`Connection`] (SSH in practice) and checks its version. Each request then makes one
//! system in a creation task of the provisioner's [`Ledger`]: reserve a domain (when none
//! is free, wait `reserve_delay` and ask again), shut it off, copy the image volume onto
//! its disk, read its forwarded SSH port from its XML, start it, wait for the sshd banner
//! and connect. From the reservation on, the domain sits in a
//! [`CleanupGuard`]: releasing the remote (or dropping it, or a
//! cancelled creation) shuts the domain off and gives the reservation back. A remote
//! released after [`mark_destroyed`](super::Remote::mark_destroyed) keeps its domain
//! reserved (shut off) until the provisioner stops, so neither this run nor another gets
//! it again meanwhile. [`stop`](Provisioner::stop) releases everything and ends the
//! helper, which drops every lock of the session; a client that crashes or loses its
//! connection frees its reservations the same way.
//!
//! Every helper request runs to its end in a task of its own: a creation cancelled
//! half-way (by `clear` or `stop`) never leaves the helper's line protocol out of step.

use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Map, Value, json};

use super::{
    Count, CreateContext, CreateError, Creator, Lease, Ledger, ProvisionError, Provisioner, Remote,
};
use crate::connection::ssh::{HostKeyPolicy, SshConfig};
use crate::connection::{Connection, ErrOutput, SshConnection};
use crate::guard::CleanupGuard;
use crate::scope::Scope;
use crate::virt::VirtError;
use crate::virt::domain::forwarded_ssh_port;
use crate::virt::helper::{HelperClient, HelperError};
use crate::virt::ready::{ReadyError, wait_for_banner};
use crate::virt::transient::connect_guest;

/// Settings of a [`SharedVirtProvisioner`].
#[derive(Debug, Clone)]
pub struct SharedVirtConfig {
    /// The helper's command line on the VM host, e.g. `["atex", "virt-helper",
    /// "qemu:///system"]`.
    pub helper: Vec<String>,
    /// The image volume copied onto a reserved domain's disk.
    pub image: String,
    /// The `dir` pool of the image and of the domains' disks.
    pub pool: String,
    /// Only domains whose name matches this regex in full.
    pub filter: Option<String>,
    /// Guest user.
    pub user: String,
    /// Private key the guests accept.
    pub key: PathBuf,
    /// Address of the VM host's forwarded ports as seen from here.
    pub domain_host: String,
    /// Pause before asking again when no domain is free.
    pub reserve_delay: Duration,
    /// Name of the session as other sessions' `reservations` show it (≤ 15 bytes).
    pub reserve_name: Option<String>,
    /// How long a domain may take from `virsh start` to an SSH session.
    pub boot_timeout: Duration,
    /// Domains held at once.
    pub max_remotes: usize,
}

impl SharedVirtConfig {
    /// Defaults: pool `default`, user root, 3 s between reservation attempts, 5 min boot,
    /// up to 4 domains.
    pub fn new(
        helper: Vec<String>,
        image: impl Into<String>,
        key: impl Into<PathBuf>,
        domain_host: impl Into<String>,
    ) -> Self {
        Self {
            helper,
            image: image.into(),
            pool: "default".into(),
            filter: None,
            user: "root".into(),
            key: key.into(),
            domain_host: domain_host.into(),
            reserve_delay: Duration::from_secs(3),
            reserve_name: None,
            boot_timeout: Duration::from_secs(300),
            max_remotes: 4,
        }
    }
}

/// Errors of the shared VM host.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SharedVirtError {
    /// A helper request failed.
    #[error(transparent)]
    Helper(#[from] HelperError),
    /// The domain's XML names no forwarded SSH port.
    #[error("domain {domain} has no port forwarded to its port 22")]
    NoPort {
        /// The domain.
        domain: String,
    },
    /// The domain's XML does not parse.
    #[error("the XML of domain {domain} cannot be read")]
    Xml {
        /// The domain.
        domain: String,
        /// The cause.
        #[source]
        source: crate::virt::domain::DomainXmlError,
    },
    /// The domain did not shut off.
    #[error("domain {domain} did not shut off within {after:?}")]
    NotShutOff {
        /// The domain.
        domain: String,
        /// How long we waited.
        after: Duration,
    },
    /// Booting or reaching the domain failed.
    #[error(transparent)]
    Boot(#[from] VirtError),
    /// The helper is not running (the provisioner is not started).
    #[error("the helper is not running")]
    NotRunning,
}

/// The helper of a started provisioner, its requests each in a task of their own.
#[derive(Clone)]
struct Helper {
    client: Arc<HelperClient>,
    /// Shielded: a request runs to its end even when its caller is cancelled.
    scope: Scope,
}

impl Helper {
    async fn call(&self, request: Value) -> Result<Map<String, Value>, HelperError> {
        let client = self.client.clone();
        let scope = self.scope.clone();
        let task = self.scope.spawn("helper-request", async move {
            client.request(request, None, &scope).await
        });
        match task.await {
            Ok(res) => res,
            Err(e) => Err(HelperError::Died {
                host: self.client.host().to_string(),
                message: format!("request task failed: {e}"),
            }),
        }
    }

    async fn virsh(&self, args: &[&str]) -> Result<String, HelperError> {
        let reply = self.call(json!({"cmd": "virsh", "args": args})).await?;
        Ok(reply
            .get("reply")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string())
    }

    /// Reserves a domain. A reservation whose caller is gone by the time it is granted is
    /// given back at once.
    async fn reserve(&self, filter: Option<&str>) -> Result<String, HelperError> {
        let client = self.client.clone();
        let scope = self.scope.clone();
        let filter = filter.map(str::to_string);
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.scope.spawn("helper-reserve", async move {
            let res = client.reserve(filter.as_deref(), &scope).await;
            if let Err(Ok(domain)) = tx.send(res) {
                tracing::debug!(%domain, "reservation nobody waits for; released");
                let _ = client.release(&domain, &scope).await;
            }
        });
        rx.await.unwrap_or_else(|_| {
            Err(HelperError::Died {
                host: self.client.host().to_string(),
                message: "the reservation task ended without an answer".into(),
            })
        })
    }

    /// Shuts `domain` off (destroy when it runs) and waits until libvirt says so.
    async fn shut_off(&self, domain: &str, scope: &Scope) -> Result<(), SharedVirtError> {
        let limit = Duration::from_secs(30);
        let deadline = tokio::time::Instant::now() + limit;
        let mut destroyed = false;
        loop {
            let state = self.virsh(&["domstate", domain]).await?;
            if state.trim() == "shut off" {
                return Ok(());
            }
            if !destroyed {
                // Fails harmlessly when it stopped meanwhile.
                let _ = self.virsh(&["destroy", domain]).await;
                destroyed = true;
                continue;
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(SharedVirtError::NotShutOff {
                    domain: domain.to_string(),
                    after: limit,
                });
            }
            if scope
                .run(tokio::time::sleep(Duration::from_millis(100)))
                .await
                .is_none()
            {
                return Err(VirtError::Cancelled.into());
            }
        }
    }
}

type HelperSlot = Arc<Mutex<Option<Helper>>>;

/// Reserves domains of a shared VM host; see the [module docs](self).
pub struct SharedVirtProvisioner {
    ledger: Ledger<SshConnection>,
    host: Arc<dyn Connection>,
    config: Arc<SharedVirtConfig>,
    helper: HelperSlot,
    name: String,
}

impl fmt::Debug for SharedVirtProvisioner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedVirtProvisioner")
            .field("name", &self.name)
            .field("ledger", &self.ledger)
            .finish_non_exhaustive()
    }
}

impl SharedVirtProvisioner {
    /// Domains of the VM host `host` reaches, reserved through the helper `config.helper`
    /// started there.
    pub fn new(host: Arc<dyn Connection>, config: SharedVirtConfig) -> Self {
        let name = format!("shvirt:{}:{}", host.describe(), config.image);
        let config = Arc::new(config);
        let helper: HelperSlot = Arc::new(Mutex::new(None));
        let (slot, cfg, describe) = (helper.clone(), config.clone(), name.clone());
        let creator = Creator::task(move |cx: CreateContext| {
            let (slot, cfg, describe) = (slot.clone(), cfg.clone(), describe.clone());
            async move {
                let helper = slot.lock().ok().and_then(|h| h.clone());
                let Some(helper) = helper else {
                    return Err(CreateError::Failed(ProvisionError::Stopped(describe)));
                };
                match create(&helper, &cfg, &cx).await {
                    Ok(lease) => Ok(lease),
                    // Cancelled by `clear` or `stop`: nothing to report (the guard cleans
                    // up).
                    Err(SharedVirtError::Boot(VirtError::Cancelled)) => Err(CreateError::Retry),
                    Err(e) => Err(CreateError::Failed(ProvisionError::failed(describe, e))),
                }
            }
        });
        Self {
            ledger: Ledger::new(name.clone(), Some(config.max_remotes.max(1)), creator),
            host,
            config,
            helper,
            name,
        }
    }

    /// The settings.
    pub fn config(&self) -> &SharedVirtConfig {
        &self.config
    }

    fn take_helper(&self) -> Option<Helper> {
        self.helper.lock().ok().and_then(|mut h| h.take())
    }
}

/// One system: reserve, re-image, start, connect.
async fn create(
    helper: &Helper,
    cfg: &SharedVirtConfig,
    cx: &CreateContext,
) -> Result<Lease<SshConnection>, SharedVirtError> {
    let scope = cx.scope();
    let domain = loop {
        match helper.reserve(cfg.filter.as_deref()).await {
            Ok(d) => break d,
            Err(e) if e.is_no_domain_free() => {
                tracing::debug!(delay = ?cfg.reserve_delay, "no domain free; waiting");
                if scope
                    .run(tokio::time::sleep(cfg.reserve_delay))
                    .await
                    .is_none()
                {
                    return Err(VirtError::Cancelled.into());
                }
            }
            Err(e) => return Err(e.into()),
        }
    };
    let retired = Arc::new(AtomicBool::new(false));
    let guard = reservation_guard(helper, &domain, retired.clone(), scope);
    helper.shut_off(&domain, scope).await?;
    helper
        .call(
            json!({"cmd": "copy-volume", "pool": cfg.pool, "from": cfg.image,
                     "to_domain": domain}),
        )
        .await?;
    let xml = helper.virsh(&["dumpxml", &domain]).await?;
    let port = forwarded_ssh_port(&domain, &xml)
        .map_err(|source| SharedVirtError::Xml {
            domain: domain.clone(),
            source,
        })?
        .ok_or_else(|| SharedVirtError::NoPort {
            domain: domain.clone(),
        })?;
    helper.virsh(&["start", &domain]).await?;
    tracing::info!(%domain, port, "shared domain started; waiting for sshd");
    let deadline = tokio::time::Instant::now() + cfg.boot_timeout;
    wait_for_banner(&cfg.domain_host, port, cfg.boot_timeout, scope)
        .await
        .map_err(|e| match e {
            ReadyError::Cancelled => VirtError::Cancelled,
            e => VirtError::NeverReady {
                domain: domain.clone(),
                message: e.to_string(),
            },
        })?;
    let mut ssh = SshConfig::new(cfg.domain_host.clone())
        .port(port)
        .user(cfg.user.clone())
        .key_file(cfg.key.clone())
        .host_key_policy(HostKeyPolicy::Insecure);
    ssh.connect_timeout = Duration::from_secs(20);
    ssh.reconnect_timeout = cfg.boot_timeout;
    let conn = connect_guest(ssh, &domain, deadline, scope).await?;
    tracing::info!(%domain, port, "shared domain reachable over SSH");
    Ok(Lease::new(conn)
        .on_release(move |destroyed| retired.store(destroyed, Ordering::SeqCst))
        .with_guard(guard))
}

/// Shuts the domain off and gives its reservation back (keeps it when the remote was
/// marked destroyed: the domain stays ours, shut off, until the helper ends).
fn reservation_guard(
    helper: &Helper,
    domain: &str,
    retired: Arc<AtomicBool>,
    scope: &Scope,
) -> CleanupGuard {
    let (helper, domain) = (helper.clone(), domain.to_string());
    let what = format!(
        "virsh destroy {domain}; release the reservation of {domain} (helper on {})",
        helper.client.host()
    );
    CleanupGuard::new(scope, what, move || async move {
        let _ = helper.virsh(&["destroy", &domain]).await;
        if retired.load(Ordering::SeqCst) {
            tracing::info!(%domain, "domain marked destroyed: kept reserved until the run ends");
            return Ok(());
        }
        helper
            .call(json!({"cmd": "release", "domain": domain}))
            .await
            .map(drop)
            .map_err(Into::into)
    })
}

#[async_trait]
impl Provisioner for SharedVirtProvisioner {
    fn describe(&self) -> String {
        self.name.clone()
    }

    async fn start(&self, scope: &Scope) -> Result<(), ProvisionError> {
        let running = self.helper.lock().map(|h| h.is_some()).unwrap_or(false);
        if !running {
            let own = scope.shielded(format!("{}-helper", self.name));
            let client = HelperClient::spawn(
                self.host.as_ref(),
                self.config.helper.clone(),
                ErrOutput::Null,
                &own,
            )
            .await
            .map_err(|e| ProvisionError::failed(self.name.clone(), e))?;
            if let Some(name) = &self.config.reserve_name {
                client
                    .set_name(name, &own)
                    .await
                    .map_err(|e| ProvisionError::failed(self.name.clone(), e))?;
            }
            if let Ok(mut slot) = self.helper.lock() {
                *slot = Some(Helper {
                    client: Arc::new(client),
                    scope: own,
                });
            }
        }
        self.ledger.start(scope);
        Ok(())
    }

    fn provision(&self, count: Count) -> Result<(), ProvisionError> {
        self.ledger.provision(count)
    }

    async fn get_remote(&self) -> Result<Arc<dyn Remote>, ProvisionError> {
        self.ledger.get_remote().await
    }

    fn try_get_remote(&self) -> Result<Option<Arc<dyn Remote>>, ProvisionError> {
        self.ledger.try_get_remote()
    }

    fn clear(&self) {
        self.ledger.clear()
    }

    async fn stop(&self) -> Result<(), ProvisionError> {
        let outcome = self.ledger.stop().await;
        // Ending the helper drops every lock of the session (also the retired domains').
        if let Some(helper) = self.take_helper() {
            let Helper { client, scope } = helper;
            match Arc::try_unwrap(client) {
                Ok(client) => client.close(Duration::from_secs(5)).await,
                Err(shared) => {
                    // A request task still holds it: it ends when that task does.
                    tracing::debug!(host = %shared.host(), "helper still in use at stop");
                }
            }
            scope.cancel();
        }
        outcome
    }
}
