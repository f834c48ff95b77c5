//! The suite itself: deliberately broken backends must fail it, well-behaved doubles pass.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Notify;

use super::aggregator::{AggregatorTarget, RecordedResult, RecordedTest};
use super::connection::ConnectionTarget;
use super::executor::ExecutorTarget;
use super::provisioner::ProvisionerTarget;
use super::{Report, Violation, aggregator, connection, executor, provisioner, remote};
use crate::aggregator::{Aggregator, AggregatorError, JsonlAggregator, JsonlOptions};
use crate::connection::{CommandSpec, Connection, ConnectionError, LocalConnection, Process};
use crate::executor::{CommandExecutor, Executor, ExecutorError, TestOutcome};
use crate::provisioner::{Count, ProvisionError, Provisioner, Remote};
use crate::scope::Scope;

// ---------------------------------------------------------------- a sloppy provisioner

/// A remote written by hand, with the bugs the suite must catch.
#[derive(Debug)]
struct SloppyRemote {
    conn: LocalConnection,
    released: AtomicBool,
    /// Bug: upload keeps working after release.
    upload_after_release: bool,
}

#[async_trait]
impl Connection for SloppyRemote {
    fn describe(&self) -> String {
        self.conn.describe()
    }

    async fn spawn(&self, cmd: CommandSpec, scope: &Scope) -> Result<Process, ConnectionError> {
        if self.released.load(Ordering::SeqCst) {
            return Err(ConnectionError::released(self.describe()));
        }
        self.conn.spawn(cmd, scope).await
    }

    async fn upload(&self, local: &Path, remote: &str) -> Result<(), ConnectionError> {
        if self.released.load(Ordering::SeqCst) && !self.upload_after_release {
            return Err(ConnectionError::released(self.describe()));
        }
        self.conn.upload(local, remote).await
    }

    async fn download(&self, remote: &str, local: &Path) -> Result<(), ConnectionError> {
        if self.released.load(Ordering::SeqCst) {
            return Err(ConnectionError::released(self.describe()));
        }
        self.conn.download(remote, local).await
    }

    async fn reconnect(&self, _scope: &Scope) -> Result<(), ConnectionError> {
        if self.released.load(Ordering::SeqCst) {
            return Err(ConnectionError::released(self.describe()));
        }
        Ok(())
    }
}

#[async_trait]
impl Remote for SloppyRemote {
    async fn release(&self) -> Result<(), ProvisionError> {
        self.released.store(true, Ordering::SeqCst);
        Ok(())
    }

    fn is_released(&self) -> bool {
        self.released.load(Ordering::SeqCst)
    }
}

#[derive(Debug, Default)]
struct Bugs {
    upload_after_release: bool,
    /// Bug: stop forgets the most recently handed-out remote.
    stop_forgets_one: bool,
    /// Bug: a get_remote dropped while it waits swallows the next remote.
    drop_loses_remote: bool,
}

/// A provisioner written by hand (no ledger), with switchable bugs.
#[derive(Debug)]
struct Sloppy {
    bugs: Bugs,
    dir: tempfile::TempDir,
    requested: AtomicUsize,
    stopped: AtomicBool,
    handed: Mutex<Vec<Arc<SloppyRemote>>>,
    wake: Notify,
    made: AtomicUsize,
}

impl Sloppy {
    fn new(bugs: Bugs) -> Self {
        Self {
            bugs,
            dir: tempfile::tempdir().unwrap(),
            requested: AtomicUsize::new(0),
            stopped: AtomicBool::new(false),
            handed: Mutex::new(Vec::new()),
            wake: Notify::new(),
            made: AtomicUsize::new(0),
        }
    }

    fn take(&self) -> Result<Option<Arc<dyn Remote>>, ProvisionError> {
        if self.stopped.load(Ordering::SeqCst) {
            return Err(ProvisionError::Stopped("sloppy".into()));
        }
        let took = self
            .requested
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if !took {
            return Ok(None);
        }
        let n = self.made.fetch_add(1, Ordering::SeqCst);
        let dir = self.dir.path().join(n.to_string());
        std::fs::create_dir_all(&dir).unwrap();
        let remote = Arc::new(SloppyRemote {
            conn: LocalConnection::with_cwd(dir),
            released: AtomicBool::new(false),
            upload_after_release: self.bugs.upload_after_release,
        });
        self.handed.lock().unwrap().push(remote.clone());
        Ok(Some(remote))
    }
}

