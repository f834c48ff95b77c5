//! The scheduler's state and its core: the event loop, settling after each batch of
//! messages, requesting capacity, cancellation and the final summary.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};

use super::super::mailbox;
use super::super::queue::{Queue, TestEntry};
use super::super::workdir::{HandleBudget, Workdir};
use super::super::worker::{Msg, SlotId, TestJob};
use super::config::Config;
use crate::executor::Executor;
use crate::orchestrator::events::EventKind;
use crate::orchestrator::{CancelReason, OrchestratorError, ReleaseReason, RunStats, RunSummary};
use crate::provisioner::{ProvisionError, Remote};
use crate::scope::Scope;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SlotState {
    SettingUp,
    Idle,
    Running,
    Releasing,
}

/// One remote held by the run.
pub(super) struct Slot {
    pub(super) prov: usize,
    pub(super) remote: Arc<dyn Remote>,
    pub(super) name: String,
    pub(super) scope: Scope,
    pub(super) state: SlotState,
    pub(super) executor: Option<Box<dyn Executor>>,
    /// The queue of the remote's test task (`worker::run_tests`), started with its first
    /// test; dropped when the remote is released, which ends the task.
    pub(super) jobs: Option<mailbox::Sender<TestJob>>,
    pub(super) previous: Option<u32>,
    /// Its setup was cancelled because the remote is not needed any more.
    pub(super) discard: bool,
    pub(super) release_reason: ReleaseReason,
}

/// The scheduler's state: the tests and their queue, the remotes held (slots), what is in
/// flight, and the run's summary and statistics.
///
/// `stats` is the one copy of the run's statistics: every change to what it counts
/// updates it before the event that reports the change is published with a copy.
pub(super) struct State {
    pub(super) cfg: Config,
    pub(super) tests: Vec<TestEntry>,
    pub(super) queue: Queue,
    pub(super) slots: HashMap<SlotId, Slot>,
    pub(super) next_slot: SlotId,
    pub(super) idle: Vec<SlotId>,
    pub(super) setting_up: usize,
    pub(super) discarding: usize,
    pub(super) releasing: usize,
    pub(super) ingesting: usize,
    pub(super) pending: Vec<usize>,
    pub(super) prov_alive: Vec<bool>,
    pub(super) last_prov_error: Option<ProvisionError>,
    pub(super) replacement_hint: Option<usize>,
    pub(super) finishing: bool,
    pub(super) cancelling: bool,
    pub(super) failed_setups: usize,
    pub(super) abort: Option<OrchestratorError>,
    pub(super) summary: RunSummary,
    /// The test of each entry of `summary.tests`, whose name is filled in by
    /// [`finish`](Self::finish) (moved from the test table instead of copied per attempt).
    pub(super) reported: Vec<u32>,
    pub(super) stats: RunStats,
    pub(super) artifacts_base: PathBuf,
    /// Empty artifacts directories ready for reuse.
    pub(super) free_dirs: Vec<Workdir>,
    pub(super) attempt_seq: u64,
    /// Which artifacts directories keep an open handle.
    pub(super) handles: Arc<HandleBudget>,
    pub(super) tx: UnboundedSender<Msg>,
    /// The caller's scope: its cancellation is an interrupt, its kill a kill.
    pub(super) outer: Scope,
    /// `outer`'s child in which everything of the run happens; the run cancels it itself
    /// when it aborts.
    pub(super) run_scope: Scope,
}

impl State {
    pub(super) fn start(&mut self) {
        let n = self.tests.len();
        for id in 0..n {
            // Test ids fit u32: checked when the orchestrator is built.
            self.queue.push(&mut self.tests, id as u32);
        }
        self.stats.tests = n;
        self.stats.queued = self.queue.len();
        let (prov_count, max_remotes) = (self.cfg.provisioners.len(), self.cfg.max_remotes);
        self.cfg.events.emit(
            &self.stats,
            EventKind::RunStarted {
                tests: n,
                provisioners: prov_count,
                max_remotes,
            },
        );
        // Any provisioner may supply any remote: ask each for as many as can be used.
        let want = n.min(self.cfg.max_remotes.unwrap_or(usize::MAX));
        for i in 0..self.cfg.provisioners.len() {
            self.request(i, want);
        }
    }

