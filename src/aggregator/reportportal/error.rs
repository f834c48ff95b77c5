//! [`RpError`]: what a ReportPortal call can fail with.

/// Errors of the ReportPortal client.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RpError {
    /// The HTTP client could not be built.
    #[error("ReportPortal client setup: {0}")]
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
