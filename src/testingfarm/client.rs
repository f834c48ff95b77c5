//! The HTTP client: configuration, one call with retries, and the API endpoints.

use std::sync::Arc;
use std::time::Duration;

use reqwest::Method;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue, RANGE};
use serde_json::Value;
use tokio::sync::{OnceCell, Semaphore};
use tokio_util::sync::CancellationToken;

use super::error::{TfError, truncate};
use super::new_request::NewRequest;
use super::request::{CancelOutcome, Request, RequestInfo, State};
use super::search::SearchQuery;
use super::token::Token;
use super::types::{Compose, Whoami};
use crate::http_retry::{RetryPolicy, retry_after, retryable_status};
use crate::timestamp::Timestamp;

/// The public production API root.
pub const DEFAULT_URL: &str = "https://api.testing-farm.io";
/// Environment variable holding the API root (with or without a trailing `/v0.1`).
pub const ENV_URL: &str = "TESTING_FARM_API_URL";
/// Environment variable holding the API token.
pub const ENV_TOKEN: &str = "TESTING_FARM_API_TOKEN";
/// Environment variable holding the poll interval in seconds (as tft-cli's `WATCH_TICK`).
pub const ENV_WATCH_TICK: &str = "TESTING_FARM_WATCH_TICK";

/// How far back (before our first POST) a search for our own request looks, to allow for
/// a difference between our clock and the server's.
const CLOCK_SLACK: Duration = Duration::from_secs(3600);

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

    /// How often a [`Request`] handle asks the server for its state (upstream: 30 s; keep
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

#[derive(Debug)]
struct Inner {
    http: reqwest::Client,
    root: String,
    token: Option<Token>,
    retry: RetryPolicy,
    poll_interval: Duration,
    limit: Semaphore,
    whoami: OnceCell<Whoami>,
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
    inner: Arc<Inner>,
    /// Graceful cancellation: ends every call except clean-up calls.
    cancel: Vec<CancellationToken>,
    /// Forced cancellation: ends every call.
    force: Vec<CancellationToken>,
}

/// Whether a call carries the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Auth {
    /// The call fails with [`TfError::NoToken`] without one.
    Required,
    /// Sent when configured.
    IfAny,
    /// Never sent (e.g. to the artifacts server).
    Never,
}

/// One logical API call (retried as a unit).
#[derive(Debug)]
pub(crate) struct Call<'a> {
    pub method: Method,
    pub url: String,
    /// `METHOD /path`, for errors and logs.
    pub endpoint: String,
    pub query: Vec<(&'static str, String)>,
    pub body: Option<&'a Value>,
    pub auth: Auth,
    pub range_from: Option<u64>,
    /// A clean-up call: only forced cancellation stops it.
    pub cleanup: bool,
}

/// A complete (or, with `body_error`, cut) reply.
#[derive(Debug)]
pub(crate) struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    /// The body was cut by this error after `body.len()` bytes.
    pub body_error: Option<reqwest::Error>,
}

/// What one attempt gave.
enum Attempt {
    Reply(Reply),
    /// No reply. `maybe_sent` is false only when the connection was never established.
    Failed {
        error: reqwest::Error,
        maybe_sent: bool,
    },
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

    /// A clone that also obeys `token` as graceful cancellation (see
    /// [`ClientBuilder::cancel_token`]).
    pub fn with_cancel(&self, token: &CancellationToken) -> Self {
        let mut c = self.clone();
        c.cancel.push(token.clone());
        c
    }

    /// A clone that also obeys `token` as forced cancellation (see
    /// [`ClientBuilder::force_token`]).
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

    /// How often [`Request`] handles refresh their state.
    pub fn poll_interval(&self) -> Duration {
        self.inner.poll_interval
    }

    /// The retry policy in use.
    pub fn retry_policy(&self) -> &RetryPolicy {
        &self.inner.retry
    }

