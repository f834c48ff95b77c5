//! [`PodmanProvisioner`]: one container per remote, from an image.

use std::fmt;
use std::sync::Arc;

use super::cli::{Podman, PodmanError};
use super::connection::PodmanConnection;
use super::{LABEL_ATEX, LABEL_RUN};
use crate::connection::Connection;
use crate::guard::CleanupGuard;
use crate::provisioner::{
    CreateContext, CreateError, Creator, Lease, LeasedRemote, Ledger, LedgerProvisioner,
    ProvisionError,
};

/// A container of a [`PodmanProvisioner`] (`remote.connection()` is its
/// [`PodmanConnection`]).
pub type PodmanRemote = LeasedRemote<PodmanConnection>;

/// Settings of a [`PodmanProvisioner`].
#[derive(Debug, Clone)]
pub struct PodmanConfig {
    /// The image (local: containers are run with `--pull=never`).
    pub image: String,
    /// Names this run in container names and the `atex.run` label (letters, digits, `-`,
    /// `_`; at most 40).
    pub run_id: String,
    /// At most this many containers at once.
    pub max_remotes: usize,
    /// Extra `podman run` arguments (`--cap-add`, `--device`, volumes, `--env`, …), before
    /// the image.
    pub run_args: Vec<String>,
    /// The container's command; `None`: `sleep infinity` (plain) or `/sbin/init`
    /// (systemd).
    pub command: Option<Vec<String>>,
    /// Boot systemd as init (`--systemd=always`); a remote is ready when systemd reports
    /// `running` or `degraded`, and a test may reboot it.
    pub systemd: bool,
    /// The podman program.
    pub podman: Podman,
    /// How long a container may take to run (and, with systemd, to boot), also after a
    /// reboot.
    pub boot_timeout: std::time::Duration,
}

impl PodmanConfig {
    /// Defaults for `image`: one container, plain, `sleep infinity`, a fresh run id.
    pub fn new(image: impl Into<String>) -> Self {
        Self {
            image: image.into(),
            run_id: super::exec::token()[..12].to_string(),
            max_remotes: 1,
            run_args: Vec::new(),
            command: None,
            systemd: false,
            podman: Podman::new(),
            boot_timeout: std::time::Duration::from_secs(120),
        }
    }

