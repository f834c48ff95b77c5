//! [`CommandExecutor`]: each test is an argv run on the connection.

use std::collections::HashMap;
use std::fmt;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use serde_json::{Map, Value, json};

use super::{Executor, ExecutorError, TestOutcome};
use crate::artifacts::{ArtifactsDir, normalize_name};
use crate::connection::{CommandSpec, Connection, ErrOutput, Output};
use crate::error::chain;
use crate::jsonfmt::to_python_json;
use crate::process::ExitStatus;
use crate::scope::Scope;

/// Decides a test's status from its exit and its output file.
pub type Evaluate = Arc<dyn Fn(ExitStatus, &Path) -> String + Send + Sync>;

/// Runs each test as an argv on a [`Connection`], capturing stdout and stderr (merged,
/// byte-exact) into `files/<output>` and writing exactly one result line
/// `{"status": <s>, "files": [<output>]}`.
///
/// The status comes from the [`Evaluate`] hook; the default is `pass` for exit code 0 and
/// `fail` otherwise. When the harness cannot finish the test, the line is
/// `{"status": "infra", "note": …, "files": [<output>]}` instead and `run_test` returns the
/// error: a test that cannot be started, a cancelled test (terminated: SIGTERM to its whole
/// process group, SIGKILL after the grace period) and a test whose connection failed while
/// it ran ([`ExecutorError::Connection`], so that orchestrators see a lost remote).
///
/// ```
/// use std::sync::Arc;
/// use atex::connection::LocalConnection;
/// use atex::executor::{CommandExecutor, Executor};
/// use atex::scope::Scope;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let scope = Scope::root("doc");
/// let mut exec = CommandExecutor::new(Arc::new(LocalConnection::new()))
///     .with_test("/hello", ["sh", "-c", "echo hello"]);
/// let dir = tempfile::tempdir()?;
/// let outcome = exec.run_test("/hello", dir.path(), &scope).await?;
/// assert_eq!(outcome.exit_code, 0);
/// assert_eq!(std::fs::read_to_string(dir.path().join("results"))?,
///            "{\"status\": \"pass\", \"files\": [\"output.txt\"]}\n");
/// assert_eq!(std::fs::read(dir.path().join("files/output.txt"))?, b"hello\n");
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct CommandExecutor {
    conn: Arc<dyn Connection>,
    tests: Arc<HashMap<String, Vec<String>>>,
    evaluate: Evaluate,
    output_name: String,
}

impl fmt::Debug for CommandExecutor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CommandExecutor")
            .field("connection", &self.conn.describe())
            .field("tests", &self.tests.len())
            .field("output", &self.output_name)
            .finish()
    }
}

/// The default evaluation: `pass` iff exit code 0.
pub fn default_evaluate(status: ExitStatus, _output: &Path) -> String {
    if status.success() { "pass" } else { "fail" }.to_string()
}

impl CommandExecutor {
    /// An executor with no tests yet.
    pub fn new(conn: Arc<dyn Connection>) -> Self {
        Self {
            conn,
            tests: Arc::new(HashMap::new()),
            evaluate: Arc::new(default_evaluate),
            output_name: "output.txt".into(),
        }
    }

    /// An executor over a shared test table (cheap to create one per remote).
    pub fn with_tests(conn: Arc<dyn Connection>, tests: Arc<HashMap<String, Vec<String>>>) -> Self {
        Self {
            tests,
            ..Self::new(conn)
        }
    }

    /// Adds one test.
    pub fn with_test<I, S>(mut self, name: impl Into<String>, argv: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Arc::make_mut(&mut self.tests)
            .insert(name.into(), argv.into_iter().map(Into::into).collect());
        self
    }

    /// Replaces the status evaluation.
    pub fn with_evaluate(mut self, evaluate: Evaluate) -> Self {
        self.evaluate = evaluate;
        self
    }

    /// Changes the name of the output file (default `output.txt`).
    pub fn with_output_name(mut self, name: impl Into<String>) -> Self {
        self.output_name = name.into();
        self
    }

    fn write_result(artifacts: &ArtifactsDir, result: &Value) -> Result<(), ExecutorError> {
        let path = artifacts.results();
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| ExecutorError::io(format!("opening {}", path.display()), e))?;
        file.write_all(result_line(result).as_bytes())
            .map_err(|e| ExecutorError::io(format!("writing {}", path.display()), e))
    }
}

