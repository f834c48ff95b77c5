//! A remote's life in the scheduler: requested from a provisioner, arrived, set up (its
//! executor started), released.

use std::sync::Arc;

use super::super::policy::RemoteId;
use super::super::worker::{self, SlotId};
use super::state::{Slot, SlotState, State};
use crate::executor::{Executor, ExecutorError};
use crate::orchestrator::events::EventKind;
use crate::orchestrator::{CancelReason, OrchestratorError, ReleaseReason};
use crate::provisioner::{Count, ProvisionError, Remote};

impl State {
    pub(super) fn request(&mut self, prov: usize, count: usize) {
        if count == 0 || !self.prov_alive.get(prov).copied().unwrap_or(false) {
            return;
        }
        let p = self.cfg.provisioners[prov].clone();
        match p.provision(Count::N(count)) {
            Ok(()) => {
                self.pending[prov] = self.pending[prov].saturating_add(count);
                self.cfg
                    .events
                    .emit_with(&self.stats, || EventKind::RemoteRequested {
                        provisioner: p.describe(),
                        count,
                    });
            }
            Err(e) => self.provisioner_failed(prov, e),
        }
    }

    pub(super) fn provisioner_failed(&mut self, prov: usize, error: ProvisionError) {
        if self.cancelling {
            return;
        }
        tracing::error!(provisioner = %self.cfg.provisioners[prov].describe(), error = %crate::error::chain(&error),
            "provisioner failed");
        self.prov_alive[prov] = false;
        self.pending[prov] = 0;
        self.last_prov_error = Some(error);
    }

    pub(super) fn on_arrived(&mut self, prov: usize, remote: Arc<dyn Remote>) {
        self.pending[prov] = self.pending[prov].saturating_sub(1);
        self.stats.remotes.acquired += 1;
        self.stats.remotes.active += 1;
        let name = remote.describe();
        let id = self.next_slot;
        self.next_slot += 1;
        self.cfg
            .events
            .emit_with(&self.stats, || EventKind::RemoteAcquired {
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
            jobs: None,
            previous: None,
            discard: false,
            release_reason: ReleaseReason::Done,
        };
        let over_limit = self
            .cfg
            .max_remotes
            .is_some_and(|m| self.active_slots() >= m);
        let spares = if self.stats.running > 0 {
            self.cfg.max_spares
        } else {
            0
        };
        let free = self.idle.len() + self.setting_up - self.discarding;
        let reason = if self.cancelling {
            Some(ReleaseReason::Cancelled)
        } else if over_limit {
            Some(ReleaseReason::OverLimit)
        } else if free >= self.queue.len() + spares {
            Some(ReleaseReason::Spare)
        } else {
            None
        };
        self.slots.insert(id, slot);
        if let Some(reason) = reason {
            self.release(id, reason);
            return;
        }
        let executor = self.cfg.factory.create(remote.clone());
        self.setting_up += 1;
        if let Some(slot) = self.slots.get(&id) {
            let scope = slot.scope.clone();
            let job = worker::SetupJob {
                slot: id,
                executor,
                remote,
                hooks: self.cfg.setup_hooks.clone(),
                scope,
            };
            slot.scope
                .spawn("setup", worker::setup(job, self.tx.clone()));
        }
    }

    pub(super) fn on_setup_done(
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
                // Discarded: its setup was cancelled because no work is left for it.
                let reason = if self.cancelling {
                    ReleaseReason::Cancelled
                } else {
                    ReleaseReason::Done
                };
                self.release(id, reason);
            }
            Err(e) => {
                self.failed_setups += 1;
                self.stats.setup_failures += 1;
                let error = crate::error::chain(&e).to_string();
                tracing::warn!(remote = %slot.name, error = %error, "setup failed");
                self.cfg
                    .events
                    .emit_with(&self.stats, || EventKind::SetupFailed {
                        remote: slot.name.clone(),
                        error: error.clone(),
                    });
                self.summary
                    .setup_errors
                    .push(format!("{}: {error}", slot.name));
                self.replacement_hint = Some(slot.prov);
                self.release(id, ReleaseReason::SetupFailed);
                if self.failed_setups > self.cfg.max_failed_setups {
                    let error = OrchestratorError::SetupLimit {
                        failures: self.failed_setups,
                        last: e,
                    };
                    self.abort(error, CancelReason::SetupLimit);
                }
            }
            Ok(()) => {
                self.cfg
                    .events
                    .emit_with(&self.stats, || EventKind::RemoteReady {
                        remote: slot.name.clone(),
                    });
                slot.state = SlotState::Idle;
                if discard {
                    self.release(id, ReleaseReason::Done);
                } else {
                    self.assign(id);
                }
            }
        }
    }

    /// Stops the slot's executor (if set up and reachable) and releases its remote.
    pub(super) fn release(&mut self, id: SlotId, reason: ReleaseReason) {
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
        // Ends the remote's test task once it has finished the test it may be running.
        slot.jobs = None;
        self.cfg.policies.remote_released(RemoteId(id));
        self.releasing += 1;
        let executor = slot.executor.take();
        let (remote, scope) = (slot.remote.clone(), self.run_scope.clone());
        self.run_scope.spawn(
            "release",
            worker::release(id, remote, executor, scope, self.tx.clone()),
        );
    }

    pub(super) fn on_released(&mut self, id: SlotId, result: Result<(), ProvisionError>) {
        self.releasing -= 1;
        let Some(slot) = self.slots.remove(&id) else {
            return;
        };
        if let Err(e) = &result {
            tracing::warn!(remote = %slot.name, error = %crate::error::chain(&e), "release failed");
        }
        self.stats.remotes.active -= 1;
        self.cfg
            .events
            .emit_with(&self.stats, || EventKind::RemoteReleased {
                remote: slot.name.clone(),
                reason: slot.release_reason,
            });
    }
}
