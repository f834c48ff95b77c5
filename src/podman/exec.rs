//! Commands in a container: the wrapper that runs them, the side channel that reports how
//! they ended, and the [`ProcessControl`] that kills them *inside* the container.
//!
//! Killing the `podman exec` client does not stop the command in the container, and
//! `podman exec`'s exit code cannot tell `exit 143` from SIGTERM, nor whether the command
//! left processes behind. So every command runs under a small POSIX shell wrapper (the
//! container needs `/bin/sh`, `grep -z`, `kill` and `/proc`; busybox has them):
//!
//! * the wrapper is the session leader of its `podman exec` (runc makes every exec'd
//!   process one) and carries `ATEX_PODMAN_WRAPPER=<token>` in its environment; the
//!   command gets `ATEX_PODMAN_EXEC=<token>` instead, which its children inherit;
//! * the command's processes are: those carrying the marker, those in the wrapper's session
//!   (found in `/proc/PID/stat`: this also finds children that cleared their environment,
//!   `env -i …`, and orphans of the command that did not call `setsid`), the wrapper's
//!   children, processes remembered from an earlier signal (PID and start time), and every
//!   descendant of any of these (by their parent links: this finds `setsid env -i …` while
//!   its parent lives);
//! * terminating a command is a second `podman exec` that finds them, stops them all
//!   (SIGSTOP, again until no new one appears, so that none can fork or be orphaned
//!   unseen), then sends SIGTERM and SIGCONT to each and prints them (PID and start time),
//!   so that the SIGKILL after the grace (and a last sweep when the command ended by
//!   itself) also gets the ones that meanwhile lost their parent; SIGKILL stops them the
//!   same way and kills them until none is left;
//! * once the command ended, processes still found are leftovers: after a moment they are
//!   stopped and killed the same way;
//! * the wrapper reports `start` and then `end STATUS LEAKED` on file descriptor 3 (a FIFO
//!   on this side, handed in with `--preserve-fds=1`); the command itself does not get
//!   descriptor 3.
//!
//! What still escapes: a process that cleared its environment (or removed the marker),
//! left the wrapper's session (`setsid`, as every daemon does) *and* lost its parent before
//! the processes are looked for: the classic double-forked daemon started with `env -i`,
//! or `setsid env -i CMD &` in a command that has ended by itself. It is then a child of
//! the container's init like the container's own services, and nothing tells it apart; it
//! lives until the container is removed. So does anything the command has another process
//! start for it (`systemctl start`, `systemd-run`, a second `podman exec`).
//!
//! An exit code of 129 to 192 is taken as "killed by signal N−128": see
//! [`status_of`] for why the two cannot be told apart.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
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

/// The environment variable that marks the wrapper (set by `podman exec -e`).
pub(super) const WRAPPER_VAR: &str = "ATEX_PODMAN_WRAPPER";

/// How long to wait for a command to end after SIGKILL before giving up.
const AFTER_KILL_TIMEOUT: Duration = Duration::from_secs(15);

