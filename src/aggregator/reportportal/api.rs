//! The ReportPortal HTTP API as atex uses it: launches, items, logs (v2) and reads (v1).

use std::sync::Arc;
use std::time::Duration;

use reqwest::Method;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use serde_json::{Value, json};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::http_retry::{RetryPolicy, retry_after, retryable_status};
use crate::timestamp::Timestamp;

/// Environment variable with the server URL (tmt's `TMT_PLUGIN_REPORT_REPORTPORTAL_URL` is
/// the fallback).
pub const ENV_URL: &str = "ATEX_REPORTPORTAL_URL";
/// Environment variable with the project (fallback `TMT_PLUGIN_REPORT_REPORTPORTAL_PROJECT`).
pub const ENV_PROJECT: &str = "ATEX_REPORTPORTAL_PROJECT";
/// Environment variable with the API token (fallback `TMT_PLUGIN_REPORT_REPORTPORTAL_TOKEN`).
pub const ENV_TOKEN: &str = "ATEX_REPORTPORTAL_TOKEN";

/// `ATEX_REPORTPORTAL_<what>`, else `TMT_PLUGIN_REPORT_REPORTPORTAL_<what>` (empty values
/// count as unset).
pub fn env_setting(what: &str) -> Option<String> {
    [
        format!("ATEX_REPORTPORTAL_{what}"),
        format!("TMT_PLUGIN_REPORT_REPORTPORTAL_{what}"),
    ]
    .iter()
    .find_map(|k| std::env::var(k).ok().filter(|v| !v.trim().is_empty()))
}

/// Errors of the ReportPortal client.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RpError {
    /// The HTTP client could not be built.
    #[error("cannot set up the ReportPortal client")]
    Setup(#[source] reqwest::Error),
    /// A configuration value is not usable.
    #[error("ReportPortal: {0}")]
    Config(String),
    /// The server answered with a status other than 200/201.
    #[error("{endpoint}: HTTP {status}: {message}")]
    Http {
        /// `METHOD /path`.
        endpoint: String,
        /// The HTTP status.
        status: u16,
        /// The server's message (truncated).
        message: String,
    },
    /// No usable reply after every retry.
    #[error("{endpoint}: {message} (after {attempts} attempt(s))")]
    Transport {
        /// `METHOD /path`.
        endpoint: String,
        /// The last failure.
        message: String,
        /// Attempts made.
        attempts: u32,
    },
    /// A reply without the JSON the call needs.
    #[error("{endpoint}: unexpected reply: {reason}")]
    BadReply {
        /// `METHOD /path`.
        endpoint: String,
        /// What is wrong.
        reason: String,
    },
    /// Cancelled.
    #[error("{endpoint}: cancelled")]
    Cancelled {
        /// `METHOD /path`.
        endpoint: String,
    },
}

/// Connection settings of [`RpClient`].
#[derive(Clone)]
pub struct RpConfig {
    /// Server root, e.g. `https://reportportal.example.com` (a trailing `/` is dropped).
    pub url: String,
    /// Project name.
    pub project: String,
    /// API token (sent as `Authorization: Bearer …`, never logged).
    pub token: String,
    /// Verify TLS certificates (default true).
    pub ssl_verify: bool,
    /// Retries of transient failures (default: upstream's 130, 2 s doubling to 120 s).
    pub retry: RetryPolicy,
    /// Limit of one HTTP exchange (default 60 s).
    pub request_timeout: Duration,
    /// At most this many calls at once (default 10).
    pub max_concurrent: usize,
}

impl std::fmt::Debug for RpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RpConfig")
            .field("url", &self.url)
            .field("project", &self.project)
            .field("token", &"<redacted>")
            .field("ssl_verify", &self.ssl_verify)
            .field("retry", &self.retry)
            .finish()
    }
}

impl RpConfig {
    /// Settings with the defaults listed on the fields.
    pub fn new(
        url: impl Into<String>,
        project: impl Into<String>,
        token: impl Into<String>,
    ) -> Self {
        Self {
            url: url.into(),
            project: project.into(),
            token: token.into(),
            ssl_verify: true,
            retry: RetryPolicy::default(),
            request_timeout: Duration::from_secs(60),
            max_concurrent: 10,
        }
    }
}

