//! The test-control stream parser (test-control.md §2–3).
//!
//! A running test writes *control lines* (`result N`, `exitcode RC`, `duration SPEC`,
//! `disconnect`, `noop`) to the file descriptor named by `ATEX_TEST_CONTROL`; the remote
//! command's stdout carries them to the controller. [`ControlParser`] reads that stream
//! incrementally and yields one [`ControlEvent`] per [`ControlParser::next`] call.
//!
//! # Memory and cancellation
//!
//! The parser owns a fixed 64 KiB buffer. Uploaded file payloads are copied from it into the
//! destination file chunk by chunk, so a file of any size is streamed in constant memory. The
//! JSON document announced by `result N` is held in memory while it is read (it must be
//! parsed as a whole); its buffer grows only as bytes actually arrive.
//!
//! [`ControlParser::next`] is **cancel-safe**: its only await point is a single `read` into
//! the parser's own buffer, and every partially read line, JSON document or file payload is
//! kept in the parser. Dropping the future (for example when a `tokio::select!` on a deadline
//! or a cancellation token wins) loses nothing; calling `next` again resumes exactly where
//! the stream was. [`ControlParser::in_progress`] tells whether the stream stopped in the
//! middle of something, for the "… was running while test wrapper unexpectedly exited"
//! diagnostic.

use crate::duration::{DurationControl, DurationError};
use serde_json::{Map, Value};
use std::fmt::Write as _;
use std::io::Write as _;
use tokio::io::{AsyncRead, AsyncReadExt};

/// Maximum length of a control line, including its terminating `\n`.
pub const MAX_LINE: usize = 4096;

/// Size of the parser's read buffer (and so of the chunks file payloads are copied in).
pub const CHUNK_SIZE: usize = 64 * 1024;

/// How many bytes of offending input an error message quotes at most.
const QUOTE_LIMIT: usize = 256;

/// Errors of the test-control stream. Every one aborts the test.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// A malformed control line or framing problem (upstream `BadControlError`).
    #[error("{0}")]
    BadControl(String),
    /// The stream ended in the middle of a JSON document or file payload.
    #[error("{message}")]
    UnexpectedEof {
        /// The exact message (`EOF when reading data`, ...).
        message: String,
        /// The reader that was interrupted, as reported by [`ControlParser::in_progress`].
        parser: &'static str,
    },
    /// A malformed `result` JSON document (upstream `BadReportJSONError`).
    #[error("{0}")]
    BadReportJson(String),
    /// An invalid `duration` control argument (the [`DurationError`] says which).
    #[error(transparent)]
    InvalidDuration(#[from] DurationError),
    /// Reading the stream itself failed.
    #[error("reading the test-control stream")]
    Read(#[source] std::io::Error),
    /// Storing an uploaded file on the controller failed (disk full, permissions, ...).
    #[error("storing uploaded file '{name}'")]
    Store {
        /// The file name as the test sent it.
        name: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

impl ControlError {
    /// The upstream-compatible error class name, used in result notes as
    /// `<kind>(<message>)`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::BadControl(_) | Self::UnexpectedEof { .. } => "BadControlError",
            Self::BadReportJson(_) => "BadReportJSONError",
            Self::InvalidDuration(_) => "InvalidDurationError",
            Self::Read(_) | Self::Store { .. } => "OSError",
        }
    }
}

/// Why an uploaded file could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    /// The name is unsafe or collides with something that is not a plain file; the payload
    /// is discarded, the result is marked as an error, and the run goes on.
    #[error("refused to store uploaded file '{name}': {reason}")]
    Refused {
        /// The file name as the test sent it.
        name: String,
        /// Why.
        reason: String,
    },
    /// The controller could not create the file (aborts the test).
    #[error("storing uploaded file '{name}'")]
    Io {
        /// The file name as the test sent it.
        name: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

/// Where uploaded files go. Implemented by the [`Reporter`](super::reporter::Reporter).
pub trait UploadSink {
    /// Opens (creating it if needed, never truncating) the file `file_name` of the result
    /// named `result_name` (`None` for a nameless result) for appending.
    fn open_upload(
        &mut self,
        result_name: Option<&str>,
        file_name: &str,
    ) -> Result<std::fs::File, UploadError>;
}

/// An uploaded file whose payload was discarded because its name was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefusedFile {
    /// The file name as the test sent it.
    pub name: String,
    /// Why it was refused.
    pub reason: String,
}

/// A complete `result` document, after all of its files were stored.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportedResult {
    /// The JSON object exactly as sent (with its `files` entries still in
    /// `{"name", "length"}` form).
    pub value: Map<String, Value>,
    /// Files whose payload was discarded because the name was refused.
    pub refused: Vec<RefusedFile>,
}

