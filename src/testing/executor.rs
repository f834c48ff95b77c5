//! [`MemoryExecutor`] and the [`MemoryPlan`] that scripts it.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio::sync::Notify;

use crate::artifacts::RESULTS_FILE;
use crate::connection::ConnectionError;
use crate::executor::{Executor, ExecutorError, ExecutorFactory, TestOutcome};
use crate::provisioner::Remote;
use crate::scope::Scope;

/// One test run recorded by a [`MemoryPlan`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryRun {
    /// The test.
    pub test: String,
    /// The remote it ran on.
    pub remote: String,
}

#[derive(Default)]
struct PlanInner {
    exit_codes: HashMap<String, Vec<i32>>,
    lose: HashMap<String, u32>,
    hang: Vec<String>,
    gates: HashMap<String, Arc<Notify>>,
    durations: HashMap<String, Duration>,
    default_duration: Option<Duration>,
    write_results: bool,
    record: bool,
    setup_failures: AtomicU32,
    setup_delay: Option<Duration>,
    attempts: Mutex<HashMap<String, u32>>,
    runs: Mutex<Vec<MemoryRun>>,
    starts: AtomicUsize,
    stops: AtomicUsize,
}

/// The script of [`MemoryExecutor`]s: how each test behaves, and what ran. Clones share
/// the script and the records.
///
/// Unless configured otherwise a test passes at once and writes
/// `{"status": "pass"}` into its artifacts.
#[derive(Clone)]
pub struct MemoryPlan {
    inner: Arc<PlanInner>,
}

impl fmt::Debug for MemoryPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryPlan")
            .field("starts", &self.starts())
            .field("stops", &self.stops())
            .finish()
    }
}

impl Default for MemoryPlan {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryPlan {
    /// Every test passes at once, writes results, and runs are recorded.
    pub fn new() -> Self {
        Self {
            inner: Arc::new(PlanInner {
                write_results: true,
                record: true,
                ..PlanInner::default()
            }),
        }
    }

    fn edit(mut self, f: impl FnOnce(&mut PlanInner)) -> Self {
        match Arc::get_mut(&mut self.inner) {
            Some(inner) => f(inner),
            None => tracing::warn!("MemoryPlan configured after it was shared; ignored"),
        }
        self
    }

    /// The exit codes of successive attempts of `test`; the last one repeats.
    pub fn exit_codes(self, test: &str, codes: impl IntoIterator<Item = i32>) -> Self {
        let codes: Vec<i32> = codes.into_iter().collect();
        self.edit(|p| {
            p.exit_codes.insert(test.to_string(), codes);
        })
    }

    /// The first `times` attempts of `test` lose the connection mid-test.
    pub fn lose_remote(self, test: &str, times: u32) -> Self {
        self.edit(|p| {
            p.lose.insert(test.to_string(), times);
        })
    }

    /// `test` runs until it is cancelled.
    pub fn hang(self, test: &str) -> Self {
        self.edit(|p| p.hang.push(test.to_string()))
    }

    /// `test` waits (cancellably) until [`open`](Self::open) is called for it; an `open`
    /// before the test starts is remembered.
    pub fn gated(self, test: &str) -> Self {
        self.edit(|p| {
            p.gates.insert(test.to_string(), Arc::new(Notify::new()));
        })
    }

    /// Lets one attempt of the [`gated`](Self::gated) test `test` proceed.
    pub fn open(&self, test: &str) {
        if let Some(gate) = self.inner.gates.get(test) {
            gate.notify_one();
        }
    }

    /// `test` takes `duration` (a Tokio sleep, cancellable).
    pub fn duration(self, test: &str, duration: Duration) -> Self {
        self.edit(|p| {
            p.durations.insert(test.to_string(), duration);
        })
    }

    /// Every test without its own duration takes `duration`.
    pub fn default_duration(self, duration: Duration) -> Self {
        self.edit(|p| p.default_duration = Some(duration))
    }

    /// The first `n` executor starts (setups) fail.
    pub fn fail_setups(self, n: u32) -> Self {
        self.edit(|p| p.setup_failures = AtomicU32::new(n))
    }

    /// Every executor start takes `delay`.
    pub fn setup_delay(self, delay: Duration) -> Self {
        self.edit(|p| p.setup_delay = Some(delay))
    }

    /// Whether tests write a `results` file (default true). Without one an orchestrator has
    /// nothing to ingest, which keeps the file system out of scheduling benchmarks.
    pub fn write_results(self, yes: bool) -> Self {
        self.edit(|p| p.write_results = yes)
    }

    /// Whether runs are recorded for [`runs`](Self::runs) (default true).
    pub fn record(self, yes: bool) -> Self {
        self.edit(|p| p.record = yes)
    }

