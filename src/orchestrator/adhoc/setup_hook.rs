//! [`SetupHook`]: work done on each remote after its executor started.
//!
//! Hooks run in the order they were added to the
//! [`AdHocBuilder`](super::AdHocBuilder::setup_hook), on every remote, after
//! [`Executor::start`](crate::executor::Executor::start) succeeded and before the remote
//! gets its first test. A hook that fails (or panics) fails the remote's setup exactly like
//! a failed executor start: the remote is released, the failure is counted against
//! [`max_failed_setups`](super::AdHocBuilder::max_failed_setups), reported as an
//! [`EventKind::SetupFailed`](crate::orchestrator::events::EventKind::SetupFailed) event
//! and listed in [`RunSummary::setup_errors`](crate::orchestrator::RunSummary).
//!
//! Ready-made hooks: [`DirSync`] (mirror a local directory, see
//! [`connection::sync`](crate::connection::sync)) and [`ScriptHook`] (run a local script).

use std::fmt;
use std::path::{Path, PathBuf};

use async_trait::async_trait;

use crate::connection::{CommandSpec, ConnectionExt as _, DirSync, Input};
use crate::error::BoxError;
use crate::provisioner::Remote;
use crate::scope::Scope;

/// Work done on each remote after its executor started; see the [module docs](self).
#[async_trait]
pub trait SetupHook: Send + Sync + fmt::Debug {
    /// A short description for errors and logs (`script prepare.sh`, …).
    fn describe(&self) -> String;

    /// Prepares `remote` (run commands, upload files). An error fails the remote's setup.
    /// Long waits must race `scope` (the remote's scope; it is cancelled when the run is).
    async fn run(&self, remote: &dyn Remote, scope: &Scope) -> Result<(), BoxError>;
}

#[async_trait]
impl SetupHook for DirSync {
    fn describe(&self) -> String {
        format!("sync {} to {}", self.local().display(), self.remote())
    }

    async fn run(&self, remote: &dyn Remote, scope: &Scope) -> Result<(), BoxError> {
        DirSync::run(self, remote, scope).await?;
        Ok(())
    }
}

/// Runs a local script on each remote: its contents are written to a fresh temporary file
/// there (`mktemp`), made executable, run with no arguments and stdin from `/dev/null`,
/// and removed. The script therefore needs a `#!` line the remote can run. An exit code
/// other than 0 fails the setup; the error carries the script's stderr.
#[derive(Debug, Clone)]
pub struct ScriptHook {
    path: PathBuf,
    contents: Vec<u8>,
}

/// Runs the script in `$ATEX_SCRIPT` of stdin; `125` when it cannot be stored.
const RUN_SCRIPT: &str = r#"f=$(mktemp) || exit 125
cat > "$f" && chmod 700 "$f" || { rm -f -- "$f"; exit 125; }
"$f" </dev/null
rc=$?
rm -f -- "$f"
exit $rc
"#;

impl ScriptHook {
    /// Reads the script at `path` now (so that a missing file is an error before the run
    /// starts).
    pub fn from_file(path: impl Into<PathBuf>) -> std::io::Result<Self> {
        let path = path.into();
        let contents = std::fs::read(&path)?;
        Ok(Self { path, contents })
    }

    /// The script's local path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[async_trait]
impl SetupHook for ScriptHook {
    fn describe(&self) -> String {
        format!("script {}", self.path.display())
    }

    async fn run(&self, remote: &dyn Remote, scope: &Scope) -> Result<(), BoxError> {
        let cmd =
            CommandSpec::new(["sh", "-c", RUN_SCRIPT]).stdin(Input::Bytes(self.contents.clone()));
        let out = remote.output(cmd, scope).await?;
        if !out.status.success() {
            return Err(Box::new(ScriptFailed {
                script: self.path.clone(),
                status: out.status,
                stderr: out.stderr_lossy().trim_end().to_string(),
            }));
        }
        tracing::debug!(
            remote = %remote.describe(),
            script = %self.path.display(),
            stdout = %String::from_utf8_lossy(&out.stdout),
            "setup script done"
        );
        Ok(())
    }
}

/// A setup script ended with an exit code other than 0 (or was killed).
#[derive(Debug, thiserror::Error)]
#[error("setup script {} ended with {status}: {stderr}", script.display())]
pub struct ScriptFailed {
    /// The script's local path.
    pub script: PathBuf,
    /// How it ended.
    pub status: crate::process::ExitStatus,
    /// Its standard error output (lossily decoded).
    pub stderr: String,
}
