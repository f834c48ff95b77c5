//! [`TestInfo`]: a test as the scheduler, its queue and its policies see it.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map as JsonMap, Value as Json};

use crate::fmf::{DiscoveredTest, DiscoveredTests};

/// A test as the scheduler sees it: a name plus the metadata policies use.
///
/// FMF tests ([`TestInfo::from_fmf`]) supply `tag`, `extra-priority` and `duration`, and
/// their whole metadata in [`data`](Self::data) for policies that read custom keys; a
/// plain name converts with `From<&str>` / `From<String>`.
///
/// ```
/// use atex::orchestrator::adhoc::TestInfo;
/// let mut data = serde_json::Map::new();
/// data.insert("extra-guest-tag".into(), "fips".into());
/// let t = TestInfo::new("/a").with_data(data);
/// assert_eq!(t.key("extra-guest-tag").and_then(|v| v.as_str()), Some("fips"));
/// ```
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
    /// The test's full metadata (for FMF tests: every key after inheritance, adjust and
    /// library resolution, as [`DiscoveredTest::data`]); empty for a plain name. Shared, so
    /// copies of a `TestInfo` are cheap.
    pub data: Arc<JsonMap<String, Json>>,
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

    /// Sets the full metadata.
    pub fn with_data(mut self, data: JsonMap<String, Json>) -> Self {
        self.data = Arc::new(data);
        self
    }

    /// One metadata key (for example a custom `extra-…` key), if set.
    pub fn key(&self, key: &str) -> Option<&Json> {
        self.data.get(key)
    }

    /// The scheduler's view of a discovered FMF test: its name, `tag`, `extra-priority`,
    /// `duration` (when it parses; the executor reports one that does not) and all of its
    /// metadata.
    pub fn from_fmf(test: &DiscoveredTest) -> Self {
        let mut info = Self::new(&test.name)
            .with_tags(test.tags())
            .with_priority(test.priority())
            .with_data(test.data.clone());
        info.duration = test
            .duration()
            .and_then(|d| crate::duration::parse_duration(d).ok());
        info
    }

    /// [`from_fmf`](Self::from_fmf) of every discovered test, in discovery order.
    pub fn from_discovered(tests: &DiscoveredTests) -> Vec<Self> {
        tests.tests.iter().map(Self::from_fmf).collect()
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

impl From<&DiscoveredTest> for TestInfo {
    fn from(test: &DiscoveredTest) -> Self {
        Self::from_fmf(test)
    }
}
