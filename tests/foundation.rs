//! Integration tests of the foundation: scopes, guards, local processes, connections,
//! provisioners, the command executor and the simple orchestrator, against real processes
//! and files.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use atex::connection::{CommandSpec, Connection, ConnectionExt, LocalConnection};
use atex::executor::{CommandExecutor, Executor, ExecutorFactory};
use atex::guard::CleanupGuard;
use atex::orchestrator::SimpleOrchestrator;
use atex::process::ExitStatus;
use atex::provisioner::{Count, LocalProvisioner, Provisioner, Remote};
use atex::scope::{Scope, ShutdownOptions};
use atex::testing::conformance::connection::{self, ConnectionTarget};
use atex::testing::conformance::provisioner::{self, ProvisionerTarget};
use atex::testing::conformance::remote;

use atex::aggregator::{Aggregator, JsonlAggregator, JsonlOptions};

#[tokio::test]
async fn cancelling_scope_kills_whole_tree_that_ignores_sigterm() {
    let marker = support::marker("tree");
    let scope = Scope::root("test");
    scope.set_kill_grace(Duration::from_millis(500));
    let conn = LocalConnection::new();
    // The child and its grandchild both ignore SIGTERM and sleep.
    let script = "trap '' TERM; (trap '' TERM; sleep 300) & sleep 300";
    let mut proc = conn
        .spawn(
            CommandSpec::new(["sh", "-c", script]).env("ATEX_TEST_MARKER", &marker),
            &scope,
        )
        .await
        .unwrap();
    // Wait until both processes exist.
    for _ in 0..200 {
        if support::processes_with_marker(&marker).len() >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(support::processes_with_marker(&marker).len() >= 2);
    let canceller = scope.clone();
    // Runs once this (current-thread) test task waits inside wait_or_terminate.
    tokio::spawn(async move { canceller.cancel() });
    let (info, cancelled) = proc.wait_or_terminate(&scope).await.unwrap();
    assert!(cancelled);
    assert_eq!(info.status, ExitStatus::Signal(9));
    let left = tokio::task::spawn_blocking(move || {
        support::wait_no_processes(&marker, Duration::from_secs(5))
    })
    .await
    .unwrap();
    assert!(left.is_empty(), "processes left: {left:?}");
}

#[tokio::test]
async fn dropped_guard_is_cleaned_before_shutdown_returns() {
    let scope = Scope::root("test");
    let done = Arc::new(AtomicBool::new(false));
    let flag = done.clone();
    let guard = CleanupGuard::new(&scope, "test resource", move || async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        flag.store(true, Ordering::SeqCst);
        Ok(())
    });
    drop(guard);
    assert!(!done.load(Ordering::SeqCst));
    let report = scope.shutdown(ShutdownOptions::default()).await;
    assert!(done.load(Ordering::SeqCst));
    assert!(report.is_clean(), "{report:?}");
}

#[tokio::test]
async fn failed_cleanup_is_reported_by_shutdown() {
    let scope = Scope::root("test");
    let guard = CleanupGuard::new(&scope, "podman rm -f deadbeef", || async {
        Err("no such container".into())
    });
    drop(guard);
    let report = scope.shutdown(ShutdownOptions::default()).await;
    assert_eq!(report.cleanups_failed.len(), 1);
    assert!(report.cleanups_failed[0].contains("podman rm -f deadbeef"));
    assert!(report.cleanups_failed[0].contains("no such container"));
}

#[tokio::test]
async fn released_guard_runs_once_and_reports_errors() {
    let scope = Scope::root("test");
    let guard = CleanupGuard::new(&scope, "thing", || async { Err("boom".into()) });
    let err = guard.release().await.unwrap_err();
    assert_eq!(err.to_string(), "cleanup 'thing' failed");
    assert_eq!(
        atex::error::chain(&err).to_string(),
        "cleanup 'thing' failed: boom"
    );
    let report = scope.shutdown(ShutdownOptions::default()).await;
    assert!(report.is_clean());
}

