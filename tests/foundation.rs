//! Integration tests of the foundation: scopes, guards, local processes, connections,
//! provisioners, the command executor and the simple orchestrator, against real processes
//! and files.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use atex::connection::{CommandSpec, Connection, ConnectionExt, Input, LocalConnection};
use atex::executor::{CommandExecutor, Executor, ExecutorFactory};
use atex::guard::CleanupGuard;
use atex::orchestrator::SimpleOrchestrator;
use atex::process::ExitStatus;
use atex::provisioner::{Count, LocalProvisioner, Provisioner, Remote};
use atex::scope::{Scope, ShutdownOptions};

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
async fn dropping_a_process_kills_its_group() {
    let marker = support::marker("drop");
    let scope = Scope::root("test");
    let proc = LocalConnection::new()
        .spawn(
            CommandSpec::new(["sh", "-c", "sleep 300 & sleep 300"])
                .env("ATEX_TEST_MARKER", &marker),
            &scope,
        )
        .await
        .unwrap();
    for _ in 0..200 {
        if support::processes_with_marker(&marker).len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    drop(proc);
    let left = support::wait_no_processes(&marker, Duration::from_secs(5));
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
async fn local_connection_exec_basics() {
    let scope = Scope::root("test");
    let conn = LocalConnection::new();
    let out = conn
        .output(CommandSpec::new(["echo", "foo bar"]), &scope)
        .await
        .unwrap();
    assert_eq!(out.stdout, b"foo bar\n");
    // Text and binary stdin.
    let out = conn
        .output(
            CommandSpec::new(["cat"]).stdin(Input::Bytes(b"hello\n".to_vec())),
            &scope,
        )
        .await
        .unwrap();
    assert_eq!(out.stdout, b"hello\n");
    let binary = vec![0u8, 1, b'\n', 0x80, 0xfe, 0xff, 0];
    let out = conn
        .output(
            CommandSpec::new(["cat"]).stdin(Input::Bytes(binary.clone())),
            &scope,
        )
        .await
        .unwrap();
    assert_eq!(out.stdout, binary);
    // Exit codes, signals, stderr, env, cwd, argv without word splitting.
    let out = conn
        .output(
            CommandSpec::new(["sh", "-c", "echo err >&2; exit 123"]),
            &scope,
        )
        .await
        .unwrap();
    assert_eq!(out.status, ExitStatus::Code(123));
    assert_eq!(out.stderr, b"err\n");
    let out = conn
        .output(CommandSpec::new(["sh", "-c", "kill -TERM $$"]), &scope)
        .await
        .unwrap();
    assert_eq!(out.status, ExitStatus::Signal(15));
    let out = conn
        .output(
            CommandSpec::new(["printf", "%s|", "a b", "$HOME", "*"]).env("X", "y"),
            &scope,
        )
        .await
        .unwrap();
    assert_eq!(out.stdout, b"a b|$HOME|*|");
    let dir = tempfile::tempdir().unwrap();
    let conn = LocalConnection::with_cwd(dir.path());
    let out = conn
        .output(
            CommandSpec::new(["sh", "-c", "pwd; echo $V"]).env("V", "value with spaces"),
            &scope,
        )
        .await
        .unwrap();
    assert_eq!(
        out.stdout_lossy(),
        format!("{}\nvalue with spaces\n", dir.path().display())
    );
    let err = conn
        .output(CommandSpec::new(["/nonexistent/program"]), &scope)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("/nonexistent/program"), "{err}");
}

#[tokio::test]
async fn output_is_cancelled_with_the_scope() {
    let scope = Scope::root("test");
    scope.set_kill_grace(Duration::from_millis(200));
    let conn = LocalConnection::new();
    let canceller = scope.clone();
    let marker = support::marker("output-cancel");
    let m = marker.clone();
    tokio::spawn(async move {
        let running = || !support::processes_with_marker(&m).is_empty();
        support::wait_until_async(Duration::from_secs(10), "the command", running).await;
        canceller.cancel();
    });
    let err = conn
        .output(
            CommandSpec::new(["sleep", "30"]).env("ATEX_TEST_MARKER", &marker),
            &scope,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, atex::connection::ConnectionError::Cancelled));
}

