//! [`SimpleOrchestrator`]: tests one after another on one remote.

use std::sync::Arc;
use std::time::Instant;

use super::{
    CancelReason, OrchestratorError, RetireReason, RetiredRemote, RunSummary, TestReport,
    attempt_results,
};
use crate::aggregator::Aggregator;
use crate::artifacts::RESULTS_FILE;
use crate::executor::{Executor, ExecutorFactory};
use crate::provisioner::{Count, Provisioner, Remote};
use crate::scope::Scope;
use crate::verdict::Verdict;

/// Runs tests sequentially on one remote from one provisioner; with `destructive`, every
/// test gets a fresh remote (the used one is marked destroyed and released).
///
/// The orchestrator starts and stops the provisioner. Results of every test that wrote any
/// (including cancelled and aborted tests, which get an `infra` result) are ingested. Each test's
/// [verdict](crate::verdict) comes from its results. A remote whose test did not run to the
/// end (other than by cancellation) is marked destroyed, released and replaced; such
/// remotes are listed in [`RunSummary::retired`]. Tests left when the run is cancelled
/// are listed in [`RunSummary::not_run`].
pub struct SimpleOrchestrator {
    provisioner: Arc<dyn Provisioner>,
    factory: Arc<dyn ExecutorFactory>,
    aggregator: Arc<dyn Aggregator>,
    platform: String,
    tests: Vec<String>,
    destructive: bool,
}

impl std::fmt::Debug for SimpleOrchestrator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimpleOrchestrator")
            .field("provisioner", &self.provisioner)
            .field("platform", &self.platform)
            .field("tests", &self.tests.len())
            .field("destructive", &self.destructive)
            .finish()
    }
}

struct Active {
    remote: Arc<dyn Remote>,
    executor: Box<dyn Executor>,
}

impl SimpleOrchestrator {
    /// A sequential run of `tests`.
    pub fn new(
        provisioner: Arc<dyn Provisioner>,
        factory: Arc<dyn ExecutorFactory>,
        aggregator: Arc<dyn Aggregator>,
        platform: impl Into<String>,
        tests: Vec<String>,
    ) -> Self {
        Self {
            provisioner,
            factory,
            aggregator,
            platform: platform.into(),
            tests,
            destructive: false,
        }
    }

    /// Gives every test a fresh remote.
    pub fn destructive(mut self, destructive: bool) -> Self {
        self.destructive = destructive;
        self
    }

    async fn acquire(&self, scope: &Scope) -> Result<Active, OrchestratorError> {
        self.provisioner.provision(Count::N(1))?;
        let remote = match scope.run(self.provisioner.get_remote()).await {
            Some(r) => r?,
            None => return Err(OrchestratorError::Cancelled),
        };
        let mut executor = self.factory.create(remote.clone());
        if let Err(e) = executor.start(scope).await {
            let _ = executor.stop(scope).await;
            let _ = remote.release().await;
            return Err(OrchestratorError::Setup(e));
        }
        Ok(Active { remote, executor })
    }

    /// Stops the executor and releases the remote.
    async fn dismiss(active: Active, scope: &Scope) {
        let Active {
            remote,
            mut executor,
        } = active;
        if let Err(e) = executor.stop(scope).await {
            tracing::warn!(remote = %remote.describe(), error = %crate::error::chain(&e), "executor stop failed");
        }
        if let Err(e) = remote.release().await {
            tracing::warn!(remote = %remote.describe(), error = %crate::error::chain(&e), "release failed");
        }
    }

    /// Runs every test; returns what happened to each. Cancelling `scope` stops the running
    /// test (its error result is still ingested) and skips the rest.
    ///
    /// # Contract
    ///
    /// * The provisioner is started here and stopped before `run` returns, which releases
    ///   every remote; each remote's executor is stopped before its release.
    /// * Tests run one at a time in the given order; each attempt's artifacts are
    ///   ingested; the aggregator is not finished (that is the caller's).
    ///
    /// # Cancel safety
    ///
    /// Cancel by cancelling `scope`: the running test is terminated and its `infra` result
    /// ingested, the rest are listed as not run, and cleanup still happens. Dropping the
    /// future skips that cleanup (guards and the reaper still free outside resources).
    pub async fn run(&self, scope: &Scope) -> Result<RunSummary, OrchestratorError> {
        self.provisioner.start(scope).await?;
        let res = self.run_tests(scope).await;
        if let Err(e) = self.provisioner.stop().await {
            tracing::warn!(error = %crate::error::chain(&e), "stopping the provisioner failed");
        }
        res
    }

