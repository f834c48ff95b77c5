//! Local child processes, each in its own process group.
//!
//! Every child the library starts runs as the leader of a new process group. Cancelling,
//! dropping or timing out a [`GroupChild`] signals the whole group: SIGCONT (in case it was
//! stopped), SIGTERM, then SIGKILL after a grace period — so grandchildren die with the child.
//! After the leader exits, members still alive in the group (a leaked background job that
//! would keep pipes open) are detected, reported in [`ExitInfo::leaked`] and killed.
//!
//! Because a child in its own group no longer receives the terminal's Ctrl-C, cancellation
//! is delivered through the [`Scope`]'s tokens instead.

use std::io;
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::process::{Child, ChildStderr, ChildStdin, ChildStdout, Command};

use crate::scope::Scope;

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExitStatus {
    /// Exited with this code.
    Code(i32),
    /// Killed by this signal number.
    Signal(i32),
}

impl ExitStatus {
    /// The shell convention: the exit code, or 128 + the signal number.
    pub fn code_or_signal(&self) -> i32 {
        match *self {
            ExitStatus::Code(c) => c,
            ExitStatus::Signal(s) => 128 + s,
        }
    }

    /// Whether the process exited with code 0.
    pub fn success(&self) -> bool {
        *self == ExitStatus::Code(0)
    }
}

impl std::fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExitStatus::Code(c) => write!(f, "exit code {c}"),
            ExitStatus::Signal(s) => match Signal::try_from(*s) {
                Ok(sig) => write!(f, "signal {} ({sig})", s),
                Err(_) => write!(f, "signal {s}"),
            },
        }
    }
}

impl From<std::process::ExitStatus> for ExitStatus {
    fn from(status: std::process::ExitStatus) -> Self {
        use std::os::unix::process::ExitStatusExt;
        match (status.code(), status.signal()) {
            (Some(c), _) => ExitStatus::Code(c),
            (None, Some(s)) => ExitStatus::Signal(s),
            (None, None) => ExitStatus::Code(-1),
        }
    }
}

/// The end of a process and what it left behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitInfo {
    /// How the leader ended.
    pub status: ExitStatus,
    /// Members of the process group outlived the leader and had to be killed.
    pub leaked: bool,
}

/// A program could not be started. Names the program, so that "No such file or directory"
/// never comes alone; the OS error is the [`source`](std::error::Error::source).
#[derive(Debug, thiserror::Error)]
#[error("cannot run `{program}`")]
pub struct SpawnError {
    /// The program, as given to the command (a name looked up in `PATH`, or a path).
    pub program: String,
    /// Why it could not be started (its kind is `NotFound` for a missing program).
    #[source]
    pub cause: io::Error,
}

impl SpawnError {
    /// Builds the error of starting `command`.
    pub fn new(command: &Command, cause: io::Error) -> Self {
        Self {
            program: command
                .as_std()
                .get_program()
                .to_string_lossy()
                .into_owned(),
            cause,
        }
    }

    /// The kind of the underlying I/O error.
    pub fn kind(&self) -> io::ErrorKind {
        self.cause.kind()
    }
}

/// How long members of a group may outlive its leader before they count as leaked.
pub const LEAK_TIMEOUT: Duration = Duration::from_millis(100);

/// A child process leading its own process group, registered in a scope tree so that even
/// the last-resort synchronous kill finds it.
#[derive(Debug)]
pub struct GroupChild {
    child: Child,
    pgid: Option<Pid>,
    registration: Option<(crate::scope::ProcessRegistry, u64)>,
    exited: Option<ExitInfo>,
    kill_grace: Duration,
}

