//! Checks of the [`Remote`](crate::provisioner::Remote) contract on the remotes of a
//! provisioner: idempotent (also concurrent) release, everything refused after release,
//! the place freed by a dropped remote, and `mark_destroyed`.

use super::provisioner::ProvisionerTarget;
use super::{CheckResult, Context, Report, Violation, ensure};
use crate::connection::{CommandSpec, ConnectionError, ConnectionExt};
use crate::provisioner::Count;

/// Runs every check of this module.
pub async fn all(target: &ProvisionerTarget) -> Report {
    let mut report = Report::new("remotes");
    let d = target.deadline;
    report
        .run("remote::release_idempotent", d, release_idempotent(target))
        .await;
    report
        .run(
            "remote::released_refuses_everything",
            d,
            released_refuses_everything(target),
        )
        .await;
    if target.has_limited() {
        report
            .run(
                "remote::dropped_remote_frees_its_place",
                d,
                dropped_remote_frees_its_place(target),
            )
            .await;
    } else {
        report.skip(
            "remote::dropped_remote_frees_its_place",
            "no limited factory given",
        );
    }
    if target.reuses_systems && target.capacity < 2 {
        report.skip(
            "remote::mark_destroyed",
            "a provisioner reusing one system has none left after it is destroyed",
        );
    } else {
        report
            .run("remote::mark_destroyed", d, mark_destroyed(target))
            .await;
    }
    report
}

/// `release` is idempotent, also when called concurrently; `is_released` says so.
pub async fn release_idempotent(t: &ProvisionerTarget) -> CheckResult {
    let p = t.started().await?;
    p.provision(Count::N(1)).context("provision")?;
    let r = t.get(p.as_ref()).await?;
    t.works(r.as_ref()).await?;
    let outcomes = futures::future::join_all((0..8).map(|_| r.release())).await;
    for outcome in outcomes {
        outcome.context("one of 8 concurrent releases")?;
    }
    ensure!(r.is_released(), "is_released is false after release");
    r.release().await.context("a release after release")?;
    p.stop().await.context("stop")?;
    Ok(())
}

/// After `release`, `spawn`, `upload`, `download` and `reconnect` fail with
/// [`ConnectionError::released`] and touch nothing, and `local_path` names no place to
/// write.
pub async fn released_refuses_everything(t: &ProvisionerTarget) -> CheckResult {
    let p = t.started().await?;
    p.provision(Count::N(1)).context("provision")?;
    let r = t.get(p.as_ref()).await?;
    if t.commands {
        let out = r
            .check(CommandSpec::new(["echo", "alive"]), &t.scope)
            .await
            .context("running echo before release")?;
        ensure!(
            out.stdout == b"alive\n",
            "echo printed {:?}",
            out.stdout_lossy()
        );
    }
    let name = r.describe();
    r.release().await.context("release")?;
    let expected = ConnectionError::released(name.clone()).to_string();
    let judge = |op: &str, res: Result<(), ConnectionError>| -> CheckResult {
        match res {
            Ok(()) => Err(Violation(format!(
                "{op} on the released remote {name} worked"
            ))),
            Err(e) => {
                ensure!(
                    e.is_disconnect() && e.to_string() == expected,
                    "{op} on the released remote {name} failed with {e:?} (expected {expected:?})"
                );
                Ok(())
            }
        }
    };
    let spawned = r
        .spawn(CommandSpec::new(["true"]), &t.scope)
        .await
        .map(drop);
    judge("spawn", spawned)?;
    let local = tempfile::tempdir().context("a local temporary directory")?;
    let file = local.path().join("f");
    std::fs::write(&file, b"data").context("writing a local file")?;
    judge("upload", r.upload(&file, "atex-after-release").await)?;
    let dest = local.path().join("down");
    judge("download", r.download("atex-after-release", &dest).await)?;
    ensure!(
        !dest.exists(),
        "a refused download created {}",
        dest.display()
    );
    judge("reconnect", r.reconnect(&t.scope).await)?;
    ensure!(
        r.local_path("atex-after-release").is_none(),
        "local_path still names a place to write on the released remote {name}"
    );
    p.stop().await.context("stop")?;
    Ok(())
}

/// A remote dropped without release still gives its place back: with room for one system,
/// the next request goes through.
pub async fn dropped_remote_frees_its_place(t: &ProvisionerTarget) -> CheckResult {
    let Some(p) = t.started_limited().await? else {
        return Ok(());
    };
    p.provision(Count::N(2)).context("provision")?;
    let first = t.get(p.as_ref()).await?;
    drop(first);
    let second = t.get(p.as_ref()).await.map_err(|e| {
        Violation(format!(
            "a remote dropped without release kept its place: {e}"
        ))
    })?;
    t.works(second.as_ref()).await?;
    second.release().await.context("release")?;
    p.stop().await.context("stop")?;
    Ok(())
}

/// A remote released after `mark_destroyed` is never handed out again.
pub async fn mark_destroyed(t: &ProvisionerTarget) -> CheckResult {
    let p = t.started().await?;
    p.provision(Count::N(1)).context("provision")?;
    let broken = t.get(p.as_ref()).await?;
    let name = broken.describe();
    broken.mark_destroyed();
    broken.release().await.context("release")?;
    for _ in 0..3 {
        p.provision(Count::N(1)).context("provision")?;
        let next = t.get(p.as_ref()).await?;
        ensure!(
            next.describe() != name,
            "the system {name} was handed out again after it was marked destroyed"
        );
        t.works(next.as_ref()).await?;
        next.release().await.context("release")?;
    }
    p.stop().await.context("stop")?;
    Ok(())
}
