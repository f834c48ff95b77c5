//! Turns reported results into a test's artifacts directory (test-control.md §5–6).
//!
//! The [`Reporter`] owns `<artifacts>/results`, `<artifacts>/files/` and
//! `<artifacts>/testout.temp` for the duration of one test run:
//!
//! - non-partial results are written as JSON lines immediately (after merging a pending
//!   partial result of the same name), partial results are merged in memory and written at
//!   [`Reporter::finish`], together with the fallback result;
//! - uploaded files are appended under `files/`, never truncated, and can never be written
//!   outside of it: names are normalised with [`normalize_name`], names containing NUL are
//!   refused, and every path component is opened with `O_NOFOLLOW` relative to the
//!   already-opened parent directory, so a symlink planted inside `files/` is refused rather
//!   than followed;
//! - `testout` is realised as a hard link to `testout.temp`.
//!
//! An aborted run (timeout, broken control stream, invalid `duration`/`exitcode` argument,
//! lost connection, cancel) is `infra`: the harness could not finish the test
//! (test-control.md §5.4, §7). Unlike upstream, the abort is visible in `results` even when
//! the test already reported its own nameless result: see [`Outcome::Aborted`].

use super::control::{ReportedResult, UploadError, UploadSink};
use crate::artifacts::{FILES_DIR, RESULTS_FILE, file_location, normalize_name};
use crate::jsonfmt::to_python_json;
use nix::errno::Errno;
use nix::fcntl::AtFlags;
use nix::fcntl::{AT_FDCWD, OFlag, openat};
use nix::sys::stat::{Mode, SFlag, fstat, mkdirat};
use nix::unistd::linkat;
use serde_json::{Map, Value};
use std::ffi::OsStr;
use std::io::Write as _;
use std::os::fd::OwnedFd;
use std::path::{Component, Path, PathBuf};

/// Name of the combined test output file inside the artifacts directory while a test runs.
pub const TESTOUT_TEMP: &str = "testout.temp";

/// Name under which the fallback result attaches the test output.
pub const DEFAULT_TESTOUT: &str = "output.txt";

/// Errors of the reporter.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// A result that cannot be recorded (upstream `BadReportJSONError`).
    #[error("{0}")]
    BadReportJson(String),
    /// An artifacts file that must not exist yet already exists.
    #[error("{} already exists (the artifacts directory must be empty)", path.display())]
    AlreadyExists {
        /// The offending path.
        path: PathBuf,
    },
    /// A file system operation on the artifacts directory failed.
    #[error("{what} {}", path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// On which path.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

impl ReportError {
    /// The upstream-compatible error class name, used in result notes.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::BadReportJson(_) => "BadReportJSONError",
            Self::AlreadyExists { .. } => "FileExistsError",
            Self::Io { .. } => "OSError",
        }
    }
}

/// How a test run ended, for the fallback result (test-control.md §5.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The test ran to completion with this (evaluated) exit code: the fallback status is
    /// the pending nameless partial's status, else `pass` for 0 and `fail` otherwise.
    Exited(i32),
    /// The run was aborted. The fallback gets `{"status": "infra", "note":
    /// "<kind>(<message>)"}` and `output.txt` (test-control.md §5.4). If a nameless result
    /// was already written (upstream then writes no fallback at all), a nameless
    /// `{"status": "infra", "note": ...}` line is appended anyway, so the abort is always
    /// visible in `results`.
    Aborted {
        /// Error class name, such as `TestAbortedError`.
        kind: String,
        /// Error message.
        message: String,
    },
    /// Test setup failed and the caller already recorded the `infra` result: no fallback.
    SetupFailed,
}

impl Outcome {
    /// `Outcome::Aborted` from a class name and a message.
    pub fn aborted(kind: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Aborted {
            kind: kind.into(),
            message: message.into(),
        }
    }
}

