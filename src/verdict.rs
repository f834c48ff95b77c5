//! The verdict of one test attempt: one status, computed once from what the attempt wrote,
//! and used by everything that judges a test (run events, summaries, rerun and destructive
//! policies, the exit code of `atex run`).
//!
//! # How an attempt is judged
//!
//! 1. An attempt that did not run to the end (the executor returned an error: timeout,
//!    broken control stream, lost connection, cancellation, a failed setup) is
//!    [`Verdict::Infra`], whatever it reported before: the harness could not finish it.
//! 2. Otherwise the verdict is the worst status among the attempt's result lines (the
//!    artifacts' [`results`](crate::artifacts::RESULTS_FILE) file, the executor →
//!    aggregator contract, so this works for every executor), in the order
//!
//!    `infra` > `error` > `fail` > `warn` > `pass` > `info` > `skip`.
//!
//!    A subtest that failed fails its test; a test that reported `pass` and `skip` lines
//!    passed; `info` is a note that was judged by nobody, ranked below `pass` so that it
//!    never hides one, and above `skip` because something ran.
//! 3. Lines without a `status` (or with `null`) judge nothing. Only when no line has a
//!    status does the exit code decide: `pass` for 0, `fail` otherwise.
//!
//! A status atex does not know (the test-control protocol allows custom values) counts as
//! `error`: atex cannot tell whether it passed, so it must not say it did. The results file
//! keeps the original value. A status that is not a string counts the same way.
//!
//! A results file that cannot be read, or holds a line that is not a JSON object, is an
//! error ([`ResultsError`]); orchestrators then judge the attempt [`Verdict::Infra`].
//!
//! ```
//! use atex::verdict::Verdict;
//!
//! let reported = [Verdict::Pass, Verdict::Fail, Verdict::Info];
//! assert_eq!(reported.into_iter().max(), Some(Verdict::Fail));
//! // A test that reported `fail` and exited 0 failed.
//! assert_eq!(Verdict::of_attempt(Some(Verdict::Fail), Some(0)), Verdict::Fail);
//! // No results: the exit code decides.
//! assert_eq!(Verdict::of_attempt(None, Some(3)), Verdict::Fail);
//! // Aborted: infra, whatever was reported.
//! assert_eq!(Verdict::of_attempt(Some(Verdict::Pass), None), Verdict::Infra);
//! assert_eq!(Verdict::from_reported("custom"), Verdict::Error);
//! assert_eq!(Verdict::Warn.to_string(), "warn");
//! assert!(Verdict::Skip.passed() && !Verdict::Warn.passed());
//! ```

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// How one test attempt ended. Ordered from best to worst, so `max` is "the worst of".
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// The test was skipped.
    Skip,
    /// Information only; nothing was judged.
    Info,
    /// The test passed.
    Pass,
    /// The test passed with a warning (counts as not passed).
    Warn,
    /// The test failed.
    Fail,
    /// The test itself errored (or reported a status atex does not know).
    Error,
    /// The harness could not finish the test (aborted, lost connection, cancelled).
    Infra,
}

impl Verdict {
    /// Every verdict, best first.
    pub const ALL: [Verdict; 7] = [
        Verdict::Skip,
        Verdict::Info,
        Verdict::Pass,
        Verdict::Warn,
        Verdict::Fail,
        Verdict::Error,
        Verdict::Infra,
    ];