/// One event of the test-control stream.
#[derive(Debug, Clone, PartialEq)]
pub enum ControlEvent {
    /// A `result` with its files already written through the [`UploadSink`].
    Result(ReportedResult),
    /// `exitcode RC`: the test's exit code (the last one wins).
    ExitCode(i32),
    /// `duration ARG`: a change of the test deadline.
    Duration(DurationControl),
    /// `disconnect`: the test is about to reboot; the stream is not read any further.
    Disconnect,
    /// `noop`: nothing.
    Noop,
}

/// One file announced by a `result` document.
#[derive(Debug)]
struct FileEntry {
    name: String,
    length: u64,
}

/// The file currently being streamed.
#[derive(Debug)]
struct CurrentFile {
    name: String,
    remaining: u64,
    /// `None` when the payload is being discarded (refused name).
    target: Option<std::fs::File>,
}

#[derive(Debug)]
struct FilesState {
    value: Map<String, Value>,
    result_name: Option<String>,
    entries: std::collections::VecDeque<FileEntry>,
    current: Option<CurrentFile>,
    refused: Vec<RefusedFile>,
}

#[derive(Debug)]
enum State {
    /// Reading a control line; holds the bytes seen so far (without `\n`).
    Line(Vec<u8>),
    /// Reading the JSON document of `result N`.
    Json { expected: u64, data: Vec<u8> },
    /// Streaming the files announced by a result.
    Files(Box<FilesState>),
    /// After `disconnect`, EOF or an error: nothing more is read.
    Finished,
}

/// What one processing step achieved.
enum Step {
    Event(ControlEvent),
    NeedInput,
    Continue,
}

/// Incremental, cancel-safe reader of a test-control stream (see the [module docs](self)).
#[derive(Debug)]
pub struct ControlParser<R> {
    reader: R,
    buf: Box<[u8]>,
    pos: usize,
    end: usize,
    eof: bool,
    state: State,
}

impl<R: AsyncRead + Unpin> ControlParser<R> {
    /// A parser reading from `reader` (typically the remote command's stdout).
    pub fn new(reader: R) -> Self {
        Self {
            reader,
            buf: vec![0u8; CHUNK_SIZE].into_boxed_slice(),
            pos: 0,
            end: 0,
            eof: false,
            state: State::Line(Vec::new()),
        }
    }

