//! [`Virsh`]: libvirt through the `virsh` program, run over any [`Connection`].
//!
//! Every call is one `virsh -q [-c URI] ARGS…` process on the libvirt host (locally through
//! [`LocalConnection`](crate::connection::LocalConnection), remotely over SSH). A failure is
//! a [`VirshError`] that quotes virsh's own message (`error: …` lines, without the prefix).

use std::sync::Arc;

use crate::connection::{CommandSpec, Connection, ConnectionError, ConnectionExt, Input};
use crate::scope::Scope;

/// Errors of [`Virsh`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VirshError {
    /// virsh ran and failed; `message` is what it printed (its `error:` lines).
    #[error("virsh {command} on {target} failed: {message}")]
    Failed {
        /// The virsh arguments, shell-quoted.
        command: String,
        /// The connection's description (and URI).
        target: String,
        /// virsh's message.
        message: String,
    },
    /// virsh could not be run at all (not installed, connection down).
    #[error("cannot run virsh on {target}: {source}")]
    Connection {
        /// The connection's description.
        target: String,
        /// The cause.
        #[source]
        source: ConnectionError,
    },
    /// virsh printed something atex cannot understand.
    #[error("unexpected output of virsh {command} on {target}: {message}")]
    Parse {
        /// The virsh arguments.
        command: String,
        /// The connection's description.
        target: String,
        /// What was wrong.
        message: String,
    },
    /// The scope was cancelled while virsh ran (it was terminated).
    #[error("cancelled")]
    Cancelled,
}

impl VirshError {
    /// virsh's own message, when virsh ran and failed.
    pub fn message(&self) -> Option<&str> {
        match self {
            VirshError::Failed { message, .. } => Some(message),
            _ => None,
        }
    }

    /// Whether virsh said the domain (or volume, pool) does not exist.
    pub fn is_not_found(&self) -> bool {
        self.message().is_some_and(|m| {
            m.contains("failed to get domain")
                || m.contains("Domain not found")
                || m.contains("Storage volume not found")
                || m.contains("failed to get vol")
                || m.contains("failed to get pool")
                || m.contains("Storage pool not found")
        })
    }

    /// Whether virsh said the domain is not running (destroying a shut-off domain).
    pub fn is_not_running(&self) -> bool {
        self.message().is_some_and(|m| m.contains("not running"))
    }
}

/// Runs `virsh` on the libvirt host behind a [`Connection`].
#[derive(Clone)]
pub struct Virsh {
    conn: Arc<dyn Connection>,
    uri: Option<String>,
}

impl std::fmt::Debug for Virsh {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Virsh")
            .field("host", &self.conn.describe())
            .field("uri", &self.uri)
            .finish()
    }
}

impl Virsh {
    /// virsh on the host of `conn`, talking to `uri` (virsh's default — the host's
    /// `LIBVIRT_DEFAULT_URI` or its built-in choice — when `None`).
    pub fn new(conn: Arc<dyn Connection>, uri: Option<String>) -> Self {
        Self { conn, uri }
    }

    /// The libvirt URI, if one was given.
    pub fn uri(&self) -> Option<&str> {
        self.uri.as_deref()
    }

    /// The connection to the libvirt host.
    pub fn connection(&self) -> &Arc<dyn Connection> {
        &self.conn
    }

    /// `host (URI)` for messages.
    pub fn describe(&self) -> String {
        match &self.uri {
            Some(uri) => format!("{} ({uri})", self.conn.describe()),
            None => self.conn.describe(),
        }
    }

    fn argv<S: AsRef<str>>(&self, args: &[S]) -> Vec<String> {
        let mut argv = vec!["virsh".to_string(), "-q".to_string()];
        if let Some(uri) = &self.uri {
            argv.push("-c".into());
            argv.push(uri.clone());
        }
        argv.extend(args.iter().map(|a| a.as_ref().to_string()));
        argv
    }

    /// Runs `virsh ARGS` and returns its stdout; a non-zero exit is [`VirshError::Failed`].
    pub async fn run<S: AsRef<str>>(
        &self,
        args: &[S],
        scope: &Scope,
    ) -> Result<String, VirshError> {
        self.run_input(args, None, scope).await
    }

    /// Like [`run`](Self::run), with `stdin` fed to virsh (for `create /dev/stdin`).
    pub async fn run_input<S: AsRef<str>>(
        &self,
        args: &[S],
        stdin: Option<Vec<u8>>,
        scope: &Scope,
    ) -> Result<String, VirshError> {
        let argv = self.argv(args);
        let command = CommandSpec::new(args.iter().map(|a| a.as_ref().to_string())).display();
        let mut spec = CommandSpec::new(argv);
        if let Some(bytes) = stdin {
            spec = spec.stdin(Input::Bytes(bytes));
        }
        let out = match self.conn.output(spec, scope).await {
            Ok(out) => out,
            Err(ConnectionError::Cancelled) => return Err(VirshError::Cancelled),
            Err(source) => {
                return Err(VirshError::Connection {
                    target: self.describe(),
                    source,
                });
            }
        };
        if out.status.success() {
            return Ok(out.stdout_lossy());
        }
        Err(VirshError::Failed {
            command,
            target: self.describe(),
            message: error_message(&out.stderr_lossy(), &out.stdout_lossy(), out.status),
        })
    }

    /// `virsh dumpxml NAME [--inactive]`.
    pub async fn dumpxml(
        &self,
        domain: &str,
        inactive: bool,
        scope: &Scope,
    ) -> Result<String, VirshError> {
        if inactive {
            self.run(&["dumpxml", "--inactive", "--domain", domain], scope)
                .await
        } else {
            self.run(&["dumpxml", "--domain", domain], scope).await
        }
    }

