//! A test attempt's life in the scheduler: a remote is given the next test, the test
//! runs, its end decides reruns and the remote's fate, its artifacts are ingested.

use std::sync::Arc;

use super::super::mailbox;
use super::super::policy::{Decided, Finished, Pick, PickContext, RemoteId};
use super::super::workdir::Workdir;
use super::super::worker::{self, IngestJob, Leftover, SlotId, TestDone, TestJob};
use super::state::{SlotState, State};
use crate::aggregator::{Aggregator, AggregatorError};
use crate::executor::ExecutorError;
use crate::orchestrator::events::EventKind;
use crate::orchestrator::{ReleaseReason, RetireReason, RetiredRemote, TestReport};

/// The smallest number of attempts whose ingest may be pending before remotes wait for it.
const MIN_INGEST_BACKLOG: usize = 16;

impl State {
    /// Gives the slot the next test, parks it as idle, or releases it when the pickers
    /// decline it ([`Pick::Release`]).
    pub(super) fn assign(&mut self, id: SlotId) {
        self.assign_with(id, false);
    }

    /// [`assign`](Self::assign); with `force`, the pickers are not asked and the first test
    /// in rank order runs (the way out when every remote waits and nothing is in flight).
    pub(super) fn assign_with(&mut self, id: SlotId, force: bool) {
        if self.cancelling {
            self.release(id, ReleaseReason::Cancelled);
            return;
        }
        // Ingests that fall behind hold the next test back: the backlog (its tasks,
        // artifacts directories and their descriptors) stays bounded however fast tests end.
        let hold = !force && !self.queue.is_empty() && self.ingest_backlog_full();
        let Some(slot) = self.slots.get_mut(&id) else {
            return;
        };
        if hold {
            slot.state = SlotState::Idle;
            self.idle.push(id);
            return;
        }
        let pick = if force || !self.cfg.policies.has_pickers() || self.queue.is_empty() {
            Pick::Delegate
        } else {
            let previous = slot.previous.and_then(|p| self.tests.get(p as usize));
            let ctx = PickContext {
                remote: &slot.name,
                remote_id: RemoteId(id),
                previous: previous.map(|e| &e.info),
            };
            self.cfg.policies.pick(&self.queue.view(&self.tests), &ctx)
        };
        let next = match pick {
            Pick::Run(handle) => self.queue.take(&mut self.tests, handle),
            Pick::Delegate => self.queue.pop(&mut self.tests),
            Pick::Wait => None,
            Pick::Release => {
                tracing::debug!(remote = %slot.name, "the policies declined the remote");
                self.replacement_hint = Some(slot.prov);
                self.release(id, ReleaseReason::Declined);
                return;
            }
        };
        match next {
            Some(test) => {
                self.stats.queued = self.queue.len();
                self.start_test(id, test);
            }
            None => {
                slot.state = SlotState::Idle;
                self.idle.push(id);
            }
        }
    }

