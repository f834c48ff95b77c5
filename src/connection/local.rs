//! [`LocalConnection`]: commands and files on the machine atex runs on.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

use super::{
    CommandSpec, Connection, ConnectionError, ErrOutput, Input, Output, Process, ProcessControl,
};
use crate::process::{ExitInfo, GroupChild};
use crate::scope::Scope;

/// Runs commands as local child processes, each in its own process group.
///
/// Relative working directories and remote paths resolve against the connection's default
/// directory ([`with_cwd`](Self::with_cwd)), or the current directory when none is set.
#[derive(Debug, Clone, Default)]
pub struct LocalConnection {
    cwd: Option<PathBuf>,
}

impl LocalConnection {
    /// A connection using the current directory.
    pub fn new() -> Self {
        Self::default()
    }

    /// A connection whose commands and relative paths default to `cwd`.
    pub fn with_cwd(cwd: impl Into<PathBuf>) -> Self {
        Self {
            cwd: Some(cwd.into()),
        }
    }

    /// The default directory, if one is set.
    pub fn cwd(&self) -> Option<&Path> {
        self.cwd.as_deref()
    }

    fn resolve(&self, path: &str) -> PathBuf {
        let p = Path::new(path);
        match (&self.cwd, p.is_absolute()) {
            (Some(cwd), false) => cwd.join(p),
            _ => p.to_path_buf(),
        }
    }

    async fn copy(&self, from: PathBuf, to: PathBuf) -> Result<(), ConnectionError> {
        let (f, t) = (from.clone(), to.clone());
        let res = crate::scope::spawn_blocking("local-copy", move || {
            if let Some(parent) = t.parent()
                && !parent.as_os_str().is_empty()
            {
                std::fs::create_dir_all(parent)?;
            }
            crate::fs_tree::copy_tree(&f, &t)
        })
        .await;
        let source: crate::error::BoxError = match res {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(e)) => Box::new(e),
            Err(e) => Box::new(e),
        };
        Err(ConnectionError::Transfer {
            from: from.display().to_string(),
            to: to.display().to_string(),
            source,
        })
    }
}

#[derive(Debug)]
struct LocalControl {
    child: GroupChild,
}

#[async_trait]
impl ProcessControl for LocalControl {
    async fn wait(&mut self) -> Result<ExitInfo, ConnectionError> {
        self.child
            .wait()
            .await
            .map_err(|source| ConnectionError::Io {
                context: "waiting for a local process".into(),
                source,
            })
    }

    async fn terminate(
        &mut self,
        grace: Duration,
        force: &CancellationToken,
    ) -> Result<ExitInfo, ConnectionError> {
        self.child
            .terminate(grace, force)
            .await
            .map_err(|source| ConnectionError::Io {
                context: "terminating a local process".into(),
                source,
            })
    }
}

fn io_err(context: &str, source: std::io::Error) -> ConnectionError {
    ConnectionError::Io {
        context: context.to_string(),
        source,
    }
}

#[async_trait]
impl Connection for LocalConnection {
    fn describe(&self) -> String {
        match &self.cwd {
            Some(cwd) => format!("local:{}", cwd.display()),
            None => "local".into(),
        }
    }

    async fn spawn(&self, cmd: CommandSpec, scope: &Scope) -> Result<Process, ConnectionError> {
        let described = cmd.display();
        let spawn_err = |source: std::io::Error| ConnectionError::Spawn {
            command: described.clone(),
            target: self.describe(),
            source: Box::new(source),
        };
        if let Some(why) = cmd.invalid() {
            return Err(spawn_err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                why,
            )));
        }
        let Some((program, args)) = cmd.argv.split_first() else {
            return Err(spawn_err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "empty argv",
            )));
        };
        let mut command = tokio::process::Command::new(program);
        command.args(args);
        command.envs(cmd.env.iter().map(|(k, v)| (k, v)));
        match (&cmd.cwd, &self.cwd) {
            (Some(dir), _) => {
                command.current_dir(self.resolve(dir));
            }
            (None, Some(cwd)) => {
                command.current_dir(cwd);
            }
            (None, None) => {}
        }
        let stdin_data = match cmd.stdin {
            Input::Null => {
                command.stdin(Stdio::null());
                None
            }
            Input::Piped => {
                command.stdin(Stdio::piped());
                None
            }
            Input::Bytes(data) => {
                command.stdin(Stdio::piped());
                Some(data)
            }
        };
        // stdout, and stderr merged into it when asked.
        let mut merged_reader = None;
        match (cmd.stdout, cmd.stderr) {
            (Output::Piped, ErrOutput::ToStdout) => {
                let (reader, writer) = std::io::pipe().map_err(|e| io_err("creating a pipe", e))?;
                let writer2 = writer
                    .try_clone()
                    .map_err(|e| io_err("duplicating a pipe", e))?;
                command.stdout(Stdio::from(writer));
                command.stderr(Stdio::from(writer2));
                let fd: std::os::fd::OwnedFd = reader.into();
                let receiver = tokio::net::unix::pipe::Receiver::from_owned_fd(fd)
                    .map_err(|e| io_err("registering a pipe", e))?;
                merged_reader = Some(receiver);
            }
            (stdout, stderr) => {
                let stdout_clone = match (&stdout, &stderr) {
                    (Output::File(f), ErrOutput::ToStdout) => Some(
                        f.try_clone()
                            .map_err(|e| io_err("duplicating the output file", e))?,
                    ),
                    _ => None,
                };
                match stdout {
                    Output::Null => command.stdout(Stdio::null()),
                    Output::Piped => command.stdout(Stdio::piped()),
                    Output::File(f) => command.stdout(Stdio::from(f)),
                };
                match stderr {
                    ErrOutput::Null => command.stderr(Stdio::null()),
                    ErrOutput::Piped => command.stderr(Stdio::piped()),
                    ErrOutput::File(f) => command.stderr(Stdio::from(f)),
                    ErrOutput::ToStdout => match stdout_clone {
                        Some(f) => command.stderr(Stdio::from(f)),
                        None => command.stderr(Stdio::null()),
                    },
                };
            }
        }
        let mut child = GroupChild::spawn(command, scope).map_err(|e| spawn_err(e.cause))?;
        let stdin = child.take_stdin().map(|s| Box::pin(s) as super::BoxWriter);
        let stdout = match merged_reader {
            Some(r) => Some(Box::pin(r) as super::BoxReader),
            None => child.take_stdout().map(|s| Box::pin(s) as super::BoxReader),
        };
        let stderr = child.take_stderr().map(|s| Box::pin(s) as super::BoxReader);
        Ok(Process::new(
            stdin,
            stdout,
            stderr,
            stdin_data,
            Box::new(LocalControl { child }),
            scope.kill_grace(),
        ))
    }

    async fn upload(&self, local: &Path, remote: &str) -> Result<(), ConnectionError> {
        self.copy(local.to_path_buf(), self.resolve(remote)).await
    }

    async fn download(&self, remote: &str, local: &Path) -> Result<(), ConnectionError> {
        self.copy(self.resolve(remote), local.to_path_buf()).await
    }

    /// Every command is a [`GroupChild`]: leftovers of its group are killed when it ends.
    fn supervises_process_groups(&self) -> bool {
        true
    }

    /// The path itself, relative ones against the default directory.
    fn local_path(&self, remote: &str) -> Option<PathBuf> {
        Some(self.resolve(remote))
    }
}
