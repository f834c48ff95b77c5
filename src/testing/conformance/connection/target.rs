//! [`ConnectionTarget`]: the connection under test, and what the checks share: running
//! shell snippets, and finding a check's processes on the system.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use crate::connection::{CommandOutput, CommandSpec, Connection, ConnectionExt};
use crate::scope::Scope;
use crate::testing::conformance::{
    CheckResult, Context, DEFAULT_DEADLINE, Violation, ensure, wait_for,
};

/// A connection under test.
#[derive(Clone)]
pub struct ConnectionTarget {
    pub(super) conn: Arc<dyn Connection>,
    pub(super) scratch: String,
    pub(super) scope: Scope,
    pub(super) deadline: Duration,
}

impl std::fmt::Debug for ConnectionTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionTarget")
            .field("conn", &self.conn.describe())
            .field("scratch", &self.scratch)
            .finish()
    }
}

impl ConnectionTarget {
    /// Checks `conn`. `scratch` is an existing, empty directory on the system that the
    /// user of the connection may write to; the checks write only below it (an absolute
    /// path, or one relative to the connection's default directory). Commands run in
    /// children of `scope`.
    pub fn new(conn: Arc<dyn Connection>, scratch: impl Into<String>, scope: &Scope) -> Self {
        Self {
            conn,
            scratch: scratch.into(),
            scope: scope.clone(),
            deadline: DEFAULT_DEADLINE,
        }
    }

    /// How long one check may take (default [`DEFAULT_DEADLINE`]).
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.deadline = deadline;
        self
    }

    /// A path below the scratch directory.
    pub(super) fn path(&self, rel: &str) -> String {
        format!("{}/{rel}", self.scratch.trim_end_matches('/'))
    }

    pub(super) async fn output(&self, cmd: CommandSpec) -> Result<CommandOutput, Violation> {
        let shown = cmd.display();
        self.conn
            .output(cmd, &self.scope)
            .await
            .context(format!("running {shown}"))
    }

    /// Runs `sh -c script sh args…`, which must succeed; returns its stdout.
    pub(super) async fn sh(&self, script: &str, args: &[&str]) -> Result<Vec<u8>, Violation> {
        let mut argv = vec!["sh", "-c", script, "sh"];
        argv.extend_from_slice(args);
        let out = self.output(CommandSpec::new(argv)).await?;
        ensure!(
            out.status.success(),
            "`sh -c {script:?}` ended with {}: {}",
            out.status,
            out.stderr_lossy()
        );
        Ok(out.stdout)
    }

    /// How many live processes carry `marker` on their command line.
    pub(super) async fn count(&self, marker: &Marker) -> Result<usize, Violation> {
        let (p1, p2) = marker.0.split_at(4);
        let out = self
            .output(CommandSpec::new(["sh", "-c", PROBE]).envs([("P1", p1), ("P2", p2)]))
            .await?;
        let text = out.stdout_lossy();
        text.trim()
            .parse()
            .map_err(|_| Violation(format!("the process probe printed {text:?}")))
    }

    /// Waits until exactly `n` processes carry `marker`.
    pub(super) async fn wait_count(&self, marker: &Marker, n: usize, what: &str) -> CheckResult {
        let limit = self.deadline / 4;
        wait_for(limit, what, || async {
            Ok((self.count(marker).await? == n).then_some(()))
        })
        .await
    }
}

/// Counts live (not zombie) processes whose command line contains `$P1$P2` (the marker is
/// split so that no command line of the probe itself contains it).
const PROBE: &str = r#"n=0
for d in /proc/[0-9]*; do
  c=$(tr '\000' ' ' < "$d/cmdline" 2>/dev/null) || continue
  case "$c" in
    *"$P1$P2"*)
      s=$(cat "$d/stat" 2>/dev/null) || continue
      set -- ${s##*)}
      case "$1" in Z|X) ;; *) n=$((n+1)) ;; esac ;;
  esac
done
echo "$n""#;

/// A number unique to one check, used as a `sleep` duration so that the processes of
/// that check can be found on the system.
pub(super) struct Marker(pub(super) String);

impl Marker {
    pub(super) fn new() -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos() as u64 ^ d.as_secs())
            .unwrap_or(0);
        let mix = nanos
            .wrapping_add(u64::from(std::process::id()) << 20)
            .wrapping_add(u64::from(NEXT.fetch_add(1, Ordering::Relaxed)) * 7919);
        Marker(format!("9{:08}", mix % 100_000_000))
    }

    /// A shell whose child `sleep` and grandchild `sleep` (in a subshell) carry the marker;
    /// with `ignore_term` all of them ignore SIGTERM.
    pub(super) fn tree(&self, ignore_term: bool) -> CommandSpec {
        let trap = if ignore_term { "trap '' TERM; " } else { "" };
        let script = format!(
            "{trap}sleep \"$N\" & ( sleep \"$N\" & wait ) & echo started; wait; echo never"
        );
        CommandSpec::new(["sh", "-c", &script]).env("N", &self.0)
    }
}
