//! Aggregators ingest finished tests' [artifacts](crate::artifacts) and record them.
//!
//! [`Aggregator::ingest`] consumes (moves or deletes) one test's artifacts and records them
//! under a platform (a free string such as `9.6@x86_64`) and the test name. It may be called
//! concurrently. An ingest that fails returns its error to the caller — it is never only
//! logged — and leaves the artifacts in place so the ingest can be retried.
//! [`Aggregator::finish`] writes trailers and closes outputs.
//!
//! Implementations: [`JsonlAggregator`] (plain, gzip or xz), [`YamlAggregator`] (upstream's
//! YAML documents), [`ReportAggregator`] (JUnit XML and a self-contained HTML report, kept
//! up to date during a run), `ReportPortalAggregator` (feature `reportportal`) and
//! [`MultiAggregator`] (several at once; one failing output does not stop the others).
//! [`Report`] is the model the JUnit and HTML writers render; it is also built from results
//! files ([`Report::add_results`], `atex report`).

pub mod html;
mod jsonl;
pub mod junit;
mod line_file;
mod live;
pub mod model;
mod multi;
mod names;
#[cfg(feature = "reportportal")]
pub mod reportportal;
pub mod yaml;

pub use jsonl::{Compression, JsonlAggregator, JsonlOptions};
pub use live::{ReportAggregator, ReportOutputs, write_atomic};
pub use model::{Attempt, Counts, Line, Report, TestEntry, relative_to, verdict_index};
pub use multi::MultiAggregator;
#[cfg(feature = "reportportal")]
pub use reportportal::ReportPortalAggregator;
pub use yaml::{YamlAggregator, YamlOptions};

use std::fmt;
use std::path::{Path, PathBuf};

use async_trait::async_trait;

use crate::error::BoxError;

/// Errors of aggregators. `Display` says what failed; the cause is the
/// [`source`](std::error::Error::source).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AggregatorError {
    /// The (platform, test) pair was ingested before and duplicates are not allowed.
    #[error("'{test}' was already ingested once for '{platform}'")]
    Duplicate {
        /// The platform.
        platform: String,
        /// The test.
        test: String,
    },
    /// The artifacts have no results file.
    #[error("{0}: no results file")]
    MissingResults(PathBuf),
    /// A results line is not valid.
    #[error("{}, line {line}: bad result", path.display())]
    BadResult {
        /// The results file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        #[source]
        source: ResultLineError,
    },
    /// The destination of the uploaded files exists already.
    #[error("{0} already exists")]
    DestinationExists(PathBuf),
    /// An output could not be created or written.
    #[error("{context}")]
    Io {
        /// What was being done.
        context: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The aggregator was finished already.
    #[error("the aggregator was finished already")]
    Finished,
    /// An existing results file could not be read back to append to it.
    #[error("cannot reopen the results file")]
    Reopen(#[source] crate::results::ReadError),
    /// Bad configuration.
    #[error("{0}")]
    Config(String),
    /// Some outputs of a [`MultiAggregator`] failed; the others recorded the test. Several
    /// causes: the message lists each failing output with its whole error chain.
    #[error("{} of {total} outputs failed: {}", failures.len(), failures.iter().map(|(n, e)| format!("{n}: {}", crate::error::chain(e))).collect::<Vec<_>>().join("; "))]
    Outputs {
        /// How many outputs there are.
        total: usize,
        /// (name, error) of each failing output.
        failures: Vec<(String, AggregatorError)>,
    },
    /// A remote reporting service failed.
    #[error("{service} failed")]
    Remote {
        /// The service (`ReportPortal`, …).
        service: String,
        /// The cause.
        #[source]
        source: BoxError,
    },
}

/// Why a line of a test's `results` file is not a result.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ResultLineError {
    /// The line is not JSON.
    #[error("invalid JSON")]
    Json(#[source] serde_json::Error),
    /// The line is JSON but not an object.
    #[error("a result must be a JSON object")]
    NotAnObject,
    /// The `files` key is not an array.
    #[error("'files' must be an array")]
    FilesNotArray,
}

impl AggregatorError {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        AggregatorError::Io {
            context: context.into(),
            source,
        }
    }

    /// [`Remote`](Self::Remote): the reporting service `service` failed with `source`.
    pub fn remote(service: impl Into<String>, source: impl Into<BoxError>) -> Self {
        AggregatorError::Remote {
            service: service.into(),
            source: source.into(),
        }
    }
}

