//! [`FmfExecutor`]: the [`Executor`] over any [`Connection`]. `start` creates the work
//! directory, uploads the tests tree and runs plan `prepare`; `run_test` sets the test up
//! and runs it (`run.rs`); `stop` runs plan `finish` and removes the work directory.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{Map, Value};

use super::cleanup::cleanup_script;
use super::env::{plan_env, set_env};
use super::framework::{FrameworkContext, FrameworkError, Frameworks, TestFramework};
use super::helpers::install_tmt_helpers;
use super::launch::{CONTROL_PROLOGUE, Launch};
use super::options::FmfOptions;
use super::reporter::{Outcome, ReportError, Reporter};
use super::run::TestRun;
use super::scripts;
use super::setup::setup_test;
use super::shell::{run_script, run_steps};
use super::test::{FmfPlan, FmfTest, FmfTestSet};
use super::workdir;
use crate::connection::{Connection, shell_quote};
use crate::duration::parse_duration_or;
use crate::executor::{Executor, ExecutorError, TestOutcome};
use crate::scope::Scope;

/// Turns the test's exit code into the one used for the fallback result and returned by
/// `run_test` (executors.md §5.5 `eval_exit_code`; the Beakerlib executor derives it from
/// the results already reported). Arguments: test name, the reporter, the exit code.
pub type EvalExitCode = Arc<dyn Fn(&str, &Reporter, i32) -> i32 + Send + Sync>;

/// The exit code `run_test` returns for a test its framework cannot run (see
/// [`FmfExecutor::with_framework`]); its `infra` result says why.
pub const FRAMEWORK_REFUSED_EXIT: i32 = 127;

/// Runs FMF tests over a [`Connection`] (see the [module docs](super)).
pub struct FmfExecutor {
    conn: Arc<dyn Connection>,
    tree: PathBuf,
    tests: Arc<FmfTestSet>,
    plan: Arc<FmfPlan>,
    env: Vec<(String, String)>,
    options: FmfOptions,
    work_dir: Option<String>,
    /// The name of the work directory being created, until `start` knows where it is.
    unfinished_work_dir: Option<String>,
    eval_exit_code: Option<EvalExitCode>,
    /// Hooks for the tests' `framework`s.
    frameworks: Frameworks,
    /// Local directory where each test's `metadata.yaml` and `test.sh` are prepared before
    /// they are sent to `W/test`.
    staging: Option<tempfile::TempDir>,
}

impl fmt::Debug for FmfExecutor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FmfExecutor")
            .field("connection", &self.conn.describe())
            .field("tree", &self.tree)
            .field("tests", &self.tests.len())
            .field("work_dir", &self.work_dir)
            .finish()
    }
}

impl FmfExecutor {
    /// An executor for `tests` whose sources live in the local directory `tree` (uploaded
    /// at [`start`](Executor::start)), with `plan`'s environment and prepare/finish steps.
    /// Options come from [`FmfOptions::from_env`].
    pub fn new(
        conn: Arc<dyn Connection>,
        tree: impl Into<PathBuf>,
        tests: impl IntoIterator<Item = FmfTest>,
        plan: FmfPlan,
    ) -> Self {
        Self::with_shared(
            conn,
            tree,
            Arc::new(tests.into_iter().collect()),
            Arc::new(plan),
        )
    }

    /// Like [`new`](Self::new) over shared tests and plan (cheap to create one executor per
    /// remote).
    pub fn with_shared(
        conn: Arc<dyn Connection>,
        tree: impl Into<PathBuf>,
        tests: Arc<FmfTestSet>,
        plan: Arc<FmfPlan>,
    ) -> Self {
        Self {
            conn,
            tree: tree.into(),
            tests,
            plan,
            env: Vec::new(),
            options: FmfOptions::from_env(),
            work_dir: None,
            unfinished_work_dir: None,
            staging: None,
            eval_exit_code: None,
            frameworks: Frameworks::default(),
        }
    }

