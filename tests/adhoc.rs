//! AdHocOrchestrator: real LocalProvisioner + CommandExecutor + JsonlAggregator where the
//! behaviour is observable there, MemoryProvisioner/MemoryPlan for the edge cases.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use atex::aggregator::{Aggregator, JsonlAggregator, JsonlOptions};
use atex::connection::Connection;
use atex::executor::{CommandExecutor, Executor, ExecutorFactory};
use atex::orchestrator::adhoc::{Policy, TestInfo};
use atex::orchestrator::events::{Event, EventKind, EventStream};
use atex::orchestrator::{
    AdHocOrchestrator, CancelReason, OrchestratorError, ReleaseReason, RetireReason, RunStats,
};
use atex::provisioner::{LocalProvisioner, Remote};
use atex::scope::Scope;
use atex::testing::{MemoryPlan, MemoryProvisioner};
use atex::verdict::Verdict;
use serde_json::Value;

const PLATFORM: &str = "9.6@x86_64";

fn jsonl(dir: &Path, name: &str, allow_duplicate: bool) -> Arc<JsonlAggregator> {
    Arc::new(
        JsonlAggregator::create(
            dir.join(format!("{name}.jsonl")),
            dir.join(format!("{name}-files")),
            JsonlOptions {
                allow_duplicate,
                ..JsonlOptions::default()
            },
        )
        .expect("aggregator"),
    )
}

