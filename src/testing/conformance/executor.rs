//! Checks of the [`Executor`] contract on the artifacts directory: `start`, `run_test` and
//! `stop`; `results` lines and `files/` laid out as aggregators expect; exit codes; unknown
//! tests; a cancelled test leaves an `infra` result line.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use serde_json::Value;

use super::{CheckResult, Context, DEFAULT_DEADLINE, Report, Violation, ensure, wait_for};
use crate::artifacts::{FILES_DIR, RESULTS_FILE, file_location};
use crate::executor::{Executor, TestOutcome};
use crate::scope::Scope;
use crate::verdict::{Verdict, read_results};

type Make = Arc<dyn Fn() -> Box<dyn Executor> + Send + Sync>;
type Probe = Arc<dyn Fn() -> BoxFuture<'static, bool> + Send + Sync>;

/// An executor under test: a factory of fresh executors (on a working system) that know
/// three tests the suite runs.
#[derive(Clone)]
pub struct ExecutorTarget {
    make: Make,
    passing: String,
    failing: String,
    failing_code: i32,
    hanging: String,
    hanging_started: Option<Probe>,
    scope: Scope,
    deadline: Duration,
}

impl std::fmt::Debug for ExecutorTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExecutorTarget")
            .field("passing", &self.passing)
            .field("failing", &self.failing)
            .field("failing_code", &self.failing_code)
            .field("hanging", &self.hanging)
            .finish_non_exhaustive()
    }
}

impl ExecutorTarget {
    /// Checks the executors `make` returns. Each knows the test `passing` (exits 0 and
    /// passes), `failing` (exits with `failing_code`, not 0, and fails) and `hanging` (runs
    /// until cancelled). They run in children of `scope`.
    pub fn new<F>(
        make: F,
        passing: impl Into<String>,
        (failing, failing_code): (impl Into<String>, i32),
        hanging: impl Into<String>,
        scope: &Scope,
    ) -> Self
    where
        F: Fn() -> Box<dyn Executor> + Send + Sync + 'static,
    {
        Self {
            make: Arc::new(make),
            passing: passing.into(),
            failing: failing.into(),
            failing_code,
            hanging: hanging.into(),
            hanging_started: None,
            scope: scope.clone(),
            deadline: DEFAULT_DEADLINE,
        }
    }

    /// How to see that the hanging test runs (polled until true); without it the test is
    /// cancelled right after it was started.
    pub fn hanging_started<F, Fut>(mut self, probe: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = bool> + Send + 'static,
    {
        self.hanging_started = Some(Arc::new(move || Box::pin(probe())));
        self
    }

    /// How long one check may take (default [`DEFAULT_DEADLINE`]).
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.deadline = deadline;
        self
    }

    async fn started(&self) -> Result<Box<dyn Executor>, Violation> {
        let mut e = (self.make)();
        e.start(&self.scope).await.context("start")?;
        Ok(e)
    }

    async fn run(
        &self,
        e: &mut dyn Executor,
        test: &str,
    ) -> Result<(tempfile::TempDir, TestOutcome), Violation> {
        let dir = tempfile::tempdir().context("an artifacts directory")?;
        let outcome = e
            .run_test(test, dir.path(), &self.scope)
            .await
            .context(format!("run_test {test}"))?;
        Ok((dir, outcome))
    }
}

/// Runs every check of this module.
pub async fn all(target: &ExecutorTarget) -> Report {
    let probe = (target.make)();
    let mut report = Report::new(format!("executor {probe:?}"));
    drop(probe);
    let d = target.deadline;
    report
        .run("executor::runs_tests", d, runs_tests(target))
        .await;
    report
        .run("executor::unknown_test", d, unknown_test(target))
        .await;
    report
        .run(
            "executor::cancel_leaves_infra_result",
            d,
            cancel_leaves_infra_result(target),
        )
        .await;
    report
        .run("executor::run_test_lines", d, run_test_lines(target))
        .await;
    report
        .run(
            "executor::cancel_with_lines_leaves_infra_result",
            d,
            cancel_with_lines_leaves_infra_result(target),
        )
        .await;
    report
        .run(
            "executor::stop_without_start",
            d,
            stop_without_start(target),
        )
        .await;
    report
}

