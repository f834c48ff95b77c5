//! What [`Client::search`](super::Client::search) looks for.

use std::time::Duration;

use super::request_info::State;
use crate::timestamp::Timestamp;

/// Default width of one search window: 12 hours (upstream's `page`).
pub const DEFAULT_PAGE: Duration = Duration::from_secs(43_200);

/// A search over requests: states (one API call each), a creation time range split into
/// windows of [`page`](Self::page), and owner filters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchQuery {
    states: Vec<State>,
    created_after: Option<Timestamp>,
    created_before: Option<Timestamp>,
    mine: bool,
    ranch: Option<String>,
    token_id: Option<String>,
    user_id: Option<String>,
    page: Duration,
}

impl Default for SearchQuery {
    /// Live requests (`new`, `queued`, `running`) of anyone, no time range.
    fn default() -> Self {
        Self {
            states: State::ALIVE.to_vec(),
            created_after: None,
            created_before: None,
            mine: false,
            ranch: None,
            token_id: None,
            user_id: None,
            page: DEFAULT_PAGE,
        }
    }
}

impl SearchQuery {
    /// Live requests of anyone.
    pub fn new() -> Self {
        Self::default()
    }

    /// Live requests of this client's token (token and user ids from `whoami`).
    pub fn mine() -> Self {
        Self {
            mine: true,
            ..Self::default()
        }
    }

    /// Only the token's own requests (or anyone's).
    pub fn only_mine(mut self, mine: bool) -> Self {
        self.mine = mine;
        self
    }

    /// These states (empty means the live ones).
    pub fn states(mut self, states: impl IntoIterator<Item = State>) -> Self {
        self.states = states.into_iter().collect();
        if self.states.is_empty() {
            self.states = State::ALIVE.to_vec();
        }
        self
    }

    /// Created at or after `t`.
    pub fn created_after(mut self, t: Timestamp) -> Self {
        self.created_after = Some(t);
        self
    }

    /// Created before `t`.
    pub fn created_before(mut self, t: Timestamp) -> Self {
        self.created_before = Some(t);
        self
    }

    /// Only requests of `ranch`.
    pub fn ranch(mut self, ranch: impl Into<String>) -> Self {
        self.ranch = Some(ranch.into());
        self
    }

    /// Only requests of this token id (ignored with [`mine`](Self::mine)).
    pub fn token_id(mut self, id: impl Into<String>) -> Self {
        self.token_id = Some(id.into());
        self
    }

    /// Only requests of this user id (ignored with [`mine`](Self::mine)).
    pub fn user_id(mut self, id: impl Into<String>) -> Self {
        self.user_id = Some(id.into());
        self
    }

    /// Width of one time window (at least one second).
    pub fn page(mut self, page: Duration) -> Self {
        self.page = page.max(Duration::from_secs(1));
        self
    }

    pub(crate) fn is_mine(&self) -> bool {
        self.mine
    }

    pub(crate) fn state_list(&self) -> &[State] {
        &self.states
    }

    pub(crate) fn ranch_filter(&self) -> Option<&str> {
        self.ranch.as_deref()
    }

    pub(crate) fn token_id_filter(&self) -> Option<&str> {
        if self.mine {
            None
        } else {
            self.token_id.as_deref()
        }
    }

    pub(crate) fn user_id_filter(&self) -> Option<&str> {
        if self.mine {
            None
        } else {
            self.user_id.as_deref()
        }
    }

    /// The `(created_after, created_before)` pairs to ask for. Without a start there is one
    /// unbounded call; otherwise `[after, before or now)` is cut into `page`-wide windows.
    pub fn windows(&self, now: Timestamp) -> Vec<(Option<Timestamp>, Option<Timestamp>)> {
        let Some(start) = self.created_after else {
            return vec![(None, self.created_before)];
        };
        let end = self.created_before.unwrap_or(now);
        if end <= start {
            return vec![(Some(start), Some(end))];
        }
        let mut out = Vec::new();
        let mut from = start;
        while from < end {
            let to = from.plus(self.page).min(end);
            out.push((Some(from), Some(to)));
            from = to;
        }
        // The last window stays open-ended when no end was given, so that requests created
        // while we search are not missed.
        if self.created_before.is_none()
            && let Some(last) = out.last_mut()
        {
            last.1 = None;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Timestamp {
        Timestamp::parse(s).unwrap()
    }

    #[test]
    fn windows_cover_the_range_exactly() {
        let q = SearchQuery::new()
            .created_after(t("2026-01-01T00:00:00"))
            .created_before(t("2026-01-02T06:00:00"));
        let w = q.windows(t("2030-01-01"));
        assert_eq!(
            w,
            vec![
                (
                    Some(t("2026-01-01T00:00:00")),
                    Some(t("2026-01-01T12:00:00"))
                ),
                (
                    Some(t("2026-01-01T12:00:00")),
                    Some(t("2026-01-02T00:00:00"))
                ),
                (
                    Some(t("2026-01-02T00:00:00")),
                    Some(t("2026-01-02T06:00:00"))
                ),
            ]
        );
        let open = SearchQuery::new()
            .created_after(t("2026-01-01T00:00:00"))
            .page(Duration::from_secs(3600));
        let w = open.windows(t("2026-01-01T02:30:00"));
        assert_eq!(w.len(), 3);
        assert_eq!(w[2], (Some(t("2026-01-01T02:00:00")), None));
        assert_eq!(
            SearchQuery::new().windows(t("2026-01-01")),
            vec![(None, None)]
        );
    }

    #[test]
    fn empty_states_mean_alive() {
        let q = SearchQuery::new().states([]);
        assert_eq!(q.state_list(), State::ALIVE);
    }
}
