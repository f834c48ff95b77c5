//! Getting BeakerLib onto the system: the helpers, then BeakerLib itself when it is
//! missing (from a directory or tarball the user names, or the system's package manager).

use std::path::{Path, PathBuf};

use crate::connection::shell_quote;
use crate::executor::ExecutorError;
use crate::executor::fmf::FrameworkContext;
use crate::executor::fmf::helpers::{HelperFile, install_files};
use crate::executor::fmf::scripts::{INSTALL_FUNCTION, Need, install_call};
use crate::scope::Scope;

/// The file BeakerLib tests source; present once BeakerLib is installed.
pub const BEAKERLIB_SH: &str = "/usr/share/beakerlib/beakerlib.sh";

/// `atex-report-result`: BeakerLib's `BEAKERLIB_COMMAND_REPORT_RESULT`.
const REPORT_RESULT: &str = include_str!("helpers/atex-report-result");
/// `atex-file-submit`: BeakerLib's `BEAKERLIB_COMMAND_SUBMIT_LOG`.
const FILE_SUBMIT: &str = include_str!("helpers/atex-file-submit");

/// Printed by the first script when BeakerLib is already installed.
const PRESENT: &str = "ATEX_BEAKERLIB_PRESENT";

/// Serialises installations on one machine (several executors, or a container sharing
/// the host's `/tmp`, may install at the same time).
const INSTALL_LOCK: &str = "/tmp/atex-beakerlib-install.lock";

/// BeakerLib is missing and none of the ways to install it worked.
#[derive(Debug, thiserror::Error)]
#[error("BeakerLib is not installed ({BEAKERLIB_SH} is missing) and installing it failed; tried: {}", .tried.join("; "))]
pub struct NotInstalled {
    /// What was tried, each with why it failed.
    pub tried: Vec<String>,
}

/// A `--beakerlib-from` path that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{} is neither a directory nor a file", .0.display())]
struct BadSource(PathBuf);

/// Shell code run after BeakerLib is available: `beakerlib-redhat` where it exists (RPM
/// systems), recommended.
fn recommend_redhat() -> String {
    format!(
        "if command -v rpm >/dev/null 2>&1 && ! command -v dpkg-query >/dev/null 2>&1; then\n\
         {INSTALL_FUNCTION}{} || true\nfi\n",
        install_call(&["beakerlib-redhat".to_string()], Need::Recommended).trim_end()
    )
}

/// The first script: installs the helpers and says whether BeakerLib is installed.
fn helpers_script(work: &str) -> String {
    let exe = |path, text| HelperFile {
        path,
        text,
        executable: true,
    };
    let mut script = install_files(
        work,
        &[
            exe("bin/atex-report-result", REPORT_RESULT),
            exe("bin/atex-file-submit", FILE_SUBMIT),
        ],
        &[],
    );
    script.push_str(&format!(
        "if [ -f {BEAKERLIB_SH} ]; then\n{}echo {PRESENT}\nfi\n",
        recommend_redhat()
    ));
    script
}

/// Installs BeakerLib from the source tree unpacked (or uploaded) at `src` with its
/// top-level `make install` (prefix `/usr`, as the distribution package does).
fn make_install_script(work: &str, src: &str, archive: Option<&str>, label: &str) -> String {
    let w = shell_quote(work);
    let mut s = String::from("set -e\n");
    s.push_str(&format!("src={}\n", shell_quote(src)));
    if let Some(archive) = archive {
        s.push_str(&format!(
            "rm -rf -- \"$src\"; mkdir -p -- \"$src\"\n\
             tar -xf {} -C \"$src\" || {{ echo 'cannot unpack '{}; exit 1; }}\n",
            shell_quote(archive),
            shell_quote(label)
        ));
    }
    s.push_str(&format!(
        "top=$src\n\
         if [ ! -f \"$top/Makefile\" ]; then\n    \
             set -- \"$src\"/*/\n    \
             if [ $# = 1 ] && [ -f \"$1/Makefile\" ]; then top=${{1%/}}; fi\n\
         fi\n\
         if [ ! -f \"$top/Makefile\" ] || [ ! -f \"$top/src/beakerlib.sh\" ]; then\n    \
             echo 'no BeakerLib source tree (Makefile and src/beakerlib.sh) in '{label}; exit 1\n\
         fi\n\
         for tool in make patch perl; do\n    \
             command -v $tool >/dev/null 2>&1 || {{ echo \"$tool is not installed (BeakerLib's make install needs make, patch and perl)\"; exit 1; }}\n\
         done\n\
         if (: >>{lock}) 2>/dev/null; then exec 9>>{lock}; flock 9 2>/dev/null || true; fi\n\
         if [ -f {BEAKERLIB_SH} ]; then exit 0; fi\n\
         if ! make -C \"$top\" install DD=/usr >{w}/beakerlib-install.log 2>&1; then\n    \
             echo \"make install failed (uid $(id -u)):\"; tail -n 5 {w}/beakerlib-install.log; exit 1\n\
         fi\n\
         [ -f {BEAKERLIB_SH} ] || {{ echo 'make install did not install '{BEAKERLIB_SH}; exit 1; }}\n",
        label = shell_quote(label),
        lock = INSTALL_LOCK,
    ));
    s.push_str(&recommend_redhat());
    s
}

