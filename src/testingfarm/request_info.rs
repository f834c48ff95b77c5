//! What the API says about requests: their [`State`] machine, the outcome of a cancel, and
//! the JSON view of one request ([`RequestInfo`]).

use std::fmt;

use serde_json::Value;

use super::new_request::MARKER_VARIABLE;

/// The state of a Testing Farm request.
///
/// ```text
/// new ──> queued ──> running ──> complete | error
///  └────────┴──────────┴─(DELETE)─> cancel-requested ──> canceled
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum State {
    /// Accepted, not yet queued.
    New,
    /// Waiting for a worker.
    Queued,
    /// The pipeline runs (for a reservation: the machine is being set up or is held).
    Running,
    /// Finished normally.
    Complete,
    /// Failed (infrastructure, provisioning, pipeline timeout).
    Error,
    /// A cancel was requested.
    CancelRequested,
    /// Cancelled.
    Canceled,
    /// A state this client does not know (treated as not alive).
    Other(String),
}

impl State {
    /// The states in which a request holds (or waits for) resources.
    pub const ALIVE: [State; 3] = [State::New, State::Queued, State::Running];

    /// Every state the API documents, alive ones first.
    pub const ALL: [State; 7] = [
        State::New,
        State::Queued,
        State::Running,
        State::Complete,
        State::Error,
        State::CancelRequested,
        State::Canceled,
    ];

    /// The API's string for a state.
    pub fn as_str(&self) -> &str {
        match self {
            State::New => "new",
            State::Queued => "queued",
            State::Running => "running",
            State::Complete => "complete",
            State::Error => "error",
            State::CancelRequested => "cancel-requested",
            State::Canceled => "canceled",
            State::Other(s) => s,
        }
    }

    /// The state named `s` by the API.
    pub fn from_api(s: &str) -> Self {
        match s {
            "new" => State::New,
            "queued" => State::Queued,
            "running" => State::Running,
            "complete" => State::Complete,
            "error" => State::Error,
            "cancel-requested" => State::CancelRequested,
            "canceled" | "cancelled" => State::Canceled,
            other => State::Other(other.to_string()),
        }
    }

    /// `new`, `queued` or `running`. Anything else (unknown states too) means gone.
    pub fn is_alive(&self) -> bool {
        matches!(self, State::New | State::Queued | State::Running)
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Parses a state name; only documented names are accepted.
impl std::str::FromStr for State {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match State::from_api(s) {
            State::Other(_) => Err(format!(
                "unknown request state '{s}' (expected one of {})",
                State::ALL
                    .iter()
                    .map(State::as_str)
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
            known => Ok(known),
        }
    }
}

/// What a cancel achieved. Every outcome means the request no longer holds resources
/// (or soon will not).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CancelOutcome {
    /// HTTP 200: cancellation requested; the reply's state, if it had one.
    Requested {
        /// The state the reply showed (normally `cancel-requested`).
        state: Option<State>,
    },
    /// HTTP 204: it was already cancelled (or being cancelled).
    AlreadyCancelled,
    /// HTTP 409: it had already finished (`complete` or `error`).
    AlreadyFinished,
    /// HTTP 404: the server does not know it.
    NotFound,
}

impl fmt::Display for CancelOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CancelOutcome::Requested { .. } => "cancel requested",
            CancelOutcome::AlreadyCancelled => "already cancelled",
            CancelOutcome::AlreadyFinished => "already finished",
            CancelOutcome::NotFound => "not found",
        })
    }
}

/// A request as the API shows it (`GET /v0.1/requests/{id}`, search results, the create
/// reply). Accessors read the JSON leniently: absent or `null` fields give `None`.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestInfo {
    id: String,
    state: State,
    json: Value,
}

impl RequestInfo {
    /// Checks that `json` is an object with a string `id`; a missing `state` counts as
    /// `new` (older servers' create replies).
    pub fn from_json(json: Value) -> Result<Self, String> {
        let Some(obj) = json.as_object() else {
            return Err("a request must be a JSON object".into());
        };
        let id = match obj.get("id") {
            Some(Value::String(id)) if !id.is_empty() => id.clone(),
            _ => return Err("the request has no string 'id'".into()),
        };
        let state = match obj.get("state") {
            Some(Value::String(s)) => State::from_api(s),
            None | Some(Value::Null) => State::New,
            Some(_) => return Err(format!("request {id}: 'state' is not a string")),
        };
        Ok(Self { id, state, json })
    }

    /// The request id (a UUID).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Its state.
    pub fn state(&self) -> &State {
        &self.state
    }

    /// The raw JSON.
    pub fn json(&self) -> &Value {
        &self.json
    }

    fn str_at(&self, path: &[&str]) -> Option<&str> {
        let mut v = &self.json;
        for key in path {
            v = v.get(key)?;
        }
        v.as_str()
    }

    /// `created` (naive UTC ISO 8601).
    pub fn created(&self) -> Option<&str> {
        self.str_at(&["created"])
    }

