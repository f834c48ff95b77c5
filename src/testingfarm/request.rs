//! The [`Request`] handle: a cached view of one request, refreshed at most every poll
//! interval, waits for states, cancel.

use std::time::Duration;

use tokio::time::Instant;

use super::client::Client;
use super::error::TfError;
use super::pipeline::PipelineLog;
use super::request_info::{CancelOutcome, RequestInfo, State};
use crate::scope::Scope;

/// A handle on one request with a cached view of it.
///
/// The view is refreshed at most every [`poll_interval`](Client::poll_interval) (30 s by
/// default, as upstream, to spare the service): [`refresh_if_stale`](Self::refresh_if_stale),
/// [`assert_alive`](Self::assert_alive) and [`wait_for_state`](Self::wait_for_state) reuse a
/// fresh enough view.
#[derive(Debug)]
pub struct Request {
    client: Client,
    id: String,
    info: Option<RequestInfo>,
    fetched: Option<Instant>,
    poll_interval: Duration,
}

impl Request {
    pub(crate) fn unfetched(client: Client, id: String) -> Self {
        let poll_interval = client.poll_interval();
        Self {
            client,
            id,
            info: None,
            fetched: None,
            poll_interval,
        }
    }

    pub(crate) fn with_info(client: Client, id: String, info: RequestInfo) -> Self {
        let mut r = Self::unfetched(client, id);
        r.info = Some(info);
        r.fetched = Some(Instant::now());
        r
    }

    /// The request id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The cached view (`None` before the first fetch of a handle made by
    /// [`Client::request`]).
    pub fn info(&self) -> Option<&RequestInfo> {
        self.info.as_ref()
    }

    /// The cached state (`None` before the first fetch).
    pub fn state(&self) -> Option<&State> {
        self.info.as_ref().map(RequestInfo::state)
    }

    /// Changes how often this handle asks the server.
    pub fn set_poll_interval(&mut self, interval: Duration) {
        self.poll_interval = interval;
    }

    /// Asks the server now.
    pub async fn refresh(&mut self) -> Result<&RequestInfo, TfError> {
        let info = self.client.get_info(&self.id).await?;
        self.fetched = Some(Instant::now());
        Ok(self.info.insert(info))
    }

    /// Asks the server if the cached view is older than the poll interval.
    pub async fn refresh_if_stale(&mut self) -> Result<&RequestInfo, TfError> {
        let fresh = self
            .fetched
            .is_some_and(|t| t.elapsed() < self.poll_interval);
        if !(fresh && self.info.is_some()) {
            self.refresh().await?;
        }
        self.info.as_ref().ok_or_else(|| TfError::BadReply {
            endpoint: format!("GET /v0.1/requests/{}", self.id),
            reason: "no view of the request".into(),
        })
    }

    /// [`TfError::Gone`] if the request is no longer alive (view refreshed if stale).
    pub async fn assert_alive(&mut self) -> Result<(), TfError> {
        let info = self.refresh_if_stale().await?;
        if info.state().is_alive() {
            Ok(())
        } else {
            Err(gone(info))
        }
    }

    /// Waits until the request reaches one of `states` and returns it.
    ///
    /// Ends with [`TfError::Gone`] if the request reaches a non-alive state that is not in
    /// `states` (e.g. `error` while waiting for `running`), and with
    /// [`TfError::Cancelled`] as soon as `scope` (or the client) is cancelled.
    pub async fn wait_for_state(
        &mut self,
        states: &[State],
        scope: &Scope,
    ) -> Result<State, TfError> {
        let client = self.client.with_scope(scope);
        let id = self.id.clone();
        let cancelled = || TfError::Cancelled {
            endpoint: format!("waiting for request {id}"),
        };
        loop {
            let refreshed = tokio::select! {
                biased;
                _ = client.stopped(false) => return Err(cancelled()),
                r = self.refresh_if_stale() => r,
            };
            let info = refreshed?;
            let state = info.state().clone();
            if states.contains(&state) {
                return Ok(state);
            }
            if !state.is_alive() {
                return Err(gone(info));
            }
            let next = self
                .fetched
                .map(|t| (t + self.poll_interval).saturating_duration_since(Instant::now()))
                .unwrap_or_default();
            tracing::trace!(request = %self.id, state = %state, "waiting for Testing Farm request");
            client
                .sleep(next, &format!("waiting for request {id}"), false)
                .await?;
        }
    }

    /// Cancels the request ([`Client::cancel`]); the cached state becomes the reply's.
    pub async fn cancel(&mut self) -> Result<CancelOutcome, TfError> {
        let outcome = self.client.cancel(&self.id).await?;
        let state = match &outcome {
            CancelOutcome::Requested { state } => {
                Some(state.clone().unwrap_or(State::CancelRequested))
            }
            CancelOutcome::AlreadyCancelled => Some(State::Canceled),
            _ => None,
        };
        if let (Some(state), Some(info)) = (state, self.info.as_mut()) {
            info.set_state(state);
        }
        Ok(outcome)
    }

    /// The `pipeline.log` of the request, once its artifacts URL is known.
    pub fn pipeline_log(&self) -> Option<PipelineLog> {
        let url = self.info.as_ref()?.artifacts_url()?;
        Some(PipelineLog::new(&self.client, url))
    }
}

fn gone(info: &RequestInfo) -> TfError {
    TfError::Gone {
        id: info.id().to_string(),
        state: info.state().clone(),
        note: info.main_note(),
    }
}
