//! The tasks the scheduler spawns, and the messages they send back.
//!
//! Every task sends exactly one message when it ends, even when the executor or aggregator
//! panics (the panic is caught and turned into an error), so the scheduler's bookkeeping of
//! what is in flight is always exact and the run can always finish.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt;
use tokio::sync::mpsc::UnboundedSender;

use super::mailbox;
use super::setup_hook::SetupHook;
use super::workdir::{Probe, Workdir};
use crate::aggregator::{Aggregator, AggregatorError};
use crate::executor::{Executor, ExecutorError, TestOutcome};
use crate::provisioner::{ProvisionError, Provisioner, Remote};
use crate::scope::Scope;
use crate::verdict::Verdict;

pub(crate) type SlotId = u64;

/// A message from a worker task to the scheduler.
pub(crate) enum Msg {
    /// A provisioner handed out a remote.
    Arrived {
        prov: usize,
        remote: Arc<dyn Remote>,
    },
    /// A provisioner failed; its acquisition task ended.
    ProvisionerFailed { prov: usize, error: ProvisionError },
    /// An executor start finished.
    SetupDone {
        slot: SlotId,
        executor: Option<Box<dyn Executor>>,
        result: Result<(), ExecutorError>,
    },
    /// A test attempt finished.
    TestDone(Box<TestDone>),
    /// An ingest finished.
    IngestDone {
        test: u32,
        report: Option<usize>,
        old: bool,
        result: Result<(), AggregatorError>,
        /// The artifacts directory, empty again and reusable.
        reusable: Option<Workdir>,
    },
    /// A remote was released.
    Released {
        slot: SlotId,
        result: Result<(), ProvisionError>,
    },
}

/// The end of one test attempt.
pub(crate) struct TestDone {
    pub(crate) slot: SlotId,
    pub(crate) test: u32,
    pub(crate) executor: Option<Box<dyn Executor>>,
    pub(crate) outcome: Result<TestOutcome, ExecutorError>,
    /// The attempt's verdict (computed here, off the scheduler).
    pub(crate) verdict: Verdict,
    pub(crate) duration: Duration,
    /// What is left of the artifacts directory.
    pub(crate) artifacts: Leftover,
}

/// What a finished attempt left in its artifacts directory.
pub(crate) enum Leftover {
    /// A results file to ingest.
    Results(Workdir),
    /// Nothing: the directory is empty and can be reused.
    Empty(Workdir),
    /// Nothing to ingest; the directory was removed (or never created).
    Gone,
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic".to_string())
}

/// Waits for remotes from one provisioner until `scope` is cancelled or the provisioner
/// fails. The wait is raced against cancellation; `get_remote` is cancel-safe.
pub(crate) async fn acquire(
    prov: usize,
    provisioner: Arc<dyn Provisioner>,
    scope: Scope,
    tx: UnboundedSender<Msg>,
) {
    loop {
        let got = tokio::select! {
            biased;
            _ = scope.cancelled() => return,
            got = provisioner.get_remote() => got,
        };
        match got {
            Ok(remote) => {
                if let Err(unsent) = tx.send(Msg::Arrived { prov, remote }) {
                    if let Msg::Arrived { remote, .. } = unsent.0 {
                        let _ = remote.release().await;
                    }
                    return;
                }
            }
            Err(error) => {
                if !scope.is_cancelled() {
                    let _ = tx.send(Msg::ProvisionerFailed { prov, error });
                }
                return;
            }
        }
    }
}

/// Everything a setup task needs.
pub(crate) struct SetupJob {
    pub(crate) slot: SlotId,
    pub(crate) executor: Box<dyn Executor>,
    pub(crate) remote: Arc<dyn Remote>,
    pub(crate) hooks: Arc<[Arc<dyn SetupHook>]>,
    pub(crate) scope: Scope,
}

/// Runs the executor's setup, then the setup hooks in order (a failing hook fails the
/// setup; the executor is kept so that the release stops it).
pub(crate) async fn setup(job: SetupJob, tx: UnboundedSender<Msg>) {
    let SetupJob {
        slot,
        mut executor,
        remote,
        hooks,
        scope,
    } = job;
    let res = AssertUnwindSafe(async {
        executor.start(&scope).await?;
        for hook in hooks.iter() {
            hook.run(&*remote, &scope)
                .await
                .map_err(|e| ExecutorError::setup(hook.describe(), e))?;
        }
        Ok(())
    })
    .catch_unwind()
    .await;
    let msg = match res {
        Ok(result) => Msg::SetupDone {
            slot,
            executor: Some(executor),
            result,
        },
        Err(panic) => Msg::SetupDone {
            slot,
            executor: None,
            result: Err(ExecutorError::setup(
                "executor",
                Panicked {
                    what: "executor start or a setup hook",
                    message: panic_message(&*panic),
                },
            )),
        },
    };
    let _ = tx.send(msg);
}

/// Everything a test task needs.
pub(crate) struct TestJob {
    pub(crate) slot: SlotId,
    pub(crate) test: u32,
    pub(crate) name: Arc<str>,
    pub(crate) artifacts: Workdir,
    pub(crate) executor: Box<dyn Executor>,
    pub(crate) scope: Scope,
}

/// Runs the test attempts a remote is given, one at a time, until the scheduler drops the
/// sending side (when it releases the remote). Every job received is run and answered with
/// one [`Msg::TestDone`].
///
/// One long-lived task per remote instead of one task per attempt: spawning a tracked task
/// (its allocation, registration and the tracker tokens of every ancestor scope) cost more
/// than handing a job to a waiting task.
pub(crate) async fn run_tests(mut jobs: mailbox::Receiver<TestJob>, tx: UnboundedSender<Msg>) {
    while let Some(job) = jobs.recv().await {
        run_test(job, &tx).await;
    }
}

