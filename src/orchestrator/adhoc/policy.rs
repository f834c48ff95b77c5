//! Scheduling policies: small values that are combined, not subclassed.
//!
//! A [`Policy`] has an opinion on one of three questions, and may also say "no opinion"
//! (delegate to the policies after it):
//!
//! * **which queued test runs next** — ordering policies ([`Policy::priority`],
//!   [`Policy::longest_first`], [`Policy::order_by`]) and custom pickers
//!   ([`Policy::next_test`]);
//! * **is the remote destroyed** after a test — [`Policy::destructive_tag`],
//!   [`Policy::destructive_if`];
//! * **is a failed test run again** — [`Policy::limited_reruns`], [`Policy::requeue_lost`],
//!   [`Policy::rerun_if`].
//!
//! A stateful policy ([`Policy::hooks`], a [`PolicyHooks`] value such as
//! [`NightlyPolicy`](super::NightlyPolicy)) answers any of the three with `&mut self` and is
//! told what happened (tests started and finished, remotes released). It is consulted at
//! its place in the list, like the others.
//!
//! Every policy sees the whole [`TestInfo`]: name, tags, priority, duration and, for FMF
//! tests ([`TestInfo::from_fmf`]), the test's full metadata ([`TestInfo::data`],
//! [`TestInfo::key`]), so a rule may rest on any custom key.
//!
//! Policies are consulted in the order they were added: the first one gets the first say,
//! as with the upstream mixins (spec §3.8). For ordering that means lexicographic keys:
//! with `[priority(), longest_first()]` priority decides and duration only orders the
//! zero-priority tests; with `[longest_first(), priority()]` any test with a duration
//! comes first. Ties always go to the test queued first.
//!
//! Ordering policies are pure functions of a test's [`TestInfo`], so the key of each test
//! is computed once and the queue is an ordered index: picking the next test costs
//! `O(log n)`, whatever the queue length. Custom pickers ([`Policy::next_test`]) see the
//! whole queue and therefore cost `O(n)` per pick; they are consulted before the ordering
//! policies, in the order they were added, and the first that returns a test wins.
//!
//! ```
//! use std::time::Duration;
//! use atex::orchestrator::adhoc::{Policy, TestInfo};
//!
//! let policies = vec![
//!     Policy::limited_reruns(2),
//!     Policy::destructive_tag("destructive"),
//!     Policy::priority(),
//!     Policy::longest_first(),
//! ];
//! let t = TestInfo::new("/a").with_priority(5).with_duration(Duration::from_secs(60));
//! assert_eq!(t.priority, 5);
//! # let _ = policies;
//! ```

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

pub use super::hooks::{Decided, Finished, Pick, PickContext, PolicyHooks, RemoteId};
use super::queue::Rank;
pub use super::queue::{Candidate, QueueView, TestHandle};
pub use super::test_info::TestInfo;

type KeyFn = Arc<dyn Fn(&TestInfo) -> Option<i64> + Send + Sync>;
type PickFn =
    Arc<dyn for<'a> Fn(&QueueView<'a>, &PickContext<'a>) -> Option<TestHandle> + Send + Sync>;
type DecideFn = Arc<dyn Fn(&Finished<'_>) -> Option<bool> + Send + Sync>;
type SharedHooks = Arc<Mutex<dyn PolicyHooks>>;

/// Runs `f` on the hooks. The scheduler is their only user and calls one at a time; a
/// poisoned lock (a hook panicked) still yields the state.
fn with_hooks<R>(hooks: &SharedHooks, f: impl FnOnce(&mut dyn PolicyHooks) -> R) -> R {
    let mut guard = hooks.lock().unwrap_or_else(PoisonError::into_inner);
    f(&mut *guard)
}

/// The answer of an ordering stage for one test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    /// Ranked ahead of every delegated test, higher keys first.
    Ahead(i64),
    /// No opinion: later stages decide.
    Delegate,
    /// Ranked after every delegated test, higher keys first.
    Behind(i64),
}