    pub(super) async fn event_loop(&mut self, rx: &mut UnboundedReceiver<Msg>) {
        while !self.is_done() {
            let interrupted = self.stats.cancel < Some(CancelReason::Interrupt);
            let killable = !interrupted && self.stats.cancel < Some(CancelReason::Kill);
            let msg = tokio::select! {
                biased;
                _ = self.outer.cancelled(), if interrupted => {
                    // A kill cancels gracefully too: one wake-up may mean either.
                    self.begin_cancel(if self.outer.is_killed() {
                        CancelReason::Kill
                    } else {
                        CancelReason::Interrupt
                    });
                    self.settle();
                    continue;
                }
                _ = self.outer.force_token().cancelled(), if killable => {
                    self.begin_cancel(CancelReason::Kill);
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

    pub(super) fn is_done(&self) -> bool {
        self.queue.is_empty()
            && self.stats.running == 0
            && self.setting_up == 0
            && self.releasing == 0
            && self.ingesting == 0
            && self.idle.is_empty()
    }

    pub(super) fn handle(&mut self, msg: Msg) {
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
    pub(super) fn active_slots(&self) -> usize {
        self.slots.len() - self.releasing - self.discarding
    }

    /// Ends the run with `error`: cancels everything the run started, for `reason`.
    pub(super) fn abort(&mut self, error: OrchestratorError, reason: CancelReason) {
        if self.abort.is_none() {
            tracing::error!(error = %crate::error::chain(&error), "aborting the run");
            self.abort = Some(error);
        }
        self.begin_cancel(reason);
        self.run_scope.cancel();
    }

    /// Stops scheduling for `reason`, or escalates to it: the queue becomes "not run",
    /// idle remotes are released, provisioners cleared. Running tests see the run scope's
    /// cancellation (the caller's, or [`abort`](Self::abort)'s) and end on their own.
    pub(super) fn begin_cancel(&mut self, reason: CancelReason) {
        if !CancelReason::escalate(&mut self.stats.cancel, reason) {
            return;
        }
        let first = !self.cancelling;
        self.cancelling = true;
        if first {
            for id in self.queue.drain(&mut self.tests) {
                if let Some(e) = self.tests.get(id as usize) {
                    self.summary.not_run.push(e.info.name.clone());
                }
            }
            self.stats.not_run = self.summary.not_run.len();
            self.stats.queued = self.queue.len();
        }
        tracing::warn!(%reason, "{}", reason.describe());
        self.cfg
            .events
            .emit(&self.stats, EventKind::CancelBegun { reason });
        if !first {
            return;
        }
        for id in std::mem::take(&mut self.idle) {
            if let Some(slot) = self.slots.get_mut(&id) {
                // `release` would look for it in `idle`, which is empty now.
                slot.state = SlotState::SettingUp;
            }
            self.release(id, ReleaseReason::Cancelled);
        }
        for p in &self.cfg.provisioners {
            p.clear();
        }
    }

    /// Bookkeeping after every batch of messages: hand idle remotes work, request remotes
    /// that are missing, switch to finishing-up mode, release spares.
    pub(super) fn settle(&mut self) {
        debug_assert_eq!(
            self.stats.queued,
            self.queue.len(),
            "queued tests miscounted"
        );
        if self.cancelling {
            return;
        }
        // Each idle remote is offered the queue once: a picker may let it wait again.
        if !self.queue.is_empty() && !self.idle.is_empty() {
            for id in std::mem::take(&mut self.idle) {
                if self.queue.is_empty() {
                    self.idle.push(id);
                } else {
                    self.assign(id);
                }
            }
            // Every remote waits for a test no remote may run, and nothing in flight can
            // change that: the default order rather than a hang.
            // (Remotes held back by the ingest backlog wait for ingests in flight.)
            if !self.queue.is_empty()
                && self.stats.running == 0
                && self.setting_up == 0
                && self.releasing == 0
                && !self.ingest_backlog_full()
                && let Some(id) = self.idle.pop()
            {
                tracing::warn!(
                    queued = self.queue.len(),
                    "every remote waits for a test that no remote may run; using the default order"
                );
                self.assign_with(id, true);
            }
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
        let keep = if self.stats.running > 0 {
            self.cfg.max_spares
        } else {
            0
        };
        while self.idle.len() > keep {
            let Some(id) = self.idle.pop() else { break };
            if let Some(slot) = self.slots.get_mut(&id) {
                slot.state = SlotState::SettingUp;
            }
            self.release(id, ReleaseReason::Done);
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
    pub(super) fn ensure_capacity(&mut self) {
        let useful =
            (self.queue.len() + self.stats.running).min(self.cfg.max_remotes.unwrap_or(usize::MAX));
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
                self.abort(error, CancelReason::NoRemotes);
            }
            None => {}
        }
    }

    pub(super) fn finish(mut self) -> Result<RunSummary, OrchestratorError> {
        for (report, &test) in self.summary.tests.iter_mut().zip(&self.reported) {
            if let Some(entry) = self.tests.get_mut(test as usize) {
                report.name = std::mem::take(&mut entry.info.name);
            }
        }
        let events_dropped = self.cfg.events.dropped();
        self.summary.stats = self.stats;
        self.summary.events_dropped = events_dropped;
        self.cfg
            .events
            .emit(&self.stats, EventKind::RunFinished { events_dropped });
        match self.abort {
            Some(e) => Err(e),
            None => Ok(self.summary),
        }
    }
}
