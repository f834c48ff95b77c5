//! [`ProcessControl`] of a remote command: waiting for its end, terminating its process
//! group (SIGTERM, the grace, SIGKILL) over another channel.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{oneshot, watch};
use tokio_util::sync::CancellationToken;

use super::channel::{ChannelError, signal_group};
use crate::connection::ssh::session::Session;
use crate::connection::{ConnectionError, ProcessControl};
use crate::guard::CleanupGuard;
use crate::process::ExitInfo;

/// How long to wait for a command to end after SIGKILL before giving up.
const AFTER_KILL_TIMEOUT: Duration = Duration::from_secs(10);

/// How a remote command ended, for the calls after the first that saw it.
#[derive(Debug)]
enum Done {
    Exited(ExitInfo),
    /// The connection was lost: later calls get the same error, sharing its reason.
    Lost {
        target: String,
        during: Option<String>,
        reason: Arc<dyn std::error::Error + Send + Sync>,
    },
    /// Another failure, returned by the first call.
    Failed,
}

/// [`ProcessControl`] of a remote command.
pub(super) struct SshControl {
    session: Arc<Session>,
    described: String,
    result: oneshot::Receiver<Result<ExitInfo, ConnectionError>>,
    /// The command's end, once known.
    done: Option<Done>,
    pgid: watch::Receiver<Option<i32>>,
    guard: Option<CleanupGuard>,
}

impl std::fmt::Debug for SshControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SshControl")
            .field("target", &self.session.target)
            .field("command", &self.described)
            .field("pgid", &*self.pgid.borrow())
            .field("done", &self.done)
            .finish()
    }
}

impl SshControl {
    /// The control of `described` on `session`: its outcome arrives on `result`, its
    /// process group id on `pgid`; `guard` kills the group should the process be dropped.
    pub(super) fn new(
        session: Arc<Session>,
        described: String,
        result: oneshot::Receiver<Result<ExitInfo, ConnectionError>>,
        pgid: watch::Receiver<Option<i32>>,
        guard: CleanupGuard,
    ) -> Self {
        Self {
            session,
            described,
            result,
            done: None,
            pgid,
            guard: Some(guard),
        }
    }

    /// The command's end again, for a call after the one that saw it.
    fn cached(&self) -> Option<Result<ExitInfo, ConnectionError>> {
        self.done.as_ref().map(|d| match d {
            Done::Exited(info) => Ok(*info),
            Done::Lost {
                target,
                during,
                reason,
            } => Err(ConnectionError::disconnected(
                target.clone(),
                during.clone(),
                reason.clone(),
            )),
            Done::Failed => Err(ConnectionError::disconnected(
                format!("ssh {}", self.session.target),
                Some(format!("running `{}`", self.described)),
                ChannelError::FailedBefore,
            )),
        })
    }
}

#[async_trait]
impl ProcessControl for SshControl {
    fn forget(&mut self) {
        if let Some(g) = self.guard.take() {
            g.disarm();
        }
    }

    async fn wait(&mut self) -> Result<ExitInfo, ConnectionError> {
        if let Some(r) = self.cached() {
            return r;
        }
        let res = match (&mut self.result).await {
            Ok(r) => r,
            Err(_) => Err(ConnectionError::disconnected(
                format!("ssh {}", self.session.target),
                Some(format!("running `{}`", self.described)),
                ChannelError::TaskEnded,
            )),
        };
        match res {
            Ok(info) => {
                self.done = Some(Done::Exited(info));
                if let Some(g) = self.guard.take() {
                    g.disarm();
                }
                Ok(info)
            }
            Err(ConnectionError::Cancelled) => Err(ConnectionError::Cancelled),
            Err(ConnectionError::Disconnected {
                target,
                during,
                reason,
            }) => {
                let reason: Arc<dyn std::error::Error + Send + Sync> = Arc::from(reason);
                self.done = Some(Done::Lost {
                    target: target.clone(),
                    during: during.clone(),
                    reason: reason.clone(),
                });
                Err(ConnectionError::disconnected(target, during, reason))
            }
            Err(e) => {
                self.done = Some(Done::Failed);
                Err(e)
            }
        }
    }

    async fn terminate(
        &mut self,
        grace: Duration,
        force: &CancellationToken,
    ) -> Result<ExitInfo, ConnectionError> {
        if let Some(r) = self.cached() {
            return r;
        }
        // The group id arrives with the first output; a command cancelled right after the
        // start may not have reported it yet.
        let mut pgid_rx = self.pgid.clone();
        let pgid = tokio::select! {
            r = pgid_rx.wait_for(Option::is_some) => r.ok().and_then(|p| *p),
            _ = tokio::time::sleep(grace) => None,
            _ = force.cancelled() => None,
        };
        let pgid = pgid.or(*self.pgid.borrow());
        let Some(pgid) = pgid else {
            tracing::warn!(command = %self.described, target_host = %self.session.target,
                "no remote process group known; closing the channel");
            return match tokio::time::timeout(AFTER_KILL_TIMEOUT, self.wait()).await {
                Ok(r) => r,
                Err(_) => Err(ConnectionError::Timeout {
                    what: format!(
                        "terminating `{}` on {}",
                        self.described, self.session.target
                    ),
                    after: AFTER_KILL_TIMEOUT,
                    last: None,
                }),
            };
        };
        if !force.is_cancelled() {
            if let Err(e) = signal_group(&self.session, pgid, "TERM").await {
                tracing::warn!(error = %crate::error::chain(&e), pgid, "sending SIGTERM to the remote group failed");
            }
            tokio::select! {
                r = self.wait() => if !matches!(r, Err(ConnectionError::Cancelled)) { return r },
                _ = tokio::time::sleep(grace) => {}
                _ = force.cancelled() => {}
            }
        }
        if let Err(e) = signal_group(&self.session, pgid, "KILL").await {
            tracing::warn!(error = %crate::error::chain(&e), pgid, "sending SIGKILL to the remote group failed");
        }
        match tokio::time::timeout(AFTER_KILL_TIMEOUT, self.wait()).await {
            Ok(r) => r,
            Err(_) => Err(ConnectionError::Timeout {
                what: format!("killing `{}` on {}", self.described, self.session.target),
                after: AFTER_KILL_TIMEOUT,
                last: None,
            }),
        }
    }
}
