//! The scheduler: one task that owns all scheduling state and reacts to messages.
//!
//! Workers (remote acquisition, setups, tests, ingests, releases) run as tracked tasks and
//! report back over one unbounded channel; the scheduler never sleeps and never polls. A
//! message costs a few hash-map operations and, for a finished test, one `O(log n)` queue
//! pick; everything slow happens in the workers.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::mpsc::{self, UnboundedReceiver, UnboundedSender};

use super::policy::{Finished, PickContext, Policies};
use super::queue::{Queue, TestEntry};
use super::test_info::TestInfo;
use super::workdir::Workdir;
use super::worker::{self, IngestJob, Leftover, Msg, SlotId, TestDone, TestJob};
use crate::aggregator::{Aggregator, AggregatorError};
use crate::executor::{Executor, ExecutorError, ExecutorFactory};
use crate::orchestrator::events::{EventKind, EventSender, RunStats};
use crate::orchestrator::{OrchestratorError, RetireReason, RetiredRemote, RunSummary, TestReport};
use crate::provisioner::{Count, ProvisionError, Provisioner, Remote};
use crate::scope::Scope;

/// How many artifacts directories keep an open handle (the rest are opened per probe):
/// a quarter of the soft open-files limit, at most 4096.
fn kept_handles() -> u64 {
    use nix::sys::resource::{Resource, getrlimit};
    getrlimit(Resource::RLIMIT_NOFILE)
        .map(|(soft, _)| (soft / 4).min(4096))
        .unwrap_or(64)
}