/// Where a [`Reporter`] puts its result lines.
#[derive(Debug)]
enum ResultsSink {
    /// `<artifacts>/results`, written line by line.
    File(std::fs::File),
    /// Held in memory for [`Reporter::take_lines`]; written to `<artifacts>/results` when
    /// the reporter is dropped without handing them over.
    Memory(Vec<u8>),
    /// Handed over by [`Reporter::take_lines`]; a later line goes to the file.
    Taken,
}

/// Writes one test's results and uploaded files (see the [module docs](self)).
#[derive(Debug)]
pub struct Reporter {
    root: PathBuf,
    files_dir: OwnedFd,
    results: ResultsSink,
    /// Pending partial results, in first-insertion order, keyed by result name.
    partials: Vec<(Option<String>, Map<String, Value>)>,
    nameless_written: bool,
    written_statuses: Vec<Option<String>>,
    finished: bool,
}

impl Reporter {
    /// Starts reporting into the existing directory `artifacts`, creating `results`,
    /// `files/` and `testout.temp`; none of them may exist yet.
    pub fn create(artifacts: &Path) -> Result<Self, ReportError> {
        Self::create_with(artifacts, false)
    }

    /// Like [`create`](Self::create), but the result lines are kept in memory, for
    /// [`take_lines`](Self::take_lines) once finished (`results` is not created). Lines not
    /// taken (the run failed, or the reporter was dropped) are written to
    /// `<artifacts>/results` when the reporter is dropped, so none is lost.
    pub fn create_in_memory(artifacts: &Path) -> Result<Self, ReportError> {
        Self::create_with(artifacts, true)
    }

    fn create_with(artifacts: &Path, in_memory: bool) -> Result<Self, ReportError> {
        let results_path = artifacts.join(RESULTS_FILE);
        let files_path = artifacts.join(FILES_DIR);
        let testout_path = artifacts.join(TESTOUT_TEMP);
        for path in [&results_path, &files_path, &testout_path] {
            if path.symlink_metadata().is_ok() {
                return Err(ReportError::AlreadyExists { path: path.clone() });
            }
        }
        let create_new = |path: &Path| {
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(path)
                .map_err(|source| create_error(path, source))
        };
        let results = if in_memory {
            ResultsSink::Memory(Vec::new())
        } else {
            ResultsSink::File(create_new(&results_path)?)
        };
        std::fs::create_dir(&files_path).map_err(|source| create_error(&files_path, source))?;
        create_new(&testout_path)?;
        let files_dir = nix::fcntl::open(
            &files_path,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| ReportError::Io {
            what: "opening",
            path: files_path.clone(),
            source: e.into(),
        })?;
        Ok(Self {
            root: artifacts.to_path_buf(),
            files_dir,
            results,
            partials: Vec::new(),
            nameless_written: false,
            written_statuses: Vec::new(),
            finished: false,
        })
    }

    /// The artifacts directory.
    pub fn artifacts(&self) -> &Path {
        &self.root
    }

    /// `<artifacts>/testout.temp`, the combined output of the test.
    pub fn testout_path(&self) -> PathBuf {
        self.root.join(TESTOUT_TEMP)
    }

    /// Opens `testout.temp` for appending (once per (re)start of the test).
    pub fn open_testout(&self) -> Result<std::fs::File, ReportError> {
        let path = self.testout_path();
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(|source| ReportError::Io {
                what: "opening",
                path,
                source,
            })
    }

    /// True once a result without `name` has been written.
    pub fn nameless_written(&self) -> bool {
        self.nameless_written
    }

    /// The `status` of every line written so far, in order (`None` when absent or not a
    /// string). Useful for exit-code evaluation hooks.
    pub fn written_statuses(&self) -> &[Option<String>] {
        &self.written_statuses
    }

    /// The pending partial results, in the order they will be written.
    pub fn pending(&self) -> impl Iterator<Item = &Map<String, Value>> {
        self.partials.iter().map(|(_, v)| v)
    }

