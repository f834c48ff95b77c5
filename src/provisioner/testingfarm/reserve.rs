//! One reservation: submit the reserve request (held by a guard that cancels it), wait
//! until it runs, find the guest in `pipeline.log`, log in with our key.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::connection::TestingFarmConnection;
use super::guest::{GuestAddress, GuestScanner};
use super::key::AUTHORIZED_KEYS_SECRET;
use super::settings::{Settings, Setup};
use crate::connection::SshConnection;
use crate::connection::ssh::{HostKeyPolicy, SshConfig};
use crate::error::BoxError;
use crate::guard::CleanupGuard;
use crate::provisioner::{CreateContext, CreateError, Lease, ProvisionError};
use crate::scope::Scope;
use crate::testingfarm::{
    Client, Journal, LineBuffer, LogChunk, NewRequest, Request, State, TfError, Timestamp,
};

/// How far back the search for a create whose reply was lost looks (clock skew).
const SEARCH_SLACK: Duration = Duration::from_secs(3600);

/// How long a create in flight may still take once its creation is cancelled.
const POST_GRACE: Duration = Duration::from_secs(5);

/// Why a reservation produced no guest.
#[derive(Debug, thiserror::Error)]
pub enum ReserveError {
    /// The API call failed or the request ended.
    #[error("Testing Farm request {}", request.as_deref().unwrap_or("(not created)"))]
    Api {
        /// The request, if it was created.
        request: Option<String>,
        /// The cause.
        #[source]
        source: TfError,
    },
    /// The guest was not ready in time.
    #[error("Testing Farm request {request}: no usable guest within {timeout:?} ({stage})")]
    NotReady {
        /// The request.
        request: String,
        /// The limit.
        timeout: Duration,
        /// What was awaited last.
        stage: &'static str,
    },
    /// The log named no guest before the request's `pipeline.log` ended.
    #[error("Testing Farm request {request}: the pipeline log has no artifacts URL")]
    NoArtifacts {
        /// The request.
        request: String,
    },
    /// The provisioner is not started.
    #[error("the provisioner is not started")]
    NotStarted,
}

impl ReserveError {
    /// Whether trying again cannot help (the request was refused: bad compose, token, …).
    fn is_fatal(&self) -> bool {
        match self {
            ReserveError::Api {
                request: None,
                source,
            } => refused(source),
            ReserveError::NotStarted => true,
            _ => false,
        }
    }
}

/// A refusal of the create (no request exists and retrying will not help).
fn refused(e: &TfError) -> bool {
    matches!(e, TfError::Api { status, .. } if !matches!(status, 408 | 429 | 500..=599))
        || matches!(
            e,
            TfError::Unauthorized { .. } | TfError::NoToken { .. } | TfError::BadUrl { .. }
        )
}

/// What became of the POST of one reservation.
#[derive(Debug, Clone)]
enum Posting {
    InFlight,
    Created(String),
    /// Refused by the server: nothing exists.
    Refused,
    /// Failed or interrupted: a request may exist; look for it by its marker.
    Unknown,
}

/// Makes one remote (the [`Creator`](crate::provisioner::Creator) of the provisioner).
pub(super) async fn create(
    settings: Arc<Settings>,
    cx: CreateContext,
) -> Result<Lease<TestingFarmConnection>, CreateError> {
    let name = settings.describe();
    let fail = |e: ReserveError| ProvisionError::failed(name.clone(), e);
    let Some(setup) = settings.setup() else {
        return Err(CreateError::Failed(fail(ReserveError::NotStarted)));
    };
    match reserve(&settings, &setup, cx.scope()).await {
        Ok(lease) => Ok(lease),
        Err(e) if e.is_fatal() => {
            tracing::error!(provisioner = %name, error = %crate::error::chain(&e), "Testing Farm refused the reservation");
            let e = Arc::new(e);
            cx.ledger().fail(SharedReserveError(e.clone()));
            Err(CreateError::Failed(fail_shared(&name, e)))
        }
        Err(e) => {
            if settings.take_retry() {
                tracing::warn!(provisioner = %name, error = %crate::error::chain(&e), "reservation failed; trying another one");
                Err(CreateError::Retry)
            } else {
                tracing::error!(provisioner = %name, error = %crate::error::chain(&e), "reservation failed and no retries are left");
                let e = Arc::new(e);
                cx.ledger().fail(SharedReserveError(e.clone()));
                Err(CreateError::Failed(fail_shared(&name, e)))
            }
        }
    }
}

