//! The results of a run as people look at them: tests per platform, each with its attempts
//! (reruns first, the final attempt last), each attempt with its result lines. The JUnit
//! and HTML reports render this model; it is built from results files
//! ([`Report::add_results`]) or live from ingested artifacts
//! ([`ReportAggregator`](super::ReportAggregator)).
//!
//! # Verdicts
//!
//! A test's status is the [`Verdict`] of its final attempt: the worst status of the
//! attempt's result lines, as [`crate::verdict`] orders them (an unknown status counts as
//! `error`). A results file records no exit code, so an attempt none of whose lines has a
//! status is `error` (its note says so). Subtests keep the status they reported.
//!
//! # Reruns
//!
//! Several attempts of one (platform, test) are reruns; the last one is final. They come
//! from several inputs given oldest first (a run's old results, then the run), from
//! duplicates renamed by an aggregator that allows them (`/test`, `/test (1)`,
//! `/test (2)` in one file are attempts 1, 2 and 3 of `/test` — a name is read as a rename
//! only when its base name is in the same file for the same platform), and live from an
//! orchestrator's old-results aggregator
//! ([`ReportAggregator::superseded`](super::ReportAggregator::superseded)).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::artifacts::{file_location, normalize_name};
use crate::results::{ReadError, ReadOptions, ResultRow, ResultsLocation, RowReader};
use crate::verdict::Verdict;

/// One result line of an attempt.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    /// Subtest name; `None` for the test's own result.
    pub name: Option<String>,
    /// Reported status (as written; `None` when absent or null).
    pub status: Option<String>,
    /// Note.
    pub note: Option<String>,
    /// Uploaded files of this result.
    pub files: Vec<String>,
    /// How long it took, when the line says (`duration`: seconds, or tmt's `HH:MM:SS`).
    pub duration: Option<Duration>,
}

impl Line {
    /// The verdict of this line's status, `None` without a status.
    pub fn verdict(&self) -> Option<Verdict> {
        self.status.as_deref().map(Verdict::from_reported)
    }

    /// A line of a results file.
    pub fn from_row(row: ResultRow) -> Self {
        Self {
            name: row.subtest,
            status: row.status,
            note: row.note,
            files: row.files,
            duration: None,
        }
    }

    /// A line of an artifacts `results` file (a JSON object), `None` when it is not an
    /// object. Empty names count as nameless (as upstream's YAML aggregator).
    pub fn from_json(value: &Value) -> Option<Self> {
        let obj = value.as_object()?;
        let text = |k: &str| match obj.get(k) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(other) => Some(other.to_string()),
        };
        let files = match obj.get("files") {
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect(),
            _ => Vec::new(),
        };
        Some(Self {
            name: text("name").filter(|n| !n.is_empty()),
            status: text("status"),
            note: text("note"),
            files,
            duration: obj.get("duration").and_then(parse_duration),
        })
    }
}

/// A `duration` value: seconds (number or numeric string) or `[H]H:MM:SS[.f]`.
fn parse_duration(v: &Value) -> Option<Duration> {
    let secs = match v {
        Value::Number(n) => n.as_f64()?,
        Value::String(s) => {
            let parts: Vec<&str> = s.trim().split(':').collect();
            let mut total = 0.0;
            for p in &parts {
                total = total * 60.0 + p.parse::<f64>().ok()?;
            }
            if parts.len() > 3 {
                return None;
            }
            total
        }
        _ => return None,
    };
    (secs.is_finite() && (0.0..1e9).contains(&secs)).then(|| Duration::from_secs_f64(secs))
}

/// One attempt of a test.
#[derive(Debug, Clone, PartialEq)]
pub struct Attempt {
    /// The name it was recorded under (a renamed duplicate keeps its `(N)` here).
    pub recorded_name: String,
    /// Its result lines, in order.
    pub lines: Vec<Line>,
    /// Where its uploaded files are (`files/<platform>/<recorded name>`), when known.
    pub files_dir: Option<PathBuf>,
    /// How long it ran, when known.
    pub duration: Option<Duration>,
    /// Whether an orchestrator said that a rerun superseded it.
    pub superseded: bool,
}

