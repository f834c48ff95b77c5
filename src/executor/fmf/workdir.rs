//! The work directory `W` on the system: creating it, and where the wrapper keeps its
//! files in it.

use super::scripts;
use super::shell::run_script;
use crate::connection::Connection;
use crate::executor::ExecutorError;
use crate::scope::Scope;

/// The script creating the work directory did not print its path.
#[derive(Debug, thiserror::Error)]
#[error("unexpected output: {0}")]
struct UnexpectedOutput(String);

/// Creates the work directory (in `base`, else `/var/tmp`, `$HOME` or `/tmp`) and returns
/// its path on the system.
pub(super) async fn create(
    conn: &dyn Connection,
    base: Option<&str>,
    scope: &Scope,
) -> Result<String, ExecutorError> {
    let out = run_script(
        conn,
        scripts::make_work_dir(base),
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
        .ok_or_else(|| ExecutorError::setup("work directory", UnexpectedOutput(out.clone())))?
        .to_owned();
    Ok(work)
}

/// Where the wrapper of attempt `restarts` writes its own diagnostics.
pub(super) fn wrapper_log(work: &str, restarts: u32) -> String {
    format!("{work}/test/wrapper.{restarts}.log")
}

/// Where the wrapper of attempt `restarts` records the test's process group.
pub(super) fn pgid_file(work: &str, restarts: u32) -> String {
    format!("{work}/test/pgid.{restarts}")
}