fn fail_shared(name: &str, e: Arc<ReserveError>) -> ProvisionError {
    ProvisionError::failed(name.to_string(), SharedReserveError(e))
}

/// A [`ReserveError`] shared by the ledger's failure and the creation's error.
#[derive(Debug, Clone)]
struct SharedReserveError(Arc<ReserveError>);

impl std::fmt::Display for SharedReserveError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for SharedReserveError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        std::error::Error::source(&*self.0)
    }
}

/// The reserve request of these settings.
pub(super) fn new_request(settings: &Settings, setup: &Setup) -> NewRequest {
    let mut req = NewRequest::reserve(&settings.compose, &settings.arch).map_environments(|e| {
        let mut e = e.secret(AUTHORIZED_KEYS_SECRET, setup.key.secret());
        if let Some(pool) = &settings.pool {
            e = e.pool(pool);
        }
        if let Some(hw) = &settings.hardware {
            e = e.hardware(hw.clone());
        }
        if let Some(cidr) = &setup.ingress {
            e = e.ingress_from(cidr);
        }
        e
    });
    if let Some(t) = settings.timeout_minutes {
        req = req.timeout_minutes(t);
    }
    req
}

/// Submits a reservation and returns the guard that cancels it (armed before the POST:
/// whatever happens to this future, the request is cancelled) and the request.
pub(super) async fn submit(
    settings: &Settings,
    setup: &Setup,
    scope: &Scope,
) -> Result<(CleanupGuard, Request), ReserveError> {
    let request = new_request(settings, setup);
    let marker = request.marker().to_string();
    let since = Timestamp::now().minus(SEARCH_SLACK);
    let (tx, rx) = watch::channel(Posting::InFlight);
    let guard = {
        let client = setup.cleanup_client.clone();
        let journal = settings.journal.clone();
        let marker = marker.clone();
        CleanupGuard::new(
            scope,
            format!("cancel the Testing Farm request carrying {marker} (see `atex tf cleanup`)"),
            move || cancel_reservation(client, journal, marker, since, rx),
        )
    };
    // The POST is not dropped when the creation is cancelled: it gets `POST_GRACE` to
    // finish (its id then goes to the guard); after that (an outage, a hung reply) the
    // guard looks for the request by its marker.
    let post = {
        let client = setup.cleanup_client.clone();
        let journal = settings.journal.clone();
        let graceful = scope.token().clone();
        scope.shielded("tf-create").spawn("tf-create", async move {
            let create = journal.create(&client, &request);
            tokio::pin!(create);
            let created = tokio::select! {
                r = &mut create => r,
                _ = graceful.cancelled() => {
                    match tokio::time::timeout(POST_GRACE, &mut create).await {
                        Ok(r) => r,
                        Err(_) => Err(TfError::Cancelled {
                            endpoint: "POST /v0.1/requests".into(),
                        }),
                    }
                }
            };
            let posting = match &created {
                Ok(r) => Posting::Created(r.id().to_string()),
                Err(e) if refused(e) => Posting::Refused,
                Err(_) => Posting::Unknown,
            };
            let _ = tx.send(posting);
            created.map(|r| r.id().to_string())
        })
    };
    let id = match post.await {
        Ok(Ok(id)) => id,
        Ok(Err(source)) => {
            let fatal = refused(&source);
            // Settle the guard now (a refused create needs nothing; an unknown one is
            // looked for by its marker).
            if let Err(e) = guard.release().await {
                tracing::error!(error = %crate::error::chain(&e), "cannot resolve a failed create");
            }
            let request = (!fatal).then(|| format!("with marker {marker}"));
            return Err(ReserveError::Api { request, source });
        }
        Err(join) => {
            drop(guard);
            return Err(ReserveError::Api {
                request: None,
                source: TfError::Cancelled {
                    endpoint: format!("POST /v0.1/requests ({join})"),
                },
            });
        }
    };
    tracing::info!(request = %id, compose = %settings.compose, arch = %settings.arch, "Testing Farm reservation submitted");
    let client = settings.client.with_scope(scope);
    Ok((guard, client.request(id)))
}

