//! Checks of the [`Provisioner`] contract: provision/get/try_get/clear/stop,
//! [`Count::Unlimited`], cancel-safety of `get_remote`, `stop` releasing everything and
//! failing waiters, and `max_remotes`.

use std::sync::Arc;
use std::time::Duration;

use super::{CheckResult, Context, DEFAULT_DEADLINE, Report, Violation, ensure};
use crate::connection::{CommandSpec, ConnectionExt};
use crate::provisioner::{Count, ProvisionError, Provisioner, Remote};
use crate::scope::Scope;

type Factory = Arc<dyn Fn() -> Arc<dyn Provisioner> + Send + Sync>;

/// A provisioner under test: a factory of fresh, unstarted provisioners (each check uses
/// its own) and what the backend can do.
#[derive(Clone)]
pub struct ProvisionerTarget {
    make: Factory,
    limited: Option<Factory>,
    pub(super) scope: Scope,
    pub(super) deadline: Duration,
    pub(super) capacity: usize,
    pub(super) immediate: bool,
    pub(super) reuses_systems: bool,
    pub(super) commands: bool,
}

impl std::fmt::Debug for ProvisionerTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProvisionerTarget")
            .field("capacity", &self.capacity)
            .field("immediate", &self.immediate)
            .field("reuses_systems", &self.reuses_systems)
            .field("commands", &self.commands)
            .finish_non_exhaustive()
    }
}

impl ProvisionerTarget {
    /// Checks the provisioners `make` returns (fresh and not started). They run in
    /// children of `scope`. Defaults: room for at least 3 remotes at once, systems made in
    /// the background, never reused, commands supported.
    pub fn new<F>(make: F, scope: &Scope) -> Self
    where
        F: Fn() -> Arc<dyn Provisioner> + Send + Sync + 'static,
    {
        Self {
            make: Arc::new(make),
            limited: None,
            scope: scope.clone(),
            deadline: DEFAULT_DEADLINE,
            capacity: 3,
            immediate: false,
            reuses_systems: false,
            commands: true,
        }
    }

    /// A factory of provisioners with room for exactly one system at a time
    /// (`max_remotes` = 1), for the capacity checks (skipped without one).
    pub fn limited<F>(mut self, make: F) -> Self
    where
        F: Fn() -> Arc<dyn Provisioner> + Send + Sync + 'static,
    {
        self.limited = Some(Arc::new(make));
        self
    }

    /// How many remotes the provisioners can hand out at once at least (default 3; the
    /// checks hold at most 3).
    pub fn capacity(mut self, n: usize) -> Self {
        self.capacity = n.max(1);
        self
    }

    /// Systems are made synchronously: `try_get_remote` right after `provision` returns
    /// one, and after `clear` none (default false).
    pub fn immediate(mut self, yes: bool) -> Self {
        self.immediate = yes;
        self
    }

    /// A released system may be handed out again (a pool of machines; default false).
    pub fn reuses_systems(mut self, yes: bool) -> Self {
        self.reuses_systems = yes;
        self
    }

    /// Whether remotes run commands (default true; in-memory doubles do not).
    pub fn commands(mut self, yes: bool) -> Self {
        self.commands = yes;
        self
    }

    /// How long one check may take (default [`DEFAULT_DEADLINE`]).
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.deadline = deadline;
        self
    }

    /// A fresh started provisioner.
    pub(super) async fn started(&self) -> Result<Arc<dyn Provisioner>, Violation> {
        let p = (self.make)();
        p.start(&self.scope).await.context("start")?;
        Ok(p)
    }

    /// A fresh started provisioner with room for one system.
    pub(super) async fn started_limited(&self) -> Result<Option<Arc<dyn Provisioner>>, Violation> {
        let Some(make) = &self.limited else {
            return Ok(None);
        };
        let p = make();
        p.start(&self.scope).await.context("start")?;
        Ok(Some(p))
    }

    pub(super) fn has_limited(&self) -> bool {
        self.limited.is_some()
    }

    /// `get_remote` within the deadline.
    pub(super) async fn get(&self, p: &dyn Provisioner) -> Result<Arc<dyn Remote>, Violation> {
        match tokio::time::timeout(self.deadline / 2, p.get_remote()).await {
            Ok(res) => res.context(format!("get_remote on {}", p.describe())),
            Err(_) => Err(Violation(format!(
                "get_remote on {} did not return a requested remote within {:?}",
                p.describe(),
                self.deadline / 2
            ))),
        }
    }

    /// Runs `true` on `remote` when the backend runs commands.
    pub(super) async fn works(&self, remote: &dyn Remote) -> CheckResult {
        if !self.commands {
            return Ok(());
        }
        remote
            .check(CommandSpec::new(["true"]), &self.scope)
            .await
            .context(format!("running `true` on {}", remote.describe()))?;
        Ok(())
    }
}