impl Attempt {
    /// An attempt recorded under `recorded_name` with these lines.
    pub fn new(recorded_name: impl Into<String>, lines: Vec<Line>) -> Self {
        let lines: Vec<Line> = lines;
        let duration = lines
            .iter()
            .filter(|l| l.name.is_none())
            .find_map(|l| l.duration);
        Self {
            recorded_name: recorded_name.into(),
            lines,
            files_dir: None,
            duration,
            superseded: false,
        }
    }

    /// The worst status of its lines (see the [module docs](self)); `error` when no line
    /// has a status.
    pub fn verdict(&self) -> Verdict {
        self.reported_verdict().unwrap_or(Verdict::Error)
    }

    /// The worst status of its lines, `None` when no line has one.
    pub fn reported_verdict(&self) -> Option<Verdict> {
        self.lines.iter().filter_map(Line::verdict).max()
    }

    /// The test's own note: the last note of its nameless lines, or why the attempt is
    /// `error` when no line has a status.
    pub fn note(&self) -> Option<String> {
        let own = self
            .lines
            .iter()
            .filter(|l| l.name.is_none())
            .filter_map(|l| l.note.clone())
            .next_back();
        own.or_else(|| {
            self.reported_verdict()
                .is_none()
                .then(|| "no result reported a status".to_string())
        })
    }

    /// The nameless lines (the test's own results).
    pub fn own_lines(&self) -> impl Iterator<Item = &Line> {
        self.lines.iter().filter(|l| l.name.is_none())
    }

    /// The named lines (subtests), in order.
    pub fn subtests(&self) -> impl Iterator<Item = &Line> {
        self.lines.iter().filter(|l| l.name.is_some())
    }

    /// Where a file of `line` is: `files_dir/<line name>/<file>` (normalised as the
    /// producer does), when the files directory is known.
    pub fn file_path(&self, line: &Line, file: &str) -> Option<PathBuf> {
        self.files_dir
            .as_ref()
            .map(|d| d.join(file_location(line.name.as_deref(), file)))
    }
}

/// A test on one platform, with all its attempts.
#[derive(Debug, Clone, PartialEq)]
pub struct TestEntry {
    /// Platform.
    pub platform: String,
    /// Test name.
    pub name: String,
    /// Attempts, oldest first; the last is final.
    pub attempts: Vec<Attempt>,
}

impl TestEntry {
    /// The final attempt.
    pub fn last(&self) -> &Attempt {
        // Entries are created with one attempt and never lose one.
        &self.attempts[self.attempts.len() - 1]
    }

    /// The test's verdict: its final attempt's.
    pub fn verdict(&self) -> Verdict {
        self.last().verdict()
    }

    /// The attempts before the final one (reruns).
    pub fn earlier(&self) -> &[Attempt] {
        &self.attempts[..self.attempts.len() - 1]
    }
}

/// Counts per [`Verdict`] (indexed as [`Verdict::ALL`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts(pub [usize; 7]);

impl Counts {
    /// Counts one more `v`.
    pub fn add(&mut self, v: Verdict) {
        self.0[verdict_index(v)] += 1;
    }

    /// The count of `v`.
    pub fn get(&self, v: Verdict) -> usize {
        self.0[verdict_index(v)]
    }

    /// The sum.
    pub fn total(&self) -> usize {
        self.0.iter().sum()
    }
}

/// The position of `v` in [`Verdict::ALL`].
pub fn verdict_index(v: Verdict) -> usize {
    Verdict::ALL.iter().position(|x| *x == v).unwrap_or(0)
}

/// Tests of one or more runs, in first-seen order.
#[derive(Debug, Clone, Default)]
pub struct Report {
    tests: Vec<TestEntry>,
    index: HashMap<(String, String), usize>,
}