#[derive(Clone)]
enum Kind {
    Priority,
    LongestFirst,
    OrderBy(KeyFn),
    NextTest(PickFn),
    Destructive(DecideFn),
    Rerun(DecideFn),
    Hooks(SharedHooks),
}

/// A picker: a closure of [`Policy::next_test`] or a hooks policy.
#[derive(Clone)]
enum Picker {
    Fn(PickFn),
    Hooks(SharedHooks),
}

/// A destructive or rerun decision: a closure or a hooks policy.
#[derive(Clone)]
enum Decider {
    Fn(DecideFn),
    Hooks(SharedHooks),
}

/// A scheduling policy. See the [module docs](self) for how policies combine.
#[derive(Clone)]
pub struct Policy {
    kind: Kind,
    name: &'static str,
}

impl fmt::Debug for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)
    }
}

impl Policy {
    /// Higher [`TestInfo::priority`] (FMF `extra-priority`) first: positive priorities run
    /// first (highest first), zero-priority tests in the order of the later policies, and
    /// negative ones only when no zero-priority test is left (highest first).
    pub fn priority() -> Self {
        Self {
            kind: Kind::Priority,
            name: "priority",
        }
    }

    /// Tests with a known [`TestInfo::duration`] first, longest first; tests without one
    /// are ordered by the later policies.
    pub fn longest_first() -> Self {
        Self {
            kind: Kind::LongestFirst,
            name: "longest-first",
        }
    }

    /// A custom ordering key: tests with `Some(k)` run before the others, higher `k` first;
    /// `None` leaves the test to the later policies. The key is computed once per test.
    ///
    /// ```
    /// use atex::orchestrator::adhoc::Policy;
    /// // Tests under /smoke first.
    /// let p = Policy::order_by(|t| t.name.starts_with("/smoke").then_some(1));
    /// # let _ = p;
    /// ```
    pub fn order_by(key: impl Fn(&TestInfo) -> Option<i64> + Send + Sync + 'static) -> Self {
        Self {
            kind: Kind::OrderBy(Arc::new(key)),
            name: "order-by",
        }
    }

    /// A custom picker: sees every queued test (in the order the ordering policies would
    /// run them) and returns the one to run, or `None` to leave the choice to the others.
    /// Costs `O(n)` per pick when it iterates; prefer [`order_by`](Self::order_by).
    ///
    /// ```
    /// use atex::orchestrator::adhoc::Policy;
    /// // Always run the last queued test.
    /// let p = Policy::next_test(|queue, _ctx| queue.iter().last().map(|c| c.handle));
    /// # let _ = p;
    /// ```
    pub fn next_test<F>(pick: F) -> Self
    where
        F: for<'a> Fn(&QueueView<'a>, &PickContext<'a>) -> Option<TestHandle>
            + Send
            + Sync
            + 'static,
    {
        Self {
            kind: Kind::NextTest(Arc::new(pick)),
            name: "next-test",
        }
    }

    /// Tests tagged `tag` always destroy their remote (even when they pass); other tests are
    /// left to the later policies.
    pub fn destructive_tag(tag: impl Into<String>) -> Self {
        let tag = tag.into();
        Self::destructive_if(move |f| f.test.has_tag(&tag).then_some(true))
    }

