//! [`NightlyPolicy`]: upstream's nightly scheduling rules as one set of policies.

use std::collections::HashMap;

use super::hooks::{Pick, PolicyHooks, RemoteId};
use super::policy::{Finished, PickContext, Policy};
use super::queue::QueueView;
use super::test_info::TestInfo;

/// A guest tag that is not a non-empty string.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("test '{test}': `{key}` must be a non-empty string (a guest tag), found {found}")]
pub struct GuestTagError {
    /// The test.
    pub test: String,
    /// The metadata key.
    pub key: String,
    /// The value found, as JSON.
    pub found: String,
}

/// The scheduling rules of upstream's nightly runs, for an [`AdHocOrchestrator`](super::AdHocOrchestrator)
/// over FMF tests ([`TestInfo::from_fmf`], so that the policies see the metadata):
///
/// * **Destructive tests first, each on a fresh remote.** A test tagged `destructive`
///   ([`destructive_tag`](Self::destructive_tag)) is ordered before every other test and
///   runs only on a remote that has run no test yet; it always destroys its remote. A
///   remote that already ran a test skips destructive tests, and when nothing else is left
///   for it, it is released ([`Pick::Release`]) so that a fresh one replaces it.
/// * **Guest-tag trains.** Tests whose custom FMF key `extra-guest-tag`
///   ([`guest_tag_key`](Self::guest_tag_key); a string) has the same value form a train:
///   the first remote that starts one of them owns the train, runs its remaining tests
///   before anything else, and no other remote starts them while the owner lives. When the
///   owner is released (destroyed by a failure, for example) the next remote to pick one
///   of the train's tests takes the train over. A remote with nothing it may run waits
///   ([`Pick::Wait`]). Destructive tests never join a train (they need a fresh remote).
/// * **Exit codes destroy remotes.** A test whose exit code is neither 0 nor 2
///   ([`keep_exit_codes`](Self::keep_exit_codes)) destroys its remote (it is retired and a
///   fresh one replaces it); 0 and 2 keep it whatever the reported results; a test that
///   did not run to the end destroys it too.
/// * **Limited reruns**: a failed test (verdict not a pass) is run again up to
///   [`reruns`](Self::reruns) times (default 1).
/// * **Priority, then duration**: among the rest, higher `extra-priority` first, then
///   longest `duration` first ([`Policy::priority`], [`Policy::longest_first`]).
///
/// The train ownership is the policy's state ([`PolicyHooks`]); [`policies`](Self::policies)
/// makes a fresh one for each run.
///
/// ```
/// use std::sync::Arc;
/// use atex::aggregator::{JsonlAggregator, JsonlOptions};
/// use atex::orchestrator::AdHocOrchestrator;
/// use atex::orchestrator::adhoc::{NightlyPolicy, TestInfo};
/// use atex::testing::{MemoryPlan, MemoryProvisioner};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let out = tempfile::tempdir()?;
/// # let aggregator = Arc::new(JsonlAggregator::create(
/// #     out.path().join("r.jsonl"), out.path().join("files"), JsonlOptions::default())?);
/// let mut data = serde_json::Map::new();
/// data.insert("extra-guest-tag".into(), "fips".into());
/// let tests = vec![
///     TestInfo::new("/a").with_data(data.clone()),
///     TestInfo::new("/b").with_data(data),
///     TestInfo::new("/wipe").with_tags(["destructive"]),
/// ];
/// let nightly = NightlyPolicy::new().reruns(2);
/// nightly.check(&tests)?;
/// let orch = AdHocOrchestrator::builder("local")
///     .tests(tests)
///     .provisioner(Arc::new(MemoryProvisioner::new(2)))
///     .executor(MemoryPlan::new().factory())
///     .aggregator(aggregator)
///     .policies(nightly.policies())
///     .build()?;
/// # let _ = orch;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct NightlyPolicy {
    guest_tag_key: String,
    destructive_tag: String,
    reruns: u32,
    keep_exit_codes: Vec<i32>,
}

impl Default for NightlyPolicy {
    fn default() -> Self {
        Self::new()
    }
}

impl NightlyPolicy {
    /// The default guest-tag key.
    pub const GUEST_TAG_KEY: &'static str = "extra-guest-tag";