    /// Records one result from the test-control stream (test-control.md §5.1–5.2).
    ///
    /// Files refused by [`UploadSink::open_upload`] turn the result into an error: its
    /// `status` becomes `error`, its `note` names the refused files, and they are removed
    /// from its `files`.
    pub fn record(&mut self, result: ReportedResult) -> Result<(), ReportError> {
        let ReportedResult { mut value, refused } = result;
        let partial = match value.shift_remove("partial") {
            None | Some(Value::Null) | Some(Value::Bool(false)) => false,
            Some(Value::Bool(true)) => true,
            Some(other) => {
                return Err(ReportError::BadReportJson(format!(
                    "'partial' must be true or false, got: {other}"
                )));
            }
        };
        match value.get("testout") {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) if s.is_empty() => {
                return Err(ReportError::BadReportJson(
                    "'testout' specified, but empty".to_owned(),
                ));
            }
            Some(Value::String(_)) => {}
            Some(other) => {
                return Err(ReportError::BadReportJson(format!(
                    "'testout' must be a string, got: {other}"
                )));
            }
        }
        let key = match value.get("name") {
            None => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(other) => {
                return Err(ReportError::BadReportJson(format!(
                    "'name' must be a string, got: {other}"
                )));
            }
        };
        if let Some(files) = value.get_mut("files") {
            *files = file_name_set(files, &refused)?;
        }
        if !refused.is_empty() {
            let note = refused
                .iter()
                .map(|r| format!("'{}' ({})", r.name, r.reason))
                .collect::<Vec<_>>()
                .join(", ");
            value.insert("status".to_owned(), Value::String("error".to_owned()));
            value.insert(
                "note".to_owned(),
                Value::String(format!("refused to store uploaded files: {note}")),
            );
        }
        let pending = self.partials.iter().position(|(k, _)| *k == key);
        if partial {
            match pending {
                Some(i) => merge(&mut self.partials[i].1, value, true),
                None => self.partials.push((key, value)),
            }
            Ok(())
        } else {
            let value = match pending {
                Some(i) => {
                    let (_, mut merged) = self.partials.remove(i);
                    merge(&mut merged, value, true);
                    merged
                }
                None => value,
            };
            self.write(value)
        }
    }

    /// Writes one result line as is (after the `files`/`testout` processing of §5.3),
    /// bypassing the partial-result table. Used for the setup-failure `infra` result.
    pub fn write(&mut self, mut value: Map<String, Value>) -> Result<(), ReportError> {
        if let Some(Value::Array(files)) = value.get_mut("files") {
            files.sort_by(|a, b| a.as_str().cmp(&b.as_str()));
        }
        match value.shift_remove("testout") {
            None | Some(Value::Null) => {}
            Some(Value::String(testout)) => {
                let name = match value.get("name") {
                    Some(Value::String(name)) => Some(name.clone()),
                    _ => None,
                };
                self.link_testout(name.as_deref(), &testout)?;
                match value.get_mut("files") {
                    Some(Value::Array(files)) => files.insert(0, Value::String(testout)),
                    _ => {
                        value.insert(
                            "files".to_owned(),
                            Value::Array(vec![Value::String(testout)]),
                        );
                    }
                }
            }
            Some(other) => {
                return Err(ReportError::BadReportJson(format!(
                    "'testout' must be a string, got: {other}"
                )));
            }
        }
        if !value.contains_key("name") {
            self.nameless_written = true;
        }
        let status = value
            .get("status")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let mut line = to_python_json(&Value::Object(value));
        line.push('\n');
        self.write_line(line.as_bytes())?;
        self.written_statuses.push(status);
        Ok(())
    }

    /// Appends one line to the results (file or memory).
    fn write_line(&mut self, line: &[u8]) -> Result<(), ReportError> {
        let path = self.root.join(RESULTS_FILE);
        let io_error = |source| ReportError::Io {
            what: "writing",
            path: path.clone(),
            source,
        };
        match &mut self.results {
            ResultsSink::Memory(lines) => {
                lines.extend_from_slice(line);
                Ok(())
            }
            ResultsSink::File(file) => file
                .write_all(line)
                .and_then(|()| file.flush())
                .map_err(io_error),
            ResultsSink::Taken => std::fs::OpenOptions::new()
                .append(true)
                .create(true)
                .open(&path)
                .and_then(|mut file| file.write_all(line))
                .map_err(io_error),
        }
    }

    /// The result lines kept in memory (see [`create_in_memory`](Self::create_in_memory)),
    /// once [`finish`](Self::finish)ed; `None` for a reporter writing its file, before
    /// `finish`, or when taken already. The reporter then no longer writes them anywhere.
    pub fn take_lines(&mut self) -> Option<Vec<u8>> {
        if !self.finished {
            return None;
        }
        match std::mem::replace(&mut self.results, ResultsSink::Taken) {
            ResultsSink::Memory(lines) => Some(lines),
            other => {
                self.results = other;
                None
            }
        }
    }

    /// Ends the run: applies the fallback result for `outcome`, writes every pending partial
    /// result in order (logging and skipping those that fail), and removes `testout.temp`.
    ///
    /// Called automatically (with an "aborted" outcome) when the reporter is dropped
    /// without being finished, so the results are never left without a verdict.
    pub fn finish(&mut self, outcome: &Outcome) {
        if self.finished {
            return;
        }
        self.finished = true;
        let mut abort_line = None;
        match outcome {
            Outcome::SetupFailed => {}
            Outcome::Aborted { kind, message } if self.nameless_written => {
                let mut line = Map::new();
                line.insert("status".to_owned(), "infra".into());
                line.insert("note".to_owned(), format!("{kind}({message})").into());
                abort_line = Some(line);
            }
            Outcome::Exited(_) if self.nameless_written => {}
            _ => {
                let fallback = self.fallback(outcome);
                let result = ReportedResult {
                    value: fallback,
                    refused: Vec::new(),
                };
                if let Err(e) = self.record(result) {
                    tracing::error!(error = %crate::error::chain(&e), "recording the fallback result failed");
                }
            }
        }
        for (name, value) in std::mem::take(&mut self.partials) {
            if let Err(e) = self.write(value) {
                tracing::error!(result = ?name, error = %crate::error::chain(&e), "writing a pending partial result failed");
            }
        }
        if let Some(line) = abort_line
            && let Err(e) = self.write(line)
        {
            tracing::error!(error = %crate::error::chain(&e), "writing the abort result failed");
        }
        let testout = self.testout_path();
        if let Err(e) = std::fs::remove_file(&testout) {
            tracing::warn!(path = %testout.display(), error = %crate::error::chain(&e), "removing the test output file failed");
        }
    }

    /// The fallback result of §5.4 (reported as partial, so it merges into the pending
    /// nameless partial).
    fn fallback(&self, outcome: &Outcome) -> Map<String, Value> {
        let pending = self
            .partials
            .iter()
            .find(|(k, _)| k.is_none())
            .map(|(_, v)| v);
        let has_testout = pending.is_some_and(|p| {
            p.get("testout").is_some_and(|t| !t.is_null())
                || p.get("files")
                    .and_then(Value::as_array)
                    .is_some_and(|f| f.iter().any(|n| n.as_str() == Some(DEFAULT_TESTOUT)))
        });
        let mut fallback = Map::new();
        match outcome {
            Outcome::Aborted { kind, message } => {
                fallback.insert("status".to_owned(), "infra".into());
                fallback.insert("note".to_owned(), format!("{kind}({message})").into());
            }
            Outcome::Exited(code) => {
                let status = match pending.and_then(|p| p.get("status")) {
                    Some(status) if !status.is_null() => status.clone(),
                    _ => if *code == 0 { "pass" } else { "fail" }.into(),
                };
                fallback.insert("status".to_owned(), status);
            }
            Outcome::SetupFailed => {}
        }
        fallback.insert("partial".to_owned(), Value::Bool(true));
        if !has_testout {
            fallback.insert("testout".to_owned(), DEFAULT_TESTOUT.into());
        }
        fallback
    }

    /// Hard-links `testout.temp` to `files/<result name>/<testout>`.
    fn link_testout(&self, result_name: Option<&str>, testout: &str) -> Result<(), ReportError> {
        let refuse = |reason: &str| {
            ReportError::BadReportJson(format!("cannot create testout file '{testout}': {reason}"))
        };
        check_names(result_name, testout).map_err(|e| refuse(&e.to_string()))?;
        let rel = file_location(result_name, testout);
        let (parent, last) = open_parent(&self.files_dir, &rel).map_err(|e| match e {
            OpenError::Refused(reason) => refuse(&reason),
            OpenError::Io(source) => ReportError::Io {
                what: "creating directories for",
                path: self.root.join(FILES_DIR).join(&rel),
                source,
            },
        })?;
        let source = self.testout_path();
        match linkat(AT_FDCWD, &source, &parent, last, AtFlags::empty()) {
            Ok(()) => Ok(()),
            Err(Errno::EEXIST) => Err(ReportError::BadReportJson(format!(
                "file '{testout}' already exists"
            ))),
            Err(e) => Err(ReportError::Io {
                what: "hard-linking the test output to",
                path: self.root.join(FILES_DIR).join(&rel),
                source: e.into(),
            }),
        }
    }
}