/// One line of a `results` file.
fn result_line(result: &Value) -> String {
    let mut line = to_python_json(result);
    line.push('\n');
    line
}

/// Creates the directory the output file goes in: one `mkdir` in the usual case (the
/// artifacts directory exists, `files/` does not yet), every missing ancestor otherwise.
fn create_parent(dir: &Path) -> std::io::Result<()> {
    match std::fs::create_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => std::fs::create_dir_all(dir),
        Err(e) => Err(e),
    }
}

#[async_trait]
impl Executor for CommandExecutor {
    async fn start(&mut self, _scope: &Scope) -> Result<(), ExecutorError> {
        Ok(())
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

    async fn run_test_lines(
        &mut self,
        test: &str,
        artifacts: &Path,
        scope: &Scope,
    ) -> Result<(TestOutcome, Option<Vec<u8>>), ExecutorError> {
        self.run(test, artifacts, scope, true).await
    }

    async fn stop(&mut self, _scope: &Scope) -> Result<(), ExecutorError> {
        Ok(())
    }
}

impl CommandExecutor {
    /// Runs `test`; its result line is written to `results`, or returned when
    /// `in_memory` (an `infra` line is always written).
    async fn run(
        &mut self,
        test: &str,
        artifacts: &Path,
        scope: &Scope,
        in_memory: bool,
    ) -> Result<(TestOutcome, Option<Vec<u8>>), ExecutorError> {
        let argv = self
            .tests
            .get(test)
            .ok_or_else(|| ExecutorError::UnknownTest(test.to_string()))?
            .clone();
        let artifacts = ArtifactsDir::new(artifacts);
        let files = artifacts.files();
        let rel = normalize_name(&self.output_name);
        if rel.as_os_str().is_empty() {
            return Err(ExecutorError::setup(
                test,
                InvalidOutputName(self.output_name.clone()),
            ));
        }
        let out_path = files.join(&rel);
        if let Some(parent) = out_path.parent() {
            create_parent(parent)
                .map_err(|e| ExecutorError::io(format!("creating {}", parent.display()), e))?;
        }
        let out_file = std::fs::OpenOptions::new()
            .create_new(true)
            .write(true)
            .open(&out_path)
            .map_err(|e| ExecutorError::io(format!("creating {}", out_path.display()), e))?;
        let files_list = json!([self.output_name]);
        let cmd = CommandSpec::new(argv)
            .stdout(Output::File(out_file))
            .stderr(ErrOutput::ToStdout);
        let started = Instant::now();
        let infra = |note: String| {
            let mut result = Map::new();
            result.insert("status".into(), json!("infra"));
            result.insert("note".into(), json!(note));
            result.insert("files".into(), files_list.clone());
            Self::write_result(&artifacts, &Value::Object(result))
        };
        let mut proc = match self.conn.spawn(cmd, scope).await {
            Ok(p) => p,
            Err(e) => {
                infra(format!("cannot start the test: {}", chain(&e)))?;
                return Err(ExecutorError::connection_in(test, e));
            }
        };
        let (info, cancelled) = match proc.wait_or_terminate(scope).await {
            Ok(ended) => ended,
            Err(e) => {
                // The connection failed while the test ran (or the test could not be
                // terminated): the harness could not finish it.
                if scope.is_cancelled() {
                    infra(format!(
                        "test cancelled; terminating it failed: {}",
                        chain(&e)
                    ))?;
                    return Err(ExecutorError::Cancelled { test: test.into() });
                }
                infra(format!(
                    "the connection failed while the test ran: {}",
                    chain(&e)
                ))?;
                return Err(ExecutorError::connection_in(test, e));
            }
        };
        let duration = started.elapsed();
        if cancelled {
            infra(format!("test cancelled, terminated with {}", info.status))?;
            return Err(ExecutorError::Cancelled { test: test.into() });
        }
        if info.leaked {
            tracing::warn!(
                test,
                "background processes outlived the test and were killed"
            );
        }
        let status = (self.evaluate)(info.status, &out_path);
        let result = json!({"status": status, "files": files_list});
        let outcome = TestOutcome {
            exit_code: info.status.code_or_signal(),
            duration,
        };
        if in_memory {
            return Ok((outcome, Some(result_line(&result).into_bytes())));
        }
        Self::write_result(&artifacts, &result)?;
        Ok((outcome, None))
    }
}

/// An output file name that names no file inside `files/`.
#[derive(Debug, thiserror::Error)]
#[error("invalid output file name '{0}'")]
struct InvalidOutputName(String);
