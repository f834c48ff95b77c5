//! [`ConnectionExt`]: conveniences over any [`Connection`].

use async_trait::async_trait;

use tokio::io::AsyncReadExt;

use super::Connection;
use super::command::{CommandSpec, ErrOutput, Output};
use super::error::{CommandFailed, ConnectionError};
use super::process::CommandOutput;
use crate::scope::Scope;

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
        let out = match self.output(cmd, scope).await {
            Ok(out) => out,
            Err(source) => {
                return Err(CommandFailed::Connection {
                    command: described,
                    target: self.describe(),
                    source,
                });
            }
        };
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
