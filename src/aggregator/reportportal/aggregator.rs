//! [`ReportPortalAggregator`]: tests as ReportPortal items, logs and attachments.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde_json::{Map, Value, json};
use tokio::sync::OnceCell;

use super::client::RpClient;
use super::error::RpError;
use super::log_entry::{Attachment, LogEntry, guess_mime};
use crate::aggregator::yaml::read_result_objects;
use crate::aggregator::{Aggregator, AggregatorError};
use crate::artifacts::{ArtifactsDir, file_location};

/// Files up to this size named `output.txt` are logged inline (the message is the text).
pub const INLINE_LIMIT: u64 = 1024 * 1024;

/// The RP status of an atex status: pass→passed, fail/error→failed, warn→warn,
/// infra→interrupted, skip→skipped, anything else→info.
pub fn rp_status(status: &str) -> &'static str {
    match status {
        "pass" => "passed",
        "fail" | "error" => "failed",
        "warn" => "warn",
        "infra" => "interrupted",
        "skip" => "skipped",
        _ => "info",
    }
}

/// How one file is logged: its level, and inline (the message is the text) or as an
/// attachment (the message is the file name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileDecision {
    /// Log level (`ERROR`, `INFO`, …).
    pub level: String,
    /// Inline text instead of an attachment.
    pub inline: bool,
}

/// Decides whether and how a file is uploaded: `(platform, test, result, path)`.
pub type DecideFile =
    Arc<dyn Fn(&str, &str, &Map<String, Value>, &Path) -> Option<FileDecision> + Send + Sync>;
/// Decides whether a subtest result becomes an item: `(platform, test, result)`.
pub type DecideSubtest = Arc<dyn Fn(&str, &str, &Map<String, Value>) -> bool + Send + Sync>;

/// The default [`DecideFile`]: files of `fail`, `error` and `infra` results only, at level
/// `ERROR`; `output.txt` of at most 1 MiB inline, anything else attached.
pub fn default_decide_file(
    _platform: &str,
    _test: &str,
    result: &Map<String, Value>,
    path: &Path,
) -> Option<FileDecision> {
    let status = result.get("status").and_then(Value::as_str)?;
    if !matches!(status, "fail" | "error" | "infra") {
        return None;
    }
    let inline = path.file_name().is_some_and(|n| n == "output.txt")
        && std::fs::metadata(path).is_ok_and(|m| m.len() <= INLINE_LIMIT);
    Some(FileDecision {
        level: "ERROR".into(),
        inline,
    })
}

/// Which launch the aggregator reports into.
#[derive(Debug, Clone)]
pub enum Launch {
    /// A new launch with this name; `extra` keys go into the start request (e.g.
    /// `description`, `attributes`).
    New {
        /// Launch name.
        name: String,
        /// More keys of the start request.
        extra: Option<Value>,
    },
    /// A rerun of this launch (RP shows same-named items as retries).
    Rerun(String),
}

/// Options of [`ReportPortalAggregator`].
#[derive(Clone)]
pub struct RpOptions {
    /// The launch.
    pub launch: Launch,
    /// Flat mode: subtests become sibling items named `<test><join><subtest>`; `None`
    /// (default) nests them under the test item as steps without statistics.
    pub join_subtest: Option<String>,
    /// How files are uploaded (default [`default_decide_file`]).
    pub decide_file: DecideFile,
    /// Which subtests become items (default: all).
    pub decide_subtest: DecideSubtest,
}

impl fmt::Debug for RpOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RpOptions")
            .field("launch", &self.launch)
            .field("join_subtest", &self.join_subtest)
            .finish()
    }
}

impl RpOptions {
    /// A new launch named `name`, nested subtests, default decisions.
    pub fn new_launch(name: impl Into<String>) -> Self {
        Self::with(Launch::New {
            name: name.into(),
            extra: None,
        })
    }

    /// A rerun of launch `uuid`, nested subtests, default decisions.
    pub fn rerun(uuid: impl Into<String>) -> Self {
        Self::with(Launch::Rerun(uuid.into()))
    }

    fn with(launch: Launch) -> Self {
        Self {
            launch,
            join_subtest: None,
            decide_file: Arc::new(default_decide_file),
            decide_subtest: Arc::new(|_, _, _| true),
        }
    }
}

#[derive(Default)]
struct TestState {
    /// The item started (by a promise or an ingest that failed half-way) and not finished.
    open: Option<String>,
    /// An item of this test was finished before in this session (the next one is a retry).
    finished_before: bool,
}

/// Per-(platform, test) state, locked for the whole ingest of that test.
type TestStates = HashMap<(String, String), Arc<tokio::sync::Mutex<TestState>>>;