/// Shell functions of the wrapper and the killer (POSIX sh; every variable is prefixed
/// `atex_`, so that none changes a variable the container exports to the command):
///
/// * `atex_scan` sets `atex_F` to the PIDs (` PID PID `) of the command marked `atex_T`
///   whose wrapper is `atex_W` (empty: unknown), with the remembered `PID:START` pairs
///   `atex_R`; and `atex_Q` to their `PID:START` pairs. Zombies are skipped; so are the
///   wrapper and the scanning shell. It forks only for one `grep`, which has ended before
///   `/proc/*/stat` is read.
/// * `atex_freeze` stops what `atex_scan` finds, again until it finds nothing new; `atex_P`
///   holds them.
/// * `atex_kill` freezes and kills until nothing is found (1: gave up).
macro_rules! procs_sh {
    () => {
        r#"atex_scan() {
  atex_F=" "; atex_Q=; atex_S=
  for atex_x in $(grep -l -z -x -F "ATEX_PODMAN_EXEC=$atex_T" /proc/[0-9]*/environ 2>/dev/null); do
    atex_x=${atex_x#/proc/}; atex_F="$atex_F${atex_x%/environ} "
  done
  for atex_x in /proc/[0-9]*/stat; do
    { read -r atex_z < "$atex_x"; } 2>/dev/null || continue
    atex_x=${atex_x#/proc/}; atex_x=${atex_x%/stat}
    case $atex_x in "$atex_W"|"$$") continue ;; esac
    set -- ${atex_z##*) }
    case $1 in Z|X) continue ;; esac
    case $2$4${20} in ''|*[!0-9]*) continue ;; esac
    atex_S="$atex_S $atex_x:$2:$4:${20}"
    case $atex_F in *" $atex_x "*) continue ;; esac
    if [ -n "$atex_W" ] && { [ "$4" = "$atex_W" ] || [ "$2" = "$atex_W" ]; }; then
      atex_F="$atex_F$atex_x "
    else
      case " $atex_R " in *" $atex_x:${20} "*) atex_F="$atex_F$atex_x " ;; esac
    fi
  done
  atex_c=1
  while [ $atex_c = 1 ]; do
    atex_c=0
    for atex_r in $atex_S; do
      atex_x=${atex_r%%:*}
      case $atex_F in *" $atex_x "*) continue ;; esac
      atex_y=${atex_r#*:}; atex_y=${atex_y%%:*}
      case $atex_F in *" $atex_y "*) atex_F="$atex_F$atex_x "; atex_c=1 ;; esac
    done
  done
  for atex_r in $atex_S; do
    case $atex_F in *" ${atex_r%%:*} "*) atex_Q="$atex_Q ${atex_r%%:*}:${atex_r##*:}" ;; esac
  done
  return 0
}
atex_freeze() {
  atex_P=" "; atex_n=0
  while :; do
    atex_scan
    atex_y=
    for atex_x in $atex_F; do
      case $atex_P in *" $atex_x "*) ;; *) atex_y="$atex_y $atex_x" ;; esac
    done
    [ -z "$atex_y" ] && return 0
    for atex_x in $atex_y; do kill -s STOP "$atex_x" 2>/dev/null; atex_P="$atex_P$atex_x "; done
    atex_n=$((atex_n+1)); [ $atex_n -lt 50 ] || return 0
  done
}
atex_kill() {
  atex_m=0
  while :; do
    atex_freeze
    [ "$atex_P" = " " ] && return 0
    for atex_x in $atex_P; do kill -s KILL "$atex_x" 2>/dev/null; done
    atex_m=$((atex_m+1)); [ $atex_m -lt 100 ] || return 1
    sleep 0.05 2>/dev/null || sleep 1
  done
}
"#
    };
}

/// The wrapper: `sh -c WRAPPER atex TOKEN CWD REDIRECTS argv…`, run with
/// `ATEX_PODMAN_WRAPPER=TOKEN` in its environment. `CWD` is `-` (none) or `+DIR`;
/// `REDIRECTS` holds `o` (stdout to /dev/null), `e` (stderr to /dev/null), `m` (stderr
/// into stdout), `i` (stdin from /dev/null).
pub(super) const WRAPPER: &str = concat!(
    procs_sh!(),
    r#"atex_T=$1; atex_dir=$2; atex_red=$3; shift 3
unset ATEX_PODMAN_WRAPPER
atex_W=$$; atex_R=
echo start >&3
case $atex_dir in +*) cd "${atex_dir#+}" || { echo "end 1 0" >&3; exit 1; } ;; esac
exec 4<&0
case $atex_red in *i*) exec 4</dev/null ;; esac
case $atex_red in *o*) exec 1>/dev/null ;; esac
case $atex_red in *e*) exec 2>/dev/null ;; *m*) exec 2>&1 ;; esac
ATEX_PODMAN_EXEC=$atex_T "$@" 0<&4 3>&- 4<&- &
atex_pid=$!
exec 4<&-
wait "$atex_pid"; atex_st=$?
atex_lk=0
atex_scan
if [ "$atex_F" != " " ]; then
  sleep 0.1 2>/dev/null || sleep 1
  atex_scan
  if [ "$atex_F" != " " ]; then atex_lk=1; atex_kill; fi
fi
echo "end $atex_st $atex_lk" >&3
exit $atex_st
"#
);

