//! [`Client`]: the state its clones share, its cancellation tokens and its settings.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OnceCell, Semaphore};
use tokio_util::sync::CancellationToken;

use super::error::TfError;
use super::token::Token;
use super::types::Whoami;
use crate::http_retry::RetryPolicy;

/// What the clones of a [`Client`] share.
#[derive(Debug)]
pub(super) struct Inner {
    pub(super) http: reqwest::Client,
    pub(super) root: String,
    pub(super) token: Option<Token>,
    pub(super) retry: RetryPolicy,
    pub(super) poll_interval: Duration,
    pub(super) limit: Semaphore,
    pub(super) whoami: OnceCell<Whoami>,
}

/// A Testing Farm API client. Cheap to clone; clones share the connection pool, the call
/// limit and the cached `whoami`.
///
/// Transient failures (408, 429, 5xx, connection errors) are retried with exponential
/// back-off honouring `Retry-After` ([`RetryPolicy`]). A create whose outcome is unknown
/// (the connection dropped after the server may have committed it) is never blindly posted
/// again: the client first searches for its own request by the request's idempotency marker
/// and adopts it ([`create`](Self::create)).
///
/// ```no_run
/// # async fn f() -> Result<(), atex::testingfarm::TfError> {
/// let client = atex::testingfarm::Client::from_env()?;
/// let me = client.whoami().await?;
/// println!("token {} of ranch {}", me.token_id(), me.ranch());
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Client {
    pub(super) inner: Arc<Inner>,
    /// Graceful cancellation: ends every call except clean-up calls.
    pub(super) cancel: Vec<CancellationToken>,
    /// Forced cancellation: ends every call.
    pub(super) force: Vec<CancellationToken>,
}

impl Client {
    /// A clone that also obeys `token` as graceful cancellation (see
    /// [`ClientBuilder::cancel_token`](super::ClientBuilder::cancel_token)).
    pub fn with_cancel(&self, token: &CancellationToken) -> Self {
        let mut c = self.clone();
        c.cancel.push(token.clone());
        c
    }

    /// A clone that also obeys `token` as forced cancellation (see
    /// [`ClientBuilder::force_token`](super::ClientBuilder::force_token)).
    pub fn with_force(&self, token: &CancellationToken) -> Self {
        let mut c = self.clone();
        c.force.push(token.clone());
        c
    }

    /// A clone that obeys `scope`: its graceful token stops ordinary calls, its force
    /// token stops every call. Clean-up calls ([`cancel`](Self::cancel),
    /// [`find_created`](Self::find_created)) therefore still run after Ctrl-C, until a
    /// second one.
    pub fn with_scope(&self, scope: &crate::scope::Scope) -> Self {
        self.with_cancel(scope.token())
            .with_force(scope.force_token())
    }

    /// Whether graceful (or forced) cancellation was requested.
    pub fn is_cancelled(&self) -> bool {
        self.cancel
            .iter()
            .chain(&self.force)
            .any(CancellationToken::is_cancelled)
    }

    /// Resolves when cancellation is requested: any token for ordinary calls, only a force
    /// token for clean-up calls (`cleanup`). Never resolves without such tokens.
    pub(crate) async fn stopped(&self, cleanup: bool) {
        let tokens: Vec<_> = if cleanup {
            self.force.iter().collect()
        } else {
            self.cancel.iter().chain(&self.force).collect()
        };
        if tokens.is_empty() {
            return std::future::pending().await;
        }
        futures::future::select_all(tokens.into_iter().map(|t| Box::pin(t.cancelled()))).await;
    }

    /// The API root in use (no version suffix).
    pub fn url(&self) -> &str {
        &self.inner.root
    }

    /// Whether a token is configured.
    pub fn has_token(&self) -> bool {
        self.inner.token.is_some()
    }

    /// How often [`Request`](super::Request) handles refresh their state.
    pub fn poll_interval(&self) -> Duration {
        self.inner.poll_interval
    }

    /// The retry policy in use.
    pub fn retry_policy(&self) -> &RetryPolicy {
        &self.inner.retry
    }

    /// Sleeps `d` unless cancelled (see [`stopped`](Self::stopped)).
    pub(crate) async fn sleep(
        &self,
        d: Duration,
        what: &str,
        cleanup: bool,
    ) -> Result<(), TfError> {
        tokio::select! {
            biased;
            _ = self.stopped(cleanup) => Err(TfError::Cancelled { endpoint: what.to_string() }),
            _ = tokio::time::sleep(d) => Ok(()),
        }
    }
}