/// A guard whose cleanup reports its start, waits for the gate, then fails (or succeeds).
fn gated_guard(
    scope: &Scope,
    what: &str,
    fail: bool,
) -> (
    CleanupGuard,
    tokio::sync::oneshot::Receiver<()>,
    tokio::sync::oneshot::Sender<()>,
    Arc<AtomicBool>,
) {
    let (started_tx, started_rx) = tokio::sync::oneshot::channel();
    let (gate_tx, gate_rx) = tokio::sync::oneshot::channel::<()>();
    let done = Arc::new(AtomicBool::new(false));
    let flag = done.clone();
    let guard = CleanupGuard::new(scope, what, move || async move {
        let _ = started_tx.send(());
        let _ = gate_rx.await;
        flag.store(true, Ordering::SeqCst);
        if fail {
            Err("the API said no".into())
        } else {
            Ok(())
        }
    });
    (guard, started_rx, gate_tx, done)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_release_still_cleans_up_and_reports_failure() {
    let scope = Scope::root("test");
    // Drop the release future once its cleanup has started.
    let (guard, started, gate, done) = gated_guard(&scope, "DELETE /requests/7", true);
    let mut release = Box::pin(guard.release());
    tokio::select! {
        _ = &mut release => panic!("the cleanup cannot end before the gate opens"),
        r = started => r.unwrap(),
    }
    drop(release);
    // Cut short by a timeout instead.
    let (guard2, _started2, gate2, done2) = gated_guard(&scope, "podman rm -f 42", false);
    let timed = tokio::time::timeout(Duration::from_millis(20), guard2.release()).await;
    assert!(
        timed.is_err(),
        "the cleanup cannot end before the gate opens"
    );
    gate.send(()).unwrap();
    gate2.send(()).unwrap();
    let report = scope.shutdown(ShutdownOptions::default()).await;
    assert!(
        done.load(Ordering::SeqCst),
        "the dropped release's cleanup never ran to its end"
    );
    assert!(
        done2.load(Ordering::SeqCst),
        "the timed-out release's cleanup never ran to its end"
    );
    assert_eq!(report.cleanups_failed.len(), 1, "{report:?}");
    assert!(
        report.cleanups_failed[0].contains("DELETE /requests/7")
            && report.cleanups_failed[0].contains("the API said no"),
        "{report:?}"
    );
    assert!(report.cleanups_pending.is_empty(), "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_waits_for_a_release_in_progress() {
    let scope = Scope::root("test");
    let (guard, started, gate, done) = gated_guard(&scope, "slow release", false);
    let releasing = tokio::spawn(guard.release());
    started.await.unwrap();
    // The awaiting task is aborted: the cleanup belongs to the reaper now.
    releasing.abort();
    let _ = releasing.await;
    let s2 = scope.clone();
    let shutdown = tokio::spawn(async move { s2.shutdown(ShutdownOptions::default()).await });
    tokio::task::yield_now().await;
    assert!(
        !shutdown.is_finished(),
        "shutdown did not wait for the cleanup"
    );
    gate.send(()).unwrap();
    let report = shutdown.await.unwrap();
    assert!(done.load(Ordering::SeqCst));
    assert!(report.is_clean(), "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_upload_stays_tracked_until_its_copy_ends() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src.bin");
    let size = 4 << 20;
    std::fs::write(&src, vec![7u8; size]).unwrap();
    // The destination is a FIFO: the copy blocks until the reader below drains it.
    let fifo = dir.path().join("dst.fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let root = Scope::root("test");
    let scope = root.child("upload");
    let task = {
        let s = scope.clone();
        let (src, dst) = (src.clone(), fifo.display().to_string());
        scope.spawn("upload", async move {
            s.run(LocalConnection::new().upload(&src, &dst)).await
        })
    };
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let (gate_tx, gate_rx) = std::sync::mpsc::channel::<()>();
    let reader = std::thread::spawn(move || {
        use std::io::Read;
        // Opening blocks until the copy opened the FIFO for writing.
        let mut f = std::fs::File::open(&fifo).unwrap();
        let mut first = [0u8; 1];
        f.read_exact(&mut first).unwrap();
        let _ = ready_tx.send(());
        let _ = gate_rx.recv();
        let mut rest = Vec::new();
        f.read_to_end(&mut rest).unwrap();
        1 + rest.len()
    });
    ready_rx.await.unwrap();
    // The copy is running and stuck on the full pipe; drop the upload future.
    scope.cancel();
    assert!(
        task.await.unwrap().is_none(),
        "the upload was not cancelled"
    );
    let report = root
        .shutdown(ShutdownOptions {
            grace: Duration::from_millis(100),
            kill_grace: Duration::from_millis(100),
            cleanup_timeout: Duration::from_secs(1),
        })
        .await;
    assert_eq!(
        report.tasks_left, 1,
        "shutdown did not see the copy still running: {report:?}"
    );
    gate_tx.send(()).unwrap();
    assert_eq!(reader.join().unwrap(), size);
}

#[tokio::test]
async fn spawning_a_missing_program_names_it() {
    let scope = Scope::root("test");
    let err = LocalConnection::new()
        .spawn(CommandSpec::new(["atex-no-such-program", "-x"]), &scope)
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("atex-no-such-program"), "{text}");
    let cause = std::error::Error::source(&err)
        .expect("the cause")
        .to_string();
    assert!(cause.contains("No such file or directory"), "{cause}");
}

#[tokio::test]
async fn dropped_remote_is_cleaned_by_reaper() {
    let scope = Scope::root("test");
    let prov = LocalProvisioner::new();
    prov.start(&scope).await.unwrap();
    prov.provision(Count::N(1)).unwrap();
    let remote = prov.get_remote().await.unwrap();
    let dir = remote
        .output(CommandSpec::new(["pwd"]), &scope)
        .await
        .unwrap()
        .stdout_lossy();
    drop(remote);
    drop(prov);
    let report = scope.shutdown(ShutdownOptions::default()).await;
    assert!(report.is_clean(), "{report:?}");
    assert!(!std::path::Path::new(dir.trim()).exists());
}

fn read_results(dir: &std::path::Path) -> String {
    std::fs::read_to_string(dir.join("results")).unwrap()
}

#[tokio::test]
async fn command_executor_behaviour() {
    let scope = Scope::root("test");
    let conn: Arc<dyn Connection> = Arc::new(LocalConnection::new());
    let mut exec = CommandExecutor::new(conn.clone())
        .with_test("/rc", ["sh", "-c", "echo out; echo err >&2; exit 123"])
        .with_test("/bin", ["printf", "\\000\\200\\376\\377"]);
    exec.start(&scope).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let outcome = exec.run_test("/rc", dir.path(), &scope).await.unwrap();
    assert_eq!(outcome.exit_code, 123);
    assert_eq!(
        read_results(dir.path()),
        "{\"status\": \"fail\", \"files\": [\"output.txt\"]}\n"
    );
    assert_eq!(
        std::fs::read(dir.path().join("files/output.txt")).unwrap(),
        b"out\nerr\n"
    );
    let dir = tempfile::tempdir().unwrap();
    exec.run_test("/bin", dir.path(), &scope).await.unwrap();
    assert_eq!(
        std::fs::read(dir.path().join("files/output.txt")).unwrap(),
        [0u8, 0x80, 0xfe, 0xff]
    );
    let err = exec
        .run_test("/nope", dir.path(), &scope)
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "unknown test '/nope'");

    // Custom output name and evaluation.
    let mut exec = CommandExecutor::new(conn.clone())
        .with_test("/t", ["true"])
        .with_output_name("custom.log")
        .with_evaluate(Arc::new(|_, _| "fail".to_string()));
    let dir = tempfile::tempdir().unwrap();
    exec.run_test("/t", dir.path(), &scope).await.unwrap();
    assert_eq!(
        read_results(dir.path()),
        "{\"status\": \"fail\", \"files\": [\"custom.log\"]}\n"
    );
    assert!(dir.path().join("files/custom.log").exists());
    assert!(!dir.path().join("files/output.txt").exists());
    exec.stop(&scope).await.unwrap();
}

#[tokio::test]
async fn command_executor_cancel_leaves_infra_result() {
    let scope = Scope::root("test");
    scope.set_kill_grace(Duration::from_millis(200));
    let marker = support::marker("executor-cancel");
    let env = format!("ATEX_TEST_MARKER={marker}");
    let mut exec = CommandExecutor::new(Arc::new(LocalConnection::new()))
        .with_test("/sleep", ["env", env.as_str(), "sleep", "30"]);
    let dir = tempfile::tempdir().unwrap();
    let test_scope = scope.child("test");
    let canceller = test_scope.clone();
    tokio::spawn(async move {
        let running = || !support::processes_with_marker(&marker).is_empty();
        support::wait_until_async(Duration::from_secs(10), "the test", running).await;
        canceller.cancel();
    });
    let started = std::time::Instant::now();
    let err = exec
        .run_test("/sleep", dir.path(), &test_scope)
        .await
        .unwrap_err();
    assert!(err.is_cancelled());
    assert!(started.elapsed() < Duration::from_secs(20));
    let line: serde_json::Value = serde_json::from_str(read_results(dir.path()).trim()).unwrap();
    assert_eq!(line["status"], "infra");
    assert!(line["note"].as_str().unwrap().contains("cancelled"));
    assert!(!scope.is_cancelled());
}

fn command_factory(tests: Vec<(&str, &str)>) -> Arc<dyn ExecutorFactory> {
    let table: Arc<std::collections::HashMap<String, Vec<String>>> = Arc::new(
        tests
            .into_iter()
            .map(|(n, s)| (n.to_string(), vec!["sh".into(), "-c".into(), s.to_string()]))
            .collect(),
    );
    Arc::new(move |remote: Arc<dyn Remote>| {
        Box::new(CommandExecutor::with_tests(remote, table.clone())) as Box<dyn Executor>
    })
}

#[tokio::test]
async fn simple_orchestrator_runs_sequentially_and_destructive_gets_fresh_remotes() {
    for destructive in [false, true] {
        let scope = Scope::root("test");
        let out = tempfile::tempdir().unwrap();
        let agg = Arc::new(
            JsonlAggregator::create(
                out.path().join("results.jsonl"),
                out.path().join("files"),
                JsonlOptions::default(),
            )
            .unwrap(),
        );
        let names = ["/a", "/b", "/c"];
        let factory = command_factory(names.iter().map(|n| (*n, "pwd")).collect());
        let orch = SimpleOrchestrator::new(
            Arc::new(LocalProvisioner::new()),
            factory,
            agg.clone(),
            "local",
            names.iter().map(|s| s.to_string()).collect(),
        )
        .destructive(destructive);
        let summary = orch.run(&scope).await.unwrap();
        agg.finish().await.unwrap();
        assert_eq!(summary.passed(), 3);
        let dirs: HashSet<String> = names
            .iter()
            .map(|n| {
                std::fs::read_to_string(out.path().join(format!("files/local{n}/output.txt")))
                    .unwrap()
            })
            .collect();
        assert_eq!(dirs.len(), if destructive { 3 } else { 1 });
        let results = std::fs::read_to_string(out.path().join("results.jsonl")).unwrap();
        assert_eq!(results.lines().count(), 3);
        assert!(scope.shutdown(ShutdownOptions::default()).await.is_clean());
    }
}

/// The whole conformance suite: the local connection, a local remote used as a connection
/// (the leased-remote wrapper, relative paths in its scratch directory), the local
/// provisioner and its remotes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_backends_conform() {
    let scope = Scope::root("test");
    let dir = tempfile::tempdir().unwrap();
    let conn = Arc::new(LocalConnection::new());
    let target = ConnectionTarget::new(conn, dir.path().display().to_string(), &scope);
    connection::all(&target).await.assert_passed();

    let prov = LocalProvisioner::new();
    prov.start(&scope).await.unwrap();
    prov.provision(Count::N(1)).unwrap();
    let remote = prov.get_remote().await.unwrap();
    let target = ConnectionTarget::new(remote.clone(), "scratch", &scope);
    remote
        .check(CommandSpec::new(["mkdir", "scratch"]), &scope)
        .await
        .unwrap();
    connection::all(&target).await.assert_passed();
    prov.stop().await.unwrap();

    let target = ProvisionerTarget::new(|| Arc::new(LocalProvisioner::new()), &scope)
        .limited(|| Arc::new(LocalProvisioner::new().with_max_remotes(1)))
        .immediate(true);
    provisioner::all(&target).await.assert_passed();
    remote::all(&target).await.assert_passed();
    assert!(scope.shutdown(ShutdownOptions::default()).await.is_clean());
}

