//! The FMF executor: runs tmt-style tests through a remote wrapper that speaks the
//! test-control protocol (`spec/test-control.md`, `spec/executors.md` §5).
//!
//! - [`control`]: the test-control stream parser;
//! - [`reporter`]: results and uploaded files in the artifacts directory;
//! - [`test`](mod@test): the test and plan descriptions the executor consumes;
//! - [`FmfExecutor`]: the [`Executor`] over any [`Connection`].
//!
//! # How a test runs
//!
//! [`Executor::start`] creates a work directory `W` on the system (in `/var/tmp`, else
//! `$HOME`, else `/tmp`, or [`FmfOptions::work_base`]), uploads the tests tree to `W/tests`
//! with the connection's own upload and runs the plan's `prepare` steps.
//!
//! [`Executor::run_test`] first runs a setup script (install `require`/`recommend` with the
//! system's package manager, write `W/test/metadata.yaml`, the bash wrapper and the test
//! script); its failure records `{"status": "infra", "note": "TestSetupError(...)"}`. Then
//! the wrapper runs the test; its stdout is the control channel, the test's combined output
//! goes to `testout.temp` (exactly what the test printed: the wrapper's own messages go to
//! `W/test/wrapper.N.log` and are quoted in the abort note when the wrapper fails). The
//! deadline (test `duration`, default 5 minutes) starts when the test starts.
//!
//! A test that cannot be finished is *aborted*: timeout, cancellation, a broken control
//! stream, an invalid `duration`/`exitcode` argument, a wrapper that died, a lost
//! connection. Its remote process tree is killed and the fallback result is
//! `{"status": "infra", "note": "<ErrorType>(<message>)", "files": ["output.txt"]}`
//! (test-control.md §5.4). A connection that breaks mid-test is returned as
//! [`ExecutorError::Connection`], so that orchestrators treat the remote as lost.
//!
//! The control channel is read until it ends; once the wrapper reported `exitcode` (its
//! last message), for [`FmfOptions::exit_drain`] ([`EXIT_DRAIN`], 2 s) at most: a daemon
//! the test left behind may hold it open. It is then closed and the test is finished with
//! the reported exit code.
//!
//! After `disconnect` the channel is closed at once (further writes to it fail with EPIPE,
//! over SSH too), and after a non-zero wrapper exit (the system rebooted) the connection is
//! re-established with [`Connection::reconnect`] until the deadline, and the test starts
//! again with `TMT_REBOOT_COUNT` and `TMT_TEST_RESTART_COUNT` incremented.
//!
//! [`Executor::stop`] runs the plan's `finish` steps and removes `W`, also when the run was
//! cancelled: cleanups run in a [shielded](Scope::shielded) child of the caller's scope,
//! which graceful cancellation does not reach and forcing does.
//!
//! ```no_run
//! use std::sync::Arc;
//! use atex::connection::LocalConnection;
//! use atex::executor::Executor;
//! use atex::executor::fmf::{FmfExecutor, FmfPlan, FmfTest};
//! use atex::scope::Scope;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let scope = Scope::root("doc");
//! let tests = vec![FmfTest::new("/smoke", "echo hello")];
//! let mut exec = FmfExecutor::new(Arc::new(LocalConnection::new()), "tests-tree", tests, FmfPlan::default());
//! exec.start(&scope).await?;
//! let artifacts = tempfile::tempdir()?;
//! let outcome = exec.run_test("/smoke", artifacts.path(), &scope).await;
//! exec.stop(&scope).await?;
//! assert_eq!(outcome?.exit_code, 0);
//! # Ok(()) }
//! ```

pub mod control;
mod discovered;
pub mod reporter;
pub mod scripts;
pub mod test;

#[cfg(test)]
mod tests;

pub use discovered::FmfExecutorFactory;
pub use test::{FmfPlan, FmfTest, FmfTestSet, PlanStep};

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Map, Value};

use self::control::{ControlError, ControlEvent, ControlParser};
use self::reporter::{Outcome, ReportError, Reporter};
use self::scripts::{TestSetup, plan_install, plan_shell};
use super::{Executor, ExecutorError, TestOutcome};
use crate::connection::{
    CommandSpec, Connection, ConnectionError, ConnectionExt, ErrOutput, Input, Output, Process,
    shell_quote,
};
use crate::duration::{Deadline, parse_duration_or};
use crate::guard::CleanupGuard;
use crate::process::ExitStatus;
use crate::scope::Scope;

/// The default test duration (tmt's 5 minutes).
pub const DEFAULT_DURATION: Duration = Duration::from_secs(300);

