//! [`PodmanConnection`]: commands and files in a running container through `podman exec`.

use std::path::Path;
use std::process::Stdio;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;

use super::cli::{Podman, PodmanError};
use super::exec::{Fifo, PodmanControl, WRAPPER, WRAPPER_VAR, token};
use crate::connection::{
    CommandSpec, Connection, ConnectionError, ErrOutput, Input, Output, Process,
};
use crate::process::GroupChild;
use crate::scope::Scope;

/// How long [`reconnect`](Connection::reconnect) waits for a container to run again (and
/// for its systemd to boot) by default.
pub const DEFAULT_RECONNECT_TIMEOUT: Duration = Duration::from_secs(120);

/// Runs commands in a running container with `podman exec` and copies files with `tar`
/// through it (the image needs `/bin/sh`, `tar`, `grep` and `kill`, which busybox has; no
/// sshd, no rsync).
///
/// * Cancelling a command (or dropping its [`Process`]) kills its processes *inside* the
///   container: a second `podman exec` finds them (by a marker in their environment, by
///   the session of the command's wrapper, and as descendants of either, so also children
///   that cleared their environment with `env -i` or left the session with `setsid`),
///   stops them all, then signals them (SIGTERM, then SIGKILL after the grace). Processes
///   still found when a command ended are killed and reported as
///   [`leaked`](crate::process::ExitInfo::leaked).
/// * Not found: a process that cleared its environment, left the session *and* lost its
///   parent before the search (a double-forked daemon started with `env -i`; `setsid env
///   -i CMD &` in a command that then ended by itself). It is a child of the container's
///   init like the container's own services and lives until the container is removed
///   (the provisioner's destructive policy replaces such a container).
/// * An exit code of 129–192 arrives as a signal: `ExitStatus::Signal(N - 128)`, also
///   for a command that did `exit 130` (signal 2). podman reports a death by signal N as
///   128+N, and no shell in the container can read the real wait status: it exists only
///   until the shell reaps the process, which dash and busybox do inside `wait` and bash
///   in its SIGCHLD handler. Exit codes 0–128 and 193–255 are exact.
/// * [`reconnect`](Connection::reconnect) starts the container again if it stopped (a
///   test rebooted it) and, for a systemd container ([`systemd`](Self::systemd)), waits
///   until systemd reports `running` or `degraded`.
///
/// Usable on its own for a container that already exists:
///
/// ```no_run
/// use atex::connection::{CommandSpec, ConnectionExt};
/// use atex::podman::{Podman, PodmanConnection};
/// use atex::scope::Scope;
///
/// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let scope = Scope::root("doc");
/// let conn = PodmanConnection::connect(Podman::new(), "my-container", &scope).await?;
/// let out = conn.check(CommandSpec::new(["uname", "-r"]), &scope).await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct PodmanConnection {
    podman: Podman,
    name: String,
    id: Mutex<Option<String>>,
    systemd: bool,
    reconnect_timeout: Duration,
    fifos: tempfile::TempDir,
    /// The scope of transfers started outside any scope's task.
    scope: Scope,
}

/// The container is not running.
#[derive(Debug, thiserror::Error)]
#[error("container {container} is {state}")]
struct NotRunning {
    container: String,
    state: String,
}

/// systemd in the container did not come up.
#[derive(Debug, thiserror::Error)]
#[error("systemd in container {container} is '{state}'")]
struct SystemdNotReady {
    container: String,
    state: String,
}

impl PodmanConnection {
    fn build(podman: Podman, container: &str, scope: &Scope) -> Result<Self, ConnectionError> {
        let fifos = tempfile::Builder::new()
            .prefix("atex-podman-")
            .tempdir()
            .map_err(|source| ConnectionError::Io {
                context: "creating a directory for podman exec status channels".into(),
                source,
            })?;
        Ok(Self {
            podman,
            name: container.to_string(),
            id: Mutex::new(None),
            systemd: false,
            reconnect_timeout: DEFAULT_RECONNECT_TIMEOUT,
            fifos,
            scope: scope.clone(),
        })
    }

    /// Connects to the running container `container` (a name or an id): resolves its full
    /// id and checks that it runs.
    pub async fn connect(
        podman: Podman,
        container: &str,
        scope: &Scope,
    ) -> Result<Self, ConnectionError> {
        let conn = Self::build(podman, container, scope)?;
        conn.resolve(scope).await?;
        Ok(conn)
    }

    /// A connection to `container` that is not connected yet: the first command fails
    /// until [`reconnect`](Connection::reconnect) succeeded. Transfers run in `scope`
    /// when their caller is not in a scope's task.
    pub fn unconnected(
        podman: Podman,
        container: &str,
        scope: &Scope,
    ) -> Result<Self, ConnectionError> {
        Self::build(podman, container, scope)
    }

