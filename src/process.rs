//! Local child processes, each in its own process group.
//!
//! Every child the library starts runs as the leader of a new process group. Cancelling,
//! dropping or timing out a [`GroupChild`] signals the whole group: SIGCONT (in case it was
//! stopped), SIGTERM, then SIGKILL after a grace period — so grandchildren die with the child.
//! After the leader exits, members still alive in the group (a leaked background job that
//! would keep pipes open) are detected, reported in [`ExitInfo::leaked`] and killed. The
//! check costs one `kill(-pgid, 0)` when the group died with its leader; only when it did
//! not, `/proc` is scanned and the members found are waited for through pidfds (no
//! polling). Terminating a group, or killing its leaked members, returns only once its
//! members are gone (at most [`KILL_WAIT`]).
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

/// How long to wait for the members of a group to be gone after a SIGKILL (they die at
/// once unless stuck in the kernel, e.g. on a dead network file system).
pub const KILL_WAIT: Duration = Duration::from_secs(2);

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

    /// Waits for the leader to exit, then checks that no member of its group survived it;
    /// survivors still alive [`LEAK_TIMEOUT`] after the leader are SIGKILLed and reported as
    /// `leaked`. Cancel-safe.
    ///
    /// The check is one `kill(-pgid, 0)` when the group died with its leader (the usual
    /// case); `/proc` is scanned only when that says something is left, and the members
    /// found are waited for through pidfds, never by polling.
    pub async fn wait(&mut self) -> io::Result<ExitInfo> {
        if let Some(info) = self.exited {
            return Ok(info);
        }
        let status = self.child.wait().await?;
        let mut leaked = false;
        if let Some(pgid) = self.pgid {
            let deadline = tokio::time::Instant::now() + LEAK_TIMEOUT;
            if !wait_group_gone(pgid, deadline).await {
                leaked = true;
                tracing::warn!(
                    pgid = pgid.as_raw(),
                    "processes outlived the group leader; killing them"
                );
                self.signal_group(Signal::SIGKILL);
                wait_killed(pgid).await;
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
                    // The leader is gone: whatever is left of the group goes too, and is
                    // gone when this returns.
                    if let Some(pgid) = self.pgid && killpg(pgid, None).is_ok() {
                        self.signal_group(Signal::SIGKILL);
                        wait_killed(pgid).await;
                    }
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
        if let Some(pgid) = self.pgid {
            wait_killed(pgid).await;
        }
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
    live_members(pgid).is_none_or(|m| !m.is_empty())
}

/// The pids of the non-zombie processes of group `pgid`, from `/proc`; `None` when `/proc`
/// cannot be read.
fn live_members(pgid: i32) -> Option<Vec<i32>> {
    let entries = std::fs::read_dir("/proc").ok()?;
    let mut found = Vec::new();
    let mut path = std::path::PathBuf::from("/proc");
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Ok(pid) = name.parse::<i32>() else {
            continue;
        };
        path.push(name);
        path.push("stat");
        let stat = std::fs::read_to_string(&path);
        path.pop();
        path.pop();
        let Ok(stat) = stat else { continue };
        // "pid (comm) state ppid pgrp ..." — comm may contain spaces and parentheses.
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let mut fields = rest.split_whitespace();
        let state = fields.next();
        let pgrp = fields.nth(1).and_then(|f| f.parse::<i32>().ok());
        if pgrp == Some(pgid) && state != Some("Z") && state != Some("X") {
            found.push(pid);
        }
    }
    Some(found)
}

/// After a SIGKILL to group `pgid`: waits (at most [`KILL_WAIT`]) until its members are
/// gone, so that nothing of the group runs when the caller goes on.
async fn wait_killed(pgid: Pid) {
    let deadline = tokio::time::Instant::now() + KILL_WAIT;
    if !wait_group_gone(pgid, deadline).await {
        tracing::warn!(
            pgid = pgid.as_raw(),
            "members of the process group survived SIGKILL for {KILL_WAIT:?}"
        );
    }
}

/// Waits until group `pgid` has no live member, or `deadline`; answers whether it has none.
///
/// `kill(-pgid, 0)` failing means the group is empty (one syscall, the usual case). Else
/// `/proc` tells which members are alive (zombies waiting for init do not count), and a
/// pidfd per member wakes the wait when it exits; the check repeats for members started
/// meanwhile. Only without pidfds (or without `/proc`) it falls back to polling every 5 ms.
async fn wait_group_gone(pgid: Pid, deadline: tokio::time::Instant) -> bool {
    let empty =
        || killpg(pgid, None).is_err() || live_members(pgid.as_raw()).is_some_and(|m| m.is_empty());
    loop {
        if killpg(pgid, None).is_err() {
            return true;
        }
        let members = live_members(pgid.as_raw());
        if members.as_ref().is_some_and(Vec::is_empty) {
            return true;
        }
        let now = tokio::time::Instant::now();
        if now >= deadline {
            return false;
        }
        match members.as_deref().and_then(exit_watchers) {
            Some(watchers) if watchers.is_empty() => {} // all gone since the scan
            Some(watchers) => {
                // poll(2) on the pidfds in the blocking pool, until they all fired or the
                // deadline; the pool thread never outlives the deadline.
                let left = deadline - now;
                let done = crate::scope::spawn_blocking("group-exit", move || {
                    wait_all_readable(&watchers, left)
                })
                .await
                .unwrap_or(false);
                if !done {
                    // Check once more: the deadline may have come with the last exit.
                    return empty();
                }
            }
            None => tokio::time::sleep((deadline - now).min(Duration::from_millis(5))).await,
        }
    }
}

/// Polls `fds` until every one of them is readable or `timeout` passed; answers whether
/// they all are.
fn wait_all_readable(fds: &[std::os::fd::OwnedFd], timeout: Duration) -> bool {
    use rustix::event::{PollFd, PollFlags, Timespec, poll};
    let end = std::time::Instant::now() + timeout;
    let mut pending: Vec<&std::os::fd::OwnedFd> = fds.iter().collect();
    while !pending.is_empty() {
        let left = end.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return false;
        }
        let mut polled: Vec<PollFd<'_>> = pending
            .iter()
            .map(|fd| PollFd::new(*fd, PollFlags::IN))
            .collect();
        let wait = Timespec {
            tv_sec: i64::try_from(left.as_secs()).unwrap_or(i64::MAX),
            tv_nsec: i64::from(left.subsec_nanos()),
        };
        match poll(&mut polled, Some(&wait)) {
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(_) => return false,
        }
        let ready: Vec<bool> = polled.iter().map(|p| !p.revents().is_empty()).collect();
        let mut i = 0;
        pending.retain(|_| {
            i += 1;
            !ready[i - 1]
        });
    }
    true
}

