//! Policies that read FMF metadata and keep state, and `NightlyPolicy` (the rules of
//! examples/nightly.rs): real local remotes, the FMF executor, real test processes. Which
//! remote ran each attempt is read from the run's events.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use atex::aggregator::{Aggregator, JsonlAggregator, JsonlOptions};
use atex::executor::fmf::FmfExecutorFactory;
use atex::fmf::{DiscoverOptions, DiscoveredTests, discover};
use atex::orchestrator::adhoc::{
    NightlyPolicy, Pick, PickContext, Policy, PolicyHooks, QueueView, RemoteId, TestInfo,
};
use atex::orchestrator::events::{Event, EventKind};
use atex::orchestrator::{AdHocOrchestrator, ReleaseReason, RetireReason, RunSummary};
use atex::provisioner::LocalProvisioner;
use atex::scope::Scope;
use atex::verdict::Verdict;

fn write_tree(root: &Path, main_fmf: &str) {
    std::fs::create_dir_all(root.join(".fmf")).expect("mkdir");
    std::fs::write(root.join(".fmf/version"), "1\n").expect("version");
    std::fs::create_dir_all(root.join("tests")).expect("mkdir");
    std::fs::write(root.join("tests/main.fmf"), main_fmf).expect("main.fmf");
}

/// A finished run: its summary and every event it published.
struct Run {
    summary: RunSummary,
    events: Vec<Event>,
}

impl Run {
    /// `(test, attempt, remote)` of every attempt, in start order.
    fn started(&self) -> Vec<(String, u32, String)> {
        self.events
            .iter()
            .filter_map(|e| match &e.kind {
                EventKind::TestStarted {
                    test,
                    remote,
                    attempt,
                } => Some((test.clone(), *attempt, remote.clone())),
                _ => None,
            })
            .collect()
    }

    /// The remotes each test's attempts ran on, in order.
    fn remotes_of(&self, test: &str) -> Vec<String> {
        self.started()
            .into_iter()
            .filter(|(t, _, _)| t == test)
            .map(|(_, _, r)| r)
            .collect()
    }

    /// `(remote, test, reason)` of every retired remote.
    fn retired(&self) -> Vec<(String, String, RetireReason)> {
        self.events
            .iter()
            .filter_map(|e| match &e.kind {
                EventKind::RemoteRetired {
                    remote,
                    test,
                    reason,
                } => Some((remote.clone(), test.clone(), *reason)),
                _ => None,
            })
            .collect()
    }

    /// Position of the first event matching `f`.
    fn position(&self, f: impl Fn(&EventKind) -> bool) -> Option<usize> {
        self.events.iter().position(|e| f(&e.kind))
    }

    fn verdict(&self, test: &str) -> Option<Verdict> {
        self.summary
            .tests
            .iter()
            .find(|t| t.name == test)
            .map(|t| t.verdict)
    }
}

/// Runs the discovered tests of `tree` on up to `remotes` local remotes with `policies`;
/// tests get `NIGHTLY_STATE` (an empty directory outside the tree).
async fn run(
    tree: &Path,
    remotes: usize,
    policies: impl FnOnce(&[TestInfo]) -> Vec<Policy>,
) -> Run {
    let out = tempfile::tempdir().expect("tmp");
    let state = out.path().join("state");
    std::fs::create_dir_all(&state).expect("state dir");
    let discovered: DiscoveredTests = discover(&DiscoverOptions::new(tree)).expect("discover");
    let tests = TestInfo::from_discovered(&discovered);
    let policies = policies(&tests);
    let agg = Arc::new(
        JsonlAggregator::create(
            out.path().join("results.jsonl"),
            out.path().join("files"),
            JsonlOptions::default(),
        )
        .expect("aggregator"),
    );
    let factory = FmfExecutorFactory::new(&discovered)
        .with_env("NIGHTLY_STATE", state.to_string_lossy().into_owned());
    let mut orch = AdHocOrchestrator::builder("local")
        .tests(tests)
        .provisioner(Arc::new(LocalProvisioner::new().with_max_remotes(remotes)))
        .executor(Arc::new(factory))
        .aggregator(agg.clone())
        .policies(policies)
        .build()
        .expect("build");
    let mut stream = orch.subscribe(100_000);
    let scope = Scope::root("nightly-test");
    let collector = scope.spawn("events", async move {
        let mut out = Vec::new();
        while let Some(e) = stream.recv().await {
            out.push(e);
        }
        out
    });
    let summary = orch.run(&scope).await.expect("run");
    let events = collector.await.expect("events");
    agg.finish().await.expect("finish");
    assert_eq!(summary.events_dropped, 0);
    Run { summary, events }
}

