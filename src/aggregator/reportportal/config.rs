//! [`RpConfig`]: where the server is, which project, the token, and the environment
//! variables they come from.

use std::time::Duration;

use crate::http_retry::RetryPolicy;

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

/// Connection settings of [`RpClient`](super::RpClient).
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
