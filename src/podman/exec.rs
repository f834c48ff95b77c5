//! Commands in a container: the wrapper that runs them, the side channel that reports how
//! they ended, and the [`ProcessControl`] that kills them *inside* the container.
//!
//! Killing the `podman exec` client does not stop the command in the container, and
//! `podman exec`'s exit code cannot tell `exit 143` from SIGTERM, nor whether the command
//! left processes behind. So every command runs under a small POSIX shell wrapper:
//!
//! * the command gets `ATEX_PODMAN_EXEC=<token>` in its environment (the wrapper itself
//!   does not), which its children and grandchildren inherit: terminating the command is
//!   a second `podman exec` that signals every process of the container carrying the
//!   token (SIGTERM, then SIGKILL until none is left), also daemons that left the process
//!   group;
//! * once the command ended, processes still carrying the token are leftovers: after a
//!   moment they are killed;
//! * the wrapper reports `start` and then `end STATUS LEAKED` on file descriptor 3 (a FIFO
//!   on this side, handed in with `--preserve-fds=1`); the command itself does not get
//!   descriptor 3.
//!
//! An exit code of 129 to 192 is taken as "killed by signal N−128" (a shell cannot tell the
//! two apart; neither can podman).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

use super::cli::Podman;
use crate::connection::{ConnectionError, ProcessControl};
use crate::guard::CleanupGuard;
use crate::process::{ExitInfo, ExitStatus, GroupChild};
use crate::scope::Scope;

/// The environment variable that marks a command's processes.
pub(super) const TOKEN_VAR: &str = "ATEX_PODMAN_EXEC";

/// How long to wait for a command to end after SIGKILL before giving up.
const AFTER_KILL_TIMEOUT: Duration = Duration::from_secs(15);

/// The wrapper: `sh -c WRAPPER atex TOKEN CWD REDIRECTS argv…`. `CWD` is `-` (none) or
/// `+DIR`; `REDIRECTS` holds `o` (stdout to /dev/null), `e` (stderr to /dev/null), `m`
/// (stderr into stdout), `i` (stdin from /dev/null).
pub(super) const WRAPPER: &str = r#"t=$1; d=$2; r=$3; shift 3
echo start >&3
case $d in +*) cd "${d#+}" || { echo "end 1 0" >&3; exit 1; } ;; esac
exec 4<&0
case $r in *i*) exec 4</dev/null ;; esac
case $r in *o*) exec 1>/dev/null ;; esac
case $r in *e*) exec 2>/dev/null ;; *m*) exec 2>&1 ;; esac
ATEX_PODMAN_EXEC=$t "$@" 0<&4 3>&- 4<&- &
p=$!
exec 4<&-
wait "$p"; s=$?
l=0
left() { grep -l -z -x -F "ATEX_PODMAN_EXEC=$t" /proc/[0-9]*/environ 2>/dev/null; }
if [ -n "$(left)" ]; then
  sleep 0.1 2>/dev/null || sleep 1
  n=0
  while f=$(left); [ -n "$f" ] && [ $n -lt 50 ]; do
    l=1; n=$((n+1))
    for x in $f; do x=${x#/proc/}; kill -s KILL "${x%/environ}" 2>/dev/null; done
  done
fi
echo "end $s $l" >&3
exit $s
"#;

/// The killer: `sh -c KILLER atex SIGNAL TOKEN` signals every process carrying the token;
/// with `KILL`, until none is left.
pub(super) const KILLER: &str = r#"s=$1; t=$2; n=0
while f=$(grep -l -z -x -F "ATEX_PODMAN_EXEC=$t" /proc/[0-9]*/environ 2>/dev/null); [ -n "$f" ]; do
  for x in $f; do x=${x#/proc/}; x=${x%/environ}
    [ "$s" = TERM ] && kill -s CONT "$x" 2>/dev/null
    kill -s "$s" "$x" 2>/dev/null
  done
  [ "$s" = KILL ] || break
  n=$((n+1)); [ $n -lt 100 ] || exit 1
done
exit 0
"#;

/// A random token (process-seeded hasher keys and a counter; no extra dependency).
pub(super) fn token() -> String {
    use std::hash::{BuildHasher, Hasher};
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let mut out = String::new();
    for _ in 0..2 {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
        h.write_u32(std::process::id());
        out.push_str(&format!("{:016x}", h.finish()));
    }
    out
}

/// Signals the processes of the command marked `token` in `container`.
pub(super) async fn signal_token(
    podman: &Podman,
    container: &str,
    token: &str,
    signal: &str,
    scope: &Scope,
) -> Result<(), super::PodmanError> {
    podman
        .run(
            &[
                "exec", container, "/bin/sh", "-c", KILLER, "atex", signal, token,
            ],
            scope,
        )
        .await
        .map(|_| ())
}

/// What the wrapper reported on its side channel.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Report {
    started: bool,
    end: Option<(i32, bool)>,
}

impl Report {
    fn parse(text: &str) -> Self {
        let mut r = Report::default();
        for line in text.lines() {
            let mut f = line.split_whitespace();
            match f.next() {
                Some("start") => r.started = true,
                Some("end") => {
                    let s = f.next().and_then(|s| s.parse().ok());
                    let l = f.next() == Some("1");
                    if let Some(s) = s {
                        r.end = Some((s, l));
                    }
                }
                _ => {}
            }
        }
        r
    }
}

/// A shell's exit code as a status: 129–192 is a signal (see the module docs).
pub(super) fn status_of(code: i32) -> ExitStatus {
    if (129..=192).contains(&code) {
        ExitStatus::Signal(code - 128)
    } else {
        ExitStatus::Code(code)
    }
}

/// The FIFO of one command's side channel; removed when dropped.
pub(super) struct Fifo {
    path: PathBuf,
}

impl Fifo {
    pub(super) fn create(dir: &Path, token: &str) -> std::io::Result<Self> {
        let path = dir.join(format!("{token}.fifo"));
        nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600))
            .map_err(std::io::Error::from)?;
        Ok(Self { path })
    }

    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the side channel to its end in a blocking task: the open waits for the
    /// writer (the wrapper's `podman exec`), the read for its end.
    fn read(&self, scope: &Scope) -> tokio::task::JoinHandle<String> {
        let path = self.path.clone();
        scope.spawn_blocking("podman-exec-status", move || {
            use std::io::Read;
            let mut text = String::new();
            if let Ok(mut f) = std::fs::File::open(&path) {
                let _ = f.read_to_string(&mut text);
            }
            text
        })
    }

    /// Ends a blocked open of the reading side (the writer never came).
    fn unblock(&self) {
        use std::os::unix::fs::OpenOptionsExt;
        let _ = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(nix::libc::O_NONBLOCK)
            .open(&self.path);
    }
}