    /// The `podman run` arguments of the container `name` (without `podman`).
    pub fn run_argv(&self, name: &str) -> Vec<String> {
        let mut argv: Vec<String> = [
            "run",
            "--detach",
            "--quiet",
            "--pull=never",
            "--name",
            name,
            "--label",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        argv.push(format!("{LABEL_ATEX}=1"));
        argv.push("--label".into());
        argv.push(format!("{LABEL_RUN}={}", self.run_id));
        if self.systemd {
            argv.push("--systemd=always".into());
        } else {
            // catatonit as PID 1: reaps orphans, and `rm -f` needs no stop timeout.
            argv.push("--init".into());
        }
        argv.extend(self.run_args.iter().cloned());
        argv.push("--".into());
        argv.push(self.image.clone());
        match &self.command {
            Some(c) => argv.extend(c.iter().cloned()),
            None if self.systemd => argv.push("/sbin/init".into()),
            None => argv.extend(["sleep".to_string(), "infinity".to_string()]),
        }
        argv
    }
}

/// Invalid settings.
#[derive(Debug, thiserror::Error)]
#[error("invalid podman settings: {0}")]
pub struct ConfigError(String);

/// A container could not be started.
#[derive(Debug, thiserror::Error)]
#[error("cannot start a container of image {image}")]
pub struct StartError {
    /// The image.
    pub image: String,
    /// podman's failure (with its message).
    #[source]
    pub source: StartCause,
}

/// Why a container could not be started.
#[derive(Debug, thiserror::Error)]
pub enum StartCause {
    /// `podman run` failed.
    #[error(transparent)]
    Podman(#[from] PodmanError),
    /// It started but never became usable.
    #[error(transparent)]
    Connection(#[from] crate::connection::ConnectionError),
}

/// Whether `s` is safe in container names and labels.
pub(crate) fn valid_run_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 40
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Hands out one fresh container per remote, created in parallel (up to
/// [`max_remotes`](PodmanConfig::max_remotes) at once), each labelled `atex=1` and
/// `atex.run=RUN` and held by a cleanup guard: removed (`podman rm -f -t 0`, then any of
/// its processes left on this machine — conmon and `runc init` of a creation cancelled
/// mid-`podman run` — killed) on release,
/// on [`stop`](crate::provisioner::Provisioner::stop), when dropped, and after Ctrl-C
/// (the guard's cleanup runs in the scope tree's reaper). What a killed run left is found
/// by its label ([`cleanup`](super::cleanup)).
///
/// ```no_run
/// use atex::podman::{PodmanConfig, PodmanProvisioner};
/// use atex::provisioner::{Count, Provisioner};
/// use atex::scope::Scope;
///
/// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let mut config = PodmanConfig::new("localhost/my-image");
/// config.max_remotes = 4;
/// config.run_args = vec!["--cap-add=all".into(), "--device=/dev/fuse".into()];
/// let prov = PodmanProvisioner::new(config)?;
/// let scope = Scope::root("run");
/// prov.start(&scope).await?;
/// prov.provision(Count::N(4))?;
/// let remote = prov.get_remote().await?;
/// prov.stop().await?; // removes every container
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct PodmanProvisioner {
    config: Arc<PodmanConfig>,
    ledger: Ledger<PodmanConnection>,
}

impl fmt::Debug for PodmanProvisioner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PodmanProvisioner")
            .field("image", &self.config.image)
            .field("run", &self.config.run_id)
            .field("ledger", &self.ledger)
            .finish()
    }
}

impl PodmanProvisioner {
    /// A provisioner with these settings (checked here).
    pub fn new(config: PodmanConfig) -> Result<Self, ConfigError> {
        if !valid_run_id(&config.run_id) {
            return Err(ConfigError(format!(
                "run id {:?} must be 1-40 letters, digits, '-' or '_'",
                config.run_id
            )));
        }
        if config.image.is_empty() || config.image.starts_with('-') {
            return Err(ConfigError(format!(
                "invalid image name {:?}",
                config.image
            )));
        }
        if config.max_remotes == 0 {
            return Err(ConfigError("max_remotes must be at least 1".into()));
        }
        let config = Arc::new(config);
        let for_creations = config.clone();
        let creator = Creator::task(move |cx| create(for_creations.clone(), cx));
        let name = format!(
            "podman({}{})",
            config.image,
            if config.systemd { ", systemd" } else { "" }
        );
        Ok(Self {
            ledger: Ledger::new(name, Some(config.max_remotes), creator),
            config,
        })
    }

    /// The settings.
    pub fn config(&self) -> &PodmanConfig {
        &self.config
    }
}

#[async_trait::async_trait]
impl LedgerProvisioner for PodmanProvisioner {
    type Conn = PodmanConnection;

    fn ledger(&self) -> &Ledger<PodmanConnection> {
        &self.ledger
    }