impl Report {
    /// An empty report.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every test, in first-seen order.
    pub fn tests(&self) -> &[TestEntry] {
        &self.tests
    }

    /// The test `name` on `platform`.
    pub fn get(&self, platform: &str, name: &str) -> Option<&TestEntry> {
        self.index
            .get(&(platform.to_string(), name.to_string()))
            .map(|&i| &self.tests[i])
    }

    /// Platforms in first-seen order.
    pub fn platforms(&self) -> Vec<&str> {
        let mut seen: Vec<&str> = Vec::new();
        for t in &self.tests {
            if !seen.contains(&t.platform.as_str()) {
                seen.push(&t.platform);
            }
        }
        seen
    }

    /// Test verdicts per platform (in [`platforms`](Self::platforms) order).
    pub fn counts(&self) -> Vec<(String, Counts)> {
        let mut out: Vec<(String, Counts)> = Vec::new();
        for t in &self.tests {
            let slot = match out.iter().position(|(p, _)| *p == t.platform) {
                Some(i) => i,
                None => {
                    out.push((t.platform.clone(), Counts::default()));
                    out.len() - 1
                }
            };
            out[slot].1.add(t.verdict());
        }
        out
    }

    /// Subtest statuses (of final attempts) per platform; subtests without a status are
    /// not counted.
    pub fn subtest_counts(&self) -> Vec<(String, Counts)> {
        let mut out: Vec<(String, Counts)> = self
            .platforms()
            .into_iter()
            .map(|p| (p.to_string(), Counts::default()))
            .collect();
        for t in &self.tests {
            if let Some(slot) = out.iter_mut().find(|(p, _)| *p == t.platform) {
                for l in t.last().subtests() {
                    if let Some(v) = l.verdict() {
                        slot.1.add(v);
                    }
                }
            }
        }
        out
    }

    /// Adds an attempt of (`platform`, `name`). A superseded attempt goes before the
    /// attempts that were not superseded; any other goes last (and becomes final).
    pub fn add_attempt(&mut self, platform: &str, name: &str, attempt: Attempt) {
        let key = (platform.to_string(), name.to_string());
        match self.index.get(&key) {
            Some(&i) => {
                let attempts = &mut self.tests[i].attempts;
                if attempt.superseded {
                    let at = attempts
                        .iter()
                        .position(|a| !a.superseded)
                        .unwrap_or(attempts.len());
                    attempts.insert(at, attempt);
                } else {
                    attempts.push(attempt);
                }
            }
            None => {
                self.index.insert(key, self.tests.len());
                self.tests.push(TestEntry {
                    platform: platform.to_string(),
                    name: name.to_string(),
                    attempts: vec![attempt],
                });
            }
        }
    }

    /// Sets the durations of the attempts of (`platform`, `name`), oldest first (extra
    /// values are ignored). Unknown tests are ignored.
    pub fn set_durations(&mut self, platform: &str, name: &str, durations: &[Duration]) {
        if let Some(&i) = self.index.get(&(platform.to_string(), name.to_string())) {
            for (a, d) in self.tests[i].attempts.iter_mut().zip(durations) {
                a.duration = Some(*d);
            }
        }
    }