impl Drop for Reporter {
    fn drop(&mut self) {
        if !self.finished {
            self.finish(&Outcome::aborted(
                "TestAbortedError",
                "test run was dropped before it finished",
            ));
        }
        // Lines kept in memory and never handed over go to the file.
        if let ResultsSink::Memory(lines) = std::mem::replace(&mut self.results, ResultsSink::Taken)
            && let Err(e) = self.write_line(&lines)
        {
            tracing::error!(error = %crate::error::chain(&e), "writing the results kept in memory failed");
        }
    }
}

impl UploadSink for Reporter {
    fn open_upload(
        &mut self,
        result_name: Option<&str>,
        file_name: &str,
    ) -> Result<std::fs::File, UploadError> {
        let refused = |reason: String| UploadError::Refused {
            name: file_name.to_owned(),
            reason,
        };
        check_names(result_name, file_name).map_err(|e| refused(e.to_string()))?;
        let rel = file_location(result_name, file_name);
        let (parent, last) = open_parent(&self.files_dir, &rel).map_err(|e| match e {
            OpenError::Refused(reason) => refused(reason),
            OpenError::Io(source) => UploadError::Io {
                name: file_name.to_owned(),
                source,
            },
        })?;
        let fd = match openat(
            &parent,
            last,
            OFlag::O_WRONLY
                | OFlag::O_CREAT
                | OFlag::O_APPEND
                | OFlag::O_NOFOLLOW
                | OFlag::O_NONBLOCK
                | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o644),
        ) {
            Ok(fd) => fd,
            Err(Errno::ELOOP) => {
                return Err(refused(format!("'{}' is a symbolic link", rel.display())));
            }
            Err(Errno::EISDIR) => {
                return Err(refused(format!("'{}' is a directory", rel.display())));
            }
            Err(e) => {
                return Err(UploadError::Io {
                    name: file_name.to_owned(),
                    source: e.into(),
                });
            }
        };
        let stat = fstat(&fd).map_err(|e| UploadError::Io {
            name: file_name.to_owned(),
            source: e.into(),
        })?;
        if SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT != SFlag::S_IFREG {
            return Err(refused(format!(
                "'{}' is not a regular file",
                rel.display()
            )));
        }
        Ok(std::fs::File::from(fd))
    }
}