struct Inner {
    client: RpClient,
    options: RpOptions,
    launch: String,
    platforms: Mutex<HashMap<String, Arc<OnceCell<String>>>>,
    tests: Mutex<TestStates>,
    finished: Mutex<bool>,
}

/// Reports tests to ReportPortal as they are ingested.
///
/// The launch is created by [`start`](Self::start) (a new one, or a rerun of an existing
/// one). Each platform is one root item of type `test`; each test a `step` under it
/// (`retry: true` when the same test was finished before in this session); each named
/// result a nested `step` without statistics (`hasStats: false`), or in flat mode a sibling
/// step `<test><join><subtest>`. Items get the mapped status ([`rp_status`]) and the note
/// as description; files are logged per [`RpOptions::decide_file`], one log request per
/// file. The first nameless result finishes the test (later lines are ignored); a test
/// without one is finished `interrupted` with "no name-less result reported for the test
/// itself". After a successful ingest the artifacts' `results` and `files/` are deleted.
/// [`finish`](Aggregator::finish) finishes the launch (RP finishes the platform items).
///
/// Ingests of different tests run concurrently (the client allows 10 calls at once);
/// ingests of one (platform, test) one after the other. Every call is retried on transient
/// failures, so a 5xx while uploading a log re-sends that log only; an ingest that still
/// fails keeps its started item and the next ingest of the test continues in it.
#[derive(Clone)]
pub struct ReportPortalAggregator {
    inner: Arc<Inner>,
}

impl fmt::Debug for ReportPortalAggregator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReportPortalAggregator")
            .field("launch", &self.inner.launch)
            .field("options", &self.inner.options)
            .finish()
    }
}

fn remote(e: RpError) -> AggregatorError {
    AggregatorError::Remote(e.to_string())
}

impl ReportPortalAggregator {
    /// Creates the launch (or reopens it for a rerun).
    pub async fn start(client: RpClient, options: RpOptions) -> Result<Self, AggregatorError> {
        let launch = match &options.launch {
            Launch::New { name, extra } => client.start_launch(name, extra.as_ref()).await,
            Launch::Rerun(uuid) => client.rerun_launch(uuid).await,
        }
        .map_err(remote)?;
        tracing::info!(%launch, "ReportPortal launch started");
        Ok(Self {
            inner: Arc::new(Inner {
                client,
                options,
                launch,
                platforms: Mutex::new(HashMap::new()),
                tests: Mutex::new(HashMap::new()),
                finished: Mutex::new(false),
            }),
        })
    }

    /// The launch's UUID.
    pub fn launch_uuid(&self) -> &str {
        &self.inner.launch
    }

    /// The client in use.
    pub fn client(&self) -> &RpClient {
        &self.inner.client
    }

    /// Starts the items of `tests` on `platform` now, so that RP shows them in progress; a
    /// later ingest of such a test uses its item.
    pub async fn promise(&self, platform: &str, tests: &[String]) -> Result<(), AggregatorError> {
        for t in tests {
            let state = self.test_state(platform, t);
            let mut st = state.lock().await;
            if st.open.is_none() {
                st.open = Some(
                    self.start_test_item(platform, t, st.finished_before)
                        .await?,
                );
            }
        }
        Ok(())
    }

    fn test_state(&self, platform: &str, test: &str) -> Arc<tokio::sync::Mutex<TestState>> {
        let mut map = self.inner.tests.lock().unwrap_or_else(|p| p.into_inner());
        map.entry((platform.to_string(), test.to_string()))
            .or_default()
            .clone()
    }

    async fn platform_item(&self, platform: &str) -> Result<String, AggregatorError> {
        let cell = {
            let mut map = self
                .inner
                .platforms
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            map.entry(platform.to_string()).or_default().clone()
        };
        cell.get_or_try_init(|| async {
            self.inner
                .client
                .start_item(
                    &self.inner.launch,
                    None,
                    json!({"type": "test", "name": platform}),
                )
                .await
                .map_err(remote)
        })
        .await
        .cloned()
    }

    async fn start_test_item(
        &self,
        platform: &str,
        name: &str,
        retry: bool,
    ) -> Result<String, AggregatorError> {
        let parent = self.platform_item(platform).await?;
        let mut body = json!({"type": "step", "name": name});
        if retry {
            body["retry"] = Value::Bool(true);
        }
        self.inner
            .client
            .start_item(&self.inner.launch, Some(&parent), body)
            .await
            .map_err(remote)
    }

