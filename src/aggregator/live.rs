//! [`ReportAggregator`]: JUnit XML and HTML reports kept up to date while a run goes on.

use std::fmt;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::model::{Attempt, Line, Report};
use super::yaml::read_result_objects;
use super::{Aggregator, AggregatorError, html, junit};
use crate::artifacts::{ArtifactsDir, normalize_name};

/// What [`ReportAggregator`] writes.
#[derive(Debug, Clone)]
pub struct ReportOutputs {
    /// JUnit XML file.
    pub junit: Option<PathBuf>,
    /// HTML file.
    pub html: Option<PathBuf>,
    /// Where the run's uploaded files end up (the JSONL aggregator's `files/`), for the
    /// links and attached output: `<files_dir>/<platform>/<test>/…`.
    pub files_dir: Option<PathBuf>,
    /// Title of the HTML page.
    pub title: String,
    /// Rewrite the reports at most this often while the run goes on (default 2 s); they
    /// are always written at [`finish`](Aggregator::finish).
    pub min_interval: Duration,
}

impl Default for ReportOutputs {
    fn default() -> Self {
        Self {
            junit: None,
            html: None,
            files_dir: None,
            title: "atex results".into(),
            min_interval: Duration::from_secs(2),
        }
    }
}

struct State {
    report: Report,
    finished: bool,
    dirty: bool,
    last_write: Option<Instant>,
}

struct Inner {
    outputs: ReportOutputs,
    state: Mutex<State>,
    /// Held while the files are written.
    writing: tokio::sync::Mutex<()>,
}

/// Keeps a JUnit XML file and a self-contained HTML report up to date as results arrive.
///
/// Each ingest reads the artifacts' `results` (and deletes that file) and adds the test to
/// the [`Report`]; the uploaded files are left alone — put this aggregator before the one
/// that keeps the files (a [`JsonlAggregator`](super::JsonlAggregator)) in a
/// [`MultiAggregator`](super::MultiAggregator) and point
/// [`files_dir`](ReportOutputs::files_dir) at that one's files directory. The reports are
/// rewritten atomically (a temporary file renamed over the old one, so a reader never
/// sees half a file) at most every [`min_interval`](ReportOutputs::min_interval), and at
/// [`finish`](Aggregator::finish); while the run goes on the HTML page says so and reloads
/// itself. Ingesting (platform, test) again records another attempt; attempts that a rerun
/// superseded go through [`superseded`](Self::superseded) (an orchestrator's old-results
/// aggregator) and show as reruns.
#[derive(Clone)]
pub struct ReportAggregator {
    inner: Arc<Inner>,
}

impl fmt::Debug for ReportAggregator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReportAggregator")
            .field("outputs", &self.inner.outputs)
            .finish()
    }
}

/// Writes `bytes` to `path` atomically: a temporary file in the same directory, renamed
/// over `path` (its directory is created if missing); readable by everyone.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".atex-report-")
        .tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.flush()?;
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o644))?;
    }
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// Renders and writes the configured outputs for `report`.
fn write_outputs(
    outputs: &ReportOutputs,
    report: &Report,
    in_progress: bool,
) -> Result<(), AggregatorError> {
    let dir_of = |p: &Path| {
        p.parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_path_buf()
    };
    if let Some(path) = &outputs.junit {
        let opts = junit::JunitOptions {
            base_dir: dir_of(path),
            ..Default::default()
        };
        write_atomic(path, junit::render(report, &opts).as_bytes())
            .map_err(|e| AggregatorError::io(format!("writing {}", path.display()), e))?;
    }
    if let Some(path) = &outputs.html {
        let opts = html::HtmlOptions {
            title: outputs.title.clone(),
            base_dir: dir_of(path),
            in_progress,
        };
        write_atomic(path, html::render(report, &opts).as_bytes())
            .map_err(|e| AggregatorError::io(format!("writing {}", path.display()), e))?;
    }
    Ok(())
}