    /// The scope for work without a scope parameter (transfers).
    fn work_scope(&self) -> Scope {
        Scope::current().unwrap_or_else(|| self.scope.clone())
    }

    /// The container runs systemd as init: [`reconnect`](Connection::reconnect) waits for
    /// it to boot (`systemctl is-system-running` says `running` or `degraded`).
    pub fn systemd(mut self, systemd: bool) -> Self {
        self.systemd = systemd;
        self
    }

    /// How long [`reconnect`](Connection::reconnect) waits (default
    /// [`DEFAULT_RECONNECT_TIMEOUT`]).
    pub fn reconnect_timeout(mut self, timeout: Duration) -> Self {
        self.reconnect_timeout = timeout;
        self
    }

    /// The container's name (or id) as given.
    pub fn container(&self) -> &str {
        &self.name
    }

    /// The container's full id, while connected.
    pub fn id(&self) -> Option<String> {
        self.id.lock().ok().and_then(|g| g.clone())
    }

    /// The podman program.
    pub fn podman(&self) -> &Podman {
        &self.podman
    }

    fn connect_error(
        &self,
        source: impl Into<crate::error::BoxError>,
        transient: bool,
    ) -> ConnectionError {
        ConnectionError::Connect {
            target: self.describe(),
            transient,
            source: source.into(),
        }
    }

    /// Resolves the full id of a running container.
    async fn resolve(&self, scope: &Scope) -> Result<String, ConnectionError> {
        let (id, state) = self
            .podman
            .inspect_state(&self.name, scope)
            .await
            .map_err(|e| self.connect_error(e, false))?;
        if state != "running" {
            return Err(self.connect_error(
                NotRunning {
                    container: self.name.clone(),
                    state,
                },
                true,
            ));
        }
        if let Ok(mut g) = self.id.lock() {
            *g = Some(id.clone());
        }
        Ok(id)
    }

    /// The id to run commands in, or the error of a connection that is down.
    pub(super) fn current_id(&self, during: &str) -> Result<String, ConnectionError> {
        self.id().ok_or_else(|| {
            ConnectionError::disconnected(
                self.describe(),
                Some(during.to_string()),
                "not connected (reconnect first)",
            )
        })
    }

    /// Waits until systemd in the container is `running` or `degraded`.
    async fn wait_systemd(
        &self,
        id: &str,
        deadline: tokio::time::Instant,
        scope: &Scope,
    ) -> Result<(), ConnectionError> {
        loop {
            let out = self
                .podman
                .run(
                    &[
                        "exec",
                        id,
                        "/bin/sh",
                        "-c",
                        "systemctl is-system-running 2>/dev/null || true",
                    ],
                    scope,
                )
                .await;
            let last = match out {
                Ok(s) => s.trim().to_string(),
                Err(PodmanError::Cancelled { .. }) => return Err(ConnectionError::Cancelled),
                // Not running (any more): the caller's deadline decides.
                Err(PodmanError::Failed { message, .. }) => message,
                Err(e) => return Err(self.connect_error(e, true)),
            };
            if last == "running" || last == "degraded" {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(ConnectionError::Timeout {
                    what: format!("waiting for systemd in {}", self.describe()),
                    after: self.reconnect_timeout,
                    last: Some(Box::new(SystemdNotReady {
                        container: self.name.clone(),
                        state: last,
                    })),
                });
            }
            if scope
                .run(tokio::time::sleep(Duration::from_millis(100)))
                .await
                .is_none()
            {
                return Err(ConnectionError::Cancelled);
            }
        }
    }

    /// Brings the connection up: the container runs (started again when it stopped) and,
    /// for systemd, has booted.
    pub(super) async fn bring_up(&self, scope: &Scope) -> Result<(), ConnectionError> {
        let deadline = tokio::time::Instant::now() + self.reconnect_timeout;
        loop {
            let (id, state) = self
                .podman
                .inspect_state(&self.name, scope)
                .await
                .map_err(|e| self.connect_error(e, false))?;
            match state.as_str() {
                "running" => {
                    if self.systemd {
                        self.wait_systemd(&id, deadline, scope).await?;
                    }
                    if let Ok(mut g) = self.id.lock() {
                        *g = Some(id);
                    }
                    return Ok(());
                }
                "exited" | "stopped" | "created" | "configured" => {
                    tracing::info!(container = %self.name, %state, "starting the container again");
                    if let Err(e) = self.podman.run(&["start", "--", &id], scope).await {
                        tracing::debug!(error = %crate::error::chain(&e), "podman start failed; retrying");
                    }
                }
                _ => {}
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(ConnectionError::Timeout {
                    what: format!("waiting for {} to run", self.describe()),
                    after: self.reconnect_timeout,
                    last: Some(Box::new(NotRunning {
                        container: self.name.clone(),
                        state,
                    })),
                });
            }
            if scope
                .run(tokio::time::sleep(Duration::from_millis(100)))
                .await
                .is_none()
            {
                return Err(ConnectionError::Cancelled);
            }
        }
    }
}