/// One pidfd per process in `pids` (readable once it exits). Processes already gone are
/// left out; `None` when pidfds are unavailable.
fn exit_watchers(pids: &[i32]) -> Option<Vec<std::os::fd::OwnedFd>> {
    use rustix::process::{Pid as RPid, PidfdFlags, pidfd_open};
    let mut watchers = Vec::with_capacity(pids.len());
    for pid in pids.iter().filter_map(|&p| RPid::from_raw(p)) {
        match pidfd_open(pid, PidfdFlags::empty()) {
            Ok(fd) => watchers.push(fd),
            Err(rustix::io::Errno::SRCH) => {}
            Err(_) => return None,
        }
    }
    Some(watchers)
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

    /// The state letter of `pid` in `/proc`, `None` when it is gone.
    fn proc_state(pid: i32) -> Option<String> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let (_, rest) = stat.rsplit_once(')')?;
        rest.split_whitespace().next().map(str::to_string)
    }

    /// Waits (up to 10 s) until `path` holds a pid.
    async fn read_pid(path: &std::path::Path) -> i32 {
        for _ in 0..1000 {
            if let Some(pid) = std::fs::read_to_string(path)
                .ok()
                .and_then(|t| t.trim().parse().ok())
            {
                return pid;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("no pid in {}", path.display());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_leaked_member_is_gone_when_wait_returns() {
        let scope = Scope::root("t");
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("pid");
        let script = format!("sleep 30 & echo $! > {}; exit 3", pidfile.display());
        let mut c = GroupChild::spawn(
            GroupChild::command("sh", &["-c", &script], Stdio::null(), Stdio::null()),
            &scope,
        )
        .unwrap();
        let info = c.wait().await.unwrap();
        assert_eq!(info.status, ExitStatus::Code(3));
        assert!(info.leaked);
        let member = read_pid(&pidfile).await;
        // No waiting here: the member was killed and waited for before `wait` returned.
        let state = proc_state(member);
        assert!(
            state.is_none() || state.as_deref() == Some("Z"),
            "leaked member {member} still there: {state:?}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn terminate_returns_only_when_the_whole_group_is_gone() {
        let scope = Scope::root("t");
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("pid");
        // The member ignores SIGTERM (inherited across exec); the leader dies of it.
        let script = format!(
            "(trap '' TERM; exec sleep 30) & echo $! > {}; wait",
            pidfile.display()
        );
        let mut c = GroupChild::spawn(
            GroupChild::command("sh", &["-c", &script], Stdio::null(), Stdio::null()),
            &scope,
        )
        .unwrap();
        let member = read_pid(&pidfile).await;
        let force = tokio_util::sync::CancellationToken::new();
        let info = c.terminate(Duration::from_secs(20), &force).await.unwrap();
        assert_eq!(info.status, ExitStatus::Signal(15));
        // No waiting here: terminate returned after the member was gone.
        let state = proc_state(member);
        assert!(
            state.is_none() || state.as_deref() == Some("Z"),
            "member {member} still there after terminate: {state:?}"
        );
    }
}