/// A request body.
enum Body<'a> {
    None,
    Json(&'a Value),
    Multipart { boundary: &'a str, bytes: &'a [u8] },
}

/// One attachment of a log entry.
#[derive(Debug, Clone)]
pub struct Attachment {
    /// File name (the part's `filename`, matched against the entry's `file.name`).
    pub name: String,
    /// MIME type.
    pub mime: String,
    /// Content.
    pub data: Vec<u8>,
}

/// One log entry.
#[derive(Debug, Clone)]
pub struct LogEntry {
    /// The item it belongs to.
    pub item: String,
    /// `TRACE`, `DEBUG`, `INFO`, `WARN`, `ERROR`, `FATAL` or `UNKNOWN`.
    pub level: String,
    /// The message (the whole text of an inline log).
    pub message: String,
    /// A file attached to it.
    pub attachment: Option<Attachment>,
}

struct Inner {
    http: reqwest::Client,
    v1: String,
    v2: String,
    token: HeaderValue,
    retry: RetryPolicy,
    limit: Semaphore,
    url: String,
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
    inner: Arc<Inner>,
    cancel: Option<CancellationToken>,
}

impl std::fmt::Debug for RpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RpClient")
            .field("v2", &self.inner.v2)
            .finish()
    }
}

fn truncate(s: &str, n: usize) -> String {
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
    async fn call(
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

    fn id_of(reply: &Value, endpoint: &str) -> Result<String, RpError> {
        match reply.get("id") {
            Some(Value::String(s)) => Ok(s.clone()),
            Some(Value::Number(n)) => Ok(n.to_string()),
            _ => Err(RpError::BadReply {
                endpoint: endpoint.to_string(),
                reason: format!("no 'id' in {}", truncate(&reply.to_string(), 200)),
            }),
        }
    }

    /// Starts a launch (`POST /launch`); `extra` keys (e.g. `description`, `attributes`,
    /// `mode`) are added to the request. Returns its UUID.
    pub async fn start_launch(&self, name: &str, extra: Option<&Value>) -> Result<String, RpError> {
        let mut body = json!({"name": name, "startTime": Timestamp::now().to_rfc3339()});
        if let (Some(Value::Object(extra)), Value::Object(b)) = (extra, &mut body) {
            for (k, v) in extra {
                b.insert(k.clone(), v.clone());
            }
        }
        let r = self
            .call(
                Method::POST,
                format!("{}/launch", self.inner.v2),
                &[],
                Body::Json(&body),
                false,
            )
            .await?;
        Self::id_of(&r, "POST /launch")
    }

    /// Reopens launch `uuid` for a rerun (`rerun: true`, `rerunOf: uuid`); RP returns the
    /// same UUID.
    pub async fn rerun_launch(&self, uuid: &str) -> Result<String, RpError> {
        let body = json!({"name": uuid, "rerun": true, "rerunOf": uuid,
                          "startTime": Timestamp::now().to_rfc3339()});
        let r = self
            .call(
                Method::POST,
                format!("{}/launch", self.inner.v2),
                &[],
                Body::Json(&body),
                false,
            )
            .await?;
        Self::id_of(&r, "POST /launch")
    }

    /// Finishes launch `uuid` (RP finishes whatever is still open in it). Returns the reply
    /// (`id`, `number`, `link`).
    pub async fn finish_launch(&self, uuid: &str) -> Result<Value, RpError> {
        let body = json!({"endTime": Timestamp::now().to_rfc3339()});
        self.call(
            Method::PUT,
            format!("{}/launch/{}/finish", self.inner.v2, seg(uuid)),
            &[],
            Body::Json(&body),
            true,
        )
        .await
    }

    /// Starts an item (under `parent`, or at the root). `body` holds `type`, `name` and any
    /// other keys; `launchUuid` and `startTime` are added. Returns its UUID.
    pub async fn start_item(
        &self,
        launch: &str,
        parent: Option<&str>,
        mut body: Value,
    ) -> Result<String, RpError> {
        if let Value::Object(b) = &mut body {
            b.insert("launchUuid".into(), launch.into());
            b.insert("startTime".into(), Timestamp::now().to_rfc3339().into());
        }
        let url = match parent {
            Some(p) => format!("{}/item/{}", self.inner.v2, seg(p)),
            None => format!("{}/item", self.inner.v2),
        };
        let r = self
            .call(Method::POST, url, &[], Body::Json(&body), false)
            .await?;
        Self::id_of(&r, "POST /item")
    }

    /// Finishes an item with an RP status and a description.
    pub async fn finish_item(
        &self,
        launch: &str,
        item: &str,
        status: &str,
        description: Option<&str>,
    ) -> Result<(), RpError> {
        let body = json!({"launchUuid": launch, "status": status, "description": description,
                          "endTime": Timestamp::now().to_rfc3339()});
        self.call(
            Method::PUT,
            format!("{}/item/{}", self.inner.v2, seg(item)),
            &[],
            Body::Json(&body),
            true,
        )
        .await
        .map(drop)
    }

    /// Uploads one log entry (`POST /log`, multipart: the attachment part, then
    /// `json_request_part`).
    pub async fn log(&self, launch: &str, entry: &LogEntry) -> Result<(), RpError> {
        let mut e = json!({"launchUuid": launch, "itemUuid": entry.item,
                           "time": Timestamp::now().to_rfc3339(), "level": entry.level,
                           "message": entry.message});
        if let (Some(a), Value::Object(m)) = (&entry.attachment, &mut e) {
            m.insert("file".into(), json!({"name": a.name}));
        }
        let boundary = format!("atex-{:016x}{:016x}", rand_u64(), rand_u64());
        let bytes = multipart(&boundary, &Value::Array(vec![e]), entry.attachment.as_ref());
        self.call(
            Method::POST,
            format!("{}/log", self.inner.v2),
            &[],
            Body::Multipart {
                boundary: &boundary,
                bytes: &bytes,
            },
            false,
        )
        .await
        .map(drop)
    }

    /// `GET /api/v1/<project>/launch/uuid/<uuid>`.
    pub async fn get_launch(&self, uuid: &str) -> Result<Value, RpError> {
        self.call(
            Method::GET,
            format!("{}/launch/uuid/{}", self.inner.v1, seg(uuid)),
            &[],
            Body::None,
            false,
        )
        .await
    }

    /// One page (1-based) of launches, newest first.
    pub async fn list_launches(&self, page: u32, size: u32) -> Result<Value, RpError> {
        self.call(
            Method::GET,
            format!("{}/launch", self.inner.v1),
            &[
                ("page.page", page.to_string()),
                ("page.size", size.to_string()),
                ("page.sort", "startTime,desc".into()),
            ],
            Body::None,
            false,
        )
        .await
    }

    /// `GET /api/v1/<project>/item/uuid/<uuid>`.
    pub async fn get_item(&self, uuid: &str) -> Result<Value, RpError> {
        self.call(
            Method::GET,
            format!("{}/item/uuid/{}", self.inner.v1, seg(uuid)),
            &[],
            Body::None,
            false,
        )
        .await
    }

    /// One page of items matching `filters` (`("filter.eq.launchId", "12")`, …).
    pub async fn search_items(
        &self,
        filters: &[(&str, String)],
        page: u32,
        size: u32,
    ) -> Result<Value, RpError> {
        let mut q: Vec<(&str, String)> = filters.to_vec();
        q.push(("page.page", page.to_string()));
        q.push(("page.size", size.to_string()));
        self.call(
            Method::GET,
            format!("{}/item", self.inner.v1),
            &q,
            Body::None,
            false,
        )
        .await
    }

    /// Every page of an item search.
    async fn all_items(&self, filters: &[(&str, String)]) -> Result<Vec<Value>, RpError> {
        let mut out = Vec::new();
        let mut page = 1;
        loop {
            let r = self.search_items(filters, page, 100).await?;
            if let Some(c) = r.get("content").and_then(Value::as_array) {
                out.extend(c.iter().cloned());
            }
            let pages = r
                .pointer("/page/totalPages")
                .and_then(Value::as_u64)
                .unwrap_or(1);
            if u64::from(page) >= pages {
                return Ok(out);
            }
            page += 1;
        }
    }

    /// Names of the tests (step items under the platform's `test` item) of launch `uuid` on
    /// `platform`, optionally only those with one of `statuses` (RP statuses, e.g.
    /// `passed`). Empty when the platform has no item.
    pub async fn existing_tests(
        &self,
        launch_uuid: &str,
        platform: &str,
        statuses: &[&str],
    ) -> Result<Vec<String>, RpError> {
        let launch = self.get_launch(launch_uuid).await?;
        let id = match launch.get("id") {
            Some(Value::Number(n)) => n.to_string(),
            Some(Value::String(s)) => s.clone(),
            _ => {
                return Err(RpError::BadReply {
                    endpoint: "GET /launch/uuid".into(),
                    reason: "no numeric 'id'".into(),
                });
            }
        };
        let platforms = self
            .all_items(&[
                ("filter.eq.launchId", id.clone()),
                ("filter.eq.type", "test".into()),
                ("filter.eq.name", platform.into()),
            ])
            .await?;
        let Some(pid) = platforms
            .first()
            .and_then(|p| p.get("id"))
            .map(|v| match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
        else {
            return Ok(Vec::new());
        };
        let mut filters = vec![
            ("filter.eq.launchId", id),
            ("filter.eq.parentId", pid),
            ("filter.eq.type", "step".to_string()),
        ];
        if !statuses.is_empty() {
            filters.push(("filter.in.status", statuses.join(",")));
        }
        Ok(self
            .all_items(&filters)
            .await?
            .iter()
            .filter_map(|i| i.get("name").and_then(Value::as_str).map(str::to_string))
            .collect())
    }
}

/// A path segment, percent-encoded.
fn seg(s: &str) -> String {
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

/// A random 64-bit number (boundaries only; not for secrets).
fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish()
}

/// Quotes a multipart header parameter value.
fn quoted(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("%22"),
            '\r' => out.push_str("%0D"),
            '\n' => out.push_str("%0A"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The multipart body: the attachment part (field name = file name = attachment name),
/// then `json_request_part`.
pub(crate) fn multipart(
    boundary: &str,
    entries: &Value,
    attachment: Option<&Attachment>,
) -> Vec<u8> {
    let mut out = Vec::new();
    if let Some(a) = attachment {
        out.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        out.extend_from_slice(
            format!(
                "Content-Disposition: form-data; name={}; filename={}\r\nContent-Type: {}\r\n\r\n",
                quoted(&a.name),
                quoted(&a.name),
                a.mime
            )
            .as_bytes(),
        );
        out.extend_from_slice(&a.data);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
    out.extend_from_slice(
        b"Content-Disposition: form-data; name=\"json_request_part\"\r\nContent-Type: application/json\r\n\r\n",
    );
    out.extend_from_slice(entries.to_string().as_bytes());
    out.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    out
}

/// A MIME type guessed from a file name (`text/plain` when unknown).
pub fn guess_mime(name: &str) -> &'static str {
    let ext = name
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "html" | "htm" => "text/html",
        "css" => "text/css",
        "csv" => "text/csv",
        "xml" => "application/xml",
        "json" => "application/json",
        "yaml" | "yml" => "application/yaml",
        "js" => "text/javascript",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "svg" => "image/svg+xml",
        "pdf" => "application/pdf",
        "gz" => "application/gzip",
        "xz" => "application/x-xz",
        "tar" => "application/x-tar",
        "zip" => "application/zip",
        "bin" | "dat" | "rpm" | "iso" | "qcow2" => "application/octet-stream",
        _ => "text/plain",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multipart_layout() {
        let a = Attachment {
            name: "j\"x.log".into(),
            mime: "text/plain".into(),
            data: b"abc".to_vec(),
        };
        let body = multipart("B", &json!([{"m": 1}]), Some(&a));
        let text = String::from_utf8(body).expect("utf8");
        assert_eq!(
            text,
            "--B\r\nContent-Disposition: form-data; name=\"j%22x.log\"; filename=\"j%22x.log\"\r\nContent-Type: text/plain\r\n\r\nabc\r\n\
             --B\r\nContent-Disposition: form-data; name=\"json_request_part\"\r\nContent-Type: application/json\r\n\r\n[{\"m\":1}]\r\n--B--\r\n"
        );
        assert_eq!(guess_mime("a.PNG"), "image/png");
        assert_eq!(guess_mime("journal"), "text/plain");
        assert_eq!(seg("a b/c"), "a%20b%2Fc");
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
