//! A provisioner built on the [`Ledger`] passes the suite, with creations in tasks.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::provisioner::{self, ProvisionerTarget};
use super::remote;
use crate::connection::LocalConnection;
use crate::guard::CleanupGuard;
use crate::provisioner::{Creator, Lease, Ledger, LedgerProvisioner, ProvisionError, Provisioner};
use crate::scope::{Scope, ShutdownOptions};

/// A provisioner over a ledger, for the tests.
#[derive(Debug)]
struct Over(Ledger<LocalConnection>);

impl LedgerProvisioner for Over {
    type Conn = LocalConnection;

    fn ledger(&self) -> &Ledger<LocalConnection> {
        &self.0
    }
}

/// Makes local "systems" slowly, in tasks, each a scratch directory in a guard.
fn slow_local(capacity: Option<usize>) -> Arc<dyn Provisioner> {
    let made = Arc::new(AtomicUsize::new(0));
    Arc::new(Over(Ledger::new(
        "slow-local",
        capacity,
        Creator::task(move |cx| {
            let n = made.fetch_add(1, Ordering::SeqCst);
            async move {
                tokio::time::sleep(Duration::from_millis(3)).await;
                let dir = tempfile::Builder::new()
                    .prefix("atex-ledger-")
                    .tempdir()
                    .map_err(|e| ProvisionError::failed("slow-local", e))?
                    .keep();
                let path = dir.clone();
                let guard =
                    CleanupGuard::new(cx.scope(), format!("remove {n}"), move || async move {
                        Ok(tokio::fs::remove_dir_all(&path).await?)
                    });
                Ok(Lease::new(LocalConnection::with_cwd(dir)).with_guard(guard))
            }
        }),
    )))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_creations_conform() {
    let scope = Scope::root("t");
    let target = ProvisionerTarget::new(|| slow_local(Some(3)), &scope)
        .limited(|| slow_local(Some(1)))
        .deadline(Duration::from_secs(60));
    provisioner::all(&target).await.assert_passed();
    remote::all(&target).await.assert_passed();
    assert!(scope.shutdown(ShutdownOptions::default()).await.is_clean());
}
