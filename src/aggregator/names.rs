//! [`RecordedNames`]: which (platform, test) pairs a file aggregator has recorded, and the
//! name a repeated ingest of the same test is recorded under (`/t (1)`, `/t (2)`, …).

use std::collections::HashMap;

use super::AggregatorError;

/// Counts ingests per (platform, test); shared by the file aggregators (JSONL, YAML).
#[derive(Debug, Default)]
pub(crate) struct RecordedNames {
    seen: HashMap<(String, String), usize>,
}

impl RecordedNames {
    /// Reserves the pair and returns the name to record: the test's own name the first
    /// time, `"{test} ({n})"` for the n-th repeat when duplicates are allowed, else
    /// [`AggregatorError::Duplicate`].
    pub(crate) fn reserve(
        &mut self,
        platform: &str,
        test: &str,
        allow_duplicate: bool,
    ) -> Result<String, AggregatorError> {
        let count = self
            .seen
            .entry((platform.to_string(), test.to_string()))
            .or_insert(0);
        if *count > 0 && !allow_duplicate {
            return Err(AggregatorError::Duplicate {
                platform: platform.into(),
                test: test.into(),
            });
        }
        let name = if *count == 0 {
            test.to_string()
        } else {
            format!("{test} ({count})")
        };
        *count += 1;
        Ok(name)
    }

    /// Counts a name found in an existing results file: `"{test} ({n})"` of a recorded
    /// `test` makes the next repeat `n + 1`.
    pub(crate) fn record(&mut self, platform: &str, recorded: &str) {
        let (base, next) = match split_repeat(recorded) {
            Some((base, n))
                if self
                    .seen
                    .contains_key(&(platform.to_string(), base.to_string())) =>
            {
                (base, n + 1)
            }
            _ => (recorded, 1),
        };
        let count = self
            .seen
            .entry((platform.to_string(), base.to_string()))
            .or_insert(0);
        *count = (*count).max(next);
    }

    /// Gives back a reservation whose ingest failed (so that a retry records the same name).
    pub(crate) fn unreserve(&mut self, platform: &str, test: &str) {
        if let Some(count) = self.seen.get_mut(&(platform.to_string(), test.to_string())) {
            *count = count.saturating_sub(1);
        }
    }
}

/// `"name (3)"` -> `("name", 3)`.
fn split_repeat(name: &str) -> Option<(&str, usize)> {
    let (base, n) = name.strip_suffix(')')?.rsplit_once(" (")?;
    if base.is_empty() || n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((base, n.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_are_numbered_or_refused_and_unreserve_gives_the_name_back() {
        let mut names = RecordedNames::default();
        assert_eq!(names.reserve("p", "/t", true).unwrap(), "/t");
        assert_eq!(names.reserve("p", "/t", true).unwrap(), "/t (1)");
        names.unreserve("p", "/t");
        assert_eq!(names.reserve("p", "/t", true).unwrap(), "/t (1)");
        assert_eq!(names.reserve("q", "/t", false).unwrap(), "/t");
        assert!(matches!(
            names.reserve("q", "/t", false),
            Err(AggregatorError::Duplicate { .. })
        ));
        let mut names = RecordedNames::default();
        names.record("p", "/t");
        names.record("p", "/t (1)");
        names.record("p", "/u (4)");
        assert_eq!(names.reserve("p", "/t", true).unwrap(), "/t (2)");
        assert!(names.reserve("p", "/t", false).is_err());
        assert_eq!(names.reserve("p", "/u", false).unwrap(), "/u");
    }
}
