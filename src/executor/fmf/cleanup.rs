//! Cleanup on the system: killing what is left of a test, and cleanup scripts that run
//! even when the caller's scope is already cancelled.

use std::sync::Arc;
use std::time::Duration;

use super::shell::ScriptFailed;
use super::workdir::pgid_file;
use crate::connection::{
    CommandSpec, Connection, ConnectionError, ConnectionExt, ErrOutput, Input, Process, shell_quote,
};
use crate::error::chain;
use crate::guard::CleanupGuard;
use crate::scope::Scope;

/// How long cleanup commands (killing a leftover test, removing the work directory) may
/// take when the caller's scope is already cancelled.
pub(super) const CLEANUP_TIMEOUT: Duration = Duration::from_secs(15);

/// A guard that kills the test's process group (recorded by the wrapper) through the
/// connection; released by [`kill_test`], handed to the scope's reaper
/// if dropped while armed.
pub(super) fn kill_guard(
    conn: &Arc<dyn Connection>,
    test: &str,
    work: &str,
    restarts: u32,
    scope: &Scope,
) -> CleanupGuard {
    let conn = conn.clone();
    let script = format!(
        "f={}\n[ -f \"$f\" ] || exit 0\nread -r g < \"$f\" && [ -n \"$g\" ] && kill -KILL -- \"-$g\" 2>/dev/null\n: > \"$f\"\nexit 0\n",
        shell_quote(&pgid_file(work, restarts))
    );
    let what = format!("processes of test {test} on {}", conn.describe());
    let owner = scope.clone();
    CleanupGuard::new(scope, what, move || async move {
        Ok(run_cleanup(conn.as_ref(), script, &owner).await?)
    })
}

/// Kills the wrapper and the test's whole process group on the system. Without a guard
/// (a test started directly on a connection that supervises its process group) the
/// termination of the process reaches the whole group.
pub(super) async fn kill_test(proc: &mut Process, guard: Option<CleanupGuard>, scope: &Scope) {
    // SIGTERM: the wrapper hangs up the test's group, gives it a second, SIGKILLs it.
    if let Err(e) = proc
        .terminate(scope.kill_grace(), scope.force_token())
        .await
    {
        tracing::warn!(error = %chain(&e), "terminating the test wrapper failed");
    }
    // If the wrapper was killed before it could clean up, its group id file remains.
    kill_group(guard).await;
}

/// Kills the test's process group through its guard (if any), bounded in time.
pub(super) async fn kill_group(guard: Option<CleanupGuard>) {
    let Some(guard) = guard else { return };
    match tokio::time::timeout(CLEANUP_TIMEOUT, guard.release()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(error = %chain(&e), "killing the test's processes failed"),
        Err(_) => tracing::warn!("killing the test's processes timed out"),
    }
}

/// Runs a cleanup script even when the caller's scope is cancelled, bounded in time.
pub(super) async fn cleanup_script(
    conn: &dyn Connection,
    script: String,
    what: &str,
    scope: &Scope,
) {
    let run = run_cleanup(conn, script, scope);
    match tokio::time::timeout(CLEANUP_TIMEOUT, run).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(%what, error = %chain(&e), "cleanup failed"),
        Err(_) => tracing::warn!(%what, "cleanup timed out"),
    }
}

/// Runs a bash cleanup script in a shielded child of `scope`: graceful cancellation of the
/// caller (which may have happened already) does not stop it, forcing does.
async fn run_cleanup(
    conn: &dyn Connection,
    script: String,
    scope: &Scope,
) -> Result<(), CleanupFailed> {
    let cleanup = scope.shielded("fmf-cleanup");
    let cmd = CommandSpec::new(["bash"])
        .stdin(Input::Bytes(script.into_bytes()))
        .stderr(ErrOutput::ToStdout);
    match conn.output(cmd, &cleanup).await {
        Ok(out) if out.status.success() => Ok(()),
        Ok(out) => Err(CleanupFailed::Script(ScriptFailed {
            status: out.status,
            output: out.stdout_lossy(),
        })),
        Err(e) => Err(CleanupFailed::Connection(e)),
    }
}

/// Why a cleanup script on the system failed.
#[derive(Debug, thiserror::Error)]
enum CleanupFailed {
    /// It ran and failed.
    #[error("the cleanup script failed")]
    Script(#[source] ScriptFailed),
    /// It could not be run.
    #[error("the cleanup script could not be run")]
    Connection(#[source] ConnectionError),
}