/// Runs one test attempt into an empty artifacts directory.
pub(crate) async fn run_test(job: TestJob, tx: &UnboundedSender<Msg>) {
    let TestJob {
        slot,
        test,
        name,
        mut artifacts,
        mut executor,
        scope,
    } = job;
    let started = Instant::now();
    let (outcome, executor) = match artifacts.ensure() {
        Err(e) => (
            Err(ExecutorError::io(
                format!(
                    "creating the artifacts directory {}",
                    artifacts.path().display()
                ),
                e,
            )),
            Some(executor),
        ),
        Ok(()) => {
            let res = AssertUnwindSafe(executor.run_test_lines(&name, artifacts.path(), &scope))
                .catch_unwind()
                .await;
            match res {
                Ok(Ok((outcome, lines))) => {
                    if let Some(lines) = lines {
                        artifacts.set_lines(lines);
                    }
                    (Ok(outcome), Some(executor))
                }
                Ok(Err(e)) => (Err(e), Some(executor)),
                Err(panic) => (
                    Err(ExecutorError::Aborted {
                        test: name.to_string(),
                        reason: Box::new(Panicked {
                            what: "the executor",
                            message: panic_message(&*panic),
                        }),
                    }),
                    None,
                ),
            }
        }
    };
    let duration = started.elapsed();
    let artifacts = leftover(artifacts);
    let results = match &artifacts {
        Leftover::Results(dir) => match dir.lines() {
            Some(lines) => crate::orchestrator::attempt_lines_results(&name, lines),
            None => crate::orchestrator::attempt_results(&name, dir.path()),
        },
        Leftover::Empty(_) | Leftover::Gone => None,
    };
    let exit_code = outcome.as_ref().ok().map(|o| o.exit_code);
    let verdict = Verdict::of_attempt(results, exit_code);
    let _ = tx.send(Msg::TestDone(Box::new(TestDone {
        slot,
        test,
        executor,
        outcome,
        verdict,
        duration,
        artifacts,
    })));
}

/// Sorts out what an attempt left: results (lines held in memory, or a file) are
/// ingested, an empty directory reused, anything else removed.
fn leftover(mut dir: Workdir) -> Leftover {
    if dir.lines().is_some() {
        // Whatever else is there goes with the ingest (or with the directory after it).
        return Leftover::Results(dir);
    }
    match dir.probe() {
        Probe::Results => Leftover::Results(dir),
        Probe::Empty => Leftover::Empty(dir),
        Probe::Other | Probe::Unreadable => {
            dir.remove();
            Leftover::Gone
        }
    }
}

/// Returns `dir` when it is empty again, otherwise removes it.
fn reusable(mut dir: Workdir) -> Option<Workdir> {
    match dir.probe() {
        Probe::Empty => Some(dir),
        _ => {
            dir.remove();
            None
        }
    }
}

/// Everything an ingest task needs.
pub(crate) struct IngestJob {
    pub(crate) test: u32,
    pub(crate) report: Option<usize>,
    pub(crate) old: bool,
    pub(crate) aggregator: Arc<dyn Aggregator>,
    pub(crate) platform: Arc<str>,
    pub(crate) name: Arc<str>,
    pub(crate) artifacts: Workdir,
}

/// Ingests one attempt's artifacts, then empties the directory for reuse (also on failure).
pub(crate) async fn ingest(mut job: IngestJob, tx: UnboundedSender<Msg>) {
    let lines = job.artifacts.take_lines();
    let path = job.artifacts.path();
    let ingesting = crate::aggregator::ingest_with(
        job.aggregator.as_ref(),
        &job.platform,
        &job.name,
        path,
        lines.as_deref(),
    );
    let res = AssertUnwindSafe(ingesting).catch_unwind().await;
    let result = res.unwrap_or_else(|panic| {
        Err(AggregatorError::io(
            "ingest",
            std::io::Error::other(format!(
                "the aggregator panicked: {}",
                panic_message(&*panic)
            )),
        ))
    });
    // What is left after an ingest is (nearly) always an empty directory: checking it
    // inline costs a syscall or two, less than a blocking-pool round trip.
    let reusable = reusable(job.artifacts);
    let _ = tx.send(Msg::IngestDone {
        test: job.test,
        report: job.report,
        old: job.old,
        result,
        reusable,
    });
}

/// Stops the executor (unless the remote is gone) and releases the remote.
pub(crate) async fn release(
    slot: SlotId,
    remote: Arc<dyn Remote>,
    executor: Option<Box<dyn Executor>>,
    scope: Scope,
    tx: UnboundedSender<Msg>,
) {
    if let Some(mut executor) = executor {
        match AssertUnwindSafe(executor.stop(&scope)).catch_unwind().await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!(remote = %remote.describe(), error = %crate::error::chain(&e), "executor stop failed")
            }
            Err(_) => tracing::warn!(remote = %remote.describe(), "executor stop panicked"),
        }
    }
    let result = match AssertUnwindSafe(remote.release()).catch_unwind().await {
        Ok(r) => r,
        Err(panic) => Err(ProvisionError::release(
            remote.describe(),
            Panicked {
                what: "release",
                message: panic_message(&*panic),
            },
        )),
    };
    let _ = tx.send(Msg::Released { slot, result });
}

/// An executor or a remote's release panicked; the panic's message.
#[derive(Debug, thiserror::Error)]
#[error("{what} panicked: {message}")]
struct Panicked {
    /// What panicked (`the executor`, `executor start`, `release`).
    what: &'static str,
    /// The panic's message.
    message: String,
}