/// Ingests finished tests' artifacts.
///
/// # Contract
///
/// What every implementation guarantees (checked by
/// `atex::testing::conformance::aggregator`, feature `conformance`):
///
/// * [`ingest`](Aggregator::ingest) records every result line of the artifacts' `results`
///   file under `platform` and `test`, and moves the `files/` tree (contents, modes,
///   symlinks) to the aggregator's storage; the artifacts are consumed.
/// * An ingest is all or nothing: missing results
///   ([`AggregatorError::MissingResults`]), a bad line, a duplicate or any failure leave
///   nothing recorded and the artifacts untouched, so the same ingest can be retried.
/// * A second ingest of a (platform, test) pair fails with [`AggregatorError::Duplicate`]
///   unless duplicates are allowed; then it is recorded as `<test> (1)`, `<test> (2)`, …
/// * Ingests may run concurrently; each is recorded whole.
/// * After [`finish`](Aggregator::finish), ingests fail and leave the artifacts alone.
#[async_trait]
pub trait Aggregator: Send + Sync + fmt::Debug {
    /// Records the artifacts in `artifacts` under `platform` and `test`, consuming them.
    ///
    /// # Cancel safety
    ///
    /// Await it to its end: a dropped ingest is not guaranteed to be retryable. (The JSONL
    /// and YAML aggregators run the work on a blocking task the scope tree tracks, which
    /// still ends whole or not at all; a remote service's aggregator may stop half-way.)
    async fn ingest(
        &self,
        platform: &str,
        test: &str,
        artifacts: &Path,
    ) -> Result<(), AggregatorError>;

    /// Ingests like [`ingest`](Aggregator::ingest), with the attempt's result lines given
    /// as `lines` (the bytes a `results` file would hold) instead of in
    /// `artifacts/results`, which does not exist (see
    /// [`Executor::run_test_lines`](crate::executor::Executor::run_test_lines)). The
    /// contract is `ingest`'s: on failure nothing is recorded and the artifacts are left as
    /// they were (still without a `results` file), so the same call can be retried.
    ///
    /// The default writes that file, calls `ingest`, and removes the file again when the
    /// ingest fails; the JSONL aggregator reads the lines from memory.
    ///
    /// # Cancel safety
    ///
    /// As [`ingest`](Aggregator::ingest).
    async fn ingest_lines(
        &self,
        platform: &str,
        test: &str,
        artifacts: &Path,
        lines: &[u8],
    ) -> Result<(), AggregatorError> {
        let path = artifacts.join(crate::artifacts::RESULTS_FILE);
        let bytes = lines.to_vec();
        let written = crate::scope::spawn_blocking("write-results", move || {
            use std::io::Write as _;
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
                .and_then(|mut f| f.write_all(&bytes))
                .map_err(|e| AggregatorError::io(format!("writing {}", path.display()), e))
        })
        .await
        .unwrap_or_else(|e| {
            Err(AggregatorError::io(
                "writing the results",
                std::io::Error::other(e),
            ))
        });
        written?;
        let ingested = self.ingest(platform, test, artifacts).await;
        if ingested.is_err() {
            let path = artifacts.join(crate::artifacts::RESULTS_FILE);
            if let Err(e) = std::fs::remove_file(&path)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(path = %path.display(), error = %crate::error::chain(&e), "could not remove the results of a failed ingest");
            }
        }
        ingested
    }

    /// Writes trailers and closes outputs. Later ingests fail.
    async fn finish(&self) -> Result<(), AggregatorError>;
}

/// Lets `aggregator` ingest `artifacts`: with the result lines `lines` in memory when given
/// ([`Aggregator::ingest_lines`]), from the `results` file otherwise ([`Aggregator::ingest`]).
pub(crate) async fn ingest_with(
    aggregator: &dyn Aggregator,
    platform: &str,
    test: &str,
    artifacts: &Path,
    lines: Option<&[u8]>,
) -> Result<(), AggregatorError> {
    match lines {
        Some(lines) => {
            aggregator
                .ingest_lines(platform, test, artifacts, lines)
                .await
        }
        None => aggregator.ingest(platform, test, artifacts).await,
    }
}