/// How long cleanup commands (killing a leftover test, removing the work directory) may
/// take when the caller's scope is already cancelled.
const CLEANUP_TIMEOUT: Duration = Duration::from_secs(15);

/// Default of [`FmfOptions::exit_drain`]: how long the control channel is still read after
/// the wrapper reported `exitcode`.
pub const EXIT_DRAIN: Duration = Duration::from_secs(2);

/// Settings of an [`FmfExecutor`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FmfOptions {
    /// Directory on the system to create the work directory in; `None` tries `/var/tmp`,
    /// then `$HOME`, then `/tmp`.
    pub work_base: Option<String>,
    /// Duration of tests that do not set one.
    pub default_duration: Duration,
    /// Debug: tell the wrapper not to send `exitcode` (controller variable
    /// `ATEX_DEBUG_NO_EXITCODE=1`).
    pub no_exitcode: bool,
    /// Debug: tell the wrapper not to kill leftover processes of the test (controller
    /// variable `ATEX_DEBUG_NO_BG_KILL=1`).
    pub no_bg_kill: bool,
    /// Pause between failed reconnect attempts after a reboot.
    pub reconnect_delay: Duration,
    /// How long the control channel is still read after the wrapper reported `exitcode`
    /// (its last message): normally the channel ends at once, but a process the test left
    /// behind (a daemon that called `setsid`) may hold it open. The channel is then closed
    /// (further writes to it fail with EPIPE) and the test is finished. Default
    /// [`EXIT_DRAIN`].
    pub exit_drain: Duration,
    /// Contain daemons: run each test as PID 1 of a PID namespace of its own, so that
    /// processes which left the test's process group with `setsid` die with the test.
    /// Takes effect where the system allows it (root and a working util-linux `unshare`;
    /// not with `tty: true`); elsewhere only the process group is killed. Off by default
    /// because inside the namespace `$$` is 1, `$PPID` is 0 and `/proc` (hence `ps`,
    /// `pgrep`, `pkill`) still shows the host's process ids. Controller variable
    /// `ATEX_CONTAIN_DAEMONS=1`.
    pub contain_daemons: bool,
}

impl Default for FmfOptions {
    fn default() -> Self {
        Self {
            work_base: None,
            default_duration: DEFAULT_DURATION,
            no_exitcode: false,
            no_bg_kill: false,
            reconnect_delay: Duration::from_millis(500),
            exit_drain: EXIT_DRAIN,
            contain_daemons: false,
        }
    }
}

impl FmfOptions {
    /// The defaults, with the debug switches read from the controller's environment
    /// (`ATEX_DEBUG_NO_EXITCODE=1`, `ATEX_DEBUG_NO_BG_KILL=1`).
    pub fn from_env() -> Self {
        let on = |name: &str| std::env::var(name).is_ok_and(|v| v == "1");
        Self {
            no_exitcode: on("ATEX_DEBUG_NO_EXITCODE"),
            no_bg_kill: on("ATEX_DEBUG_NO_BG_KILL"),
            contain_daemons: on("ATEX_CONTAIN_DAEMONS"),
            ..Self::default()
        }
    }
}

/// Turns the test's exit code into the one used for the fallback result and returned by
/// `run_test` (executors.md §5.5 `eval_exit_code`; the Beakerlib executor derives it from
/// the results already reported). Arguments: test name, the reporter, the exit code.
pub type EvalExitCode = Arc<dyn Fn(&str, &Reporter, i32) -> i32 + Send + Sync>;

/// Runs FMF tests over a [`Connection`] (see the [module docs](self)).
pub struct FmfExecutor {
    conn: Arc<dyn Connection>,
    tree: PathBuf,
    tests: Arc<FmfTestSet>,
    plan: Arc<FmfPlan>,
    env: Vec<(String, String)>,
    options: FmfOptions,
    work_dir: Option<String>,
    eval_exit_code: Option<EvalExitCode>,
    /// Local directory where each test's `metadata.yaml` and `test.sh` are prepared before
    /// they are sent to `W/test`.
    staging: Option<tempfile::TempDir>,
}

/// Writes `metadata.yaml` and an executable `test.sh` into `dir`.
fn write_staging(dir: &Path, metadata: &str, test_sh: &str) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(dir.join("metadata.yaml"), metadata)?;
    let script = dir.join("test.sh");
    std::fs::write(&script, test_sh)?;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755))
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

/// Why a test run ended early.
#[derive(Debug)]
struct Abort {
    kind: &'static str,
    message: String,
    cancelled: bool,
    /// The connection broke while the test ran: the remote is lost.
    lost: Option<ConnectionError>,
}

