//! Leftover background processes and cancellation of whole process trees.

use std::time::Duration;

use super::target::{ConnectionTarget, Marker};
use crate::connection::{CommandSpec, ConnectionError, ConnectionExt, Output};
use crate::testing::conformance::{CheckResult, Context, ensure};

/// Background processes that outlive their command while holding its output open do not
/// keep it (or its output) from ending: they are killed and
/// [`ExitInfo::leaked`](crate::process::ExitInfo) says so.
pub async fn leftover_processes(t: &ConnectionTarget) -> CheckResult {
    let m = Marker::new();
    let out = t
        .output(CommandSpec::new(["sh", "-c", "sleep \"$N\" & echo started"]).env("N", &m.0))
        .await?;
    ensure!(
        out.stdout == b"started\n" && out.status.success(),
        "got {:?} and {}",
        out.stdout_lossy(),
        out.status
    );
    t.wait_count(&m, 0, "a background process outlived its command")
        .await?;
    let m = Marker::new();
    let mut p = t
        .conn
        .spawn(
            CommandSpec::new(["sh", "-c", "sleep \"$N\" &"])
                .env("N", &m.0)
                .stdout(Output::Null),
            &t.scope,
        )
        .await
        .context("spawning")?;
    let info = p.wait().await.context("waiting")?;
    ensure!(
        info.leaked && info.status.success(),
        "a command that left a background process ended with {info:?} (expected leaked)"
    );
    t.wait_count(&m, 0, "a background process outlived its command")
        .await?;
    let mut p = t
        .conn
        .spawn(CommandSpec::new(["true"]), &t.scope)
        .await
        .context("spawning true")?;
    let info = p.wait().await.context("waiting")?;
    ensure!(!info.leaked, "`true` was reported as leaking processes");
    Ok(())
}

/// A connection that says it supervises process groups
/// ([`Connection::supervises_process_groups`](crate::connection::Connection::supervises_process_groups))
/// has killed what a command left in its process group by the time [`Process::wait`]
/// returns, also a process that holds none of its outputs; dropping a running process
/// kills its group. Passes at once for a connection that does not say so.
///
/// [`Process::wait`]: crate::connection::Process::wait
pub async fn process_group_supervision(t: &ConnectionTarget) -> CheckResult {
    if !t.conn.supervises_process_groups() {
        return Ok(());
    }
    let m = Marker::new();
    let mut p = t
        .conn
        .spawn(
            CommandSpec::new([
                "sh",
                "-c",
                "sleep \"$N\" </dev/null >/dev/null 2>&1 & echo started",
            ])
            .env("N", &m.0)
            .stdout(Output::Null),
            &t.scope,
        )
        .await
        .context("spawning")?;
    p.wait().await.context("waiting")?;
    let left = t.count(&m).await?;
    ensure!(
        left == 0,
        "{left} process(es) the command left in its group, holding none of its outputs, \
         were alive when wait returned"
    );
    let m = Marker::new();
    let p = t
        .conn
        .spawn(
            CommandSpec::new(["sh", "-c", "sleep \"$N\" </dev/null >/dev/null 2>&1 & wait"])
                .env("N", &m.0)
                .stdout(Output::Null),
            &t.scope,
        )
        .await
        .context("spawning")?;
    t.wait_count(&m, 1, "the background process never started")
        .await?;
    drop(p);
    t.wait_count(&m, 0, "dropping a running process left its group alive")
        .await
}

/// Cancellation kills the command's whole process tree (a child and a grandchild), also
/// when they ignore SIGTERM; dropping a running process kills its tree;
/// [`ConnectionExt::output`] returns [`ConnectionError::Cancelled`].
pub async fn cancellation(t: &ConnectionTarget) -> CheckResult {
    for ignore_term in [false, true] {
        let scope = t.scope.child("conformance-cancel");
        scope.set_kill_grace(Duration::from_millis(300));
        let m = Marker::new();
        let mut p = t
            .conn
            .spawn(m.tree(ignore_term).stdout(Output::Null), &scope)
            .await
            .context("spawning a process tree")?;
        t.wait_count(&m, 2, "the child and grandchild never started")
            .await?;
        scope.cancel();
        let (info, cancelled) = p
            .wait_or_terminate(&scope)
            .await
            .context("terminating a cancelled command")?;
        ensure!(
            cancelled,
            "wait_or_terminate did not report the cancellation"
        );
        ensure!(
            !info.status.success(),
            "a terminated command ended with {}",
            info.status
        );
        let what = if ignore_term {
            "the child or grandchild (ignoring SIGTERM) survived the cancellation"
        } else {
            "the child or grandchild survived the cancellation"
        };
        t.wait_count(&m, 0, what).await?;
    }

    let m = Marker::new();
    let p = t
        .conn
        .spawn(m.tree(false).stdout(Output::Null), &t.scope)
        .await
        .context("spawning a process tree")?;
    t.wait_count(&m, 2, "the child and grandchild never started")
        .await?;
    drop(p);
    t.wait_count(
        &m,
        0,
        "dropping the process left its child or grandchild running",
    )
    .await?;

    let scope = t.scope.child("conformance-cancel-output");
    scope.set_kill_grace(Duration::from_millis(300));
    let m = Marker::new();
    let canceller = async {
        let seen = t
            .wait_count(&m, 2, "the child and grandchild never started")
            .await;
        scope.cancel();
        seen
    };
    let (res, seen) = tokio::join!(t.conn.output(m.tree(false), &scope), canceller);
    seen?;
    ensure!(
        matches!(res, Err(ConnectionError::Cancelled)),
        "a cancelled output() returned {res:?} (expected ConnectionError::Cancelled)"
    );
    t.wait_count(&m, 0, "a cancelled output() left its processes running")
        .await
}
