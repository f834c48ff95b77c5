//! [`Podman`]: the `podman` program and its environment; [`PodmanError`].

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::Stdio;

use tokio::io::AsyncWriteExt;

use crate::process::GroupChild;
use crate::scope::Scope;

/// The longest piece of podman's stderr kept in an error.
const MESSAGE_LIMIT: usize = 4000;

/// Errors of podman calls. `Display` names the call; podman's own message is part of it
/// (it is what podman said, not a cause).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PodmanError {
    /// The podman program could not be started (not installed, say).
    #[error("cannot run {program}")]
    Spawn {
        /// The program.
        program: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// podman ran and failed.
    #[error("`podman {command}` failed with {status}: {message}")]
    Failed {
        /// The arguments, shell-quoted.
        command: String,
        /// Its exit status.
        status: crate::process::ExitStatus,
        /// podman's stderr, trimmed.
        message: String,
    },
    /// Talking to podman failed.
    #[error("`podman {command}`")]
    Io {
        /// The arguments, shell-quoted.
        command: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// podman's answer made no sense.
    #[error("`podman {command}` printed {output:?}")]
    Parse {
        /// The arguments, shell-quoted.
        command: String,
        /// What it printed.
        output: String,
    },
    /// The call was cancelled.
    #[error("`podman {command}` was cancelled")]
    Cancelled {
        /// The arguments, shell-quoted.
        command: String,
    },
}

impl PodmanError {
    /// podman's own message, when it failed.
    pub fn message(&self) -> Option<&str> {
        match self {
            PodmanError::Failed { message, .. } => Some(message),
            _ => None,
        }
    }

    /// Whether podman said that the container (or image) does not exist.
    pub fn is_not_found(&self) -> bool {
        self.message().is_some_and(|m| {
            m.contains("no such container")
                || m.contains("no container with")
                || m.contains("no such object")
                || m.contains("image not known")
        })
    }
}

/// The `podman` program (path and extra environment, such as `CONTAINERS_CONF`).
///
/// ```
/// let podman = atex::podman::Podman::new().env("CONTAINERS_CONF", "/srv/ci/containers.conf");
/// assert_eq!(podman.program(), std::path::Path::new("podman"));
/// ```
#[derive(Debug, Clone)]
pub struct Podman {
    program: PathBuf,
    env: Vec<(OsString, OsString)>,
}

impl Default for Podman {
    fn default() -> Self {
        Self::new()
    }
}

impl Podman {
    /// `podman` from `PATH`, with atex's environment.
    pub fn new() -> Self {
        Self {
            program: PathBuf::from("podman"),
            env: Vec::new(),
        }
    }

    /// Another podman program.
    pub fn program_path(mut self, program: impl Into<PathBuf>) -> Self {
        self.program = program.into();
        self
    }

    /// An environment variable for every podman process (`CONTAINERS_CONF`, …).
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// The extra environment of podman processes.
    pub fn envs(&self) -> impl Iterator<Item = (&OsString, &OsString)> {
        self.env.iter().map(|(k, v)| (k, v))
    }

    /// The program.
    pub fn program(&self) -> &std::path::Path {
        &self.program
    }

    /// A [`tokio::process::Command`] of podman with these arguments and the environment.
    pub fn command<I, S>(&self, args: I) -> tokio::process::Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let mut cmd = tokio::process::Command::new(&self.program);
        cmd.args(args);
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd
    }

    /// Runs `podman args…` (stdin from `input` or `/dev/null`) and returns its stdout; a
    /// non-zero exit is [`PodmanError::Failed`] with podman's stderr. Cancelling `scope`
    /// kills podman.
    pub async fn run_input(
        &self,
        args: &[&str],
        input: Option<Vec<u8>>,
        scope: &Scope,
    ) -> Result<String, PodmanError> {
        let command = args
            .iter()
            .map(|a| crate::connection::shell_quote(a))
            .collect::<Vec<_>>()
            .join(" ");
        let mut cmd = self.command(args);
        cmd.stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        let mut child = GroupChild::spawn(cmd, scope).map_err(|e| PodmanError::Spawn {
            program: self.program.display().to_string(),
            source: e.cause,
        })?;
        let stdin = child.take_stdin();
        let mut stdout = child.take_stdout();
        let mut stderr = child.take_stderr();
        let io = |source| PodmanError::Io {
            command: command.clone(),
            source,
        };
        let work = async {
            use tokio::io::AsyncReadExt;
            let feed = async {
                if let (Some(mut w), Some(data)) = (stdin, input) {
                    let _ = w.write_all(&data).await;
                    let _ = w.shutdown().await;
                }
            };
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
            let ((), out, err) = tokio::join!(feed, read_out, read_err);
            let info = child.wait().await?;
            Ok::<_, std::io::Error>((out?, err?, info))
        };
        let (out, err, info) = match scope.run(work).await {
            Some(r) => r.map_err(io)?,
            None => return Err(PodmanError::Cancelled { command }),
        };
        if !info.status.success() {
            let mut message = String::from_utf8_lossy(&err).trim().to_string();
            if message.len() > MESSAGE_LIMIT {
                let cut = (0..=MESSAGE_LIMIT)
                    .rev()
                    .find(|i| message.is_char_boundary(*i))
                    .unwrap_or(0);
                message.truncate(cut);
            }
            return Err(PodmanError::Failed {
                command,
                status: info.status,
                message,
            });
        }
        Ok(String::from_utf8_lossy(&out).into_owned())
    }

    /// Runs `podman args…` (see [`run_input`](Self::run_input)).
    pub async fn run(&self, args: &[&str], scope: &Scope) -> Result<String, PodmanError> {
        self.run_input(args, None, scope).await
    }

    /// The full id of a container, and its state (`running`, `exited`, …).
    pub async fn inspect_state(
        &self,
        container: &str,
        scope: &Scope,
    ) -> Result<(String, String), PodmanError> {
        let out = self
            .run(
                &[
                    "container",
                    "inspect",
                    "--format",
                    "{{.Id}} {{.State.Status}}",
                    "--",
                    container,
                ],
                scope,
            )
            .await?;
        let line = out.trim();
        match line.split_once(' ') {
            Some((id, state)) if !id.is_empty() => Ok((id.to_string(), state.to_string())),
            _ => Err(PodmanError::Parse {
                command: format!("container inspect {container}"),
                output: line.to_string(),
            }),
        }
    }

    /// Removes containers at once (`rm -f -t 0`); ones already gone are no error.
    pub async fn remove(&self, containers: &[&str], scope: &Scope) -> Result<(), PodmanError> {
        if containers.is_empty() {
            return Ok(());
        }
        let mut args = vec!["rm", "-f", "-t", "0", "--ignore", "--"];
        args.extend_from_slice(containers);
        self.run(&args, scope).await.map(|_| ())
    }
}