impl Abort {
    fn new(kind: &'static str, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            cancelled: false,
            lost: None,
        }
    }
    /// A connection error: a lost remote when it says the connection broke.
    fn connection(e: ConnectionError) -> Self {
        let mut abort = Self::new("ConnectionError", e.to_string());
        if e.is_disconnect() {
            abort.lost = Some(e);
        }
        abort
    }
    fn aborted(message: impl Into<String>) -> Self {
        Self::new("TestAbortedError", message)
    }
    fn cancelled() -> Self {
        Self {
            cancelled: true,
            ..Self::aborted("cancel requested")
        }
    }
    fn timeout() -> Self {
        Self::aborted("test duration timeout reached")
    }
    fn control(e: ControlError) -> Self {
        Self::new(e.kind(), e.to_string())
    }
    fn report(e: ReportError) -> Self {
        Self::new(e.kind(), e.to_string())
    }
    fn into_error(self, test: &str) -> ExecutorError {
        if self.cancelled {
            return ExecutorError::Cancelled { test: test.into() };
        }
        if let Some(e) = self.lost {
            return ExecutorError::Connection(e);
        }
        let reason = if self.kind == "TestAbortedError" {
            self.message
        } else {
            format!("{}({})", self.kind, self.message)
        };
        ExecutorError::Aborted {
            test: test.into(),
            reason,
        }
    }
}

/// What one select round produced.
enum Wake<T> {
    Cancelled,
    Expired,
    Done(T),
}

/// Races `fut` against cancellation of `scope` and the deadline.
async fn race<T>(scope: &Scope, deadline: &Deadline, fut: impl Future<Output = T>) -> Wake<T> {
    tokio::select! {
        biased;
        () = scope.cancelled() => Wake::Cancelled,
        () = tokio::time::sleep_until(deadline.at()) => Wake::Expired,
        out = fut => Wake::Done(out),
    }
}

/// Sets `key` in `env`, replacing an earlier value (later settings win).
fn set_env(env: &mut Vec<(String, String)>, key: &str, value: impl Into<String>) {
    env.retain(|(k, _)| k != key);
    env.push((key.to_owned(), value.into()));
}