/// Installs BeakerLib with the package manager.
fn package_script() -> String {
    format!(
        "set -e\n{INSTALL_FUNCTION}{}[ -f {BEAKERLIB_SH} ] || {{ echo 'the package did not install '{BEAKERLIB_SH}; exit 1; }}\n{}",
        install_call(&["beakerlib".to_string()], Need::Required),
        recommend_redhat()
    )
}

/// Runs a setup script, `what` naming it.
async fn script(
    ctx: FrameworkContext<'_>,
    text: String,
    what: &str,
    scope: &Scope,
) -> Result<String, ExecutorError> {
    crate::executor::fmf::helpers::run_helper_script(ctx.conn, text, what, scope).await
}

/// Uploads and installs BeakerLib from the local directory or tarball `from`.
async fn install_from(
    ctx: FrameworkContext<'_>,
    from: &Path,
    scope: &Scope,
) -> Result<(), ExecutorError> {
    let label = from.display().to_string();
    let meta =
        std::fs::metadata(from).map_err(|e| ExecutorError::io(format!("reading {label}"), e))?;
    let src = format!("{}/beakerlib-src", ctx.work);
    let archive = if meta.is_dir() {
        None
    } else if meta.is_file() {
        Some(format!("{}/beakerlib-src.archive", ctx.work))
    } else {
        return Err(ExecutorError::setup(
            "BeakerLib",
            BadSource(from.to_path_buf()),
        ));
    };
    let target = archive.as_deref().unwrap_or(&src);
    match scope.run(ctx.conn.upload(from, target)).await {
        Some(res) => res?,
        None => return Err(crate::connection::ConnectionError::Cancelled.into()),
    }
    let text = make_install_script(ctx.work, &src, archive.as_deref(), &label);
    script(ctx, text, "installing BeakerLib", scope).await?;
    Ok(())
}

/// Installs the helpers and, when it is missing, BeakerLib (see the [module
/// docs](super)).
pub(super) async fn prepare(
    ctx: FrameworkContext<'_>,
    from: Option<&Path>,
    scope: &Scope,
) -> Result<(), ExecutorError> {
    let out = script(ctx, helpers_script(ctx.work), "BeakerLib helpers", scope).await?;
    if out.lines().any(|l| l.trim() == PRESENT) {
        return Ok(());
    }
    let mut tried = Vec::new();
    let reason = |e: &ExecutorError| match e {
        ExecutorError::Setup { source, .. } => crate::error::chain(&**source).to_string(),
        other => crate::error::chain(other).to_string(),
    };
    if let Some(from) = from {
        match install_from(ctx, from, scope).await {
            Ok(()) => return Ok(()),
            Err(e) if e.connection().is_some() => return Err(e),
            Err(e) => tried.push(format!("from {}: {}", from.display(), reason(&e))),
        }
    }
    match script(ctx, package_script(), "installing BeakerLib", scope).await {
        Ok(_) => return Ok(()),
        Err(e) if e.connection().is_some() => return Err(e),
        Err(e) => tried.push(format!("the package 'beakerlib': {}", reason(&e))),
    }
    Err(ExecutorError::setup("BeakerLib", NotInstalled { tried }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_name_what_they_do() {
        let s = helpers_script("/w");
        assert!(s.contains("chmod 0755 bin/atex-report-result\n"), "{s}");
        assert!(
            s.contains(&format!("if [ -f {BEAKERLIB_SH} ]; then")),
            "{s}"
        );
        let s = make_install_script("/w", "/w/beakerlib-src", Some("/w/a"), "x y.tar.gz");
        assert!(s.contains("tar -xf /w/a -C \"$src\""), "{s}");
        assert!(s.contains("'x y.tar.gz'"), "{s}");
        assert!(s.contains("make -C \"$top\" install DD=/usr"), "{s}");
        let s = package_script();
        assert!(s.contains("atex_install required beakerlib\n"), "{s}");
        assert!(
            s.contains("atex_install recommended beakerlib-redhat || true"),
            "{s}"
        );
        let e = NotInstalled {
            tried: vec!["from /x: a".into(), "the package 'beakerlib': b".into()],
        };
        assert_eq!(
            e.to_string(),
            format!(
                "BeakerLib is not installed ({BEAKERLIB_SH} is missing) and installing it failed; tried: from /x: a; the package 'beakerlib': b"
            )
        );
    }
}
