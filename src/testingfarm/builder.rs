//! [`ClientBuilder`]: the client's configuration, from the environment and from code.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OnceCell, Semaphore};
use tokio_util::sync::CancellationToken;

use super::client::{Client, Inner};
use super::error::TfError;
use super::token::Token;
use crate::http_retry::RetryPolicy;

/// The public production API root.
pub const DEFAULT_URL: &str = "https://api.testing-farm.io";
/// Environment variable holding the API root (with or without a trailing `/v0.1`).
pub const ENV_URL: &str = "TESTING_FARM_API_URL";
/// Environment variable holding the API token.
pub const ENV_TOKEN: &str = "TESTING_FARM_API_TOKEN";
/// Environment variable holding the poll interval in seconds (as tft-cli's `WATCH_TICK`).
pub const ENV_WATCH_TICK: &str = "TESTING_FARM_WATCH_TICK";

/// Builds a [`Client`].
///
/// [`ClientBuilder::from_env`] (also [`Client::builder`]) starts from `TESTING_FARM_API_URL`
/// and `TESTING_FARM_API_TOKEN`; [`ClientBuilder::new`] ignores the environment. Values set
/// on the builder win over the environment.
#[derive(Debug, Clone)]
pub struct ClientBuilder {
    url: Option<String>,
    token: Option<Token>,
    retry: RetryPolicy,
    request_timeout: Duration,
    connect_timeout: Duration,
    poll_interval: Duration,
    max_concurrent: usize,
    cancel: Option<CancellationToken>,
    force: Option<CancellationToken>,
}

impl Default for ClientBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl ClientBuilder {
    /// Defaults only: [`DEFAULT_URL`], no token, [`RetryPolicy::default`], 60 s per HTTP
    /// exchange, 10 s to connect, requests refreshed at most every 30 s, at most 10 calls at
    /// once.
    pub fn new() -> Self {
        Self {
            url: None,
            token: None,
            retry: RetryPolicy::default(),
            request_timeout: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(10),
            poll_interval: Duration::from_secs(30),
            max_concurrent: 10,
            cancel: None,
            force: None,
        }
    }

    /// Defaults, then the URL and token from `TESTING_FARM_API_URL` and
    /// `TESTING_FARM_API_TOKEN` where set and not empty, and the poll interval from
    /// `TESTING_FARM_WATCH_TICK` (seconds; an invalid value is ignored with a warning).
    pub fn from_env() -> Self {
        let mut b = Self::new();
        if let Ok(tick) = std::env::var(ENV_WATCH_TICK) {
            match tick.trim().parse::<f64>() {
                Ok(secs) if secs.is_finite() && secs > 0.0 && secs < 1e7 => {
                    b.poll_interval = Duration::from_secs_f64(secs);
                }
                _ => {
                    tracing::warn!(value = %tick, "ignoring {ENV_WATCH_TICK}: not a positive number of seconds")
                }
            }
        }
        if let Ok(url) = std::env::var(ENV_URL)
            && !url.trim().is_empty()
        {
            b.url = Some(url);
        }
        if let Ok(token) = std::env::var(ENV_TOKEN) {
            let token = Token::new(token);
            if !token.is_empty() {
                b.token = Some(token);
            }
        }
        b
    }

    /// The API root, e.g. `https://api.testing-farm.io` (a trailing `/v0.1` is accepted).
    pub fn url(mut self, url: impl Into<String>) -> Self {
        self.url = Some(url.into());
        self
    }

    /// The API token.
    pub fn token(mut self, token: impl AsRef<str>) -> Self {
        let token = Token::new(token);
        self.token = (!token.is_empty()).then_some(token);
        self
    }

    /// Forgets any token (e.g. one taken from the environment).
    pub fn no_token(mut self) -> Self {
        self.token = None;
        self
    }

    /// How transient failures are retried.
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// Limit of one HTTP exchange (connect, send, whole reply).
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Limit of establishing a connection.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How often a [`Request`](super::Request) handle asks the server for its state (upstream: 30 s; keep
    /// it at least that long against the real service).
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// At most this many HTTP calls at once (default 10, as upstream's connection pool).
    pub fn max_concurrent(mut self, n: usize) -> Self {
        self.max_concurrent = n.max(1);
        self
    }

    /// Graceful cancellation (e.g. a scope's [`token`](crate::scope::Scope::token)): every
    /// call and wait of the client, except the clean-up calls ([`Client::cancel`],
    /// [`Client::find_created`]), ends with [`TfError::Cancelled`] when it fires.
    pub fn cancel_token(mut self, token: CancellationToken) -> Self {
        self.cancel = Some(token);
        self
    }

    /// Forced cancellation (e.g. a scope's
    /// [`force_token`](crate::scope::Scope::force_token)): every call and wait, clean-up
    /// calls included, ends with [`TfError::Cancelled`] when it fires.
    pub fn force_token(mut self, token: CancellationToken) -> Self {
        self.force = Some(token);
        self
    }

    /// Builds the client.
    pub fn build(self) -> Result<Client, TfError> {
        let given = self.url.unwrap_or_else(|| DEFAULT_URL.to_string());
        let root = normalise_root(&given)?;
        let http = reqwest::Client::builder()
            .timeout(self.request_timeout)
            .connect_timeout(self.connect_timeout)
            .user_agent(concat!("atex/", env!("CARGO_PKG_VERSION")))
            .pool_max_idle_per_host(self.max_concurrent)
            .build()
            .map_err(TfError::Setup)?;
        Ok(Client {
            inner: Arc::new(Inner {
                http,
                root,
                token: self.token,
                retry: self.retry,
                poll_interval: self.poll_interval,
                limit: Semaphore::new(self.max_concurrent),
                whoami: OnceCell::new(),
            }),
            cancel: self.cancel.into_iter().collect(),
            force: self.force.into_iter().collect(),
        })
    }
}

/// The API root without a trailing slash or `/v0.1`.
fn normalise_root(given: &str) -> Result<String, TfError> {
    let bad = |reason: &str| TfError::BadUrl {
        url: given.to_string(),
        reason: reason.to_string(),
    };
    let url = reqwest::Url::parse(given.trim()).map_err(|e| bad(&e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad("the scheme must be http or https"));
    }
    if url.host_str().is_none() {
        return Err(bad("no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad(
            "credentials in the URL are not supported; use the token",
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(bad("a query or fragment is not allowed"));
    }
    let mut root = url.as_str().trim_end_matches('/').to_string();
    for suffix in ["/v0.1", "/v0.2"] {
        if let Some(r) = root.strip_suffix(suffix) {
            root = r.trim_end_matches('/').to_string();
        }
    }
    Ok(root)
}

impl Client {
    /// [`ClientBuilder::from_env`].
    pub fn builder() -> ClientBuilder {
        ClientBuilder::from_env()
    }

    /// A client configured from the environment only.
    pub fn from_env() -> Result<Self, TfError> {
        ClientBuilder::from_env().build()
    }
}
