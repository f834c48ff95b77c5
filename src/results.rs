//! Reading results files back: the `results.jsonl` that the
//! [`JsonlAggregator`](crate::aggregator::JsonlAggregator) writes, plain, gzip or xz.
//!
//! Each line is the JSON array `[platform, status, test, subtest, files, note]`
//! ([`ResultRow`]). The reader detects the compression from the file's first bytes (not from
//! its name), reads one line at a time, and turns anything that is not such a row into an
//! error naming the file and the 1-based line ([`ReadError::BadLine`]); it never skips a
//! line silently. Blank lines are skipped, as the aggregators do.
//!
//! A run that was killed may leave a torn last line (no newline, not valid JSON) or a
//! compressed stream without its trailer. [`TornTail::Drop`] drops such a tail with a
//! warning (for resuming a run); the default, [`TornTail::Error`], reports it like any other
//! bad line (for reports, which must not pass a damaged file for a complete one).
//!
//! [`locate`] turns what a user names — a results directory or a results file — into the
//! results file and the directory of uploaded files next to it.
//!
//! ```
//! use atex::results::{read_rows, ReadOptions};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let path = dir.path().join("results.jsonl");
//! std::fs::write(&path, "[\"9.6@x86_64\", \"pass\", \"/a\", null, [], null]\n\
//!                        [\"9.6@x86_64\", \"fail\", \"/b\", \"sub\", [\"log\"], \"oops\"]\n")?;
//! let rows = read_rows(&path, &ReadOptions::default())?;
//! assert_eq!(rows.len(), 2);
//! assert_eq!(rows[1].subtest.as_deref(), Some("sub"));
//! assert_eq!(rows[1].note.as_deref(), Some("oops"));
//!
//! std::fs::write(&path, "[\"p\", \"pass\", \"/a\", null, [], null]\n{\"status\": \"pass\"}\n")?;
//! let err = read_rows(&path, &ReadOptions::default()).unwrap_err();
//! assert!(err.to_string().ends_with("results.jsonl:2: bad result row"));
//! assert!(atex::error::chain(&err).to_string().ends_with(
//!     "results.jsonl:2: bad result row: not a result row: expected a JSON array of 6 items"
//! ));
//! # Ok(()) }
//! ```

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use serde_json::Value;

/// Names of results files looked for in a results directory, in this order.
pub const RESULTS_FILE_NAMES: [&str; 6] = [
    "results.jsonl",
    "results.jsonl.gz",
    "results.jsonl.xz",
    "results.json",
    "results.json.gz",
    "results.json.xz",
];

/// One line of a results file: one result of one test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResultRow {
    /// The platform (e.g. `9.6@x86_64`).
    pub platform: String,
    /// The status as reported (`null` → `None`; a status that is not a string is kept as
    /// its JSON text).
    pub status: Option<String>,
    /// The test name as recorded (a duplicate may be renamed `<test> (1)`).
    pub test: String,
    /// The subtest name; `None` for the test's own result.
    pub subtest: Option<String>,
    /// Uploaded files of this result, relative to its directory under `files/`.
    pub files: Vec<String>,
    /// The note (a note that is not a string is kept as its JSON text).
    pub note: Option<String>,
}

/// What to do with a torn last line (no trailing newline and not valid) or a compressed
/// stream cut before its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TornTail {
    /// Report it as an error, like any other bad line.
    #[default]
    Error,
    /// Drop it with a warning (what a crashed writer leaves behind).
    Drop,
}

/// Options of the reader.
#[derive(Debug, Clone, Default)]
pub struct ReadOptions {
    /// What to do with a torn tail.
    pub torn_tail: TornTail,
}

/// Why a results file could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    /// The file (or directory) cannot be read.
    #[error("cannot read {}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A line is not a result row.
    #[error("{}:{line}: bad result row", path.display())]
    BadLine {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        #[source]
        source: RowError,
    },
    /// A directory holds no results file.
    #[error("{}: no results file (looked for {})", dir.display(), RESULTS_FILE_NAMES.join(", "))]
    NoResultsFile {
        /// The directory.
        dir: PathBuf,
    },
    /// A directory holds several results files.
    #[error("{}: several results files ({}); name one", dir.display(), found.join(", "))]
    Ambiguous {
        /// The directory.
        dir: PathBuf,
        /// The file names found.
        found: Vec<String>,
    },
}

