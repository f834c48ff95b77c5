//! Testing Farm: an HTTP client for its API, and a journal of the requests a run holds
//! (feature `testingfarm`).
//!
//! Testing Farm lends Fedora, CentOS and RHEL machines: a *request* runs a test on a
//! machine it provisions, and upstream's "reserve" test keeps that machine for SSH logins.
//! A leaked request costs real money and quota, so this module is built around never
//! losing one.
//!
//! # Configuration
//!
//! As Testing Farm's own tools: the token from `TESTING_FARM_API_TOKEN`, the API root from
//! `TESTING_FARM_API_URL` (default `https://api.testing-farm.io`; a trailing `/v0.1` is
//! accepted), or both from [`ClientBuilder`] methods, which win over the environment.
//!
//! # The client
//!
//! [`Client`] covers `whoami` (cached), `about`, composes (the token's ranch by default),
//! creating, getting, searching (one call per state and per time window) and cancelling
//! requests, and reading `pipeline.log` incrementally ([`PipelineLog`]). A [`Request`]
//! handle caches the request's JSON and asks the server at most every
//! [`poll_interval`](ClientBuilder::poll_interval) (30 s by default);
//! [`Request::wait_for_state`] races the given scope's cancellation and turns a request
//! that ended in a state nobody waited for into [`TfError::Gone`].
//!
//! Robustness:
//!
//! * **Retries**: 408, 429, 5xx and connection errors are retried with exponential back-off
//!   honouring `Retry-After` ([`RetryPolicy`]; defaults as upstream: 130 retries, 2 s
//!   doubling to 120 s). Every wait races the client's cancellation tokens
//!   ([`ClientBuilder::cancel_token`], [`Client::with_cancel`]); each HTTP exchange has a
//!   time limit ([`ClientBuilder::request_timeout`]).
//! * **No duplicate reservations**: every [`NewRequest`] carries a random idempotency
//!   marker in its environment variables ([`MARKER_VARIABLE`]; variables, unlike secrets,
//!   are returned by the API). When a POST's outcome is unknown — the connection broke
//!   after sending, a gateway 5xx, a timeout, an unreadable 200 — the client searches the
//!   token's live requests for the marker and adopts the request instead of posting again.
//! * **No leaked token**: [`Token`] has a redacting `Debug` and no `Display`, travels only
//!   in a sensitive `Authorization` header, and is scrubbed from reply text kept in errors.
//! * **Typed errors** ([`TfError`]) name the endpoint (`POST /v0.1/requests`) and the
//!   HTTP status, and keep the reply's message (truncated).
//!
//! # The journal (no orphans after a crash)
//!
//! A process killed by SIGKILL (or a power loss) runs no cleanup, so every request a run
//! may hold is first written to a [`Journal`] file (`.atex-tf-journal` in the working
//! directory for the `atex` program; `--journal FILE` to change it):
//!
//! 1. before the POST, a `pending` entry with the request's marker — the request may exist
//!    from that moment on;
//! 2. after the POST, a `created` entry with the id (this supersedes the `pending` one);
//! 3. after a confirmed cancel (any [`CancelOutcome`]: cancelled, already cancelled,
//!    already finished, unknown to the server), a `released` entry; when nothing is
//!    outstanding any more the file is truncated to zero length.
//!
//! [`Journal::create`] and [`Journal::cancel`] do the bookkeeping around
//! [`Client::create`] and [`Client::cancel`]. After a crash, [`cleanup`] (the
//! `atex tf cleanup [JOURNAL]` command) cancels every outstanding id and, for every
//! outstanding marker, every live request of the token that carries it; what it cannot
//! cancel stays in the journal. The provisioner holds all of its requests through the
//! journal, so after `kill -9` and `atex tf cleanup` nothing is left alive. See
//! [`journal`] for the file format and locking.
//!
//! # Example
//!
//! Submit a reservation, wait until it runs, cancel it (see `examples/testingfarm_api.rs`
//! for a complete program):
//!
//! ```no_run
//! use atex::scope::Scope;
//! use atex::testingfarm::{Client, NewRequest, State};
//!
//! # async fn f(scope: &Scope) -> Result<(), atex::testingfarm::TfError> {
//! let client = Client::builder().cancel_token(scope.token().clone()).build()?;
//! let mut request = client.create(&NewRequest::reserve("Fedora-42", "x86_64")).await?;
//! let result = request.wait_for_state(&[State::Running], scope).await;
//! request.cancel().await?;
//! result?;
//! # Ok(()) }
//! ```

// The client: its configuration, its shared state, one HTTP call, the endpoints.
mod builder;
mod client;
mod http;
mod request_calls;
mod service;
// What the API sends and takes: requests to submit, their states and JSON, searches.
mod new_request;
mod request_info;
mod search;
mod types;
// Handles on one request and its log.
mod pipeline;
mod request;
// Errors, the token, the crash-safe journal.
mod error;
pub mod journal;
mod token;

pub use crate::http_retry::RetryPolicy;
pub use crate::timestamp::{Timestamp, TimestampError};
pub use builder::{ClientBuilder, DEFAULT_URL, ENV_TOKEN, ENV_URL, ENV_WATCH_TICK};
pub use client::Client;
pub use error::{JournalError, TfError};
pub use journal::{CleanupReport, DEFAULT_JOURNAL, Journal, Outstanding, PendingCreate, cleanup};
pub use new_request::{
    Environment, MARKER_VARIABLE, NewRequest, RESERVE_TEST_NAME, RESERVE_TEST_REF,
    RESERVE_TEST_URL, new_marker,
};
pub use pipeline::{LineBuffer, LogChunk, PipelineLog};
pub use request::Request;
pub use request_info::{CancelOutcome, RequestInfo, State};
pub use search::{DEFAULT_PAGE, SearchQuery};
pub use token::Token;
pub use types::{Compose, Whoami};
