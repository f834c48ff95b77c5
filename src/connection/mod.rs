//! Connections: run commands on one system and move files to and from it.
//!
//! A [`Connection`] runs an argv (never a shell line: the arguments arrive as exactly those
//! arguments) with environment, working directory and stdin of the caller's choice, streams
//! stdout and stderr or sends them to a file, reports the exit status or signal, and copies
//! directory trees with modes and symlinks kept. No pseudo-terminal is ever allocated: the
//! FMF test-control channel depends on a clean stdout.
//!
//! Cancellation kills what runs: [`Process::wait_or_terminate`] races the scope's tokens, and
//! dropping a [`Process`] kills its process tree.
//!
//! ```
//! use atex::connection::{CommandSpec, Connection, ConnectionExt, LocalConnection};
//! use atex::scope::Scope;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let scope = Scope::root("doc");
//! let conn = LocalConnection::new();
//! let out = conn
//!     .output(CommandSpec::new(["sh", "-c", "echo \"$GREETING\""]).env("GREETING", "hi"), &scope)
//!     .await?;
//! assert_eq!(out.stdout, b"hi\n");
//! assert!(out.status.success());
//! # Ok(()) }
//! ```

mod local;
#[cfg(feature = "ssh")]
pub mod ssh;
/// The tar format for connections that copy trees through a remote `tar` (SSH without SFTP).
#[cfg(feature = "ssh")]
mod tar;

pub use local::LocalConnection;
#[cfg(feature = "ssh")]
pub use ssh::SshConnection;

use std::fmt;
use std::path::Path;
use std::pin::Pin;
use std::time::Duration;

use async_trait::async_trait;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use crate::process::{ExitInfo, ExitStatus};
use crate::scope::Scope;