fn tree(main_fmf: &str) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().expect("tmp");
    let root = tmp.path().join("tree");
    write_tree(&root, main_fmf);
    (tmp, root)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_reading_a_custom_fmf_key_orders_the_tests() {
    // Discovery order is /a, /b, /c, /d; the custom key `extra-order` reverses part of it.
    let (_tmp, root) = tree(
        "/a:\n    test: 'true'\n\
         /b:\n    extra-order: 1\n    test: 'true'\n\
         /c:\n    test: 'true'\n\
         /d:\n    extra-order: 7\n    test: 'true'\n",
    );
    let r = run(&root, 1, |tests| {
        // The metadata reached the policies through TestInfo::from_fmf.
        let d = tests
            .iter()
            .find(|t| t.name == "/tests/d")
            .expect("/tests/d");
        assert_eq!(d.key("extra-order"), Some(&serde_json::json!(7)));
        vec![Policy::order_by(|t| {
            t.key("extra-order").and_then(serde_json::Value::as_i64)
        })]
    })
    .await;
    let order: Vec<String> = r.started().into_iter().map(|(t, _, _)| t).collect();
    assert_eq!(order, ["/tests/d", "/tests/b", "/tests/a", "/tests/c"]);
    assert_eq!(r.summary.passed(), 4);
}

/// At most `per_remote` tests on a remote: its state counts the tests each remote ran.
struct PerRemote {
    per_remote: u32,
    ran: HashMap<RemoteId, u32>,
    released: Arc<std::sync::Mutex<Vec<RemoteId>>>,
}

impl PolicyHooks for PerRemote {
    fn next_test(&mut self, _queue: &QueueView<'_>, ctx: &PickContext<'_>) -> Pick {
        if self.ran.get(&ctx.remote_id).copied().unwrap_or(0) >= self.per_remote {
            Pick::Release
        } else {
            Pick::Delegate
        }
    }

    fn test_started(&mut self, _test: &TestInfo, remote: RemoteId) {
        *self.ran.entry(remote).or_default() += 1;
    }