    /// Adds an environment variable for prepare/finish scripts and every test.
    pub fn with_env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        let key = key.into();
        set_env(&mut self.env, &key, value);
        self
    }

    /// Replaces the options.
    pub fn with_options(mut self, options: FmfOptions) -> Self {
        self.options = options;
        self
    }

    /// Sets the exit-code evaluation hook (default: the exit code as reported). Tests of a
    /// [framework](Self::with_framework) use the framework's evaluation instead.
    pub fn with_eval_exit_code(mut self, eval: EvalExitCode) -> Self {
        self.eval_exit_code = Some(eval);
        self
    }

    /// Runs the tests whose `framework` is `framework.name()` with its hooks (see
    /// [`TestFramework`]); replaces a hook of the same name.
    ///
    /// A test whose framework has no hook, or whose framework could not prepare the
    /// system, is not run: it gets one `infra` result (`TestSetupError(...)` naming the
    /// framework and why) and `run_test` returns [`FRAMEWORK_REFUSED_EXIT`] rather than an
    /// error, because the system is fine for other tests.
    pub fn with_framework(mut self, framework: Arc<dyn TestFramework>) -> Self {
        self.frameworks.add(framework);
        self
    }

    /// The work directory on the system, once started.
    pub fn work_dir(&self) -> Option<&str> {
        self.work_dir.as_deref()
    }

    /// The test named `name`.
    pub fn test(&self, name: &str) -> Option<&FmfTest> {
        self.tests.get(name)
    }

    /// One attempt of `test`; with `in_memory`, the result lines of an attempt that ran to
    /// its end are returned instead of written to `results` (see
    /// [`Reporter::create_in_memory`]).
    async fn run(
        &mut self,
        test: &str,
        artifacts: &Path,
        scope: &Scope,
        in_memory: bool,
    ) -> Result<(TestOutcome, Option<Vec<u8>>), ExecutorError> {
        let Some(fmf_test) = self.test(test).cloned() else {
            return Err(ExecutorError::UnknownTest(test.to_owned()));
        };
        let Some(work) = self.work_dir.clone() else {
            return Err(ExecutorError::setup(test, NotStarted));
        };
        let reporter = if in_memory {
            Reporter::create_in_memory(artifacts)
        } else {
            Reporter::create(artifacts)
        };
        let mut reporter = reporter.map_err(report_to_exec)?;
        let launch = Launch::choose(self.conn.as_ref(), &self.options, &fmf_test);
        let setup = match &fmf_test.duration {
            None => Ok(self.options.default_duration),
            Some(spec) => parse_duration_or(spec, self.options.default_duration)
                .map_err(|e| ExecutorError::setup(test, e)),
        };
        let mut framework = None;
        let setup = match setup {
            Ok(budget) => {
                let staging = self.staging.as_ref().map(tempfile::TempDir::path);
                let prologue = match launch {
                    Launch::Direct => CONTROL_PROLOGUE,
                    Launch::Wrapper => "",
                };
                let setup = setup_test(
                    self.conn.as_ref(),
                    staging,
                    &fmf_test,
                    &work,
                    prologue,
                    scope,
                );
                match setup.await {
                    Ok(()) => {
                        let ctx = FrameworkContext {
                            conn: self.conn.as_ref(),
                            work: &work,
                        };
                        self.frameworks
                            .prepare(ctx, &fmf_test, scope)
                            .await
                            .map(|hook| {
                                framework = hook;
                                budget
                            })
                    }
                    Err(e) => Err(e),
                }
            }
            Err(e) => Err(e),
        };
        let budget = match setup {
            Ok(budget) => budget,
            Err(e) if scope.is_cancelled() => {
                tracing::debug!(error = %crate::error::chain(&e), "setup interrupted by cancellation");
                reporter.finish(&Outcome::aborted("TestAbortedError", "cancel requested"));
                return Err(ExecutorError::Cancelled { test: test.into() });
            }
            Err(e) => {
                // The note says what failed, without the `setup of … failed` wrapper.
                let message = match &e {
                    ExecutorError::Setup { source, .. } => {
                        crate::error::chain(&**source).to_string()
                    }
                    other => crate::error::chain(other).to_string(),
                };
                let mut line = Map::new();
                line.insert("status".into(), Value::from("infra"));
                line.insert(
                    "note".into(),
                    Value::from(format!("TestSetupError({message})")),
                );
                if let Err(w) = reporter.write(line) {
                    tracing::error!(error = %crate::error::chain(&w), "recording the setup failure failed");
                }
                reporter.finish(&Outcome::SetupFailed);
                // A test its framework cannot run (unknown, or not installable here) was
                // not run: its `infra` line says why; the system itself is fine.
                if crate::error::find::<FrameworkError>(&e).is_some() {
                    let outcome = TestOutcome {
                        exit_code: FRAMEWORK_REFUSED_EXIT,
                        duration: std::time::Duration::ZERO,
                    };
                    return Ok((outcome, reporter.take_lines()));
                }
                return Err(match e {
                    // A lost connection stays one: the remote is gone.
                    ExecutorError::Setup { what, source } if what == test => {
                        ExecutorError::Setup { what, source }
                    }
                    other => ExecutorError::setup(test, other),
                });
            }
        };
        let started = std::time::Instant::now();
        // The framework's variables override the executor's own.
        let env = match &framework {
            Some((_, extra)) => {
                let mut env = self.env.clone();
                for (k, v) in extra {
                    set_env(&mut env, k, v.clone());
                }
                std::borrow::Cow::Owned(env)
            }
            None => std::borrow::Cow::Borrowed(self.env.as_slice()),
        };
        let run = TestRun {
            conn: &self.conn,
            options: &self.options,
            plan: &self.plan,
            env: &env,
            test: &fmf_test,
            work: &work,
            launch,
        };
        let result = run.execute(&mut reporter, budget, scope).await;
        let duration = started.elapsed();
        match result {
            Ok(exit_code) => {
                let exit_code = match (&framework, &self.eval_exit_code) {
                    (Some((hook, _)), _) => hook.eval_exit_code(&fmf_test, &reporter, exit_code),
                    (None, Some(eval)) => eval(test, &reporter, exit_code),
                    (None, None) => exit_code,
                };
                reporter.finish(&Outcome::Exited(exit_code));
                let outcome = TestOutcome {
                    exit_code,
                    duration,
                };
                Ok((outcome, reporter.take_lines()))
            }
            Err(abort) => {
                let message = abort.message();
                tracing::warn!(test, kind = abort.kind, %message, "test aborted");
                reporter.finish(&Outcome::aborted(abort.kind, message));
                Err(abort.into_error(test))
            }
        }
    }
}

