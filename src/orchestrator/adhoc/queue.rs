//! The queue of tests to run: an ordered index, `O(log n)` per push and pick.

use std::collections::BTreeMap;

use super::policy::{PickContext, Policies, QueueView, Rank, TestHandle, TestInfo};

/// Per-test scheduling state, indexed by test id.
#[derive(Debug)]
pub(crate) struct TestEntry {
    pub(crate) info: TestInfo,
    /// The name, shared with the tasks that run and ingest the test without copying it.
    pub(crate) name: std::sync::Arc<str>,
    /// Ordering key, computed once from the policies.
    pub(crate) rank: Rank,
    /// The queue sequence number while queued.
    pub(crate) queued: Option<u64>,
    /// The next attempt number (0 = first run).
    pub(crate) attempt: u32,
    /// How many attempts lost their remote.
    pub(crate) lost: u32,
}

impl TestEntry {
    pub(crate) fn new(info: TestInfo, policies: &Policies) -> Self {
        let rank = policies.rank(&info);
        Self {
            name: info.name.as_str().into(),
            info,
            rank,
            queued: None,
            attempt: 0,
            lost: 0,
        }
    }
}

/// Queued test ids ordered by (rank, sequence). Without ordering policies every rank is
/// empty and the order is plain FIFO; a requeued test gets a new sequence number, so it goes
/// to the end of its rank.
#[derive(Debug, Default)]
pub(crate) struct Queue {
    map: BTreeMap<(Rank, u64), u32>,
    next_seq: u64,
}

impl Queue {
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Queued ids, next-to-run first.
    pub(crate) fn ids(&self) -> impl Iterator<Item = u32> + '_ {
        self.map.values().copied()
    }

    /// Queues `id` (no-op when already queued).
    pub(crate) fn push(&mut self, tests: &mut [TestEntry], id: u32) {
        let Some(entry) = tests.get_mut(id as usize) else {
            return;
        };
        if entry.queued.is_some() {
            return;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        entry.queued = Some(seq);
        self.map.insert((entry.rank.clone(), seq), id);
    }

    /// Removes `id` from the queue; false when it was not queued.
    pub(crate) fn remove(&mut self, tests: &mut [TestEntry], id: u32) -> bool {
        let Some(entry) = tests.get_mut(id as usize) else {
            return false;
        };
        let Some(seq) = entry.queued.take() else {
            return false;
        };
        // Moving the rank out and back avoids cloning it for the lookup key.
        let key = (std::mem::take(&mut entry.rank), seq);
        let removed = self.map.remove(&key).is_some();
        entry.rank = key.0;
        removed
    }

    /// Removes and returns the next test to run: the first custom picker with an answer
    /// decides, otherwise the first test in rank order.
    pub(crate) fn pick(
        &mut self,
        tests: &mut [TestEntry],
        policies: &Policies,
        ctx: &PickContext<'_>,
    ) -> Option<u32> {
        if self.map.is_empty() {
            return None;
        }
        let mut chosen = None;
        if !policies.pickers().is_empty() {
            let view = QueueView { queue: self, tests };
            for picker in policies.pickers() {
                if let Some(TestHandle(id)) = picker(&view, ctx) {
                    chosen = Some(id);
                    break;
                }
            }
        }
        if let Some(id) = chosen {
            if self.remove(tests, id) {
                return Some(id);
            }
            tracing::warn!(
                test = id,
                "a custom next-test policy chose a test that is not queued; using the default order"
            );
        }
        let ((_, _), id) = self.map.pop_first()?;
        if let Some(entry) = tests.get_mut(id as usize) {
            entry.queued = None;
        }
        Some(id)
    }

    /// Empties the queue, returning the ids that were queued.
    pub(crate) fn drain(&mut self, tests: &mut [TestEntry]) -> Vec<u32> {
        let ids: Vec<u32> = std::mem::take(&mut self.map).into_values().collect();
        for &id in &ids {
            if let Some(e) = tests.get_mut(id as usize) {
                e.queued = None;
            }
        }
        ids
    }
}

#[cfg(test)]
mod tests {
    use super::super::policy::Policy;
    use super::*;

    fn setup(policies: &[Policy], names: &[(&str, i64)]) -> (Vec<TestEntry>, Queue, Policies) {
        let p = Policies::new(policies);
        let mut tests: Vec<TestEntry> = names
            .iter()
            .map(|(n, prio)| TestEntry::new(TestInfo::new(*n).with_priority(*prio), &p))
            .collect();
        let mut q = Queue::default();
        for id in 0..tests.len() as u32 {
            q.push(&mut tests, id);
        }
        (tests, q, p)
    }

    const CTX: PickContext<'static> = PickContext {
        remote: "r",
        previous: None,
    };

    #[test]
    fn fifo_and_requeue_goes_last() {
        let (mut tests, mut q, p) = setup(&[], &[("/a", 0), ("/b", 0), ("/c", 0)]);
        assert_eq!(q.pick(&mut tests, &p, &CTX), Some(0));
        q.push(&mut tests, 0);
        let order: Vec<u32> = std::iter::from_fn(|| q.pick(&mut tests, &p, &CTX)).collect();
        assert_eq!(order, [1, 2, 0]);
    }

    #[test]
    fn custom_picker_and_fallback() {
        let last = Policy::next_test(|v, _| v.iter().last().map(|c| c.handle));
        let (mut tests, mut q, p) = setup(&[last], &[("/a", 0), ("/b", 0), ("/c", 0)]);
        let order: Vec<u32> = std::iter::from_fn(|| q.pick(&mut tests, &p, &CTX)).collect();
        assert_eq!(order, [2, 1, 0]);

        let bogus = Policy::next_test(|_, _| Some(TestHandle(99)));
        let (mut tests, mut q, p) = setup(&[bogus], &[("/a", 0), ("/b", 0)]);
        assert_eq!(q.pick(&mut tests, &p, &CTX), Some(0));
    }

    #[test]
    fn priority_order_and_drain() {
        let (mut tests, mut q, p) = setup(
            &[Policy::priority()],
            &[("/a", 0), ("/b", 2), ("/c", -1), ("/d", 0)],
        );
        assert_eq!(q.pick(&mut tests, &p, &CTX), Some(1));
        assert!(q.remove(&mut tests, 3));
        assert!(!q.remove(&mut tests, 3));
        assert_eq!(q.drain(&mut tests), [0, 2]);
        assert!(q.is_empty());
    }
}
