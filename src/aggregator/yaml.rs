//! [`YamlAggregator`]: one YAML document per ingested test, in upstream ATEX's format.
//!
//! ```yaml
//! ---
//! platform: "10.2@s390x"
//! name: /unit/syscalls
//! status: fail
//! files:
//! - output.txt
//! subtests:
//! - name: accept
//!   status: pass
//!   files:
//!   - test.txt
//! ```
//!
//! Keys in this order: `platform`, `name` (the ingest's, `<test> (N)` for allowed
//! duplicates), `status` (the last non-null status of the nameless results), `files` (all
//! nameless results' files, in order), `note` (the last non-null note of the nameless
//! results), `subtests` (one entry per named result, in order: `name`, then `status`,
//! `files`, `note` when present and not null or empty). Empty names count as nameless.
//! Absent, null or empty top-level values are left out, so `{}` gives a document with only
//! `platform` and `name`. Block sequences are not indented under their key (as PyYAML
//! writes them). Strings that a YAML parser could read as something else (numbers,
//! booleans, dates, `null`, anything with `:` or `#`, …) are double-quoted with JSON
//! escapes, which YAML reads identically.
//!
//! Files move as with the [JSONL aggregator](super::JsonlAggregator): to
//! `files/<platform>/<test>/…`.

use std::fmt;
use std::fs::{self, File};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde_json::{Map, Value};

use super::model::{Report, TestEntry};
use super::names::RecordedNames;
use super::{Aggregator, AggregatorError, ResultLineError};
use crate::artifacts::{ArtifactsDir, normalize_name};
use crate::fs_tree;

/// Whether `s` can be written as a plain YAML scalar and read back as the same string by
/// YAML 1.1 and 1.2 parsers. Deliberately conservative.
fn plain_ok(s: &str) -> bool {
    let Some(first) = s.chars().next() else {
        return false;
    };
    if !(first.is_ascii_alphabetic() || first == '/' || first == '_') {
        return false;
    }
    if s.ends_with(' ') || s.contains(": ") || s.contains(" #") {
        return false;
    }
    if !s
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || " _./@+=,()-".contains(c))
    {
        return false;
    }
    let lower = s.to_ascii_lowercase();
    !matches!(
        lower.as_str(),
        "y" | "n" | "yes" | "no" | "on" | "off" | "true" | "false" | "null" | "nan" | "inf"
    )
}

/// Appends a scalar or flow value.
fn scalar(out: &mut String, v: &Value) {
    match v {
        Value::String(s) if plain_ok(s) => out.push_str(s),
        // JSON is valid flow YAML; JSON string escapes are valid YAML double-quoted ones.
        other => out.push_str(&other.to_string()),
    }
}

/// Appends `key: value` after `prefix`; a non-empty array becomes a block sequence whose
/// items start with `seq_indent` (the key's own indentation: not indented under it).
fn entry(out: &mut String, prefix: &str, seq_indent: &str, key: &str, v: &Value) {
    out.push_str(prefix);
    out.push_str(key);
    out.push(':');
    match v {
        Value::Array(items) if !items.is_empty() => {
            out.push('\n');
            for item in items {
                out.push_str(seq_indent);
                out.push_str("- ");
                scalar(out, item);
                out.push('\n');
            }
        }
        other => {
            out.push(' ');
            scalar(out, other);
            out.push('\n');
        }
    }
}

fn present(v: Option<&Value>) -> Option<&Value> {
    match v {
        None | Some(Value::Null) => None,
        Some(Value::Array(a)) if a.is_empty() => None,
        Some(Value::String(s)) if s.is_empty() => None,
        Some(v) => Some(v),
    }
}

/// One YAML document (starting with `---`) for a test's results (JSON objects, in order).
///
/// ```
/// use serde_json::json;
/// let results = [json!({"name": "accept", "status": "pass", "files": ["test.txt"]}),
///                json!({"status": "fail", "files": ["output.txt"]})];
/// let results: Vec<_> = results.iter().filter_map(|v| v.as_object().cloned()).collect();
/// assert_eq!(atex::aggregator::yaml::document("10.2@s390x", "/unit/syscalls", &results),
///     "---\nplatform: \"10.2@s390x\"\nname: /unit/syscalls\nstatus: fail\nfiles:\n- output.txt\n\
///      subtests:\n- name: accept\n  status: pass\n  files:\n  - test.txt\n");
/// ```
pub fn document(platform: &str, name: &str, results: &[Map<String, Value>]) -> String {
    let mut status = None;
    let mut note = None;
    let mut files: Vec<Value> = Vec::new();
    let mut subtests = String::new();
    for r in results {
        let sub_name = r
            .get("name")
            .filter(|n| !n.is_null() && n.as_str() != Some(""));
        match sub_name {
            None => {
                if let Some(s) = r.get("status").filter(|s| !s.is_null()) {
                    status = Some(s.clone());
                }
                if let Some(n) = r.get("note").filter(|s| !s.is_null()) {
                    note = Some(n.clone());
                }
                match r.get("files") {
                    Some(Value::Array(f)) => files.extend(f.iter().cloned()),
                    Some(Value::Null) | None => {}
                    Some(other) => files.push(other.clone()),
                }
            }
            Some(n) => {
                entry(&mut subtests, "- ", "  ", "name", n);
                for key in ["status", "files", "note"] {
                    if let Some(v) = present(r.get(key)) {
                        entry(&mut subtests, "  ", "  ", key, v);
                    }
                }
            }
        }
    }
    let mut out = String::from("---\n");
    entry(
        &mut out,
        "",
        "",
        "platform",
        &Value::String(platform.into()),
    );
    entry(&mut out, "", "", "name", &Value::String(name.into()));
    if let Some(s) = present(status.as_ref()) {
        entry(&mut out, "", "", "status", s);
    }
    if !files.is_empty() {
        entry(&mut out, "", "", "files", &Value::Array(files));
    }
    if let Some(n) = present(note.as_ref()) {
        entry(&mut out, "", "", "note", n);
    }
    if !subtests.is_empty() {
        out.push_str("subtests:\n");
        out.push_str(&subtests);
    }
    out
}

