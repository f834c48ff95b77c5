//! [`LocalProvisioner`]: remotes that are the local machine, each with a scratch directory.

use std::fmt;
use std::path::{Path, PathBuf};

use async_trait::async_trait;

use super::{CreateError, Creator, Lease, LeasedRemote, Ledger, LedgerProvisioner, ProvisionError};
use crate::connection::LocalConnection;
use crate::error::Context;
use crate::guard::CleanupGuard;
use crate::scope::Scope;

/// A remote of a [`LocalProvisioner`]: a [`LocalConnection`] whose default directory
/// (`remote.connection().cwd()`) is a private scratch directory, removed on release (or by
/// the reaper if the remote is dropped).
pub type LocalRemote = LeasedRemote<LocalConnection>;

/// Hands out [`LocalRemote`]s: local connections, each working in its own scratch
/// directory (so parallel local remotes never collide), removed on release.
///
/// ```
/// use atex::provisioner::{Count, LocalProvisioner, Provisioner, Remote};
/// use atex::connection::{CommandSpec, ConnectionExt};
/// use atex::scope::Scope;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let scope = Scope::root("doc");
/// let prov = LocalProvisioner::new();
/// prov.start(&scope).await?;
/// prov.provision(Count::N(1))?;
/// let remote = prov.get_remote().await?;
/// let out = remote.output(CommandSpec::new(["pwd"]), &scope).await?;
/// assert!(out.stdout_lossy().contains("atex-local-"));
/// prov.stop().await?;
/// assert!(remote.is_released());
/// # Ok(()) }
/// ```
pub struct LocalProvisioner {
    base: Option<PathBuf>,
    max_remotes: Option<usize>,
    ledger: Ledger<LocalConnection>,
}

impl fmt::Debug for LocalProvisioner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalProvisioner")
            .field("base", &self.base)
            .field("max_remotes", &self.max_remotes)
            .field("ledger", &self.ledger)
            .finish()
    }
}

impl Default for LocalProvisioner {
    fn default() -> Self {
        Self::new()
    }
}

/// How many scratch directories are removed at once, process-wide.
static SCRATCH_REMOVALS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(4);

/// Makes one scratch directory and the lease over it.
fn create(base: Option<&Path>, scope: &Scope) -> Result<Lease<LocalConnection>, ProvisionError> {
    let mut builder = tempfile::Builder::new();
    builder.prefix("atex-local-");
    let dir = match base {
        Some(base) => builder.tempdir_in(base),
        None => builder.tempdir(),
    }
    .map_err(|e| ProvisionError::failed("local", Context::new("creating a scratch directory", e)))?
    .keep();
    let path = dir.clone();
    let guard = CleanupGuard::new(
        scope,
        format!("remove local scratch directory {}", dir.display()),
        move || async move {
            // Each removal takes a blocking-pool thread: without a bound, releasing a
            // thousand remotes at once starts hundreds of threads.
            let _permit = SCRATCH_REMOVALS.acquire().await;
            match tokio::fs::remove_dir_all(&path).await {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(e.into()),
            }
        },
    );
    Ok(Lease::new(LocalConnection::with_cwd(dir)).with_guard(guard))
}

impl LocalProvisioner {
    /// Scratch directories go under the system temporary directory.
    pub fn new() -> Self {
        Self::build(None, None)
    }

    /// Scratch directories go under `base` (created when missing).
    pub fn with_base_dir(base: impl Into<PathBuf>) -> Self {
        Self::build(Some(base.into()), None)
    }

    /// At most `max` remotes exist at any time (at least 1); further requests wait until
    /// a remote is released. Call before [`start`](super::Provisioner::start).
    pub fn with_max_remotes(self, max: usize) -> Self {
        Self::build(self.base, Some(max.max(1)))
    }

    fn build(base: Option<PathBuf>, max_remotes: Option<usize>) -> Self {
        let under = base.clone();
        let creator = Creator::immediate(move |cx| {
            create(under.as_deref(), cx.scope()).map_err(CreateError::Failed)
        });
        Self {
            base,
            max_remotes,
            ledger: Ledger::new("local", max_remotes, creator),
        }
    }
}

#[async_trait]
impl LedgerProvisioner for LocalProvisioner {
    type Conn = LocalConnection;

    fn ledger(&self) -> &Ledger<LocalConnection> {
        &self.ledger
    }

    async fn before_start(&self, _scope: &Scope) -> Result<(), ProvisionError> {
        if let Some(base) = &self.base {
            tokio::fs::create_dir_all(base).await.map_err(|e| {
                ProvisionError::failed(
                    self.description(),
                    Context::new(format!("creating {}", base.display()), e),
                )
            })?;
        }
        Ok(())
    }
}