    /// A custom destructive decision: `Some(true)` destroys the remote after the test (it is
    /// marked destroyed, released, and a replacement is requested), `Some(false)` keeps it,
    /// `None` delegates. Without any opinion a remote is destroyed iff the attempt
    /// [failed](Finished::failed); an executor error always destroys it.
    pub fn destructive_if(
        decide: impl Fn(&Finished<'_>) -> Option<bool> + Send + Sync + 'static,
    ) -> Self {
        Self {
            kind: Kind::Destructive(Arc::new(decide)),
            name: "destructive",
        }
    }

    /// Reruns a [failed](Finished::failed) test up to `reruns` times: any attempt whose
    /// verdict is not a pass (a reported `fail` with exit code 0 included).
    pub fn limited_reruns(reruns: u32) -> Self {
        Self::limited_reruns_when(reruns, |_| true)
    }

    /// Like [`limited_reruns`](Self::limited_reruns), but a failed attempt is rerun only
    /// when `cond` holds for it (for example `|f| f.verdict != Verdict::Warn`).
    ///
    /// ```
    /// use atex::orchestrator::adhoc::Policy;
    /// use atex::verdict::Verdict;
    /// // Rerun failures up to twice, but not tests that only warned.
    /// let p = Policy::limited_reruns_when(2, |f| f.verdict != Verdict::Warn);
    /// # let _ = p;
    /// ```
    pub fn limited_reruns_when(
        reruns: u32,
        cond: impl Fn(&Finished<'_>) -> bool + Send + Sync + 'static,
    ) -> Self {
        let decide = move |f: &Finished<'_>| Some(f.attempt < reruns && cond(f));
        Self {
            kind: Kind::Rerun(Arc::new(decide)),
            name: "limited-reruns",
        }
    }

    /// Requeues a test whose remote was lost mid-test (the connection broke), up to `times`
    /// times per test; other failures are left to the later policies. A requeue is an
    /// attempt like any rerun: it counts against [`limited_reruns`](Self::limited_reruns)
    /// and its partial results go to the old-results aggregator. Put it before
    /// `limited_reruns` so that it gets the first say.
    pub fn requeue_lost(times: u32) -> Self {
        Self {
            kind: Kind::Rerun(Arc::new(move |f: &Finished<'_>| {
                (f.lost && f.lost_before < times).then_some(true)
            })),
            name: "requeue-lost",
        }
    }

    /// A stateful policy (see [`PolicyHooks`]): it may answer which test runs next,
    /// whether a remote is destroyed and whether a test is rerun, each at this place in the
    /// policy list, and it is told when tests start and finish and when remotes are
    /// released. The value is held behind a mutex; clones of the returned policy share it.
    pub fn hooks(hooks: impl PolicyHooks) -> Self {
        Self {
            kind: Kind::Hooks(Arc::new(Mutex::new(hooks))),
            name: "hooks",
        }
    }

    /// A custom rerun decision, consulted only for failed attempts: `Some(b)` decides,
    /// `None` delegates. Without any opinion failed tests are not rerun.
    pub fn rerun_if(
        decide: impl Fn(&Finished<'_>) -> Option<bool> + Send + Sync + 'static,
    ) -> Self {
        Self {
            kind: Kind::Rerun(Arc::new(decide)),
            name: "rerun-if",
        }
    }
}

/// A compiled list of policies.
#[derive(Clone, Default)]
pub(crate) struct Policies {
    order: Vec<Kind>,
    pickers: Vec<Picker>,
    destructive: Vec<Decider>,
    rerun: Vec<Decider>,
    /// The hooks policies, told what happens.
    observers: Vec<SharedHooks>,
}

impl fmt::Debug for Policies {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Policies")
            .field("order", &self.order.len())
            .field("pickers", &self.pickers.len())
            .field("destructive", &self.destructive.len())
            .field("rerun", &self.rerun.len())
            .field("hooks", &self.observers.len())
            .finish()
    }
}

impl Policies {
    pub(crate) fn new(list: &[Policy]) -> Self {
        let mut out = Self::default();
        for p in list {
            match &p.kind {
                k @ (Kind::Priority | Kind::LongestFirst | Kind::OrderBy(_)) => {
                    out.order.push(k.clone())
                }
                Kind::NextTest(f) => out.pickers.push(Picker::Fn(f.clone())),
                Kind::Destructive(f) => out.destructive.push(Decider::Fn(f.clone())),
                Kind::Rerun(f) => out.rerun.push(Decider::Fn(f.clone())),
                Kind::Hooks(h) => {
                    out.pickers.push(Picker::Hooks(h.clone()));
                    out.destructive.push(Decider::Hooks(h.clone()));
                    out.rerun.push(Decider::Hooks(h.clone()));
                    out.observers.push(h.clone());
                }
            }
        }
        out
    }