/// `run_test` before `start`.
#[derive(Debug, thiserror::Error)]
#[error("the executor was not started")]
struct NotStarted;

/// A reporter error as the executor's error.
fn report_to_exec(e: ReportError) -> ExecutorError {
    match e {
        ReportError::Io { what, path, source } => {
            ExecutorError::io(format!("{what} {}", path.display()), source)
        }
        other => ExecutorError::setup("the artifacts directory", other),
    }
}

#[async_trait]
impl Executor for FmfExecutor {
    async fn start(&mut self, scope: &Scope) -> Result<(), ExecutorError> {
        // Named before it exists: should the creation be interrupted after the directory
        // was made, `stop` can still find and remove it.
        let name = workdir::fresh_name();
        self.unfinished_work_dir = Some(name.clone());
        let base = self.options.work_base.as_deref();
        let created = workdir::create(self.conn.as_ref(), base, &name, scope).await;
        if created.is_ok() || created.as_ref().is_err_and(ExecutorError::is_remote_lost) {
            // Created, or on a system that cannot be reached to clean up.
            self.unfinished_work_dir = None;
        }
        let work = created?;
        self.work_dir = Some(work.clone());
        run_script(
            self.conn.as_ref(),
            install_tmt_helpers(&work),
            Vec::new(),
            "helper commands",
            scope,
        )
        .await?;
        // Not needed where the tests' files are written in place (this machine).
        if self.conn.local_path(&work).is_none() {
            match tempfile::Builder::new()
                .prefix("atex-fmf-staging-")
                .tempdir()
            {
                Ok(dir) => self.staging = Some(dir),
                // Not fatal: every test is then set up by a script on the system.
                Err(e) => {
                    tracing::warn!(error = %crate::error::chain(&e), "no local staging directory; setting tests up remotely")
                }
            }
        }
        let remote_tests = format!("{work}/tests");
        let upload = self.conn.upload(&self.tree, &remote_tests);
        match scope.run(upload).await {
            Some(res) => res?,
            None => return Err(crate::connection::ConnectionError::Cancelled.into()),
        }
        let plan = self.plan.clone();
        let env = plan_env(&plan, &self.env, &work);
        run_steps(
            self.conn.as_ref(),
            &plan.prepare,
            &env,
            &work,
            "plan prepare",
            scope,
        )
        .await
    }