    /// Logs the files of `result` (name `result_name`) to `item`.
    async fn upload(
        &self,
        platform: &str,
        test: &str,
        files_dir: &Path,
        result: &Map<String, Value>,
        item: &str,
    ) -> Result<(), AggregatorError> {
        let name = result
            .get("name")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty());
        let Some(Value::Array(files)) = result.get("files") else {
            return Ok(());
        };
        for f in files {
            let Some(f) = f.as_str() else { continue };
            let path = files_dir.join(file_location(name, f));
            if !path.is_file() {
                return Err(AggregatorError::io(
                    format!("file '{f}' of result {:?} of {test}", name.unwrap_or("")),
                    std::io::Error::new(
                        std::io::ErrorKind::NotFound,
                        format!("{} does not exist", path.display()),
                    ),
                ));
            }
            let Some(decision) = (self.inner.options.decide_file)(platform, test, result, &path)
            else {
                continue;
            };
            let p = path.clone();
            let data = crate::scope::spawn_blocking("rp-read", move || std::fs::read(&p))
                .await
                .map_err(|e| std::io::Error::other(e.to_string()))
                .and_then(|r| r)
                .map_err(|e| AggregatorError::io(format!("reading {}", path.display()), e))?;
            let base = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| f.to_string());
            let entry = if decision.inline {
                LogEntry {
                    item: item.to_string(),
                    level: decision.level,
                    message: String::from_utf8_lossy(&data).into_owned(),
                    attachment: None,
                }
            } else {
                LogEntry {
                    item: item.to_string(),
                    level: decision.level,
                    message: base.clone(),
                    attachment: Some(Attachment {
                        mime: guess_mime(&base).to_string(),
                        name: base,
                        data,
                    }),
                }
            };
            self.inner
                .client
                .log(&self.inner.launch, &entry)
                .await
                .map_err(remote)?;
        }
        Ok(())
    }

    async fn finish_with(
        &self,
        item: &str,
        result: &Map<String, Value>,
    ) -> Result<(), AggregatorError> {
        let status = rp_status(result.get("status").and_then(Value::as_str).unwrap_or(""));
        let note = match result.get("note") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(other) => Some(other.to_string()),
        };
        self.inner
            .client
            .finish_item(&self.inner.launch, item, status, note.as_deref())
            .await
            .map_err(remote)
    }

    /// Reports one attempt of (`platform`, `test`) from its results (JSON objects, in
    /// order) and the directory of its files (laid out as an artifacts `files/`), without
    /// consuming anything: what [`ingest`](Aggregator::ingest) does, for results read back
    /// from a results file (`atex report --rp-url …`).
    pub async fn report_results(
        &self,
        platform: &str,
        test: &str,
        objects: &[Map<String, Value>],
        files_dir: &Path,
    ) -> Result<(), AggregatorError> {
        if *self
            .inner
            .finished
            .lock()
            .unwrap_or_else(|p| p.into_inner())
        {
            return Err(AggregatorError::Finished);
        }
        let state = self.test_state(platform, test);
        let mut st = state.lock().await;
        self.report_locked(platform, test, objects, files_dir, &mut st)
            .await
    }

    async fn report_locked(
        &self,
        platform: &str,
        test: &str,
        objects: &[Map<String, Value>],
        files_dir: &Path,
        st: &mut TestState,
    ) -> Result<(), AggregatorError> {
        // Only sane results: non-empty objects with a status.
        let sane: Vec<&Map<String, Value>> = objects
            .iter()
            .filter(|o| !o.is_empty() && o.get("status").is_some_and(|s| !s.is_null()))
            .collect();
        let join = self.inner.options.join_subtest.clone();
        let launch = self.inner.launch.clone();
        let mut test_done = false;
        for r in sane {
            let sub = r
                .get("name")
                .and_then(Value::as_str)
                .filter(|n| !n.is_empty());
            match sub {
                Some(sub) => {
                    if !(self.inner.options.decide_subtest)(platform, test, r) {
                        continue;
                    }
                    let item = match &join {
                        None => {
                            let parent = match &st.open {
                                Some(i) => i.clone(),
                                None => {
                                    let i = self
                                        .start_test_item(platform, test, st.finished_before)
                                        .await?;
                                    st.open = Some(i.clone());
                                    i
                                }
                            };
                            self.inner
                                .client
                                .start_item(
                                    &launch,
                                    Some(&parent),
                                    json!({"type": "step", "name": sub, "hasStats": false}),
                                )
                                .await
                                .map_err(remote)?
                        }
                        Some(j) => {
                            let p = self.platform_item(platform).await?;
                            self.inner
                                .client
                                .start_item(
                                    &launch,
                                    Some(&p),
                                    json!({"type": "step", "name": format!("{test}{j}{sub}")}),
                                )
                                .await
                                .map_err(remote)?
                        }
                    };
                    self.upload(platform, test, files_dir, r, &item).await?;
                    self.finish_with(&item, r).await?;
                }
                None => {
                    let item = match &st.open {
                        Some(i) => i.clone(),
                        None => {
                            let i = self
                                .start_test_item(platform, test, st.finished_before)
                                .await?;
                            st.open = Some(i.clone());
                            i
                        }
                    };
                    self.upload(platform, test, files_dir, r, &item).await?;
                    self.finish_with(&item, r).await?;
                    st.open = None;
                    st.finished_before = true;
                    test_done = true;
                    break;
                }
            }
        }
        if !test_done {
            let item = match st.open.take() {
                Some(i) => i,
                None => {
                    self.start_test_item(platform, test, st.finished_before)
                        .await?
                }
            };
            st.open = Some(item.clone());
            self.inner
                .client
                .finish_item(
                    &launch,
                    &item,
                    "interrupted",
                    Some("no name-less result reported for the test itself"),
                )
                .await
                .map_err(remote)?;
            st.open = None;
            st.finished_before = true;
        }
        Ok(())
    }

    async fn ingest_locked(
        &self,
        platform: &str,
        test: &str,
        art: &ArtifactsDir,
        st: &mut TestState,
    ) -> Result<(), AggregatorError> {
        let results_path = art.results();
        let objects = {
            let p = results_path.clone();
            crate::scope::spawn_blocking("rp-read", move || read_result_objects(&p))
                .await
                .unwrap_or_else(|e| {
                    Err(AggregatorError::io(
                        "reading results failed",
                        std::io::Error::other(e.to_string()),
                    ))
                })?
        };
        let files = art.files();
        self.report_locked(platform, test, &objects, &files, st)
            .await?;
        let _ = crate::scope::spawn_blocking("rp-clean", move || {
            if let Err(e) = std::fs::remove_file(&results_path) {
                tracing::debug!(path = %results_path.display(), error = %e, "could not remove ingested results");
            }
            if files.exists()
                && let Err(e) = crate::fs_tree::remove_any(&files)
            {
                tracing::warn!(path = %files.display(), error = %e, "could not remove ingested files");
            }
        })
        .await;
        Ok(())
    }
}