/// What is local about local remotes: each works in its own scratch directory, removed on
/// release (and by `stop` for the remotes still held).
#[tokio::test]
async fn local_remotes_have_private_scratch_directories() {
    let scope = Scope::root("test");
    let prov = LocalProvisioner::new();
    prov.start(&scope).await.unwrap();
    prov.provision(Count::N(2)).unwrap();
    let a = prov.get_remote().await.unwrap();
    let b = prov.get_remote().await.unwrap();
    let pwd = |out: atex::connection::CommandOutput| out.stdout_lossy().trim().to_string();
    let pa = pwd(a.check(CommandSpec::new(["pwd"]), &scope).await.unwrap());
    let pb = pwd(b.check(CommandSpec::new(["pwd"]), &scope).await.unwrap());
    assert_ne!(pa, pb);
    assert!(pa.contains("atex-local-"), "{pa}");
    // A relative upload lands in the remote's own directory.
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("f"), [0u8, 10, 0, 255]).unwrap();
    a.upload(&tmp.path().join("f"), "foobar").await.unwrap();
    assert_eq!(
        std::fs::read(std::path::Path::new(&pa).join("foobar")).unwrap(),
        [0u8, 10, 0, 255]
    );
    a.release().await.unwrap();
    assert!(!std::path::Path::new(&pa).exists());
    assert!(std::path::Path::new(&pb).exists());
    prov.stop().await.unwrap();
    assert!(b.is_released());
    assert!(!std::path::Path::new(&pb).exists());
    assert!(scope.shutdown(ShutdownOptions::default()).await.is_clean());
}