/// The result objects of an artifacts directory, checked against the artifacts contract:
/// only `results` and `files/` in it; every line a JSON object; every listed file where
/// the file location rule puts it.
pub fn check_artifacts(dir: &Path) -> Result<Vec<serde_json::Map<String, Value>>, Violation> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .context(format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect();
    names.sort();
    ensure!(
        names.iter().all(|n| n == RESULTS_FILE || n == FILES_DIR),
        "the artifacts directory holds {names:?} (only `{RESULTS_FILE}` and `{FILES_DIR}/` \
         belong there)"
    );
    let text = std::fs::read_to_string(dir.join(RESULTS_FILE))
        .context(format!("reading {}", dir.join(RESULTS_FILE).display()))?;
    let mut results = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let value: Value = serde_json::from_str(line)
            .map_err(|e| Violation(format!("results line {}: not JSON: {e}", i + 1)))?;
        let Value::Object(obj) = value else {
            return Err(Violation(format!("results line {}: not an object", i + 1)));
        };
        let name = match obj.get("name") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.as_str()),
            Some(other) => {
                return Err(Violation(format!(
                    "results line {}: `name` is {other}",
                    i + 1
                )));
            }
        };
        if let Some(files) = obj.get("files") {
            let Value::Array(files) = files else {
                return Err(Violation(format!(
                    "results line {}: `files` is not an array",
                    i + 1
                )));
            };
            for f in files {
                let Value::String(f) = f else {
                    return Err(Violation(format!(
                        "results line {}: a file name is {f}",
                        i + 1
                    )));
                };
                let path = dir.join(FILES_DIR).join(file_location(name, f));
                ensure!(
                    path.symlink_metadata().is_ok(),
                    "results line {}: the listed file {f:?} is not at {}",
                    i + 1,
                    path.display()
                );
            }
        }
        results.push(obj);
    }
    Ok(results)
}

/// The verdict of an attempt from its artifacts and exit code.
fn verdict(dir: &Path, exit_code: i32) -> Result<Verdict, Violation> {
    let reported = read_results(&dir.join(RESULTS_FILE)).context("judging the results")?;
    Ok(Verdict::of_attempt(reported, Some(exit_code)))
}

/// One finished attempt of `test`, expected to exit with `code`: the exit code, artifacts in
/// `dir` laid out by the contract, and a verdict that matches (a pass for 0, a failure that
/// is not `infra` otherwise).
fn check_attempt(test: &str, code: i32, dir: &Path, outcome: &TestOutcome) -> CheckResult {
    ensure!(
        outcome.exit_code == code,
        "{test} returned exit code {} (expected {code})",
        outcome.exit_code
    );
    check_artifacts(dir)?;
    let v = verdict(dir, outcome.exit_code)?;
    if code == 0 {
        ensure!(v.passed(), "{test} was judged {v}");
    } else {
        ensure!(
            !v.passed() && v != Verdict::Infra,
            "{test}, which fails, was judged {v}"
        );
    }
    Ok(())
}

/// `start`, then the passing, failing and passing test again on the same executor: each
/// into its own empty artifacts directory, with its exit code, a verdict matching it and
/// artifacts laid out by the contract; `stop` twice.
pub async fn runs_tests(t: &ExecutorTarget) -> CheckResult {
    let mut e = t.started().await?;
    for (test, code) in [
        (&t.passing, 0),
        (&t.failing, t.failing_code),
        (&t.passing, 0),
    ] {
        let (dir, outcome) = t.run(e.as_mut(), test).await?;
        check_attempt(test, code, dir.path(), &outcome)?;
    }
    e.stop(&t.scope).await.context("stop")?;
    e.stop(&t.scope).await.context("a second stop")?;
    Ok(())
}

