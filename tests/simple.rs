//! SimpleOrchestrator: verdicts from results, tests never run, destroyed remotes retired.
//! Real processes (LocalProvisioner + CommandExecutor), real sshds for the SSH pool, the
//! in-memory doubles for a lost connection.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use atex::aggregator::{Aggregator, JsonlAggregator, JsonlOptions};
use atex::executor::{CommandExecutor, Evaluate, Executor, ExecutorFactory};
use atex::orchestrator::SimpleOrchestrator;
use atex::provisioner::{LocalProvisioner, Provisioner, Remote};
use atex::scope::{Scope, ShutdownOptions};
use atex::testing::{MemoryPlan, MemoryProvisioner};

fn jsonl(dir: &Path) -> Arc<JsonlAggregator> {
    Arc::new(
        JsonlAggregator::create(
            dir.join("results.jsonl"),
            dir.join("files"),
            JsonlOptions::default(),
        )
        .unwrap(),
    )
}

fn factory(tests: &[(&str, &str)], evaluate: Option<Evaluate>) -> Arc<dyn ExecutorFactory> {
    let table: Arc<HashMap<String, Vec<String>>> = Arc::new(
        tests
            .iter()
            .map(|(n, s)| (n.to_string(), vec!["sh".into(), "-c".into(), s.to_string()]))
            .collect(),
    );
    Arc::new(move |remote: Arc<dyn Remote>| {
        let mut exec = CommandExecutor::with_tests(remote, table.clone());
        if let Some(e) = &evaluate {
            exec = exec.with_evaluate(e.clone());
        }
        Box::new(exec) as Box<dyn Executor>
    })
}

fn simple(
    provisioner: Arc<dyn Provisioner>,
    factory: Arc<dyn ExecutorFactory>,
    agg: Arc<dyn Aggregator>,
    tests: &[&str],
) -> SimpleOrchestrator {
    SimpleOrchestrator::new(
        provisioner,
        factory,
        agg,
        "local",
        tests.iter().map(|s| s.to_string()).collect(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_verdict_comes_from_the_results_not_the_exit_code() {
    let out = tempfile::tempdir().unwrap();
    let agg = jsonl(out.path());
    // Output saying FAIL is a failed test, whatever the exit code.
    let evaluate: Evaluate = Arc::new(|status, output| {
        let text = std::fs::read_to_string(output).unwrap_or_default();
        if text.contains("FAIL") || !status.success() {
            "fail".into()
        } else {
            "pass".into()
        }
    });
    let summary = simple(
        Arc::new(LocalProvisioner::new()),
        factory(
            &[("/ok", "echo fine"), ("/says-fail", "echo FAIL")],
            Some(evaluate),
        ),
        agg.clone(),
        &["/ok", "/says-fail"],
    )
    .run(&Scope::root("t"))
    .await
    .unwrap();
    agg.finish().await.unwrap();
    assert_eq!((summary.passed(), summary.failed()), (1, 1));
    let says_fail = &summary.tests[1];
    assert_eq!(says_fail.name, "/says-fail");
    assert_eq!(says_fail.exit_code, Some(0));
    assert!(!says_fail.passed());
    assert_eq!(says_fail.verdict.to_string(), "fail");
    assert_eq!(summary.tests[0].verdict.to_string(), "pass");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_run_lists_the_tests_it_never_ran() {
    let out = tempfile::tempdir().unwrap();
    let flag = out.path().join("slow-started");
    let slow = format!("touch '{}'; exec sleep 30", flag.display());
    let agg = jsonl(out.path());
    let orch = simple(
        Arc::new(LocalProvisioner::new()),
        factory(
            &[
                ("/a", "true"),
                ("/slow", &slow),
                ("/b", "true"),
                ("/c", "true"),
            ],
            None,
        ),
        agg.clone(),
        &["/a", "/slow", "/b", "/c"],
    );
    let scope = Scope::root("t");
    scope.set_kill_grace(Duration::from_secs(2));
    let run = tokio::spawn({
        let scope = scope.clone();
        async move { orch.run(&scope).await }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    while !flag.exists() {
        assert!(Instant::now() < deadline, "/slow never started");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    scope.cancel();
    let summary = run.await.unwrap().unwrap();
    agg.finish().await.unwrap();
    assert!(summary.cancelled());
    let ran: Vec<&str> = summary.tests.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(ran, ["/a", "/slow"]);
    assert_eq!(summary.not_run, ["/b", "/c"]);
    assert!(scope.shutdown(ShutdownOptions::default()).await.is_clean());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_broken_by_a_test_is_marked_destroyed_and_replaced() {
    let out = tempfile::tempdir().unwrap();
    let prov = MemoryProvisioner::new(1);
    let plan = MemoryPlan::new().lose_remote("/x", 1);
    let summary = simple(
        Arc::new(prov.clone()),
        plan.factory(),
        jsonl(out.path()),
        &["/x", "/y"],
    )
    .run(&Scope::root("t"))
    .await
    .unwrap();
    assert_eq!(summary.passed(), 1);
    let stats = prov.stats();
    assert_eq!((stats.provisioned, stats.destroyed, stats.live), (2, 1, 0));
    assert_eq!(summary.retired.len(), 1);
    assert_eq!(summary.retired[0].test, "/x");
    assert_eq!(summary.retired[0].remote, "memory-1");
    let runs = plan.runs();
    assert_ne!(runs[0].remote, runs[1].remote);
}

#[cfg(feature = "ssh")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destructive_runs_retire_their_ssh_hosts() {
    use atex::provisioner::SshHostPool;
    use support::sshd::Sshd;
    let hosts = [Sshd::start(), Sshd::start()];
    let out = tempfile::tempdir().unwrap();
    let pool = SshHostPool::new(hosts.iter().map(Sshd::config).collect());
    let summary = simple(
        Arc::new(pool.clone()),
        factory(&[("/a", "true"), ("/b", "true")], None),
        jsonl(out.path()),
        &["/a", "/b"],
    )
    .destructive(true)
    .run(&Scope::root("t"))
    .await
    .unwrap();
    assert_eq!(summary.passed(), 2);
    let quarantined = pool.quarantined();
    assert!(
        quarantined.iter().all(|(_, q)| *q),
        "a destroyed host went back to the pool: {quarantined:?}"
    );
    assert_eq!(summary.retired.len(), 2);
}