    fn remote_released(&mut self, remote: RemoteId) {
        self.ran.remove(&remote);
        self.released.lock().expect("lock").push(remote);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stateful_policy_declines_used_remotes_and_fresh_ones_replace_them() {
    let (_tmp, root) = tree(
        "/a:\n    test: 'true'\n/b:\n    test: 'true'\n/c:\n    test: 'true'\n\
         /d:\n    test: 'true'\n/e:\n    test: 'true'\n",
    );
    let released = Arc::new(std::sync::Mutex::new(Vec::new()));
    let hooks = PerRemote {
        per_remote: 2,
        ran: HashMap::new(),
        released: released.clone(),
    };
    let r = run(&root, 1, |_| vec![Policy::hooks(hooks)]).await;
    assert_eq!(r.summary.passed(), 5);
    // Two tests per remote, one remote at a time: /a /b, /c /d, /e.
    let remotes: Vec<String> = r.started().into_iter().map(|(_, _, r)| r).collect();
    assert_eq!(remotes.len(), 5);
    assert_eq!(remotes[0], remotes[1]);
    assert_eq!(remotes[2], remotes[3]);
    let distinct: HashSet<&String> = remotes.iter().collect();
    assert_eq!(distinct.len(), 3, "{remotes:?}");
    let declined = r
        .events
        .iter()
        .filter(|e| {
            matches!(
                e.kind,
                EventKind::RemoteReleased {
                    reason: ReleaseReason::Declined,
                    ..
                }
            )
        })
        .count();
    assert_eq!(declined, 2);
    // Told about every remote it saw (the declined two and the last one), ids never reused.
    let released = released.lock().expect("lock").clone();
    assert_eq!(released.len(), 3, "{released:?}");
    assert_eq!(released.iter().collect::<HashSet<_>>().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_code_3_destroys_the_remote_and_the_train_goes_on_on_a_fresh_one() {
    let (_tmp, root) = tree(
        "/x:\n    extra-guest-tag: x\n\
         \x20   /t1:\n        test: 'true'\n\
         \x20   /t2:\n        test: exit 3\n\
         \x20   /t3:\n        test: exit 2\n\
         \x20   /t4:\n        test: 'true'\n",
    );
    let r = run(&root, 1, |_| NightlyPolicy::new().reruns(0).policies()).await;
    let [r1, r2, r3, r4] = ["/tests/x/t1", "/tests/x/t2", "/tests/x/t3", "/tests/x/t4"].map(|t| {
        r.remotes_of(t)
            .pop()
            .unwrap_or_else(|| panic!("{t} never ran"))
    });
    assert_eq!(r1, r2, "t1 and t2 share the train's remote");
    assert_ne!(r2, r3, "t3 runs on a fresh remote after t2 exited 3");
    assert_eq!(r3, r4, "exit code 2 keeps the remote");
    assert_eq!(
        r.retired(),
        [(
            r2.clone(),
            "/tests/x/t2".to_string(),
            RetireReason::Destructive
        )]
    );
    // The fresh remote arrived after t2 destroyed the first one.
    let t2_done = r
        .position(|k| matches!(k, EventKind::TestFinished { test, .. } if test == "/tests/x/t2"))
        .expect("t2 finished");
    let fresh = r
        .position(|k| matches!(k, EventKind::RemoteAcquired { remote, .. } if *remote == r3))
        .expect("t3's remote acquired");
    assert!(fresh > t2_done);
    assert_eq!(r.verdict("/tests/x/t2"), Some(Verdict::Fail));
    assert_eq!(r.verdict("/tests/x/t3"), Some(Verdict::Fail));
    assert_eq!(r.summary.passed(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reruns_are_limited() {
    let (_tmp, root) = tree(
        "/always:\n    test: exit 1\n\
         /flaky:\n    test: |\n        s=\"$NIGHTLY_STATE/flaky\"\n        \
         if [ -e \"$s\" ]; then exit 0; fi\n        touch \"$s\"\n        exit 1\n",
    );
    let r = run(&root, 2, |_| NightlyPolicy::new().reruns(2).policies()).await;
    assert_eq!(r.remotes_of("/tests/always").len(), 3, "1 run + 2 reruns");
    assert_eq!(r.remotes_of("/tests/flaky").len(), 2);
    assert_eq!(r.summary.reruns.len(), 3);
    assert_eq!(r.verdict("/tests/always"), Some(Verdict::Fail));
    assert_eq!(r.verdict("/tests/flaky"), Some(Verdict::Pass));
    let attempts: Vec<u32> = r
        .started()
        .into_iter()
        .filter(|(t, _, _)| t == "/tests/always")
        .map(|(_, a, _)| a)
        .collect();
    assert_eq!(attempts, [0, 1, 2]);
}

/// Checks that every train ran on one remote at a time: its tests move to another remote
/// only after the remote they ran on was given up.
fn assert_trains_kept_together(r: &Run, trains: &[&[&str]]) {
    for train in trains {
        let mut current: Option<&str> = None;
        for (i, e) in r.events.iter().enumerate() {
            let EventKind::TestStarted { test, remote, .. } = &e.kind else {
                continue;
            };
            if !train.contains(&test.as_str()) {
                continue;
            }
            if let Some(prev) = current
                && prev != remote
            {
                let gone = r.events[..i].iter().any(|e| {
                    matches!(&e.kind, EventKind::RemoteRetired { remote, .. }
                        | EventKind::RemoteReleased { remote, .. } if remote == prev)
                });
                assert!(gone, "{test} left the train's remote {prev} while it lived");
            }
            current = Some(remote);
        }
    }
}

/// The run of examples/nightly.rs: its tree (tests/fixtures/nightly) under `NightlyPolicy`
/// on three local remotes shows every rule.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_nightly_example_tree_follows_every_rule() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/nightly");
    let r = run(&root, 3, |tests| {
        let nightly = NightlyPolicy::new().reruns(1);
        nightly.check(tests).expect("valid guest tags");
        nightly.policies()
    })
    .await;
    let started = r.started();
    let names: Vec<&str> = started.iter().map(|(t, _, _)| t.as_str()).collect();

    // Destructive first, then priority, then duration.
    let mut destructive = names[..2].to_vec();
    destructive.sort_unstable();
    assert_eq!(destructive, ["/tests/reset-network", "/tests/wipe-disk"]);
    assert_eq!(names[2..4], ["/tests/plain/urgent", "/tests/plain/long"]);
    // Each destructive test on a fresh remote, which it destroyed.
    for d in ["/tests/wipe-disk", "/tests/reset-network"] {
        let i = started.iter().position(|(t, _, _)| t == d).expect("ran");
        let remote = &started[i].2;
        assert!(
            started[..i].iter().all(|(_, _, r)| r != remote),
            "{d} ran on a used remote"
        );
        assert!(
            r.retired()
                .contains(&(remote.clone(), d.to_string(), RetireReason::Destructive))
        );
    }
    // Trains.
    let fips = [
        "/tests/fips/1-enable",
        "/tests/fips/2-check",
        "/tests/fips/3-crypto",
    ];
    let fips_remotes: HashSet<String> = fips.iter().flat_map(|t| r.remotes_of(t)).collect();
    assert_eq!(
        fips_remotes.len(),
        1,
        "the fips train ran on {fips_remotes:?}"
    );
    let fips_order: Vec<&str> = names
        .iter()
        .copied()
        .filter(|t| t.starts_with("/tests/fips/"))
        .collect();
    assert_eq!(fips_order, fips, "a train runs in queue order");
    let mls = [
        "/tests/selinux-mls/1-enable",
        "/tests/selinux-mls/2-breaks-guest",
        "/tests/selinux-mls/3-after",
    ];
    assert_trains_kept_together(&r, &[&fips, &mls]);
    // Exit code 3 destroys; exit code 2 keeps.
    let breaks = r.remotes_of("/tests/selinux-mls/2-breaks-guest");
    assert_eq!(breaks.len(), 2, "run once and rerun once");
    for remote in &breaks {
        assert!(r.retired().contains(&(
            remote.clone(),
            "/tests/selinux-mls/2-breaks-guest".to_string(),
            RetireReason::Destructive
        )));
    }
    assert!(
        r.retired()
            .iter()
            .all(|(_, t, _)| t != "/tests/plain/fails-as-test"),
        "exit code 2 kept its remote"
    );
    // Limited reruns.
    assert_eq!(r.remotes_of("/tests/plain/flaky").len(), 2);
    assert_eq!(r.remotes_of("/tests/plain/fails-as-test").len(), 2);
    assert_eq!(r.verdict("/tests/plain/flaky"), Some(Verdict::Pass));
    assert_eq!(r.summary.reruns.len(), 3);
    // Every test has its final result.
    assert_eq!(r.summary.tests.len(), 12);
    assert!(r.summary.not_run.is_empty());
    assert_eq!(r.summary.failed(), 2, "breaks-guest and fails-as-test");
}

/// Lets every remote wait, always.
struct AlwaysWait;

impl PolicyHooks for AlwaysWait {
    fn next_test(&mut self, _queue: &QueueView<'_>, _ctx: &PickContext<'_>) -> Pick {
        Pick::Wait
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remotes_that_all_wait_fall_back_to_the_default_order_instead_of_hanging() {
    let (_tmp, root) =
        tree("/a:\n    test: 'true'\n/b:\n    test: 'true'\n/c:\n    test: 'true'\n");
    let r = tokio::time::timeout(
        std::time::Duration::from_secs(120),
        run(&root, 2, |_| vec![Policy::hooks(AlwaysWait)]),
    )
    .await
    .expect("the run hung");
    assert_eq!(r.summary.passed(), 3);
    let order: Vec<String> = r.started().into_iter().map(|(t, _, _)| t).collect();
    assert_eq!(order, ["/tests/a", "/tests/b", "/tests/c"]);
}