/// [`Executor::run_test_lines`] runs the passing and the failing test like `run_test`:
/// their exit codes, and artifacts laid out by the contract with a matching verdict once
/// the returned lines (if any) are put where the `results` file goes. An executor that
/// returns lines writes no `results` file.
pub async fn run_test_lines(t: &ExecutorTarget) -> CheckResult {
    let mut e = t.started().await?;
    for (test, code) in [(&t.passing, 0), (&t.failing, t.failing_code)] {
        let dir = tempfile::tempdir().context("an artifacts directory")?;
        let (outcome, lines) = e
            .run_test_lines(test, dir.path(), &t.scope)
            .await
            .context(format!("run_test_lines {test}"))?;
        if let Some(lines) = lines {
            ensure!(
                !dir.path().join(RESULTS_FILE).exists(),
                "{test}: run_test_lines returned the result lines and wrote a results file too"
            );
            std::fs::write(dir.path().join(RESULTS_FILE), lines)
                .context("writing the returned lines")?;
        }
        check_attempt(test, code, dir.path(), &outcome)?;
    }
    e.stop(&t.scope).await.context("stop")?;
    Ok(())
}

/// A test the executor does not know is an error naming it.
pub async fn unknown_test(t: &ExecutorTarget) -> CheckResult {
    let mut e = t.started().await?;
    let name = "/atex/conformance/no-such-test";
    let dir = tempfile::tempdir().context("an artifacts directory")?;
    match e.run_test(name, dir.path(), &t.scope).await {
        Ok(o) => return Err(Violation(format!("an unknown test ran: {o:?}"))),
        Err(err) => ensure!(
            err.to_string().contains(name),
            "the error for an unknown test does not name it: {err}"
        ),
    }
    e.stop(&t.scope).await.context("stop")?;
    Ok(())
}

/// Cancelling the scope of a running test stops it promptly: `run_test` returns a
/// cancellation error and the artifacts hold an `infra` result line saying why.
pub async fn cancel_leaves_infra_result(t: &ExecutorTarget) -> CheckResult {
    cancel_check(t, false).await
}

/// [`cancel_leaves_infra_result`] through [`Executor::run_test_lines`]: the `infra` line
/// of a cancelled test is written to the `results` file there too.
pub async fn cancel_with_lines_leaves_infra_result(t: &ExecutorTarget) -> CheckResult {
    cancel_check(t, true).await
}

async fn cancel_check(t: &ExecutorTarget, lines: bool) -> CheckResult {
    let mut e = t.started().await?;
    let dir = tempfile::tempdir().context("an artifacts directory")?;
    let scope = t.scope.child("conformance-cancel");
    scope.set_kill_grace(Duration::from_millis(300));
    let canceller = async {
        let seen = match &t.hanging_started {
            Some(probe) => {
                wait_for(t.deadline / 4, "the hanging test never started", || async {
                    Ok(probe().await.then_some(()))
                })
                .await
            }
            None => {
                tokio::task::yield_now().await;
                Ok(())
            }
        };
        scope.cancel();
        seen
    };
    let run = async {
        if lines {
            e.run_test_lines(&t.hanging, dir.path(), &scope)
                .await
                .map(|(outcome, _)| outcome)
        } else {
            e.run_test(&t.hanging, dir.path(), &scope).await
        }
    };
    let (res, seen) = tokio::join!(run, canceller);
    seen?;
    match res {
        Ok(o) => {
            return Err(Violation(format!(
                "a cancelled test returned {o:?} (expected a cancellation error)"
            )));
        }
        Err(err) => ensure!(
            err.is_cancelled(),
            "a cancelled test returned {err:?} (expected a cancellation error)"
        ),
    }
    let results = check_artifacts(dir.path())?;
    ensure!(
        results
            .iter()
            .any(|r| r.get("status").and_then(Value::as_str) == Some("infra")),
        "a cancelled test left no infra result line: {results:?}"
    );
    e.stop(&t.scope)
        .await
        .context("stop after a cancelled test")?;
    Ok(())
}

/// `stop` without `start` succeeds.
pub async fn stop_without_start(t: &ExecutorTarget) -> CheckResult {
    let mut e = (t.make)();
    e.stop(&t.scope).await.context("stop without start")?;
    Ok(())
}
