//! [`SshConnection`]: one system over SSH, its session re-established on use.

use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::forward::{self, Forward, Tunnels};
use super::session::Session;
use super::{SshConfig, SshError, exec, transfer};
use crate::connection::{CommandSpec, Connection, ConnectionError, Process};
use crate::scope::Scope;

/// A connection to one system over SSH. Cheap to clone: clones share the session.
#[derive(Clone)]
pub struct SshConnection {
    inner: Arc<Inner>,
}

struct Inner {
    config: SshConfig,
    describe: String,
    session: tokio::sync::Mutex<Option<Arc<Session>>>,
}

impl fmt::Debug for SshConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SshConnection")
            .field("destination", &self.inner.describe)
            .finish()
    }
}

fn connect_error(target: &str, e: SshError) -> ConnectionError {
    ConnectionError::Connect {
        target: target.to_string(),
        transient: e.is_transient(),
        source: Box::new(e),
    }
}

impl SshConnection {
    /// A connection that connects on first use.
    pub fn new(config: SshConfig) -> Self {
        let describe = format!("ssh {}", config.destination());
        Self {
            inner: Arc::new(Inner {
                config,
                describe,
                session: tokio::sync::Mutex::new(None),
            }),
        }
    }

    /// Connects and authenticates now (within [`SshConfig::connect_timeout`]).
    pub async fn connect(config: SshConfig) -> Result<Self, ConnectionError> {
        let conn = Self::new(config);
        conn.session().await?;
        Ok(conn)
    }

    /// The settings.
    pub fn config(&self) -> &SshConfig {
        &self.inner.config
    }

    /// Whether an established session is up right now.
    pub async fn is_connected(&self) -> bool {
        self.inner
            .session
            .lock()
            .await
            .as_ref()
            .is_some_and(|s| !s.is_closed())
    }

    /// The current session; when there is none (or it was lost), one connection attempt.
    async fn session(&self) -> Result<Arc<Session>, ConnectionError> {
        let mut slot = self.inner.session.lock().await;
        if let Some(s) = slot.as_ref() {
            if !s.is_closed() {
                return Ok(s.clone());
            }
            tracing::info!(target_host = %self.inner.describe, reason = %crate::error::chain(&*s.end_reason()),
                "SSH session lost; connecting again");
        }
        *slot = None;
        let s = Session::establish(&self.inner.config)
            .await
            .map_err(|e| connect_error(&self.inner.describe, e))?;
        *slot = Some(s.clone());
        Ok(s)
    }

    /// Forwards a local port to `remote_host:remote_port` as seen from the system (like
    /// `ssh -L`). The listener binds `127.0.0.1` on a free port and runs as a task in
    /// `scope`; it stops when the scope is cancelled or the returned [`Forward`] is closed
    /// or dropped.
    pub async fn forward(
        &self,
        remote_host: &str,
        remote_port: u16,
        scope: &Scope,
    ) -> Result<Forward, ConnectionError> {
        forward::start(self.clone(), remote_host.to_string(), remote_port, scope).await
    }
}

impl Tunnels for SshConnection {
    fn describe(&self) -> String {
        self.inner.describe.clone()
    }

    /// Opens a direct-tcpip channel on the current session (connecting again when it was
    /// lost).
    async fn open_direct_tcpip(
        &self,
        host: &str,
        port: u16,
        origin: SocketAddr,
    ) -> Result<russh::Channel<russh::client::Msg>, ConnectionError> {
        let session = self.session().await?;
        session
            .handle
            .channel_open_direct_tcpip(
                host.to_string(),
                u32::from(port),
                origin.ip().to_string(),
                u32::from(origin.port()),
            )
            .await
            .map_err(|e| ConnectionError::Io {
                context: format!("{}: opening a tunnel to {host}:{port}", self.inner.describe),
                source: std::io::Error::other(e),
            })
    }
}

#[async_trait]
impl Connection for SshConnection {
    fn describe(&self) -> String {
        self.inner.describe.clone()
    }

    async fn spawn(&self, cmd: CommandSpec, scope: &Scope) -> Result<Process, ConnectionError> {
        let session = match scope.run(self.session()).await {
            Some(s) => s?,
            None => return Err(ConnectionError::Cancelled),
        };
        exec::spawn(session, cmd, scope).await
    }

    async fn upload(&self, local: &Path, remote: &str) -> Result<(), ConnectionError> {
        let session = self.session().await?;
        transfer::upload(&session, local, remote).await
    }

    async fn download(&self, remote: &str, local: &Path) -> Result<(), ConnectionError> {
        let session = self.session().await?;
        transfer::download(&session, remote, local).await
    }

    /// Drops the current session (it may be a zombie after a reboot) and connects again,
    /// retrying transient failures with a growing pause until
    /// [`SshConfig::reconnect_timeout`] passes or `scope` is cancelled. A refused host key
    /// or failed authentication ends it at once.
    async fn reconnect(&self, scope: &Scope) -> Result<(), ConnectionError> {
        let cfg = &self.inner.config;
        let mut slot = self.inner.session.lock().await;
        if let Some(old) = slot.take() {
            old.close().await;
        }
        let deadline = tokio::time::Instant::now() + cfg.reconnect_timeout;
        let mut pause = Duration::from_millis(100);
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
            let mut try_cfg = cfg.clone();
            try_cfg.connect_timeout = cfg
                .connect_timeout
                .min(remaining.max(Duration::from_millis(100)));
            let err = match scope.run(Session::establish(&try_cfg)).await {
                None => return Err(ConnectionError::Cancelled),
                Some(Ok(s)) => {
                    tracing::info!(target_host = %self.inner.describe, attempt, "reconnected");
                    *slot = Some(s);
                    return Ok(());
                }
                Some(Err(e)) => e,
            };
            if !err.is_transient() {
                return Err(connect_error(&self.inner.describe, err));
            }
            tracing::debug!(target_host = %self.inner.describe, attempt, error = %crate::error::chain(&err), "reconnect attempt failed");
            let now = tokio::time::Instant::now();
            if now + pause >= deadline {
                return Err(ConnectionError::Timeout {
                    what: format!("reconnecting to {}", self.inner.describe),
                    after: cfg.reconnect_timeout,
                    last: Some(Box::new(err)),
                });
            }
            if scope.run(tokio::time::sleep(pause)).await.is_none() {
                return Err(ConnectionError::Cancelled);
            }
            pause = (pause * 2).min(Duration::from_secs(2));
        }
    }

    async fn disconnect(&self) {
        let old = self.inner.session.lock().await.take();
        if let Some(old) = old {
            old.close().await;
        }
    }
}