impl Drop for Fifo {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// How a command ended, for the calls after the first that saw it.
#[derive(Debug, Clone)]
enum Done {
    Exited(ExitInfo),
    Lost(Arc<str>),
}

/// [`ProcessControl`] of a command in a container.
pub(super) struct PodmanControl {
    pub(super) podman: Podman,
    pub(super) container: String,
    pub(super) target: String,
    pub(super) described: String,
    pub(super) token: String,
    pub(super) child: GroupChild,
    pub(super) fifo: Fifo,
    pub(super) status: Option<tokio::task::JoinHandle<String>>,
    pub(super) guard: Option<CleanupGuard>,
    pub(super) scope: Scope,
    done: Option<Done>,
}

impl std::fmt::Debug for PodmanControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PodmanControl")
            .field("container", &self.container)
            .field("command", &self.described)
            .field("done", &self.done)
            .finish()
    }
}

/// Why a command has no exit status: the wrapper never reported its end.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct NoEnd(Arc<str>);

impl PodmanControl {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        podman: Podman,
        container: String,
        target: String,
        described: String,
        token: String,
        child: GroupChild,
        fifo: Fifo,
        scope: &Scope,
    ) -> Self {
        let status = Some(fifo.read(scope));
        let guard = {
            let (podman, container, token) = (podman.clone(), container.clone(), token.clone());
            let cleanup_scope = scope.shielded("podman-exec-kill");
            CleanupGuard::new(
                scope,
                format!(
                    "kill the processes of `{described}` in container {container} (environment {TOKEN_VAR}={token})"
                ),
                move || async move {
                    signal_token(&podman, &container, &token, "KILL", &cleanup_scope)
                        .await
                        .or_else(|e| {
                            if e.is_not_found()
                                || e.message().is_some_and(|m| m.contains("running"))
                            {
                                Ok(())
                            } else {
                                Err(e)
                            }
                        })
                        .map_err(Into::into)
                },
            )
        };
        Self {
            podman,
            container,
            target,
            described,
            token,
            child,
            fifo,
            status,
            guard: Some(guard),
            scope: scope.clone(),
            done: None,
        }
    }

    fn cached(&self) -> Option<Result<ExitInfo, ConnectionError>> {
        self.done.as_ref().map(|d| match d {
            Done::Exited(info) => Ok(*info),
            Done::Lost(why) => Err(self.lost(why.clone())),
        })
    }

    fn lost(&self, why: Arc<str>) -> ConnectionError {
        ConnectionError::disconnected(
            self.target.clone(),
            Some(format!("running `{}`", self.described)),
            NoEnd(why),
        )
    }

    async fn settle(&mut self) -> Result<ExitInfo, ConnectionError> {
        let client = self
            .child
            .wait()
            .await
            .map_err(|source| ConnectionError::Io {
                context: format!("waiting for podman exec of `{}`", self.described),
                source,
            })?;
        // The client is gone: a writer that never came will not come any more.
        self.fifo.unblock();
        let text = match self.status.as_mut() {
            Some(h) => h.await.unwrap_or_default(),
            None => String::new(),
        };
        self.status = None;
        let report = Report::parse(&text);
        match report.end {
            Some((code, leaked)) => {
                if let Some(g) = self.guard.take() {
                    g.disarm();
                }
                let info = ExitInfo {
                    status: status_of(code),
                    leaked,
                };
                if leaked {
                    tracing::warn!(command = %self.described, container = %self.container,
                        "processes outlived the command in the container; killed them");
                }
                self.done = Some(Done::Exited(info));
                Ok(info)
            }
            None => {
                let why: Arc<str> = if report.started {
                    format!(
                        "the command's wrapper ended without a status (podman exec ended with {}): the container stopped or rebooted",
                        client.status
                    )
                    .into()
                } else {
                    format!(
                        "podman exec ended with {} before the command started (the container is not running, or has no /bin/sh)",
                        client.status
                    )
                    .into()
                };
                if !report.started
                    && let Some(g) = self.guard.take()
                {
                    g.disarm();
                }
                self.done = Some(Done::Lost(why.clone()));
                Err(self.lost(why))
            }
        }
    }
}

