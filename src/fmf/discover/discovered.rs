//! The result of discovery: [`DiscoveredTests`] (plan, tests, the copied tree) and one
//! [`DiscoveredTest`] with its metadata accessors and canonical JSON line.

use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};

use indexmap::IndexMap;
use serde_json::{Map as JsonMap, Value as Json};

use super::json::{env_from, listlike, py_str};
use super::plan::{PlanData, PrepareStep};
use crate::fmf::dump;
use crate::pyfmt::python_float_repr;

/// One discovered test.
#[derive(Clone, Debug)]
pub struct DiscoveredTest {
    /// Test name (prefixed with `/<section>` for named sections).
    pub name: String,
    /// Fully resolved (inherited, adjusted, libraries resolved) metadata, ordered.
    pub data: JsonMap<String, Json>,
    /// Directory of the test's fmf definition, relative to [`DiscoveredTests::root`].
    pub source_dir: PathBuf,
}

impl DiscoveredTest {
    /// The `test` command (bash script text).
    pub fn test_script(&self) -> Option<&str> {
        self.data.get("test").and_then(Json::as_str)
    }
    /// The raw `duration` string (e.g. `5m`, `1h 30m`); parse it elsewhere.
    pub fn duration(&self) -> Option<&str> {
        self.data.get("duration").and_then(Json::as_str)
    }
    /// Test `environment` (dict, or list of dicts merged in order), stringified.
    pub fn environment(&self) -> IndexMap<String, String> {
        env_from(self.data.get("environment"))
    }
    /// String entries of `require` (package names; libraries are skipped).
    pub fn require(&self) -> Vec<&str> {
        listlike(self.data.get("require"))
            .into_iter()
            .filter_map(Json::as_str)
            .collect()
    }
    /// String entries of `recommend`.
    pub fn recommend(&self) -> Vec<&str> {
        listlike(self.data.get("recommend"))
            .into_iter()
            .filter_map(Json::as_str)
            .collect()
    }
    /// Whether `tty: true`.
    pub fn tty(&self) -> bool {
        self.data
            .get("tty")
            .and_then(Json::as_bool)
            .unwrap_or(false)
    }
    /// `tag` entries (string or list).
    pub fn tags(&self) -> Vec<String> {
        listlike(self.data.get("tag"))
            .into_iter()
            .map(py_str)
            .collect()
    }
    /// `extra-priority` as an integer (default 0).
    pub fn priority(&self) -> i64 {
        match self.data.get("extra-priority") {
            Some(Json::Number(n)) => n.as_i64().unwrap_or(0),
            Some(Json::String(s)) => s.trim().parse().unwrap_or(0),
            _ => 0,
        }
    }
    /// One canonical JSON line `{"data":{…},"name":"…","source_dir":"…"}`.
    pub fn to_json_line(&self) -> String {
        let mut out = String::from("{\"data\":");
        out.push_str(&canonical(&Json::Object(self.data.clone())));
        out.push_str(",\"name\":");
        dump::write_str(&mut out, &self.name);
        out.push_str(",\"source_dir\":");
        dump::write_str(&mut out, &self.source_dir.to_string_lossy());
        out.push('}');
        out
    }
    /// The test as `atex fmf show` prints it: the name on a line, then one
    /// `  key: <canonical JSON>` line per metadata key, in metadata order.
    pub fn show_text(&self) -> String {
        let mut out = self.name.clone();
        out.push('\n');
        for (k, v) in &self.data {
            out.push_str("  ");
            out.push_str(k);
            out.push_str(": ");
            write_json(&mut out, v);
            out.push('\n');
        }
        out
    }
}

fn canonical(v: &Json) -> String {
    let mut out = String::new();
    write_json(&mut out, v);
    out
}

fn write_json(out: &mut String, v: &Json) {
    match v {
        Json::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                dump::write_str(out, k);
                out.push(':');
                if let Some(x) = m.get(*k) {
                    write_json(out, x);
                }
            }
            out.push('}');
        }
        Json::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json(out, x);
            }
            out.push(']');
        }
        Json::String(s) => dump::write_str(out, s),
        Json::Number(n) => match n.as_f64() {
            Some(f) if !n.is_i64() && !n.is_u64() => out.push_str(&python_float_repr(f)),
            _ => out.push_str(&n.to_string()),
        },
        other => out.push_str(&other.to_string()),
    }
}

/// Result of [`discover`](super::discover): plan data, tests, and the temporary tree copy.
#[derive(Debug)]
pub struct DiscoveredTests {
    /// The plan.
    pub plan: PlanData,
    /// Discovered tests in discovery order (names unique).
    pub tests: Vec<DiscoveredTest>,
    /// Library requirements that could not be fetched (kept as RPM provides).
    pub missing_libraries: Vec<String>,
    pub(super) root: tempfile::TempDir,
}

impl DiscoveredTests {
    /// The directory holding the copied tree(s) to upload (`TMT_TREE`). It is
    /// removed when this value is dropped.
    pub fn root(&self) -> &Path {
        self.root.path()
    }
    /// Find a test by name.
    pub fn get(&self, name: &str) -> Option<&DiscoveredTest> {
        self.tests.iter().find(|t| t.name == name)
    }
    /// Test names in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tests.iter().map(|t| t.name.as_str())
    }
    /// Union (first-seen order) of plan `prepare: install` packages and all tests'
    /// string `require` entries.
    pub fn all_required_packages(&self) -> Vec<String> {
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        let plan = self.plan.prepare.iter().flat_map(|p| match p {
            PrepareStep::Install { packages } => packages.clone(),
            PrepareStep::Shell { .. } => Vec::new(),
        });
        let tests = self.tests.iter().flat_map(|t| {
            t.require()
                .into_iter()
                .map(str::to_string)
                .collect::<Vec<_>>()
        });
        for p in plan.chain(tests) {
            if seen.insert(p.clone()) {
                out.push(p);
            }
        }
        out
    }
    /// Every package the plan and the tests need, sorted and unique (what `atex fmf
    /// requires` prints): the plan's `prepare: how: install` packages and the string
    /// entries of every test's `require` and `recommend`.
    ///
    /// Libraries: a resolved beakerlib library (a `require` mapping, or a
    /// `library(NICK/NAME)` string that discovery fetched) is not a package and is left
    /// out, but the packages the library itself requires or recommends are in, as
    /// discovery adds them to the test's lists. A `library(NICK/NAME)` string that could
    /// not be fetched (see [`missing_libraries`](Self::missing_libraries)), or any when
    /// discovery ran with [`libraries`](super::DiscoverOptions::libraries) off, stays a
    /// string and so is listed: the executor installs it as the RPM provide of that name.
    pub fn all_packages(&self) -> Vec<String> {
        let mut out: BTreeSet<String> = BTreeSet::new();
        for p in &self.plan.prepare {
            if let PrepareStep::Install { packages } = p {
                out.extend(packages.iter().cloned());
            }
        }
        for t in &self.tests {
            out.extend(t.require().into_iter().map(str::to_string));
            out.extend(t.recommend().into_iter().map(str::to_string));
        }
        out.into_iter().collect()
    }
}
