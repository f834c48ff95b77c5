//! [`AdHocOrchestrator`] and its [`AdHocBuilder`].

use std::collections::HashSet;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use super::policy::{Policies, Policy};
use super::scheduler;
use super::setup_hook::SetupHook;
use super::test_info::TestInfo;
use crate::aggregator::Aggregator;
use crate::executor::ExecutorFactory;
use crate::orchestrator::events::{EventSender, EventStream, event_channel};
use crate::orchestrator::{OrchestratorError, RunSummary};
use crate::provisioner::Provisioner;
use crate::scope::Scope;

/// Runs tests on a pool of remotes. Build it with [`AdHocOrchestrator::builder`]; see the
/// [module docs](super) for the semantics and an example.
pub struct AdHocOrchestrator {
    cfg: scheduler::Config,
    tests: Vec<TestInfo>,
}

impl fmt::Debug for AdHocOrchestrator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdHocOrchestrator")
            .field("platform", &self.cfg.platform)
            .field("tests", &self.tests.len())
            .field("provisioners", &self.cfg.provisioners)
            .field("policies", &self.cfg.policies)
            .field("max_spares", &self.cfg.max_spares)
            .field("max_failed_setups", &self.cfg.max_failed_setups)
            .field("max_remotes", &self.cfg.max_remotes)
            .finish()
    }
}

impl AdHocOrchestrator {
    /// Starts building an orchestrator whose results are recorded under `platform`
    /// (a free string such as `9.6@x86_64`).
    pub fn builder(platform: impl Into<String>) -> AdHocBuilder {
        AdHocBuilder {
            platform: platform.into(),
            tests: Vec::new(),
            provisioners: Vec::new(),
            factory: None,
            aggregator: None,
            old_aggregator: None,
            policies: Vec::new(),
            max_spares: 0,
            max_failed_setups: 10,
            max_remotes: None,
            artifacts_dir: None,
            setup_hooks: Vec::new(),
        }
    }

    /// Subscribes to the run's [events](crate::orchestrator::events): up to `capacity`
    /// undelivered events are buffered; beyond that, events are dropped (and counted)
    /// rather than slowing the run down. The stream ends when the run finished. A second
    /// call replaces the first subscription.
    pub fn subscribe(&mut self, capacity: usize) -> EventStream {
        let (tx, rx) = event_channel(capacity);
        self.cfg.events = tx;
        rx
    }

    /// Publishes events through an existing sender (for example one shared by several
    /// orchestrators).
    pub fn set_event_sender(&mut self, sender: EventSender) {
        self.cfg.events = sender;
    }

    /// Number of tests to run (after de-duplication).
    pub fn test_count(&self) -> usize {
        self.tests.len()
    }

    /// Starts the provisioners, runs every test, and stops everything.
    ///
    /// Returns the summary (with [`RunSummary::cancelled`] set when `scope` was cancelled),
    /// or the error that aborted the run — too many failed setups
    /// ([`OrchestratorError::SetupLimit`]) or no provisioner able to supply remotes. Even
    /// then everything was cleaned up before returning.
    ///
    /// # Contract
    ///
    /// * The provisioners are started here and stopped before `run` returns; every remote
    ///   is released by then (one a test destroyed or lost is marked destroyed first) and
    ///   every executor stopped.
    /// * Each test runs at least once unless the run ends first (then it is listed in
    ///   [`RunSummary::not_run`]), and again as rerun policies ask. Each attempt's
    ///   artifacts are ingested into the aggregator (a rerun's replaced attempt into the
    ///   old-results aggregator when one is set); an ingest error is reported in the
    ///   summary, never only logged. The aggregators are not finished: that is the
    ///   caller's.
    /// * A test's verdict comes from its `results` lines, the exit code only without any.
    ///
    /// # Cancel safety
    ///
    /// Cancel by cancelling `scope`, not by dropping the future: running tests are then
    /// terminated, their `infra` results still ingested, remotes released and provisioners
    /// stopped, and `run` returns the summary. Dropping the future skips that cleanup (the
    /// scope tree's reaper and guards still free outside resources).
    pub async fn run(self, scope: &Scope) -> Result<RunSummary, OrchestratorError> {
        // The scheduler runs as a task of the runtime, not inside the caller's future: a
        // `#[tokio::main]` future runs on the main thread, outside the worker pool, and
        // every test ending would wake that thread and then a worker again. Dropping this
        // future aborts the task, which drops the run as dropping its future did.
        let (cfg, tests, caller) = (self.cfg, self.tests, scope.clone());
        let task = scope.spawn(
            "adhoc",
            async move { scheduler::run(cfg, tests, &caller).await },
        );
        match tokio_util::task::AbortOnDropHandle::new(task).await {
            Ok(result) => result,
            Err(e) => match e.try_into_panic() {
                Ok(panic) => std::panic::resume_unwind(panic),
                // Aborted by the runtime shutting down.
                Err(_) => Err(OrchestratorError::Cancelled),
            },
        }
    }
}

