#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::{CreateError, Creator, Ledger};
use crate::connection::LocalConnection;
use crate::error::chain;
use crate::guard::CleanupGuard;
use crate::provisioner::lease::Lease;
use crate::provisioner::{Count, ProvisionError, Remote};
use crate::scope::Scope;

/// Counts creations that were dropped before they ended.
struct Dropped(Arc<AtomicUsize>);

impl Drop for Dropped {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// A ledger whose creations wait forever (until cancelled), counting the cancelled ones.
fn stuck() -> (Ledger<LocalConnection>, Arc<AtomicUsize>) {
    let dropped = Arc::new(AtomicUsize::new(0));
    let counter = dropped.clone();
    let ledger = Ledger::new(
        "stuck",
        Some(5),
        Creator::task(move |_cx| {
            let guard = Dropped(counter.clone());
            async move {
                std::future::pending::<()>().await;
                drop(guard);
                Ok::<_, CreateError>(Lease::new(LocalConnection::new()))
            }
        }),
    );
    (ledger, dropped)
}

async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clear_cancels_creations_in_flight_and_later_requests_start_new_ones() {
    let scope = Scope::root("t");
    let (ledger, dropped) = stuck();
    ledger.start(&scope);
    ledger.provision(Count::N(2)).unwrap();
    until("two creations", || ledger.stats().creating == 2).await;
    ledger.clear();
    until("the creations cancelled", || {
        dropped.load(Ordering::SeqCst) == 2
    })
    .await;
    until("no creation left", || ledger.stats().creating == 0).await;
    assert_eq!(ledger.stats().outstanding, 0);
    assert!(ledger.try_get_remote().unwrap().is_none());
    ledger.provision(Count::N(1)).unwrap();
    until("a new creation", || ledger.stats().creating == 1).await;
    ledger.stop().await.unwrap();
    assert_eq!(
        ledger.stats().creating,
        0,
        "stop returned before its creations ended"
    );
    assert_eq!(dropped.load(Ordering::SeqCst), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_cancels_creations_and_fails_waiters() {
    let scope = Scope::root("t");
    let (ledger, dropped) = stuck();
    ledger.start(&scope);
    ledger.provision(Count::Unlimited).unwrap();
    until("five creations", || ledger.stats().creating == 5).await;
    let waiter = {
        let ledger = ledger.clone();
        tokio::spawn(async move { ledger.get_remote().await })
    };
    ledger.stop().await.unwrap();
    assert_eq!(dropped.load(Ordering::SeqCst), 5);
    assert_eq!(ledger.stats().creating, 0);
    let res = tokio::time::timeout(Duration::from_secs(10), waiter)
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(res, Err(ProvisionError::Stopped(_))), "{res:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_put_the_request_back_and_failures_go_to_one_caller() {
    let scope = Scope::root("t");
    let attempts = Arc::new(AtomicUsize::new(0));
    let seen = attempts.clone();
    // Attempt 0 and 1 retry, attempt 2 fails, later ones succeed.
    let ledger = Ledger::new(
        "flaky",
        Some(1),
        Creator::task(move |_cx| {
            let n = seen.fetch_add(1, Ordering::SeqCst);
            async move {
                match n {
                    0 | 1 => Err(CreateError::Retry),
                    2 => Err(CreateError::Failed(ProvisionError::failed(
                        "flaky",
                        "attempt 2",
                    ))),
                    _ => Ok(Lease::new(LocalConnection::new())),
                }
            }
        }),
    );
    ledger.start(&scope);
    ledger.provision(Count::N(2)).unwrap();
    let err = chain(&ledger.get_remote().await.unwrap_err()).to_string();
    assert!(err.contains("attempt 2"), "{err}");
    let remote = ledger.get_remote().await.unwrap();
    assert_eq!(attempts.load(Ordering::SeqCst), 4);
    let stats = ledger.stats();
    assert_eq!((stats.created, stats.failed_creations), (1, 1), "{stats:?}");
    remote.release().await.unwrap();
    ledger.stop().await.unwrap();
}

#[tokio::test]
async fn a_failed_ledger_fails_waiters_after_handing_out_what_it_has() {
    let scope = Scope::root("t");
    let ledger = Ledger::new(
        "doomed",
        None,
        Creator::immediate(|_cx| Ok(Lease::new(LocalConnection::new()))),
    );
    ledger.start(&scope);
    ledger.provision(Count::N(1)).unwrap();
    let first = ledger.get_remote().await.unwrap();
    let waiter = ledger.get_remote();
    let failer = async {
        tokio::task::yield_now().await;
        ledger.handle().fail("every machine is gone");
    };
    let (res, ()) = tokio::join!(waiter, failer);
    let err = res.unwrap_err();
    assert_eq!(
        chain(&err).to_string(),
        "doomed: provisioning failed: every machine is gone"
    );
    first.release().await.unwrap();
    ledger.stop().await.unwrap();
}

#[tokio::test]
async fn an_immediate_creation_failure_keeps_the_request() {
    let scope = Scope::root("t");
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = calls.clone();
    let ledger = Ledger::new(
        "once-broken",
        None,
        Creator::immediate(move |_cx| {
            if seen.fetch_add(1, Ordering::SeqCst) == 0 {
                Err(CreateError::Failed(ProvisionError::failed(
                    "once-broken",
                    "first",
                )))
            } else {
                Ok(Lease::new(LocalConnection::new()))
            }
        }),
    );
    ledger.start(&scope);
    ledger.provision(Count::N(1)).unwrap();
    assert!(ledger.try_get_remote().is_err());
    assert_eq!(ledger.stats().outstanding, 1);
    let remote = ledger.try_get_remote().unwrap().expect("the kept request");
    assert!(ledger.try_get_remote().unwrap().is_none());
    remote.release().await.unwrap();
    ledger.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unlimited_without_capacity_creates_only_for_waiting_callers() {
    let scope = Scope::root("t");
    let ledger = Ledger::new(
        "on-demand",
        None,
        Creator::task(|_cx| async { Ok::<_, CreateError>(Lease::new(LocalConnection::new())) }),
    );
    ledger.start(&scope);
    ledger.provision(Count::Unlimited).unwrap();
    assert_eq!(ledger.stats().creating + ledger.stats().ready, 0);
    let a = ledger.get_remote().await.unwrap();
    let b = ledger.get_remote().await.unwrap();
    let stats = ledger.stats();
    assert_eq!((stats.created, stats.live), (2, 2), "{stats:?}");
    a.release().await.unwrap();
    b.release().await.unwrap();
    ledger.stop().await.unwrap();
}

#[tokio::test]
async fn stop_releases_everything_and_names_every_failed_release() {
    let scope = Scope::root("t");
    let made = Arc::new(AtomicUsize::new(0));
    let ledger = Ledger::new(
        "grumpy",
        None,
        Creator::immediate(move |cx| {
            let n = made.fetch_add(1, Ordering::SeqCst);
            let guard = CleanupGuard::new(cx.scope(), format!("system {n}"), move || async move {
                if n.is_multiple_of(2) {
                    Err(format!("system {n} refused to go").into())
                } else {
                    Ok(())
                }
            });
            Ok(Lease::new(LocalConnection::with_cwd(format!("/sys{n}"))).with_guard(guard))
        }),
    );
    ledger.start(&scope);
    ledger.provision(Count::N(3)).unwrap();
    let remotes: Vec<Arc<dyn Remote>> = (0..3)
        .map(|_| ledger.try_get_remote().unwrap().unwrap())
        .collect();
    let err = chain(&ledger.stop().await.unwrap_err()).to_string();
    assert!(remotes.iter().all(|r| r.is_released()));
    assert!(
        err.starts_with("releasing 2 of 3 remotes of grumpy failed: "),
        "{err}"
    );
    assert!(
        err.contains("system 0 refused to go") && err.contains("system 2 refused to go"),
        "{err}"
    );
    let stats = ledger.stats();
    assert_eq!((stats.released, stats.live), (3, 0), "{stats:?}");
}
