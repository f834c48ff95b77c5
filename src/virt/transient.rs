//! Transient clones of an origin domain: [`CloneFactory`] makes [`TransientDomain`]s.
//!
//! One clone is: a port from the [`PortAllocator`]; a qcow2 overlay *volume* in a `dir`
//! storage pool (`virsh vol-create-as --backing-vol`, so libvirt creates it as the user its
//! QEMU runs as, and `virsh vol-list` shows it); a transient domain (`virsh create`,
//! retried on failure with a fresh port); readiness by sshd banner; then an
//! [`SshConnection`] with the given key. From the overlay's creation on, the clone sits in
//! a [`CleanupGuard`]: dropping or releasing it destroys the domain, deletes the overlay
//! and frees the port, also after Ctrl-C (the cleanup runs in a shielded scope).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::connection::ssh::{HostKeyPolicy, SshConfig};
use crate::connection::{ConnectionError, SshConnection};
use crate::guard::{CleanupError, CleanupGuard};
use crate::scope::Scope;

use super::VirtError;
use super::domain::{
    CloneSpec, DiskSource, InstanceMetadata, NAME_PREFIX, NetworkBackend, OriginTemplate,
};
use super::ports::PortAllocator;
use super::ready::{ReadyError, wait_for_banner};
use super::virsh::{Virsh, VirshError};

/// How the SSH port is forwarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NetworkChoice {
    /// passt where libvirt accepts it, else QEMU user networking. Decided at run time:
    /// without a `passt` program on the libvirt host, user networking; with one, the first
    /// clone is started with passt, and when libvirt rejects that (libvirt before 9.2 does
    /// not know the passt backend, a host may lack what passt needs) the factory switches
    /// to user networking for this and every later clone
    /// ([`CloneFactory::passt_rejection`] keeps libvirt's answer).
    #[default]
    Auto,
    /// Always passt; libvirt rejecting it is [`VirtError::PasstRejected`].
    Passt,
    /// Always QEMU user networking with `hostfwd`.
    UserHostfwd,
}

/// Settings of a [`CloneFactory`].
#[derive(Debug, Clone)]
pub struct CloneConfig {
    /// The shut-off origin domain.
    pub origin: String,
    /// The `dir` storage pool the overlays are created in.
    pub pool: String,
    /// Names this run in domain names and metadata (letters, digits, `-`, `_`).
    pub run_id: String,
    /// Guest user to log in as.
    pub user: String,
    /// Private key whose public half the guest accepts.
    pub key: PathBuf,
    /// Address the forwarded ports listen on, on the libvirt host.
    pub listen: String,
    /// Address to reach the forwarded ports at (the libvirt host as seen from here).
    pub ssh_host: String,
    /// Ports to forward from.
    pub ports: std::ops::RangeInclusive<u16>,
    /// Probe ports by binding them here before use (only when the libvirt host is this
    /// machine).
    pub probe_ports: bool,
    /// Networking.
    pub network: NetworkChoice,
    /// QEMU user networking: the guest reaches nothing but its forwarded port.
    pub isolated: bool,
    /// QEMU user networking: NIC model.
    pub nic_model: String,
    /// Attempts of `virsh create` before giving up.
    pub start_attempts: u32,
    /// How long a clone may take from `virsh create` to an SSH session.
    pub boot_timeout: Duration,
    /// Host-key policy of the SSH connections (clones are throwaway: insecure by default).
    pub host_key_policy: HostKeyPolicy,
    /// known_hosts file for [`HostKeyPolicy::Strict`].
    pub known_hosts: Option<PathBuf>,
}

impl CloneConfig {
    /// Defaults for `origin` in `pool`, logging in as root with `key`.
    pub fn new(
        origin: impl Into<String>,
        pool: impl Into<String>,
        run_id: impl Into<String>,
        key: impl Into<PathBuf>,
    ) -> Self {
        Self {
            origin: origin.into(),
            pool: pool.into(),
            run_id: run_id.into(),
            user: "root".into(),
            key: key.into(),
            listen: "127.0.0.1".into(),
            ssh_host: "127.0.0.1".into(),
            ports: 5100..=5999,
            probe_ports: true,
            network: NetworkChoice::Auto,
            isolated: false,
            nic_model: "e1000".into(),
            start_attempts: 3,
            boot_timeout: Duration::from_secs(300),
            host_key_policy: HostKeyPolicy::Insecure,
            known_hosts: None,
        }
    }
}