impl ReportAggregator {
    /// Writes the (empty) reports at once, so that a path that cannot be written is an
    /// error before the run starts.
    pub fn create(outputs: ReportOutputs) -> Result<Self, AggregatorError> {
        if outputs.junit.is_none() && outputs.html.is_none() {
            return Err(AggregatorError::Config(
                "ReportAggregator needs a JUnit or an HTML output".into(),
            ));
        }
        write_outputs(&outputs, &Report::new(), true)?;
        Ok(Self {
            inner: Arc::new(Inner {
                outputs,
                state: Mutex::new(State {
                    report: Report::new(),
                    finished: false,
                    dirty: false,
                    last_write: Some(Instant::now()),
                }),
                writing: tokio::sync::Mutex::new(()),
            }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A snapshot of the report so far.
    pub fn report(&self) -> Report {
        self.lock().report.clone()
    }

    /// The aggregator for attempts that a rerun superseded (give it to an orchestrator as
    /// its old-results aggregator): their results show as earlier attempts.
    pub fn superseded(&self) -> Arc<dyn Aggregator> {
        Arc::new(Superseded { live: self.clone() })
    }

    /// Sets the durations of the attempts of (`platform`, `test`), oldest first (see
    /// [`Report::set_durations`]); they show from the next write on.
    pub fn set_durations(&self, platform: &str, test: &str, durations: &[Duration]) {
        let mut st = self.lock();
        st.report.set_durations(platform, test, durations);
        st.dirty = true;
    }

    /// Writes the reports now (waiting for a write in progress).
    pub async fn write_now(&self) -> Result<(), AggregatorError> {
        self.write(true).await
    }

    /// Writes the reports if `wait` or nobody else is writing.
    async fn write(&self, wait: bool) -> Result<(), AggregatorError> {
        let _guard = if wait {
            self.inner.writing.lock().await
        } else {
            match self.inner.writing.try_lock() {
                Ok(g) => g,
                Err(_) => return Ok(()),
            }
        };
        let (report, in_progress) = {
            let mut st = self.lock();
            st.dirty = false;
            st.last_write = Some(Instant::now());
            (st.report.clone(), !st.finished)
        };
        let inner = self.inner.clone();
        crate::scope::spawn_blocking("report-write", move || {
            write_outputs(&inner.outputs, &report, in_progress)
        })
        .await
        .unwrap_or_else(|e| {
            Err(AggregatorError::io(
                "report writer failed",
                std::io::Error::other(e),
            ))
        })
    }

    async fn add(
        &self,
        platform: &str,
        test: &str,
        artifacts: &Path,
        superseded: bool,
    ) -> Result<(), AggregatorError> {
        if self.lock().finished {
            return Err(AggregatorError::Finished);
        }
        let art = ArtifactsDir::new(artifacts);
        let results = art.results();
        let objects = {
            let results = results.clone();
            crate::scope::spawn_blocking("report-read", move || read_result_objects(&results))
                .await
                .unwrap_or_else(|e| {
                    Err(AggregatorError::io(
                        "reading results failed",
                        std::io::Error::other(e),
                    ))
                })?
        };
        let lines: Vec<Line> = objects
            .iter()
            .filter_map(|m| Line::from_json(&serde_json::Value::Object(m.clone())))
            .collect();
        let mut attempt = Attempt::new(test, lines);
        attempt.superseded = superseded;
        if !superseded {
            attempt.files_dir = self
                .inner
                .outputs
                .files_dir
                .as_ref()
                .map(|d| d.join(normalize_name(platform)).join(normalize_name(test)));
        }
        let due = {
            let mut st = self.lock();
            st.report.add_attempt(platform, test, attempt);
            st.dirty = true;
            st.last_write
                .is_none_or(|t| t.elapsed() >= self.inner.outputs.min_interval)
        };
        if let Err(e) = std::fs::remove_file(&results) {
            tracing::debug!(path = %results.display(), error = %crate::error::chain(&e), "could not remove ingested results");
        }
        if due {
            self.write(false).await?;
        }
        Ok(())
    }
}

#[async_trait]
impl Aggregator for ReportAggregator {
    async fn ingest(
        &self,
        platform: &str,
        test: &str,
        artifacts: &Path,
    ) -> Result<(), AggregatorError> {
        self.add(platform, test, artifacts, false).await
    }

    async fn finish(&self) -> Result<(), AggregatorError> {
        {
            let mut st = self.lock();
            if st.finished && !st.dirty {
                return Ok(());
            }
            st.finished = true;
        }
        self.write(true).await
    }
}

/// The old-results side of a [`ReportAggregator`].
#[derive(Debug)]
struct Superseded {
    live: ReportAggregator,
}

#[async_trait]
impl Aggregator for Superseded {
    async fn ingest(
        &self,
        platform: &str,
        test: &str,
        artifacts: &Path,
    ) -> Result<(), AggregatorError> {
        self.live.add(platform, test, artifacts, true).await
    }

    async fn finish(&self) -> Result<(), AggregatorError> {
        Ok(())
    }
}