/// The YAML documents of every attempt in `report` (reruns included, as upstream's
/// aggregators record them: later attempts of one file as `<test> (N)`).
pub fn render(report: &Report) -> String {
    let mut out = String::new();
    for t in report.tests() {
        write_test(&mut out, t);
    }
    out
}

fn write_test(out: &mut String, t: &TestEntry) {
    for a in &t.attempts {
        let results: Vec<Map<String, Value>> = a
            .lines
            .iter()
            .map(|l| {
                let mut m = Map::new();
                let opt = |s: &Option<String>| s.clone().map_or(Value::Null, Value::String);
                m.insert("name".into(), opt(&l.name));
                m.insert("status".into(), opt(&l.status));
                m.insert(
                    "files".into(),
                    Value::Array(l.files.iter().cloned().map(Value::String).collect()),
                );
                m.insert("note".into(), opt(&l.note));
                m
            })
            .collect();
        out.push_str(&document(&t.platform, &a.recorded_name, &results));
    }
}

/// Options of [`YamlAggregator`].
#[derive(Debug, Clone, Default)]
pub struct YamlOptions {
    /// Allow ingesting a (platform, test) pair again; later ones are renamed `<test> (1)`,
    /// `<test> (2)`, …
    pub allow_duplicate: bool,
}

struct State {
    out: Option<File>,
    names: RecordedNames,
}

struct Inner {
    target: PathBuf,
    files: PathBuf,
    options: YamlOptions,
    state: Mutex<State>,
}

/// Writes one YAML document per ingested test (see the [module docs](self)) and moves the
/// uploaded files to `files/<platform>/<test>/`.
#[derive(Clone)]
pub struct YamlAggregator {
    inner: Arc<Inner>,
}

impl fmt::Debug for YamlAggregator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("YamlAggregator")
            .field("target", &self.inner.target)
            .field("files", &self.inner.files)
            .finish()
    }
}

impl YamlAggregator {
    /// Creates the YAML file and the files directory (neither may exist).
    pub fn create(
        target: impl Into<PathBuf>,
        files: impl Into<PathBuf>,
        options: YamlOptions,
    ) -> Result<Self, AggregatorError> {
        let (target, files) = (target.into(), files.into());
        if fs::symlink_metadata(&files).is_ok() {
            return Err(AggregatorError::DestinationExists(files));
        }
        let out = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&target)
            .map_err(|e| AggregatorError::io(format!("creating {}", target.display()), e))?;
        fs::create_dir_all(&files)
            .map_err(|e| AggregatorError::io(format!("creating {}", files.display()), e))?;
        Ok(Self {
            inner: Arc::new(Inner {
                target,
                files,
                options,
                state: Mutex::new(State {
                    out: Some(out),
                    names: RecordedNames::default(),
                }),
            }),
        })
    }
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reserves the (platform, test) pair and returns the name to record.
    fn reserve(&self, platform: &str, test: &str) -> Result<String, AggregatorError> {
        let mut st = self.lock();
        if st.out.is_none() {
            return Err(AggregatorError::Finished);
        }
        st.names
            .reserve(platform, test, self.options.allow_duplicate)
    }

    fn unreserve(&self, platform: &str, test: &str) {
        self.lock().names.unreserve(platform, test);
    }

    fn ingest_blocking(
        &self,
        platform: &str,
        name: &str,
        art: &ArtifactsDir,
    ) -> Result<(), AggregatorError> {
        let results_path = art.results();
        let results = read_result_objects(&results_path)?;
        let doc = document(platform, name, &results);
        let dest = self
            .files
            .join(normalize_name(platform))
            .join(normalize_name(name));
        if fs::symlink_metadata(&dest).is_ok() {
            return Err(AggregatorError::DestinationExists(dest));
        }
        let src = art.files();
        let have_files = !fs_tree::is_empty_dir(&src)
            .map_err(|e| AggregatorError::io(format!("reading {}", src.display()), e))?;
        if have_files {
            if let Some(parent) = dest.parent() {
                fs::create_dir_all(parent).map_err(|e| {
                    AggregatorError::io(format!("creating {}", parent.display()), e)
                })?;
            }
            fs_tree::move_tree(&src, &dest).map_err(|e| {
                AggregatorError::io(format!("moving {} to {}", src.display(), dest.display()), e)
            })?;
        }
        let written = {
            let mut st = self.lock();
            match st.out.as_mut() {
                Some(f) => f.write_all(doc.as_bytes()).and_then(|()| f.flush()),
                None => return Err(AggregatorError::Finished),
            }
        };
        if let Err(e) = written {
            if have_files {
                let _ = fs_tree::move_tree(&dest, &src);
            }
            return Err(AggregatorError::io(
                format!("writing {}", self.target.display()),
                e,
            ));
        }
        if let Err(e) = fs::remove_file(&results_path) {
            tracing::warn!(path = %results_path.display(), error = %crate::error::chain(&e), "could not remove ingested results");
        }
        Ok(())
    }
}