    /// `updated` (naive UTC ISO 8601).
    pub fn updated(&self) -> Option<&str> {
        self.str_at(&["updated"])
    }

    /// `run.artifacts`: the artifacts directory URL (set once running).
    pub fn artifacts_url(&self) -> Option<&str> {
        self.str_at(&["run", "artifacts"])
    }

    /// `result.overall` (`passed`, `failed`, `skipped`, `unknown`, `error`).
    pub fn result_overall(&self) -> Option<&str> {
        self.str_at(&["result", "overall"])
    }

    /// `result.summary`.
    pub fn result_summary(&self) -> Option<&str> {
        self.str_at(&["result", "summary"])
    }

    /// The test's git URL (`test.fmf.url` or `test.tmt.url`).
    pub fn test_url(&self) -> Option<&str> {
        self.str_at(&["test", "fmf", "url"])
            .or_else(|| self.str_at(&["test", "tmt", "url"]))
    }

    /// `notes` as `(level, message)` pairs.
    pub fn notes(&self) -> Vec<(String, String)> {
        self.json
            .get("notes")
            .and_then(Value::as_array)
            .map(|notes| {
                notes
                    .iter()
                    .map(|n| {
                        let s =
                            |k: &str| n.get(k).and_then(Value::as_str).unwrap_or("").to_string();
                        (s("level"), s("message"))
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The first note of level `error`, else the first note.
    pub fn main_note(&self) -> Option<String> {
        let notes = self.notes();
        notes
            .iter()
            .find(|(level, _)| level == "error")
            .or_else(|| notes.first())
            .map(|(_, m)| m.clone())
            .filter(|m| !m.is_empty())
    }

    fn environments(&self) -> impl Iterator<Item = &Value> {
        ["environments_requested", "environments"]
            .iter()
            .find_map(|k| self.json.get(*k).and_then(Value::as_array))
            .into_iter()
            .flatten()
    }

    /// `compose@arch` of each requested environment (`container@arch` without a compose).
    pub fn platforms(&self) -> Vec<String> {
        self.environments()
            .map(|env| {
                let arch = env.get("arch").and_then(Value::as_str).unwrap_or("?");
                let compose = env
                    .get("os")
                    .and_then(|os| os.get("compose"))
                    .and_then(Value::as_str)
                    .unwrap_or("container");
                format!("{compose}@{arch}")
            })
            .collect()
    }

    /// Whether an environment carries the idempotency `marker` (see
    /// [`NewRequest::marker`](super::NewRequest::marker)).
    pub fn has_marker(&self, marker: &str) -> bool {
        self.environments().any(|env| {
            env.get("variables")
                .and_then(|v| v.get(MARKER_VARIABLE))
                .and_then(Value::as_str)
                == Some(marker)
        })
    }

    /// Records `state` (in the view and its JSON), e.g. after a cancel reply.
    pub(super) fn set_state(&mut self, state: State) {
        if let Some(obj) = self.json.as_object_mut() {
            obj.insert("state".into(), Value::String(state.as_str().to_string()));
        }
        self.state = state;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn states_round_trip_and_alive() {
        for s in State::ALL {
            assert_eq!(State::from_api(s.as_str()), s);
            assert_eq!(s.as_str().parse::<State>().unwrap(), s);
        }
        assert!(State::Running.is_alive());
        assert!(!State::CancelRequested.is_alive());
        assert!(!State::from_api("paused").is_alive());
        assert!(
            "paused"
                .parse::<State>()
                .unwrap_err()
                .contains("cancel-requested")
        );
    }

    #[test]
    fn info_reads_the_documented_fields() {
        let info = RequestInfo::from_json(json!({
            "id": "r1", "state": "running", "created": "2026-06-30T10:00:00.123456",
            "run": {"artifacts": "http://a/r1"},
            "test": {"tmt": {"url": "https://git/x"}},
            "notes": [{"level": "info", "message": "hi"}, {"level": "error", "message": "bad"}],
            "environments_requested": [
                {"arch": "x86_64", "os": {"compose": "Fedora-42"},
                 "variables": {"ATEX_REQUEST_KEY": "m1"}},
                {"arch": "s390x", "os": null}
            ]
        }))
        .unwrap();
        assert_eq!(info.state(), &State::Running);
        assert_eq!(info.artifacts_url(), Some("http://a/r1"));
        assert_eq!(info.test_url(), Some("https://git/x"));
        assert_eq!(info.main_note().as_deref(), Some("bad"));
        assert_eq!(info.platforms(), ["Fedora-42@x86_64", "container@s390x"]);
        assert!(info.has_marker("m1"));
        assert!(!info.has_marker("m2"));
        assert!(RequestInfo::from_json(json!({"state": "new"})).is_err());
        assert!(RequestInfo::from_json(json!([])).is_err());
        assert_eq!(
            RequestInfo::from_json(json!({"id": "x"})).unwrap().state(),
            &State::New
        );
    }
}