/// Errors of connections.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectionError {
    /// The command could not be started.
    #[error("cannot start {command} on {target}")]
    Spawn {
        /// The command, shell-quoted for display.
        command: String,
        /// The connection's description.
        target: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// An I/O error while talking to a running command or moving files.
    #[error("{context}")]
    Io {
        /// What was being done.
        context: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Copying files failed.
    #[error("copying {from} to {to} failed: {message}")]
    Transfer {
        /// Source.
        from: String,
        /// Destination.
        to: String,
        /// What went wrong.
        message: String,
    },
    /// A connection could not be established (refused host key, failed authentication,
    /// unreachable host, …).
    #[error("{source}")]
    Connect {
        /// The connection's description.
        target: String,
        /// Whether trying again later may help (a network problem rather than a refused
        /// host key or failed authentication).
        transient: bool,
        /// The cause.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The connection is down (not connected yet, lost, or the system is rebooting).
    #[error("{target}: connection lost: {message}")]
    Disconnected {
        /// The connection's description.
        target: String,
        /// Details.
        message: String,
    },
    /// An operation did not finish in time.
    #[error("{what} timed out after {after:?}")]
    Timeout {
        /// What timed out.
        what: String,
        /// The time limit.
        after: Duration,
    },
    /// The operation was cancelled.
    #[error("cancelled")]
    Cancelled,
    /// The operation is not supported by this connection.
    #[error("{operation} is not supported by {target}")]
    NotSupported {
        /// The operation.
        operation: &'static str,
        /// The connection's description.
        target: String,
    },
}

impl ConnectionError {
    /// The error of a command on a remote that was already released.
    pub fn released(target: impl Into<String>) -> Self {
        ConnectionError::Disconnected {
            target: target.into(),
            message: "the remote was released".into(),
        }
    }

    /// Whether this error means the connection (not the command) failed, so that a
    /// reconnect may help.
    pub fn is_disconnect(&self) -> bool {
        matches!(
            self,
            ConnectionError::Disconnected { .. }
                | ConnectionError::Connect {
                    transient: true,
                    ..
                }
        )
    }
}

/// Where a command's stdin comes from.
#[derive(Debug, Default)]
pub enum Input {
    /// `/dev/null`.
    #[default]
    Null,
    /// A pipe, available as [`Process::stdin`].
    Piped,
    /// These bytes, then end-of-file. Written while [`Process::wait`] runs.
    Bytes(Vec<u8>),
}

/// Where a command's stdout goes.
#[derive(Debug, Default)]
pub enum Output {
    /// Discarded.
    Null,
    /// A pipe, available as [`Process::stdout`].
    #[default]
    Piped,
    /// Appended to this open file.
    File(std::fs::File),
}

/// Where a command's stderr goes.
#[derive(Debug, Default)]
pub enum ErrOutput {
    /// Discarded.
    Null,
    /// A pipe, available as [`Process::stderr`].
    #[default]
    Piped,
    /// Appended to this open file.
    File(std::fs::File),
    /// Interleaved into stdout (same pipe or file).
    ToStdout,
}

/// A command to run on a connection: argv, environment, working directory and stdio.
#[derive(Debug, Default)]
pub struct CommandSpec {
    /// Program and arguments; must not be empty.
    pub argv: Vec<String>,
    /// Environment variables added to (or overriding) the connection's environment.
    pub env: Vec<(String, String)>,
    /// Working directory on the system; relative paths are relative to the connection's
    /// default directory.
    pub cwd: Option<String>,
    /// stdin.
    pub stdin: Input,
    /// stdout.
    pub stdout: Output,
    /// stderr.
    pub stderr: ErrOutput,
}

impl CommandSpec {
    /// A command with stdin from `/dev/null` and stdout/stderr piped.
    pub fn new<I, S>(argv: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            argv: argv.into_iter().map(Into::into).collect(),
            ..Self::default()
        }
    }

    /// Adds one environment variable.
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Adds several environment variables.
    pub fn envs<I, K, V>(mut self, vars: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        self.env
            .extend(vars.into_iter().map(|(k, v)| (k.into(), v.into())));
        self
    }

    /// Sets the working directory.
    pub fn cwd(mut self, cwd: impl Into<String>) -> Self {
        self.cwd = Some(cwd.into());
        self
    }

    /// Sets stdin.
    pub fn stdin(mut self, stdin: Input) -> Self {
        self.stdin = stdin;
        self
    }

    /// Sets stdout.
    pub fn stdout(mut self, stdout: Output) -> Self {
        self.stdout = stdout;
        self
    }

    /// Sets stderr.
    pub fn stderr(mut self, stderr: ErrOutput) -> Self {
        self.stderr = stderr;
        self
    }

    /// The argv quoted for a POSIX shell, for messages and for transports that carry one
    /// command line (SSH).
    pub fn display(&self) -> String {
        self.argv
            .iter()
            .map(|a| shell_quote(a))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// Quotes `s` for a POSIX shell (single quotes unless only safe characters are used).
///
/// ```
/// assert_eq!(atex::connection::shell_quote("abc-1.txt"), "abc-1.txt");
/// assert_eq!(atex::connection::shell_quote("it's"), "'it'\\''s'");
/// assert_eq!(atex::connection::shell_quote(""), "''");
/// ```
pub fn shell_quote(s: &str) -> String {
    let safe = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"@%+=:,./-_".contains(&b));
    if safe {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

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
    /// The stdin pipe when [`Input::Piped`] was asked for.
    pub stdin: Option<BoxWriter>,
    /// The stdout pipe when [`Output::Piped`] was asked for.
    pub stdout: Option<BoxReader>,
    /// The stderr pipe when [`ErrOutput::Piped`] was asked for.
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
    /// Assembles a process from its parts; used by [`Connection`] implementations.
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

    /// Waits for the command to end (writing [`Input::Bytes`] first).
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

/// Captured result of [`ConnectionExt::output`].
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

/// A channel to one system that can run commands and copy files.
///
/// Implementations: [`LocalConnection`]; SSH and Podman connections behind their features.
#[async_trait]
pub trait Connection: Send + Sync + fmt::Debug {
    /// A short human-readable description (`local`, `ssh root@host:22`, …).
    fn describe(&self) -> String;

    /// Starts `cmd`. The returned [`Process`] must be waited for (or dropped, which kills it).
    async fn spawn(&self, cmd: CommandSpec, scope: &Scope) -> Result<Process, ConnectionError>;

    /// Copies a local file or directory tree to `remote` on the system. A directory's
    /// contents are merged into the remote directory (created when missing); modes and
    /// symlinks are kept.
    async fn upload(&self, local: &Path, remote: &str) -> Result<(), ConnectionError>;

    /// Copies a remote file or directory tree to `local`, like [`upload`](Self::upload) in
    /// the other direction.
    async fn download(&self, remote: &str, local: &Path) -> Result<(), ConnectionError>;

    /// Re-establishes the connection after the system went away (a reboot), waiting at
    /// most until the scope is cancelled. Connections without state succeed at once.
    async fn reconnect(&self, scope: &Scope) -> Result<(), ConnectionError> {
        let _ = scope;
        Ok(())
    }

    /// Tears down persistent state (idempotent). Later calls may reconnect.
    async fn disconnect(&self) {}
}

/// Conveniences over any [`Connection`].
#[async_trait]
pub trait ConnectionExt: Connection {
    /// Runs `cmd` to completion, capturing stdout and stderr (both forced to pipes).
    /// Cancelling the scope terminates the command and returns [`ConnectionError::Cancelled`].
    async fn output(
        &self,
        cmd: CommandSpec,
        scope: &Scope,
    ) -> Result<CommandOutput, ConnectionError> {
        let mut cmd = cmd;
        cmd.stdout = Output::Piped;
        if !matches!(cmd.stderr, ErrOutput::ToStdout) {
            cmd.stderr = ErrOutput::Piped;
        }
        let described = cmd.display();
        let mut proc = self.spawn(cmd, scope).await?;
        let mut stdout = proc.stdout.take();
        let mut stderr = proc.stderr.take();
        let read_out = async {
            let mut buf = Vec::new();
            if let Some(r) = stdout.as_mut() {
                r.read_to_end(&mut buf).await?;
            }
            Ok::<_, std::io::Error>(buf)
        };
        let read_err = async {
            let mut buf = Vec::new();
            if let Some(r) = stderr.as_mut() {
                r.read_to_end(&mut buf).await?;
            }
            Ok::<_, std::io::Error>(buf)
        };
        let io_err = |source| ConnectionError::Io {
            context: format!("reading the output of {described}"),
            source,
        };
        let all = async {
            let (out, err, status) = tokio::join!(read_out, read_err, proc.wait());
            Ok::<_, ConnectionError>((out.map_err(io_err)?, err.map_err(io_err)?, status?))
        };
        let (stdout, stderr, info) = match scope.run(all).await {
            Some(res) => res?,
            None => {
                let grace = scope.kill_grace();
                let _ = proc.terminate(grace, scope.force_token()).await;
                return Err(ConnectionError::Cancelled);
            }
        };
        Ok(CommandOutput {
            status: info.status,
            stdout,
            stderr,
        })
    }

    /// Runs `cmd` to completion with its output captured and fails unless it exits with 0.
    async fn check(&self, cmd: CommandSpec, scope: &Scope) -> Result<CommandOutput, CommandFailed> {
        let described = cmd.display();
        let out = self.output(cmd, scope).await?;
        if out.status.success() {
            Ok(out)
        } else {
            Err(CommandFailed::Status {
                command: described,
                target: self.describe(),
                status: out.status,
                stderr: out.stderr_lossy(),
            })
        }
    }
}

impl<T: Connection + ?Sized> ConnectionExt for T {}

/// Error of [`ConnectionExt::check`].
#[derive(Debug, thiserror::Error)]
pub enum CommandFailed {
    /// The connection failed.
    #[error(transparent)]
    Connection(#[from] ConnectionError),
    /// The command ran but did not exit with 0.
    #[error("{command} on {target} ended with {status}: {stderr}")]
    Status {
        /// The command.
        command: String,
        /// The connection's description.
        target: String,
        /// How it ended.
        status: ExitStatus,
        /// Its stderr.
        stderr: String,
    },
}
