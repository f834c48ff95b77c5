//! [`RpClient`]: the shared connection, and one API call with retries.

use std::sync::Arc;
use std::time::Duration;

use reqwest::Method;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use serde_json::Value;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::config::RpConfig;
use super::error::RpError;
use crate::http_retry::{RetryPolicy, retry_after, retryable_status};

/// A request body.
pub(super) enum Body<'a> {
    None,
    Json(&'a Value),
    Multipart { boundary: &'a str, bytes: &'a [u8] },
}

/// What the clones of an [`RpClient`] share.
pub(super) struct Inner {
    pub(super) http: reqwest::Client,
    pub(super) v1: String,
    pub(super) v2: String,
    pub(super) token: HeaderValue,
    pub(super) retry: RetryPolicy,
    pub(super) limit: Semaphore,
    pub(super) url: String,
}

/// A ReportPortal API client (cheap to clone).
///
/// Writes go to `<url>/api/v2/<project>`, reads to `/api/v1/<project>`. Every call is
/// retried on 408, 429, 5xx and connection failures ([`RetryPolicy`], honouring
/// `Retry-After`), POSTs included, as upstream; each retry sends the same bytes. Only 200
/// and 201 with a JSON body count as success. A retried *finish* that the server refuses
/// with a 4xx (already finished: the first attempt was applied but its reply lost) counts
/// as success.
#[derive(Clone)]
pub struct RpClient {
    pub(super) inner: Arc<Inner>,
    cancel: Option<CancellationToken>,
}

impl std::fmt::Debug for RpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RpClient")
            .field("v2", &self.inner.v2)
            .finish()
    }
}