    /// Whether any custom picker ([`Policy::next_test`]) is set.
    pub(crate) fn has_pickers(&self) -> bool {
        !self.pickers.is_empty()
    }

    /// The custom pickers' choice: the first picker with an answer decides;
    /// [`Pick::Delegate`] without pickers or when none has an opinion.
    pub(crate) fn pick(&self, view: &QueueView<'_>, ctx: &PickContext<'_>) -> Pick {
        for picker in &self.pickers {
            let pick = match picker {
                Picker::Fn(f) => f(view, ctx).into(),
                Picker::Hooks(h) => with_hooks(h, |h| h.next_test(view, ctx)),
            };
            if pick != Pick::Delegate {
                return pick;
            }
        }
        Pick::Delegate
    }

    /// Tells the hooks policies that `test` started on `remote`.
    pub(crate) fn test_started(&self, test: &TestInfo, remote: RemoteId) {
        for h in &self.observers {
            with_hooks(h, |h| h.test_started(test, remote));
        }
    }

    /// Tells the hooks policies what was decided about a finished attempt.
    pub(crate) fn test_finished(&self, f: &Finished<'_>, decided: Decided) {
        for h in &self.observers {
            with_hooks(h, |h| h.test_finished(f, decided));
        }
    }

    /// Tells the hooks policies that `remote` is given up.
    pub(crate) fn remote_released(&self, remote: RemoteId) {
        for h in &self.observers {
            with_hooks(h, |h| h.remote_released(remote));
        }
    }

    fn class(kind: &Kind, t: &TestInfo) -> Class {
        match kind {
            Kind::Priority => match t.priority {
                0 => Class::Delegate,
                p if p > 0 => Class::Ahead(p),
                p => Class::Behind(p),
            },
            Kind::LongestFirst => match t.duration {
                Some(d) => Class::Ahead(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
                None => Class::Delegate,
            },
            Kind::OrderBy(f) => match f(t) {
                Some(k) => Class::Ahead(k),
                None => Class::Delegate,
            },
            _ => Class::Delegate,
        }
    }

    /// The test's rank: two numbers per ordering stage; the first stage with an opinion
    /// decides and the rest is padded, so that ties go to queue order.
    pub(crate) fn rank(&self, t: &TestInfo) -> Rank {
        let mut rank = Vec::with_capacity(self.order.len() * 2);
        for kind in &self.order {
            match Self::class(kind, t) {
                Class::Delegate => rank.extend([0, 0]),
                Class::Ahead(k) => {
                    rank.extend([-1, k.saturating_neg()]);
                    break;
                }
                Class::Behind(k) => {
                    rank.extend([1, k.saturating_neg()]);
                    break;
                }
            }
        }
        rank.resize(self.order.len() * 2, 0);
        rank
    }

    /// Whether the remote is destroyed after this attempt.
    pub(crate) fn destructive(&self, f: &Finished<'_>) -> bool {
        if f.error.is_some() {
            return true;
        }
        self.destructive_opinion(f).unwrap_or_else(|| f.failed())
    }

    /// What the destructive policies say about this attempt, without the defaults.
    pub(crate) fn destructive_opinion(&self, f: &Finished<'_>) -> Option<bool> {
        self.destructive.iter().find_map(|d| match d {
            Decider::Fn(d) => d(f),
            Decider::Hooks(h) => with_hooks(h, |h| h.destructive(f)),
        })
    }

    /// Whether this failed attempt is run again.
    pub(crate) fn rerun(&self, f: &Finished<'_>) -> bool {
        f.failed()
            && self
                .rerun
                .iter()
                .find_map(|d| match d {
                    Decider::Fn(d) => d(f),
                    Decider::Hooks(h) => with_hooks(h, |h| h.rerun(f)),
                })
                .unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::queue::{Queue, TestEntry};
    use super::*;
    use crate::verdict::Verdict;

    fn sorted(policies: &[Policy], tests: &[TestInfo]) -> Vec<String> {
        let p = Policies::new(policies);
        let mut v: Vec<(Rank, usize)> = tests
            .iter()
            .enumerate()
            .map(|(i, t)| (p.rank(t), i))
            .collect();
        v.sort();
        v.into_iter().map(|(_, i)| tests[i].name.clone()).collect()
    }

    fn t(name: &str, prio: i64, dur: Option<u64>) -> TestInfo {
        let mut t = TestInfo::new(name).with_priority(prio);
        t.duration = dur.map(Duration::from_secs);
        t
    }

    #[test]
    fn priority_classes() {
        let tests = [
            t("/neg1", -1, None),
            t("/zero", 0, None),
            t("/pos1", 1, None),
            t("/neg5", -5, None),
            t("/pos9", 9, None),
            t("/zero2", 0, None),
        ];
        assert_eq!(
            sorted(&[Policy::priority()], &tests),
            ["/pos9", "/pos1", "/zero", "/zero2", "/neg1", "/neg5"]
        );
    }

    #[test]
    fn priority_then_duration_vs_duration_then_priority() {
        let tests = [
            t("/a", 0, Some(10)),
            t("/b", 3, None),
            t("/c", 0, Some(100)),
            t("/d", 0, None),
            t("/e", 3, Some(1000)),
        ];
        // Priority decides; ties in priority go to queue order, not to duration.
        assert_eq!(
            sorted(&[Policy::priority(), Policy::longest_first()], &tests),
            ["/b", "/e", "/c", "/a", "/d"]
        );
        // Any test with a duration wins regardless of priority.
        assert_eq!(
            sorted(&[Policy::longest_first(), Policy::priority()], &tests),
            ["/e", "/c", "/a", "/b", "/d"]
        );
    }

    #[test]
    fn no_order_policies_is_fifo() {
        let tests = [t("/b", 5, Some(1)), t("/a", 0, None)];
        assert_eq!(sorted(&[], &tests), ["/b", "/a"]);
    }

    fn fin<'a>(test: &'a TestInfo, code: Option<i32>, attempt: u32) -> Finished<'a> {
        Finished {
            test,
            verdict: Verdict::of_attempt(None, code),
            exit_code: code,
            error: None,
            lost: false,
            attempt,
            lost_before: 0,
            remote: "r",
            remote_id: RemoteId(0),
        }
    }

