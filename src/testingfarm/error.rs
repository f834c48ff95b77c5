//! Errors of the Testing Farm client. None of them ever contains the API token.

use std::path::PathBuf;

use super::request_info::State;

/// The most reply text an error keeps.
pub(crate) const BODY_LIMIT: usize = 1024;

/// A failed Testing Farm API call.
///
/// `endpoint` is the method and path (`POST /v0.1/requests`), never the host or a header.
/// Reply bodies are truncated to about 1 KiB and scrubbed of the token.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TfError {
    /// The call needs a token and none was configured.
    #[error(
        "{endpoint} needs a Testing Farm API token: set TESTING_FARM_API_TOKEN (or give one to the client builder)"
    )]
    NoToken {
        /// The call that needs it.
        endpoint: String,
    },
    /// The API URL cannot be used.
    #[error("invalid Testing Farm API URL '{url}': {reason}")]
    BadUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The HTTP client could not be built (TLS set-up).
    #[error("cannot set up the HTTP client: {0}")]
    Setup(#[source] reqwest::Error),
    /// The server refused the token (HTTP 401), e.g. `Token has expired`.
    #[error("{endpoint}: HTTP 401: the token was refused: {message}")]
    Unauthorized {
        /// The call.
        endpoint: String,
        /// The server's `message`.
        message: String,
    },
    /// The server answered with an error status.
    #[error("{endpoint}: HTTP {status}: {message}")]
    Api {
        /// The call.
        endpoint: String,
        /// The HTTP status.
        status: u16,
        /// The reply's `message` (or `detail`), else the (truncated) body.
        message: String,
        /// The reply body, truncated.
        body: String,
    },
    /// The reply was not JSON although JSON was expected.
    #[error(
        "{endpoint}: HTTP {status}: the reply is not JSON (Content-Type '{content_type}'): {body}"
    )]
    NotJson {
        /// The call.
        endpoint: String,
        /// The HTTP status.
        status: u16,
        /// The reply's content type.
        content_type: String,
        /// The reply body, truncated.
        body: String,
    },
    /// The reply was JSON but not of the documented shape.
    #[error("{endpoint}: unexpected reply: {reason}")]
    BadReply {
        /// The call.
        endpoint: String,
        /// What was wrong.
        reason: String,
    },
    /// The connection failed, timed out or was cut.
    #[error("{endpoint}: {source}")]
    Transport {
        /// The call.
        endpoint: String,
        /// The transport error (it names the URL, never a header).
        #[source]
        source: reqwest::Error,
    },
    /// The retry budget ran out.
    #[error("{endpoint}: gave up after {attempts} attempts: {last}")]
    RetriesExhausted {
        /// The call.
        endpoint: String,
        /// How many attempts were made.
        attempts: u32,
        /// The last attempt's error.
        #[source]
        last: Box<TfError>,
    },
    /// The caller's cancellation token fired.
    #[error("{endpoint}: cancelled")]
    Cancelled {
        /// What was interrupted.
        endpoint: String,
    },
    /// A request ended (or was cancelled) in a state the caller was not waiting for.
    #[error("request {id} ended with state '{state}'{}", note.as_deref().map(|n| format!(": {n}")).unwrap_or_default())]
    Gone {
        /// The request.
        id: String,
        /// Its state.
        state: State,
        /// The first error note of the request, if any.
        note: Option<String>,
    },
    /// The request journal could not be written or read.
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// A create whose outcome is unknown (the server may have committed it) could not be
    /// resolved: the search for our marker failed too. Cancel it later with
    /// [`Client::find_created`](super::Client::find_created) or `atex tf cancel --mine`.
    #[error(
        "POST /v0.1/requests: the request may have been created but could not be found (marker {marker}): {source}"
    )]
    CreateUnresolved {
        /// The idempotency marker carried by the request.
        marker: String,
        /// Why it could not be found.
        #[source]
        source: Box<TfError>,
    },
}

impl TfError {
    /// The HTTP status of the reply that caused this error, if there was one.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Unauthorized { .. } => Some(401),
            Self::Api { status, .. } | Self::NotJson { status, .. } => Some(*status),
            Self::RetriesExhausted { last, .. } => last.status(),
            _ => None,
        }
    }

    /// Whether the token fired.
    pub fn is_cancelled(&self) -> bool {
        matches!(self, Self::Cancelled { .. })
    }

    /// Whether the server answered 404.
    pub fn is_not_found(&self) -> bool {
        self.status() == Some(404)
    }
}

/// A journal file could not be used.
#[derive(Debug, thiserror::Error)]
#[error("request journal {path}: cannot {op}: {source}")]
pub struct JournalError {
    /// The journal file.
    pub path: PathBuf,
    /// What was being done.
    pub op: &'static str,
    /// The I/O error.
    #[source]
    pub source: std::io::Error,
}

/// `text` cut to [`BODY_LIMIT`] bytes on a character boundary, with a marker when cut.
pub(crate) fn truncate(text: &str) -> String {
    if text.len() <= BODY_LIMIT {
        return text.to_string();
    }
    let mut end = BODY_LIMIT;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes)", &text[..end], text.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncates_on_char_boundaries() {
        let long = "é".repeat(BODY_LIMIT);
        let t = truncate(&long);
        assert!(t.len() < long.len());
        assert!(t.ends_with(&format!("({} bytes)", long.len())));
        assert_eq!(truncate("short"), "short");
    }

    #[test]
    fn gone_names_the_state_and_note() {
        let e = TfError::Gone {
            id: "abc".into(),
            state: State::Error,
            note: Some("Pipeline timeout".into()),
        };
        assert_eq!(
            e.to_string(),
            "request abc ended with state 'error': Pipeline timeout"
        );
    }
}