fn report_to_exec(e: ReportError) -> ExecutorError {
    match e {
        ReportError::Io { what, path, source } => {
            ExecutorError::io(format!("{what} {}", path.display()), source)
        }
        other => ExecutorError::io(
            other.to_string(),
            std::io::Error::new(std::io::ErrorKind::AlreadyExists, other.to_string()),
        ),
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
            staging: None,
            eval_exit_code: None,
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

    /// Sets the exit-code evaluation hook (default: the exit code as reported).
    pub fn with_eval_exit_code(mut self, eval: EvalExitCode) -> Self {
        self.eval_exit_code = Some(eval);
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

    fn plan_env(&self, work: &str) -> Vec<(String, String)> {
        let mut env = Vec::new();
        for (k, v) in &self.plan.environment {
            set_env(&mut env, k, v.clone());
        }
        for (k, v) in &self.env {
            set_env(&mut env, k, v.clone());
        }
        set_env(&mut env, "TMT_TREE", format!("{work}/tests"));
        set_env(
            &mut env,
            "TMT_PLAN_ENVIRONMENT_FILE",
            format!("{work}/plan_env"),
        );
        env
    }

    fn test_env(&self, test: &FmfTest, work: &str, restarts: u32) -> Vec<(String, String)> {
        let mut env = Vec::new();
        for (k, v) in &self.plan.environment {
            set_env(&mut env, k, v.clone());
        }
        set_env(
            &mut env,
            "TMT_PLAN_ENVIRONMENT_FILE",
            format!("{work}/plan_env"),
        );
        set_env(&mut env, "TMT_TEST_NAME", test.name.clone());
        set_env(
            &mut env,
            "TMT_TEST_METADATA",
            format!("{work}/test/metadata.yaml"),
        );
        for (k, v) in &test.environment {
            set_env(&mut env, k, v.clone());
        }
        for (k, v) in &self.env {
            set_env(&mut env, k, v.clone());
        }
        set_env(&mut env, "TMT_TREE", format!("{work}/tests"));
        set_env(&mut env, "TMT_REBOOT_COUNT", restarts.to_string());
        set_env(&mut env, "TMT_TEST_RESTART_COUNT", restarts.to_string());
        set_env(&mut env, "ATEX_TEST_PGID_FILE", pgid_file(work, restarts));
        set_env(&mut env, "ATEX_WRAPPER_LOG", wrapper_log(work, restarts));
        env
    }

    /// Runs a bash script (on stdin) with `env`; fails with its combined output.
    async fn run_script(
        &self,
        script: String,
        env: Vec<(String, String)>,
        what: &str,
        scope: &Scope,
    ) -> Result<String, ExecutorError> {
        let cmd = CommandSpec::new(["bash"])
            .envs(env)
            .stdin(Input::Bytes(script.into_bytes()))
            .stderr(ErrOutput::ToStdout);
        let out = self.conn.output(cmd, scope).await?;
        let text = out.stdout_lossy();
        for line in text.lines() {
            tracing::debug!(target: "atex::executor::fmf", "{what}: {line}");
        }
        if out.status.success() {
            Ok(text)
        } else {
            Err(ExecutorError::Setup {
                what: what.to_owned(),
                message: format!("exited with {}: {text}", out.status),
            })
        }
    }

    async fn run_steps(
        &self,
        steps: &[PlanStep],
        work: &str,
        what: &str,
        scope: &Scope,
    ) -> Result<(), ExecutorError> {
        for step in steps {
            match step {
                PlanStep::Install { packages } => {
                    if !packages.is_empty() {
                        self.run_script(plan_install(packages), Vec::new(), what, scope)
                            .await?;
                    }
                }
                PlanStep::Shell { scripts } => {
                    for script in scripts {
                        let text = plan_shell(&format!("{work}/tests"), script);
                        self.run_script(text, self.plan_env(work), what, scope)
                            .await?;
                    }
                }
            }
        }
        Ok(())
    }

    /// The per-test setup; `Err` carries the setup output.
    ///
    /// Without packages to install, `metadata.yaml` and `test.sh` are written locally and
    /// sent with the connection's own file transfer into `W/test` (no process on the
    /// system); otherwise one bash script installs the packages and writes both files.
    async fn setup_test(
        &self,
        test: &FmfTest,
        work: &str,
        scope: &Scope,
    ) -> Result<(), ExecutorError> {
        let metadata = serde_json::to_string_pretty(&test.metadata).unwrap_or_default();
        if test.require.is_empty()
            && test.recommend.is_empty()
            && let Some(staging) = &self.staging
        {
            let dir = staging.path().to_path_buf();
            let test_sh = scripts::test_sh(work, &test.script);
            let written = scope
                .spawn_blocking("write-test-files", move || {
                    write_staging(&dir, &metadata, &test_sh)
                })
                .await
                .map_err(|e| std::io::Error::other(e.to_string()))
                .and_then(|r| r);
            if let Err(e) = written {
                return Err(ExecutorError::io("writing the test's files locally", e));
            }
            let remote_dir = format!("{work}/test");
            let upload = self.conn.upload(staging.path(), &remote_dir);
            return match scope.run(upload).await {
                Some(res) => res.map_err(|e| ExecutorError::Setup {
                    what: test.name.clone(),
                    message: e.to_string(),
                }),
                None => Err(crate::connection::ConnectionError::Cancelled.into()),
            };
        }
        let script = scripts::test_setup(&TestSetup {
            work_dir: work,
            require: &test.require,
            recommend: &test.recommend,
            metadata: &metadata,
            script: &test.script,
        });
        self.run_script(script, Vec::new(), &test.name, scope)
            .await
            .map(|_| ())
    }

    fn wrapper_argv(&self, test: &FmfTest, work: &str) -> Vec<String> {
        let mut cwd = format!("{work}/tests");
        let source = crate::artifacts::normalize_name(&test.source_dir.to_string_lossy());
        if !source.as_os_str().is_empty() {
            cwd = format!("{cwd}/{}", source.display());
        }
        let mut argv = vec![
            "bash".to_owned(),
            format!("{work}/test/wrapper.sh"),
            format!("{work}/test/test.sh"),
            cwd,
        ];
        if test.tty {
            argv.push("pty".into());
        }
        if self.options.no_exitcode {
            argv.push("noexitcode".into());
        }
        if self.options.contain_daemons {
            argv.push("pidns".into());
        }
        if self.options.no_bg_kill {
            argv.push("nokill".into());
        }
        argv
    }

    /// Runs the test until it finishes (returns its exit code) or is aborted.
    async fn execute(
        &self,
        test: &FmfTest,
        work: &str,
        reporter: &mut Reporter,
        budget: Duration,
        scope: &Scope,
    ) -> Result<i32, Abort> {
        let mut deadline = Deadline::new(budget);
        let mut restarts: u32 = 0;
        let mut exit_code: Option<i32> = None;
        loop {
            // STARTING_TEST
            let testout = reporter.open_testout().map_err(Abort::report)?;
            let cmd = CommandSpec::new(self.wrapper_argv(test, work))
                .envs(self.test_env(test, work, restarts))
                .stdin(Input::Null)
                .stdout(Output::Piped)
                .stderr(ErrOutput::File(testout));
            let mut proc = match race(scope, &deadline, self.conn.spawn(cmd, scope)).await {
                Wake::Cancelled => return Err(Abort::cancelled()),
                Wake::Expired => return Err(Abort::timeout()),
                Wake::Done(Ok(proc)) => proc,
                Wake::Done(Err(e)) => return Err(Abort::connection(e)),
            };
            // Should this future be dropped, the reaper still kills the test's group.
            let guard = self.kill_guard(&test.name, work, restarts, scope);
            let Some(stdout) = proc.stdout.take() else {
                self.kill_test(&mut proc, guard, scope).await;
                return Err(Abort::aborted(
                    "the connection gave no stdout pipe for the control channel",
                ));
            };
            tracing::debug!(test = %test.name, restarts, "test started");

            // READING_CONTROL
            let mut parser = ControlParser::new(stdout);
            let mut disconnect = false;
            // Once the wrapper reported `exitcode` (its last message), the channel is read
            // until this instant at most: something the test left behind may hold it open.
            let mut drain_until: Option<tokio::time::Instant> = None;
            let mut drained = false;
            let ended: Result<(), Abort> = loop {
                let step = async {
                    match drain_until {
                        Some(at) => tokio::time::timeout_at(at, parser.next(reporter))
                            .await
                            .ok(),
                        None => Some(parser.next(reporter).await),
                    }
                };
                match race(scope, &deadline, step).await {
                    Wake::Cancelled => break Err(Abort::cancelled()),
                    // The test has ended: its deadline no longer matters.
                    Wake::Expired | Wake::Done(None) if drain_until.is_some() => {
                        drained = true;
                        break Ok(());
                    }
                    Wake::Expired | Wake::Done(None) => break Err(Abort::timeout()),
                    Wake::Done(Some(Ok(Some(event)))) => match event {
                        ControlEvent::Result(result) => {
                            if let Err(e) = reporter.record(result) {
                                break Err(Abort::report(e));
                            }
                        }
                        ControlEvent::ExitCode(code) => {
                            exit_code = Some(code);
                            drain_until.get_or_insert_with(|| {
                                tokio::time::Instant::now() + self.options.exit_drain
                            });
                        }
                        ControlEvent::Duration(d) => deadline.apply(d),
                        ControlEvent::Disconnect => {
                            disconnect = true;
                            break Ok(());
                        }
                        ControlEvent::Noop => {}
                    },
                    Wake::Done(Some(Ok(None))) => break Ok(()),
                    Wake::Done(Some(Err(ControlError::UnexpectedEof { message, parser }))) => {
                        // The stream broke mid-payload: if the wrapper died, say so.
                        let abort = match race(scope, &deadline, proc.wait()).await {
                            Wake::Done(Ok(info)) if !info.status.success() => {
                                Abort::aborted(format!(
                                    "{parser} was running while test wrapper unexpectedly exited with {}",
                                    info.status.code_or_signal()
                                ))
                            }
                            Wake::Done(Err(e)) if e.is_disconnect() => Abort::connection(e),
                            _ => Abort::new("BadControlError", message),
                        };
                        break Err(abort);
                    }
                    Wake::Done(Some(Err(e))) => break Err(Abort::control(e)),
                }
            };
            if let Err(abort) = ended {
                if abort.lost.is_some() {
                    // The system cannot be reached: the reaper kills the test's group if it
                    // can, and reports it otherwise.
                    drop(guard);
                } else {
                    // Killed while the control channel is still open: closing it first
                    // would lose the wrapper's exit status over SSH.
                    self.kill_test(&mut proc, guard, scope).await;
                }
                return Err(abort);
            }
            // Closing the read end makes further control writes fail with EPIPE (after
            // `disconnect`, and for whatever the test left behind holding the channel).
            drop(parser);
            if drained {
                tracing::warn!(test = %test.name, after = ?self.options.exit_drain,
                    "the control channel stayed open after the test ended (held by a process it left \
                     behind, such as a daemon that called setsid); closed it. \
                     ATEX_CONTAIN_DAEMONS=1 (FmfOptions::contain_daemons) kills such processes");
            }

            // WAITING_FOR_EXIT. Once the wrapper reported `exitcode`, it is about to exit:
            // the test's deadline no longer applies.
            let wait_deadline = match exit_code {
                Some(_) if deadline.remaining() < self.options.exit_drain => {
                    Deadline::new(self.options.exit_drain)
                }
                _ => deadline.clone(),
            };
            let info = match race(scope, &wait_deadline, proc.wait()).await {
                Wake::Cancelled => {
                    self.kill_test(&mut proc, guard, scope).await;
                    return Err(Abort::cancelled());
                }
                Wake::Expired => {
                    self.kill_test(&mut proc, guard, scope).await;
                    return Err(Abort::timeout());
                }
                Wake::Done(Ok(info)) => Some(info),
                // After `disconnect` the system is expected to go away (a reboot): a
                // connection that breaks now is the reboot, not a failure.
                Wake::Done(Err(e)) if disconnect && e.is_disconnect() => {
                    tracing::debug!(error = %e, "connection lost after disconnect");
                    // The system went down with the test: nothing to kill there.
                    proc.forget();
                    None
                }
                // We closed the channel after the wrapper's last message; its exit status
                // may then be lost (SSH). The test did finish.
                Wake::Done(Err(e)) if drained => {
                    tracing::debug!(error = %e, "no exit status after closing the control channel");
                    proc.forget();
                    guard.disarm();
                    return exit_code
                        .ok_or_else(|| Abort::aborted("exitcode not reported, wrapper bug?"));
                }
                Wake::Done(Err(e)) if e.is_disconnect() => {
                    // A lost remote. The reaper kills what is left of the test if it can.
                    drop(guard);
                    return Err(Abort::connection(e));
                }
                Wake::Done(Err(e)) => {
                    self.kill_test(&mut proc, guard, scope).await;
                    return Err(Abort::connection(e));
                }
            };
            drop(proc);
            match info {
                // A wrapper killed by a signal did not clean up after the test (after
                // `disconnect` the test reboots the system: leave it alone).
                Some(i) if matches!(i.status, ExitStatus::Signal(_)) && !disconnect => {
                    self.kill_group(guard).await;
                }
                // The wrapper exited: it cleaned up the test's group itself; or the system
                // went away (reboot), after which the recorded group id means nothing.
                _ => guard.disarm(),
            }
            // The wrapper's diagnostics: why it failed, or the warnings of the `pty` and
            // `pidns` modes. Not after `disconnect`: the system may be going down.
            let failed = info.is_some_and(|i| !i.status.success());
            let notes = if !disconnect && (failed || test.tty || self.options.contain_daemons) {
                self.wrapper_notes(work, restarts, scope).await
            } else {
                String::new()
            };
            if let Some(info) = info
                && info.status.success()
            {
                return exit_code
                    .ok_or_else(|| Abort::aborted("exitcode not reported, wrapper bug?"));
            }
            let rc = info.map_or_else(
                || "a lost connection".to_string(),
                |i| i.status.code_or_signal().to_string(),
            );
            self.conn.disconnect().await;
            if !disconnect {
                let notes = if notes.is_empty() {
                    notes
                } else {
                    format!(" (the wrapper said: {notes})")
                };
                return Err(Abort::aborted(format!(
                    "test wrapper unexpectedly exited with {rc} and disconnect was not sent via test control{notes}"
                )));
            }
            exit_code = None;
            tracing::info!(test = %test.name, rc, "test disconnected (reboot); reconnecting");

            // RECONNECTING
            loop {
                match race(scope, &deadline, self.conn.reconnect(scope)).await {
                    Wake::Cancelled => return Err(Abort::cancelled()),
                    Wake::Expired => return Err(Abort::timeout()),
                    Wake::Done(Ok(())) => break,
                    Wake::Done(Err(e)) => {
                        tracing::debug!(error = %e, "reconnect failed; retrying");
                        let delay = tokio::time::sleep(self.options.reconnect_delay);
                        match race(scope, &deadline, delay).await {
                            Wake::Cancelled => return Err(Abort::cancelled()),
                            Wake::Expired => return Err(Abort::timeout()),
                            Wake::Done(()) => {}
                        }
                    }
                }
            }
            restarts += 1;
        }
    }

    /// What the wrapper of attempt `restarts` said about itself (its diagnostics never go
    /// to the test output); each line is logged as a warning. Empty when it said nothing
    /// or the log cannot be read.
    async fn wrapper_notes(&self, work: &str, restarts: u32, scope: &Scope) -> String {
        let cmd =
            CommandSpec::new(["cat", "--", &wrapper_log(work, restarts)]).stderr(ErrOutput::Null);
        let read = tokio::time::timeout(CLEANUP_TIMEOUT, self.conn.output(cmd, scope));
        let text = match read.await {
            Ok(Ok(out)) if out.status.success() => out.stdout_lossy(),
            Ok(Ok(_)) => return String::new(),
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "reading the wrapper's log failed");
                return String::new();
            }
            Err(_) => return String::new(),
        };
        let lines: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        for line in &lines {
            tracing::warn!(target: "atex::executor::fmf", "{line}");
        }
        lines.join("; ")
    }

    /// A guard that kills the test's process group (recorded by the wrapper) through the
    /// connection; released by [`kill_test`](Self::kill_test), handed to the scope's reaper
    /// if dropped while armed.
    fn kill_guard(&self, test: &str, work: &str, restarts: u32, scope: &Scope) -> CleanupGuard {
        let conn = self.conn.clone();
        let script = format!(
            "f={}\n[ -f \"$f\" ] || exit 0\nread -r g < \"$f\" && [ -n \"$g\" ] && kill -KILL -- \"-$g\" 2>/dev/null\nrm -f -- \"$f\"\nexit 0\n",
            shell_quote(&pgid_file(work, restarts))
        );
        let what = format!("processes of test {test} on {}", conn.describe());
        let owner = scope.clone();
        CleanupGuard::new(scope, what, move || async move {
            run_cleanup(conn.as_ref(), script, &owner).await
        })
    }

    /// Kills the wrapper and the test's whole process group on the system.
    async fn kill_test(&self, proc: &mut Process, guard: CleanupGuard, scope: &Scope) {
        // SIGTERM: the wrapper hangs up the test's group, gives it a second, SIGKILLs it.
        if let Err(e) = proc
            .terminate(scope.kill_grace(), scope.force_token())
            .await
        {
            tracing::warn!(error = %e, "terminating the test wrapper failed");
        }
        // If the wrapper was killed before it could clean up, its group id file remains.
        self.kill_group(guard).await;
    }

    /// Kills the test's process group through its guard, bounded in time.
    async fn kill_group(&self, guard: CleanupGuard) {
        match tokio::time::timeout(CLEANUP_TIMEOUT, guard.release()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "killing the test's processes failed"),
            Err(_) => tracing::warn!("killing the test's processes timed out"),
        }
    }

    /// Runs a cleanup script even when the caller's scope is cancelled, bounded in time.
    async fn cleanup_script(&self, script: String, what: &str, scope: &Scope) {
        let run = run_cleanup(self.conn.as_ref(), script, scope);
        match tokio::time::timeout(CLEANUP_TIMEOUT, run).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(%what, error = %e, "cleanup failed"),
            Err(_) => tracing::warn!(%what, "cleanup timed out"),
        }
    }
}

