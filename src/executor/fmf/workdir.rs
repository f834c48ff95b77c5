//! The work directory `W` on the system: creating it, and where the wrapper keeps its
//! files in it.

use std::sync::atomic::{AtomicU64, Ordering};

use super::scripts;
use super::shell::run_script;
use crate::connection::Connection;
use crate::executor::ExecutorError;
use crate::scope::Scope;

/// The script creating the work directory did not print its path.
#[derive(Debug, thiserror::Error)]
#[error("unexpected output: {0}")]
struct UnexpectedOutput(String);

/// A name for a new work directory, `atex-` and 16 hex digits that cannot be guessed (the
/// process's random hash keys mixed with the time and a counter). Chosen before the
/// directory is created, so that a start interrupted before it learned the directory's
/// path can still remove it ([`scripts::remove_unfinished_work_dir`]).
pub(super) fn fresh_name() -> String {
    use std::hash::{BuildHasher, Hasher};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    h.write_u128(now);
    h.write_u32(std::process::id());
    format!("atex-{:016x}", h.finish())
}

/// Creates the work directory `name` (in `base`, else `/var/tmp`, `$HOME` or `/tmp`) and
/// returns its path on the system.
pub(super) async fn create(
    conn: &dyn Connection,
    base: Option<&str>,
    name: &str,
    scope: &Scope,
) -> Result<String, ExecutorError> {
    let out = run_script(
        conn,
        scripts::make_work_dir(base, name),
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