/// The guard's cleanup: cancels the request once its POST settled, or finds it by its
/// marker when the POST's outcome is unknown.
async fn cancel_reservation(
    client: Client,
    journal: Journal,
    marker: String,
    since: Timestamp,
    mut rx: watch::Receiver<Posting>,
) -> Result<(), BoxError> {
    let posting = match rx.wait_for(|p| !matches!(p, Posting::InFlight)).await {
        Ok(p) => p.clone(),
        Err(_) => Posting::Unknown,
    };
    match posting {
        Posting::Created(id) => {
            let outcome = journal.cancel(&client, &id).await?;
            tracing::info!(request = %id, %outcome, "Testing Farm reservation cancelled");
        }
        Posting::Refused => {}
        Posting::InFlight | Posting::Unknown => {
            for info in client.find_created(&marker, since).await? {
                journal.record_created(info.id(), &marker)?;
                let outcome = journal.cancel(&client, info.id()).await?;
                tracing::info!(request = %info.id(), %outcome, "Testing Farm reservation found by its marker and cancelled");
            }
            journal.record_abandoned(&marker)?;
        }
    }
    Ok(())
}

/// Submits, waits for the guest, logs in.
async fn reserve(
    settings: &Settings,
    setup: &Setup,
    scope: &Scope,
) -> Result<Lease<TestingFarmConnection>, ReserveError> {
    let (guard, mut request) = submit(settings, setup, scope).await?;
    let id = request.id().to_string();
    let mut stage = "queued";
    let waited = tokio::time::timeout(
        settings.ready_timeout,
        wait_for_guest(settings, setup, scope, &mut request, &mut stage),
    )
    .await;
    let failure = match waited {
        Ok(Ok((ssh, destination))) => {
            tracing::info!(request = %id, guest = %destination, "Testing Farm guest ready");
            let conn = TestingFarmConnection::new(ssh, id, destination);
            return Ok(Lease::new(conn).with_guard(guard));
        }
        Ok(Err(e)) => e,
        Err(_) => ReserveError::NotReady {
            request: id.clone(),
            timeout: settings.ready_timeout,
            stage,
        },
    };
    if let Err(e) = guard.release().await {
        tracing::error!(request = %id, error = %crate::error::chain(&e), "cannot cancel a failed reservation");
    }
    Err(failure)
}

/// Waits until the request runs, reads the guest from `pipeline.log`, then tries to log
/// in until the reserve test has installed our key.
pub(super) async fn wait_for_guest(
    settings: &Settings,
    setup: &Setup,
    scope: &Scope,
    request: &mut Request,
    stage: &mut &'static str,
) -> Result<(SshConnection, String), ReserveError> {
    let id = request.id().to_string();
    let api = |source: TfError| ReserveError::Api {
        request: Some(id.clone()),
        source,
    };
    let cancelled = || ReserveError::Api {
        request: Some(id.clone()),
        source: TfError::Cancelled {
            endpoint: format!("reserving with request {id}"),
        },
    };
    request
        .wait_for_state(&[State::Running], scope)
        .await
        .map_err(api)?;
    *stage = "the guest in pipeline.log";
    let mut log = loop {
        if let Some(log) = request.pipeline_log() {
            break log;
        }
        sleep(scope, settings.poll_interval())
            .await
            .ok_or_else(cancelled)?;
        request.assert_alive().await.map_err(api)?;
    };
    let mut lines = LineBuffer::new();
    let mut scanner = GuestScanner::new();
    let guest: GuestAddress = 'log: loop {
        request.assert_alive().await.map_err(api)?;
        while let LogChunk::Data(bytes) = log.read_new().await.map_err(api)? {
            for line in lines.push(&bytes) {
                if let Some(g) = scanner.feed(&line) {
                    break 'log g;
                }
            }
        }
        sleep(scope, settings.poll_interval())
            .await
            .ok_or_else(cancelled)?;
    };
    *stage = "an SSH login with our key";
    let config = SshConfig::new(guest.host.clone())
        .port(settings.guest_port)
        .user(guest.user.clone())
        .key_file(setup.key.private_path())
        .host_key_policy(HostKeyPolicy::Insecure)
        .connect_timeout(Duration::from_secs(10));
    let destination = config.destination();
    let mut attempts = 0u32;
    loop {
        request.assert_alive().await.map_err(api)?;
        attempts += 1;
        match scope.run(SshConnection::connect(config.clone())).await {
            None => return Err(cancelled()),
            Some(Ok(ssh)) => return Ok((ssh, destination)),
            Some(Err(e)) => {
                tracing::debug!(request = %id, guest = %destination, attempts, error = %crate::error::chain(&e), "guest login failed (the key may not be installed yet)");
            }
        }
        sleep(scope, settings.probe_interval)
            .await
            .ok_or_else(cancelled)?;
    }
}

async fn sleep(scope: &Scope, d: Duration) -> Option<()> {
    scope.run(tokio::time::sleep(d)).await
}