impl GroupChild {
    /// Spawns `command` as the leader of a new process group. `kill_on_drop` is set as a
    /// backstop, and the group is SIGKILLed when the handle is dropped before the leader was
    /// reaped. The error names the program.
    pub fn spawn(mut command: Command, scope: &Scope) -> Result<Self, SpawnError> {
        command.process_group(0).kill_on_drop(true);
        let child = command
            .spawn()
            .map_err(|cause| SpawnError::new(&command, cause))?;
        let pgid = child
            .id()
            .and_then(|id| i32::try_from(id).ok())
            .map(Pid::from_raw);
        let registration = pgid.map(|pgid| {
            let id = scope.processes().register(pgid.as_raw());
            (scope.processes().clone(), id)
        });
        Ok(Self {
            child,
            pgid,
            registration,
            exited: None,
            kill_grace: scope.kill_grace(),
        })
    }

    /// Builds a [`Command`] with stdin from `/dev/null` and stdout/stderr as given.
    pub fn command(program: &str, args: &[&str], stdout: Stdio, stderr: Stdio) -> Command {
        let mut cmd = Command::new(program);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr);
        cmd
    }

    /// The process group id (equal to the leader's pid), while the leader is known.
    pub fn pgid(&self) -> Option<i32> {
        self.pgid.map(|p| p.as_raw())
    }

    /// Takes the child's stdin pipe, if it was piped.
    pub fn take_stdin(&mut self) -> Option<ChildStdin> {
        self.child.stdin.take()
    }

    /// Takes the child's stdout pipe, if it was piped.
    pub fn take_stdout(&mut self) -> Option<ChildStdout> {
        self.child.stdout.take()
    }

    /// Takes the child's stderr pipe, if it was piped.
    pub fn take_stderr(&mut self) -> Option<ChildStderr> {
        self.child.stderr.take()
    }

    /// Sends `signal` to the whole group. Errors (the group is already gone) are ignored.
    pub fn signal_group(&self, signal: Signal) {
        if let Some(pgid) = self.pgid {
            let _ = killpg(pgid, signal);
        }
    }

    /// Whether the group still has a member that is not a zombie. `killpg(0)` also succeeds
    /// for zombies (which init may reap late), so a positive answer is confirmed in `/proc`.
    fn group_alive(&self) -> bool {
        match self.pgid {
            Some(pgid) => killpg(pgid, None).is_ok() && group_has_live_members(pgid.as_raw()),
            None => false,
        }
    }

    /// Waits for the leader to exit, then checks that no member of its group survived it;
    /// survivors are SIGKILLed and reported as `leaked`. Cancel-safe.
    pub async fn wait(&mut self) -> io::Result<ExitInfo> {
        if let Some(info) = self.exited {
            return Ok(info);
        }
        let status = self.child.wait().await?;
        let mut leaked = false;
        if self.group_alive() {
            let deadline = tokio::time::Instant::now() + LEAK_TIMEOUT;
            while self.group_alive() && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            if self.group_alive() {
                leaked = true;
                tracing::warn!(pgid = ?self.pgid, "processes outlived the group leader; killing them");
                self.signal_group(Signal::SIGKILL);
            }
        }
        let info = ExitInfo {
            status: status.into(),
            leaked,
        };
        self.finish(info);
        Ok(info)
    }

    fn finish(&mut self, info: ExitInfo) {
        self.exited = Some(info);
        if let Some((registry, id)) = self.registration.take() {
            registry.unregister(id);
        }
    }

    /// Terminates the group: SIGCONT + SIGTERM, then SIGKILL once `grace` passed or `force`
    /// was cancelled, whichever comes first. Returns how the leader ended.
    pub async fn terminate(
        &mut self,
        grace: Duration,
        force: &tokio_util::sync::CancellationToken,
    ) -> io::Result<ExitInfo> {
        if let Some(info) = self.exited {
            return Ok(info);
        }
        if !force.is_cancelled() {
            self.signal_group(Signal::SIGCONT);
            self.signal_group(Signal::SIGTERM);
            tokio::select! {
                res = self.child.wait() => {
                    let status = res?;
                    // The leader is gone: whatever is left of the group goes too.
                    self.signal_group(Signal::SIGKILL);
                    let info = ExitInfo { status: status.into(), leaked: false };
                    self.finish(info);
                    return Ok(info);
                }
                _ = tokio::time::sleep(grace) => {}
                _ = force.cancelled() => {}
            }
        }
        self.signal_group(Signal::SIGKILL);
        let status = self.child.wait().await?;
        let info = ExitInfo {
            status: status.into(),
            leaked: false,
        };
        self.finish(info);
        Ok(info)
    }

    /// Waits for the process unless `scope` is cancelled first, in which case the group is
    /// terminated (SIGTERM, then SIGKILL after the tree's kill grace or on forced
    /// cancellation). Returns the exit and whether cancellation ended it.
    pub async fn wait_or_terminate(&mut self, scope: &Scope) -> io::Result<(ExitInfo, bool)> {
        tokio::select! {
            res = self.wait() => res.map(|info| (info, false)),
            _ = scope.cancelled() => {
                let grace = self.kill_grace;
                self.terminate(grace, scope.force_token()).await.map(|info| (info, true))
            }
        }
    }
}