    /// The status as written in results files (`pass`, `fail`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Skip => "skip",
            Verdict::Info => "info",
            Verdict::Pass => "pass",
            Verdict::Warn => "warn",
            Verdict::Fail => "fail",
            Verdict::Error => "error",
            Verdict::Infra => "infra",
        }
    }

    /// The verdict named by a known status, `None` for any other string.
    pub fn parse(status: &str) -> Option<Verdict> {
        Verdict::ALL.into_iter().find(|v| v.as_str() == status)
    }

    /// The verdict of a status a test reported: a known status is itself, an unknown
    /// (custom) one counts as [`Verdict::Error`] (see the [module docs](self)).
    pub fn from_reported(status: &str) -> Verdict {
        Verdict::parse(status).unwrap_or(Verdict::Error)
    }

    /// The verdict of an exit code alone: `pass` for 0, `fail` otherwise.
    pub fn from_exit_code(code: i32) -> Verdict {
        if code == 0 {
            Verdict::Pass
        } else {
            Verdict::Fail
        }
    }

    /// Whether this counts as passed: `pass`, `info` or `skip`.
    pub fn passed(self) -> bool {
        self <= Verdict::Pass
    }

    /// The worse of two verdicts.
    pub fn worst(self, other: Verdict) -> Verdict {
        self.max(other)
    }

    /// The verdict of one attempt: `results` is the worst status of its result lines
    /// ([`read_results`]), `exit_code` is `None` when the attempt did not run to the end.
    pub fn of_attempt(results: Option<Verdict>, exit_code: Option<i32>) -> Verdict {
        match exit_code {
            None => Verdict::Infra,
            Some(code) => results.unwrap_or_else(|| Verdict::from_exit_code(code)),
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// A string that names no [`Verdict`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{0}' is not a test status (known: skip, info, pass, warn, fail, error, infra)")]
pub struct UnknownStatus(pub String);

impl FromStr for Verdict {
    type Err = UnknownStatus;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Verdict::parse(s).ok_or_else(|| UnknownStatus(s.to_string()))
    }
}

/// A results file that cannot be judged.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ResultsError {
    /// The file cannot be read.
    #[error("cannot read {}", path.display())]
    Io {
        /// The results file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A line is not a JSON object.
    #[error("{}:{line}: {}", path.display(), if *object { "a result must be a JSON object" } else { "invalid JSON" })]
    BadLine {
        /// The results file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// The line is JSON, but not an object.
        object: bool,
        /// The parser's error.
        #[source]
        source: serde_json::Error,
    },
}

/// The worst status among the result lines of a results file, `None` when no line has a
/// status. Blank lines are skipped, as aggregators do. Reads the file once.
pub fn read_results(path: &Path) -> Result<Option<Verdict>, ResultsError> {
    let bytes = std::fs::read(path).map_err(|source| ResultsError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    lines_verdict(&bytes).map_err(|(line, source)| ResultsError::BadLine {
        path: path.to_path_buf(),
        line,
        object: source.is_data(),
        source,
    })
}

/// [`read_results`] on the file's bytes; errors are `(line, parser error)`.
pub(crate) fn lines_verdict(bytes: &[u8]) -> Result<Option<Verdict>, (usize, serde_json::Error)> {
    let mut worst: Option<Verdict> = None;
    for (idx, line) in bytes.split(|b| *b == b'\n').enumerate() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let StatusOf(status) = serde_json::from_slice(line).map_err(|e| (idx + 1, e))?;
        let verdict = match status {
            None | Some(Value::Null) => continue,
            Some(Value::String(s)) => {
                let v = Verdict::from_reported(&s);
                if v == Verdict::Error && s != "error" {
                    tracing::debug!(status = %s, "unknown result status counts as error");
                }
                v
            }
            Some(_) => Verdict::Error,
        };
        worst = Some(worst.map_or(verdict, |w| w.worst(verdict)));
    }
    Ok(worst)
}

/// The `status` of one result line, which must be a JSON object; every other key is
/// skipped without being built (a line with many or large keys costs a scan, not a tree).
struct StatusOf(Option<Value>);

impl<'de> Deserialize<'de> for StatusOf {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = StatusOf;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<StatusOf, A::Error> {
                let mut status = None;
                while let Some(IsStatus(is_status)) = map.next_key()? {
                    if is_status {
                        // The last one wins, as for aggregators.
                        status = Some(map.next_value::<Value>()?);
                    } else {
                        map.next_value::<serde::de::IgnoredAny>()?;
                    }
                }
                Ok(StatusOf(status))
            }
        }
        d.deserialize_map(Visit)
    }
}

/// Whether an object key is `status`, decided without allocating the key.
struct IsStatus(bool);