/// A result or file name that cannot be stored; its text is the refusal's reason.
#[derive(Debug, thiserror::Error)]
enum NameError {
    #[error("the result name contains a NUL byte")]
    NulInResult,
    #[error("the file name contains a NUL byte")]
    NulInFile,
    #[error("the file name is empty once normalised")]
    Empty,
}

/// Rejects names that cannot be stored safely.
fn check_names(result_name: Option<&str>, file_name: &str) -> Result<(), NameError> {
    if result_name.is_some_and(|n| n.contains('\0')) {
        return Err(NameError::NulInResult);
    }
    if file_name.contains('\0') {
        return Err(NameError::NulInFile);
    }
    if normalize_name(file_name).as_os_str().is_empty() {
        return Err(NameError::Empty);
    }
    Ok(())
}

enum OpenError {
    Refused(String),
    Io(std::io::Error),
}

/// Opens (creating as needed) every directory of `rel` but the last component beneath
/// `base`, refusing symbolic links and non-directories. Returns the parent directory and
/// the last component.
fn open_parent<'a>(base: &OwnedFd, rel: &'a Path) -> Result<(OwnedFd, &'a OsStr), OpenError> {
    let mut parts: Vec<&OsStr> = Vec::new();
    for component in rel.components() {
        match component {
            Component::Normal(part) => parts.push(part),
            _ => {
                return Err(OpenError::Refused(format!(
                    "'{}' is not a relative path",
                    rel.display()
                )));
            }
        }
    }
    let Some((last, dirs)) = parts.split_last() else {
        return Err(OpenError::Refused("empty path".to_owned()));
    };
    let mut dir = base.try_clone().map_err(OpenError::Io)?;
    let mut walked = PathBuf::new();
    for part in dirs {
        walked.push(part);
        match mkdirat(&dir, *part, Mode::from_bits_truncate(0o755)) {
            Ok(()) | Err(Errno::EEXIST) => {}
            Err(e) => return Err(OpenError::Io(e.into())),
        }
        dir = match openat(
            &dir,
            *part,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            Err(Errno::ELOOP | Errno::ENOTDIR) => {
                return Err(OpenError::Refused(format!(
                    "'{}' is a symbolic link or not a directory",
                    walked.display()
                )));
            }
            Err(e) => return Err(OpenError::Io(e.into())),
        };
    }
    Ok((dir, *last))
}