/// Why a line is not a result row ([`parse_row`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RowError {
    /// The line is not JSON.
    #[error("invalid JSON")]
    Json(#[source] serde_json::Error),
    /// The line is not a JSON array of 6 items.
    #[error("not a result row: expected a JSON array of 6 items{}", got.map(|n| format!(", got {n}")).unwrap_or_default())]
    NotARow {
        /// How many items the array has, when it is one.
        got: Option<usize>,
    },
    /// An item of the row has the wrong type.
    #[error("{item} must be {expected}, got {got}")]
    Item {
        /// The item (`the platform (item 1)`, …).
        item: &'static str,
        /// What it must be.
        expected: &'static str,
        /// What it is, as JSON.
        got: String,
    },
}

/// A results file and the directory of its uploaded files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResultsLocation {
    /// The results file.
    pub file: PathBuf,
    /// The `files/` directory next to it, when it exists.
    pub files_dir: Option<PathBuf>,
}

/// Resolves a results directory (holding exactly one of [`RESULTS_FILE_NAMES`]) or a
/// results file into the file and its `files/` directory.
pub fn locate(input: &Path) -> Result<ResultsLocation, ReadError> {
    let meta = std::fs::metadata(input).map_err(|source| ReadError::Io {
        path: input.to_path_buf(),
        source,
    })?;
    let (file, dir) = if meta.is_dir() {
        let found: Vec<&str> = RESULTS_FILE_NAMES
            .iter()
            .copied()
            .filter(|n| input.join(n).is_file())
            .collect();
        match found.as_slice() {
            [] => {
                return Err(ReadError::NoResultsFile {
                    dir: input.to_path_buf(),
                });
            }
            [one] => (input.join(one), input.to_path_buf()),
            _ => {
                return Err(ReadError::Ambiguous {
                    dir: input.to_path_buf(),
                    found: found.iter().map(|s| s.to_string()).collect(),
                });
            }
        }
    } else {
        let dir = input
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_path_buf();
        (input.to_path_buf(), dir)
    };
    let files = dir.join(crate::artifacts::FILES_DIR);
    Ok(ResultsLocation {
        file,
        files_dir: files.is_dir().then_some(files),
    })
}

/// Opens a results file, decompressing gzip or xz (detected from the first bytes).
fn open_decoded(path: &Path) -> Result<Box<dyn BufRead + Send>, ReadError> {
    let io = |source| ReadError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = BufReader::new(File::open(path).map_err(io)?);
    let head = file.fill_buf().map_err(io)?;
    Ok(if head.starts_with(&[0x1f, 0x8b]) {
        Box::new(BufReader::new(flate2::bufread::MultiGzDecoder::new(file)))
    } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        Box::new(BufReader::new(
            liblzma::bufread::XzDecoder::new_multi_decoder(file),
        ))
    } else {
        Box::new(file)
    })
}

/// Reads a results file one row at a time. An iterator of `(line number, row)`; after the
/// first error it ends.
pub struct RowReader {
    path: PathBuf,
    input: Box<dyn BufRead + Send>,
    line: usize,
    options: ReadOptions,
    done: bool,
    buf: Vec<u8>,
}

impl std::fmt::Debug for RowReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RowReader")
            .field("path", &self.path)
            .field("line", &self.line)
            .finish()
    }
}

impl RowReader {
    /// Opens `path` (plain, gzip or xz).
    pub fn open(path: &Path, options: &ReadOptions) -> Result<Self, ReadError> {
        Ok(Self {
            input: open_decoded(path)?,
            path: path.to_path_buf(),
            line: 0,
            options: options.clone(),
            done: false,
            buf: Vec::new(),
        })
    }