#[async_trait]
impl Connection for PodmanConnection {
    fn describe(&self) -> String {
        format!("podman {}", self.name)
    }

    async fn spawn(&self, cmd: CommandSpec, scope: &Scope) -> Result<Process, ConnectionError> {
        let described = cmd.display();
        let spawn_err = |source: crate::error::BoxError| ConnectionError::Spawn {
            command: described.clone(),
            target: self.describe(),
            source,
        };
        if let Some(why) = cmd.invalid() {
            return Err(spawn_err(
                std::io::Error::new(std::io::ErrorKind::InvalidInput, why).into(),
            ));
        }
        let id = self.current_id(&format!("running `{described}`"))?;
        let token = token();
        let fifo = Fifo::create(self.fifos.path(), &token).map_err(|e| spawn_err(Box::new(e)))?;
        let mut redirects = String::new();
        let interactive = !matches!(cmd.stdin, Input::Null);
        if !interactive {
            redirects.push('i');
        }
        if matches!(cmd.stdout, Output::Null) {
            redirects.push('o');
        }
        match cmd.stderr {
            ErrOutput::Null => redirects.push('e'),
            ErrOutput::ToStdout => redirects.push('m'),
            _ => {}
        }
        let cwd = match &cmd.cwd {
            Some(d) => format!("+{d}"),
            None => "-".into(),
        };
        // sh opens the FIFO as descriptor 3, then runs podman, which hands it in.
        let mut args: Vec<String> = vec![
            "-c".into(),
            "exec 3>\"$0\" && exec \"$@\"".into(),
            fifo.path().display().to_string(),
            self.podman.program().display().to_string(),
            "exec".into(),
            "--preserve-fds=1".into(),
        ];
        if interactive {
            args.push("-i".into());
        }
        for (k, v) in &cmd.env {
            args.push("-e".into());
            args.push(format!("{k}={v}"));
        }
        args.push("-e".into());
        args.push(format!("{WRAPPER_VAR}={token}"));
        args.extend([
            id.clone(),
            "/bin/sh".into(),
            "-c".into(),
            WRAPPER.into(),
            "atex".into(),
            token.clone(),
            cwd,
            redirects,
        ]);
        args.extend(cmd.argv.iter().cloned());
        let mut command = tokio::process::Command::new("/bin/sh");
        command.args(&args);
        command.envs(self.podman.envs());
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
        match cmd.stdout {
            Output::Null => command.stdout(Stdio::null()),
            Output::Piped => command.stdout(Stdio::piped()),
            Output::File(f) => command.stdout(Stdio::from(f)),
        };
        match cmd.stderr {
            // Merged (or discarded) inside the container.
            ErrOutput::Null | ErrOutput::ToStdout => command.stderr(Stdio::null()),
            ErrOutput::Piped => command.stderr(Stdio::piped()),
            ErrOutput::File(f) => command.stderr(Stdio::from(f)),
        };
        let mut child =
            GroupChild::spawn(command, scope).map_err(|e| spawn_err(Box::new(e.cause)))?;
        let stdin = child
            .take_stdin()
            .map(|s| Box::pin(s) as crate::connection::BoxWriter);
        let stdout = child
            .take_stdout()
            .map(|s| Box::pin(s) as crate::connection::BoxReader);
        let stderr = child
            .take_stderr()
            .map(|s| Box::pin(s) as crate::connection::BoxReader);
        let control = PodmanControl::new(
            self.podman.clone(),
            id,
            self.describe(),
            described,
            token,
            child,
            fifo,
            scope,
        );
        Ok(Process::new(
            stdin,
            stdout,
            stderr,
            stdin_data,
            Box::new(control),
            scope.kill_grace(),
        ))
    }

    async fn upload(&self, local: &Path, remote: &str) -> Result<(), ConnectionError> {
        super::transfer::upload(self, &self.work_scope(), local, remote).await
    }

    async fn download(&self, remote: &str, local: &Path) -> Result<(), ConnectionError> {
        super::transfer::download(self, &self.work_scope(), remote, local).await
    }

    async fn reconnect(&self, scope: &Scope) -> Result<(), ConnectionError> {
        self.bring_up(scope).await
    }

    async fn disconnect(&self) {
        if let Ok(mut g) = self.id.lock() {
            *g = None;
        }
    }
}
