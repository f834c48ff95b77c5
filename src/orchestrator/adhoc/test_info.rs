//! [`TestInfo`]: a test as the scheduler, its queue and its policies see it.

use std::time::Duration;

/// A test as the scheduler sees it: a name plus the metadata policies use.
///
/// FMF tests supply `tag`, `extra-priority` and `duration`; a plain name converts with
/// `From<&str>` / `From<String>`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TestInfo {
    /// The test's name, unique within a run.
    pub name: String,
    /// Tags (FMF `tag`).
    pub tags: Vec<String>,
    /// Priority (FMF `extra-priority`); higher runs earlier, 0 is neutral.
    pub priority: i64,
    /// Expected duration (FMF `duration`), if known.
    pub duration: Option<Duration>,
}

impl TestInfo {
    /// A test with a name and no metadata.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            ..Self::default()
        }
    }

    /// Adds tags.
    pub fn with_tags<I, S>(mut self, tags: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.tags.extend(tags.into_iter().map(Into::into));
        self
    }

    /// Sets the priority.
    pub fn with_priority(mut self, priority: i64) -> Self {
        self.priority = priority;
        self
    }

    /// Sets the expected duration.
    pub fn with_duration(mut self, duration: Duration) -> Self {
        self.duration = Some(duration);
        self
    }

    /// Whether the test has `tag`.
    pub fn has_tag(&self, tag: &str) -> bool {
        self.tags.iter().any(|t| t == tag)
    }
}

impl From<&str> for TestInfo {
    fn from(name: &str) -> Self {
        Self::new(name)
    }
}

impl From<String> for TestInfo {
    fn from(name: String) -> Self {
        Self::new(name)
    }
}

impl From<&String> for TestInfo {
    fn from(name: &String) -> Self {
        Self::new(name.clone())
    }
}