impl<'de> Deserialize<'de> for IsStatus {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl serde::de::Visitor<'_> for Visit {
            type Value = IsStatus;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object key")
            }

            fn visit_str<E: serde::de::Error>(self, key: &str) -> Result<IsStatus, E> {
                Ok(IsStatus(key == "status"))
            }
        }
        d.deserialize_str(Visit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_and_names() {
        let mut sorted = Verdict::ALL;
        sorted.sort();
        assert_eq!(sorted, Verdict::ALL);
        assert_eq!(Verdict::Infra.worst(Verdict::Error), Verdict::Infra);
        assert_eq!(Verdict::Error.worst(Verdict::Fail), Verdict::Error);
        assert_eq!(Verdict::Warn.worst(Verdict::Fail), Verdict::Fail);
        assert_eq!(Verdict::Pass.worst(Verdict::Warn), Verdict::Warn);
        assert_eq!(Verdict::Info.worst(Verdict::Pass), Verdict::Pass);
        assert_eq!(Verdict::Skip.worst(Verdict::Info), Verdict::Info);
        for v in Verdict::ALL {
            assert_eq!(v.as_str().parse::<Verdict>(), Ok(v));
            assert_eq!(v.to_string(), v.as_str());
            assert_eq!(
                serde_json::to_string(&v).expect("json"),
                format!("\"{}\"", v.as_str())
            );
        }
        assert_eq!(format!("{:>6}|", Verdict::Pass), "  pass|");
        assert!("PASS".parse::<Verdict>().is_err());
        let passed: Vec<Verdict> = Verdict::ALL.into_iter().filter(|v| v.passed()).collect();
        assert_eq!(passed, [Verdict::Skip, Verdict::Info, Verdict::Pass]);
    }

    #[test]
    fn worst_line_wins() {
        let v = |text: &str| {
            lines_verdict(text.as_bytes()).map_err(|(line, source)| {
                let object = source.is_data();
                let e = ResultsError::BadLine {
                    path: "r".into(),
                    line,
                    object,
                    source,
                };
                (line, e.to_string())
            })
        };
        assert_eq!(v(""), Ok(None));
        assert_eq!(v("\n  \n"), Ok(None));
        assert_eq!(v("{\"status\": \"pass\"}\n"), Ok(Some(Verdict::Pass)));
        assert_eq!(
            v("{\"name\": \"sub\", \"status\": \"fail\"}\n{\"status\": \"pass\"}\n"),
            Ok(Some(Verdict::Fail))
        );
        assert_eq!(
            v("{\"status\": \"skip\"}\n{\"status\": \"info\"}"),
            Ok(Some(Verdict::Info))
        );
        assert_eq!(
            v("{\"status\": \"error\"}\n{\"status\": \"infra\", \"note\": \"x\"}\n"),
            Ok(Some(Verdict::Infra))
        );
        // Status-less and null statuses judge nothing.
        assert_eq!(v("{}\n{\"status\": null, \"a\": 1}\n"), Ok(None));
        assert_eq!(
            v("{\"attr\": 1}\n{\"status\": \"warn\"}\n"),
            Ok(Some(Verdict::Warn))
        );
        // Unknown and non-string statuses count as error.
        assert_eq!(v("{\"status\": \"xfail\"}\n"), Ok(Some(Verdict::Error)));
        assert_eq!(v("{\"status\": 3}\n"), Ok(Some(Verdict::Error)));
        // Other keys of any shape are skipped; an escaped key is still recognised; the
        // last `status` wins, as in aggregators.
        assert_eq!(
            v("{\"files\": [{\"a\": [1, {}]}], \"note\": \"x\\n\", \"status\": \"warn\"}"),
            Ok(Some(Verdict::Warn))
        );
        assert_eq!(v("{\"st\\u0061tus\": \"fail\"}"), Ok(Some(Verdict::Fail)));
        assert_eq!(
            v("{\"status\": \"fail\", \"status\": \"pass\"}"),
            Ok(Some(Verdict::Pass))
        );
        assert_eq!(
            v("{\"status\": \"xfail\"}\n{\"status\": \"infra\"}\n"),
            Ok(Some(Verdict::Infra))
        );
    }

    #[test]
    fn bad_lines_are_errors_with_their_line() {
        let v = |text: &str| {
            lines_verdict(text.as_bytes()).map_err(|(line, source)| {
                let object = source.is_data();
                let e = ResultsError::BadLine {
                    path: "r".into(),
                    line,
                    object,
                    source,
                };
                (line, e.to_string())
            })
        };
        let (line, msg) = v("{\"status\": \"pass\"}\n\nnot json\n").expect_err("bad");
        assert_eq!(line, 3);
        assert!(msg.contains("invalid JSON"), "{msg}");
        let (line, msg) = v("[\"pass\"]\n").expect_err("array");
        assert_eq!(line, 1);
        assert!(msg.contains("JSON object"), "{msg}");
        // A torn last line, trailing garbage.
        assert!(v("{\"status\": \"pass\"}\n{\"stat").is_err());
        assert!(v("{\"status\": \"pass\"} x\n").is_err());
    }

    #[test]
    fn read_results_names_the_file() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("results");
        let err = read_results(&path).expect_err("missing");
        assert!(matches!(err, ResultsError::Io { .. }));
        assert!(err.to_string().contains("results"), "{err}");
        std::fs::write(&path, "{\"status\": \"fail\"}\n").expect("write");
        assert_eq!(read_results(&path).expect("read"), Some(Verdict::Fail));
        std::fs::write(&path, "x\n").expect("write");
        let err = read_results(&path).expect_err("bad");
        assert!(
            err.to_string()
                .starts_with(&format!("{}:1:", path.display()))
        );
    }

    #[test]
    fn attempts() {
        assert_eq!(Verdict::of_attempt(None, Some(0)), Verdict::Pass);
        assert_eq!(Verdict::of_attempt(None, Some(1)), Verdict::Fail);
        assert_eq!(
            Verdict::of_attempt(Some(Verdict::Fail), Some(0)),
            Verdict::Fail
        );
        assert_eq!(
            Verdict::of_attempt(Some(Verdict::Pass), Some(1)),
            Verdict::Pass
        );
        assert_eq!(
            Verdict::of_attempt(Some(Verdict::Skip), Some(0)),
            Verdict::Skip
        );
        assert_eq!(Verdict::of_attempt(None, None), Verdict::Infra);
        assert_eq!(
            Verdict::of_attempt(Some(Verdict::Pass), None),
            Verdict::Infra
        );
    }
}