/// Makes transient clones of one origin domain.
#[derive(Debug)]
pub struct CloneFactory {
    virsh: Virsh,
    config: CloneConfig,
    template: OriginTemplate,
    backing: String,
    capacity: u64,
    network: Mutex<NetworkState>,
    ports: Arc<Mutex<PortAllocator>>,
}

/// The networking clones get now.
#[derive(Debug, Clone)]
struct NetworkState {
    backend: NetworkBackend,
    /// libvirt's answer when passt was tried ([`NetworkChoice::Auto`]) and rejected.
    rejected: Option<String>,
}

/// Whether a failed `virsh create` of a passt domain was about passt: libvirt's
/// rejection of the backend (libvirt 9.0: "Invalid value for attribute 'type' in element
/// 'backend': 'passt'"), or passt failing to start. Nothing else in a clone's XML is
/// named passt.
pub(crate) fn passt_rejected(e: &VirshError) -> bool {
    e.message()
        .is_some_and(|m| m.to_ascii_lowercase().contains("passt"))
}

/// A random 32-bit suffix (process-seeded hasher keys; no extra dependency).
fn random_suffix() -> String {
    use std::hash::{BuildHasher, Hasher};
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
    h.write_u32(std::process::id());
    format!("{:08x}", h.finish() as u32)
}