/// The result rows of a JSONL results file, as `(platform, status, test)`.
fn rows(path: &Path) -> Vec<(String, String, String)> {
    std::fs::read_to_string(path)
        .expect("results file")
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).expect("json");
            (
                v[0].as_str().unwrap_or_default().to_string(),
                v[1].as_str().unwrap_or_default().to_string(),
                v[2].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

fn command_factory(tests: &[(&str, &str)]) -> Arc<dyn ExecutorFactory> {
    let table: HashMap<String, Vec<String>> = tests
        .iter()
        .map(|(n, script)| {
            (
                n.to_string(),
                vec!["sh".to_string(), "-c".to_string(), script.to_string()],
            )
        })
        .collect();
    let table = Arc::new(table);
    Arc::new(move |remote: Arc<dyn Remote>| {
        let conn: Arc<dyn Connection> = remote;
        Box::new(CommandExecutor::with_tests(conn, table.clone())) as Box<dyn Executor>
    })
}

async fn collect(mut events: EventStream) -> Vec<Event> {
    let mut out = Vec::new();
    while let Some(e) = events.recv().await {
        out.push(e);
    }
    out
}

/// The statistics carried by the last event, which must be `RunFinished`, and the number
/// of events it says were dropped.
fn final_stats(events: &[Event]) -> (RunStats, u64) {
    match events.last() {
        Some(e) => match e.kind {
            EventKind::RunFinished { events_dropped } => (e.stats, events_dropped),
            _ => panic!("the last event is not RunFinished: {e:?}"),
        },
        None => panic!("no events"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_test_aggregated_with_platform_status_and_name() {
    let out = tempfile::tempdir().expect("tmp");
    let agg = jsonl(out.path(), "results", false);
    let orch = AdHocOrchestrator::builder(PLATFORM)
        .test("/one")
        .provisioner(Arc::new(LocalProvisioner::new()))
        .executor(command_factory(&[("/one", "true")]))
        .aggregator(agg.clone())
        .build()
        .expect("build");
    let scope = Scope::root("t");
    let summary = orch.run(&scope).await.expect("run");
    agg.finish().await.expect("finish");
    assert_eq!(summary.passed(), 1);
    assert!(summary.tests[0].ingested);
    assert_eq!(
        rows(&out.path().join("results.jsonl")),
        [(PLATFORM.into(), "pass".into(), "/one".into())]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_tests_with_mixed_statuses_all_aggregated() {
    let out = tempfile::tempdir().expect("tmp");
    let agg = jsonl(out.path(), "results", false);
    let orch = AdHocOrchestrator::builder(PLATFORM)
        .tests(["/a", "/b", "/c"])
        .provisioner(Arc::new(LocalProvisioner::new()))
        .executor(command_factory(&[
            ("/a", "true"),
            ("/b", "exit 3"),
            ("/c", "echo hi"),
        ]))
        .aggregator(agg.clone())
        .max_remotes(2)
        .build()
        .expect("build");
    let summary = orch.run(&Scope::root("t")).await.expect("run");
    agg.finish().await.expect("finish");
    assert_eq!(summary.tests.len(), 3);
    assert_eq!(summary.passed(), 2);
    assert!(summary.ingest_errors.is_empty());
    let mut got = rows(&out.path().join("results.jsonl"));
    got.sort_by(|a, b| a.2.cmp(&b.2));
    assert_eq!(
        got,
        [
            (PLATFORM.into(), "pass".into(), "/a".into()),
            (PLATFORM.into(), "fail".into(), "/b".into()),
            (PLATFORM.into(), "pass".into(), "/c".into()),
        ]
    );
    // The output of /c was uploaded.
    let output = out
        .path()
        .join("results-files")
        .join(PLATFORM)
        .join("c/output.txt");
    assert_eq!(std::fs::read_to_string(output).expect("output"), "hi\n");
}

/// Wraps the JSONL aggregator and counts which ingest the orchestrator used, and whether a
/// `results` file was in the artifacts at that moment.
#[derive(Debug)]
struct IngestSpy {
    inner: Arc<JsonlAggregator>,
    from_file: AtomicUsize,
    from_lines: AtomicUsize,
    lines_beside_a_file: AtomicUsize,
}

#[async_trait::async_trait]
impl Aggregator for IngestSpy {
    async fn ingest(
        &self,
        platform: &str,
        test: &str,
        artifacts: &Path,
    ) -> Result<(), atex::aggregator::AggregatorError> {
        self.from_file.fetch_add(1, Ordering::SeqCst);
        self.inner.ingest(platform, test, artifacts).await
    }

    async fn ingest_lines(
        &self,
        platform: &str,
        test: &str,
        artifacts: &Path,
        lines: &[u8],
    ) -> Result<(), atex::aggregator::AggregatorError> {
        self.from_lines.fetch_add(1, Ordering::SeqCst);
        if artifacts.join("results").exists() {
            self.lines_beside_a_file.fetch_add(1, Ordering::SeqCst);
        }
        self.inner
            .ingest_lines(platform, test, artifacts, lines)
            .await
    }

    async fn finish(&self) -> Result<(), atex::aggregator::AggregatorError> {
        self.inner.finish().await
    }
}

/// An executor that only has `run_test` (so the default `run_test_lines`).
#[derive(Debug)]
struct FileOnly(Box<dyn Executor>);

#[async_trait::async_trait]
impl Executor for FileOnly {
    async fn start(&mut self, scope: &Scope) -> Result<(), atex::executor::ExecutorError> {
        self.0.start(scope).await
    }

    async fn run_test(
        &mut self,
        test: &str,
        artifacts: &Path,
        scope: &Scope,
    ) -> Result<atex::executor::TestOutcome, atex::executor::ExecutorError> {
        self.0.run_test(test, artifacts, scope).await
    }

    async fn stop(&mut self, scope: &Scope) -> Result<(), atex::executor::ExecutorError> {
        self.0.stop(scope).await
    }
}

/// The command executor's result lines reach the aggregator in memory (no `results` file
/// is written); an executor that writes the file is ingested from it. Both record the same
/// rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn command_results_go_to_the_aggregator_in_memory() {
    for in_memory in [true, false] {
        let out = tempfile::tempdir().expect("tmp");
        let spy = Arc::new(IngestSpy {
            inner: jsonl(out.path(), "results", false),
            from_file: AtomicUsize::new(0),
            from_lines: AtomicUsize::new(0),
            lines_beside_a_file: AtomicUsize::new(0),
        });
        let commands = command_factory(&[("/a", "true"), ("/b", "exit 3"), ("/c", "echo hi")]);
        let executors: Arc<dyn ExecutorFactory> = if in_memory {
            commands
        } else {
            Arc::new(move |remote: Arc<dyn Remote>| {
                Box::new(FileOnly(commands.create(remote))) as Box<dyn Executor>
            })
        };
        let orch = AdHocOrchestrator::builder(PLATFORM)
            .tests(["/a", "/b", "/c"])
            .provisioner(Arc::new(LocalProvisioner::new()))
            .executor(executors)
            .aggregator(spy.clone())
            .max_remotes(2)
            .build()
            .expect("build");
        let summary = orch.run(&Scope::root("t")).await.expect("run");
        spy.finish().await.expect("finish");
        assert_eq!(summary.passed(), 2, "in memory: {in_memory}");
        assert!(summary.ingest_errors.is_empty(), "in memory: {in_memory}");
        let (lines, files) = (
            spy.from_lines.load(Ordering::SeqCst),
            spy.from_file.load(Ordering::SeqCst),
        );
        if in_memory {
            assert_eq!((lines, files), (3, 0));
        } else {
            assert_eq!((lines, files), (0, 3));
        }
        assert_eq!(spy.lines_beside_a_file.load(Ordering::SeqCst), 0);
        let mut got = rows(&out.path().join("results.jsonl"));
        got.sort_by(|a, b| a.2.cmp(&b.2));
        assert_eq!(
            got,
            [
                (PLATFORM.into(), "pass".into(), "/a".into()),
                (PLATFORM.into(), "fail".into(), "/b".into()),
                (PLATFORM.into(), "pass".into(), "/c".into()),
            ],
            "in memory: {in_memory}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flaky_test_rerun_goes_to_old_aggregator() {
    let out = tempfile::tempdir().expect("tmp");
    let flag = out.path().join("flag");
    let script = format!(
        "if [ -e '{0}' ]; then exit 0; fi; touch '{0}'; exit 1",
        flag.display()
    );
    let agg = jsonl(out.path(), "results", false);
    let old = jsonl(out.path(), "old", true);
    let orch = AdHocOrchestrator::builder(PLATFORM)
        .tests(["/flaky", "/stable"])
        .provisioner(Arc::new(LocalProvisioner::new()))
        .executor(command_factory(&[("/flaky", &script), ("/stable", "true")]))
        .aggregator(agg.clone())
        .old_aggregator(old.clone())
        .policy(Policy::limited_reruns(2))
        .build()
        .expect("build");
    let summary = orch.run(&Scope::root("t")).await.expect("run");
    agg.finish().await.expect("finish");
    old.finish().await.expect("finish");
    assert_eq!(summary.passed(), 2);
    assert_eq!(summary.reruns.len(), 1);
    assert!(summary.reruns[0].ingested);
    let mut main = rows(&out.path().join("results.jsonl"));
    main.sort_by(|a, b| a.2.cmp(&b.2));
    assert_eq!(
        main,
        [
            (PLATFORM.into(), "pass".into(), "/flaky".into()),
            (PLATFORM.into(), "pass".into(), "/stable".into()),
        ]
    );
    assert_eq!(
        rows(&out.path().join("old.jsonl")),
        [(PLATFORM.into(), "fail".into(), "/flaky".into())]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_next_test_is_called_once_per_test_and_honoured() {
    let out = tempfile::tempdir().expect("tmp");
    let agg = jsonl(out.path(), "results", false);
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let mut orch = AdHocOrchestrator::builder(PLATFORM)
        .tests(["/a", "/b", "/c"])
        .provisioner(Arc::new(LocalProvisioner::new()))
        .executor(command_factory(&[
            ("/a", "true"),
            ("/b", "true"),
            ("/c", "true"),
        ]))
        .aggregator(agg.clone())
        .max_remotes(1)
        .policy(Policy::next_test(move |queue, _ctx| {
            counter.fetch_add(1, Ordering::SeqCst);
            queue.iter().last().map(|c| c.handle)
        }))
        .build()
        .expect("build");
    let events = orch.subscribe(1000);
    let summary = orch.run(&Scope::root("t")).await.expect("run");
    agg.finish().await.expect("finish");
    assert_eq!(summary.passed(), 3);
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    let started: Vec<String> = collect(events)
        .await
        .into_iter()
        .filter_map(|e| match e.kind {
            EventKind::TestStarted { test, .. } => Some(test),
            _ => None,
        })
        .collect();
    assert_eq!(started, ["/c", "/b", "/a"]);
    // Ingests run concurrently, so the results file is in completion order.
    let mut ingested: Vec<String> = rows(&out.path().join("results.jsonl"))
        .into_iter()
        .map(|r| r.2)
        .collect();
    ingested.sort();
    assert_eq!(ingested, ["/a", "/b", "/c"]);
}

#[tokio::test]
async fn empty_test_list_is_a_config_error() {
    let err = AdHocOrchestrator::builder(PLATFORM)
        .tests(Vec::<String>::new())
        .provisioner(Arc::new(MemoryProvisioner::new(1)))
        .executor(MemoryPlan::new().factory())
        .aggregator(jsonl(tempfile::tempdir().expect("tmp").path(), "r", false))
        .build()
        .expect_err("must fail");
    assert!(matches!(err, OrchestratorError::Config(_)), "{err}");
    let err = AdHocOrchestrator::builder(PLATFORM)
        .test("/a")
        .executor(MemoryPlan::new().factory())
        .aggregator(jsonl(tempfile::tempdir().expect("tmp").path(), "r", false))
        .build()
        .expect_err("no provisioner");
    assert!(matches!(err, OrchestratorError::Config(_)));
}

fn memory_orch(
    tests: &[&str],
    prov: &MemoryProvisioner,
    plan: &MemoryPlan,
    agg: Arc<dyn Aggregator>,
) -> atex::orchestrator::adhoc::AdHocBuilder {
    AdHocOrchestrator::builder(PLATFORM)
        .tests(tests.iter().copied())
        .provisioner(Arc::new(prov.clone()))
        .executor(plan.factory())
        .aggregator(agg)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destructive_test_releases_and_replaces_the_remote() {
    let out = tempfile::tempdir().expect("tmp");
    let prov = MemoryProvisioner::new(1);
    let plan = MemoryPlan::new();
    let mut orch = AdHocOrchestrator::builder(PLATFORM)
        .test(TestInfo::new("/destroyer").with_tags(["destructive"]))
        .tests(["/after1", "/after2"])
        .provisioner(Arc::new(prov.clone()))
        .executor(plan.factory())
        .aggregator(jsonl(out.path(), "results", false))
        .policy(Policy::destructive_tag("destructive"))
        .build()
        .expect("build");
    let events = orch.subscribe(1000);
    let summary = orch.run(&Scope::root("t")).await.expect("run");
    assert_eq!(summary.passed(), 3);
    let runs = plan.runs();
    assert_eq!(runs[0].test, "/destroyer");
    // The destructive test passed, yet its remote was not reused.
    assert!(
        runs[1..].iter().all(|r| r.remote != runs[0].remote),
        "{runs:?}"
    );
    let stats = prov.stats();
    assert_eq!(stats.provisioned, 2);
    assert_eq!(stats.released, 2);
    assert_eq!(stats.live, 0);
    let events = collect(events).await;
    assert!(events.iter().any(|e| matches!(&e.kind,
        EventKind::RemoteReleased { remote, reason } if *remote == runs[0].remote && *reason == ReleaseReason::Destroyed)));
    // Every executor that was started was stopped.
    assert_eq!(plan.starts(), plan.stops());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_test_destroys_remote_by_default_and_rerun_gets_replacement() {
    let out = tempfile::tempdir().expect("tmp");
    let prov = MemoryProvisioner::new(1);
    let plan = MemoryPlan::new().exit_codes("/flaky", [1, 0]);
    let orch = memory_orch(&["/flaky"], &prov, &plan, jsonl(out.path(), "r", false))
        .policy(Policy::limited_reruns(1))
        .build()
        .expect("build");
    let summary = orch.run(&Scope::root("t")).await.expect("run");
    assert_eq!(summary.passed(), 1);
    assert_eq!(summary.reruns.len(), 1);
    let runs = plan.runs();
    assert_eq!(runs.len(), 2);
    assert_ne!(runs[0].remote, runs[1].remote);
    assert_eq!(prov.stats().provisioned, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setup_failures_up_to_the_limit_are_retried() {
    let out = tempfile::tempdir().expect("tmp");
    let prov = MemoryProvisioner::new(1);
    let plan = MemoryPlan::new().fail_setups(2);
    let summary = memory_orch(&["/a", "/b"], &prov, &plan, jsonl(out.path(), "r", false))
        .max_failed_setups(2)
        .build()
        .expect("build")
        .run(&Scope::root("t"))
        .await
        .expect("run");
    assert_eq!(summary.passed(), 2);
    assert_eq!(summary.setup_errors.len(), 2);
    assert_eq!(prov.stats().live, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setup_failure_limit_aborts_the_run_cleanly() {
    let out = tempfile::tempdir().expect("tmp");
    let prov = MemoryProvisioner::new(2);
    let plan = MemoryPlan::new().fail_setups(1000);
    let mut orch = memory_orch(&["/a", "/b"], &prov, &plan, jsonl(out.path(), "r", false))
        .max_failed_setups(3)
        .build()
        .expect("build");
    let events = orch.subscribe(1000);
    let err = orch.run(&Scope::root("t")).await.expect_err("must abort");
    match err {
        OrchestratorError::SetupLimit { failures, .. } => assert_eq!(failures, 4),
        other => panic!("unexpected {other}"),
    }
    let stats = prov.stats();
    assert_eq!(stats.live, 0, "{stats:?}");
    assert!(plan.runs().is_empty());
    // The run says why it stopped, and its statistics account for every test.
    let events = collect(events).await;
    let reasons: Vec<CancelReason> = events
        .iter()
        .filter_map(|e| match e.kind {
            EventKind::CancelBegun { reason } => Some(reason),
            _ => None,
        })
        .collect();
    assert_eq!(reasons, [CancelReason::SetupLimit]);
    let (stats, _) = final_stats(&events);
    assert_eq!(stats.cancel, Some(CancelReason::SetupLimit));
    assert_eq!(
        (stats.setup_failures, stats.not_run, stats.finished()),
        (4, 2, 0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancellation_escalates_from_interrupt_to_kill() {
    let out = tempfile::tempdir().expect("tmp");
    let flag = out.path().join("ignoring-sigterm");
    // The test ignores SIGTERM: only the kill ends it.
    let stubborn = format!("trap '' TERM; touch '{}'; exec sleep 60", flag.display());
    let mut orch = AdHocOrchestrator::builder(PLATFORM)
        .tests(["/stubborn", "/later"])
        .provisioner(Arc::new(LocalProvisioner::new().with_max_remotes(1)))
        .executor(command_factory(&[
            ("/stubborn", &stubborn),
            ("/later", "true"),
        ]))
        .aggregator(jsonl(out.path(), "r", false))
        .build()
        .expect("build");
    let mut events = orch.subscribe(1000);
    let scope = Scope::root("t");
    scope.set_kill_grace(Duration::from_secs(120));
    let run = tokio::spawn({
        let scope = scope.clone();
        async move { orch.run(&scope).await }
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !flag.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "/stubborn never started"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    scope.cancel();
    loop {
        let ev = events.recv().await.expect("event");
        if let EventKind::CancelBegun { reason } = ev.kind {
            assert_eq!(reason, CancelReason::Interrupt);
            assert_eq!(ev.stats.cancel, Some(CancelReason::Interrupt));
            assert_eq!(ev.stats.not_run, 1);
            break;
        }
    }
    scope.kill();
    let summary = run.await.expect("join").expect("run");
    assert_eq!(summary.cancel_reason(), Some(CancelReason::Kill));
    assert_eq!(summary.not_run, ["/later"]);
    assert_eq!(summary.tests[0].verdict, Verdict::Infra);
    let rest = collect(events).await;
    let reasons: Vec<CancelReason> = rest
        .iter()
        .filter_map(|e| match e.kind {
            EventKind::CancelBegun { reason } => Some(reason),
            _ => None,
        })
        .collect();
    assert_eq!(reasons, [CancelReason::Kill]);
    assert_eq!(final_stats(&rest).0, summary.stats);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spare_remotes_are_released_when_the_queue_empties() {
    let out = tempfile::tempdir().expect("tmp");
    let prov = MemoryProvisioner::new(3);
    let plan = MemoryPlan::new().gated("/slow");
    let mut orch = memory_orch(
        &["/slow", "/b", "/c"],
        &prov,
        &plan,
        jsonl(out.path(), "r", false),
    )
    .build()
    .expect("build");
    let mut events = orch.subscribe(1000);
    let scope = Scope::root("t");
    let run = tokio::spawn({
        let scope = scope.clone();
        async move { orch.run(&scope).await }
    });
    // While /slow still runs, the other two remotes become spare and are released.
    let mut spare = 0;
    let mut seen = Vec::new();
    while spare < 2 {
        let ev = events.recv().await.expect("event");
        if let EventKind::RemoteReleased { reason, .. } = &ev.kind {
            // The queue is empty and no running test could need them: no work left.
            assert_eq!(*reason, ReleaseReason::Done);
            spare += 1;
        }
        seen.push(ev);
    }
    assert!(
        !seen
            .iter()
            .any(|e| matches!(&e.kind, EventKind::TestFinished { test, .. } if test == "/slow"))
    );
    let stats = prov.stats();
    assert_eq!(stats.live, 1);
    assert!(stats.clears >= 1);
    plan.open("/slow");
    let summary = run.await.expect("join").expect("run");
    assert_eq!(summary.passed(), 3);
    assert_eq!(prov.stats().live, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remotes_joining_mid_run_get_work() {
    let out = tempfile::tempdir().expect("tmp");
    let prov = MemoryProvisioner::new(1);
    let plan = MemoryPlan::new().gated("/first");
    let mut orch = memory_orch(
        &["/first", "/b", "/c"],
        &prov,
        &plan,
        jsonl(out.path(), "r", false),
    )
    .build()
    .expect("build");
    let mut events = orch.subscribe(1000);
    let scope = Scope::root("t");
    let run = tokio::spawn({
        let scope = scope.clone();
        async move { orch.run(&scope).await }
    });
    loop {
        let ev = events.recv().await.expect("event");
        if matches!(&ev.kind, EventKind::TestStarted { test, .. } if test == "/first") {
            break;
        }
    }
    prov.add_capacity(1);
    loop {
        let ev = events.recv().await.expect("event");
        if matches!(&ev.kind, EventKind::TestFinished { test, .. } if test == "/c") {
            break;
        }
    }
    plan.open("/first");
    let summary = run.await.expect("join").expect("run");
    assert_eq!(summary.passed(), 3);
    let runs = plan.runs();
    let remote_of = |t: &str| {
        runs.iter()
            .find(|r| r.test == t)
            .map(|r| r.remote.clone())
            .unwrap_or_default()
    };
    assert_ne!(remote_of("/b"), remote_of("/first"));
    assert_eq!(remote_of("/b"), remote_of("/c"));
    assert_eq!(prov.stats().provisioned, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_lost_mid_test_requeues_the_test_on_a_replacement() {
    let out = tempfile::tempdir().expect("tmp");
    let prov = MemoryProvisioner::new(1);
    let plan = MemoryPlan::new().lose_remote("/x", 1);
    let old = jsonl(out.path(), "old", true);
    let mut orch = memory_orch(&["/x", "/y"], &prov, &plan, jsonl(out.path(), "r", false))
        .old_aggregator(old.clone())
        .policy(Policy::requeue_lost(1))
        .build()
        .expect("build");
    let events = orch.subscribe(1000);
    let summary = orch.run(&Scope::root("t")).await.expect("run");
    old.finish().await.expect("finish");
    assert_eq!(summary.passed(), 2);
    assert_eq!(summary.reruns.len(), 1);
    assert!(summary.reruns[0].error.is_some());
    let events = collect(events).await;
    let lost: Vec<&str> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::RemoteLost { test, .. } => Some(test.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(lost, ["/x"]);
    assert!(events.iter().any(|e| matches!(&e.kind,
        EventKind::RemoteReleased { reason, .. } if *reason == ReleaseReason::Lost)));
    let runs = plan.runs();
    let x: Vec<_> = runs.iter().filter(|r| r.test == "/x").collect();
    assert_eq!(x.len(), 2);
    assert_ne!(x[0].remote, x[1].remote);
    // The lost attempt's infra result went to the old-results aggregator.
    assert_eq!(
        rows(&out.path().join("old.jsonl")),
        [(PLATFORM.into(), "infra".into(), "/x".into())]
    );
    // The lost remote's executor was not stopped (its connection is gone); the others were.
    assert_eq!(plan.stops() + 1, plan.starts());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_lost_without_policy_fails_the_test() {
    let out = tempfile::tempdir().expect("tmp");
    let prov = MemoryProvisioner::new(1);
    let plan = MemoryPlan::new().lose_remote("/x", 1);
    let summary = memory_orch(&["/x", "/y"], &prov, &plan, jsonl(out.path(), "r", false))
        .build()
        .expect("build")
        .run(&Scope::root("t"))
        .await
        .expect("run");
    assert_eq!(summary.passed(), 1);
    let x = summary.tests.iter().find(|t| t.name == "/x").expect("/x");
    assert!(
        x.error
            .as_deref()
            .is_some_and(|e| e.contains("connection lost"))
    );
    assert!(x.ingested);
}

fn marked_processes(marker: &str) -> Vec<String> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        if let Ok(env) = std::fs::read(entry.path().join("environ"))
            && env.split(|b| *b == 0).any(|kv| kv == marker.as_bytes())
        {
            found.push(name);
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancellation_mid_run_leaves_no_process_and_ingests_finished_tests() {
    let out = tempfile::tempdir().expect("tmp");
    let marker = format!("ATEX_ADHOC_MARKER={}", std::process::id());
    let slow = format!("env {marker} sh -c 'sleep 30; true'");
    let agg = jsonl(out.path(), "results", false);
    let mut orch = AdHocOrchestrator::builder(PLATFORM)
        .tests(["/q1", "/q2", "/s1", "/s2", "/s3"])
        .provisioner(Arc::new(LocalProvisioner::new()))
        .executor(command_factory(&[
            ("/q1", "true"),
            ("/q2", "true"),
            ("/s1", &slow),
            ("/s2", &slow),
            ("/s3", &slow),
        ]))
        .aggregator(agg.clone())
        .max_remotes(2)
        .build()
        .expect("build");
    let mut events = orch.subscribe(1000);
    let scope = Scope::root("t");
    scope.set_kill_grace(Duration::from_secs(2));
    let run = tokio::spawn({
        let scope = scope.clone();
        async move { orch.run(&scope).await }
    });
    let mut slow_started = 0;
    while slow_started < 2 {
        let ev = events.recv().await.expect("event");
        if matches!(&ev.kind, EventKind::TestStarted { test, .. } if test.starts_with("/s")) {
            slow_started += 1;
        }
    }
    // Wait until the marked processes exist, then cancel.
    for _ in 0..500 {
        if marked_processes(&marker).len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    scope.cancel();
    let summary = run.await.expect("join").expect("run");
    agg.finish().await.expect("finish");
    assert!(summary.cancelled());
    assert_eq!(summary.not_run, ["/s3"]);
    assert!(marked_processes(&marker).is_empty());
    // Every test that finished, including the cancelled ones, was ingested.
    assert_eq!(summary.tests.len(), 4);
    assert!(
        summary.tests.iter().all(|t| t.ingested),
        "{:?}",
        summary.tests
    );
    let mut got = rows(&out.path().join("results.jsonl"));
    got.sort_by(|a, b| a.2.cmp(&b.2));
    assert_eq!(
        got,
        [
            (PLATFORM.into(), "pass".into(), "/q1".into()),
            (PLATFORM.into(), "pass".into(), "/q2".into()),
            (PLATFORM.into(), "infra".into(), "/s1".into()),
            (PLATFORM.into(), "infra".into(), "/s2".into()),
        ]
    );
    let rest = collect(events).await;
    assert!(rest.iter().any(|e| matches!(
        e.kind,
        EventKind::CancelBegun {
            reason: CancelReason::Interrupt
        }
    )));
    let report = scope.shutdown(Default::default()).await;
    assert!(report.is_clean(), "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_sequence_is_consistent() {
    let out = tempfile::tempdir().expect("tmp");
    let prov = MemoryProvisioner::new(2);
    let plan = MemoryPlan::new().exit_codes("/fail", [1]);
    let mut orch = memory_orch(
        &["/a", "/b", "/fail", "/d", "/e"],
        &prov,
        &plan,
        jsonl(out.path(), "r", false),
    )
    .build()
    .expect("build");
    let events = orch.subscribe(10_000);
    let summary = orch.run(&Scope::root("t")).await.expect("run");
    let events = collect(events).await;
    assert!(matches!(
        events.first().map(|e| &e.kind),
        Some(EventKind::RunStarted { tests: 5, .. })
    ));
    let (stats, dropped) = final_stats(&events);
    assert_eq!(
        (stats.passed(), stats.not_passed(), stats.not_run),
        (4, 1, 0)
    );
    assert_eq!(dropped, 0);
    assert_eq!(summary.passed(), 4);
    let mut running: HashMap<String, String> = HashMap::new();
    let (mut acquired, mut released, mut finished) = (0, 0, 0);
    let mut last = Duration::ZERO;
    for e in &events {
        assert!(e.elapsed >= last, "elapsed goes backwards");
        last = e.elapsed;
        // The statistics each event carries agree with the events so far.
        let s = &e.stats;
        assert_eq!(s.tests, 5);
        assert_eq!(
            s.tests,
            s.finished() + s.running + s.queued + s.not_run,
            "{e:?}"
        );
        match &e.kind {
            EventKind::RemoteAcquired { .. } => acquired += 1,
            EventKind::RemoteReleased { .. } => released += 1,
            EventKind::TestStarted { test, remote, .. } => {
                assert!(
                    running.insert(remote.clone(), test.clone()).is_none(),
                    "two tests on {remote}"
                );
            }
            EventKind::TestFinished {
                test,
                remote,
                verdict,
                ..
            } => {
                assert_eq!(running.remove(remote).as_deref(), Some(test.as_str()));
                assert_eq!(*verdict == Verdict::Fail, test == "/fail");
                finished += 1;
                assert_eq!(s.finished(), finished);
            }
            _ => {}
        }
        assert_eq!(s.running, running.len(), "{e:?}");
        assert_eq!(s.remotes.acquired, acquired, "{e:?}");
        assert_eq!(s.remotes.active, acquired - released, "{e:?}");
    }
    assert_eq!(finished, 5);
    assert_eq!(acquired, released);
    assert_eq!(prov.stats().live, 0);
    // The serialised form is one flat JSON object per event.
    let v = serde_json::to_value(&events[0]).expect("json");
    assert_eq!(v["event"], "run_started");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn final_statistics_equal_the_summary() {
    let out = tempfile::tempdir().expect("tmp");
    let prov = MemoryProvisioner::new(3);
    let plan = MemoryPlan::new()
        .exit_codes("/flaky", [1, 0])
        .exit_codes("/fails", [1, 1])
        .lose_remote("/lost", 1)
        .fail_setups(1);
    let mut orch = memory_orch(
        &["/a", "/b", "/flaky", "/fails", "/lost"],
        &prov,
        &plan,
        jsonl(out.path(), "r", false),
    )
    .old_aggregator(jsonl(out.path(), "old", true))
    .policy(Policy::requeue_lost(1))
    .policy(Policy::limited_reruns(1))
    .build()
    .expect("build");
    let events = orch.subscribe(10_000);
    let summary = orch.run(&Scope::root("t")).await.expect("run");
    let events = collect(events).await;
    let (stats, dropped) = final_stats(&events);
    assert_eq!(stats, summary.stats);
    assert_eq!(dropped, summary.events_dropped);
    // The verdict counts sum to the finished tests and match their reports.
    assert_eq!(stats.finished(), summary.tests.len());
    for v in Verdict::ALL {
        let reported = summary.tests.iter().filter(|t| t.verdict == v).count();
        assert_eq!(stats.verdicts.get(v), reported, "{v}");
    }
    assert_eq!(
        stats.passed(),
        summary.tests.iter().filter(|t| t.passed()).count()
    );
    assert_eq!((stats.passed(), stats.verdicts.get(Verdict::Fail)), (4, 1));
    // /flaky, /fails and /lost each ran twice.
    assert_eq!((stats.reruns, summary.reruns.len()), (3, 3));
    assert_eq!((stats.not_run, summary.not_run.len()), (0, 0));
    assert_eq!((stats.setup_failures, summary.setup_errors.len()), (1, 1));
    assert_eq!(stats.remotes.retired, summary.retired.len());
    let lost = summary
        .retired
        .iter()
        .filter(|r| r.reason == RetireReason::Lost)
        .count();
    assert_eq!((stats.remotes.lost, lost), (1, 1));
    assert_eq!(stats.remotes.acquired, prov.stats().provisioned);
    assert_eq!(
        (stats.running, stats.queued, stats.remotes.active),
        (0, 0, 0)
    );
    assert_eq!((stats.tests, stats.cancel), (5, None));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_provisioners_all_supply_remotes() {
    let out = tempfile::tempdir().expect("tmp");
    let p1 = MemoryProvisioner::named("one", 1);
    let p2 = MemoryProvisioner::named("two", 1);
    let plan = MemoryPlan::new().default_duration(Duration::from_millis(20));
    let summary = AdHocOrchestrator::builder(PLATFORM)
        .tests((0..8).map(|i| format!("/t{i}")))
        .provisioner(Arc::new(p1.clone()))
        .provisioner(Arc::new(p2.clone()))
        .executor(plan.factory())
        .aggregator(jsonl(out.path(), "r", false))
        .build()
        .expect("build")
        .run(&Scope::root("t"))
        .await
        .expect("run");
    assert_eq!(summary.passed(), 8);
    for p in [&p1, &p2] {
        let s = p.stats();
        assert_eq!(s.provisioned, 1, "{s:?}");
        assert_eq!(s.live, 0);
        assert!(s.clears >= 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_errors_are_reported_in_the_summary() {
    let out = tempfile::tempdir().expect("tmp");
    let agg = jsonl(out.path(), "r", false);
    agg.finish().await.expect("finish");
    let prov = MemoryProvisioner::new(1);
    let plan = MemoryPlan::new();
    let mut orch = memory_orch(&["/a", "/b"], &prov, &plan, agg)
        .build()
        .expect("build");
    let events = orch.subscribe(100);
    let summary = orch.run(&Scope::root("t")).await.expect("run");
    assert_eq!(summary.ingest_errors.len(), 2);
    assert!(summary.tests.iter().all(|t| !t.ingested));
    let events = collect(events).await;
    assert_eq!(final_stats(&events).0.ingest_errors, 2);
    assert_eq!(summary.stats.ingest_errors, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn priority_and_longest_first_order_a_single_remote() {
    let out = tempfile::tempdir().expect("tmp");
    let prov = MemoryProvisioner::new(1);
    let plan = MemoryPlan::new();
    let secs = Duration::from_secs;
    let summary = AdHocOrchestrator::builder(PLATFORM)
        .test(TestInfo::new("/short").with_duration(secs(1)))
        .test(TestInfo::new("/plain"))
        .test(TestInfo::new("/long").with_duration(secs(100)))
        .test(
            TestInfo::new("/low")
                .with_priority(-1)
                .with_duration(secs(1000)),
        )
        .test(TestInfo::new("/high").with_priority(5))
        .provisioner(Arc::new(prov.clone()))
        .executor(plan.factory())
        .aggregator(jsonl(out.path(), "r", false))
        .policy(Policy::priority())
        .policy(Policy::longest_first())
        .build()
        .expect("build")
        .run(&Scope::root("t"))
        .await
        .expect("run");
    assert_eq!(summary.passed(), 5);
    let order: Vec<String> = plan.runs().into_iter().map(|r| r.test).collect();
    assert_eq!(order, ["/high", "/long", "/short", "/plain", "/low"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_tests_on_many_remotes() {
    let out = tempfile::tempdir().expect("tmp");
    let prov = MemoryProvisioner::new(50);
    let plan = MemoryPlan::new().write_results(false).record(false);
    let n = 5000;
    let summary = AdHocOrchestrator::builder(PLATFORM)
        .tests((0..n).map(|i| format!("/t{i:05}")))
        .provisioner(Arc::new(prov.clone()))
        .executor(plan.factory())
        .aggregator(jsonl(out.path(), "r", false))
        .build()
        .expect("build")
        .run(&Scope::root("t"))
        .await
        .expect("run");
    assert_eq!(summary.tests.len(), n);
    assert_eq!(summary.passed(), n);
    assert_eq!(prov.stats().live, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_event_consumer_never_stalls_the_run() {
    let out = tempfile::tempdir().expect("tmp");
    let prov = MemoryProvisioner::new(4);
    let plan = MemoryPlan::new();
    let mut orch = memory_orch(
        &["/a", "/b", "/c", "/d", "/e"],
        &prov,
        &plan,
        jsonl(out.path(), "r", false),
    )
    .build()
    .expect("build");
    // Room for one event, and nobody reads until the run is over.
    let mut events = orch.subscribe(1);
    let summary = orch.run(&Scope::root("t")).await.expect("run");
    assert_eq!(summary.passed(), 5);
    assert!(summary.events_dropped > 0);
    // RunFinished itself did not fit either.
    assert_eq!(events.dropped(), summary.events_dropped + 1);
    assert!(matches!(
        events.recv().await.map(|e| e.kind),
        Some(EventKind::RunStarted { .. })
    ));
    assert!(events.recv().await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_remotes_limits_local_remotes() {
    let out = tempfile::tempdir().expect("tmp");
    let agg = jsonl(out.path(), "results", false);
    let names: Vec<String> = (0..6).map(|i| format!("/t{i}")).collect();
    let table: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "true")).collect();
    let mut orch = AdHocOrchestrator::builder(PLATFORM)
        .tests(names.iter())
        .provisioner(Arc::new(LocalProvisioner::new()))
        .executor(command_factory(&table))
        .aggregator(agg.clone())
        .max_remotes(2)
        .build()
        .expect("build");
    let events = orch.subscribe(1000);
    let summary = orch.run(&Scope::root("t")).await.expect("run");
    assert_eq!(summary.passed(), 6);
    let (mut held, mut max_held) = (0i64, 0i64);
    for e in collect(events).await {
        match e.kind {
            EventKind::RemoteAcquired { .. } => {
                held += 1;
                max_held = max_held.max(held);
            }
            EventKind::RemoteReleased { .. } => held -= 1,
            _ => {}
        }
    }
    assert_eq!(held, 0);
    assert!(max_held <= 2, "{max_held} remotes held at once");
}

/// An executor that panics in `run_test`.
#[derive(Debug)]
struct Panicky;

#[async_trait::async_trait]
impl Executor for Panicky {
    async fn start(&mut self, _scope: &Scope) -> Result<(), atex::executor::ExecutorError> {
        Ok(())
    }

    async fn run_test(
        &mut self,
        test: &str,
        _artifacts: &Path,
        _scope: &Scope,
    ) -> Result<atex::executor::TestOutcome, atex::executor::ExecutorError> {
        if test == "/boom" {
            panic!("executor bug");
        }
        Ok(atex::executor::TestOutcome {
            exit_code: 0,
            duration: Duration::ZERO,
        })
    }

    async fn stop(&mut self, _scope: &Scope) -> Result<(), atex::executor::ExecutorError> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_executor_fails_its_test_and_the_run_goes_on() {
    let out = tempfile::tempdir().expect("tmp");
    let prov = MemoryProvisioner::new(1);
    let factory: Arc<dyn ExecutorFactory> =
        Arc::new(|_remote: Arc<dyn Remote>| Box::new(Panicky) as Box<dyn Executor>);
    let summary = AdHocOrchestrator::builder(PLATFORM)
        .tests(["/boom", "/fine"])
        .provisioner(Arc::new(prov.clone()))
        .executor(factory)
        .aggregator(jsonl(out.path(), "r", false))
        .build()
        .expect("build")
        .run(&Scope::root("t"))
        .await
        .expect("run");
    assert_eq!(summary.tests.len(), 2);
    let boom = summary
        .tests
        .iter()
        .find(|t| t.name == "/boom")
        .expect("/boom");
    assert!(
        boom.error
            .as_deref()
            .is_some_and(|e| e.contains("panicked"))
    );
    assert!(
        summary
            .tests
            .iter()
            .any(|t| t.name == "/fine" && t.passed())
    );
    assert_eq!(prov.stats().live, 0);
    // The broken remote was replaced.
    assert_eq!(prov.stats().provisioned, 2);
}

/// A factory of command executors whose status is `fail` when the output says `FAIL`
/// (whatever the exit code), else follows the exit code.
fn reporting_factory(tests: &[(&str, &str)]) -> Arc<dyn ExecutorFactory> {
    let table: Arc<HashMap<String, Vec<String>>> = Arc::new(
        tests
            .iter()
            .map(|(n, s)| (n.to_string(), vec!["sh".into(), "-c".into(), s.to_string()]))
            .collect(),
    );
    Arc::new(move |remote: Arc<dyn Remote>| {
        let conn: Arc<dyn Connection> = remote;
        let evaluate: atex::executor::Evaluate = Arc::new(|status, output| {
            let text = std::fs::read_to_string(output).unwrap_or_default();
            let status = if text.contains("FAIL") {
                "fail"
            } else if text.contains("WARN") {
                "warn"
            } else if text.contains("SKIP") {
                "skip"
            } else if status.success() {
                "pass"
            } else {
                "fail"
            };
            status.to_string()
        });
        Box::new(CommandExecutor::with_tests(conn, table.clone()).with_evaluate(evaluate))
            as Box<dyn Executor>
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_test_reporting_fail_with_exit_0_is_not_passed() {
    let out = tempfile::tempdir().expect("tmp");
    let agg = jsonl(out.path(), "results", false);
    let mut orch = AdHocOrchestrator::builder(PLATFORM)
        .tests(["/says-fail", "/says-warn", "/says-skip", "/exit-1"])
        .provisioner(Arc::new(LocalProvisioner::new()))
        .executor(reporting_factory(&[
            ("/says-fail", "echo FAIL"),
            ("/says-warn", "echo WARN"),
            ("/says-skip", "echo SKIP"),
            ("/exit-1", "exit 1"),
        ]))
        .aggregator(agg.clone())
        .build()
        .expect("build");
    let events = orch.subscribe(1000);
    let summary = orch.run(&Scope::root("t")).await.expect("run");
    agg.finish().await.expect("finish");
    let verdict = |name: &str| {
        let t = summary
            .tests
            .iter()
            .find(|t| t.name == name)
            .expect("report");
        (t.verdict.to_string(), t.passed(), t.exit_code)
    };
    assert_eq!(verdict("/says-fail"), ("fail".into(), false, Some(0)));
    assert_eq!(verdict("/says-warn"), ("warn".into(), false, Some(0)));
    assert_eq!(verdict("/says-skip"), ("skip".into(), true, Some(0)));
    assert_eq!(verdict("/exit-1"), ("fail".into(), false, Some(1)));
    assert_eq!((summary.passed(), summary.failed()), (1, 3));
    let finished: HashMap<String, String> = collect(events)
        .await
        .into_iter()
        .filter_map(|e| match e.kind {
            EventKind::TestFinished { test, verdict, .. } => Some((test, verdict.to_string())),
            _ => None,
        })
        .collect();
    assert_eq!(finished["/says-fail"], "fail");
    assert_eq!(finished["/says-warn"], "warn");
    assert_eq!(finished["/says-skip"], "skip");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limited_reruns_rerun_a_test_reporting_fail_with_exit_0() {
    let out = tempfile::tempdir().expect("tmp");
    let flag = out.path().join("flag");
    // The first attempt says FAIL and exits 0; the second passes.
    let script = format!(
        "if [ -e '{0}' ]; then echo fine; else touch '{0}'; echo FAIL; fi",
        flag.display()
    );
    let agg = jsonl(out.path(), "results", false);
    let old = jsonl(out.path(), "old", true);
    let summary = AdHocOrchestrator::builder(PLATFORM)
        .test("/flaky")
        .provisioner(Arc::new(LocalProvisioner::new()))
        .executor(reporting_factory(&[("/flaky", &script)]))
        .aggregator(agg.clone())
        .old_aggregator(old.clone())
        .policy(Policy::limited_reruns(1))
        .build()
        .expect("build")
        .run(&Scope::root("t"))
        .await
        .expect("run");
    agg.finish().await.expect("finish");
    old.finish().await.expect("finish");
    assert_eq!(summary.reruns.len(), 1);
    assert_eq!(summary.reruns[0].exit_code, Some(0));
    assert_eq!(summary.passed(), 1);
    assert_eq!(
        rows(&out.path().join("old.jsonl")),
        [(PLATFORM.into(), "fail".into(), "/flaky".into())]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destroyed_and_lost_remotes_are_marked_destroyed_before_release() {
    let out = tempfile::tempdir().expect("tmp");
    let prov = MemoryProvisioner::new(1);
    let plan = MemoryPlan::new().lose_remote("/lost", 1);
    let mut orch = AdHocOrchestrator::builder(PLATFORM)
        .test(TestInfo::new("/destroyer").with_tags(["destructive"]))
        .tests(["/lost", "/fine"])
        .provisioner(Arc::new(prov.clone()))
        .executor(plan.factory())
        .aggregator(jsonl(out.path(), "results", false))
        .old_aggregator(jsonl(out.path(), "old", true))
        .policy(Policy::requeue_lost(1))
        .policy(Policy::destructive_tag("destructive"))
        .build()
        .expect("build");
    let events = orch.subscribe(1000);
    let summary = orch.run(&Scope::root("t")).await.expect("run");
    assert_eq!(summary.passed(), 3);
    let stats = prov.stats();
    // The destructive test's remote and the lost one; the last one was released intact.
    assert_eq!((stats.provisioned, stats.destroyed), (3, 2), "{stats:?}");
    let retired: Vec<(String, String)> = summary
        .retired
        .iter()
        .map(|r| (r.test.clone(), r.to_string()))
        .collect();
    assert_eq!(
        retired,
        [
            (
                "/destroyer".to_string(),
                "remote memory-1 retired (destructive test /destroyer)".to_string()
            ),
            (
                "/lost".to_string(),
                "remote memory-2 retired (connection lost during test /lost)".to_string()
            ),
        ]
    );
    let events = collect(events).await;
    let retired_events: Vec<&str> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::RemoteRetired { remote, .. } => Some(remote.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(retired_events, ["memory-1", "memory-2"]);
    let (stats, _) = final_stats(&events);
    assert_eq!((stats.remotes.retired, stats.remotes.lost), (2, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_tests_retire_their_remotes_only_when_destructive() {
    let out = tempfile::tempdir().expect("tmp");
    let prov = MemoryProvisioner::new(2);
    let plan = MemoryPlan::new().hang("/plain").hang("/destroyer");
    let mut orch = AdHocOrchestrator::builder(PLATFORM)
        .test("/plain")
        .test(TestInfo::new("/destroyer").with_tags(["destructive"]))
        .test("/later")
        .provisioner(Arc::new(prov.clone()))
        .executor(plan.factory())
        .aggregator(jsonl(out.path(), "r", false))
        .policy(Policy::destructive_tag("destructive"))
        .build()
        .expect("build");
    let mut events = orch.subscribe(1000);
    let scope = Scope::root("t");
    let run = tokio::spawn({
        let scope = scope.clone();
        async move { orch.run(&scope).await }
    });
    let mut started = 0;
    while started < 2 {
        if let EventKind::TestStarted { .. } = events.recv().await.expect("event").kind {
            started += 1;
        }
    }
    scope.cancel();
    let summary = run.await.expect("join").expect("run");
    assert!(summary.cancelled());
    assert_eq!(summary.not_run, ["/later"]);
    assert!(
        summary
            .tests
            .iter()
            .all(|t| t.verdict == Verdict::Infra && !t.passed())
    );
    // The destructive test may have been stopped half-way through destroying its remote.
    assert_eq!(prov.stats().destroyed, 1);
    let retired: Vec<&str> = summary.retired.iter().map(|r| r.test.as_str()).collect();
    assert_eq!(retired, ["/destroyer"]);
}

/// A JSONL aggregator behind a slow service: every ingest first waits 5 ms, and the most
/// ingests ever in flight at once is recorded.
#[derive(Debug)]
struct SlowIngests {
    inner: Arc<JsonlAggregator>,
    in_flight: AtomicUsize,
    most: AtomicUsize,
}

#[async_trait::async_trait]
impl Aggregator for SlowIngests {
    async fn ingest(
        &self,
        platform: &str,
        test: &str,
        artifacts: &Path,
    ) -> Result<(), atex::aggregator::AggregatorError> {
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.most.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(5)).await;
        let res = self.inner.ingest(platform, test, artifacts).await;
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        res
    }

    async fn finish(&self) -> Result<(), atex::aggregator::AggregatorError> {
        self.inner.finish().await
    }
}

/// Tests that end faster than their ingests do not pile up ingests (each a task, an
/// artifacts directory and its descriptor): no remote starts a test while one ingest per
/// remote (at least 16) is pending, so at most that many plus the tests still running
/// (here 16 + 2) are ever in flight, and every result is still recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingests_that_fall_behind_hold_the_next_tests_back() {
    let out = tempfile::tempdir().expect("tmp");
    let prov = MemoryProvisioner::new(2);
    let plan = MemoryPlan::new().record(false);
    let inner = jsonl(out.path(), "r", false);
    let agg = Arc::new(SlowIngests {
        inner: inner.clone(),
        in_flight: AtomicUsize::new(0),
        most: AtomicUsize::new(0),
    });
    let n = 200;
    let names: Vec<String> = (0..n).map(|i| format!("/t{i:03}")).collect();
    let summary = AdHocOrchestrator::builder(PLATFORM)
        .tests(names.iter().cloned())
        .provisioner(Arc::new(prov.clone()))
        .executor(plan.factory())
        .aggregator(agg.clone())
        .build()
        .expect("build")
        .run(&Scope::root("t"))
        .await
        .expect("run");
    inner.finish().await.expect("finish");
    assert_eq!(summary.passed(), n);
    assert!(
        summary.ingest_errors.is_empty(),
        "{:?}",
        summary.ingest_errors
    );
    assert_eq!(rows(&out.path().join("r.jsonl")).len(), n);
    let most = agg.most.load(Ordering::SeqCst);
    assert!(most <= 16 + 2, "{most} ingests were in flight at once");
    assert_eq!(prov.stats().live, 0);
}

/// Dropping the future of `run` stops the run: no test starts afterwards (the run's
/// scheduler is a task of its own, aborted with the future, not left running detached).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_run_future_stops_the_run() {
    let out = tempfile::tempdir().expect("tmp");
    let prov = MemoryProvisioner::new(1);
    let plan = MemoryPlan::new().default_duration(Duration::from_millis(20));
    let tests: Vec<String> = (0..200).map(|i| format!("/t{i:03}")).collect();
    let orch = AdHocOrchestrator::builder(PLATFORM)
        .tests(tests)
        .provisioner(Arc::new(prov.clone()))
        .executor(plan.factory())
        .aggregator(jsonl(out.path(), "results", false))
        .build()
        .expect("build");
    let scope = Scope::root("t");
    let run = orch.run(&scope);
    let stopped = tokio::time::timeout(Duration::from_millis(200), run).await;
    assert!(
        stopped.is_err(),
        "the run ended before the future was dropped"
    );
    // A job handed over just before the drop may still start: let it (20 ms) pass.
    tokio::time::sleep(Duration::from_millis(60)).await;
    let started = plan.runs().len();
    assert!(started > 0, "no test started in 200 ms");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        plan.runs().len(),
        started,
        "tests kept starting after the run's future was dropped"
    );
}
