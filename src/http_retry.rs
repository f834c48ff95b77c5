//! The retry policy of atex's HTTP clients (Testing Farm, ReportPortal): exponential
//! back-off on 408/429/5xx and connection errors, honouring `Retry-After`.

use std::time::Duration;

use reqwest::header::{HeaderMap, RETRY_AFTER};

use crate::timestamp::Timestamp;

/// How transient failures are retried.
///
/// The defaults are upstream's (`130` retries, back-off factor 2 s doubling up to 120 s:
/// about four hours of outage survived). Every wait is raced against the client's
/// cancellation token, so a long budget never delays Ctrl-C.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt (0 = never retry).
    pub max_retries: u32,
    /// Wait before the first retry; doubled for each further one.
    pub backoff_factor: Duration,
    /// Longest back-off wait.
    pub backoff_max: Duration,
    /// Longest wait honoured from a `Retry-After` header (longer requests are cut to this).
    pub retry_after_max: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: 130,
            backoff_factor: Duration::from_secs(2),
            backoff_max: Duration::from_secs(120),
            retry_after_max: Duration::from_secs(600),
        }
    }
}

impl RetryPolicy {
    /// No retries at all.
    pub fn never() -> Self {
        Self {
            max_retries: 0,
            ..Self::default()
        }
    }

    /// The back-off before retry number `retry` (1-based): `factor * 2^(retry-1)`, capped.
    pub fn backoff(&self, retry: u32) -> Duration {
        if self.backoff_factor.is_zero() {
            return Duration::ZERO;
        }
        let exp = retry.saturating_sub(1);
        if exp >= 32 {
            return self.backoff_max;
        }
        self.backoff_factor
            .checked_mul(1u32 << exp)
            .map_or(self.backoff_max, |w| w.min(self.backoff_max))
    }

    /// The wait before retry number `retry`, honouring a `Retry-After` header if the reply
    /// had one (capped at [`retry_after_max`](Self::retry_after_max)).
    pub(crate) fn delay(&self, retry: u32, retry_after: Option<Duration>) -> Duration {
        match retry_after {
            Some(d) => d.min(self.retry_after_max),
            None => self.backoff(retry),
        }
    }
}

/// Whether an HTTP status is transient (the call may succeed when repeated).
pub(crate) fn retryable_status(status: u16) -> bool {
    matches!(status, 408 | 429 | 500 | 502 | 503 | 504)
}

/// The `Retry-After` header as a wait: delta-seconds or an HTTP date.
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    if let Ok(secs) = value.parse::<f64>()
        && secs.is_finite()
        && secs >= 0.0
    {
        return Some(Duration::from_secs_f64(secs.min(1e9)));
    }
    let at = Timestamp::parse_http_date(value)?;
    let now = Timestamp::now();
    let micros = at.as_micros().saturating_sub(now.as_micros()).max(0);
    Some(Duration::from_micros(u64::try_from(micros).unwrap_or(0)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn backoff_doubles_and_caps() {
        let p = RetryPolicy::default();
        let waits: Vec<u64> = (1..=8).map(|n| p.backoff(n).as_secs()).collect();
        assert_eq!(waits, [2, 4, 8, 16, 32, 64, 120, 120]);
        assert_eq!(p.backoff(1000), Duration::from_secs(120));
    }

    #[test]
    fn retry_after_forms() {
        let mut h = HeaderMap::new();
        assert_eq!(retry_after(&h), None);
        h.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
        h.insert(
            RETRY_AFTER,
            HeaderValue::from_static("Sun, 06 Nov 1994 08:49:37 GMT"),
        );
        assert_eq!(retry_after(&h), Some(Duration::ZERO));
        h.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&h), None);
        let p = RetryPolicy::default();
        assert_eq!(
            p.delay(1, Some(Duration::from_secs(10_000))),
            p.retry_after_max
        );
        assert_eq!(p.delay(3, None), Duration::from_secs(8));
    }

    #[test]
    fn transient_statuses() {
        for s in [408, 429, 500, 502, 503, 504] {
            assert!(retryable_status(s));
        }
        for s in [200, 204, 400, 401, 403, 404, 409, 416, 422, 501] {
            assert!(!retryable_status(s));
        }
    }
}