/// Whether `s` is safe inside domain and volume names.
pub(crate) fn valid_run_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 40
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl CloneFactory {
    /// Reads the origin (`virsh dumpxml --inactive`), checks that it is shut off, resolves
    /// its image and size, and decides the networking.
    pub async fn prepare(
        virsh: Virsh,
        config: CloneConfig,
        scope: &Scope,
    ) -> Result<Self, VirtError> {
        if !valid_run_id(&config.run_id) {
            return Err(VirtError::Config(format!(
                "run id {:?} must be 1-40 letters, digits, '-' or '_'",
                config.run_id
            )));
        }
        let origin = config.origin.clone();
        let xml = virsh.dumpxml(&origin, true, scope).await.map_err(|e| {
            if e.is_not_found() {
                VirtError::UnknownOrigin {
                    origin: origin.clone(),
                    host: virsh.describe(),
                    source: Box::new(e),
                }
            } else {
                e.into()
            }
        })?;
        let state = virsh.domstate(&origin, scope).await?;
        if state != "shut off" {
            return Err(VirtError::OriginRunning { origin, state });
        }
        let template = OriginTemplate::parse(&origin, &xml)?;
        let backing = match template.disk_source() {
            DiskSource::File(path) => path.clone(),
            DiskSource::Volume { pool, volume } => virsh.vol_path(pool, volume, scope).await?,
        };
        let capacity = disk_capacity(&virsh, &origin, &backing, scope).await?;
        let network = match config.network {
            NetworkChoice::Passt => NetworkBackend::Passt,
            NetworkChoice::UserHostfwd => NetworkBackend::UserHostfwd,
            NetworkChoice::Auto => {
                if passt_installed(&virsh, scope).await? {
                    NetworkBackend::Passt
                } else {
                    tracing::info!(host = %virsh.describe(), "no passt on the libvirt host: QEMU user networking with hostfwd");
                    NetworkBackend::UserHostfwd
                }
            }
        };
        tracing::info!(origin = %config.origin, %backing, capacity, ?network, "origin ready for cloning");
        let probe = config.probe_ports.then(|| config.listen.clone());
        let ports = Arc::new(Mutex::new(PortAllocator::new(config.ports.clone(), probe)));
        Ok(Self {
            virsh,
            config,
            template,
            backing,
            capacity,
            network: Mutex::new(NetworkState {
                backend: network,
                rejected: None,
            }),
            ports,
        })
    }

    /// The networking the next clone gets (with [`NetworkChoice::Auto`], passt until
    /// libvirt rejects it).
    pub fn network(&self) -> NetworkBackend {
        self.network_state().backend
    }

    /// libvirt's answer when [`NetworkChoice::Auto`] tried passt and libvirt rejected it
    /// (the clones then use QEMU user networking).
    pub fn passt_rejection(&self) -> Option<String> {
        self.network_state().rejected
    }

    fn network_state(&self) -> NetworkState {
        match self.network.lock() {
            Ok(n) => n.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// [`NetworkChoice::Auto`]: libvirt rejected passt; user networking from now on.
    fn fall_back_from_passt(&self, e: &VirshError) {
        let message = e.message().unwrap_or_default().to_string();
        tracing::info!(host = %self.virsh.describe(), %message, "libvirt rejected passt: QEMU user networking with hostfwd from now on");
        let mut n = match self.network.lock() {
            Ok(n) => n,
            Err(poisoned) => poisoned.into_inner(),
        };
        n.backend = NetworkBackend::UserHostfwd;
        n.rejected = Some(message);
    }

    /// The settings.
    pub fn config(&self) -> &CloneConfig {
        &self.config
    }

    /// virsh of the libvirt host.
    pub fn virsh(&self) -> &Virsh {
        &self.virsh
    }

    fn allocate_port(&self) -> Result<u16, VirtError> {
        let mut ports = self
            .ports
            .lock()
            .map_err(|_| VirtError::Config("port allocator poisoned".into()))?;
        Ok(ports.allocate()?)
    }

    /// Creates one clone and waits until it is reachable over SSH. Cancelling `scope`
    /// stops the wait; the half-made clone is cleaned up by its guard.
    pub async fn create(&self, scope: &Scope) -> Result<TransientDomain, VirtError> {
        let name = format!("{NAME_PREFIX}{}-{}", self.config.run_id, random_suffix());
        let volume = format!("{name}.qcow2");
        let pool = self.config.pool.clone();
        let mut port = self.allocate_port()?;
        let state = Arc::new(Mutex::new(Holding {
            domain: None,
            port: Some(port),
        }));
        // From here on everything is held by one guard: domain (once created), volume, port.
        let guard = self.clone_guard(scope, &name, &pool, &volume, state.clone());
        // `vol-create-as --backing-vol` wants the backing file to be a volume of some pool;
        // volume XML takes any path.
        let volume_xml = overlay_volume_xml(
            &volume,
            self.capacity,
            &self.backing,
            self.template.disk_format(),
        );
        self.virsh
            .run_input(
                &["vol-create", "--pool", &pool, "--file", "/dev/stdin"],
                Some(volume_xml.into_bytes()),
                scope,
            )
            .await?;
        let overlay = self.virsh.vol_path(&pool, &volume, scope).await?;
        let mut attempt = 1;
        loop {
            let network = self.network();
            let spec = CloneSpec {
                name: name.clone(),
                overlay: overlay.clone(),
                backing: self.backing.clone(),
                listen: self.config.listen.clone(),
                port,
                network,
                isolated: self.config.isolated,
                nic_model: self.config.nic_model.clone(),
                metadata: InstanceMetadata {
                    run: self.config.run_id.clone(),
                    origin: self.config.origin.clone(),
                    pool: pool.clone(),
                    volume: volume.clone(),
                    port,
                },
            };
            let xml = self.template.clone_xml(&spec);
            if let Ok(mut s) = state.lock() {
                s.domain = Some(name.clone());
            }
            match self.virsh.create(&xml, scope).await {
                Ok(()) => break,
                Err(VirshError::Cancelled) => return Err(VirtError::Cancelled),
                Err(e) if network == NetworkBackend::Passt && passt_rejected(&e) => {
                    if self.config.network == NetworkChoice::Passt {
                        return Err(VirtError::PasstRejected {
                            host: self.virsh.describe(),
                            source: Box::new(e),
                        });
                    }
                    // Auto: the same clone again at once, with user networking.
                    self.fall_back_from_passt(&e);
                    let _ = self.virsh.destroy(&name, scope).await;
                }
                Err(e) if attempt < self.config.start_attempts => {
                    tracing::warn!(domain = %name, attempt, error = %e, "starting the domain failed; retrying on a new port");
                    attempt += 1;
                    // It may have half-started: make sure it is gone before trying again.
                    let _ = self.virsh.destroy(&name, scope).await;
                    let new_port = self.allocate_port()?;
                    if let Ok(mut ports) = self.ports.lock() {
                        ports.release(port);
                    }
                    if let Ok(mut s) = state.lock() {
                        s.port = Some(new_port);
                    }
                    port = new_port;
                    if scope
                        .run(tokio::time::sleep(Duration::from_millis(500)))
                        .await
                        .is_none()
                    {
                        return Err(VirtError::Cancelled);
                    }
                }
                Err(e) => {
                    return Err(VirtError::Start {
                        domain: name,
                        attempts: attempt,
                        source: Box::new(e),
                    });
                }
            }
        }
        tracing::info!(domain = %name, port, "domain started; waiting for sshd");
        let deadline = tokio::time::Instant::now() + self.config.boot_timeout;
        wait_for_banner(&self.config.ssh_host, port, self.config.boot_timeout, scope)
            .await
            .map_err(|e| match e {
                ReadyError::Cancelled => VirtError::Cancelled,
                e => VirtError::NeverReady {
                    domain: name.clone(),
                    message: e.to_string(),
                },
            })?;
        let conn = self.connect(&name, port, deadline, scope).await?;
        tracing::info!(domain = %name, port, "domain reachable over SSH");
        Ok(TransientDomain {
            name,
            port,
            volume,
            conn,
            guard: Some(guard),
        })
    }

    fn ssh_config(&self, port: u16) -> SshConfig {
        let mut cfg = SshConfig::new(self.config.ssh_host.clone())
            .port(port)
            .user(self.config.user.clone())
            .key_file(self.config.key.clone())
            .host_key_policy(self.config.host_key_policy);
        if let Some(kh) = &self.config.known_hosts {
            cfg = cfg.known_hosts(kh.clone());
        }
        cfg.connect_timeout = Duration::from_secs(20);
        // A reboot of the guest (a test's `disconnect`) takes about as long as a boot.
        cfg.reconnect_timeout = self.config.boot_timeout;
        cfg
    }

    /// Connects, retrying transient failures until `deadline` (see [`connect_guest`]).
    async fn connect(
        &self,
        name: &str,
        port: u16,
        deadline: tokio::time::Instant,
        scope: &Scope,
    ) -> Result<SshConnection, VirtError> {
        connect_guest(self.ssh_config(port), name, deadline, scope).await
    }

    fn clone_guard(
        &self,
        scope: &Scope,
        name: &str,
        pool: &str,
        volume: &str,
        state: Arc<Mutex<Holding>>,
    ) -> CleanupGuard {
        let virsh = self.virsh.clone();
        let ports = self.ports.clone();
        let (pool, volume) = (pool.to_string(), volume.to_string());
        let cleanup_scope = scope.shielded("virt-cleanup");
        let what = format!(
            "virsh{} destroy {name}; virsh vol-delete --pool {pool} {volume}",
            virsh.uri().map(|u| format!(" -c {u}")).unwrap_or_default()
        );
        CleanupGuard::new(scope, what, move || async move {
            let (domain, port) = match state.lock() {
                Ok(mut s) => (s.domain.take(), s.port.take()),
                Err(_) => (None, None),
            };
            let mut errors = Vec::new();
            if let Some(domain) = &domain
                && let Err(e) = virsh.destroy(domain, &cleanup_scope).await
            {
                errors.push(crate::error::chain(&e).to_string());
            }
            if let Err(e) = delete_volume(&virsh, &pool, &volume, &cleanup_scope).await {
                errors.push(crate::error::chain(&e).to_string());
            }
            if let Some(port) = port
                && let Ok(mut p) = ports.lock()
            {
                p.release(port);
            }
            if errors.is_empty() {
                Ok(())
            } else {
                Err(errors.join("; ").into())
            }
        })
    }
}

/// Connects to a freshly booted guest (`domain` names it in errors), retrying transient
/// failures (a port forwarder accepts before the guest's sshd is fully up) until
/// `deadline`.
pub async fn connect_guest(
    cfg: SshConfig,
    domain: &str,
    deadline: tokio::time::Instant,
    scope: &Scope,
) -> Result<SshConnection, VirtError> {
    loop {
        let err = match scope.run(SshConnection::connect(cfg.clone())).await {
            None => return Err(VirtError::Cancelled),
            Some(Ok(conn)) => return Ok(conn),
            Some(Err(e)) => e,
        };
        let transient = matches!(
            err,
            ConnectionError::Connect {
                transient: true,
                ..
            } | ConnectionError::Disconnected { .. }
                | ConnectionError::Timeout { .. }
        );
        if !transient || tokio::time::Instant::now() >= deadline {
            return Err(VirtError::Ssh {
                domain: domain.to_string(),
                source: err,
            });
        }
        tracing::debug!(%domain, error = %err, "SSH not ready yet");
        if scope
            .run(tokio::time::sleep(Duration::from_millis(300)))
            .await
            .is_none()
        {
            return Err(VirtError::Cancelled);
        }
    }
}

/// What a clone's guard must undo.
#[derive(Debug)]
struct Holding {
    domain: Option<String>,
    port: Option<u16>,
}

/// Deletes an overlay volume. libvirt may still be tearing down the domain that used it,
/// or still creating the volume for a request that was cancelled, so those answers
/// ([`volume_busy`]) are retried for up to 5 s.
pub(crate) async fn delete_volume(
    virsh: &Virsh,
    pool: &str,
    volume: &str,
    scope: &Scope,
) -> Result<bool, VirshError> {
    let mut tries = 0;
    loop {
        tries += 1;
        match virsh.vol_delete(pool, volume, scope).await {
            Err(e) if tries < 50 && e.message().is_some_and(volume_busy) => {
                if scope
                    .run(tokio::time::sleep(Duration::from_millis(100)))
                    .await
                    .is_none()
                {
                    return Err(VirshError::Cancelled);
                }
            }
            other => return other,
        }
    }
}

/// Whether libvirt refused to delete a volume only for now: a domain still uses it, an
/// asynchronous job holds it, or its creation (by a request that was cancelled meanwhile)
/// has not finished ("volume '…' is still being allocated").
fn volume_busy(message: &str) -> bool {
    message.contains("in use")
        || message.contains("asynchronous jobs")
        || message.contains("still being allocated")
}

/// XML of a qcow2 overlay volume over `backing`.
pub fn overlay_volume_xml(
    name: &str,
    capacity: u64,
    backing: &str,
    backing_format: &str,
) -> String {
    let mut vol = xmltree::Element::new("volume");
    let text = |n: &str, t: &str| {
        let mut e = xmltree::Element::new(n);
        e.children.push(xmltree::XMLNode::Text(t.to_string()));
        xmltree::XMLNode::Element(e)
    };
    let format = |t: &str| {
        let mut e = xmltree::Element::new("format");
        e.attributes.insert("type".into(), t.to_string());
        xmltree::XMLNode::Element(e)
    };
    let mut target = xmltree::Element::new("target");
    target.children.push(format("qcow2"));
    let mut store = xmltree::Element::new("backingStore");
    store.children.push(text("path", backing));
    store.children.push(format(backing_format));
    vol.children.push(text("name", name));
    vol.children.push(text("capacity", &capacity.to_string()));
    vol.children.push(xmltree::XMLNode::Element(target));
    vol.children.push(xmltree::XMLNode::Element(store));
    super::domain::write(&vol)
}

/// Capacity in bytes of the origin's image (`virsh domblkinfo`).
async fn disk_capacity(
    virsh: &Virsh,
    origin: &str,
    backing: &str,
    scope: &Scope,
) -> Result<u64, VirtError> {
    let out = virsh
        .run(
            &["domblkinfo", "--domain", origin, "--device", backing],
            scope,
        )
        .await?;
    out.lines()
        .find_map(|l| {
            l.strip_prefix("Capacity:")
                .and_then(|v| v.trim().parse().ok())
        })
        .ok_or_else(|| {
            VirtError::Virsh(VirshError::Parse {
                command: format!("domblkinfo {origin} {backing}"),
                target: virsh.describe(),
                message: format!("no Capacity line in {out:?}"),
            })
        })
}

/// Whether the `passt` program is on the libvirt host (libvirt runs it for the passt
/// backend). Whether libvirt accepts the backend is learnt from its answer to the first
/// clone (see [`NetworkChoice::Auto`]).
async fn passt_installed(virsh: &Virsh, scope: &Scope) -> Result<bool, VirtError> {
    use crate::connection::{CommandSpec, ConnectionExt};
    match virsh
        .connection()
        .output(CommandSpec::new(["sh", "-c", "command -v passt"]), scope)
        .await
    {
        Ok(o) => Ok(o.status.success()),
        Err(ConnectionError::Cancelled) => Err(VirtError::Cancelled),
        Err(source) => Err(VirtError::Virsh(VirshError::Connection {
            target: virsh.describe(),
            source,
        })),
    }
}

/// A running transient clone with its SSH connection. Dropping it destroys the domain and
/// deletes its overlay (through the scope's reaper); [`destroy`](Self::destroy) does it now.
#[derive(Debug)]
pub struct TransientDomain {
    name: String,
    port: u16,
    volume: String,
    conn: SshConnection,
    guard: Option<CleanupGuard>,
}

impl TransientDomain {
    /// The domain's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The forwarded SSH port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The overlay volume's name.
    pub fn volume(&self) -> &str {
        &self.volume
    }

    /// The SSH connection to the guest.
    pub fn connection(&self) -> &SshConnection {
        &self.conn
    }

    /// The SSH connection and the guard that destroys the domain, deletes the overlay and
    /// frees the port (for a provisioner that hands the connection out and keeps the guard
    /// with it).
    pub fn into_parts(self) -> (SshConnection, Option<CleanupGuard>) {
        let TransientDomain { conn, guard, .. } = self;
        (conn, guard)
    }

    /// Disconnects, destroys the domain, deletes the overlay, frees the port.
    pub async fn destroy(mut self) -> Result<(), CleanupError> {
        crate::connection::Connection::disconnect(&self.conn).await;
        match self.guard.take() {
            Some(g) => g.release().await,
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failed(message: &str) -> VirshError {
        VirshError::Failed {
            command: "create /dev/stdin".into(),
            target: "local".into(),
            message: message.into(),
        }
    }

    /// The answers a volume deletion is retried on; "still being allocated" (a dropped
    /// creation libvirt had not finished) failed `tests/virt.rs`'s mid-boot drop once.
    #[test]
    fn busy_volumes_are_told_from_other_failures() {
        for busy in [
            "Failed to delete vol atex-cancel-e0eee6ef.qcow2: Requested operation is not valid: volume 'atex-cancel-e0eee6ef.qcow2' is still being allocated.",
            "Failed to delete vol x.qcow2: Requested operation is not valid: storage volume 'x.qcow2' is still in use by domain",
            "cannot delete volume x.qcow2: it has 1 asynchronous jobs running",
        ] {
            assert!(volume_busy(busy), "{busy}");
        }
        assert!(!volume_busy(
            "Failed to delete vol x.qcow2: cannot unlink file '/p/x.qcow2': Permission denied"
        ));
    }

    #[test]
    fn a_rejected_passt_backend_is_recognised() {
        // libvirt 9.0's answer to <backend type='passt'/>.
        assert!(passt_rejected(&failed(
            "Failed to create domain from /dev/stdin: XML error: Invalid value for attribute 'type' in element 'backend': 'passt'."
        )));
        assert!(passt_rejected(&failed(
            "internal error: Child process (passt --one-off) unexpected exit status 1"
        )));
        assert!(!passt_rejected(&failed(
            "internal error: process exited while connecting to monitor"
        )));
        assert!(!passt_rejected(&VirshError::Cancelled));
    }
}