    /// `virsh domstate NAME`, trimmed (`running`, `shut off`, …).
    pub async fn domstate(&self, domain: &str, scope: &Scope) -> Result<String, VirshError> {
        Ok(self
            .run(&["domstate", "--domain", domain], scope)
            .await?
            .trim()
            .to_string())
    }

    /// Creates a transient domain from `xml` (`virsh create /dev/stdin`).
    pub async fn create(&self, xml: &str, scope: &Scope) -> Result<(), VirshError> {
        self.run_input(
            &["create", "/dev/stdin"],
            Some(xml.as_bytes().to_vec()),
            scope,
        )
        .await
        .map(|_| ())
    }

    /// Defines a persistent domain from `xml` (`virsh define /dev/stdin`).
    pub async fn define(&self, xml: &str, scope: &Scope) -> Result<(), VirshError> {
        self.run_input(
            &["define", "/dev/stdin"],
            Some(xml.as_bytes().to_vec()),
            scope,
        )
        .await
        .map(|_| ())
    }

    /// `virsh destroy NAME`; a domain that does not exist or does not run is not an error
    /// (returns `false`).
    pub async fn destroy(&self, domain: &str, scope: &Scope) -> Result<bool, VirshError> {
        match self.run(&["destroy", "--domain", domain], scope).await {
            Ok(_) => Ok(true),
            Err(e) if e.is_not_found() || e.is_not_running() => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Names of domains: `all` includes shut-off ones, `persistent` only persistent ones.
    pub async fn list(
        &self,
        all: bool,
        persistent: bool,
        scope: &Scope,
    ) -> Result<Vec<String>, VirshError> {
        let mut args = vec!["list", "--name"];
        if all {
            args.push("--all");
        }
        if persistent {
            args.push("--persistent");
        }
        Ok(lines(&self.run(&args, scope).await?))
    }

    /// Names of the volumes of `pool`.
    pub async fn vol_list(&self, pool: &str, scope: &Scope) -> Result<Vec<String>, VirshError> {
        let out = self.run(&["vol-list", "--pool", pool], scope).await?;
        Ok(out
            .lines()
            .filter_map(|l| l.split_whitespace().next().map(str::to_string))
            .collect())
    }

    /// Path of volume `name` in `pool`.
    pub async fn vol_path(
        &self,
        pool: &str,
        name: &str,
        scope: &Scope,
    ) -> Result<String, VirshError> {
        Ok(self
            .run(&["vol-path", "--pool", pool, name], scope)
            .await?
            .trim()
            .to_string())
    }

    /// Deletes volume `name` of `pool`; a missing volume is not an error (returns `false`).
    pub async fn vol_delete(
        &self,
        pool: &str,
        name: &str,
        scope: &Scope,
    ) -> Result<bool, VirshError> {
        match self.run(&["vol-delete", "--pool", pool, name], scope).await {
            Ok(_) => Ok(true),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The libvirt daemon's version as `(major, minor, micro)` (`virsh version --daemon`).
    pub async fn daemon_version(&self, scope: &Scope) -> Result<(u32, u32, u32), VirshError> {
        let out = self.run(&["version", "--daemon"], scope).await?;
        parse_daemon_version(&out).ok_or_else(|| VirshError::Parse {
            command: "version --daemon".into(),
            target: self.describe(),
            message: format!("no 'Running against daemon:' line in {out:?}"),
        })
    }
}

/// Non-empty trimmed lines.
pub(crate) fn lines(out: &str) -> Vec<String> {
    out.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

/// virsh's message: its `error:` lines without the prefix, else its whole stderr, else
/// stdout, else the exit status.
fn error_message(stderr: &str, stdout: &str, status: crate::process::ExitStatus) -> String {
    let errors: Vec<&str> = stderr
        .lines()
        .filter_map(|l| l.trim().strip_prefix("error:"))
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    if !errors.is_empty() {
        return errors.join(": ");
    }
    for text in [stderr.trim(), stdout.trim()] {
        if !text.is_empty() {
            return text.to_string();
        }
    }
    format!("virsh ended with {status}")
}

/// Parses `Running against daemon: 9.0.0` out of `virsh version --daemon`.
fn parse_daemon_version(out: &str) -> Option<(u32, u32, u32)> {
    let line = out.lines().find(|l| l.contains("Running against daemon"))?;
    let version = line.rsplit(':').next()?.trim();
    let mut parts = version.split('.').map(|p| p.trim().parse::<u32>());
    let major = parts.next()?.ok()?;
    let minor = parts.next().unwrap_or(Ok(0)).ok()?;
    let micro = parts.next().unwrap_or(Ok(0)).ok()?;
    Some((major, minor, micro))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_lines_are_quoted_without_prefix() {
        let status = crate::process::ExitStatus::Code(1);
        let msg = error_message(
            "error: failed to get domain 'nope'\nerror: Domain not found: no domain with matching name 'nope'\n",
            "",
            status,
        );
        assert_eq!(
            msg,
            "failed to get domain 'nope': Domain not found: no domain with matching name 'nope'"
        );
        assert_eq!(
            error_message("", "", status),
            format!("virsh ended with {status}")
        );
        assert_eq!(error_message("boom\n", "", status), "boom");
    }

    #[test]
    fn daemon_version_is_parsed() {
        let out = "Compiled against library: libvirt 9.0.0\nUsing library: libvirt 9.0.0\n\
                   Using API: QEMU 9.0.0\nRunning hypervisor: QEMU 7.2.0\n\
                   Running against daemon: 9.0.0\n";
        assert_eq!(parse_daemon_version(out), Some((9, 0, 0)));
        assert_eq!(
            parse_daemon_version("Running against daemon: 10.2\n"),
            Some((10, 2, 0))
        );
        assert_eq!(parse_daemon_version("nothing"), None);
    }
}