/// Everything fixed for one run.
pub(crate) struct Config {
    pub(crate) platform: Arc<str>,
    pub(crate) provisioners: Vec<Arc<dyn Provisioner>>,
    pub(crate) factory: Arc<dyn ExecutorFactory>,
    pub(crate) aggregator: Arc<dyn Aggregator>,
    pub(crate) old_aggregator: Option<Arc<dyn Aggregator>>,
    pub(crate) policies: Policies,
    pub(crate) max_spares: usize,
    pub(crate) max_failed_setups: usize,
    pub(crate) max_remotes: Option<usize>,
    pub(crate) artifacts_dir: Option<PathBuf>,
    pub(crate) events: EventSender,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SlotState {
    SettingUp,
    Idle,
    Running,
    Releasing,
}

/// One remote held by the run.
struct Slot {
    prov: usize,
    remote: Arc<dyn Remote>,
    name: String,
    scope: Scope,
    state: SlotState,
    executor: Option<Box<dyn Executor>>,
    previous: Option<u32>,
    /// Its setup was cancelled because the remote is not needed any more.
    discard: bool,
    release_reason: &'static str,
}

struct State {
    cfg: Config,
    tests: Vec<TestEntry>,
    queue: Queue,
    slots: HashMap<SlotId, Slot>,
    next_slot: SlotId,
    idle: Vec<SlotId>,
    setting_up: usize,
    discarding: usize,
    running: usize,
    releasing: usize,
    ingesting: usize,
    pending: Vec<usize>,
    prov_alive: Vec<bool>,
    last_prov_error: Option<ProvisionError>,
    replacement_hint: Option<usize>,
    finishing: bool,
    cancelling: bool,
    failed_setups: usize,
    abort: Option<OrchestratorError>,
    summary: RunSummary,
    stats: RunStats,
    artifacts_base: PathBuf,
    /// Empty artifacts directories ready for reuse.
    free_dirs: Vec<Workdir>,
    attempt_seq: u64,
    kept_handles: u64,
    tx: UnboundedSender<Msg>,
    run_scope: Scope,
}

/// Runs `tests` to the end (or until cancelled/aborted) and cleans everything up.
pub(crate) async fn run(
    cfg: Config,
    tests: Vec<TestInfo>,
    scope: &Scope,
) -> Result<RunSummary, OrchestratorError> {
    let run_scope = scope.child("adhoc");
    // Start the provisioners; undo on failure.
    for (i, p) in cfg.provisioners.iter().enumerate() {
        if let Err(e) = p.start(&run_scope).await {
            for started in &cfg.provisioners[..i] {
                if let Err(e) = started.stop().await {
                    tracing::warn!(provisioner = %started.describe(), error = %e, "stop failed");
                }
            }
            return Err(e.into());
        }
    }
    let mut builder = tempfile::Builder::new();
    builder.prefix("atex-adhoc-");
    let base = match &cfg.artifacts_dir {
        Some(dir) => builder.tempdir_in(dir),
        None => builder.tempdir(),
    };
    let base = match base {
        Ok(b) => b,
        Err(source) => {
            stop_provisioners(&cfg.provisioners).await;
            return Err(OrchestratorError::Io {
                context: "creating the artifacts directory".into(),
                source,
            });
        }
    };
    let (tx, mut rx) = mpsc::unbounded_channel();
    let n_prov = cfg.provisioners.len();
    let entries: Vec<TestEntry> = tests
        .into_iter()
        .map(|t| {
            let rank = cfg.policies.rank(&t);
            TestEntry::new(t, rank)
        })
        .collect();
    let mut st = State {
        tests: entries,
        queue: Queue::default(),
        slots: HashMap::new(),
        next_slot: 0,
        idle: Vec::new(),
        setting_up: 0,
        discarding: 0,
        running: 0,
        releasing: 0,
        ingesting: 0,
        pending: vec![0; n_prov],
        prov_alive: vec![true; n_prov],
        last_prov_error: None,
        replacement_hint: None,
        finishing: false,
        cancelling: false,
        failed_setups: 0,
        abort: None,
        summary: RunSummary::default(),
        stats: RunStats::default(),
        artifacts_base: base.path().to_path_buf(),
        free_dirs: Vec::new(),
        attempt_seq: 0,
        kept_handles: kept_handles(),
        tx: tx.clone(),
        run_scope: run_scope.clone(),
        cfg,
    };
    st.start();
    let acquire_scope = run_scope.child("acquire");
    let acquirers: Vec<_> = st
        .cfg
        .provisioners
        .iter()
        .enumerate()
        .map(|(i, p)| {
            acquire_scope.spawn(
                "acquire",
                worker::acquire(i, p.clone(), acquire_scope.clone(), tx.clone()),
            )
        })
        .collect();
    drop(tx);

    st.settle();
    st.event_loop(&mut rx).await;

    // Everything in flight is done; stop acquiring and give back what arrived meanwhile.
    acquire_scope.cancel();
    for handle in acquirers {
        let _ = handle.await;
    }
    while let Ok(msg) = rx.try_recv() {
        if let Msg::Arrived { remote, .. } = msg {
            st.stats.remotes_acquired += 1;
            if let Err(e) = remote.release().await {
                tracing::warn!(remote = %remote.describe(), error = %e, "release failed");
            }
        }
    }
    stop_provisioners(&st.cfg.provisioners).await;
    let _ = run_scope
        .spawn_blocking("remove-artifacts", move || drop(base))
        .await;
    st.finish()
}

async fn stop_provisioners(provisioners: &[Arc<dyn Provisioner>]) {
    for p in provisioners {
        if let Err(e) = p.stop().await {
            tracing::warn!(provisioner = %p.describe(), error = %e, "stopping the provisioner failed");
        }
    }
}

impl State {
    fn start(&mut self) {
        let n = self.tests.len();
        for id in 0..n {
            // Test ids fit u32: checked when the orchestrator is built.
            self.queue.push(&mut self.tests, id as u32);
        }
        let (prov_count, max_remotes) = (self.cfg.provisioners.len(), self.cfg.max_remotes);
        self.cfg.events.emit(EventKind::RunStarted {
            tests: n,
            provisioners: prov_count,
            max_remotes,
        });
        // Any provisioner may supply any remote: ask each for as many as can be used.
        let want = n.min(self.cfg.max_remotes.unwrap_or(usize::MAX));
        for i in 0..self.cfg.provisioners.len() {
            self.request(i, want);
        }
    }

