//! The request endpoints of [`Client`]: create (with adoption of a request a failed POST
//! created), get, cancel, search. They hand out [`Request`] handles.

use std::time::Duration;

use reqwest::Method;
use serde_json::Value;

use super::client::Client;
use super::error::TfError;
use super::http::{Attempt, Auth, exhausted};
use super::new_request::NewRequest;
use super::request::Request;
use super::request_info::{CancelOutcome, RequestInfo, State};
use super::search::SearchQuery;
use crate::http_retry::{retry_after, retryable_status};
use crate::timestamp::Timestamp;

/// How far back (before our first POST) a search for our own request looks, to allow for
/// a difference between our clock and the server's.
const CLOCK_SLACK: Duration = Duration::from_secs(3600);

impl Client {
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