    /// The rules with their defaults: guest tags in `extra-guest-tag`, the `destructive`
    /// tag, one rerun, exit codes 0 and 2 keep the remote.
    pub fn new() -> Self {
        Self {
            guest_tag_key: Self::GUEST_TAG_KEY.to_string(),
            destructive_tag: "destructive".to_string(),
            reruns: 1,
            keep_exit_codes: vec![0, 2],
        }
    }

    /// The FMF key holding a test's guest tag (default `extra-guest-tag`).
    pub fn guest_tag_key(mut self, key: impl Into<String>) -> Self {
        self.guest_tag_key = key.into();
        self
    }

    /// The tag that marks destructive tests (default `destructive`).
    pub fn destructive_tag(mut self, tag: impl Into<String>) -> Self {
        self.destructive_tag = tag.into();
        self
    }

    /// How many times a failed test is rerun (default 1).
    pub fn reruns(mut self, reruns: u32) -> Self {
        self.reruns = reruns;
        self
    }

    /// The exit codes that keep the remote (default 0 and 2); any other destroys it.
    pub fn keep_exit_codes(mut self, codes: impl IntoIterator<Item = i32>) -> Self {
        self.keep_exit_codes = codes.into_iter().collect();
        self
    }

    /// The test's guest tag: `None` when the key is not set, an error when it is not a
    /// non-empty string.
    pub fn guest_tag<'a>(&self, test: &'a TestInfo) -> Result<Option<&'a str>, GuestTagError> {
        match test.key(&self.guest_tag_key) {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(serde_json::Value::String(s)) if !s.is_empty() => Ok(Some(s)),
            Some(other) => Err(GuestTagError {
                test: test.name.clone(),
                key: self.guest_tag_key.clone(),
                found: other.to_string(),
            }),
        }
    }

    /// Whether the test carries the destructive tag.
    pub fn is_destructive(&self, test: &TestInfo) -> bool {
        test.has_tag(&self.destructive_tag)
    }

    /// Checks every test's guest tag before a run: a tag that is not a string would
    /// otherwise be a train rule silently not applied.
    pub fn check(&self, tests: &[TestInfo]) -> Result<(), GuestTagError> {
        tests.iter().try_for_each(|t| self.guest_tag(t).map(drop))
    }

    /// The policies, in order, with fresh state: the rules' hooks (pickers, destructive
    /// decisions, trains), [`Policy::limited_reruns`], destructive tests first,
    /// [`Policy::priority`], [`Policy::longest_first`].
    pub fn policies(&self) -> Vec<Policy> {
        let tag = self.destructive_tag.clone();
        vec![
            Policy::hooks(NightlyHooks {
                rules: self.clone(),
                trains: HashMap::new(),
            }),
            Policy::limited_reruns(self.reruns),
            Policy::order_by(move |t| t.has_tag(&tag).then_some(1)),
            Policy::priority(),
            Policy::longest_first(),
        ]
    }
}

/// The state of one run: which remote owns which train.
struct NightlyHooks {
    rules: NightlyPolicy,
    trains: HashMap<String, RemoteId>,
}

impl NightlyHooks {
    /// The train a test belongs to; destructive tests and invalid tags (refused by
    /// [`NightlyPolicy::check`]) belong to none.
    fn train<'a>(&self, test: &'a TestInfo) -> Option<&'a str> {
        if self.rules.is_destructive(test) {
            return None;
        }
        self.rules.guest_tag(test).ok().flatten()
    }
}

impl PolicyHooks for NightlyHooks {
    fn next_test(&mut self, queue: &QueueView<'_>, ctx: &PickContext<'_>) -> Pick {
        let fresh = ctx.previous.is_none();
        let mut first = None;
        let mut needs_fresh = false;
        for c in queue.iter() {
            if self.rules.is_destructive(c.info) {
                if fresh {
                    first = first.or(Some(c.handle));
                } else {
                    needs_fresh = true;
                }
                continue;
            }
            match self.train(c.info).and_then(|t| self.trains.get(t)) {
                // The remote's own train goes before anything else.
                Some(&owner) if owner == ctx.remote_id => return Pick::Run(c.handle),
                Some(_) => {}
                None => first = first.or(Some(c.handle)),
            }
        }
        match first {
            Some(handle) => Pick::Run(handle),
            None if needs_fresh => Pick::Release,
            None => Pick::Wait,
        }
    }

    fn destructive(&mut self, f: &Finished<'_>) -> Option<bool> {
        if self.rules.is_destructive(f.test) {
            return Some(true);
        }
        f.exit_code
            .map(|code| !self.rules.keep_exit_codes.contains(&code))
    }