    /// Reads until the next complete event.
    ///
    /// Returns `Ok(None)` at a clean end of the stream (EOF between control lines) and
    /// after `disconnect` or an error (nothing more is read then). Uploaded file payloads
    /// are written through `sink` before the [`ControlEvent::Result`] is returned.
    ///
    /// Cancel-safe: see the [module docs](self).
    pub async fn next<S: UploadSink + ?Sized>(
        &mut self,
        sink: &mut S,
    ) -> Result<Option<ControlEvent>, ControlError> {
        loop {
            match self.step(sink) {
                Ok(Step::Event(event)) => return Ok(Some(event)),
                Ok(Step::Continue) => continue,
                Ok(Step::NeedInput) => {}
                Err(e) => {
                    self.state = State::Finished;
                    return Err(e);
                }
            }
            if matches!(self.state, State::Finished) {
                return Ok(None);
            }
            if self.eof {
                return self.at_eof();
            }
            // The only await point. `read` is cancel-safe: if this future is dropped while
            // pending, no byte has been consumed.
            let n = match self.reader.read(&mut self.buf).await {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.state = State::Finished;
                    return Err(ControlError::Read(e));
                }
            };
            self.pos = 0;
            self.end = n;
            if n == 0 {
                self.eof = true;
            }
        }
    }

    /// What the parser is in the middle of, if anything: `"control line reader"`,
    /// `"result JSON reader"` or `"file payload reader"`.
    pub fn in_progress(&self) -> Option<&'static str> {
        match &self.state {
            State::Line(line) if line.is_empty() => None,
            State::Line(_) => Some("control line reader"),
            State::Json { .. } => Some("result JSON reader"),
            State::Files(_) => Some("file payload reader"),
            State::Finished => None,
        }
    }

    /// True once the parser will not read any more (after `disconnect`, EOF or an error).
    pub fn is_finished(&self) -> bool {
        matches!(self.state, State::Finished)
    }

    /// Gives the reader back (for example to close it explicitly).
    pub fn into_inner(self) -> R {
        self.reader
    }

    fn at_eof(&mut self) -> Result<Option<ControlEvent>, ControlError> {
        let parser = self.in_progress().unwrap_or("control line reader");
        let state = std::mem::replace(&mut self.state, State::Finished);
        match state {
            State::Line(line) if line.is_empty() => Ok(None),
            State::Line(line) => Err(ControlError::UnexpectedEof {
                message: format!(
                    "EOF in the middle of a control line: {}",
                    quote_bytes(&line)
                ),
                parser,
            }),
            State::Json { data, .. } => Err(ControlError::UnexpectedEof {
                message: format!("EOF when reading data, got so far: {}", quote_bytes(&data)),
                parser,
            }),
            State::Files(_) => Err(ControlError::UnexpectedEof {
                message: "EOF when reading data".to_owned(),
                parser,
            }),
            State::Finished => Ok(None),
        }
    }

    /// Makes as much progress as the buffered bytes allow, up to one event.
    fn step<S: UploadSink + ?Sized>(&mut self, sink: &mut S) -> Result<Step, ControlError> {
        let available = &self.buf[self.pos..self.end];
        match &mut self.state {
            State::Finished => Ok(Step::NeedInput),
            State::Line(line) => {
                if available.is_empty() {
                    return Ok(Step::NeedInput);
                }
                match available.iter().position(|&b| b == b'\n') {
                    Some(i) => {
                        if line.len() + i + 1 > MAX_LINE {
                            return Err(line_too_long());
                        }
                        line.extend_from_slice(&available[..i]);
                        self.pos += i + 1;
                        let line = std::mem::take(line);
                        self.dispatch_line(&line)
                    }
                    None => {
                        let take = available.len().min(MAX_LINE - line.len());
                        line.extend_from_slice(&available[..take]);
                        self.pos += take;
                        if line.len() >= MAX_LINE {
                            return Err(line_too_long());
                        }
                        Ok(Step::NeedInput)
                    }
                }
            }
            State::Json { expected, data } => {
                if available.is_empty() {
                    return Ok(Step::NeedInput);
                }
                let missing = *expected - data.len() as u64;
                let take = available
                    .len()
                    .min(usize::try_from(missing).unwrap_or(usize::MAX));
                data.extend_from_slice(&available[..take]);
                self.pos += take;
                if (data.len() as u64) < *expected {
                    return Ok(Step::NeedInput);
                }
                let data = std::mem::take(data);
                let files = parse_result_json(&data)?;
                self.state = State::Files(Box::new(files));
                Ok(Step::Continue)
            }
            State::Files(files) => {
                let Some(current) = &mut files.current else {
                    let Some(entry) = files.entries.pop_front() else {
                        let State::Files(files) =
                            std::mem::replace(&mut self.state, State::Line(Vec::new()))
                        else {
                            return Ok(Step::Continue);
                        };
                        return Ok(Step::Event(ControlEvent::Result(ReportedResult {
                            value: files.value,
                            refused: files.refused,
                        })));
                    };
                    let target = match sink.open_upload(files.result_name.as_deref(), &entry.name) {
                        Ok(file) => Some(file),
                        Err(UploadError::Refused { name, reason }) => {
                            tracing::warn!(file = %name, %reason, "refusing uploaded file");
                            files.refused.push(RefusedFile { name, reason });
                            None
                        }
                        Err(UploadError::Io { name, source }) => {
                            return Err(ControlError::Store { name, source });
                        }
                    };
                    if entry.length > 0 {
                        files.current = Some(CurrentFile {
                            name: entry.name,
                            remaining: entry.length,
                            target,
                        });
                    }
                    return Ok(Step::Continue);
                };
                if available.is_empty() {
                    return Ok(Step::NeedInput);
                }
                let take = available
                    .len()
                    .min(usize::try_from(current.remaining).unwrap_or(usize::MAX));
                if let Some(target) = &mut current.target {
                    target
                        .write_all(&available[..take])
                        .map_err(|source| ControlError::Store {
                            name: current.name.clone(),
                            source,
                        })?;
                }
                self.pos += take;
                current.remaining -= take as u64;
                if current.remaining == 0 {
                    files.current = None;
                }
                Ok(Step::Continue)
            }
        }
    }

    fn dispatch_line(&mut self, line: &[u8]) -> Result<Step, ControlError> {
        if line.is_empty() {
            return Err(ControlError::BadControl(
                "empty control line (just '\\n')".to_owned(),
            ));
        }
        if let Some(bad) = line.iter().find(|b| !b.is_ascii()) {
            return Err(ControlError::BadControl(format!(
                "non-ASCII byte 0x{bad:02x} in control line: {}",
                quote_bytes(line)
            )));
        }
        // All bytes are ASCII, so this is valid UTF-8.
        let text = String::from_utf8_lossy(line);
        let (word, arg) = text.split_once(' ').unwrap_or((&text, ""));
        let event = match word {
            "result" => {
                let length: u64 = arg.parse().map_err(|_| {
                    ControlError::BadControl(format!(
                        "reading json length: invalid literal for int() with base 10: '{arg}'"
                    ))
                })?;
                if length == 0 {
                    return Err(ControlError::BadControl(
                        "EOF when reading data, got so far: b''".to_owned(),
                    ));
                }
                self.state = State::Json {
                    expected: length,
                    data: Vec::with_capacity(
                        usize::try_from(length)
                            .unwrap_or(CHUNK_SIZE)
                            .min(CHUNK_SIZE),
                    ),
                };
                return Ok(Step::Continue);
            }
            "exitcode" => {
                if arg.is_empty() {
                    return Err(ControlError::BadControl(
                        "exitcode argument empty".to_owned(),
                    ));
                }
                let code: i32 = arg.parse().map_err(|_| {
                    ControlError::BadControl(format!("'{arg}' is not an integer exit code"))
                })?;
                ControlEvent::ExitCode(code)
            }
            "duration" => {
                if arg.is_empty() {
                    return Err(ControlError::BadControl(
                        "duration argument empty".to_owned(),
                    ));
                }
                ControlEvent::Duration(DurationControl::parse(arg)?)
            }
            "disconnect" => {
                self.state = State::Finished;
                ControlEvent::Disconnect
            }
            "noop" => ControlEvent::Noop,
            _ => {
                return Err(ControlError::BadControl(format!(
                    "unknown control word: {word}"
                )));
            }
        };
        if !matches!(self.state, State::Finished) {
            self.state = State::Line(Vec::new());
        }
        Ok(Step::Event(event))
    }
}