/// The killer: `sh -c KILLER atex SIGNAL TOKEN [PID:START]...`. With `TERM`: stops the
/// command's processes, prints them (`PID:START` pairs), sends them SIGTERM and SIGCONT.
/// With `KILL`: kills them (and the remembered ones given) until none is left.
pub(super) const KILLER: &str = concat!(
    procs_sh!(),
    r#"atex_sig=$1; atex_T=$2; shift 2; atex_R="$*"; atex_W=
for atex_x in $(grep -l -z -x -F "ATEX_PODMAN_WRAPPER=$atex_T" /proc/[0-9]*/environ 2>/dev/null); do
  atex_x=${atex_x#/proc/}; atex_x=${atex_x%/environ}
  { read -r atex_z < "/proc/$atex_x/stat"; } 2>/dev/null || continue
  set -- ${atex_z##*) }
  [ "$4" = "$atex_x" ] && atex_W=$atex_x
done
if [ "$atex_sig" = TERM ]; then
  atex_freeze
  echo "$atex_Q"
  for atex_x in $atex_P; do kill -s TERM "$atex_x" 2>/dev/null; done
  for atex_x in $atex_P; do kill -s CONT "$atex_x" 2>/dev/null; done
  exit 0
fi
atex_kill
"#
);

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

/// Signals the processes of the command marked `token` in `container` (`TERM` or `KILL`,
/// see [`KILLER`]), with the processes `remembered` from an earlier call; returns the
/// processes found (`PID:START` pairs; with `TERM` only).
pub(super) async fn signal_token(
    podman: &Podman,
    container: &str,
    token: &str,
    signal: &str,
    remembered: &[String],
    scope: &Scope,
) -> Result<Vec<String>, super::PodmanError> {
    let mut args = vec![
        "exec", container, "/bin/sh", "-c", KILLER, "atex", signal, token,
    ];
    args.extend(remembered.iter().map(String::as_str));
    let out = podman.run(&args, scope).await?;
    Ok(parse_found(&out))
}

/// The `PID:START` pairs the killer printed (anything else is dropped: they are handed
/// back to the killer as arguments).
fn parse_found(out: &str) -> Vec<String> {
    out.split_whitespace()
        .filter(|w| {
            w.split_once(':').is_some_and(|(p, s)| {
                !p.is_empty()
                    && !s.is_empty()
                    && p.len() <= 10
                    && s.len() <= 20
                    && p.bytes().chain(s.bytes()).all(|b| b.is_ascii_digit())
            })
        })
        .take(10_000)
        .map(str::to_string)
        .collect()
}

/// Processes of a command found by SIGTERM, for the SIGKILL after it.
type Remembered = Arc<Mutex<Vec<String>>>;

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

/// A shell's exit code as a status: 129–192 is a signal.
///
/// The two cannot be told apart through podman: `podman exec` reports a command killed
/// by signal N as exit code 128+N (conmon's exit file holds only that number), and so does
/// the wrapper's `wait` in any shell. The kernel keeps the real wait status only while the
/// process is a zombie (`/proc/PID/stat`, field 52), that is until its parent reaps it,
/// and a shell parent reaps it before any shell code can read it: dash and busybox ash
/// reap inside `wait` (and in every wait for a foreground command), bash (`/bin/sh` of
/// Fedora and RHEL images) reaps from its SIGCHLD handler, before a `CHLD` trap runs.
/// A parent that never reaps (the command started under a `sleep` that is killed later)
/// would need the wrapper to poll `/proc` for the whole duration of every command (a
/// process every few milliseconds, the end seen late) and would leave a zombie in every
/// container without an init. So `exit 130` arrives as signal 2, and a command killed by
/// SIGKILL as signal 9, as with upstream.
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
    remembered: Remembered,
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
        let remembered: Remembered = Arc::default();
        let guard = {
            let (podman, container, token) = (podman.clone(), container.clone(), token.clone());
            let remembered = remembered.clone();
            let cleanup_scope = scope.shielded("podman-exec-kill");
            CleanupGuard::new(
                scope,
                format!(
                    "kill the processes of `{described}` in container {container} (environment {TOKEN_VAR}={token})"
                ),
                move || async move {
                    let remembered = remembered.lock().map(|r| r.clone()).unwrap_or_default();
                    signal_token(
                        &podman,
                        &container,
                        &token,
                        "KILL",
                        &remembered,
                        &cleanup_scope,
                    )
                    .await
                    .map(|_| ())
                    .or_else(|e| {
                        if e.is_not_found() || e.message().is_some_and(|m| m.contains("running")) {
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
            remembered,
            done: None,
        }
    }

    fn remember(&self, found: Vec<String>) {
        if let Ok(mut r) = self.remembered.lock() {
            *r = found;
        }
    }

    fn remembered(&self) -> Vec<String> {
        self.remembered
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default()
    }

    /// Kills the processes SIGTERM found that are still alive (the ones the command no
    /// longer leads to).
    async fn kill_remembered(&mut self, scope: &Scope) {
        let remembered = self.remembered();
        if remembered.is_empty() {
            return;
        }
        if let Err(e) = signal_token(
            &self.podman,
            &self.container,
            &self.token,
            "KILL",
            &remembered,
            scope,
        )
        .await
            && !e.is_not_found()
            && !e.message().is_some_and(|m| m.contains("running"))
        {
            tracing::warn!(error = %crate::error::chain(&e), container = %self.container,
                "killing what SIGTERM left in the container failed");
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
            match signal_token(
                &self.podman,
                &self.container,
                &self.token,
                "TERM",
                &[],
                &scope,
            )
            .await
            {
                Ok(found) => self.remember(found),
                Err(e) => {
                    tracing::warn!(error = %crate::error::chain(&e), container = %self.container,
                        "sending SIGTERM in the container failed");
                }
            }
            let settled = tokio::select! {
                r = self.settle() => Some(r),
                _ = tokio::time::sleep(grace) => None,
                _ = force.cancelled() => None,
            };
            if let Some(r) = settled {
                // The command ended; what SIGTERM found and what lost its parent since
                // (and ignores SIGTERM) is no longer found through the command.
                self.kill_remembered(&scope).await;
                return r;
            }
        }
        if let Err(e) = signal_token(
            &self.podman,
            &self.container,
            &self.token,
            "KILL",
            &self.remembered(),
            &scope,
        )
        .await
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
        assert_eq!(
            parse_found(" 12:345 x 7:8\n-1:2 3: :4 5:6;rm\n"),
            vec!["12:345".to_string(), "7:8".to_string()]
        );
    }

    /// PIDs of live processes whose command line is exactly `args`.
    fn running(args: &str) -> Vec<i32> {
        let mut pids = Vec::new();
        for e in std::fs::read_dir("/proc").unwrap().flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
                continue;
            };
            let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
            if stat
                .rsplit_once(") ")
                .is_some_and(|(_, r)| r.starts_with('Z'))
            {
                continue;
            }
            let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
            if String::from_utf8_lossy(&cmdline)
                .replace('\0', " ")
                .trim_end()
                == args
            {
                pids.push(pid);
            }
        }
        pids
    }

    fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while !done() {
            assert!(std::time::Instant::now() < deadline, "{what}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The killer, in this machine's own shell, with the wrapper as a session leader (as
    /// runc starts it): SIGTERM stops and signals the marked command, a child that cleared
    /// its environment, one that also left the session, and one that ignores SIGTERM as
    /// well (orphaned when its parent died); SIGKILL with what SIGTERM found gets that one.
    #[test]
    fn killer_finds_children_without_the_marker_locally() {
        let dir = tempfile::tempdir().unwrap();
        let side = dir.path().join("side");
        let t = token();
        let n = 70_000 + std::process::id() % 10_000;
        let (a, b) = (format!("sleep {n}"), format!("sleep {}", n + 1));
        let script = format!(
            "env -i {a} & setsid env -i {a} & setsid env -i sh -c 'trap \"\" TERM; exec {a}' & {b}"
        );
        let mut wrapper = std::process::Command::new("setsid")
            .args(["sh", "-c"])
            .arg(format!("exec 3>\"$0\"; {WRAPPER}"))
            .arg(&side)
            .args([&t, "-", "i", "bash", "-c", &script])
            .env(WRAPPER_VAR, &t)
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        wait_for("the command's processes never ran", || {
            running(&a).len() == 3 && running(&b).len() == 1
        });
        let killer = |signal: &str, remembered: &[String]| {
            let out = std::process::Command::new("sh")
                .args(["-c", KILLER, "atex", signal, &t])
                .args(remembered)
                .output()
                .unwrap();
            assert!(out.status.success(), "{out:?}");
            parse_found(&String::from_utf8_lossy(&out.stdout))
        };
        let found = killer("TERM", &[]);
        assert!(found.len() >= 4, "{found:?}");
        let status = wrapper.wait().unwrap();
        assert_eq!(status.code(), Some(143));
        let side_text = std::fs::read_to_string(&side).unwrap();
        assert!(side_text.starts_with("start\nend 143 "), "{side_text}");
        assert_eq!(
            running(&a).len(),
            1,
            "the one ignoring SIGTERM is orphaned, alive"
        );
        killer("KILL", &found);
        wait_for("processes left", || {
            running(&a).is_empty() && running(&b).is_empty()
        });
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