    fn test_started(&mut self, test: &TestInfo, remote: RemoteId) {
        if let Some(train) = self.train(test) {
            self.trains.entry(train.to_string()).or_insert(remote);
        }
    }

    fn remote_released(&mut self, remote: RemoteId) {
        self.trains.retain(|_, owner| *owner != remote);
    }
}

#[cfg(test)]
mod tests {
    use super::super::policy::Policies;
    use super::super::queue::{Queue, TestEntry};
    use super::*;

    /// The picks of the nightly hooks, on a queue ranked by the nightly policies.
    #[test]
    fn pickers_follow_trains_and_fresh_remotes() {
        let nightly = NightlyPolicy::new();
        let policies = Policies::new(&nightly.policies());
        let infos = [
            TestInfo::new("/p"),
            tagged("/x1", "x".into()),
            TestInfo::new("/d").with_tags(["destructive"]),
            tagged("/x2", "x".into()),
        ];
        let mut tests: Vec<TestEntry> = infos
            .iter()
            .map(|t| TestEntry::new(t.clone(), policies.rank(t)))
            .collect();
        let mut q = Queue::default();
        for id in 0..tests.len() as u32 {
            q.push(&mut tests, id);
        }
        let mut hooks = NightlyHooks {
            rules: nightly,
            trains: HashMap::new(),
        };
        let used = TestInfo::new("/before");
        let ctx = |id: u64, fresh: bool| PickContext {
            remote: "r",
            remote_id: RemoteId(id),
            previous: (!fresh).then_some(&used),
        };
        let name = |pick: Pick, tests: &[TestEntry]| match pick {
            Pick::Run(h) => tests[h.0 as usize].info.name.clone(),
            other => format!("{other:?}"),
        };
        // A fresh remote takes the destructive test first; a used one skips it.
        let pick = hooks.next_test(&q.view(&tests), &ctx(0, true));
        assert_eq!(name(pick, &tests), "/d");
        let pick = hooks.next_test(&q.view(&tests), &ctx(1, false));
        assert_eq!(name(pick, &tests), "/p");
        q.remove(&mut tests, 0);
        // Remote 1 starts the x train and owns it: its next pick is the train's next test,
        // while remote 2 may not start the train.
        let pick = hooks.next_test(&q.view(&tests), &ctx(1, false));
        assert_eq!(name(pick, &tests), "/x1");
        hooks.test_started(&infos[1], RemoteId(1));
        q.remove(&mut tests, 1);
        let pick = hooks.next_test(&q.view(&tests), &ctx(2, false));
        assert_eq!(
            pick,
            Pick::Release,
            "only a destructive test is left for it"
        );
        q.remove(&mut tests, 2);
        let pick = hooks.next_test(&q.view(&tests), &ctx(2, false));
        assert_eq!(pick, Pick::Wait, "the x train belongs to remote 1");
        let pick = hooks.next_test(&q.view(&tests), &ctx(1, false));
        assert_eq!(name(pick, &tests), "/x2");
        // Remote 1 gone: the train passes to the next remote that asks.
        hooks.remote_released(RemoteId(1));
        let pick = hooks.next_test(&q.view(&tests), &ctx(2, false));
        assert_eq!(name(pick, &tests), "/x2");
    }

    fn tagged(name: &str, tag: serde_json::Value) -> TestInfo {
        let mut data = serde_json::Map::new();
        data.insert(NightlyPolicy::GUEST_TAG_KEY.into(), tag);
        TestInfo::new(name).with_data(data)
    }

    #[test]
    fn guest_tags_are_strings_or_refused() {
        let n = NightlyPolicy::new();
        assert_eq!(n.guest_tag(&tagged("/a", "x".into())), Ok(Some("x")));
        assert_eq!(n.guest_tag(&TestInfo::new("/b")), Ok(None));
        let err = n
            .check(&[
                tagged("/a", "x".into()),
                tagged("/c", serde_json::json!([1])),
            ])
            .expect_err("a list is refused");
        assert_eq!(err.test, "/c");
        assert_eq!(
            err.to_string(),
            "test '/c': `extra-guest-tag` must be a non-empty string (a guest tag), found [1]"
        );
        assert!(n.check(&[tagged("/e", "".into())]).is_err());
    }
}