#[async_trait]
impl Provisioner for Sloppy {
    fn describe(&self) -> String {
        "sloppy".into()
    }

    async fn start(&self, _scope: &Scope) -> Result<(), ProvisionError> {
        Ok(())
    }

    fn provision(&self, count: Count) -> Result<(), ProvisionError> {
        if self.stopped.load(Ordering::SeqCst) {
            return Err(ProvisionError::Stopped("sloppy".into()));
        }
        let n = match count {
            Count::N(n) => n,
            Count::Unlimited => 1000,
        };
        self.requested.fetch_add(n, Ordering::SeqCst);
        self.wake.notify_waiters();
        Ok(())
    }

    async fn get_remote(&self) -> Result<Arc<dyn Remote>, ProvisionError> {
        if self.bugs.drop_loses_remote {
            // Takes the request first, then waits a little before handing the remote
            // out: a dropped future loses it.
            loop {
                let notified = self.wake.notified();
                if let Some(r) = self.take()? {
                    tokio::task::yield_now().await;
                    tokio::time::sleep(Duration::from_millis(2)).await;
                    return Ok(r);
                }
                notified.await;
            }
        }
        loop {
            let notified = self.wake.notified();
            if let Some(r) = self.take()? {
                return Ok(r);
            }
            notified.await;
        }
    }

    fn try_get_remote(&self) -> Result<Option<Arc<dyn Remote>>, ProvisionError> {
        self.take()
    }

    fn clear(&self) {
        self.requested.store(0, Ordering::SeqCst);
    }

    async fn stop(&self) -> Result<(), ProvisionError> {
        self.stopped.store(true, Ordering::SeqCst);
        self.wake.notify_waiters();
        let mut handed = std::mem::take(&mut *self.handed.lock().unwrap());
        if self.bugs.stop_forgets_one {
            handed.pop();
        }
        for r in handed {
            r.release().await?;
        }
        Ok(())
    }
}