/// `s` cut to at most `n` bytes on a character boundary, with `…` when cut.
pub(super) fn truncate(s: &str, n: usize) -> String {
    if s.len() <= n {
        return s.to_string();
    }
    let mut end = n;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

impl RpClient {
    /// Builds a client.
    pub fn new(config: RpConfig) -> Result<Self, RpError> {
        let url = config.url.trim().trim_end_matches('/').to_string();
        let parsed = reqwest::Url::parse(&url)
            .map_err(|e| RpError::Config(format!("invalid URL '{url}': {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
            return Err(RpError::Config(format!(
                "invalid URL '{url}': expected http(s)://host"
            )));
        }
        let project = config.project.trim();
        if project.is_empty() || project.contains(['/', '?', '#']) {
            return Err(RpError::Config(format!("invalid project '{project}'")));
        }
        if config.token.trim().is_empty() {
            return Err(RpError::Config("no API token".into()));
        }
        let mut token =
            HeaderValue::from_str(&format!("Bearer {}", config.token.trim())).map_err(|_| {
                RpError::Config("the token has characters not allowed in a header".into())
            })?;
        token.set_sensitive(true);
        let http = reqwest::Client::builder()
            .timeout(config.request_timeout)
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("atex/", env!("CARGO_PKG_VERSION")))
            .danger_accept_invalid_certs(!config.ssl_verify)
            .pool_max_idle_per_host(config.max_concurrent)
            .build()
            .map_err(RpError::Setup)?;
        Ok(Self {
            inner: Arc::new(Inner {
                http,
                v1: format!("{url}/api/v1/{project}"),
                v2: format!("{url}/api/v2/{project}"),
                token,
                retry: config.retry,
                limit: Semaphore::new(config.max_concurrent.max(1)),
                url,
            }),
            cancel: None,
        })
    }

    /// A clone whose calls and waits end with [`RpError::Cancelled`] when `token` fires.
    pub fn with_cancel(&self, token: CancellationToken) -> Self {
        Self {
            inner: self.inner.clone(),
            cancel: Some(token),
        }
    }

    /// The server root.
    pub fn url(&self) -> &str {
        &self.inner.url
    }

    async fn cancelled(&self) {
        match &self.cancel {
            Some(t) => t.cancelled().await,
            None => std::future::pending().await,
        }
    }

    /// One logical call with retries; returns the JSON reply.
    pub(super) async fn call(
        &self,
        method: Method,
        url: String,
        query: &[(&str, String)],
        body: Body<'_>,
        finish: bool,
    ) -> Result<Value, RpError> {
        let path = url
            .strip_prefix(&self.inner.url)
            .unwrap_or(&url)
            .to_string();
        let endpoint = format!("{method} {path}");
        let policy = &self.inner.retry;
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let exchange = async {
                let _permit = self.inner.limit.acquire().await;
                let mut req = self
                    .inner
                    .http
                    .request(method.clone(), &url)
                    .query(query)
                    .header(AUTHORIZATION, self.inner.token.clone());
                req = match &body {
                    Body::None => req,
                    Body::Json(v) => req.json(v),
                    Body::Multipart { boundary, bytes } => req
                        .header(
                            CONTENT_TYPE,
                            format!("multipart/form-data; boundary={boundary}"),
                        )
                        .body(bytes.to_vec()),
                };
                tracing::debug!(%endpoint, attempt, "calling ReportPortal");
                let resp = req.send().await?;
                let status = resp.status().as_u16();
                let headers = resp.headers().clone();
                let bytes = resp.bytes().await?;
                Ok::<_, reqwest::Error>((status, headers, bytes))
            };
            let outcome = tokio::select! {
                biased;
                _ = self.cancelled() => return Err(RpError::Cancelled { endpoint }),
                r = exchange => r,
            };
            let (message, hint) = match outcome {
                Ok((status, headers, bytes)) => {
                    let text = String::from_utf8_lossy(&bytes);
                    if status == 200 || status == 201 {
                        let json = headers
                            .get(CONTENT_TYPE)
                            .and_then(|v| v.to_str().ok())
                            .is_some_and(|v| v.starts_with("application/json"));
                        match serde_json::from_slice::<Value>(&bytes) {
                            Ok(v) if json => return Ok(v),
                            _ => {
                                // A proxy's page, not the API: transient.
                                (
                                    format!(
                                        "HTTP {status} without a JSON body: {}",
                                        truncate(&text, 200)
                                    ),
                                    None,
                                )
                            }
                        }
                    } else if retryable_status(status) {
                        (
                            format!("HTTP {status}: {}", truncate(&text, 200)),
                            retry_after(&headers),
                        )
                    } else if finish
                        && attempt > 1
                        && (400..500).contains(&status)
                        && !matches!(status, 401 | 403 | 404)
                    {
                        tracing::debug!(%endpoint, status, "retried finish refused as already finished; counted as done");
                        return Ok(Value::Null);
                    } else {
                        let message = serde_json::from_slice::<Value>(&bytes)
                            .ok()
                            .and_then(|v| {
                                v.get("message")
                                    .or_else(|| v.get("error_description"))
                                    .and_then(Value::as_str)
                                    .map(str::to_string)
                            })
                            .unwrap_or_else(|| truncate(&text, 300));
                        return Err(RpError::Http {
                            endpoint,
                            status,
                            message,
                        });
                    }
                }
                Err(e) => (format!("{e}"), None),
            };
            if attempt > policy.max_retries {
                return Err(RpError::Transport {
                    endpoint,
                    message,
                    attempts: attempt,
                });
            }
            let wait = policy.delay(attempt, hint);
            tracing::warn!(%endpoint, attempt, error = %message, wait_ms = wait.as_millis() as u64, "ReportPortal call failed; retrying");
            tokio::select! {
                biased;
                _ = self.cancelled() => return Err(RpError::Cancelled { endpoint }),
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    pub(super) fn id_of(reply: &Value, endpoint: &str) -> Result<String, RpError> {
        match reply.get("id") {
            Some(Value::String(s)) => Ok(s.clone()),
            Some(Value::Number(n)) => Ok(n.to_string()),
            _ => Err(RpError::BadReply {
                endpoint: endpoint.to_string(),
                reason: format!("no 'id' in {}", truncate(&reply.to_string(), 200)),
            }),
        }
    }
}

/// A path segment, percent-encoded.
pub(super) fn seg(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_segments_are_percent_encoded() {
        assert_eq!(seg("a b/c"), "a%20b%2Fc");
        assert_eq!(seg("Az09-._~"), "Az09-._~");
    }

    #[test]
    fn config_is_checked_and_token_redacted() {
        let bad = |url: &str, project: &str, token: &str| {
            RpClient::new(RpConfig::new(url, project, token)).is_err()
        };
        assert!(bad("ftp://x", "p", "t"));
        assert!(bad("http://x", "", "t"));
        assert!(bad("http://x", "a/b", "t"));
        assert!(bad("http://x", "p", " "));
        assert!(!bad("http://x/", "p", "t"));
        let dbg = format!("{:?}", RpConfig::new("http://x", "p", "secret-token"));
        assert!(!dbg.contains("secret-token"));
    }
}
