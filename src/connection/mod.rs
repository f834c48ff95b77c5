//! Connections: run commands on one system and move files to and from it.
//!
//! A [`Connection`] runs an argv (never a shell line: the arguments arrive as exactly those
//! arguments) with environment, working directory and stdin of the caller's choice, streams
//! stdout and stderr or sends them to a file, reports the exit status or signal, and copies
//! directory trees with modes and symlinks kept. No pseudo-terminal is ever allocated: the
//! FMF test-control channel depends on a clean stdout.
//!
//! Cancellation kills what runs: [`Process::wait_or_terminate`] races the scope's tokens, and
//! dropping a [`Process`] kills its process tree.
//!
//! ```
//! use atex::connection::{CommandSpec, Connection, ConnectionExt, LocalConnection};
//! use atex::scope::Scope;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let scope = Scope::root("doc");
//! let conn = LocalConnection::new();
//! let out = conn
//!     .output(CommandSpec::new(["sh", "-c", "echo \"$GREETING\""]).env("GREETING", "hi"), &scope)
//!     .await?;
//! assert_eq!(out.stdout, b"hi\n");
//! assert!(out.status.success());
//! # Ok(()) }
//! ```

mod command;
mod error;
mod ext;
mod local;
mod process;
#[cfg(feature = "ssh")]
pub mod ssh;
/// The tar format for connections that copy trees through a remote `tar` (SSH without SFTP).
#[cfg(feature = "ssh")]
mod tar;

pub use command::{CommandSpec, ErrOutput, Input, Output, shell_quote};
pub use error::{CommandFailed, ConnectionError, Released};
pub use ext::ConnectionExt;
pub use local::LocalConnection;
pub use process::{BoxReader, BoxWriter, CommandOutput, Process, ProcessControl};
#[cfg(feature = "ssh")]
pub use ssh::SshConnection;

use std::fmt;
use std::path::Path;

use async_trait::async_trait;

use crate::scope::Scope;

/// A channel to one system that can run commands and copy files.
///
/// Implementations: [`LocalConnection`]; `SshConnection` (feature `ssh`).
#[async_trait]
pub trait Connection: Send + Sync + fmt::Debug {
    /// A short human-readable description (`local`, `ssh root@host:22`, …).
    fn describe(&self) -> String;

    /// Starts `cmd`. The returned [`Process`] must be waited for (or dropped, which kills it).
    async fn spawn(&self, cmd: CommandSpec, scope: &Scope) -> Result<Process, ConnectionError>;

    /// Copies a local file or directory tree to `remote` on the system. A directory's
    /// contents are merged into the remote directory (created when missing); modes and
    /// symlinks are kept.
    async fn upload(&self, local: &Path, remote: &str) -> Result<(), ConnectionError>;

    /// Copies a remote file or directory tree to `local`, like [`upload`](Self::upload) in
    /// the other direction.
    async fn download(&self, remote: &str, local: &Path) -> Result<(), ConnectionError>;

    /// Re-establishes the connection after the system went away (a reboot), waiting at
    /// most until the scope is cancelled. Connections without state succeed at once.
    async fn reconnect(&self, scope: &Scope) -> Result<(), ConnectionError> {
        let _ = scope;
        Ok(())
    }

    /// Tears down persistent state (idempotent). Later calls may reconnect.
    async fn disconnect(&self) {}
}