/// Turns a `files` value into the set of its names (first occurrence order), without the
/// refused ones (§5.1 step 1).
fn file_name_set(
    files: &Value,
    refused: &[super::control::RefusedFile],
) -> Result<Value, ReportError> {
    let Value::Array(items) = files else {
        return Ok(files.clone());
    };
    let mut names: Vec<Value> = Vec::with_capacity(items.len());
    for item in items {
        let name = match item {
            Value::String(s) => s.as_str(),
            Value::Object(entry) => match entry.get("name") {
                Some(Value::String(s)) => s.as_str(),
                _ => {
                    return Err(ReportError::BadReportJson(format!(
                        "file entry missing 'name' or 'length': {item}"
                    )));
                }
            },
            other => {
                return Err(ReportError::BadReportJson(format!(
                    "file entry missing 'name' or 'length': {other}"
                )));
            }
        };
        if refused.iter().any(|r| r.name == name) || names.iter().any(|n| n.as_str() == Some(name))
        {
            continue;
        }
        names.push(Value::String(name.to_owned()));
    }
    Ok(Value::Array(names))
}

/// Merges `src` into `dst` with the partial-result rules of §5.2. At the top level, `files`
/// sets are united instead of appended.
fn merge(dst: &mut Map<String, Value>, src: Map<String, Value>, top: bool) {
    for (key, value) in src {
        if value.is_null() {
            dst.shift_remove(&key);
            continue;
        }
        match (dst.get_mut(&key), value) {
            (None, value) => {
                dst.insert(key, value);
            }
            (Some(Value::Object(d)), Value::Object(s)) => merge(d, s, false),
            (Some(Value::Array(d)), Value::Array(s)) if top && key == "files" => {
                for item in s {
                    if !d.contains(&item) {
                        d.push(item);
                    }
                }
            }
            (Some(Value::Array(d)), Value::Array(s)) => d.extend(s),
            (Some(slot), value) => *slot = value,
        }
    }
}

fn create_error(path: &Path, source: std::io::Error) -> ReportError {
    if source.kind() == std::io::ErrorKind::AlreadyExists {
        ReportError::AlreadyExists {
            path: path.to_path_buf(),
        }
    } else {
        ReportError::Io {
            what: "creating",
            path: path.to_path_buf(),
            source,
        }
    }
}