    fn request(&mut self, prov: usize, count: usize) {
        if count == 0 || !self.prov_alive.get(prov).copied().unwrap_or(false) {
            return;
        }
        let p = self.cfg.provisioners[prov].clone();
        match p.provision(Count::N(count)) {
            Ok(()) => {
                self.pending[prov] = self.pending[prov].saturating_add(count);
                self.cfg.events.emit_with(|| EventKind::RemoteRequested {
                    provisioner: p.describe(),
                    count,
                });
            }
            Err(e) => self.provisioner_failed(prov, e),
        }
    }

    fn provisioner_failed(&mut self, prov: usize, error: ProvisionError) {
        if self.cancelling {
            return;
        }
        tracing::error!(provisioner = %self.cfg.provisioners[prov].describe(), error = %error,
            "provisioner failed");
        self.prov_alive[prov] = false;
        self.pending[prov] = 0;
        self.last_prov_error = Some(error);
    }

    async fn event_loop(&mut self, rx: &mut UnboundedReceiver<Msg>) {
        while !self.is_done() {
            let msg = tokio::select! {
                biased;
                _ = self.run_scope.cancelled(), if !self.cancelling => {
                    self.begin_cancel();
                    self.settle();
                    continue;
                }
                msg = rx.recv() => msg,
            };
            let Some(msg) = msg else {
                // Cannot happen while workers are in flight (they hold senders).
                tracing::error!("scheduler channel closed with work in flight");
                break;
            };
            self.handle(msg);
            // Drain what else is ready before going back to select.
            for _ in 0..256 {
                match rx.try_recv() {
                    Ok(msg) => self.handle(msg),
                    Err(_) => break,
                }
            }
            self.settle();
        }
    }

    fn is_done(&self) -> bool {
        self.queue.is_empty()
            && self.running == 0
            && self.setting_up == 0
            && self.releasing == 0
            && self.ingesting == 0
            && self.idle.is_empty()
    }

    fn handle(&mut self, msg: Msg) {
        match msg {
            Msg::Arrived { prov, remote } => self.on_arrived(prov, remote),
            Msg::ProvisionerFailed { prov, error } => self.provisioner_failed(prov, error),
            Msg::SetupDone {
                slot,
                executor,
                result,
            } => self.on_setup_done(slot, executor, result),
            Msg::TestDone(done) => self.on_test_done(*done),
            Msg::IngestDone {
                test,
                report,
                old,
                result,
                reusable,
            } => {
                self.free_dirs.extend(reusable);
                self.on_ingest_done(test, report, old, result)
            }
            Msg::Released { slot, result } => self.on_released(slot, result),
        }
    }

    /// Slots that are or will be usable (not being released or discarded).
    fn active_slots(&self) -> usize {
        self.slots.len() - self.releasing - self.discarding
    }

    fn on_arrived(&mut self, prov: usize, remote: Arc<dyn Remote>) {
        self.pending[prov] = self.pending[prov].saturating_sub(1);
        self.stats.remotes_acquired += 1;
        let name = remote.describe();
        let id = self.next_slot;
        self.next_slot += 1;
        self.cfg.events.emit_with(|| EventKind::RemoteAcquired {
            remote: name.clone(),
            provisioner: self.cfg.provisioners[prov].describe(),
        });
        let slot = Slot {
            prov,
            remote: remote.clone(),
            name,
            scope: self.run_scope.child(format!("remote-{id}")),
            state: SlotState::SettingUp,
            executor: None,
            previous: None,
            discard: false,
            release_reason: "",
        };
        let over_limit = self
            .cfg
            .max_remotes
            .is_some_and(|m| self.active_slots() >= m);
        let spares = if self.running > 0 {
            self.cfg.max_spares
        } else {
            0
        };
        let free = self.idle.len() + self.setting_up - self.discarding;
        let reason = if self.cancelling {
            Some("cancelled")
        } else if over_limit {
            Some("over-limit")
        } else if free >= self.queue.len() + spares {
            Some("spare")
        } else {
            None
        };
        self.slots.insert(id, slot);
        if let Some(reason) = reason {
            self.release(id, reason);
            return;
        }
        let executor = self.cfg.factory.create(remote);
        self.setting_up += 1;
        if let Some(slot) = self.slots.get(&id) {
            let scope = slot.scope.clone();
            slot.scope
                .spawn("setup", worker::setup(id, executor, scope, self.tx.clone()));
        }
    }

