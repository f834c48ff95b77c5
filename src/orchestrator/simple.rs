//! [`SimpleOrchestrator`]: tests one after another on one remote.

use std::sync::Arc;
use std::time::Instant;

use super::{OrchestratorError, RunSummary, TestReport};
use crate::aggregator::Aggregator;
use crate::artifacts::RESULTS_FILE;
use crate::executor::{Executor, ExecutorFactory};
use crate::provisioner::{Count, Provisioner, Remote};
use crate::scope::Scope;

/// Runs tests sequentially on one remote from one provisioner; with `destructive`, every
/// test gets a fresh remote (the used one is released).
///
/// The orchestrator starts and stops the provisioner. Results of every test that wrote any
/// (including cancelled and aborted tests, which get an `infra` result) are ingested.
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

    async fn retire(active: Active, scope: &Scope) {
        let Active {
            remote,
            mut executor,
        } = active;
        if let Err(e) = executor.stop(scope).await {
            tracing::warn!(remote = %remote.describe(), error = %e, "executor stop failed");
        }
        if let Err(e) = remote.release().await {
            tracing::warn!(remote = %remote.describe(), error = %e, "release failed");
        }
    }

    /// Runs every test; returns what happened to each. Cancelling `scope` stops the running
    /// test (its error result is still ingested) and skips the rest.
    pub async fn run(&self, scope: &Scope) -> Result<RunSummary, OrchestratorError> {
        self.provisioner.start(scope).await?;
        let res = self.run_tests(scope).await;
        if let Err(e) = self.provisioner.stop().await {
            tracing::warn!(error = %e, "stopping the provisioner failed");
        }
        res
    }

    async fn run_tests(&self, scope: &Scope) -> Result<RunSummary, OrchestratorError> {
        let mut summary = RunSummary::default();
        let mut active: Option<Active> = None;
        for name in &self.tests {
            if scope.is_cancelled() {
                summary.cancelled = true;
                break;
            }
            let mut current = match active.take() {
                Some(a) => a,
                None => match self.acquire(scope).await {
                    Ok(a) => a,
                    Err(OrchestratorError::Cancelled) => {
                        summary.cancelled = true;
                        break;
                    }
                    Err(e) => return Err(e),
                },
            };
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
            let mut report = TestReport {
                name: name.clone(),
                exit_code: None,
                error: None,
                duration: started.elapsed(),
                ingested: false,
            };
            match &outcome {
                Ok(o) => report.exit_code = Some(o.exit_code),
                Err(e) => report.error = Some(e.to_string()),
            }
            if dir.path().join(RESULTS_FILE).exists() {
                match self
                    .aggregator
                    .ingest(&self.platform, name, dir.path())
                    .await
                {
                    Ok(()) => report.ingested = true,
                    Err(e) => {
                        tracing::error!(test = %name, error = %e, "ingest failed");
                        summary.ingest_errors.push(format!("{name}: {e}"));
                    }
                }
            }
            tracing::info!(test = %name, exit_code = ?report.exit_code, error = ?report.error, "test finished");
            let broken = outcome.is_err();
            summary.tests.push(report);
            if self.destructive || broken {
                Self::retire(current, scope).await;
            } else {
                active = Some(current);
            }
        }
        if let Some(a) = active {
            Self::retire(a, scope).await;
        }
        Ok(summary)
    }
}