    /// An executor for `remote`.
    pub fn executor(&self, remote: Arc<dyn Remote>) -> Box<dyn Executor> {
        Box::new(MemoryExecutor {
            plan: self.inner.clone(),
            remote: remote.describe(),
            started: false,
        })
    }

    /// An executor factory for orchestrators.
    pub fn factory(&self) -> Arc<dyn ExecutorFactory> {
        let plan = self.clone();
        Arc::new(move |remote: Arc<dyn Remote>| plan.executor(remote))
    }

    /// The runs so far, in the order they started.
    pub fn runs(&self) -> Vec<MemoryRun> {
        self.inner
            .runs
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default()
    }

    /// Number of successful executor starts.
    pub fn starts(&self) -> usize {
        self.inner.starts.load(Ordering::SeqCst)
    }

    /// Number of executor stops.
    pub fn stops(&self) -> usize {
        self.inner.stops.load(Ordering::SeqCst)
    }
}

/// An executor that runs nothing and follows a [`MemoryPlan`].
pub struct MemoryExecutor {
    plan: Arc<PlanInner>,
    remote: String,
    started: bool,
}

impl fmt::Debug for MemoryExecutor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryExecutor")
            .field("remote", &self.remote)
            .finish()
    }
}

impl MemoryExecutor {
    fn write(&self, artifacts: &Path, line: &str) -> Result<(), ExecutorError> {
        if !self.plan.write_results {
            return Ok(());
        }
        let path = artifacts.join(RESULTS_FILE);
        std::fs::write(&path, line)
            .map_err(|e| ExecutorError::io(format!("writing {}", path.display()), e))
    }

    /// The attempt number of `test` (0-based), counted per plan.
    fn attempt(&self, test: &str) -> u32 {
        if self.plan.exit_codes.is_empty() && self.plan.lose.is_empty() {
            return 0;
        }
        let Ok(mut attempts) = self.plan.attempts.lock() else {
            return 0;
        };
        let n = attempts.entry(test.to_string()).or_insert(0);
        let current = *n;
        *n += 1;
        current
    }
}

#[async_trait]
impl Executor for MemoryExecutor {
    async fn start(&mut self, scope: &Scope) -> Result<(), ExecutorError> {
        if let Some(delay) = self.plan.setup_delay
            && scope.run(tokio::time::sleep(delay)).await.is_none()
        {
            return Err(ExecutorError::Cancelled {
                test: format!("setup of {}", self.remote),
            });
        }
        let failed = self
            .plan
            .setup_failures
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if failed {
            return Err(ExecutorError::Setup {
                what: self.remote.clone(),
                source: "scripted setup failure".into(),
            });
        }
        self.started = true;
        self.plan.starts.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    async fn run_test(
        &mut self,
        test: &str,
        artifacts: &Path,
        scope: &Scope,
    ) -> Result<TestOutcome, ExecutorError> {
        let begun = Instant::now();
        if self.plan.record
            && let Ok(mut runs) = self.plan.runs.lock()
        {
            runs.push(MemoryRun {
                test: test.to_string(),
                remote: self.remote.clone(),
            });
        }
        let attempt = self.attempt(test);
        let hang = self.plan.hang.iter().any(|h| h == test);
        let duration = self
            .plan
            .durations
            .get(test)
            .copied()
            .or(self.plan.default_duration);
        let cancelled = if hang {
            scope.cancelled().await;
            true
        } else if let Some(gate) = self.plan.gates.get(test) {
            scope.run(gate.notified()).await.is_none()
        } else if let Some(d) = duration {
            scope.run(tokio::time::sleep(d)).await.is_none()
        } else {
            false
        };
        if cancelled {
            self.write(
                artifacts,
                "{\"status\": \"infra\", \"note\": \"test cancelled\"}\n",
            )?;
            return Err(ExecutorError::Cancelled { test: test.into() });
        }
        if self.plan.lose.get(test).is_some_and(|&n| attempt < n) {
            self.write(
                artifacts,
                "{\"status\": \"infra\", \"note\": \"connection lost\"}\n",
            )?;
            return Err(ExecutorError::connection_in(
                test,
                ConnectionError::disconnected(
                    self.remote.clone(),
                    None,
                    "scripted connection loss",
                ),
            ));
        }
        let code = self
            .plan
            .exit_codes
            .get(test)
            .and_then(|codes| {
                codes
                    .get(attempt as usize)
                    .or_else(|| codes.last())
                    .copied()
            })
            .unwrap_or(0);
        let status = if code == 0 { "pass" } else { "fail" };
        self.write(artifacts, &format!("{{\"status\": \"{status}\"}}\n"))?;
        Ok(TestOutcome {
            exit_code: code,
            duration: begun.elapsed(),
        })
    }

    async fn stop(&mut self, _scope: &Scope) -> Result<(), ExecutorError> {
        if self.started {
            self.started = false;
            self.plan.stops.fetch_add(1, Ordering::SeqCst);
        }
        Ok(())
    }
}