    async fn run_tests(&self, scope: &Scope) -> Result<RunSummary, OrchestratorError> {
        let mut summary = RunSummary::default();
        summary.stats.tests = self.tests.len();
        summary.stats.queued = self.tests.len();
        let cancel = |summary: &mut RunSummary, index: usize| {
            let reason = if scope.is_killed() {
                CancelReason::Kill
            } else {
                CancelReason::Interrupt
            };
            CancelReason::escalate(&mut summary.stats.cancel, reason);
            summary.not_run.extend(self.tests[index..].iter().cloned());
            summary.stats.not_run = summary.not_run.len();
            summary.stats.queued = 0;
        };
        let mut active: Option<Active> = None;
        for (index, name) in self.tests.iter().enumerate() {
            if scope.is_cancelled() {
                cancel(&mut summary, index);
                break;
            }
            let mut current = match active.take() {
                Some(a) => a,
                None => match self.acquire(scope).await {
                    Ok(a) => {
                        summary.stats.remotes.acquired += 1;
                        summary.stats.remotes.active += 1;
                        a
                    }
                    Err(OrchestratorError::Cancelled) => {
                        cancel(&mut summary, index);
                        break;
                    }
                    Err(e) => return Err(e),
                },
            };
            summary.stats.queued -= 1;
            let dir = tempfile::Builder::new()
                .prefix("atex-test-")
                .tempdir()
                .map_err(|source| OrchestratorError::Io {
                    context: "creating an artifacts directory".into(),
                    source,
                })?;
            let test_scope = scope.child(name.as_str());
            let started = Instant::now();
            let outcome = current
                .executor
                .run_test(name, dir.path(), &test_scope)
                .await;
            let has_results = dir.path().join(RESULTS_FILE).exists();
            let results = if has_results {
                attempt_results(name, dir.path())
            } else {
                None
            };
            let exit_code = outcome.as_ref().ok().map(|o| o.exit_code);
            let mut report = TestReport {
                name: name.clone(),
                verdict: Verdict::of_attempt(results, exit_code),
                exit_code,
                error: outcome
                    .as_ref()
                    .err()
                    .map(|e| crate::error::chain(e).to_string()),
                duration: started.elapsed(),
                ingested: false,
            };
            if has_results {
                match self
                    .aggregator
                    .ingest(&self.platform, name, dir.path())
                    .await
                {
                    Ok(()) => report.ingested = true,
                    Err(e) => {
                        tracing::error!(test = %name, error = %crate::error::chain(&e), "ingest failed");
                        summary
                            .ingest_errors
                            .push(format!("{name}: {}", crate::error::chain(&e)));
                        summary.stats.ingest_errors += 1;
                    }
                }
            }
            tracing::info!(test = %name, verdict = %report.verdict, exit_code = ?report.exit_code, error = ?report.error, "test finished");
            summary.stats.verdicts.add(report.verdict);
            summary.tests.push(report);
            // A lost connection or a test that did not run to the end leaves the remote in
            // an unknown state; with `destructive` every test destroys it. Either way it is
            // marked destroyed (its provisioner never hands it out again) and released. A
            // cancelled test says nothing about its remote unless tests are destructive.
            let retire = match &outcome {
                Err(e) if e.is_remote_lost() => Some(RetireReason::Lost),
                Err(e) if !e.is_cancelled() => Some(RetireReason::Broken),
                _ if self.destructive => Some(RetireReason::Destructive),
                _ => None,
            };
            if let Some(reason) = retire {
                current.remote.mark_destroyed();
                let retired = RetiredRemote {
                    remote: current.remote.describe(),
                    test: name.clone(),
                    reason,
                };
                tracing::info!(remote = %retired.remote, test = %name, %reason, "{retired}");
                summary.retired.push(retired);
                summary.stats.remotes.retired += 1;
                if reason == RetireReason::Lost {
                    summary.stats.remotes.lost += 1;
                }
            }
            if retire.is_some() || outcome.is_err() {
                summary.stats.remotes.active -= 1;
                Self::dismiss(current, scope).await;
            } else {
                active = Some(current);
            }
        }
        if let Some(a) = active {
            summary.stats.remotes.active -= 1;
            Self::dismiss(a, scope).await;
        }
        Ok(summary)
    }
}
