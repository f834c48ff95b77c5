//! The registry of local process groups alive in one scope tree, for the last-resort
//! synchronous kill.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

/// Local process groups alive in one scope tree, for the last-resort synchronous kill.
///
/// A cheap handle (an `Arc`): a process handle keeps a clone to unregister its group when
/// it ends, without holding on to the rest of the tree.
#[derive(Default, Clone)]
pub(crate) struct ProcessRegistry {
    inner: Arc<Groups>,
}

impl std::fmt::Debug for ProcessRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ProcessRegistry")
    }
}

#[derive(Default)]
struct Groups {
    next: AtomicU64,
    groups: Mutex<HashMap<u64, i32>>,
}

impl ProcessRegistry {
    /// Records the live process group `pgid`; returns the id to [`unregister`](Self::unregister) it.
    pub(crate) fn register(&self, pgid: i32) -> u64 {
        let id = self.inner.next.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut g) = self.inner.groups.lock() {
            g.insert(id, pgid);
        }
        id
    }

    /// How many process groups were ever registered in this tree (alive or not).
    pub(crate) fn registered(&self) -> u64 {
        self.inner.next.load(Ordering::Relaxed)
    }

    /// Forgets the process group registered as `id` (it ended or was reaped).
    pub(crate) fn unregister(&self, id: u64) {
        if let Ok(mut g) = self.inner.groups.lock() {
            g.remove(&id);
        }
    }

    /// Sends SIGKILL to every registered group and forgets them all; returns how many
    /// groups were still there to kill. Needs no runtime and never blocks.
    pub(crate) fn kill_all(&self) -> usize {
        let groups: Vec<i32> = match self.inner.groups.lock() {
            Ok(mut g) => g.drain().map(|(_, pgid)| pgid).collect(),
            Err(_) => return 0,
        };
        groups
            .into_iter()
            .filter(|pgid| killpg(Pid::from_raw(*pgid), Signal::SIGKILL).is_ok())
            .count()
    }
}