/// Runs a bash cleanup script in a shielded child of `scope`: graceful cancellation of the
/// caller (which may have happened already) does not stop it, forcing does.
async fn run_cleanup(conn: &dyn Connection, script: String, scope: &Scope) -> Result<(), String> {
    let cleanup = scope.shielded("fmf-cleanup");
    let cmd = CommandSpec::new(["bash"])
        .stdin(Input::Bytes(script.into_bytes()))
        .stderr(ErrOutput::ToStdout);
    match conn.output(cmd, &cleanup).await {
        Ok(out) if out.status.success() => Ok(()),
        Ok(out) => Err(format!(
            "exited with {}: {}",
            out.status,
            out.stdout_lossy()
        )),
        Err(e) => Err(e.to_string()),
    }
}

/// Where the wrapper of attempt `restarts` writes its own diagnostics.
fn wrapper_log(work: &str, restarts: u32) -> String {
    format!("{work}/test/wrapper.{restarts}.log")
}

/// Where the wrapper of attempt `restarts` records the test's process group.
fn pgid_file(work: &str, restarts: u32) -> String {
    format!("{work}/test/pgid.{restarts}")
}

#[async_trait]
impl Executor for FmfExecutor {
    async fn start(&mut self, scope: &Scope) -> Result<(), ExecutorError> {
        let out = self
            .run_script(
                scripts::make_work_dir(self.options.work_base.as_deref()),
                Vec::new(),
                "work directory",
                scope,
            )
            .await?;
        let work = out
            .lines()
            .last()
            .map(str::trim)
            .filter(|l| l.starts_with('/'))
            .ok_or_else(|| ExecutorError::Setup {
                what: "work directory".into(),
                message: format!("unexpected output: {out}"),
            })?
            .to_owned();
        self.work_dir = Some(work.clone());
        match tempfile::Builder::new()
            .prefix("atex-fmf-staging-")
            .tempdir()
        {
            Ok(dir) => self.staging = Some(dir),
            // Not fatal: every test is then set up by a script on the system.
            Err(e) => {
                tracing::warn!(error = %e, "no local staging directory; setting tests up remotely")
            }
        }
        let remote_tests = format!("{work}/tests");
        let upload = self.conn.upload(&self.tree, &remote_tests);
        match scope.run(upload).await {
            Some(res) => res?,
            None => return Err(crate::connection::ConnectionError::Cancelled.into()),
        }
        let plan = self.plan.clone();
        self.run_steps(&plan.prepare, &work, "plan prepare", scope)
            .await
    }

