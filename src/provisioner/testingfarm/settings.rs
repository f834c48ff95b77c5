//! The provisioner's settings and what `start` prepares from them (key, ingress rule,
//! clean-up client).

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

use super::ingress;
use super::key::GuestKey;
use crate::provisioner::ProvisionError;
use crate::scope::Scope;
use crate::testingfarm::{Client, Journal};

/// What the provisioner was configured with.
#[derive(Debug)]
pub(crate) struct Settings {
    pub(super) client: Client,
    pub(super) compose: String,
    pub(super) arch: String,
    pub(super) pool: Option<String>,
    pub(super) hardware: Option<Value>,
    pub(super) timeout_minutes: Option<u32>,
    pub(super) source_host: Option<String>,
    pub(super) journal: Journal,
    pub(super) ssh_key: Option<PathBuf>,
    pub(super) guest_port: u16,
    pub(super) ready_timeout: Duration,
    pub(super) probe_interval: Duration,
    pub(super) max_remotes: usize,
    pub(super) retries_left: AtomicU32,
    pub(super) setup: Mutex<Option<Arc<Setup>>>,
}

/// What `start` prepared.
#[derive(Debug)]
pub(crate) struct Setup {
    pub(super) key: GuestKey,
    /// The ingress rule's CIDR (public ranch only).
    pub(super) ingress: Option<String>,
    /// The client for clean-up calls: only a forced stop interrupts them.
    pub(super) cleanup_client: Client,
}

impl Settings {
    pub(super) fn describe(&self) -> String {
        format!("testingfarm({}@{})", self.compose, self.arch)
    }

    pub(super) fn setup(&self) -> Option<Arc<Setup>> {
        self.setup.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub(super) fn poll_interval(&self) -> Duration {
        self.client.poll_interval()
    }

    /// Takes one retry from the budget; false when none is left.
    pub(super) fn take_retry(&self) -> bool {
        self.retries_left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    }

    /// Prepares the key, the ingress rule and the clean-up client.
    pub(super) async fn prepare(&self, scope: &Scope) -> Result<Setup, ProvisionError> {
        let fail = |e: Box<dyn std::error::Error + Send + Sync>| {
            ProvisionError::failed(self.describe(), e)
        };
        let key = match &self.ssh_key {
            Some(path) => GuestKey::from_files(path),
            None => GuestKey::generate(),
        }
        .map_err(|e| fail(e.into()))?;
        let client = self.client.with_scope(scope);
        let me = client.whoami().await.map_err(|e| fail(e.into()))?;
        let ingress = if me.ranch() == "public" {
            match &self.source_host {
                Some(cidr) => Some(cidr.clone()),
                None => Some(
                    ingress::public_ipv4_cidr(scope)
                        .await
                        .map_err(|e| fail(e.into()))?,
                ),
            }
        } else {
            None
        };
        Ok(Setup {
            key,
            ingress,
            cleanup_client: self.client.with_force(scope.force_token()),
        })
    }
}
