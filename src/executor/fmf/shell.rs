//! Bash scripts on the system: plan steps and setup scripts, their output logged.

use super::scripts::{plan_install, plan_shell};
use super::test::PlanStep;
use crate::connection::{CommandSpec, Connection, ConnectionExt, ErrOutput, Input};
use crate::executor::ExecutorError;
use crate::process::ExitStatus;
use crate::scope::Scope;

/// A script on the system failed: its exit status and combined output (what it said, not
/// a cause). The source of [`ExecutorError::Setup`].
#[derive(Debug, thiserror::Error)]
#[error("exited with {status}: {output}")]
pub(super) struct ScriptFailed {
    /// How the script ended.
    pub(super) status: ExitStatus,
    /// Its stdout and stderr.
    pub(super) output: String,
}

/// Runs a bash script (on stdin) with `env`; fails with its combined output.
pub(super) async fn run_script(
    conn: &dyn Connection,
    script: String,
    env: Vec<(String, String)>,
    what: &str,
    scope: &Scope,
) -> Result<String, ExecutorError> {
    let cmd = CommandSpec::new(["bash"])
        .envs(env)
        .stdin(Input::Bytes(script.into_bytes()))
        .stderr(ErrOutput::ToStdout);
    let out = conn
        .output(cmd, scope)
        .await
        .map_err(|e| ExecutorError::setup(what, e))?;
    let text = out.stdout_lossy();
    for line in text.lines() {
        tracing::debug!(target: "atex::executor::fmf", "{what}: {line}");
    }
    if out.status.success() {
        Ok(text)
    } else {
        Err(ExecutorError::setup(
            what,
            ScriptFailed {
                status: out.status,
                output: text,
            },
        ))
    }
}

/// Runs plan steps in order: `install` with the system's package manager, `shell` scripts
/// in the tests tree with the plan environment `env`.
pub(super) async fn run_steps(
    conn: &dyn Connection,
    steps: &[PlanStep],
    env: &[(String, String)],
    work: &str,
    what: &str,
    scope: &Scope,
) -> Result<(), ExecutorError> {
    for step in steps {
        match step {
            PlanStep::Install { packages } => {
                if !packages.is_empty() {
                    run_script(conn, plan_install(packages), Vec::new(), what, scope).await?;
                }
            }
            PlanStep::Shell { scripts } => {
                for script in scripts {
                    let text = plan_shell(&format!("{work}/tests"), script);
                    run_script(conn, text, env.to_vec(), what, scope).await?;
                }
            }
        }
    }
    Ok(())
}