    async fn run_test(
        &mut self,
        test: &str,
        artifacts: &Path,
        scope: &Scope,
    ) -> Result<TestOutcome, ExecutorError> {
        self.run(test, artifacts, scope, false)
            .await
            .map(|(outcome, _)| outcome)
    }

    /// Like [`run_test`](Executor::run_test), with the result lines of a test that ran to
    /// its end handed back instead of written to `results`. An attempt that ends in an
    /// error (cancelled, aborted, setup failed) still writes them, its `infra` line
    /// included, to the file.
    async fn run_test_lines(
        &mut self,
        test: &str,
        artifacts: &Path,
        scope: &Scope,
    ) -> Result<(TestOutcome, Option<Vec<u8>>), ExecutorError> {
        self.run(test, artifacts, scope, true).await
    }

    async fn stop(&mut self, scope: &Scope) -> Result<(), ExecutorError> {
        let Some(work) = self.work_dir.take() else {
            // A start interrupted while it created the work directory.
            if let Some(name) = self.unfinished_work_dir.take() {
                let base = self.options.work_base.as_deref();
                cleanup_script(
                    self.conn.as_ref(),
                    scripts::remove_unfinished_work_dir(base, &name),
                    "removing an unfinished work directory",
                    &scope.shielded("fmf-stop"),
                )
                .await;
            }
            return Ok(());
        };
        self.frameworks.reset();
        let plan = self.plan.clone();
        // Plan `finish` runs at the end of a cancelled run too: in a shielded scope, which
        // graceful cancellation does not reach (the run's shutdown grace bounds it) but
        // forcing does.
        let shielded = scope.shielded("fmf-stop");
        let env = plan_env(&plan, &self.env, &work);
        let finish = run_steps(
            self.conn.as_ref(),
            &plan.finish,
            &env,
            &work,
            "plan finish",
            &shielded,
        )
        .await;
        let finish = match finish {
            // The connection failing (anywhere in the chain) is not the finish's failure.
            Err(e) if e.connection().is_some() => {
                if shielded.is_killed() {
                    tracing::warn!(error = %crate::error::chain(&e), "plan finish interrupted: the run was forced to stop");
                } else {
                    tracing::warn!(error = %crate::error::chain(&e), "plan finish: the connection failed; ignored");
                }
                Ok(())
            }
            other => other,
        };
        cleanup_script(
            self.conn.as_ref(),
            format!("rm -rf -- {}\n", shell_quote(&work)),
            "removing the work directory",
            &shielded,
        )
        .await;
        finish
    }
}
