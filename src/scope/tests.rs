//! Unit tests of the scope tree.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::*;

#[tokio::test]
async fn child_cancel_leaves_parent_and_siblings() {
    let root = Scope::root("t");
    let a = root.child("a");
    let b = root.child("b");
    a.cancel();
    assert!(a.is_cancelled());
    assert!(!b.is_cancelled());
    assert!(!root.is_cancelled());
    root.cancel();
    assert!(b.is_cancelled());
}

#[tokio::test]
async fn kill_implies_cancel_in_children() {
    let root = Scope::root("t");
    let a = root.child("a");
    root.kill();
    assert!(a.is_killed());
    assert!(a.is_cancelled());
}

#[tokio::test]
async fn shutdown_waits_for_child_tasks() {
    let root = Scope::root("t");
    let child = root.child("c");
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = done.clone();
    let token = child.token().clone();
    child.spawn("task", async move {
        token.cancelled().await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        flag.store(true, Ordering::SeqCst);
    });
    drop(child);
    let report = root.shutdown(ShutdownOptions::default()).await;
    assert!(done.load(Ordering::SeqCst));
    assert!(report.is_clean(), "{report:?}");
}

#[tokio::test]
async fn shielded_child_ignores_graceful_obeys_force() {
    let root = Scope::root("t");
    let mid = root.child("mid");
    let shielded = mid.shielded("finish");
    let below = shielded.child("step");
    root.cancel();
    assert!(mid.is_cancelled());
    assert!(!shielded.is_cancelled() && !below.is_cancelled());
    root.kill();
    assert!(shielded.is_cancelled() && shielded.is_killed());
    assert!(below.is_cancelled() && below.is_killed());
}

#[tokio::test]
async fn shutdown_gives_shielded_work_the_grace_period() {
    let root = Scope::root("t");
    let shielded = root.shielded("finish");
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = done.clone();
    let token = shielded.token().clone();
    let (started_tx, started_rx) = tokio::sync::oneshot::channel();
    shielded.spawn("finish", async move {
        let _ = started_tx.send(());
        // Real work that ignores graceful cancellation but ends on its own.
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(100)) => flag.store(true, Ordering::SeqCst),
            _ = token.cancelled() => {}
        }
    });
    let _ = started_rx.await;
    drop(shielded);
    let report = root.shutdown(ShutdownOptions::default()).await;
    assert!(done.load(Ordering::SeqCst), "shielded work was cut short");
    assert!(!report.forced);
    assert!(report.is_clean(), "{report:?}");
}

/// A blocking closure that reports its start and then waits for the gate.
fn gated_blocking(
    done: Arc<std::sync::atomic::AtomicBool>,
) -> (
    impl FnOnce() + Send + 'static,
    std::sync::mpsc::Receiver<()>,
    std::sync::mpsc::Sender<()>,
) {
    let (started_tx, started_rx) = std::sync::mpsc::channel();
    let (gate_tx, gate_rx) = std::sync::mpsc::channel::<()>();
    let f = move || {
        let _ = started_tx.send(());
        let _ = gate_rx.recv();
        done.store(true, Ordering::SeqCst);
    };
    (f, started_rx, gate_tx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_waits_for_a_blocking_task() {
    let root = Scope::root("t");
    let child = root.child("c");
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (f, started, gate) = gated_blocking(done.clone());
    // The handle is dropped at once: nobody awaits the closure but the scope.
    drop(child.spawn_blocking("gated", f));
    drop(child);
    started.recv().unwrap();
    let shutdown = tokio::spawn(async move { root.shutdown(ShutdownOptions::default()).await });
    tokio::task::yield_now().await;
    assert!(!shutdown.is_finished(), "shutdown did not wait");
    gate.send(()).unwrap();
    let report = shutdown.await.unwrap();
    assert!(
        done.load(Ordering::SeqCst),
        "shutdown returned before the blocking task ended"
    );
    assert!(report.is_clean(), "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_blocking_task_is_reported() {
    let root = Scope::root("t");
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (f, started, gate) = gated_blocking(done.clone());
    // Started through the current scope of a task that ends (drops the handle) at once.
    let task = root.child("c").spawn("starter", async move {
        drop(super::spawn_blocking("gated", f));
    });
    task.await.unwrap();
    started.recv().unwrap();
    let report = root
        .shutdown(ShutdownOptions {
            grace: Duration::from_millis(50),
            kill_grace: Duration::from_millis(50),
            cleanup_timeout: Duration::from_secs(1),
        })
        .await;
    assert!(report.forced);
    assert_eq!(report.tasks_left, 1, "{report:?}");
    gate.send(()).unwrap();
}

#[test]
fn spawn_outside_any_runtime_uses_the_trees_runtime() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let root = rt.block_on(async { Scope::root("t") });
    let r = root.clone();
    let (task, blocking) =
        std::thread::spawn(move || (r.spawn("x", async { 42 }), r.spawn_blocking("y", || 7)))
            .join()
            .unwrap();
    assert_eq!(rt.block_on(task).unwrap(), 42);
    assert_eq!(rt.block_on(blocking).unwrap(), 7);
    drop(rt);
    // The tree's runtime is gone: nothing runs, nothing panics.
    let r = root.clone();
    std::thread::spawn(move || {
        drop(r.spawn("late", async {}));
        drop(r.spawn_blocking("late", || ()));
    })
    .join()
    .expect("spawning after the runtime ended panicked");
}

#[tokio::test]
async fn current_scope_is_the_spawning_scope() {
    let root = Scope::root("t");
    assert!(Scope::current().is_none());
    let child = root.child("c");
    let name = child
        .spawn("probe", async {
            Scope::current().map(|s| s.name().to_string())
        })
        .await
        .unwrap();
    assert_eq!(name.as_deref(), Some("t/c"));
}

#[tokio::test]
async fn shutdown_escalates_to_force() {
    let root = Scope::root("t");
    let force = root.force_token().clone();
    // Ignores graceful cancellation, obeys force.
    root.spawn("stubborn", async move { force.cancelled().await });
    let report = root
        .shutdown(ShutdownOptions {
            grace: Duration::from_millis(50),
            kill_grace: Duration::from_secs(5),
            cleanup_timeout: Duration::from_secs(1),
        })
        .await;
    assert!(report.forced);
    assert_eq!(report.tasks_left, 0);
}