    fn on_setup_done(
        &mut self,
        id: SlotId,
        executor: Option<Box<dyn Executor>>,
        result: Result<(), ExecutorError>,
    ) {
        self.setting_up -= 1;
        let Some(slot) = self.slots.get_mut(&id) else {
            return;
        };
        slot.executor = executor;
        let discard = slot.discard;
        if discard {
            self.discarding -= 1;
            slot.discard = false;
        }
        match result {
            Err(_) if discard || self.cancelling => {
                let reason = if self.cancelling {
                    "cancelled"
                } else {
                    "spare"
                };
                self.release(id, reason);
            }
            Err(e) => {
                self.failed_setups += 1;
                self.stats.setup_failures += 1;
                let error = e.to_string();
                tracing::warn!(remote = %slot.name, error = %error, "setup failed");
                self.cfg.events.emit_with(|| EventKind::SetupFailed {
                    remote: slot.name.clone(),
                    error: error.clone(),
                });
                self.summary
                    .setup_errors
                    .push(format!("{}: {error}", slot.name));
                self.replacement_hint = Some(slot.prov);
                self.release(id, "setup-failed");
                if self.failed_setups > self.cfg.max_failed_setups {
                    self.abort(OrchestratorError::SetupLimit {
                        failures: self.failed_setups,
                        last: error,
                    });
                }
            }
            Ok(()) => {
                self.cfg.events.emit_with(|| EventKind::RemoteReady {
                    remote: slot.name.clone(),
                });
                slot.state = SlotState::Idle;
                if discard {
                    self.release(id, "spare");
                } else {
                    self.assign(id);
                }
            }
        }
    }

    /// Gives the slot the next test, or parks it as idle.
    fn assign(&mut self, id: SlotId) {
        if self.cancelling {
            self.release(id, "cancelled");
            return;
        }
        let Some(slot) = self.slots.get_mut(&id) else {
            return;
        };
        let next = {
            let policies = &self.cfg.policies;
            if !policies.has_pickers() {
                self.queue.pick(&mut self.tests, |_| None)
            } else {
                let previous = slot
                    .previous
                    .and_then(|p| self.tests.get(p as usize))
                    .map(|e| e.info.clone());
                let ctx = PickContext {
                    remote: &slot.name,
                    previous: previous.as_ref(),
                };
                self.queue
                    .pick(&mut self.tests, |view| policies.pick(view, &ctx))
            }
        };
        match next {
            Some(test) => self.start_test(id, test),
            None => {
                slot.state = SlotState::Idle;
                self.idle.push(id);
            }
        }
    }

    fn start_test(&mut self, id: SlotId, test: u32) {
        let Some(slot) = self.slots.get_mut(&id) else {
            return;
        };
        let Some(executor) = slot.executor.take() else {
            // A slot without executor cannot run anything: put the test back.
            self.queue.push(&mut self.tests, test);
            self.release(id, "broken");
            return;
        };
        let Some(entry) = self.tests.get(test as usize) else {
            return;
        };
        let name = entry.name.clone();
        let attempt = entry.attempt;
        // Directories are reused, so they are named by number, not by test.
        let artifacts = match self.free_dirs.pop() {
            Some(dir) => dir,
            None => {
                self.attempt_seq += 1;
                let path = self.artifacts_base.join(self.attempt_seq.to_string());
                Workdir::new(path, self.attempt_seq <= self.kept_handles)
            }
        };
        slot.state = SlotState::Running;
        slot.previous = Some(test);
        self.running += 1;
        self.cfg.events.emit_with(|| EventKind::TestStarted {
            test: name.to_string(),
            remote: slot.name.clone(),
            attempt,
        });
        // The test runs as a task of its remote's scope (`<run>/remote-<n>`): cancelling the
        // run or releasing the remote cancels it. A child scope per test was measured at
        // about 7 µs of CPU per test (it spawns a waiter task), for nothing the remote's
        // scope does not give, since a remote runs one test at a time.
        let scope = slot.scope.clone();
        let job = TestJob {
            slot: id,
            test,
            name,
            artifacts,
            executor,
            scope: scope.clone(),
        };
        scope.spawn("test", worker::run_test(job, self.tx.clone()));
    }