/// Runs every check of this module.
pub async fn all(target: &ProvisionerTarget) -> Report {
    let subject = (target.make)().describe();
    let mut report = Report::new(format!("provisioner {subject}"));
    let d = target.deadline;
    report
        .run("provisioner::lifecycle", d, lifecycle(target))
        .await;
    report
        .run("provisioner::unlimited", d, unlimited(target))
        .await;
    report.run("provisioner::clear", d, clear(target)).await;
    report
        .run(
            "provisioner::get_remote_cancel_safety",
            d,
            get_remote_cancel_safety(target),
        )
        .await;
    report
        .run(
            "provisioner::stop_releases_everything",
            d,
            stop_releases_everything(target),
        )
        .await;
    if target.has_limited() {
        report
            .run("provisioner::max_remotes", d, max_remotes(target))
            .await;
    } else {
        report.skip("provisioner::max_remotes", "no limited factory given");
    }
    report
}

fn distinct(remotes: &[Arc<dyn Remote>]) -> CheckResult {
    let mut names: Vec<String> = remotes.iter().map(|r| r.describe()).collect();
    names.sort();
    let n = names.len();
    names.dedup();
    ensure!(
        names.len() == n,
        "the same system was handed out twice at once: {names:?}"
    );
    Ok(())
}

async fn release_all(remotes: &[Arc<dyn Remote>]) -> CheckResult {
    for r in remotes {
        r.release()
            .await
            .context(format!("releasing {}", r.describe()))?;
    }
    Ok(())
}

/// Requested remotes arrive connected and distinct; `stop` releases what is still held and
/// makes later calls fail ([`ProvisionError::Stopped`] from `get_remote`); `stop` twice is
/// fine.
pub async fn lifecycle(t: &ProvisionerTarget) -> CheckResult {
    let p = t.started().await?;
    let k = t.capacity.min(2);
    p.provision(Count::N(k)).context("provision")?;
    let mut remotes = Vec::new();
    for _ in 0..k {
        remotes.push(t.get(p.as_ref()).await?);
    }
    distinct(&remotes)?;
    for r in &remotes {
        ensure!(!r.is_released(), "{} was handed out released", r.describe());
        t.works(r.as_ref()).await?;
    }
    remotes[0]
        .release()
        .await
        .context("releasing the first remote")?;
    p.stop().await.context("stop")?;
    for r in &remotes {
        ensure!(r.is_released(), "stop did not release {}", r.describe());
    }
    match p.get_remote().await {
        Err(ProvisionError::Stopped(_)) => {}
        other => {
            return Err(Violation(format!(
                "get_remote after stop returned {:?} (expected ProvisionError::Stopped)",
                other.map(|r| r.describe())
            )));
        }
    }
    ensure!(
        p.try_get_remote().is_err(),
        "try_get_remote after stop did not fail"
    );
    ensure!(
        p.provision(Count::N(1)).is_err(),
        "provision after stop did not fail"
    );
    p.stop().await.context("a second stop")?;
    Ok(())
}

/// [`Count::Unlimited`] hands out remotes without further requests, up to the capacity.
pub async fn unlimited(t: &ProvisionerTarget) -> CheckResult {
    let p = t.started().await?;
    p.provision(Count::Unlimited).context("provision")?;
    let mut remotes = Vec::new();
    for _ in 0..t.capacity.min(3) {
        remotes.push(t.get(p.as_ref()).await?);
    }
    distinct(&remotes)?;
    p.clear();
    release_all(&remotes).await?;
    p.stop().await.context("stop")?;
    Ok(())
}

/// `clear` forgets outstanding requests (immediate provisioners then have nothing to hand
/// out); later requests are served again.
pub async fn clear(t: &ProvisionerTarget) -> CheckResult {
    let p = t.started().await?;
    p.provision(Count::N(5)).context("provision")?;
    let first = t.get(p.as_ref()).await?;
    p.clear();
    if t.immediate {
        let extra = p.try_get_remote().context("try_get_remote after clear")?;
        ensure!(
            extra.is_none(),
            "try_get_remote after clear handed out {:?}",
            extra.map(|r| r.describe())
        );
    }
    first.release().await.context("release")?;
    // Whatever was in flight may still come; a new request is served in any case.
    while let Some(r) = p.try_get_remote().context("try_get_remote")? {
        r.release().await.context("release")?;
    }
    p.provision(Count::N(1)).context("provision after clear")?;
    let again = t.get(p.as_ref()).await?;
    t.works(again.as_ref()).await?;
    again.release().await.context("release")?;
    p.stop().await.context("stop")?;
    Ok(())
}

