//! tmt's helper commands for every FMF test, mapped onto the test-control protocol, and
//! the script that installs helper commands into the work directory.
//!
//! [`Executor::start`](crate::executor::Executor::start) installs into `W/bin` (on the
//! `PATH` of every test):
//!
//! | command | as | does |
//! |---------|----|------|
//! | `tmt-report-result [-o FILE] [-t MSG] NAME RESULT` | `rhts-report-result NAME RESULT LOG` | `{"status": result, "name": NAME, "note": MSG, "files": [FILE]}` |
//! | `tmt-file-submit -l FILE` | `rhts-submit-log -l FILE` | FILE into the test's own result (a partial nameless result) |
//! | `tmt-reboot [-c CMD] [-t SECS]` | `rhts-reboot` | `disconnect`, `noop` until the channel is closed, `sync`, reboot |
//! | `tmt-abort` | `rhts-abort` | the test's result becomes `error`; its process group is killed |
//!
//! They share `W/libexec/atex-helpers.sh`, which a framework's own helpers may source too
//! (`. "${0%/*}/../libexec/atex-helpers.sh"`): JSON strings, file uploads that send exactly
//! the bytes they announce, and an exclusive lock on `W/control.lock` around every message
//! so that concurrent helpers never interleave on the control channel. Helpers need bash,
//! coreutils and (for the lock) util-linux `flock`.

use super::scripts::terminator;
use super::shell::run_script;
use crate::connection::{Connection, shell_quote};
use crate::executor::ExecutorError;
use crate::scope::Scope;

/// The functions the helper commands share (`W/libexec/atex-helpers.sh`).
pub const HELPERS_LIB: &str = include_str!("helpers/atex-helpers.sh");

/// `tmt-report-result` (also `rhts-report-result`).
const REPORT_RESULT: &str = include_str!("helpers/tmt-report-result");
/// `tmt-file-submit` (also `rhts-submit-log`).
const FILE_SUBMIT: &str = include_str!("helpers/tmt-file-submit");
/// `tmt-reboot` (also `rhts-reboot`).
const REBOOT: &str = include_str!("helpers/tmt-reboot");
/// `tmt-abort` (also `rhts-abort`).
const ABORT: &str = include_str!("helpers/tmt-abort");

/// One file a helper script writes into the work directory.
#[derive(Debug, Clone, Copy)]
pub struct HelperFile<'a> {
    /// Path relative to the work directory (`bin/tmt-reboot`).
    pub path: &'a str,
    /// Its contents.
    pub text: &'a str,
    /// Whether it is executable.
    pub executable: bool,
}

/// A bash script writing `files` into the work directory `work` (creating their
/// directories) and the symbolic links `links` (`(link, target)`, relative to `work`).
pub fn install_files(work: &str, files: &[HelperFile<'_>], links: &[(&str, &str)]) -> String {
    let texts: Vec<&str> = files.iter().map(|f| f.text).collect();
    let eof = terminator(&texts);
    let mut out = format!("set -e\ncd {}\n", shell_quote(work));
    for file in files {
        let path = shell_quote(file.path);
        let nl = if file.text.ends_with('\n') { "" } else { "\n" };
        out.push_str(&format!(
            "mkdir -p \"$(dirname -- {path})\"\ncat > {path} <<'{eof}'\n{}{nl}{eof}\n",
            file.text
        ));
        if file.executable {
            out.push_str(&format!("chmod 0755 {path}\n"));
        }
    }
    for (link, target) in links {
        out.push_str(&format!(
            "ln -sfn -- {} {}\n",
            shell_quote(target),
            shell_quote(link)
        ));
    }
    out
}

/// Runs a bash script on the system (such as [`install_files`]); its output is logged
/// and returned, and a failure is [`ExecutorError::Setup`] of `what` with the output.
pub async fn run_helper_script(
    conn: &dyn Connection,
    script: String,
    what: &str,
    scope: &Scope,
) -> Result<String, ExecutorError> {
    run_script(conn, script, Vec::new(), what, scope).await
}

/// The script installing tmt's helper commands and their library into `work`.
pub(super) fn install_tmt_helpers(work: &str) -> String {
    let exe = |path, text| HelperFile {
        path,
        text,
        executable: true,
    };
    install_files(
        work,
        &[
            HelperFile {
                path: "libexec/atex-helpers.sh",
                text: HELPERS_LIB,
                executable: false,
            },
            exe("bin/tmt-report-result", REPORT_RESULT),
            exe("bin/tmt-file-submit", FILE_SUBMIT),
            exe("bin/tmt-reboot", REBOOT),
            exe("bin/tmt-abort", ABORT),
        ],
        &[
            ("bin/rhts-report-result", "tmt-report-result"),
            ("bin/rhts-submit-log", "tmt-file-submit"),
            ("bin/rhts-reboot", "tmt-reboot"),
            ("bin/rhts-abort", "tmt-abort"),
        ],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn install_script_writes_every_helper() {
        let script = install_tmt_helpers("/w d");
        assert!(script.starts_with("set -e\ncd '/w d'\n"), "{script}");
        for name in [
            "tmt-report-result",
            "tmt-file-submit",
            "tmt-reboot",
            "tmt-abort",
        ] {
            assert!(
                script.contains(&format!("chmod 0755 bin/{name}\n")),
                "{name}"
            );
        }
        assert!(script.contains("ln -sfn -- tmt-reboot bin/rhts-reboot\n"));
        // The terminator never occurs in a helper.
        let eof = terminator(&[HELPERS_LIB, REPORT_RESULT, FILE_SUBMIT, REBOOT, ABORT]);
        assert_eq!(script.matches(&format!("\n{eof}\n")).count(), 5);
    }
}