fn sloppy_target(scope: &Scope, bugs: fn() -> Bugs) -> ProvisionerTarget {
    ProvisionerTarget::new(move || Arc::new(Sloppy::new(bugs())), scope)
        .immediate(true)
        .deadline(Duration::from_secs(20))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_correct_hand_written_provisioner_passes() {
    let scope = Scope::root("t");
    let target = sloppy_target(&scope, Bugs::default);
    provisioner::all(&target).await.assert_passed();
    remote::all(&target).await.assert_passed();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_whose_upload_works_after_release_fails() {
    let scope = Scope::root("t");
    let target = sloppy_target(&scope, || Bugs {
        upload_after_release: true,
        ..Bugs::default()
    });
    let report = remote::all(&target).await;
    eprintln!("{report}");
    assert!(
        report.has_failed("remote::released_refuses_everything"),
        "{report}"
    );
    let failure = &report.failed[0];
    assert!(failure.message.contains("upload"), "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provisioner_whose_stop_leaves_a_remote_unreleased_fails() {
    let scope = Scope::root("t");
    let target = sloppy_target(&scope, || Bugs {
        stop_forgets_one: true,
        ..Bugs::default()
    });
    let report = provisioner::all(&target).await;
    eprintln!("{report}");
    assert!(
        report.has_failed("provisioner::stop_releases_everything"),
        "{report}"
    );
    assert!(report.has_failed("provisioner::lifecycle"), "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_get_remote_that_loses_remotes_when_dropped_fails() {
    let scope = Scope::root("t");
    let target = sloppy_target(&scope, || Bugs {
        drop_loses_remote: true,
        ..Bugs::default()
    })
    .deadline(Duration::from_secs(5));
    let report = provisioner::all(&target).await;
    eprintln!("{report}");
    assert!(
        report.has_failed("provisioner::get_remote_cancel_safety"),
        "{report}"
    );
}

// ---------------------------------------------------------------- a sloppy connection

/// Joins the argv into one shell line (the classic bug of SSH-like transports).
#[derive(Debug)]
struct WordSplitting(LocalConnection);

#[async_trait]
impl Connection for WordSplitting {
    fn describe(&self) -> String {
        "word-splitting".into()
    }

    async fn spawn(&self, mut cmd: CommandSpec, scope: &Scope) -> Result<Process, ConnectionError> {
        let line = cmd.argv.join(" ");
        cmd.argv = vec!["sh".into(), "-c".into(), line];
        self.0.spawn(cmd, scope).await
    }

    async fn upload(&self, local: &Path, remote: &str) -> Result<(), ConnectionError> {
        self.0.upload(local, remote).await
    }

    async fn download(&self, remote: &str, local: &Path) -> Result<(), ConnectionError> {
        self.0.download(remote, local).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_splits_words_fails() {
    let scope = Scope::root("t");
    let dir = tempfile::tempdir().unwrap();
    let target = ConnectionTarget::new(
        Arc::new(WordSplitting(LocalConnection::new())),
        dir.path().display().to_string(),
        &scope,
    )
    .deadline(Duration::from_secs(30));
    let mut report = Report::new("word-splitting");
    report
        .run(
            "connection::argv",
            Duration::from_secs(30),
            connection::argv(&target),
        )
        .await;
    eprintln!("{report}");
    assert!(report.has_failed("connection::argv"), "{report}");
}

/// Claims to supervise process groups, but runs every command in a session of its own
/// (`setsid` forks when started as a group leader): the connection's group ends at once.
/// Keeps the checks' markers (`N`) to clean up after them.
#[derive(Debug, Default)]
struct FalseSupervisor {
    conn: LocalConnection,
    markers: Mutex<Vec<String>>,
}

#[async_trait]
impl Connection for FalseSupervisor {
    fn describe(&self) -> String {
        "false-supervisor".into()
    }

    async fn spawn(&self, mut cmd: CommandSpec, scope: &Scope) -> Result<Process, ConnectionError> {
        let markers = cmd
            .env
            .iter()
            .filter(|(k, _)| k == "N")
            .map(|(_, v)| v.clone());
        self.markers.lock().unwrap().extend(markers);
        cmd.argv.insert(0, "setsid".into());
        self.conn.spawn(cmd, scope).await
    }

    async fn upload(&self, local: &Path, remote: &str) -> Result<(), ConnectionError> {
        self.conn.upload(local, remote).await
    }

    async fn download(&self, remote: &str, local: &Path) -> Result<(), ConnectionError> {
        self.conn.download(remote, local).await
    }

    fn supervises_process_groups(&self) -> bool {
        true
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_claims_group_supervision_falsely_fails() {
    let scope = Scope::root("t");
    let dir = tempfile::tempdir().unwrap();
    let d = Duration::from_secs(30);
    let mut report = Report::new("group supervision");
    let liar = Arc::new(FalseSupervisor::default());
    for (name, conn) in [
        ("false", liar.clone() as Arc<dyn Connection>),
        ("local", Arc::new(LocalConnection::new())),
    ] {
        let target = ConnectionTarget::new(conn, dir.path().display().to_string(), &scope);
        report
            .run(
                &format!("{name}::process_group_supervision"),
                d,
                connection::process_group_supervision(&target),
            )
            .await;
    }
    eprintln!("{report}");
    assert!(
        report.has_failed("false::process_group_supervision"),
        "{report}"
    );
    assert!(
        !report.has_failed("local::process_group_supervision"),
        "{report}"
    );
    // What `setsid` started is still running: end it.
    for marker in liar.markers.lock().unwrap().iter() {
        let _ = std::process::Command::new("pkill")
            .args(["-KILL", "-f", &format!("^sleep {marker}$")])
            .status();
    }
}

/// A transfer that drops modes and symlinks.
#[derive(Debug)]
struct Flattening(LocalConnection);

#[async_trait]
impl Connection for Flattening {
    fn describe(&self) -> String {
        "flattening".into()
    }

    async fn spawn(&self, cmd: CommandSpec, scope: &Scope) -> Result<Process, ConnectionError> {
        self.0.spawn(cmd, scope).await
    }

    async fn upload(&self, local: &Path, remote: &str) -> Result<(), ConnectionError> {
        copy_flat(local, Path::new(remote))
    }

    async fn download(&self, remote: &str, local: &Path) -> Result<(), ConnectionError> {
        copy_flat(Path::new(remote), local)
    }
}

/// Copies files with their contents only (symlinks followed, modes default).
fn copy_flat(from: &Path, to: &Path) -> Result<(), ConnectionError> {
    let err = |e: std::io::Error| ConnectionError::Transfer {
        from: from.display().to_string(),
        to: to.display().to_string(),
        source: e.into(),
    };
    if from.is_dir() {
        std::fs::create_dir_all(to).map_err(err)?;
        for entry in std::fs::read_dir(from).map_err(err)? {
            let entry = entry.map_err(err)?;
            let src = entry.path();
            if src.exists() {
                copy_flat(&src, &to.join(entry.file_name()))?;
            }
        }
        Ok(())
    } else {
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent).map_err(err)?;
        }
        let data = std::fs::read(from).map_err(err)?;
        std::fs::write(to, data).map_err(err)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transfer_that_drops_modes_and_symlinks_fails() {
    let scope = Scope::root("t");
    let dir = tempfile::tempdir().unwrap();
    let target = ConnectionTarget::new(
        Arc::new(Flattening(LocalConnection::new())),
        dir.path().display().to_string(),
        &scope,
    );
    let mut report = Report::new("flattening");
    let d = Duration::from_secs(60);
    report
        .run(
            "connection::transfer_tree",
            d,
            connection::transfer_tree(&target),
        )
        .await;
    report
        .run(
            "connection::transfer_file",
            d,
            connection::transfer_file(&target),
        )
        .await;
    eprintln!("{report}");
    assert!(report.has_failed("connection::transfer_tree"), "{report}");
    assert!(report.has_failed("connection::transfer_file"), "{report}");
}

// ---------------------------------------------------------------- a sloppy executor

/// Wraps the command executor but forgets the infra line of a cancelled test.
#[derive(Debug)]
struct NoInfraOnCancel(CommandExecutor);

#[async_trait]
impl Executor for NoInfraOnCancel {
    async fn start(&mut self, scope: &Scope) -> Result<(), ExecutorError> {
        self.0.start(scope).await
    }

    async fn run_test(
        &mut self,
        test: &str,
        artifacts: &Path,
        scope: &Scope,
    ) -> Result<TestOutcome, ExecutorError> {
        let res = self.0.run_test(test, artifacts, scope).await;
        if res.as_ref().is_err_and(ExecutorError::is_cancelled) {
            let _ = std::fs::remove_file(artifacts.join("results"));
            std::fs::write(artifacts.join("results"), "").unwrap();
        }
        res
    }

    async fn stop(&mut self, scope: &Scope) -> Result<(), ExecutorError> {
        self.0.stop(scope).await
    }
}

fn command_executor(flag: &Path) -> CommandExecutor {
    let hang = format!("touch '{}'; exec sleep 1000", flag.display());
    CommandExecutor::new(Arc::new(LocalConnection::new()))
        .with_test("/pass", ["true"])
        .with_test("/fail", ["sh", "-c", "exit 3"])
        .with_test("/hang", ["sh", "-c", hang.as_str()])
}

/// Runs every executor check on what `wrap` makes of a [`command_executor`].
async fn command_executor_report<F>(wrap: F) -> crate::testing::conformance::Report
where
    F: Fn(CommandExecutor) -> Box<dyn Executor> + Send + Sync + 'static,
{
    let scope = Scope::root("t");
    let dir = tempfile::tempdir().unwrap();
    let flag = dir.path().join("started");
    let probe = flag.clone();
    let target = ExecutorTarget::new(
        move || wrap(command_executor(&flag)),
        "/pass",
        ("/fail", 3),
        "/hang",
        &scope,
    )
    .hanging_started(move || {
        let probe = probe.clone();
        async move { probe.exists() }
    });
    let report = executor::all(&target).await;
    eprintln!("{report}");
    report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_executor_that_leaves_no_infra_line_on_cancel_fails() {
    let report = command_executor_report(|e| Box::new(NoInfraOnCancel(e))).await;
    // Its `run_test_lines` is the default, which runs its `run_test`: both checks see it.
    for check in [
        "executor::cancel_leaves_infra_result",
        "executor::cancel_with_lines_leaves_infra_result",
    ] {
        assert!(report.has_failed(check), "{check}: {report}");
    }
    assert_eq!(report.failed.len(), 2, "{report}");
}

/// Wraps the command executor but, asked for the result lines, writes the `results` file
/// as well.
#[derive(Debug)]
struct LinesAndFile(CommandExecutor);

#[async_trait]
impl Executor for LinesAndFile {
    async fn start(&mut self, scope: &Scope) -> Result<(), ExecutorError> {
        self.0.start(scope).await
    }

    async fn run_test(
        &mut self,
        test: &str,
        artifacts: &Path,
        scope: &Scope,
    ) -> Result<TestOutcome, ExecutorError> {
        self.0.run_test(test, artifacts, scope).await
    }

    async fn run_test_lines(
        &mut self,
        test: &str,
        artifacts: &Path,
        scope: &Scope,
    ) -> Result<(TestOutcome, Option<Vec<u8>>), ExecutorError> {
        let (outcome, lines) = self.0.run_test_lines(test, artifacts, scope).await?;
        if let Some(lines) = &lines {
            std::fs::write(artifacts.join("results"), lines).unwrap();
        }
        Ok((outcome, lines))
    }

    async fn stop(&mut self, scope: &Scope) -> Result<(), ExecutorError> {
        self.0.stop(scope).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_executor_that_returns_lines_and_writes_them_fails() {
    let report = command_executor_report(|e| Box::new(LinesAndFile(e))).await;
    assert!(report.has_failed("executor::run_test_lines"), "{report}");
    assert_eq!(report.failed.len(), 1, "{report}");
}

/// The command executor, which returns its lines in memory, passes every check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_executor_passes() {
    let report = command_executor_report(|e| Box::new(e)).await;
    assert!(report.is_ok(), "{report}");
}

// ---------------------------------------------------------------- a sloppy aggregator

/// Wraps the JSONL aggregator but consumes the artifacts even when the ingest fails.
#[derive(Debug)]
struct EatsArtifacts(JsonlAggregator);

#[async_trait]
impl Aggregator for EatsArtifacts {
    async fn ingest(
        &self,
        platform: &str,
        test: &str,
        artifacts: &Path,
    ) -> Result<(), AggregatorError> {
        let res = self.0.ingest(platform, test, artifacts).await;
        if res.is_err() {
            let _ = std::fs::remove_dir_all(artifacts.join("files"));
        }
        res
    }

    async fn finish(&self) -> Result<(), AggregatorError> {
        self.0.finish().await
    }
}

/// Reads `results.jsonl` back (a line per result, grouped by consecutive test).
fn read_jsonl(dir: &Path) -> Result<Vec<RecordedTest>, String> {
    let text = std::fs::read_to_string(dir.join("results.jsonl")).map_err(|e| e.to_string())?;
    let mut tests: Vec<RecordedTest> = Vec::new();
    for line in text.lines() {
        let row: Vec<serde_json::Value> = serde_json::from_str(line).map_err(|e| e.to_string())?;
        let s = |i: usize| row.get(i).and_then(|v| v.as_str()).map(str::to_string);
        let result = RecordedResult {
            name: s(3),
            status: s(1),
            files: row
                .get(4)
                .and_then(|v| v.as_array())
                .map(|a| {
                    a.iter()
                        .filter_map(|f| f.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default(),
            note: s(5),
        };
        let (platform, test) = (s(0).unwrap_or_default(), s(2).unwrap_or_default());
        match tests.last_mut() {
            Some(t) if t.platform == platform && t.test == test => t.results.push(result),
            _ => tests.push(RecordedTest {
                platform,
                test,
                results: vec![result],
            }),
        }
    }
    Ok(tests)
}

fn jsonl(dir: &Path, allow_duplicate: bool) -> Result<JsonlAggregator, AggregatorError> {
    JsonlAggregator::create(
        dir.join("results.jsonl"),
        dir.join("files"),
        JsonlOptions {
            allow_duplicate,
            ..JsonlOptions::default()
        },
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_aggregator_that_eats_artifacts_on_failure_fails() {
    let target = AggregatorTarget::new(
        |dir, allow| Ok(Arc::new(EatsArtifacts(jsonl(dir, allow)?)) as Arc<dyn Aggregator>),
        read_jsonl,
    );
    let report = aggregator::all(&target).await;
    eprintln!("{report}");
    for check in [
        "aggregator::missing_results",
        "aggregator::bad_results_all_or_nothing",
        "aggregator::duplicates",
    ] {
        assert!(report.has_failed(check), "{check}: {report}");
    }
    assert!(
        !report.has_failed("aggregator::ingest_records_and_moves"),
        "{report}"
    );
}

/// Wraps the JSONL aggregator but loses the result lines handed over in memory (it
/// ingests the artifacts as they are, without a `results` file).
#[derive(Debug)]
struct DropsLines(JsonlAggregator);

#[async_trait]
impl Aggregator for DropsLines {
    async fn ingest(
        &self,
        platform: &str,
        test: &str,
        artifacts: &Path,
    ) -> Result<(), AggregatorError> {
        self.0.ingest(platform, test, artifacts).await
    }

    async fn ingest_lines(
        &self,
        platform: &str,
        test: &str,
        artifacts: &Path,
        _lines: &[u8],
    ) -> Result<(), AggregatorError> {
        self.0.ingest(platform, test, artifacts).await
    }

    async fn finish(&self) -> Result<(), AggregatorError> {
        self.0.finish().await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_aggregator_that_drops_lines_in_memory_fails() {
    let target = AggregatorTarget::new(
        |dir, allow| Ok(Arc::new(DropsLines(jsonl(dir, allow)?)) as Arc<dyn Aggregator>),
        read_jsonl,
    );
    let report = aggregator::all(&target).await;
    eprintln!("{report}");
    assert!(
        report.has_failed("aggregator::ingest_lines_like_ingest"),
        "{report}"
    );
    assert_eq!(report.failed.len(), 1, "{report}");
}

// ---------------------------------------------------------------- the report itself

#[tokio::test]
async fn panics_and_hangs_are_failures_not_crashes() {
    let mut report = Report::new("runner");
    report
        .run("panics", Duration::from_secs(5), async { panic!("boom") })
        .await;
    report
        .run("hangs", Duration::from_millis(50), std::future::pending())
        .await;
    report
        .run("violates", Duration::from_secs(5), async {
            Err(Violation::new("no good"))
        })
        .await;
    report
        .run("passes", Duration::from_secs(5), async { Ok(()) })
        .await;
    assert_eq!(report.passed, ["passes"]);
    let text = report.to_string();
    assert!(text.contains("panics: panicked: boom"), "{text}");
    assert!(text.contains("hangs: did not end within 50ms"), "{text}");
    assert!(text.contains("violates: no good"), "{text}");
    assert!(!report.is_ok());
}

/// A provisioner built on the [`Ledger`](crate::provisioner::Ledger) passes the suite, with
/// creations in tasks.
mod ledger {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use crate::connection::LocalConnection;
    use crate::guard::CleanupGuard;
    use crate::provisioner::{
        Creator, Lease, Ledger, LedgerProvisioner, ProvisionError, Provisioner,
    };
    use crate::scope::{Scope, ShutdownOptions};
    use crate::testing::conformance::provisioner::{self, ProvisionerTarget};
    use crate::testing::conformance::remote;

    /// A provisioner over a ledger, for the tests.
    #[derive(Debug)]
    struct Over(Ledger<LocalConnection>);

    impl LedgerProvisioner for Over {
        type Conn = LocalConnection;

        fn ledger(&self) -> &Ledger<LocalConnection> {
            &self.0
        }
    }

    /// Makes local "systems" slowly, in tasks, each a scratch directory in a guard.
    fn slow_local(capacity: Option<usize>) -> Arc<dyn Provisioner> {
        let made = Arc::new(AtomicUsize::new(0));
        Arc::new(Over(Ledger::new(
            "slow-local",
            capacity,
            Creator::task(move |cx| {
                let n = made.fetch_add(1, Ordering::SeqCst);
                async move {
                    tokio::time::sleep(Duration::from_millis(3)).await;
                    let dir = tempfile::Builder::new()
                        .prefix("atex-ledger-")
                        .tempdir()
                        .map_err(|e| ProvisionError::failed("slow-local", e))?
                        .keep();
                    let path = dir.clone();
                    let guard =
                        CleanupGuard::new(cx.scope(), format!("remove {n}"), move || async move {
                            Ok(tokio::fs::remove_dir_all(&path).await?)
                        });
                    Ok(Lease::new(LocalConnection::with_cwd(dir)).with_guard(guard))
                }
            }),
        )))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn task_creations_conform() {
        let scope = Scope::root("t");
        let target = ProvisionerTarget::new(|| slow_local(Some(3)), &scope)
            .limited(|| slow_local(Some(1)))
            .deadline(Duration::from_secs(60));
        provisioner::all(&target).await.assert_passed();
        remote::all(&target).await.assert_passed();
        assert!(scope.shutdown(ShutdownOptions::default()).await.is_clean());
    }
}