/// Builder of [`AdHocOrchestrator`].
pub struct AdHocBuilder {
    platform: String,
    tests: Vec<TestInfo>,
    provisioners: Vec<Arc<dyn Provisioner>>,
    factory: Option<Arc<dyn ExecutorFactory>>,
    aggregator: Option<Arc<dyn Aggregator>>,
    old_aggregator: Option<Arc<dyn Aggregator>>,
    policies: Vec<Policy>,
    max_spares: usize,
    max_failed_setups: usize,
    max_remotes: Option<usize>,
    artifacts_dir: Option<PathBuf>,
    setup_hooks: Vec<Arc<dyn SetupHook>>,
}

impl fmt::Debug for AdHocBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdHocBuilder")
            .field("platform", &self.platform)
            .field("tests", &self.tests.len())
            .finish()
    }
}

impl AdHocBuilder {
    /// Adds tests, in order (plain names or [`TestInfo`]s). Duplicates are dropped.
    pub fn tests<I, T>(mut self, tests: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<TestInfo>,
    {
        self.tests.extend(tests.into_iter().map(Into::into));
        self
    }

    /// Adds one test.
    pub fn test(mut self, test: impl Into<TestInfo>) -> Self {
        self.tests.push(test.into());
        self
    }

    /// Adds a provisioner; every provisioner may supply remotes. The orchestrator starts and
    /// stops them.
    pub fn provisioner(mut self, provisioner: Arc<dyn Provisioner>) -> Self {
        self.provisioners.push(provisioner);
        self
    }

    /// Sets the executor factory (one executor per remote).
    pub fn executor(mut self, factory: Arc<dyn ExecutorFactory>) -> Self {
        self.factory = Some(factory);
        self
    }

    /// Sets the aggregator of final results.
    pub fn aggregator(mut self, aggregator: Arc<dyn Aggregator>) -> Self {
        self.aggregator = Some(aggregator);
        self
    }

    /// Sets an aggregator for the results of attempts that were rerun (it must allow
    /// duplicate names). Without one, those results are discarded.
    pub fn old_aggregator(mut self, aggregator: Arc<dyn Aggregator>) -> Self {
        self.old_aggregator = Some(aggregator);
        self
    }

    /// Adds a policy; earlier policies get the first say (see [`policy`](super::policy)).
    pub fn policy(mut self, policy: Policy) -> Self {
        self.policies.push(policy);
        self
    }

    /// Adds policies in order.
    pub fn policies(mut self, policies: impl IntoIterator<Item = Policy>) -> Self {
        self.policies.extend(policies);
        self
    }

    /// How many set-up remotes may stay idle, while tests still run, to take over reruns
    /// whose remote was destroyed (default 0).
    pub fn max_spares(mut self, n: usize) -> Self {
        self.max_spares = n;
        self
    }

    /// How many setups may fail before the run is aborted with
    /// [`OrchestratorError::SetupLimit`] (default 10; the next failure aborts).
    pub fn max_failed_setups(mut self, n: usize) -> Self {
        self.max_failed_setups = n;
        self
    }

    /// At most `n` remotes held at once, over all provisioners (default: no limit besides
    /// the provisioners' own, and never more requested than there are tests).
    pub fn max_remotes(mut self, n: usize) -> Self {
        self.max_remotes = Some(n);
        self
    }

    /// Where the per-run directory of temporary artifacts is created (default: the system
    /// temporary directory). Placing it on the aggregator's file system makes ingests moves.
    pub fn artifacts_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.artifacts_dir = Some(dir.into());
        self
    }

    /// Adds a hook run on each remote after its executor started (hooks run in the order
    /// added); a failing hook fails the remote's setup. See [`SetupHook`].
    pub fn setup_hook(mut self, hook: Arc<dyn SetupHook>) -> Self {
        self.setup_hooks.push(hook);
        self
    }

    /// Checks the configuration and builds the orchestrator.
    ///
    /// Errors ([`OrchestratorError::Config`]): no tests, no provisioner, no executor
    /// factory, no aggregator, `max_remotes(0)`, or more than `u32::MAX` tests.
    pub fn build(self) -> Result<AdHocOrchestrator, OrchestratorError> {
        let config = |m: &str| Err(OrchestratorError::Config(m.to_string()));
        let mut tests = self.tests;
        if tests.is_empty() {
            return config("the test list is empty");
        }
        if u32::try_from(tests.len()).is_err() {
            return config("too many tests");
        }
        if self.provisioners.is_empty() {
            return config("no provisioner given");
        }
        if self.max_remotes == Some(0) {
            return config("max_remotes must be at least 1");
        }
        let Some(factory) = self.factory else {
            return config("no executor factory given");
        };
        let Some(aggregator) = self.aggregator else {
            return config("no aggregator given");
        };
        let keep: Vec<bool> = {
            let mut seen = HashSet::with_capacity(tests.len());
            tests.iter().map(|t| seen.insert(t.name.as_str())).collect()
        };
        let mut keep = keep.into_iter();
        tests.retain(|_| keep.next().unwrap_or(true));
        Ok(AdHocOrchestrator {
            cfg: scheduler::Config {
                platform: self.platform.into(),
                provisioners: self.provisioners,
                factory,
                aggregator,
                old_aggregator: self.old_aggregator,
                policies: Policies::new(&self.policies),
                max_spares: self.max_spares,
                max_failed_setups: self.max_failed_setups,
                max_remotes: self.max_remotes,
                artifacts_dir: self.artifacts_dir,
                events: EventSender::disabled(),
                setup_hooks: self.setup_hooks.into(),
            },
            tests,
        })
    }
}