fn line_too_long() -> ControlError {
    ControlError::BadControl(format!("line buffer reached {MAX_LINE} bytes"))
}

/// Parses and validates the JSON document of a `result`.
fn parse_result_json(data: &[u8]) -> Result<FilesState, ControlError> {
    let value: Value = serde_json::from_slice(data).map_err(|e| {
        ControlError::BadReportJson(format!("JSON decode: {e} caused by: {}", quote_bytes(data)))
    })?;
    let Value::Object(value) = value else {
        return Err(ControlError::BadReportJson(format!(
            "result JSON is not an object: {}",
            quote_bytes(data)
        )));
    };
    let result_name = match value.get("name") {
        None => None,
        Some(Value::String(name)) => Some(name.clone()),
        Some(other) => {
            return Err(ControlError::BadReportJson(format!(
                "'name' must be a string, got: {other}"
            )));
        }
    };
    let entries = match value.get("files") {
        None | Some(Value::Null) => Default::default(),
        Some(Value::Array(items)) => items
            .iter()
            .map(parse_file_entry)
            .collect::<Result<_, _>>()?,
        Some(other) => {
            return Err(ControlError::BadReportJson(format!(
                "'files' must be a list, got: {other}"
            )));
        }
    };
    Ok(FilesState {
        value,
        result_name,
        entries,
        current: None,
        refused: Vec::new(),
    })
}

fn parse_file_entry(entry: &Value) -> Result<FileEntry, ControlError> {
    let missing =
        || ControlError::BadReportJson(format!("file entry missing 'name' or 'length': {entry}"));
    let Value::Object(map) = entry else {
        return Err(missing());
    };
    let name = match map.get("name") {
        Some(Value::String(name)) if !name.is_empty() => name.clone(),
        _ => return Err(missing()),
    };
    let length = map.get("length").ok_or_else(missing)?;
    let parsed = match length {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse::<u64>().ok(),
        _ => None,
    };
    let length = parsed.ok_or_else(|| {
        ControlError::BadReportJson(format!(
            "file entry {name} length: {length} is not a non-negative integer"
        ))
    })?;
    Ok(FileEntry { name, length })
}

/// Renders bytes like a Python bytes literal (`b'...'`), shortened for error messages.
pub(crate) fn quote_bytes(data: &[u8]) -> String {
    let shown = &data[..data.len().min(QUOTE_LIMIT)];
    let mut out = String::from("b'");
    for &b in shown {
        match b {
            b'\'' => out.push_str("\\'"),
            b'\\' => out.push_str("\\\\"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            0x20..=0x7e => out.push(b as char),
            _ => {
                let _ = write!(out, "\\x{b:02x}");
            }
        }
    }
    out.push('\'');
    if data.len() > QUOTE_LIMIT {
        let _ = write!(out, "... ({} bytes in total)", data.len());
    }
    out
}