    fn on_test_done(&mut self, done: TestDone) {
        self.running -= 1;
        let TestDone {
            slot: id,
            test,
            executor,
            outcome,
            verdict,
            duration,
            artifacts,
        } = done;
        let Some(slot) = self.slots.get_mut(&id) else {
            return;
        };
        let Some(entry) = self.tests.get_mut(test as usize) else {
            return;
        };
        slot.executor = executor;
        let artifacts = match artifacts {
            Leftover::Results(dir) => Some(dir),
            Leftover::Empty(dir) => {
                self.free_dirs.push(dir);
                None
            }
            Leftover::Gone => None,
        };
        let (exit_code, error) = match &outcome {
            Ok(o) => (Some(o.exit_code), None),
            Err(e) => (None, Some(e)),
        };
        let cancelled = error.is_some_and(ExecutorError::is_cancelled);
        let lost = matches!(error, Some(ExecutorError::Connection(c)) if c.is_disconnect());
        let finished = Finished {
            test: &entry.info,
            verdict,
            exit_code,
            error,
            lost,
            attempt: entry.attempt,
            lost_before: entry.lost,
            remote: &slot.name,
        };
        let destroyed = self.cfg.policies.destructive(&finished);
        let rerun = !self.cancelling && !cancelled && self.cfg.policies.rerun(&finished);
        let error_text = error.map(ToString::to_string);
        let name = entry.name.clone();
        self.cfg.events.emit_with(|| EventKind::TestFinished {
            test: name.to_string(),
            remote: slot.name.clone(),
            verdict,
            exit_code,
            error: error_text.clone(),
            duration,
            rerun,
        });
        if lost {
            entry.lost += 1;
            slot.executor = None; // the connection is gone: no executor stop
            tracing::warn!(remote = %slot.name, test = %name, "remote lost mid-test");
            self.cfg.events.emit_with(|| EventKind::RemoteLost {
                remote: slot.name.clone(),
                test: name.to_string(),
                error: error_text.clone().unwrap_or_default(),
            });
        }
        // A remote the test destroyed, or that broke under it, is marked destroyed before its
        // release so that its provisioner never hands it out again. A cancelled test says
        // nothing about its remote, unless a destructive policy names the test (it may have
        // been stopped half-way through destroying it).
        let retire = if lost {
            Some(RetireReason::Lost)
        } else if cancelled {
            (self.cfg.policies.destructive_opinion(&finished) == Some(true))
                .then_some(RetireReason::Destructive)
        } else if !destroyed {
            None
        } else if error.is_some() {
            Some(RetireReason::Broken)
        } else {
            Some(RetireReason::Destructive)
        };
        if let Some(reason) = retire {
            slot.remote.mark_destroyed();
            let retired = RetiredRemote {
                remote: slot.name.clone(),
                test: name.to_string(),
                reason,
            };
            tracing::info!(remote = %slot.name, test = %name, %reason, "{retired}");
            self.cfg.events.emit_with(|| EventKind::RemoteRetired {
                remote: retired.remote.clone(),
                test: retired.test.clone(),
                reason,
            });
            self.stats.remotes_retired += 1;
            self.summary.retired.push(retired);
        }
        tracing::debug!(test = %name, remote = %slot.name, %verdict, ?exit_code, error = ?error_text, rerun, destroyed, "test finished");
        let report = TestReport {
            name: entry.info.name.clone(),
            verdict,
            exit_code,
            error: error_text,
            duration,
            ingested: false,
        };
        let prov = slot.prov;
        if rerun {
            entry.attempt += 1;
            let attempt = entry.attempt;
            self.queue.push(&mut self.tests, test);
            self.stats.reruns += 1;
            self.cfg.events.emit_with(|| EventKind::RerunScheduled {
                test: name.to_string(),
                attempt,
            });
            self.summary.reruns.push(report);
            let idx = self.summary.reruns.len() - 1;
            match (self.cfg.old_aggregator.clone(), artifacts) {
                (Some(agg), Some(dir)) => self.ingest(test, Some(idx), true, agg, name, dir),
                // Rare (a rerun without old-results aggregator): removed inline.
                (None, Some(dir)) => dir.remove(),
                (_, None) => {}
            }
        } else {
            if verdict.passed() {
                self.stats.passed += 1;
            } else {
                self.stats.failed += 1;
            }
            self.summary.tests.push(report);
            let idx = self.summary.tests.len() - 1;
            if let Some(dir) = artifacts {
                let agg = self.cfg.aggregator.clone();
                self.ingest(test, Some(idx), false, agg, name, dir);
            }
        }
        if self.cancelling {
            self.release(id, "cancelled");
        } else if destroyed {
            self.replacement_hint = Some(prov);
            self.release(
                id,
                if lost || error.is_some() {
                    "broken"
                } else {
                    "destructive"
                },
            );
        } else {
            self.assign(id);
        }
    }