/// A `get_remote` future dropped at any point loses no remote: every request is still
/// served by a later call.
pub async fn get_remote_cancel_safety(t: &ProvisionerTarget) -> CheckResult {
    let p = t.started().await?;
    let budgets_us = [0u64, 0, 50, 200, 1_000, 5_000, 20_000, 100_000];
    let mut dropped = 0;
    for budget in budgets_us {
        p.provision(Count::N(1)).context("provision")?;
        let remote = match tokio::time::timeout(Duration::from_micros(budget), p.get_remote()).await
        {
            Ok(res) => res.context("get_remote")?,
            Err(_) => {
                dropped += 1;
                t.get(p.as_ref()).await.map_err(|e| {
                    Violation(format!(
                        "after a get_remote future was dropped (at {budget} µs), the request \
                         was lost: {e}"
                    ))
                })?
            }
        };
        t.works(remote.as_ref()).await?;
        remote.release().await.context("release")?;
    }
    // Dropped while waiting with nothing to hand out, then a request comes.
    {
        let waiting = p.get_remote();
        tokio::pin!(waiting);
        let early = futures::poll!(waiting.as_mut());
        // Allowed (a provisioner may hand out more than asked for).
        if let std::task::Poll::Ready(Ok(r)) = early {
            r.release().await.context("release")?;
        }
    }
    p.provision(Count::N(1)).context("provision")?;
    let r = t.get(p.as_ref()).await?;
    r.release().await.context("release")?;
    tracing::debug!(dropped, "get_remote futures dropped before they returned");
    p.stop().await.context("stop")?;
    Ok(())
}

/// `stop` releases every remote handed out and not yet released, fails `get_remote` calls
/// waiting at that moment, and returns once done.
pub async fn stop_releases_everything(t: &ProvisionerTarget) -> CheckResult {
    let p = t.started().await?;
    let k = t.capacity.min(3);
    p.provision(Count::N(k)).context("provision")?;
    let mut held = Vec::new();
    for _ in 0..k {
        held.push(t.get(p.as_ref()).await?);
    }
    // One released by its holder before stop.
    let first = held.remove(0);
    first.release().await.context("release")?;
    // A waiter with nothing (more) asked for.
    let waiter = {
        let p = p.clone();
        t.scope
            .spawn("conformance-waiter", async move { p.get_remote().await })
    };
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    let early = waiter.is_finished();
    p.stop().await.context("stop")?;
    let waited = tokio::time::timeout(t.deadline / 2, waiter)
        .await
        .map_err(|_| Violation::new("a get_remote call waiting during stop never returned"))?
        .context("the waiting task")?;
    match waited {
        Ok(r) if early => held.push(r),
        Ok(r) => {
            return Err(Violation(format!(
                "a get_remote call waiting during stop returned {} instead of failing",
                r.describe()
            )));
        }
        Err(_) => {}
    }
    for r in &held {
        ensure!(r.is_released(), "stop left {} unreleased", r.describe());
        if t.commands {
            ensure!(
                r.spawn(CommandSpec::new(["true"]), &t.scope).await.is_err(),
                "{} still runs commands after stop",
                r.describe()
            );
        }
    }
    Ok(())
}

/// With room for one system: a second request waits until the first remote is released,
/// then goes through.
pub async fn max_remotes(t: &ProvisionerTarget) -> CheckResult {
    let Some(p) = t.started_limited().await? else {
        return Ok(());
    };
    p.provision(Count::N(2)).context("provision")?;
    let first = t.get(p.as_ref()).await?;
    let extra = p.try_get_remote().context("try_get_remote")?;
    if let Some(extra) = extra {
        return Err(Violation(format!(
            "a second remote ({}) was handed out while the only place was taken",
            extra.describe()
        )));
    }
    let waiter = {
        let p = p.clone();
        t.scope
            .spawn("conformance-waiter", async move { p.get_remote().await })
    };
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    ensure!(
        !waiter.is_finished(),
        "get_remote returned while the only place was taken"
    );
    first.release().await.context("release")?;
    let second = tokio::time::timeout(t.deadline / 2, waiter)
        .await
        .map_err(|_| {
            Violation::new("releasing the only remote did not let the next request through")
        })?
        .context("the waiting task")?
        .context("get_remote")?;
    ensure!(!second.is_released(), "the next remote came released");
    t.works(second.as_ref()).await?;
    second.release().await.context("release")?;
    p.stop().await.context("stop")?;
    Ok(())
}