#[tokio::test]
async fn upload_and_download_keep_modes_and_symlinks() {
    use std::os::unix::fs::PermissionsExt;
    let scope = Scope::root("test");
    let src = tempfile::tempdir().unwrap();
    std::fs::create_dir(src.path().join("bin")).unwrap();
    std::fs::write(src.path().join("bin/run"), b"#!/bin/sh\necho ran\n").unwrap();
    std::fs::set_permissions(
        src.path().join("bin/run"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    std::fs::write(src.path().join("data.bin"), [0u8, 255, 10, 13]).unwrap();
    std::os::unix::fs::symlink("bin/run", src.path().join("link")).unwrap();
    let remote_dir = tempfile::tempdir().unwrap();
    let conn = LocalConnection::with_cwd(remote_dir.path());
    conn.upload(src.path(), "tree").await.unwrap();
    let out = conn
        .output(CommandSpec::new(["./tree/link"]), &scope)
        .await
        .unwrap();
    assert_eq!(out.stdout, b"ran\n");
    let back = tempfile::tempdir().unwrap();
    conn.download("tree", &back.path().join("copy"))
        .await
        .unwrap();
    assert_eq!(
        std::fs::read(back.path().join("copy/data.bin")).unwrap(),
        [0u8, 255, 10, 13]
    );
    assert_eq!(
        std::fs::read_link(back.path().join("copy/link")).unwrap(),
        std::path::Path::new("bin/run")
    );
    let err = conn
        .upload(&src.path().join("missing"), "x")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("missing"), "{err}");
}

#[tokio::test]
async fn local_provisioner_contract() {
    let scope = Scope::root("test");
    let prov = LocalProvisioner::new();
    prov.start(&scope).await.unwrap();
    // Nothing requested: nothing ready, and a blocking wait does not return.
    assert!(prov.try_get_remote().unwrap().is_none());
    assert!(
        tokio::time::timeout(Duration::from_millis(50), prov.get_remote())
            .await
            .is_err()
    );
    prov.provision(Count::N(2)).unwrap();
    let a = prov.get_remote().await.unwrap();
    let b = prov.get_remote().await.unwrap();
    assert!(prov.try_get_remote().unwrap().is_none());
    // Each remote works in its own scratch directory.
    let pa = a
        .output(CommandSpec::new(["pwd"]), &scope)
        .await
        .unwrap()
        .stdout_lossy();
    let pb = b
        .output(CommandSpec::new(["pwd"]), &scope)
        .await
        .unwrap()
        .stdout_lossy();
    assert_ne!(pa, pb);
    // rsync-like upload of a binary file, readable through the remote.
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("f"), [0u8, 10, 0, 255]).unwrap();
    a.upload(&tmp.path().join("f"), "foobar").await.unwrap();
    let out = a
        .output(CommandSpec::new(["cat", "foobar"]), &scope)
        .await
        .unwrap();
    assert_eq!(out.stdout, [0u8, 10, 0, 255]);
    // Unlimited, clear.
    prov.provision(Count::Unlimited).unwrap();
    assert!(prov.try_get_remote().unwrap().is_some());
    prov.clear();
    assert!(prov.try_get_remote().unwrap().is_none());
    // Release is idempotent and removes the scratch directory.
    a.release().await.unwrap();
    a.release().await.unwrap();
    assert!(!std::path::Path::new(pa.trim()).exists());
    assert!(a.spawn(CommandSpec::new(["true"]), &scope).await.is_err());
    // A waiter is woken by stop with an error; stop releases the rest.
    let waiter = async { prov.get_remote().await };
    let stopper = async {
        // The waiter is polled first (join order) and waits before stop runs.
        tokio::task::yield_now().await;
        prov.stop().await
    };
    let (waited, stopped) = tokio::join!(waiter, stopper);
    assert!(waited.is_err());
    stopped.unwrap();
    assert!(b.is_released());
    assert!(!std::path::Path::new(pb.trim()).exists());
    assert!(prov.provision(Count::N(1)).is_err());
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

#[tokio::test]
async fn local_max_remotes_release_lets_the_next_request_through() {
    let scope = Scope::root("test");
    let prov = Arc::new(LocalProvisioner::new().with_max_remotes(1));
    prov.start(&scope).await.unwrap();
    prov.provision(Count::N(2)).unwrap();
    let first = prov.get_remote().await.unwrap();
    // Non-blocking: the slot is taken.
    assert!(prov.try_get_remote().unwrap().is_none());
    // Blocking: a waiter gets the second remote once the first is released.
    let waiter = {
        let prov = prov.clone();
        tokio::spawn(async move { prov.get_remote().await })
    };
    // Current-thread runtime: yielding runs the waiter until it blocks.
    tokio::task::yield_now().await;
    assert!(!waiter.is_finished());
    first.release().await.unwrap();
    let second = tokio::time::timeout(Duration::from_secs(5), waiter)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(!second.is_released());
    second.release().await.unwrap();
    // Nothing requested any more.
    assert!(prov.try_get_remote().unwrap().is_none());
    prov.stop().await.unwrap();
}

#[tokio::test]
async fn released_local_remote_refuses_upload_and_download() {
    let scope = Scope::root("test");
    let prov = LocalProvisioner::new();
    prov.start(&scope).await.unwrap();
    prov.provision(Count::N(1)).unwrap();
    let remote = prov.get_remote().await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let local = tmp.path().join("f");
    std::fs::write(&local, b"data").unwrap();
    remote.upload(&local, "f").await.unwrap();
    remote
        .download("f", &tmp.path().join("back"))
        .await
        .unwrap();
    remote.release().await.unwrap();
    // Like spawn: a released remote is gone, and says so, for transfers in both directions.
    let spawn_err = remote
        .spawn(CommandSpec::new(["true"]), &scope)
        .await
        .unwrap_err();
    let up_err = remote.upload(&local, "g").await.unwrap_err();
    let down_err = remote
        .download("f", &tmp.path().join("again"))
        .await
        .unwrap_err();
    for err in [&up_err, &down_err] {
        assert!(err.is_disconnect(), "{err}");
        assert_eq!(err.to_string(), spawn_err.to_string());
    }
    assert!(!tmp.path().join("again").exists());
    prov.stop().await.unwrap();
    assert!(scope.shutdown(ShutdownOptions::default()).await.is_clean());
}