    #[test]
    fn limited_reruns_counts_attempts_and_condition() {
        let p = Policies::new(&[Policy::limited_reruns_when(2, |f| f.exit_code == Some(3))]);
        let test = TestInfo::new("/x");
        assert!(p.rerun(&fin(&test, Some(3), 0)));
        assert!(p.rerun(&fin(&test, Some(3), 1)));
        assert!(!p.rerun(&fin(&test, Some(3), 2)));
        assert!(!p.rerun(&fin(&test, Some(1), 0)));
        assert!(!p.rerun(&fin(&test, Some(0), 0)));
        assert!(!Policies::new(&[]).rerun(&fin(&test, Some(1), 0)));
    }

    #[test]
    fn the_verdict_decides_reruns_and_destruction() {
        let test = TestInfo::new("/x");
        let reruns = Policies::new(&[Policy::limited_reruns(1)]);
        // Reported `fail`, exited 0.
        let mut f = fin(&test, Some(0), 0);
        f.verdict = Verdict::Fail;
        assert!(f.failed());
        assert!(reruns.rerun(&f));
        assert!(Policies::new(&[]).destructive(&f));
        // Warned: not a pass either.
        f.verdict = Verdict::Warn;
        assert!(reruns.rerun(&f));
        // Reported `pass`, exited 1: the results win.
        let mut f = fin(&test, Some(1), 0);
        f.verdict = Verdict::Pass;
        assert!(!f.failed());
        assert!(!reruns.rerun(&f));
        assert!(!Policies::new(&[]).destructive(&f));
        // Skipped: passed.
        f.verdict = Verdict::Skip;
        assert!(!reruns.rerun(&f));
        let not_warn = Policies::new(&[Policy::limited_reruns_when(1, |f| {
            f.verdict != Verdict::Warn
        })]);
        f.verdict = Verdict::Warn;
        assert!(!not_warn.rerun(&f));
        f.verdict = Verdict::Fail;
        assert!(not_warn.rerun(&f));
    }

