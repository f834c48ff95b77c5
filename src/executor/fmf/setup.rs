//! The per-test setup: install `require`/`recommend`, write `W/test/metadata.yaml` and the
//! test script.

use std::path::Path;

use super::scripts::{self, TestSetup};
use super::shell::run_script;
use super::test::FmfTest;
use crate::connection::Connection;
use crate::executor::ExecutorError;
use crate::scope::Scope;

/// The test's files could not be written into the work directory.
#[derive(Debug, thiserror::Error)]
#[error("cannot write the test's files into {}", dir.display())]
struct WriteFailed {
    dir: std::path::PathBuf,
    #[source]
    source: std::io::Error,
}

/// Writes `metadata.yaml` and an executable `test.sh` into `dir`.
fn write_test_files(dir: &Path, metadata: &str, test_sh: &str) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(dir.join("metadata.yaml"), metadata)?;
    let script = dir.join("test.sh");
    std::fs::write(&script, test_sh)?;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755))
}

/// [`write_test_files`] on the scope's blocking pool.
async fn write_in_pool(
    dir: &Path,
    metadata: String,
    test_sh: String,
    scope: &Scope,
) -> std::io::Result<()> {
    let dir = dir.to_path_buf();
    scope
        .spawn_blocking("write-test-files", move || {
            write_test_files(&dir, &metadata, &test_sh)
        })
        .await
        .map_err(std::io::Error::other)
        .and_then(|r| r)
}

/// The per-test setup; `Err` carries the setup output. `staging` is a local scratch
/// directory, when there is one; `prologue` opens `test.sh` (see [`scripts::test_sh`]).
///
/// Without packages to install, `metadata.yaml` and `test.sh` are written straight into
/// `W/test` when the system is this machine ([`Connection::local_path`]), else written
/// locally and sent with the connection's own file transfer (no process on the system
/// either way); otherwise one bash script installs the packages and writes both files.
pub(super) async fn setup_test(
    conn: &dyn Connection,
    staging: Option<&Path>,
    test: &FmfTest,
    work: &str,
    prologue: &str,
    scope: &Scope,
) -> Result<(), ExecutorError> {
    let metadata = serde_json::to_string_pretty(&test.metadata).unwrap_or_default();
    let remote_dir = format!("{work}/test");
    let no_packages = test.require.is_empty() && test.recommend.is_empty();
    if no_packages && let Some(dir) = conn.local_path(&remote_dir) {
        let test_sh = scripts::test_sh(work, prologue, &test.script);
        return write_in_pool(&dir, metadata, test_sh, scope)
            .await
            .map_err(|source| ExecutorError::setup(&test.name, WriteFailed { dir, source }));
    }
    if no_packages && let Some(staging) = staging {
        let test_sh = scripts::test_sh(work, prologue, &test.script);
        if let Err(e) = write_in_pool(staging, metadata, test_sh, scope).await {
            return Err(ExecutorError::io("writing the test's files locally", e));
        }
        let upload = conn.upload(staging, &remote_dir);
        return match scope.run(upload).await {
            Some(res) => res.map_err(|e| ExecutorError::setup(&test.name, e)),
            None => Err(crate::connection::ConnectionError::Cancelled.into()),
        };
    }
    let script = scripts::test_setup(&TestSetup {
        work_dir: work,
        require: &test.require,
        recommend: &test.recommend,
        metadata: &metadata,
        script: &test.script,
        prologue,
    });
    run_script(conn, script, Vec::new(), &test.name, scope)
        .await
        .map(|_| ())
}