    fn ingest(
        &mut self,
        test: u32,
        report: Option<usize>,
        old: bool,
        aggregator: Arc<dyn Aggregator>,
        name: Arc<str>,
        artifacts: Workdir,
    ) {
        self.ingesting += 1;
        let job = IngestJob {
            test,
            report,
            old,
            aggregator,
            platform: self.cfg.platform.clone(),
            name,
            artifacts,
        };
        self.run_scope
            .spawn("ingest", worker::ingest(job, self.tx.clone()));
    }

    fn on_ingest_done(
        &mut self,
        test: u32,
        report: Option<usize>,
        old: bool,
        result: Result<(), AggregatorError>,
    ) {
        self.ingesting -= 1;
        let name = self
            .tests
            .get(test as usize)
            .map(|e| e.info.name.as_str())
            .unwrap_or_default();
        let list = if old {
            &mut self.summary.reruns
        } else {
            &mut self.summary.tests
        };
        let error = match result {
            Ok(()) => {
                if let Some(r) = report.and_then(|i| list.get_mut(i)) {
                    r.ingested = true;
                }
                None
            }
            Err(e) => {
                tracing::error!(test = %name, old, error = %e, "ingest failed");
                self.stats.ingest_errors += 1;
                let msg = format!("{name}: {e}");
                self.summary.ingest_errors.push(msg);
                Some(e.to_string())
            }
        };
        self.cfg.events.emit_with(|| EventKind::TestIngested {
            test: name.to_string(),
            old,
            error,
        });
    }

    /// Stops the slot's executor (if set up and reachable) and releases its remote.
    fn release(&mut self, id: SlotId, reason: &'static str) {
        let Some(slot) = self.slots.get_mut(&id) else {
            return;
        };
        match slot.state {
            SlotState::Releasing => return,
            SlotState::Idle => self.idle.retain(|s| *s != id),
            SlotState::SettingUp | SlotState::Running => {}
        }
        slot.state = SlotState::Releasing;
        slot.release_reason = reason;
        self.releasing += 1;
        let executor = slot.executor.take();
        let (remote, scope) = (slot.remote.clone(), self.run_scope.clone());
        self.run_scope.spawn(
            "release",
            worker::release(id, remote, executor, scope, self.tx.clone()),
        );
    }

    fn on_released(&mut self, id: SlotId, result: Result<(), ProvisionError>) {
        self.releasing -= 1;
        let Some(slot) = self.slots.remove(&id) else {
            return;
        };
        if let Err(e) = &result {
            tracing::warn!(remote = %slot.name, error = %e, "release failed");
        }
        self.cfg.events.emit_with(|| EventKind::RemoteReleased {
            remote: slot.name.clone(),
            reason: slot.release_reason.to_string(),
        });
    }