    fn next_row(&mut self) -> Result<Option<(usize, ResultRow)>, ReadError> {
        loop {
            self.buf.clear();
            let read = self.input.read_until(b'\n', &mut self.buf);
            let n = match read {
                Ok(n) => n,
                Err(e) => {
                    if self.options.torn_tail == TornTail::Drop {
                        tracing::warn!(path = %self.path.display(), line = self.line + 1, error = %crate::error::chain(&e), "results file ends early; dropping the rest");
                        return Ok(None);
                    }
                    return Err(ReadError::Io {
                        path: self.path.clone(),
                        source: e,
                    });
                }
            };
            if n == 0 {
                return Ok(None);
            }
            self.line += 1;
            let complete = self.buf.ends_with(b"\n");
            if self.buf.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            match parse_row(&self.buf) {
                Ok(row) => return Ok(Some((self.line, row))),
                Err(source) => {
                    if !complete && self.options.torn_tail == TornTail::Drop {
                        tracing::warn!(path = %self.path.display(), line = self.line, "dropping the torn last line of the results file");
                        return Ok(None);
                    }
                    return Err(ReadError::BadLine {
                        path: self.path.clone(),
                        line: self.line,
                        source,
                    });
                }
            }
        }
    }
}

impl Iterator for RowReader {
    type Item = Result<(usize, ResultRow), ReadError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.next_row() {
            Ok(Some(row)) => Some(Ok(row)),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

/// Reads every row of a results file (plain, gzip or xz).
pub fn read_rows(path: &Path, options: &ReadOptions) -> Result<Vec<ResultRow>, ReadError> {
    RowReader::open(path, options)?
        .map(|r| r.map(|(_, row)| row))
        .collect()
}

/// A JSON value as an optional string: `null` is `None`, a string itself, anything else
/// its JSON text.
fn opt_text(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// Parses one line into a row.
pub fn parse_row(line: &[u8]) -> Result<ResultRow, RowError> {
    let value: Value = serde_json::from_slice(line).map_err(RowError::Json)?;
    let Value::Array(mut items) = value else {
        return Err(RowError::NotARow { got: None });
    };
    if items.len() != 6 {
        return Err(RowError::NotARow {
            got: Some(items.len()),
        });
    }
    let item = |item, expected, got: &Value| RowError::Item {
        item,
        expected,
        got: got.to_string(),
    };
    let note = opt_text(&items[5]);
    let files = match items[4].take() {
        Value::Null => Vec::new(),
        Value::Array(files) => files
            .into_iter()
            .map(|f| match f {
                Value::String(s) => Ok(s),
                other => Err(item("file names", "strings", &other)),
            })
            .collect::<Result<_, _>>()?,
        other => return Err(item("files (item 5)", "an array", &other)),
    };
    let subtest = match &items[3] {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => return Err(item("the subtest (item 4)", "a string or null", other)),
    };
    let Value::String(test) = items[2].take() else {
        return Err(item("the test name (item 3)", "a string", &items[2]));
    };
    let status = opt_text(&items[1]);
    let Value::String(platform) = items[0].take() else {
        return Err(item("the platform (item 1)", "a string", &items[0]));
    };
    Ok(ResultRow {
        platform,
        status,
        test,
        subtest,
        files,
        note,
    })
}

/// The complete lines of a results file that a killed writer may have left torn.
#[derive(Debug, Clone, Default)]
pub struct GoodLines {
    /// Each complete line (with its newline) and its row; blank lines are left out.
    pub lines: Vec<(Vec<u8>, ResultRow)>,
    /// A torn last line or a cut compressed stream was dropped.
    pub torn: bool,
}

/// Reads the complete lines of a results file (plain, gzip or xz) for resuming a run: a
/// last line without its newline is dropped with a warning, and a compressed stream cut
/// before its end (a writer killed mid-member) is read up to the last complete line. A
/// complete line that is not a result row is an error ([`ReadError::BadLine`]): that is
/// damage, not a crash.
pub fn read_good_lines(path: &Path) -> Result<GoodLines, ReadError> {
    let mut input = open_decoded(path)?;
    let mut out = GoodLines::default();
    let mut line = 0;
    loop {
        let mut buf = Vec::new();
        match input.read_until(b'\n', &mut buf) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(path = %path.display(), line = line + 1, error = %crate::error::chain(&e),
                    "results file ends early (cut compressed stream); reading up to its last complete line");
                out.torn = true;
                break;
            }
        }
        line += 1;
        if !buf.ends_with(b"\n") {
            tracing::warn!(path = %path.display(), line, "dropping the torn last line of the results file");
            out.torn = true;
            break;
        }
        if buf.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let row = parse_row(&buf).map_err(|source| ReadError::BadLine {
            path: path.to_path_buf(),
            line,
            source,
        })?;
        out.lines.push((buf, row));
    }
    Ok(out)
}

/// Reads a whole (possibly compressed) file into memory; for callers that need the bytes.
pub fn read_decoded(path: &Path) -> Result<Vec<u8>, ReadError> {
    let mut out = Vec::new();
    open_decoded(path)?
        .read_to_end(&mut out)
        .map_err(|source| ReadError::Io {
            path: path.to_path_buf(),
            source,
        })?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    const GOOD: &str = "[\"p\", \"pass\", \"/a\", null, [], null]\n\
                        [\"p\", \"fail\", \"/a\", \"s/1\", [\"x.log\"], \"why\"]\n\
                        \n\
                        [\"q\", null, \"/b\", null, [], {\"k\": 1}]\n";

    fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, bytes).expect("write");
        p
    }

    #[test]
    fn plain_gzip_xz_read_alike() {
        let dir = tempfile::tempdir().expect("tmp");
        let plain = write(dir.path(), "r.jsonl", GOOD.as_bytes());
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
        gz.write_all(GOOD.as_bytes()).expect("gz");
        let gz = write(dir.path(), "r.gz", &gz.finish().expect("gz"));
        let mut xz = liblzma::write::XzEncoder::new(Vec::new(), 6);
        xz.write_all(GOOD.as_bytes()).expect("xz");
        let xz = write(dir.path(), "r.xz", &xz.finish().expect("xz"));
        let want = read_rows(&plain, &ReadOptions::default()).expect("plain");
        assert_eq!(want.len(), 3);
        assert_eq!(want[2].note.as_deref(), Some("{\"k\":1}"));
        assert_eq!(want[2].status, None);
        assert_eq!(want[1].files, ["x.log"]);
        for p in [gz, xz] {
            assert_eq!(read_rows(&p, &ReadOptions::default()).expect("read"), want);
        }
    }

    #[test]
    fn bad_lines_name_file_and_line() {
        let dir = tempfile::tempdir().expect("tmp");
        for (text, line, needle) in [
            (
                "[\"p\", \"pass\", \"/a\", null, [], null]\nnope\n",
                2,
                "invalid JSON",
            ),
            ("\n\n[\"p\", \"pass\", 3, null, [], null]\n", 3, "test name"),
            ("[\"p\", \"pass\", \"/a\", null, \"x\", null]\n", 1, "files"),
            (
                "[\"p\", \"pass\", \"/a\", null, [1], null]\n",
                1,
                "file names",
            ),
            ("[\"p\", \"pass\", \"/a\", 7, [], null]\n", 1, "subtest"),
            ("[1, \"pass\", \"/a\", null, [], null]\n", 1, "platform"),
            ("[\"p\", \"pass\", \"/a\", null, []]\n", 1, "got 5"),
            (
                "[\"p\", \"pass\", \"/a\", null, [], null]\n[\"p\", \"pa",
                2,
                "invalid JSON",
            ),
        ] {
            let p = write(dir.path(), "r.jsonl", text.as_bytes());
            let err = read_rows(&p, &ReadOptions::default()).expect_err(text);
            match &err {
                ReadError::BadLine {
                    line: l, source, ..
                } => {
                    assert_eq!(*l, line, "{text}");
                    let message = crate::error::chain(source).to_string();
                    assert!(message.contains(needle), "{text}: {message}");
                }
                other => panic!("{text}: {other:?}"),
            }
            assert!(
                err.to_string()
                    .starts_with(&format!("{}:{line}: ", p.display()))
            );
        }
    }

    #[test]
    fn torn_tail_dropped_on_request() {
        let dir = tempfile::tempdir().expect("tmp");
        let p = write(
            dir.path(),
            "r.jsonl",
            b"[\"p\", \"pass\", \"/a\", null, [], null]\n[\"p\", \"fa",
        );
        let opts = ReadOptions {
            torn_tail: TornTail::Drop,
        };
        assert_eq!(read_rows(&p, &opts).expect("drop").len(), 1);
        // A bad line that is complete is an error even then.
        let p = write(
            dir.path(),
            "r.jsonl",
            b"[\"p\", \"fa\n[\"p\", \"pass\", \"/a\", null, [], null]\n",
        );
        assert!(read_rows(&p, &opts).is_err());
        // A cut xz stream.
        let mut xz = liblzma::write::XzEncoder::new(Vec::new(), 6);
        xz.write_all(GOOD.as_bytes()).expect("xz");
        let full = xz.finish().expect("xz");
        let p = write(dir.path(), "r.xz", &full[..full.len() - 12]);
        assert!(read_rows(&p, &ReadOptions::default()).is_err());
        assert!(read_rows(&p, &opts).is_ok());
    }

    #[test]
    fn good_lines_drop_a_torn_tail_and_a_cut_stream() {
        let dir = tempfile::tempdir().expect("tmp");
        let p = write(dir.path(), "r", format!("{GOOD}[\"p\", \"pa").as_bytes());
        let good = read_good_lines(&p).expect("read");
        assert!(good.torn);
        assert_eq!(good.lines.len(), 3);
        assert_eq!(
            good.lines[2].0,
            b"[\"q\", null, \"/b\", null, [], {\"k\": 1}]\n"
        );
        let p = write(dir.path(), "r2", GOOD.as_bytes());
        let good = read_good_lines(&p).expect("read");
        assert!(!good.torn);
        assert_eq!(good.lines.len(), 3);
        // A complete bad line is damage, not a crash.
        let p = write(
            dir.path(),
            "r3",
            b"{}\n[\"p\", \"pass\", \"/a\", null, [], null]\n",
        );
        assert!(matches!(
            read_good_lines(&p),
            Err(ReadError::BadLine { line: 1, .. })
        ));
        // A sync-flushed xz stream cut before its end: the flushed lines are read.
        let mut xz = liblzma::write::XzEncoder::new(Vec::new(), 6);
        xz.write_all(GOOD.as_bytes()).expect("xz");
        xz.flush().expect("flush");
        let _ = xz.write(&[]).expect("drain");
        let flushed = xz.get_ref().len();
        xz.write_all(b"[\"p\", \"pass\", \"/c\", null, [], null]\n")
            .expect("xz");
        let full = xz.finish().expect("xz");
        let p = write(dir.path(), "r.xz", &full[..flushed + 3]);
        let good = read_good_lines(&p).expect("read");
        assert!(good.torn);
        assert_eq!(good.lines.len(), 3);
        // The same with gzip.
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
        gz.write_all(GOOD.as_bytes()).expect("gz");
        gz.flush().expect("flush");
        let flushed = gz.get_ref().len();
        let p = write(dir.path(), "r.gz", &gz.get_ref()[..flushed]);
        let good = read_good_lines(&p).expect("read");
        assert!(good.torn);
        assert_eq!(good.lines.len(), 3);
    }

    #[test]
    fn locate_dirs_and_files() {
        let dir = tempfile::tempdir().expect("tmp");
        let err = locate(dir.path()).expect_err("empty");
        assert!(matches!(err, ReadError::NoResultsFile { .. }), "{err}");
        let f = write(dir.path(), "results.jsonl.xz", b"");
        let loc = locate(dir.path()).expect("one");
        assert_eq!(loc.file, f);
        assert_eq!(loc.files_dir, None);
        std::fs::create_dir(dir.path().join("files")).expect("mkdir");
        assert_eq!(
            locate(&f).expect("file").files_dir,
            Some(dir.path().join("files"))
        );
        write(dir.path(), "results.jsonl", b"");
        assert!(matches!(
            locate(dir.path()),
            Err(ReadError::Ambiguous { .. })
        ));
        assert!(matches!(
            locate(&dir.path().join("nope")),
            Err(ReadError::Io { .. })
        ));
    }
}
