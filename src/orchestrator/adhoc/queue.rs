//! The queue of tests to run: an ordered index, `O(log n)` per push and pick, and the
//! read-only [`QueueView`] it shows to custom pickers.

use std::collections::BTreeMap;
use std::fmt;

use super::test_info::TestInfo;

/// The ordering key of a test: compared lexicographically, smaller runs first.
pub(crate) type Rank = Vec<i64>;

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
    /// A test not queued yet, with its ordering key.
    pub(crate) fn new(info: TestInfo, rank: Rank) -> Self {
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

    /// Removes and returns the next test to run: the test `choose` picks from a view of the
    /// queue (the custom pickers), otherwise the first test in rank order.
    #[cfg(test)]
    pub(crate) fn pick(
        &mut self,
        tests: &mut [TestEntry],
        choose: impl FnOnce(&QueueView<'_>) -> Option<TestHandle>,
    ) -> Option<u32> {
        if self.map.is_empty() {
            return None;
        }
        match choose(&self.view(tests)) {
            Some(handle) => self.take(tests, handle),
            None => self.pop(tests),
        }
    }

    /// A read-only view of the queue, for custom pickers.
    pub(crate) fn view<'a>(&'a self, tests: &'a [TestEntry]) -> QueueView<'a> {
        QueueView { queue: self, tests }
    }

    /// Removes and returns the test a picker chose; one that is not queued is logged and
    /// the first test in rank order is taken instead.
    pub(crate) fn take(
        &mut self,
        tests: &mut [TestEntry],
        TestHandle(id): TestHandle,
    ) -> Option<u32> {
        if self.remove(tests, id) {
            return Some(id);
        }
        tracing::warn!(
            test = id,
            "a custom next-test policy chose a test that is not queued; using the default order"
        );
        self.pop(tests)
    }

    /// Removes and returns the first test in rank order.
    pub(crate) fn pop(&mut self, tests: &mut [TestEntry]) -> Option<u32> {
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

/// Identifies a queued test; returned by a custom picker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TestHandle(pub(crate) u32);

/// One queued test, as a custom picker sees it.
#[derive(Debug, Clone, Copy)]
pub struct Candidate<'a> {
    /// The test.
    pub info: &'a TestInfo,
    /// Its handle, to return from the picker.
    pub handle: TestHandle,
    /// Which attempt it would be (0 = first run).
    pub attempt: u32,
}

/// Read-only view of the queue handed to custom pickers: the queued tests in the order the
/// ordering policies (or, without any, the queue order) would run them.
pub struct QueueView<'a> {
    queue: &'a Queue,
    tests: &'a [TestEntry],
}

impl<'a> QueueView<'a> {
    /// The queued tests, next-to-run first.
    pub fn iter(&self) -> impl Iterator<Item = Candidate<'a>> + 'a {
        let tests = self.tests;
        self.queue.ids().filter_map(move |id| {
            tests.get(id as usize).map(|e| Candidate {
                info: &e.info,
                handle: TestHandle(id),
                attempt: e.attempt,
            })
        })
    }

    /// Number of queued tests.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// Whether the queue is empty (never, when a picker is called).
    pub fn is_empty(&self) -> bool {
        self.queue.len() == 0
    }
}

impl fmt::Debug for QueueView<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QueueView")
            .field("len", &self.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Tests named `/0`, `/1`, … with the given ranks, all queued in order.
    fn setup(ranks: &[Rank]) -> (Vec<TestEntry>, Queue) {
        let mut tests: Vec<TestEntry> = ranks
            .iter()
            .enumerate()
            .map(|(i, r)| TestEntry::new(TestInfo::new(format!("/{i}")), r.clone()))
            .collect();
        let mut q = Queue::default();
        for id in 0..tests.len() as u32 {
            q.push(&mut tests, id);
        }
        (tests, q)
    }

    fn default_order(_: &QueueView<'_>) -> Option<TestHandle> {
        None
    }

    #[test]
    fn fifo_and_requeue_goes_last() {
        let (mut tests, mut q) = setup(&[vec![], vec![], vec![]]);
        assert_eq!(q.pick(&mut tests, default_order), Some(0));
        q.push(&mut tests, 0);
        let order: Vec<u32> = std::iter::from_fn(|| q.pick(&mut tests, default_order)).collect();
        assert_eq!(order, [1, 2, 0]);
    }

    #[test]
    fn chosen_test_and_fallback() {
        let (mut tests, mut q) = setup(&[vec![], vec![], vec![]]);
        let last = |v: &QueueView<'_>| v.iter().last().map(|c| c.handle);
        let order: Vec<u32> = std::iter::from_fn(|| q.pick(&mut tests, last)).collect();
        assert_eq!(order, [2, 1, 0]);

        let (mut tests, mut q) = setup(&[vec![], vec![]]);
        assert_eq!(q.pick(&mut tests, |_| Some(TestHandle(99))), Some(0));
    }

    #[test]
    fn rank_order_and_drain() {
        let (mut tests, mut q) = setup(&[vec![0], vec![-2], vec![1], vec![0]]);
        let seen: Vec<u32> = {
            let view = QueueView {
                queue: &q,
                tests: &tests,
            };
            view.iter().map(|c| c.handle.0).collect()
        };
        assert_eq!(seen, [1, 0, 3, 2]);
        assert_eq!(q.pick(&mut tests, default_order), Some(1));
        assert!(q.remove(&mut tests, 3));
        assert!(!q.remove(&mut tests, 3));
        assert_eq!(q.drain(&mut tests), [0, 2]);
        assert!(q.is_empty());
    }
}
