//! One API call: the request, the reply, retries with back-off, and errors from replies.

use reqwest::Method;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue, RANGE};
use serde_json::Value;

use super::client::Client;
use super::error::{TfError, truncate};
use crate::http_retry::{retry_after, retryable_status};

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
pub(super) enum Attempt {
    Reply(Reply),
    /// No reply. `maybe_sent` is false only when the connection was never established.
    Failed {
        error: reqwest::Error,
        maybe_sent: bool,
    },
}

impl Client {
    /// A call of `method` on `path` under the API root (no query, no body, not clean-up).
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

    /// One HTTP exchange, reading the whole body (or as much as arrives).
    pub(super) async fn attempt(&self, call: &Call<'_>) -> Result<Attempt, TfError> {
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

    pub(super) fn transport(&self, call: &Call<'_>, error: reqwest::Error) -> TfError {
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
    pub(super) async fn get_json(
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

/// `error`, wrapped as [`TfError::RetriesExhausted`] when there were retries.
pub(super) fn exhausted(call: &Call<'_>, retries: u32, error: TfError) -> TfError {
    if retries == 0 {
        return error;
    }
    TfError::RetriesExhausted {
        endpoint: call.endpoint.clone(),
        attempts: retries + 1,
        last: Box::new(error),
    }
}