    /// Adds the rows of one results file (see the [module docs](self) on renamed
    /// duplicates). `files_dir` is the `files/` directory of that file.
    pub fn add_rows(
        &mut self,
        rows: impl IntoIterator<Item = ResultRow>,
        files_dir: Option<&Path>,
    ) {
        // (platform, recorded name) -> lines, in first-seen order.
        let mut order: Vec<(String, String)> = Vec::new();
        let mut lines: HashMap<(String, String), Vec<Line>> = HashMap::new();
        for row in rows {
            let key = (row.platform.clone(), row.test.clone());
            let slot = lines.entry(key.clone()).or_insert_with(|| {
                order.push(key);
                Vec::new()
            });
            slot.push(Line::from_row(row));
        }
        // Renamed duplicates: (platform, base) -> [(n, recorded)].
        let mut renamed: HashMap<(String, String), Vec<(u64, String)>> = HashMap::new();
        let mut is_renamed = std::collections::HashSet::new();
        for (platform, recorded) in &order {
            if let Some((base, n)) = split_rename(recorded)
                && lines.contains_key(&(platform.clone(), base.to_string()))
            {
                renamed
                    .entry((platform.clone(), base.to_string()))
                    .or_default()
                    .push((n, recorded.clone()));
                is_renamed.insert((platform.clone(), recorded.clone()));
            }
        }
        for key in &order {
            if is_renamed.contains(key) {
                continue;
            }
            let (platform, name) = key;
            let mut recorded = vec![name.clone()];
            if let Some(more) = renamed.get_mut(key) {
                more.sort();
                recorded.extend(more.iter().map(|(_, r)| r.clone()));
            }
            for rec in recorded {
                let Some(l) = lines.remove(&(platform.clone(), rec.clone())) else {
                    continue;
                };
                let mut attempt = Attempt::new(rec.clone(), l);
                attempt.files_dir =
                    files_dir.map(|d| d.join(normalize_name(platform)).join(normalize_name(&rec)));
                self.add_attempt(platform, name, attempt);
            }
        }
    }

    /// Reads one results file (plain, gzip or xz) and adds its rows. A line that is not a
    /// result row is an error naming the file and line; nothing of that file is added
    /// then.
    pub fn add_results(
        &mut self,
        location: &ResultsLocation,
        options: &ReadOptions,
    ) -> Result<usize, ReadError> {
        let rows: Vec<ResultRow> = RowReader::open(&location.file, options)?
            .map(|r| r.map(|(_, row)| row))
            .collect::<Result<_, _>>()?;
        let n = rows.len();
        self.add_rows(rows, location.files_dir.as_deref());
        Ok(n)
    }
}

/// `"name (3)"` -> `("name", 3)`.
fn split_rename(name: &str) -> Option<(&str, u64)> {
    let inner = name.strip_suffix(')')?;
    let (base, n) = inner.rsplit_once(" (")?;
    if base.is_empty() || n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((base, n.parse().ok()?))
}