#[async_trait]
impl ProcessControl for PodmanControl {
    fn forget(&mut self) {
        if let Some(g) = self.guard.take() {
            g.disarm();
        }
    }

    async fn wait(&mut self) -> Result<ExitInfo, ConnectionError> {
        if let Some(r) = self.cached() {
            return r;
        }
        self.settle().await
    }

    async fn terminate(
        &mut self,
        grace: Duration,
        force: &CancellationToken,
    ) -> Result<ExitInfo, ConnectionError> {
        if let Some(r) = self.cached() {
            return r;
        }
        let scope = self.scope.shielded("podman-exec-terminate");
        if !force.is_cancelled() {
            if let Err(e) =
                signal_token(&self.podman, &self.container, &self.token, "TERM", &scope).await
            {
                tracing::warn!(error = %crate::error::chain(&e), container = %self.container,
                    "sending SIGTERM in the container failed");
            }
            tokio::select! {
                r = self.settle() => return r,
                _ = tokio::time::sleep(grace) => {}
                _ = force.cancelled() => {}
            }
        }
        if let Err(e) =
            signal_token(&self.podman, &self.container, &self.token, "KILL", &scope).await
        {
            tracing::warn!(error = %crate::error::chain(&e), container = %self.container,
                "sending SIGKILL in the container failed");
        }
        match tokio::time::timeout(AFTER_KILL_TIMEOUT, self.settle()).await {
            Ok(r) => r,
            Err(_) => {
                self.child.signal_group(nix::sys::signal::Signal::SIGKILL);
                Err(ConnectionError::Timeout {
                    what: format!("killing `{}` in {}", self.described, self.target),
                    after: AFTER_KILL_TIMEOUT,
                    last: None,
                })
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn reports_and_statuses() {
        let r = Report::parse("start\nend 143 1\n");
        assert!(r.started);
        assert_eq!(r.end, Some((143, true)));
        let r = Report::parse("start\n");
        assert!(r.started && r.end.is_none());
        assert_eq!(status_of(143), ExitStatus::Signal(15));
        assert_eq!(status_of(255), ExitStatus::Code(255));
        assert_eq!(status_of(128), ExitStatus::Code(128));
        assert_eq!(status_of(0), ExitStatus::Code(0));
        assert_ne!(token(), token());
        assert_eq!(token().len(), 32);
    }

    /// The wrapper and the killer run in this machine's own shell: status, leftovers,
    /// the environment marker, the working directory and the redirections.
    #[test]
    fn wrapper_runs_locally() {
        let dir = tempfile::tempdir().unwrap();
        let side = dir.path().join("side");
        let run = |args: &[&str]| {
            let mut c = std::process::Command::new("/bin/sh");
            c.arg("-c")
                .arg(format!("exec 3>\"$0\"; {WRAPPER}"))
                .arg(&side)
                .args(args);
            let out = c.output().unwrap();
            (out, std::fs::read_to_string(&side).unwrap())
        };
        let t = token();
        let (out, side_text) = run(&[
            &t,
            "+/",
            "",
            "sh",
            "-c",
            "pwd; echo \"$ATEX_PODMAN_EXEC\"; exit 7",
        ]);
        assert_eq!(String::from_utf8_lossy(&out.stdout), format!("/\n{t}\n"));
        assert_eq!(out.status.code(), Some(7));
        assert_eq!(side_text, "start\nend 7 0\n");
        let (out, side_text) = run(&[&t, "-", "m", "sh", "-c", "echo a; echo b >&2; sleep 30 &"]);
        assert_eq!(String::from_utf8_lossy(&out.stdout), "a\nb\n");
        assert_eq!(side_text, "start\nend 0 1\n");
        let (_, side_text) = run(&[&t, "+/nonexistent dir", "", "true"]);
        assert_eq!(side_text, "start\nend 1 0\n");
    }
}