#[async_trait]
impl Aggregator for ReportPortalAggregator {
    async fn ingest(
        &self,
        platform: &str,
        test: &str,
        artifacts: &Path,
    ) -> Result<(), AggregatorError> {
        if *self
            .inner
            .finished
            .lock()
            .unwrap_or_else(|p| p.into_inner())
        {
            return Err(AggregatorError::Finished);
        }
        let art = ArtifactsDir::new(PathBuf::from(artifacts));
        if !art.results().exists() {
            return Err(AggregatorError::MissingResults(art.results()));
        }
        let state = self.test_state(platform, test);
        let mut st = state.lock().await;
        self.ingest_locked(platform, test, &art, &mut st).await
    }

    async fn finish(&self) -> Result<(), AggregatorError> {
        {
            let mut f = self
                .inner
                .finished
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if *f {
                return Ok(());
            }
            *f = true;
        }
        self.inner
            .client
            .finish_launch(&self.inner.launch)
            .await
            .map(drop)
            .map_err(remote)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_map() {
        for (a, r) in [
            ("pass", "passed"),
            ("fail", "failed"),
            ("error", "failed"),
            ("warn", "warn"),
            ("infra", "interrupted"),
            ("skip", "skipped"),
            ("info", "info"),
            ("xfail", "info"),
        ] {
            assert_eq!(rp_status(a), r);
        }
    }

    #[test]
    fn default_file_decisions() {
        let dir = tempfile::tempdir().expect("tmp");
        let out = dir.path().join("output.txt");
        std::fs::write(&out, "x").expect("write");
        let other = dir.path().join("journal.log");
        std::fs::write(&other, "x").expect("write");
        let r = |s: &str| json!({"status": s}).as_object().cloned().expect("object");
        assert_eq!(default_decide_file("p", "t", &r("pass"), &out), None);
        assert_eq!(
            default_decide_file("p", "t", &r("fail"), &out),
            Some(FileDecision {
                level: "ERROR".into(),
                inline: true
            })
        );
        assert_eq!(
            default_decide_file("p", "t", &r("infra"), &other).map(|d| d.inline),
            Some(false)
        );
        let big = dir.path().join("sub");
        std::fs::create_dir(&big).expect("mkdir");
        let big = big.join("output.txt");
        std::fs::write(&big, vec![b'a'; (INLINE_LIMIT + 1) as usize]).expect("write");
        assert_eq!(
            default_decide_file("p", "t", &r("error"), &big).map(|d| d.inline),
            Some(false)
        );
    }
}
