//! One progress display for several orchestrators (`atex run --run-file`): their events
//! are forwarded into one stream, with remote names prefixed by the platform
//! (`alpha/local-1`, as two pools may name their remotes alike) and with statistics that
//! are the sum over all platforms (each platform's as of its latest event).

use std::sync::{Arc, Mutex};

use atex::orchestrator::RunStats;
use atex::orchestrator::events::{EventKind, EventSender, EventStream};

/// The shared side: the combined sender and every platform's latest statistics.
#[derive(Debug)]
pub struct Merger {
    out: EventSender,
    latest: Mutex<Vec<RunStats>>,
}

impl Merger {
    /// A merger of `platforms` streams into `out`.
    pub fn new(out: EventSender, platforms: usize) -> Arc<Self> {
        Arc::new(Self {
            out,
            latest: Mutex::new(vec![RunStats::default(); platforms]),
        })
    }
}

/// Forwards the events of platform number `index` (named `platform`) until its run ended.
pub async fn forward(merger: Arc<Merger>, index: usize, platform: String, mut events: EventStream) {
    while let Some(event) = events.recv().await {
        let mut kind = event.kind;
        match &mut kind {
            EventKind::RemoteAcquired { remote, .. }
            | EventKind::RemoteReady { remote, .. }
            | EventKind::SetupFailed { remote, .. }
            | EventKind::RemoteReleased { remote, .. }
            | EventKind::RemoteRetired { remote, .. }
            | EventKind::RemoteLost { remote, .. }
            | EventKind::TestStarted { remote, .. }
            | EventKind::TestFinished { remote, .. } => *remote = format!("{platform}/{remote}"),
            _ => {}
        }
        let total = {
            let mut latest = merger.latest.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(slot) = latest.get_mut(index) {
                *slot = event.stats;
            }
            latest.iter().fold(RunStats::default(), |mut acc, s| {
                acc.merge(s);
                acc
            })
        };
        merger.out.emit(&total, kind);
    }
}
