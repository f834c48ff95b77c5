//! [`run`]: one run from the provisioners' start to their stop.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::mpsc;

use super::super::queue::{Queue, TestEntry};
use super::super::test_info::TestInfo;
use super::super::workdir::HandleBudget;
use super::super::worker::{self, Msg};
use super::config::Config;
use super::state::State;
use crate::orchestrator::{OrchestratorError, RunStats, RunSummary};
use crate::provisioner::Provisioner;
use crate::scope::Scope;

/// A quarter of the soft open-files limit, at most `cap`: how many artifacts directories
/// may keep an open handle (see [`HandleBudget`]).
fn kept_handles(cap: u64) -> u64 {
    use nix::sys::resource::{Resource, getrlimit};
    getrlimit(Resource::RLIMIT_NOFILE)
        .map(|(soft, _)| (soft / 4).min(cap))
        .unwrap_or(cap)
}

/// Kept handles while the run has started no local process: they only save the probes
/// an `openat` and a `close` (in-memory scheduling of 100,000 tests on 1,000 remotes: 3.6
/// instead of 6.7 µs of CPU per test, benches/README.md §0.1).
const MAX_KEPT_HANDLES_WITHOUT_PROCESSES: u64 = 4096;

/// Kept handles once the run starts local processes: few, because every open descriptor
/// of the process is copied into each test process it starts and closed there by its
/// `exec`. In a pool of 1,000 remotes, 1,000–2,000 kept handles cost the tests 8–12 %
/// more CPU (scale workload, 6,000 tests, two alternating sessions) and saved the
/// orchestrator less than that.
const MAX_KEPT_HANDLES_WITH_PROCESSES: u64 = 64;

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
                    tracing::warn!(provisioner = %started.describe(), error = %crate::error::chain(&e), "stop failed");
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
        reported: Vec::new(),
        stats: RunStats::default(),
        artifacts_base: base.path().to_path_buf(),
        free_dirs: Vec::new(),
        attempt_seq: 0,
        handles: Arc::new(HandleBudget::new(
            scope.processes().clone(),
            kept_handles(MAX_KEPT_HANDLES_WITHOUT_PROCESSES),
            kept_handles(MAX_KEPT_HANDLES_WITH_PROCESSES),
        )),
        tx: tx.clone(),
        outer: scope.clone(),
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
            // Never held by the run: acquired and released at once, without events.
            st.stats.remotes.acquired += 1;
            if let Err(e) = remote.release().await {
                tracing::warn!(remote = %remote.describe(), error = %crate::error::chain(&e), "release failed");
            }
        }
    }
    stop_provisioners(&st.cfg.provisioners).await;
    let _ = run_scope
        .spawn_blocking("remove-artifacts", move || drop(base))
        .await;
    st.finish()
}

/// Stops every provisioner, logging failures.
async fn stop_provisioners(provisioners: &[Arc<dyn Provisioner>]) {
    for p in provisioners {
        if let Err(e) = p.stop().await {
            tracing::warn!(provisioner = %p.describe(), error = %crate::error::chain(&e), "stopping the provisioner failed");
        }
    }
}