    fn abort(&mut self, error: OrchestratorError) {
        if self.abort.is_none() {
            tracing::error!(error = %error, "aborting the run");
            self.abort = Some(error);
        }
        self.run_scope.cancel();
    }

    fn begin_cancel(&mut self) {
        if self.cancelling {
            return;
        }
        self.cancelling = true;
        self.cfg.events.emit(EventKind::CancelBegun);
        for id in self.queue.drain(&mut self.tests) {
            if let Some(e) = self.tests.get(id as usize) {
                self.summary.not_run.push(e.info.name.clone());
            }
        }
        for id in std::mem::take(&mut self.idle) {
            if let Some(slot) = self.slots.get_mut(&id) {
                // `release` would look for it in `idle`, which is empty now.
                slot.state = SlotState::SettingUp;
            }
            self.release(id, "cancelled");
        }
        for p in &self.cfg.provisioners {
            p.clear();
        }
    }

    /// Bookkeeping after every batch of messages: hand idle remotes work, request remotes
    /// that are missing, switch to finishing-up mode, release spares.
    fn settle(&mut self) {
        if self.cancelling {
            return;
        }
        while !self.queue.is_empty() {
            let Some(id) = self.idle.pop() else { break };
            self.assign(id);
        }
        if !self.queue.is_empty() {
            self.ensure_capacity();
            return;
        }
        if !self.finishing {
            // The queue is empty: only explicit replacements from now on.
            self.finishing = true;
            for p in &self.cfg.provisioners {
                p.clear();
            }
            self.pending.iter_mut().for_each(|p| *p = 0);
        }
        // Spares are only useful while a running test might be rerun.
        let keep = if self.running > 0 {
            self.cfg.max_spares
        } else {
            0
        };
        while self.idle.len() > keep {
            let Some(id) = self.idle.pop() else { break };
            if let Some(slot) = self.slots.get_mut(&id) {
                slot.state = SlotState::SettingUp;
            }
            self.release(id, "spare");
        }
        let setting_up = self.setting_up - self.discarding;
        let mut excess = (self.idle.len() + setting_up).saturating_sub(keep);
        if excess > 0 {
            for slot in self.slots.values_mut() {
                if excess == 0 {
                    break;
                }
                if slot.state == SlotState::SettingUp && !slot.discard {
                    slot.discard = true;
                    slot.scope.cancel();
                    self.discarding += 1;
                    excess -= 1;
                }
            }
        }
    }

    /// Requests remotes when fewer are held or expected than the queue can use.
    fn ensure_capacity(&mut self) {
        let useful =
            (self.queue.len() + self.running).min(self.cfg.max_remotes.unwrap_or(usize::MAX));
        let pending: usize = self.pending.iter().sum();
        let have = self.active_slots() + pending;
        if have >= useful {
            return;
        }
        let hint = self
            .replacement_hint
            .filter(|&p| self.prov_alive.get(p).copied().unwrap_or(false));
        let prov = hint.or_else(|| {
            (0..self.prov_alive.len())
                .filter(|&p| self.prov_alive[p])
                .min_by_key(|&p| self.pending[p])
        });
        match prov {
            Some(p) => self.request(p, useful - have),
            None if self.slots.is_empty() => {
                let error = self.last_prov_error.take().map_or_else(
                    || OrchestratorError::Config("no provisioner can supply remotes".into()),
                    OrchestratorError::Provision,
                );
                self.abort(error);
            }
            None => {}
        }
    }

    fn finish(mut self) -> Result<RunSummary, OrchestratorError> {
        self.stats.not_run = self.summary.not_run.len();
        self.stats.cancelled = self.cancelling;
        self.stats.events_dropped = self.cfg.events.dropped();
        self.summary.cancelled = self.cancelling;
        self.summary.events_dropped = self.stats.events_dropped;
        self.cfg.events.emit(EventKind::RunFinished {
            stats: self.stats.clone(),
        });
        match self.abort {
            Some(e) => Err(e),
            None => Ok(self.summary),
        }
    }
}