/// Reads an artifacts `results` file: every non-blank line must be a JSON object.
pub(crate) fn read_result_objects(path: &Path) -> Result<Vec<Map<String, Value>>, AggregatorError> {
    let file = File::open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            AggregatorError::MissingResults(path.to_path_buf())
        } else {
            AggregatorError::io(format!("opening {}", path.display()), e)
        }
    })?;
    let mut out = Vec::new();
    for (idx, line) in BufReader::new(file).split(b'\n').enumerate() {
        let line =
            line.map_err(|e| AggregatorError::io(format!("reading {}", path.display()), e))?;
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let bad = |source: ResultLineError| AggregatorError::BadResult {
            path: path.to_path_buf(),
            line: idx + 1,
            source,
        };
        match serde_json::from_slice::<Value>(&line) {
            Ok(Value::Object(m)) => out.push(m),
            Ok(_) => return Err(bad(ResultLineError::NotAnObject)),
            Err(e) => return Err(bad(ResultLineError::Json(e))),
        }
    }
    Ok(out)
}

#[async_trait]
impl Aggregator for YamlAggregator {
    async fn ingest(
        &self,
        platform: &str,
        test: &str,
        artifacts: &Path,
    ) -> Result<(), AggregatorError> {
        let name = self.inner.reserve(platform, test)?;
        let inner = self.inner.clone();
        let (p, art) = (platform.to_string(), ArtifactsDir::new(artifacts));
        let res = crate::scope::spawn_blocking("yaml-ingest", move || {
            inner.ingest_blocking(&p, &name, &art)
        })
        .await
        .unwrap_or_else(|e| {
            Err(AggregatorError::io(
                "ingest task failed",
                std::io::Error::other(e),
            ))
        });
        if res.is_err() {
            self.inner.unreserve(platform, test);
        }
        res
    }

    async fn finish(&self) -> Result<(), AggregatorError> {
        let out = self.inner.lock().out.take();
        if let Some(mut f) = out {
            f.flush().map_err(|e| {
                AggregatorError::io(format!("closing {}", self.inner.target.display()), e)
            })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_or_quoted() {
        for s in ["/unit/syscalls", "pass", "output.txt", "a b", "x-1"] {
            assert!(plain_ok(s), "{s}");
        }
        for s in [
            "",
            "9.6@x86_64",
            "yes",
            "No",
            "null",
            "a: b",
            "a #b",
            "-x",
            "2024-01-01",
            "ž",
            "a\nb",
            "'q'",
            "trailing ",
            "~",
            "*x",
            "true",
        ] {
            assert!(!plain_ok(s), "{s}");
        }
    }

    #[test]
    fn every_document_parses_back() {
        use serde_json::json;
        let cases = [
            json!([{}]),
            json!([{"status": "pass", "note": "a: b # c\nd", "files": ["x y", "yes"]}]),
            json!([{"name": "", "status": 3}, {"name": "s", "status": null, "note": ""}]),
            json!([{"name": "sub", "files": [{"odd": 1}]}]),
        ];
        for case in cases {
            let results: Vec<_> = case
                .as_array()
                .expect("array")
                .iter()
                .filter_map(|v| v.as_object().cloned())
                .collect();
            let doc = document("2024-01-01", "/t: x", &results);
            let parsed = yaml_rust2::YamlLoader::load_from_str(&doc).expect(&doc);
            let d = &parsed[0];
            assert_eq!(d["platform"].as_str(), Some("2024-01-01"), "{doc}");
            assert_eq!(d["name"].as_str(), Some("/t: x"), "{doc}");
        }
        let results: Vec<_> =
            [json!({"status": "pass", "note": "a: b # c\nd", "files": ["x y", "yes"]})]
                .iter()
                .filter_map(|v| v.as_object().cloned())
                .collect();
        let doc = document("p", "/t", &results);
        let d = &yaml_rust2::YamlLoader::load_from_str(&doc).expect("yaml")[0];
        assert_eq!(d["note"].as_str(), Some("a: b # c\nd"));
        assert_eq!(d["files"][1].as_str(), Some("yes"));
    }
}
