//! [`Process`]: a command started by a [`Connection`](super::Connection), and
//! [`CommandOutput`], what a finished one printed.

use std::fmt;
use std::pin::Pin;
use std::time::Duration;

use async_trait::async_trait;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use super::error::ConnectionError;
use crate::process::{ExitInfo, ExitStatus};
use crate::scope::Scope;

/// A boxed async reader for a command's stdout or stderr.
pub type BoxReader = Pin<Box<dyn AsyncRead + Send>>;
/// A boxed async writer for a command's stdin.
pub type BoxWriter = Pin<Box<dyn AsyncWrite + Send>>;

/// Waiting for and stopping a running command; implemented by each connection type.
#[async_trait]
pub trait ProcessControl: Send + fmt::Debug {
    /// Waits for the command to end. Cancel-safe.
    async fn wait(&mut self) -> Result<ExitInfo, ConnectionError>;
    /// The caller knows the command is gone although no exit status arrived (its system
    /// rebooted): do not try to kill it when the handle is dropped. Default: nothing to do.
    fn forget(&mut self) {}

    /// Terminates the command's whole process tree: SIGTERM, then SIGKILL after `grace` or
    /// as soon as `force` is cancelled.
    async fn terminate(
        &mut self,
        grace: Duration,
        force: &CancellationToken,
    ) -> Result<ExitInfo, ConnectionError>;
}

/// A running command. Dropping it kills the command's process tree.
pub struct Process {
    /// The stdin pipe when [`Input::Piped`](super::Input::Piped) was asked for.
    pub stdin: Option<BoxWriter>,
    /// The stdout pipe when [`Output::Piped`](super::Output::Piped) was asked for.
    pub stdout: Option<BoxReader>,
    /// The stderr pipe when [`ErrOutput::Piped`](super::ErrOutput::Piped) was asked for.
    pub stderr: Option<BoxReader>,
    stdin_data: Option<Vec<u8>>,
    control: Box<dyn ProcessControl>,
    kill_grace: Duration,
}

impl fmt::Debug for Process {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Process")
            .field("stdin", &self.stdin.is_some())
            .field("stdout", &self.stdout.is_some())
            .field("stderr", &self.stderr.is_some())
            .field("control", &self.control)
            .finish()
    }
}

impl Process {
    /// Assembles a process from its parts; used by [`Connection`](super::Connection) implementations.
    /// `stdin_data` is written to `stdin` (which must then be `Some`) during [`wait`](Self::wait).
    pub fn new(
        stdin: Option<BoxWriter>,
        stdout: Option<BoxReader>,
        stderr: Option<BoxReader>,
        stdin_data: Option<Vec<u8>>,
        control: Box<dyn ProcessControl>,
        kill_grace: Duration,
    ) -> Self {
        Self {
            stdin,
            stdout,
            stderr,
            stdin_data,
            control,
            kill_grace,
        }
    }

    /// Waits for the command to end (writing [`Input::Bytes`](super::Input::Bytes) first).
    pub async fn wait(&mut self) -> Result<ExitInfo, ConnectionError> {
        if self.stdin_data.is_some() {
            let data = self.stdin_data.take();
            let stdin = self.stdin.take();
            let feed = async move {
                if let (Some(data), Some(mut stdin)) = (data, stdin) {
                    let _ = stdin.write_all(&data).await;
                    let _ = stdin.shutdown().await;
                }
            };
            let (_, res) = tokio::join!(feed, self.control.wait());
            return res;
        }
        self.control.wait().await
    }

    /// Waits for the command unless `scope` is cancelled first; then terminates it (SIGTERM,
    /// SIGKILL after the scope's kill grace or on forced cancellation). The flag tells whether
    /// cancellation ended it.
    pub async fn wait_or_terminate(
        &mut self,
        scope: &Scope,
    ) -> Result<(ExitInfo, bool), ConnectionError> {
        tokio::select! {
            res = self.wait() => res.map(|i| (i, false)),
            _ = scope.cancelled() => {
                let grace = self.kill_grace;
                self.control.terminate(grace, scope.force_token()).await.map(|i| (i, true))
            }
        }
    }

    /// Declares the command gone although no exit status arrived (its system rebooted), so
    /// that dropping the handle does not try to kill it on a system where it no longer runs.
    pub fn forget(&mut self) {
        self.control.forget();
    }

    /// Terminates the command now (SIGTERM, then SIGKILL after `grace` or on `force`).
    pub async fn terminate(
        &mut self,
        grace: Duration,
        force: &CancellationToken,
    ) -> Result<ExitInfo, ConnectionError> {
        self.control.terminate(grace, force).await
    }
}

/// Captured result of [`ConnectionExt::output`](super::ConnectionExt::output).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandOutput {
    /// How the command ended.
    pub status: ExitStatus,
    /// Everything it wrote to stdout.
    pub stdout: Vec<u8>,
    /// Everything it wrote to stderr.
    pub stderr: Vec<u8>,
}

impl CommandOutput {
    /// stdout as lossy UTF-8.
    pub fn stdout_lossy(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// stderr as lossy UTF-8.
    pub fn stderr_lossy(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}