/// Scans `/proc` for a non-zombie process whose process group is `pgid`. Without a readable
/// `/proc` it answers `true` (assume alive).
pub fn group_has_live_members(pgid: i32) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return true;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if !name.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // "pid (comm) state ppid pgrp ..." — comm may contain spaces and parentheses.
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let mut fields = rest.split_whitespace();
        let state = fields.next();
        let pgrp = fields.nth(1).and_then(|f| f.parse::<i32>().ok());
        if pgrp == Some(pgid) && state != Some("Z") && state != Some("X") {
            return true;
        }
    }
    false
}

impl Drop for GroupChild {
    fn drop(&mut self) {
        if self.exited.is_none() {
            // Never reaped: take the whole group down synchronously (no runtime needed).
            self.signal_group(Signal::SIGKILL);
        }
        if let Some((registry, id)) = self.registration.take() {
            registry.unregister(id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn exit_code_and_signal() {
        let scope = Scope::root("t");
        let mut c = GroupChild::spawn(
            GroupChild::command("sh", &["-c", "exit 7"], Stdio::null(), Stdio::null()),
            &scope,
        )
        .unwrap();
        assert_eq!(c.wait().await.unwrap().status, ExitStatus::Code(7));
        let mut c = GroupChild::spawn(
            GroupChild::command("sh", &["-c", "kill -9 $$"], Stdio::null(), Stdio::null()),
            &scope,
        )
        .unwrap();
        let info = c.wait().await.unwrap();
        assert_eq!(info.status, ExitStatus::Signal(9));
        assert_eq!(info.status.code_or_signal(), 137);
    }

    #[tokio::test]
    async fn a_missing_program_is_named_in_the_error() {
        let scope = Scope::root("t");
        let err = GroupChild::spawn(
            GroupChild::command(
                "atex-no-such-program",
                &["--flag"],
                Stdio::null(),
                Stdio::null(),
            ),
            &scope,
        )
        .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        assert_eq!(err.program, "atex-no-such-program");
        // The message names the program; the OS error is its source, printed by the chain.
        assert_eq!(err.to_string(), "cannot run `atex-no-such-program`");
        let text = crate::error::chain(&err).to_string();
        assert!(
            text.starts_with("cannot run `atex-no-such-program`: ")
                && text.contains("No such file or directory"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn leaked_background_job_is_detected_and_killed() {
        let scope = Scope::root("t");
        let mut c = GroupChild::spawn(
            GroupChild::command(
                "sh",
                &["-c", "sleep 30 & exit 0"],
                Stdio::null(),
                Stdio::null(),
            ),
            &scope,
        )
        .unwrap();
        let pgid = c.pgid().unwrap();
        let info = c.wait().await.unwrap();
        assert!(info.leaked);
        // Give the kernel a moment to deliver SIGKILL, then the group must be gone (zombies
        // waiting for init to reap them do not count).
        for _ in 0..500 {
            if !group_has_live_members(pgid) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("process group {pgid} still alive");
    }
}