/// The path of `target` relative to the directory `from` (both made absolute against the
/// current directory first), for links in a report written into `from`.
pub fn relative_to(from: &Path, target: &Path) -> PathBuf {
    let abs = |p: &Path| -> PathBuf {
        let p = if p.is_absolute() {
            p.to_path_buf()
        } else {
            std::env::current_dir().unwrap_or_default().join(p)
        };
        let mut out = PathBuf::new();
        for c in p.components() {
            match c {
                std::path::Component::ParentDir => {
                    out.pop();
                }
                std::path::Component::CurDir => {}
                other => out.push(other.as_os_str()),
            }
        }
        out
    };
    let (from, target) = (abs(from), abs(target));
    let f: Vec<_> = from.components().collect();
    let t: Vec<_> = target.components().collect();
    let common = f.iter().zip(&t).take_while(|(a, b)| a == b).count();
    let mut out = PathBuf::new();
    for _ in common..f.len() {
        out.push("..");
    }
    for c in &t[common..] {
        out.push(c.as_os_str());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(p: &str, s: Option<&str>, t: &str, sub: Option<&str>) -> ResultRow {
        ResultRow {
            platform: p.into(),
            status: s.map(Into::into),
            test: t.into(),
            subtest: sub.map(Into::into),
            files: vec![],
            note: None,
        }
    }

    #[test]
    fn rows_group_into_tests_and_renames_into_attempts() {
        let mut r = Report::new();
        r.add_rows(
            vec![
                row("p", Some("fail"), "/a", None),
                row("p", Some("pass"), "/b", Some("s1")),
                row("p", Some("pass"), "/b", None),
                row("p", Some("error"), "/a (1)", None),
                row("p", Some("pass"), "/lonely (1)", None),
                row("q", Some("pass"), "/a (1)", None),
            ],
            Some(Path::new("/r/files")),
        );
        let names: Vec<_> = r
            .tests()
            .iter()
            .map(|t| (t.platform.as_str(), t.name.as_str(), t.attempts.len()))
            .collect();
        assert_eq!(
            names,
            [
                ("p", "/a", 2),
                ("p", "/b", 1),
                ("p", "/lonely (1)", 1),
                ("q", "/a (1)", 1)
            ]
        );
        let a = r.get("p", "/a").expect("a");
        assert_eq!(a.verdict(), Verdict::Error);
        assert_eq!(a.earlier()[0].verdict(), Verdict::Fail);
        assert_eq!(
            a.last().files_dir.as_deref(),
            Some(Path::new("/r/files/p/a (1)"))
        );
        // Later inputs are later attempts.
        r.add_rows(vec![row("p", Some("pass"), "/a", None)], None);
        assert_eq!(r.get("p", "/a").expect("a").attempts.len(), 3);
        assert_eq!(r.get("p", "/a").expect("a").verdict(), Verdict::Pass);
        let counts = r.counts();
        assert_eq!(counts[0].0, "p");
        assert_eq!(counts[0].1.get(Verdict::Pass), 3);
        assert_eq!(r.subtest_counts()[0].1.get(Verdict::Pass), 1);
    }

    #[test]
    fn verdict_and_note_of_attempts() {
        let l = |name: Option<&str>, status: Option<&str>, note: Option<&str>| Line {
            name: name.map(Into::into),
            status: status.map(Into::into),
            note: note.map(Into::into),
            files: vec![],
            duration: None,
        };
        let a = Attempt::new(
            "/t",
            vec![
                l(Some("x"), Some("fail"), None),
                l(None, Some("pass"), Some("first")),
                l(None, Some("info"), Some("last")),
            ],
        );
        assert_eq!(a.verdict(), Verdict::Fail);
        assert_eq!(a.note().as_deref(), Some("last"));
        let a = Attempt::new("/t", vec![l(None, None, None)]);
        assert_eq!(a.verdict(), Verdict::Error);
        assert_eq!(a.note().as_deref(), Some("no result reported a status"));
        assert_eq!(
            Attempt::new("/t", vec![l(None, Some("xfail"), None)]).verdict(),
            Verdict::Error
        );
    }

    #[test]
    fn superseded_attempts_go_before_final_ones() {
        let mut r = Report::new();
        let pass = Attempt::new("/t", vec![]);
        let mut old = Attempt::new("/t", vec![]);
        old.superseded = true;
        old.recorded_name = "old".into();
        r.add_attempt("p", "/t", pass);
        r.add_attempt("p", "/t", old);
        let t = r.get("p", "/t").expect("t");
        assert_eq!(t.attempts[0].recorded_name, "old");
    }

    #[test]
    fn durations_and_helpers() {
        assert_eq!(
            parse_duration(&serde_json::json!("01:02:03")),
            Some(Duration::from_secs(3723))
        );
        assert_eq!(
            parse_duration(&serde_json::json!(1.5)),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(parse_duration(&serde_json::json!("x")), None);
        assert_eq!(parse_duration(&serde_json::json!(-1)), None);
        assert_eq!(split_rename("/a (12)"), Some(("/a", 12)));
        assert_eq!(split_rename("/a (x)"), None);
        assert_eq!(split_rename(" (1)"), None);
        assert_eq!(
            relative_to(Path::new("/r/out"), Path::new("/r/files/p/x")),
            PathBuf::from("../files/p/x")
        );
        assert_eq!(
            relative_to(Path::new("/r"), Path::new("/r/files")),
            PathBuf::from("files")
        );
    }
}