    pub(crate) fn api_call<'a>(&self, method: Method, path: &str, auth: Auth) -> Call<'a> {
        Call {
            endpoint: format!("{method} {path}"),
            url: format!("{}{path}", self.inner.root),
            method,
            query: Vec::new(),
            body: None,
            auth,
            range_from: None,
            cleanup: false,
        }
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

    /// One HTTP exchange, reading the whole body (or as much as arrives).
    async fn attempt(&self, call: &Call<'_>) -> Result<Attempt, TfError> {
        let cancelled = || TfError::Cancelled {
            endpoint: call.endpoint.clone(),
        };
        let exchange = async {
            let _permit = self.inner.limit.acquire().await;
            let mut req = self
                .inner
                .http
                .request(call.method.clone(), &call.url)
                .query(&call.query);
            match (&self.inner.token, call.auth) {
                (Some(token), Auth::Required | Auth::IfAny) => {
                    let mut value = HeaderValue::from_str(&format!("Bearer {}", token.expose()))
                        .map_err(|_| TfError::BadReply {
                            endpoint: call.endpoint.clone(),
                            reason: "the token contains characters not allowed in a header".into(),
                        })?;
                    value.set_sensitive(true);
                    req = req.header(AUTHORIZATION, value);
                }
                (None, Auth::Required) => {
                    return Err(TfError::NoToken {
                        endpoint: call.endpoint.clone(),
                    });
                }
                _ => {}
            }
            if let Some(from) = call.range_from {
                req = req.header(RANGE, format!("bytes={from}-"));
            }
            if let Some(body) = call.body {
                req = req.json(body);
            }
            tracing::debug!(endpoint = %call.endpoint, "calling Testing Farm");
            let mut resp = match req.send().await {
                Ok(r) => r,
                Err(error) => {
                    let maybe_sent = !error.is_connect();
                    return Ok(Attempt::Failed { error, maybe_sent });
                }
            };
            let status = resp.status().as_u16();
            let headers = resp.headers().clone();
            let mut body = Vec::new();
            let mut body_error = None;
            loop {
                match resp.chunk().await {
                    Ok(Some(chunk)) => body.extend_from_slice(&chunk),
                    Ok(None) => break,
                    Err(e) => {
                        body_error = Some(e);
                        break;
                    }
                }
            }
            tracing::debug!(endpoint = %call.endpoint, status, bytes = body.len(), "Testing Farm replied");
            Ok(Attempt::Reply(Reply {
                status,
                headers,
                body,
                body_error,
            }))
        };
        tokio::select! {
            biased;
            _ = self.stopped(call.cleanup) => Err(cancelled()),
            r = exchange => r,
        }
    }

    /// Runs `call`, retrying transient failures. A reply with a non-transient status is
    /// returned as is (the caller interprets it). A cut body counts as a transient failure
    /// unless `partial_ok` accepts it.
    pub(crate) async fn execute(
        &self,
        call: &Call<'_>,
        partial_ok: impl Fn(&Reply) -> bool,
    ) -> Result<Reply, TfError> {
        let policy = &self.inner.retry;
        let mut retries = 0u32;
        loop {
            let (error, wait_hint) = match self.attempt(call).await? {
                Attempt::Reply(mut reply) => {
                    let cut = if partial_ok(&reply) {
                        None
                    } else {
                        reply.body_error.take()
                    };
                    if let Some(error) = cut {
                        (self.transport(call, error), None)
                    } else if retryable_status(reply.status) {
                        let hint = retry_after(&reply.headers);
                        (self.reply_error(&call.endpoint, &reply), hint)
                    } else {
                        return Ok(reply);
                    }
                }
                Attempt::Failed { error, .. } => (self.transport(call, error), None),
            };
            if retries >= policy.max_retries {
                return Err(exhausted(call, retries, error));
            }
            retries += 1;
            let wait = policy.delay(retries, wait_hint);
            tracing::warn!(endpoint = %call.endpoint, retry = retries, wait_ms = wait.as_millis() as u64, error = %error, "Testing Farm call failed; retrying");
            self.sleep(wait, &call.endpoint, call.cleanup).await?;
        }
    }

    fn transport(&self, call: &Call<'_>, error: reqwest::Error) -> TfError {
        TfError::Transport {
            endpoint: call.endpoint.clone(),
            source: error.without_url(),
        }
    }

    /// The error for a reply with an unexpected status.
    pub(crate) fn reply_error(&self, endpoint: &str, reply: &Reply) -> TfError {
        let text = self.scrub(&String::from_utf8_lossy(&reply.body));
        let json: Option<Value> = serde_json::from_slice(&reply.body).ok();
        let message = json
            .as_ref()
            .and_then(|v| {
                v.get("message")
                    .and_then(Value::as_str)
                    .map(str::to_string)
                    .or_else(|| v.get("detail").map(|d| d.to_string()))
            })
            .map(|m| self.scrub(&m))
            .unwrap_or_else(|| {
                if text.trim().is_empty() {
                    "(empty reply)".to_string()
                } else {
                    truncate(text.trim())
                }
            });
        if reply.status == 401 {
            return TfError::Unauthorized {
                endpoint: endpoint.to_string(),
                message: truncate(&message),
            };
        }
        TfError::Api {
            endpoint: endpoint.to_string(),
            status: reply.status,
            message: truncate(&message),
            body: truncate(&text),
        }
    }

    fn scrub(&self, text: &str) -> String {
        match &self.inner.token {
            Some(t) => t.scrub(text),
            None => text.to_string(),
        }
    }

    /// The JSON body of a reply whose status must be in `ok`.
    pub(crate) fn json_reply(
        &self,
        endpoint: &str,
        reply: &Reply,
        ok: &[u16],
    ) -> Result<Value, TfError> {
        if !ok.contains(&reply.status) {
            return Err(self.reply_error(endpoint, reply));
        }
        let content_type = reply
            .headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let essence = content_type
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        let not_json = || TfError::NotJson {
            endpoint: endpoint.to_string(),
            status: reply.status,
            content_type: content_type.clone(),
            body: truncate(&self.scrub(&String::from_utf8_lossy(&reply.body))),
        };
        if essence != "application/json" {
            return Err(not_json());
        }
        serde_json::from_slice(&reply.body).map_err(|_| not_json())
    }

    /// `GET`s `path` and decodes the JSON reply.
    async fn get_json(
        &self,
        path: &str,
        auth: Auth,
        query: Vec<(&'static str, String)>,
        cleanup: bool,
    ) -> Result<Value, TfError> {
        let mut call = self.api_call(Method::GET, path, auth);
        call.query = query;
        call.cleanup = cleanup;
        let reply = self.execute(&call, |_| false).await?;
        self.json_reply(&call.endpoint, &reply, &[200])
    }

    /// `GET /v0.1/whoami`: the token's and user's identity (needs the token). Cached for the
    /// life of the client (and its clones) after the first success.
    pub async fn whoami(&self) -> Result<Whoami, TfError> {
        self.whoami_for(false).await
    }

    async fn whoami_for(&self, cleanup: bool) -> Result<Whoami, TfError> {
        self.inner
            .whoami
            .get_or_try_init(|| async {
                let value = self
                    .get_json("/v0.1/whoami", Auth::Required, Vec::new(), cleanup)
                    .await?;
                Whoami::from_json(value).map_err(|reason| TfError::BadReply {
                    endpoint: "GET /v0.1/whoami".into(),
                    reason,
                })
            })
            .await
            .cloned()
    }

    /// `GET /v0.1/about`: the server's version information.
    pub async fn about(&self) -> Result<Value, TfError> {
        self.get_json("/v0.1/about", Auth::IfAny, Vec::new(), false)
            .await
    }

    /// `GET /v0.2/composes/{ranch}`: every compose entry (plain names and regular
    /// expressions). Without `ranch`, the token's ranch (from [`whoami`](Self::whoami)).
    pub async fn composes(&self, ranch: Option<&str>) -> Result<Vec<Compose>, TfError> {
        let ranch = match ranch {
            Some(r) => r.to_string(),
            None => self.whoami().await?.ranch().to_string(),
        };
        if ranch.is_empty()
            || !ranch
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(TfError::BadReply {
                endpoint: "GET /v0.2/composes".into(),
                reason: format!("'{ranch}' is not a ranch name"),
            });
        }
        let path = format!("/v0.2/composes/{ranch}");
        let value = self.get_json(&path, Auth::Never, Vec::new(), false).await?;
        Compose::list_from_json(&value).map_err(|reason| TfError::BadReply {
            endpoint: format!("GET {path}"),
            reason,
        })
    }

    /// A handle on request `id` without asking the server (its state is unknown until
    /// [`Request::refresh`]).
    pub fn request(&self, id: impl Into<String>) -> Request {
        Request::unfetched(self.clone(), id.into())
    }

    /// `GET /v0.1/requests/{id}`.
    pub async fn get(&self, id: &str) -> Result<Request, TfError> {
        let info = self.get_info(id).await?;
        Ok(Request::with_info(self.clone(), id.to_string(), info))
    }

    pub(crate) async fn get_info(&self, id: &str) -> Result<RequestInfo, TfError> {
        let path = format!("/v0.1/requests/{}", path_segment(id)?);
        let value = self.get_json(&path, Auth::IfAny, Vec::new(), false).await?;
        RequestInfo::from_json(value).map_err(|reason| TfError::BadReply {
            endpoint: format!("GET {path}"),
            reason,
        })
    }

    /// `DELETE /v0.1/requests/{id}`: cancels the request. Repeating a cancel is not an
    /// error: a request already cancelled, finished or unknown is reported as such.
    ///
    /// A clean-up call: graceful cancellation of the client does not stop it (it is what
    /// cancellation is for), forced cancellation does.
    pub async fn cancel(&self, id: &str) -> Result<CancelOutcome, TfError> {
        let path = format!("/v0.1/requests/{}", path_segment(id)?);
        let mut call = self.api_call(Method::DELETE, &path, Auth::Required);
        call.cleanup = true;
        let reply = self.execute(&call, |_| false).await?;
        let outcome = match reply.status {
            200 => {
                let state = serde_json::from_slice::<Value>(&reply.body)
                    .ok()
                    .and_then(|v| v.get("state").and_then(Value::as_str).map(State::from_api));
                CancelOutcome::Requested { state }
            }
            204 => CancelOutcome::AlreadyCancelled,
            409 => CancelOutcome::AlreadyFinished,
            404 => CancelOutcome::NotFound,
            _ => return Err(self.reply_error(&call.endpoint, &reply)),
        };
        tracing::info!(request = id, outcome = ?outcome, "Testing Farm request cancelled");
        Ok(outcome)
    }

    /// `POST /v0.1/requests`: submits `request` and returns its handle.
    ///
    /// Transient failures are retried. When the outcome of a POST is unknown (the
    /// connection broke after sending, a 5xx or timeout, a 200 reply that cannot be read),
    /// the server may have created the request: before posting again the client searches
    /// the token's live requests for the request's [marker](NewRequest::marker) and adopts
    /// what it finds (and cancels any surplus copy), so one `create` never leaves two
    /// reservations. If that search fails too, the error is [`TfError::CreateUnresolved`]
    /// naming the marker. When the client's token fires mid-call, the result is
    /// [`TfError::Cancelled`]; the request may exist then: look it up with
    /// [`find_created`](Self::find_created).
    pub async fn create(&self, request: &NewRequest) -> Result<Request, TfError> {
        let body = request.to_json();
        let marker = request.marker().to_string();
        let since = Timestamp::now().minus(CLOCK_SLACK);
        let mut call = self.api_call(Method::POST, "/v0.1/requests", Auth::Required);
        call.body = Some(&body);
        let policy = &self.inner.retry;
        let mut retries = 0u32;
        let mut maybe_created = false;
        loop {
            let (error, wait_hint, retryable) = match self.attempt(&call).await? {
                Attempt::Failed { error, maybe_sent } => {
                    maybe_created |= maybe_sent;
                    (self.transport(&call, error), None, true)
                }
                Attempt::Reply(mut reply) => {
                    if let Some(error) = reply.body_error.take() {
                        maybe_created = true;
                        (self.transport(&call, error), None, true)
                    } else if reply.status == 200 {
                        let parsed =
                            self.json_reply(&call.endpoint, &reply, &[200])
                                .and_then(|v| {
                                    RequestInfo::from_json(v).map_err(|reason| TfError::BadReply {
                                        endpoint: call.endpoint.clone(),
                                        reason,
                                    })
                                });
                        match parsed {
                            Ok(info) => {
                                let id = info.id().to_string();
                                tracing::info!(request = %id, marker = %marker, "Testing Farm request created");
                                return Ok(Request::with_info(self.clone(), id, info));
                            }
                            // Created, but this reply does not tell its id.
                            Err(e) => {
                                maybe_created = true;
                                (e, None, false)
                            }
                        }
                    } else if retryable_status(reply.status) {
                        // 429 is refused before any work; any other transient status may
                        // come from a gateway that gave up on a server that went on.
                        maybe_created |= reply.status != 429;
                        let hint = retry_after(&reply.headers);
                        (self.reply_error(&call.endpoint, &reply), hint, true)
                    } else {
                        return Err(self.reply_error(&call.endpoint, &reply));
                    }
                }
            };
            if maybe_created {
                tracing::warn!(marker = %marker, error = %error, "outcome of POST /v0.1/requests unknown; looking for our request before retrying");
                match self.find_created(&marker, since).await {
                    Ok(found) if !found.is_empty() => return self.adopt(found, &marker).await,
                    Ok(_) => {}
                    Err(e) if e.is_cancelled() => return Err(e),
                    Err(e) => {
                        return Err(TfError::CreateUnresolved {
                            marker,
                            source: Box::new(e),
                        });
                    }
                }
            }
            if !retryable {
                return Err(error);
            }
            if retries >= policy.max_retries {
                return Err(exhausted(&call, retries, error));
            }
            retries += 1;
            let wait = policy.delay(retries, wait_hint);
            tracing::warn!(endpoint = %call.endpoint, retry = retries, wait_ms = wait.as_millis() as u64, error = %error, "Testing Farm call failed; retrying");
            self.sleep(wait, &call.endpoint, call.cleanup).await?;
        }
    }

    /// Keeps the oldest of the requests found for `marker`, cancels the others.
    async fn adopt(&self, mut found: Vec<RequestInfo>, marker: &str) -> Result<Request, TfError> {
        found.sort_by(|a, b| a.created().cmp(&b.created()).then(a.id().cmp(b.id())));
        let keep = found.remove(0);
        for extra in found {
            tracing::warn!(
                request = extra.id(),
                marker,
                "cancelling a duplicate of our request"
            );
            if let Err(e) = self.cancel(extra.id()).await {
                tracing::error!(request = extra.id(), error = %e, "cannot cancel a duplicate request");
            }
        }
        tracing::info!(
            request = keep.id(),
            marker,
            "adopted the request a failed POST had created"
        );
        Ok(Request::with_info(
            self.clone(),
            keep.id().to_string(),
            keep,
        ))
    }

    /// The token's live (`new`, `queued`, `running`) requests created since `since` that
    /// carry `marker` (see [`NewRequest::marker`]). A clean-up call, like
    /// [`cancel`](Self::cancel).
    pub async fn find_created(
        &self,
        marker: &str,
        since: Timestamp,
    ) -> Result<Vec<RequestInfo>, TfError> {
        let query = SearchQuery::mine().created_after(since);
        let found = self.search_for(&query, true).await?;
        Ok(found.into_iter().filter(|r| r.has_marker(marker)).collect())
    }

    /// `GET /v0.1/requests`, once per state and per time window of
    /// [`SearchQuery::page`] (the API takes one state per call); results de-duplicated by id,
    /// oldest first.
    pub async fn search(&self, query: &SearchQuery) -> Result<Vec<RequestInfo>, TfError> {
        self.search_for(query, false).await
    }

    async fn search_for(
        &self,
        query: &SearchQuery,
        cleanup: bool,
    ) -> Result<Vec<RequestInfo>, TfError> {
        let mut base: Vec<(&'static str, String)> = Vec::new();
        let auth = if query.is_mine() {
            let me = self.whoami_for(cleanup).await?;
            base.push(("token_id", me.token_id().to_string()));
            base.push(("user_id", me.user_id().to_string()));
            Auth::Required
        } else {
            Auth::Never
        };
        if let Some(r) = query.ranch_filter() {
            base.push(("ranch", r.to_string()));
        }
        if let Some(t) = query.token_id_filter() {
            base.push(("token_id", t.to_string()));
        }
        if let Some(u) = query.user_id_filter() {
            base.push(("user_id", u.to_string()));
        }
        let windows = query.windows(Timestamp::now());
        let mut seen = std::collections::HashSet::new();
        let mut out = Vec::new();
        for state in query.state_list() {
            for (after, before) in &windows {
                let mut q = base.clone();
                q.push(("state", state.as_str().to_string()));
                if let Some(a) = after {
                    q.push(("created_after", a.to_string()));
                }
                if let Some(b) = before {
                    q.push(("created_before", b.to_string()));
                }
                let value = self.get_json("/v0.1/requests", auth, q, cleanup).await?;
                let items = match value {
                    Value::Null => Vec::new(),
                    Value::Array(items) => items,
                    other => {
                        return Err(TfError::BadReply {
                            endpoint: "GET /v0.1/requests".into(),
                            reason: format!("expected a list, got {}", json_kind(&other)),
                        });
                    }
                };
                for item in items {
                    let info =
                        RequestInfo::from_json(item).map_err(|reason| TfError::BadReply {
                            endpoint: "GET /v0.1/requests".into(),
                            reason,
                        })?;
                    if seen.insert(info.id().to_string()) {
                        out.push(info);
                    }
                }
            }
        }
        out.sort_by(|a, b| a.created().cmp(&b.created()));
        Ok(out)
    }

    /// An exchange with the artifacts server (no token), retried like API calls.
    pub(crate) async fn artifacts_call(
        &self,
        method: Method,
        url: &str,
        range_from: Option<u64>,
    ) -> Result<Reply, TfError> {
        let path = reqwest::Url::parse(url)
            .map(|u| u.path().to_string())
            .unwrap_or_else(|_| url.to_string());
        let call = Call {
            endpoint: format!("{method} {path}"),
            url: url.to_string(),
            method,
            query: Vec::new(),
            body: None,
            auth: Auth::Never,
            range_from,
            cleanup: false,
        };
        // A partial 206/200 body is still progress: keep it, resume from its end.
        self.execute(&call, |r| {
            (r.status == 206 || r.status == 200) && !r.body.is_empty()
        })
        .await
    }
}

fn exhausted(call: &Call<'_>, retries: u32, error: TfError) -> TfError {
    if retries == 0 {
        return error;
    }
    TfError::RetriesExhausted {
        endpoint: call.endpoint.clone(),
        attempts: retries + 1,
        last: Box::new(error),
    }
}

/// `id` as one URL path segment (request ids are UUIDs; refuse anything that could
/// change the path).
fn path_segment(id: &str) -> Result<&str, TfError> {
    if id.is_empty()
        || !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(TfError::BadReply {
            endpoint: "/v0.1/requests/{id}".into(),
            reason: format!("'{id}' is not a request id"),
        });
    }
    Ok(id)
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}
