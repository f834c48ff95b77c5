//! [`LocalProvisioner`]: remotes that are the local machine, each with a scratch directory.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};

use async_trait::async_trait;
use tokio::sync::Notify;

use super::{Count, ProvisionError, Provisioner, Remote};
use crate::connection::{CommandSpec, Connection, ConnectionError, LocalConnection, Process};
use crate::guard::CleanupGuard;
use crate::scope::Scope;

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
    shared: Arc<Shared>,
}

/// State shared with the remotes, so that a release frees a slot and wakes waiters.
#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    wake: Notify,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn released(&self) {
        {
            let mut st = self.lock();
            st.live = st.live.saturating_sub(1);
        }
        self.wake.notify_waiters();
    }
}

#[derive(Default)]
struct State {
    requested: usize,
    unlimited: bool,
    started: Option<Scope>,
    stopped: bool,
    live: usize,
    remotes: Vec<Weak<LocalRemote>>,
}

impl fmt::Debug for LocalProvisioner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalProvisioner")
            .field("base", &self.base)
            .field("max_remotes", &self.max_remotes)
            .finish()
    }
}

impl Default for LocalProvisioner {
    fn default() -> Self {
        Self::new()
    }
}

impl LocalProvisioner {
    /// Scratch directories go under the system temporary directory.
    pub fn new() -> Self {
        Self {
            base: None,
            max_remotes: None,
            shared: Arc::new(Shared::default()),
        }
    }

    /// At most `max` remotes are handed out and not yet released at any time (at least 1);
    /// further requests wait until a remote is released.
    pub fn with_max_remotes(mut self, max: usize) -> Self {
        self.max_remotes = Some(max.max(1));
        self
    }

    /// Scratch directories go under `base` (created when missing).
    pub fn with_base_dir(base: impl Into<PathBuf>) -> Self {
        Self {
            base: Some(base.into()),
            ..Self::new()
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.shared.lock()
    }

    /// Takes one request and creates a remote, or says why not.
    fn take_one(&self) -> Result<Option<Arc<dyn Remote>>, ProvisionError> {
        let mut st = self.lock();
        if st.stopped {
            return Err(ProvisionError::Stopped(self.describe()));
        }
        let Some(scope) = st.started.clone() else {
            return Err(ProvisionError::Stopped(self.describe()));
        };
        if !st.unlimited && st.requested == 0 {
            return Ok(None);
        }
        if self.max_remotes.is_some_and(|max| st.live >= max) {
            return Ok(None);
        }
        let owner = Arc::downgrade(&self.shared);
        let remote = LocalRemote::create(self.base.as_deref(), &scope, owner).map_err(|e| {
            ProvisionError::failed(
                self.describe(),
                crate::error::Context::new("creating a scratch directory", e),
            )
        })?;
        if !st.unlimited {
            st.requested -= 1;
        }
        st.live += 1;
        st.remotes.retain(|r| r.strong_count() > 0);
        st.remotes.push(Arc::downgrade(&remote));
        Ok(Some(remote))
    }
}

#[async_trait]
impl Provisioner for LocalProvisioner {
    fn describe(&self) -> String {
        "local".into()
    }

    async fn start(&self, scope: &Scope) -> Result<(), ProvisionError> {
        if let Some(base) = &self.base {
            tokio::fs::create_dir_all(base).await.map_err(|e| {
                ProvisionError::failed(
                    self.describe(),
                    crate::error::Context::new(format!("creating {}", base.display()), e),
                )
            })?;
        }
        let mut st = self.lock();
        st.started = Some(scope.child("local-provisioner"));
        st.stopped = false;
        Ok(())
    }

    fn provision(&self, count: Count) -> Result<(), ProvisionError> {
        {
            let mut st = self.lock();
            if st.stopped {
                return Err(ProvisionError::Stopped(self.describe()));
            }
            match count {
                Count::N(n) => st.requested = st.requested.saturating_add(n),
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
        let mut st = self.lock();
        st.requested = 0;
        st.unlimited = false;
    }

    async fn stop(&self) -> Result<(), ProvisionError> {
        let remotes: Vec<Arc<LocalRemote>> = {
            let mut st = self.lock();
            st.stopped = true;
            st.requested = 0;
            st.unlimited = false;
            st.started = None;
            st.remotes.drain(..).filter_map(|w| w.upgrade()).collect()
        };
        self.shared.wake.notify_waiters();
        let mut first_error = None;
        for remote in remotes {
            if let Err(e) = remote.release().await {
                tracing::warn!(remote = %remote.describe(), error = %crate::error::chain(&e), "release failed");
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

/// A local "system": a [`LocalConnection`] working in a private scratch directory that is
/// removed on [`release`](Remote::release) (or by the reaper if the remote is dropped).
pub struct LocalRemote {
    conn: LocalConnection,
    owner: Weak<Shared>,
    dir: PathBuf,
    released: AtomicBool,
    guard: Mutex<Option<CleanupGuard>>,
}

impl fmt::Debug for LocalRemote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalRemote")
            .field("dir", &self.dir)
            .finish()
    }
}

impl LocalRemote {
    fn create(
        base: Option<&Path>,
        scope: &Scope,
        owner: Weak<Shared>,
    ) -> std::io::Result<Arc<Self>> {
        let mut builder = tempfile::Builder::new();
        builder.prefix("atex-local-");
        let dir = match base {
            Some(base) => builder.tempdir_in(base)?,
            None => builder.tempdir()?,
        }
        .keep();
        let path = dir.clone();
        let guard = CleanupGuard::new(
            scope,
            format!("remove local scratch directory {}", dir.display()),
            move || async move {
                match tokio::fs::remove_dir_all(&path).await {
                    Ok(()) => Ok(()),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                    Err(e) => Err(e.into()),
                }
            },
        );
        Ok(Arc::new(Self {
            conn: LocalConnection::with_cwd(&dir),
            owner,
            dir,
            released: AtomicBool::new(false),
            guard: Mutex::new(Some(guard)),
        }))
    }

    /// The remote's scratch directory (also its default working directory).
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

#[async_trait]
impl Connection for LocalRemote {
    fn describe(&self) -> String {
        self.conn.describe()
    }

    async fn spawn(&self, cmd: CommandSpec, scope: &Scope) -> Result<Process, ConnectionError> {
        if self.is_released() {
            return Err(ConnectionError::released(self.describe()));
        }
        self.conn.spawn(cmd, scope).await
    }

    async fn upload(&self, local: &Path, remote: &str) -> Result<(), ConnectionError> {
        if self.is_released() {
            return Err(ConnectionError::released(self.describe()));
        }
        self.conn.upload(local, remote).await
    }

    async fn download(&self, remote: &str, local: &Path) -> Result<(), ConnectionError> {
        if self.is_released() {
            return Err(ConnectionError::released(self.describe()));
        }
        self.conn.download(remote, local).await
    }
}

#[async_trait]
impl Remote for LocalRemote {
    async fn release(&self) -> Result<(), ProvisionError> {
        if self.released.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        if let Some(owner) = self.owner.upgrade() {
            owner.released();
        }
        let guard = self.guard.lock().ok().and_then(|mut g| g.take());
        if let Some(guard) = guard {
            guard
                .release()
                .await
                .map_err(|e| ProvisionError::release(self.describe(), e))?;
        }
        Ok(())
    }

    fn is_released(&self) -> bool {
        self.released.load(Ordering::SeqCst)
    }
}