    #[test]
    fn destructive_tag_and_default() {
        let p = Policies::new(&[Policy::destructive_tag("destructive")]);
        let tagged = TestInfo::new("/t").with_tags(["destructive"]);
        let plain = TestInfo::new("/p");
        assert!(p.destructive(&fin(&tagged, Some(0), 0)));
        assert!(!p.destructive(&fin(&plain, Some(0), 0)));
        assert!(p.destructive(&fin(&plain, Some(1), 0)));
        let keep = Policies::new(&[Policy::destructive_if(|_| Some(false))]);
        assert!(!keep.destructive(&fin(&plain, Some(1), 0)));
    }

    /// Tests `/a`, `/b`, … ranked by `p`, all queued in order.
    fn queued(p: &Policies, prios: &[i64]) -> (Vec<TestEntry>, Queue) {
        let mut tests: Vec<TestEntry> = prios
            .iter()
            .enumerate()
            .map(|(i, prio)| {
                let info =
                    TestInfo::new(format!("/{}", (b'a' + i as u8) as char)).with_priority(*prio);
                let rank = p.rank(&info);
                TestEntry::new(info, rank)
            })
            .collect();
        let mut q = Queue::default();
        for id in 0..tests.len() as u32 {
            q.push(&mut tests, id);
        }
        (tests, q)
    }

    const CTX: PickContext<'static> = PickContext {
        remote: "r",
        remote_id: RemoteId(0),
        previous: None,
    };

    /// What the queue runs next with the pickers of `p` (`Wait`/`Release` end the list).
    fn pick_all(p: &Policies, tests: &mut [TestEntry], q: &mut Queue) -> Vec<u32> {
        std::iter::from_fn(|| {
            let pick = p.pick(&q.view(tests), &CTX);
            match pick {
                Pick::Run(h) => q.take(tests, h),
                Pick::Delegate => q.pop(tests),
                Pick::Wait | Pick::Release => None,
            }
        })
        .collect()
    }

    #[test]
    fn custom_picker_and_fallback() {
        let last = Policy::next_test(|v, _| v.iter().last().map(|c| c.handle));
        let p = Policies::new(&[last]);
        let (mut tests, mut q) = queued(&p, &[0, 0, 0]);
        let order = pick_all(&p, &mut tests, &mut q);
        assert_eq!(order, [2, 1, 0]);

        let bogus = Policy::next_test(|_, _| Some(TestHandle(99)));
        let p = Policies::new(&[bogus]);
        let (mut tests, mut q) = queued(&p, &[0, 0]);
        assert_eq!(pick_all(&p, &mut tests, &mut q)[0], 0);
    }

    #[test]
    fn the_first_picker_with_an_answer_decides() {
        let none = Policy::next_test(|_, _| None);
        let first = Policy::next_test(|v, _| v.iter().next().map(|c| c.handle));
        let last = Policy::next_test(|v, _| v.iter().last().map(|c| c.handle));
        let p = Policies::new(&[none, last, first]);
        let (mut tests, mut q) = queued(&p, &[0, 0, 0]);
        assert_eq!(pick_all(&p, &mut tests, &mut q)[0], 2);
    }

    #[test]
    fn priority_order_in_the_queue() {
        let p = Policies::new(&[Policy::priority()]);
        let (mut tests, mut q) = queued(&p, &[0, 2, -1, 0]);
        let order = pick_all(&p, &mut tests, &mut q);
        assert_eq!(order, [1, 0, 3, 2]);
    }

    #[test]
    fn requeue_lost_before_limited_reruns() {
        let p = Policies::new(&[Policy::requeue_lost(1), Policy::limited_reruns(0)]);
        let test = TestInfo::new("/x");
        let mut f = fin(&test, None, 0);
        f.lost = true;
        assert!(p.rerun(&f));
        f.lost_before = 1;
        assert!(!p.rerun(&f));
    }
}