    async fn run_test(
        &mut self,
        test: &str,
        artifacts: &Path,
        scope: &Scope,
    ) -> Result<TestOutcome, ExecutorError> {
        let Some(fmf_test) = self.test(test).cloned() else {
            return Err(ExecutorError::UnknownTest(test.to_owned()));
        };
        let Some(work) = self.work_dir.clone() else {
            return Err(ExecutorError::Setup {
                what: test.to_owned(),
                message: "the executor was not started".into(),
            });
        };
        let mut reporter = Reporter::create(artifacts).map_err(report_to_exec)?;
        let setup = match &fmf_test.duration {
            None => Ok(self.options.default_duration),
            Some(spec) => parse_duration_or(spec, self.options.default_duration).map_err(|e| {
                ExecutorError::Setup {
                    what: test.to_owned(),
                    message: e.to_string(),
                }
            }),
        };
        let setup = match setup {
            Ok(budget) => self
                .setup_test(&fmf_test, &work, scope)
                .await
                .map(|()| budget),
            Err(e) => Err(e),
        };
        let budget = match setup {
            Ok(budget) => budget,
            Err(e) if scope.is_cancelled() => {
                tracing::debug!(error = %e, "setup interrupted by cancellation");
                reporter.finish(&Outcome::aborted("TestAbortedError", "cancel requested"));
                return Err(ExecutorError::Cancelled { test: test.into() });
            }
            Err(e) => {
                let message = match &e {
                    ExecutorError::Setup { message, .. } => message.clone(),
                    other => other.to_string(),
                };
                let mut line = Map::new();
                line.insert("status".into(), Value::from("infra"));
                line.insert(
                    "note".into(),
                    Value::from(format!("TestSetupError({message})")),
                );
                if let Err(w) = reporter.write(line) {
                    tracing::error!(error = %w, "recording the setup failure failed");
                }
                reporter.finish(&Outcome::SetupFailed);
                return Err(ExecutorError::Setup {
                    what: test.to_owned(),
                    message,
                });
            }
        };
        let started = std::time::Instant::now();
        let result = self
            .execute(&fmf_test, &work, &mut reporter, budget, scope)
            .await;
        let duration = started.elapsed();
        match result {
            Ok(exit_code) => {
                let exit_code = match &self.eval_exit_code {
                    Some(eval) => eval(test, &reporter, exit_code),
                    None => exit_code,
                };
                reporter.finish(&Outcome::Exited(exit_code));
                Ok(TestOutcome {
                    exit_code,
                    duration,
                })
            }
            Err(abort) => {
                tracing::warn!(test, kind = abort.kind, message = %abort.message, "test aborted");
                reporter.finish(&Outcome::aborted(abort.kind, abort.message.clone()));
                Err(abort.into_error(test))
            }
        }
    }

    async fn stop(&mut self, scope: &Scope) -> Result<(), ExecutorError> {
        let Some(work) = self.work_dir.take() else {
            return Ok(());
        };
        let plan = self.plan.clone();
        // Plan `finish` runs at the end of a cancelled run too: in a shielded scope, which
        // graceful cancellation does not reach (the run's shutdown grace bounds it) but
        // forcing does.
        let shielded = scope.shielded("fmf-stop");
        let finish = self
            .run_steps(&plan.finish, &work, "plan finish", &shielded)
            .await;
        let finish = match finish {
            Err(ExecutorError::Connection(e)) => {
                if shielded.is_killed() {
                    tracing::warn!(error = %e, "plan finish interrupted: the run was forced to stop");
                } else {
                    tracing::warn!(error = %e, "plan finish: the connection failed; ignored");
                }
                Ok(())
            }
            other => other,
        };
        self.cleanup_script(
            format!("rm -rf -- {}\n", shell_quote(&work)),
            "removing the work directory",
            &shielded,
        )
        .await;
        finish
    }
}