    pub(super) fn start_test(&mut self, id: SlotId, test: u32) {
        let Some(slot) = self.slots.get_mut(&id) else {
            return;
        };
        let Some(executor) = slot.executor.take() else {
            // A slot without executor cannot run anything: put the test back.
            self.queue.push(&mut self.tests, test);
            self.stats.queued = self.queue.len();
            self.release(id, ReleaseReason::Broken);
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
                Workdir::new(path, self.attempt_seq, self.handles.clone())
            }
        };
        slot.state = SlotState::Running;
        slot.previous = Some(test);
        self.stats.running += 1;
        self.cfg.policies.test_started(&entry.info, RemoteId(id));
        self.cfg
            .events
            .emit_with(&self.stats, || EventKind::TestStarted {
                test: name.to_string(),
                remote: slot.name.clone(),
                attempt,
            });
        // The test runs on its remote's task (`worker::run_tests`, started with the remote's
        // first test, in the remote's scope `<run>/remote-<n>`): cancelling the run or
        // releasing the remote cancels it. A child scope per test was measured at about 7 µs
        // of CPU per test (it spawns a waiter task), a tracked task per test at 1–2 µs, for
        // nothing the remote's scope and task do not give, since a remote runs one test at a
        // time.
        let job = TestJob {
            slot: id,
            test,
            name,
            artifacts,
            executor,
            scope: slot.scope.clone(),
        };
        let jobs = slot.jobs.get_or_insert_with(|| {
            let (jobs, queue) = mailbox::mailbox();
            slot.scope
                .spawn("tests", worker::run_tests(queue, self.tx.clone()));
            jobs
        });
        if let Err(unsent) = jobs.send(job) {
            // The remote's task is gone (aborted with its scope), or has not taken its
            // previous job (cannot happen: a remote runs one test at a time): the test gets
            // its own task.
            slot.jobs = None;
            let (job, tx) = (unsent, self.tx.clone());
            slot.scope
                .spawn("test", async move { worker::run_test(job, &tx).await });
        }
    }

    pub(super) fn on_test_done(&mut self, done: TestDone) {
        self.stats.running -= 1;
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
        // A broken connection anywhere in the error's chain (not only a bare
        // `ExecutorError::Connection`: an upload under a failed setup, too) loses the remote.
        let lost = error.is_some_and(ExecutorError::is_remote_lost);
        let finished = Finished {
            test: &entry.info,
            verdict,
            exit_code,
            error,
            lost,
            attempt: entry.attempt,
            lost_before: entry.lost,
            remote: &slot.name,
            remote_id: RemoteId(id),
        };
        let destroyed = self.cfg.policies.destructive(&finished);
        let rerun = !self.cancelling && !cancelled && self.cfg.policies.rerun(&finished);
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
        let decided = Decided {
            destroyed: retire.is_some(),
            rerun,
        };
        self.cfg.policies.test_finished(&finished, decided);
        let error_text = error.map(|e| crate::error::chain(e).to_string());
        let name = entry.name.clone();
        // Counted before publishing: the event carries the statistics after it.
        if rerun {
            self.stats.reruns += 1;
            self.stats.queued += 1; // pushed below
        } else {
            self.stats.verdicts.add(verdict);
        }
        self.cfg
            .events
            .emit_with(&self.stats, || EventKind::TestFinished {
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
            self.stats.remotes.lost += 1;
            self.cfg
                .events
                .emit_with(&self.stats, || EventKind::RemoteLost {
                    remote: slot.name.clone(),
                    test: name.to_string(),
                    error: error_text.clone().unwrap_or_default(),
                });
        }
        if let Some(reason) = retire {
            slot.remote.mark_destroyed();
            let retired = RetiredRemote {
                remote: slot.name.clone(),
                test: name.to_string(),
                reason,
            };
            tracing::info!(remote = %slot.name, test = %name, %reason, "{retired}");
            self.stats.remotes.retired += 1;
            self.cfg
                .events
                .emit_with(&self.stats, || EventKind::RemoteRetired {
                    remote: retired.remote.clone(),
                    test: retired.test.clone(),
                    reason,
                });
            self.summary.retired.push(retired);
        }
        tracing::debug!(test = %name, remote = %slot.name, %verdict, ?exit_code, error = ?error_text, rerun, destroyed, "test finished");
        let report = TestReport {
            // A final attempt's name is moved in from the test table at the end of the run.
            name: if rerun {
                entry.info.name.clone()
            } else {
                String::new()
            },
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
            self.cfg
                .events
                .emit_with(&self.stats, || EventKind::RerunScheduled {
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
            self.summary.tests.push(report);
            self.reported.push(test);
            let idx = self.summary.tests.len() - 1;
            if let Some(dir) = artifacts {
                let agg = self.cfg.aggregator.clone();
                self.ingest(test, Some(idx), false, agg, name, dir);
            }
        }
        // A retired remote goes for its retirement's reason, even when the run is cancelled.
        let fallen = retire.map(ReleaseReason::from);
        if self.cancelling {
            self.release(id, fallen.unwrap_or(ReleaseReason::Cancelled));
        } else if destroyed {
            self.replacement_hint = Some(prov);
            self.release(id, fallen.unwrap_or(ReleaseReason::Broken));
        } else {
            self.assign(id);
        }
    }

    /// Whether as many attempts wait for (or are in) an ingest as the run may hold: one per
    /// remote, at least [`MIN_INGEST_BACKLOG`]. A remote then gets its next test only once
    /// an ingest has ended (the tests still running may add theirs: at most that many more).
    pub(super) fn ingest_backlog_full(&self) -> bool {
        self.ingesting >= self.slots.len().max(MIN_INGEST_BACKLOG)
    }

    pub(super) fn ingest(
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

    pub(super) fn on_ingest_done(
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
                tracing::error!(test = %name, old, error = %crate::error::chain(&e), "ingest failed");
                self.stats.ingest_errors += 1;
                let text = crate::error::chain(&e).to_string();
                self.summary.ingest_errors.push(format!("{name}: {text}"));
                Some(text)
            }
        };
        self.cfg
            .events
            .emit_with(&self.stats, || EventKind::TestIngested {
                test: name.to_string(),
                old,
                error,
            });
    }
}