    /// Checks that podman runs and the image exists, so that a missing image or podman
    /// fails the start (with podman's message) rather than every creation.
    async fn before_start(&self, scope: &crate::scope::Scope) -> Result<(), ProvisionError> {
        let image = &self.config.image;
        match self
            .config
            .podman
            .run(
                &["image", "inspect", "--format", "{{.Id}}", "--", image],
                scope,
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(PodmanError::Cancelled { .. }) => Err(ProvisionError::Cancelled),
            Err(e) => Err(ProvisionError::failed(
                self.description(),
                StartError {
                    image: image.clone(),
                    source: e.into(),
                },
            )),
        }
    }
}

/// A short random suffix for container names.
fn suffix() -> String {
    super::exec::token()[..10].to_string()
}

/// Makes one container: the guard first (it knows the name before `podman run` returns),
/// then `podman run`, then the connection (waiting for systemd when asked).
async fn create(
    config: Arc<PodmanConfig>,
    cx: CreateContext,
) -> Result<Lease<PodmanConnection>, CreateError> {
    let scope = cx.scope();
    let name = format!("atex-{}-{}", config.run_id, suffix());
    let guard = container_guard(&config.podman, scope, &name);
    let fail = |cause: StartCause| {
        CreateError::Failed(ProvisionError::failed(
            format!("podman({})", config.image),
            StartError {
                image: config.image.clone(),
                source: cause,
            },
        ))
    };
    let argv = config.run_argv(&name);
    let args: Vec<&str> = argv.iter().map(String::as_str).collect();
    let started = std::time::Instant::now();
    match config.podman.run(&args, scope).await {
        Ok(_) => {}
        // Cancelled by `clear` or `stop`: nothing to report (the guard removes the
        // container). A `podman run` killed by the cancellation may also fail in its own
        // words before the cancellation is noticed: still a cancellation.
        Err(PodmanError::Cancelled { .. }) => return Err(CreateError::Retry),
        Err(_) if scope.is_cancelled() => return Err(CreateError::Retry),
        Err(e) => return Err(fail(e.into())),
    }
    let conn = PodmanConnection::unconnected(config.podman.clone(), &name, scope)
        .map_err(|e| fail(e.into()))?
        .systemd(config.systemd)
        .reconnect_timeout(config.boot_timeout);
    match conn.bring_up(scope).await {
        Ok(()) => {}
        Err(crate::connection::ConnectionError::Cancelled) => return Err(CreateError::Retry),
        Err(_) if scope.is_cancelled() => return Err(CreateError::Retry),
        Err(e) => return Err(fail(e.into())),
    }
    tracing::info!(container = %name, image = %config.image, elapsed = ?started.elapsed(),
        "container ready");
    let _ = conn.describe();
    Ok(Lease::new(conn).with_guard(guard))
}

/// The guard that removes the container `name`.
pub(crate) fn container_guard(
    podman: &Podman,
    scope: &crate::scope::Scope,
    name: &str,
) -> CleanupGuard {
    let podman = podman.clone();
    let cleanup_scope = scope.shielded("podman-rm");
    let what = format!("podman rm -f -t 0 {name}");
    let name = name.to_string();
    CleanupGuard::new(scope, what, move || async move {
        let removed = podman.remove(&[&name], &cleanup_scope).await;
        // A cancelled `podman run` may have left conmon and `runc init` running with no
        // container in podman's database: nothing of the container may survive it.
        super::procs::kill_leftover_processes(&[&name]).await;
        match removed {
            // Those processes may also have kept the container's mounts busy (`podman rm`:
            // "unlinkat …/userdata/shm: device or resource busy"): gone now, try again.
            Err(e) => {
                tracing::debug!(container = %name, error = %crate::error::chain(&e),
                    "removal failed while processes of the container were left; retrying");
                podman
                    .remove(&[&name], &cleanup_scope)
                    .await
                    .map_err(Into::into)
            }
            Ok(()) => Ok(()),
        }
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn run_arguments() {
        let mut c = PodmanConfig::new("localhost/img");
        c.run_id = "r1".into();
        c.run_args = vec!["--cap-add=all".into()];
        let argv = c.run_argv("atex-r1-x");
        let line = argv.join(" ");
        assert!(line.starts_with("run --detach --quiet --pull=never --name atex-r1-x --label atex=1 --label atex.run=r1 --init --cap-add=all -- localhost/img sleep infinity"), "{line}");
        c.systemd = true;
        let line = c.run_argv("n").join(" ");
        assert!(
            line.contains("--systemd=always") && line.ends_with("localhost/img /sbin/init"),
            "{line}"
        );
        c.run_id = "bad id".into();
        assert!(PodmanProvisioner::new(c.clone()).is_err());
        c.run_id = "ok".into();
        c.max_remotes = 0;
        assert!(PodmanProvisioner::new(c).is_err());
    }
}
