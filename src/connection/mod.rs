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
pub mod sync;
/// The tar format for connections that copy trees through a remote `tar` (SSH without
/// SFTP, Podman).
#[cfg(any(feature = "ssh", feature = "podman"))]
pub(crate) mod tar;

pub use command::{CommandSpec, ErrOutput, Input, Output, shell_quote};
pub use error::{CommandFailed, ConnectionError, Released};
pub use ext::ConnectionExt;
pub use local::LocalConnection;
pub use process::{BoxReader, BoxWriter, CommandOutput, Process, ProcessControl};
#[cfg(feature = "ssh")]
pub use ssh::SshConnection;
pub use sync::{DirSync, SyncError, SyncReport};

use std::fmt;
use std::path::Path;

use async_trait::async_trait;

use crate::scope::Scope;

/// A channel to one system that can run commands and copy files.
///
/// Implementations: [`LocalConnection`]; `SshConnection` (feature `ssh`); every remote a
/// provisioner hands out ([`LeasedRemote`](crate::provisioner::LeasedRemote)).
///
/// # Contract
///
/// What every implementation guarantees (the conformance suite,
/// `atex::testing::conformance::connection` with feature `conformance`, checks each point):
///
/// * **argv** arrives as exactly those arguments: no word splitting, no shell expansion,
///   empty arguments kept. A command the OS cannot carry as given
///   ([`CommandSpec::invalid`]: an empty argv, a NUL byte, a bad environment variable name)
///   is refused with an error, never run changed. A missing program is an error or exit
///   code 127.
/// * **env** entries are added to (or override) the system's environment with their values
///   intact; **cwd** is where the command runs (a missing directory fails the command or
///   the spawn, it never runs elsewhere).
/// * **stdin**: [`Input::Null`] is an immediate end of file, [`Input::Bytes`] arrive byte
///   for byte, [`Input::Piped`] streams what is written until shut down. No terminal is
///   ever allocated for any stream.
/// * **Exit status**: exit codes and signals arrive as they are.
/// * **Output**: pipes, files (appended at the file's position), stderr merged into stdout in
///   order, or discarded (no pipe is handed out then). Many megabytes flow both ways at
///   once without deadlock, and a command whose output nobody reads holds up no other.
/// * **Leftovers**: background processes that outlive the command while holding its output
///   open are killed once it ended, and [`ExitInfo::leaked`](crate::process::ExitInfo)
///   says so.
/// * **Cancellation** reaches the whole process tree: [`Process::wait_or_terminate`] on a
///   cancelled scope and dropping a running [`Process`] end the command, its children and
///   grandchildren, also those ignoring SIGTERM (SIGKILL after the scope's kill grace).
/// * **Transfers** copy files and trees with contents, modes, empty files and directories
///   and symlinks (relative and dangling) kept; a directory is merged into an existing
///   one; missing parents are created; a missing source is an error naming it.
/// * **Reconnect**: [`disconnect`](Connection::disconnect) is idempotent and
///   [`reconnect`](Connection::reconnect) brings a working connection back.
/// * Several commands and transfers may run at once on one connection (`&self` methods).
#[async_trait]
pub trait Connection: Send + Sync + fmt::Debug {
    /// A short human-readable description (`local`, `ssh root@host:22`, …).
    fn describe(&self) -> String;

    /// Starts `cmd`. The returned [`Process`] must be waited for (or dropped, which kills it).
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: a spawn dropped before it returned leaves no command running (one that
    /// already started is killed with its tree).
    async fn spawn(&self, cmd: CommandSpec, scope: &Scope) -> Result<Process, ConnectionError>;

    /// Copies a local file or directory tree to `remote` on the system. A directory's
    /// contents are merged into the remote directory (created when missing); modes and
    /// symlinks are kept.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future abandons the transfer: the destination may hold part of it
    /// until a later transfer succeeds (a local copy runs to its end as a blocking task the
    /// scope tree tracks).
    async fn upload(&self, local: &Path, remote: &str) -> Result<(), ConnectionError>;

    /// Copies a remote file or directory tree to `local`, like [`upload`](Self::upload) in
    /// the other direction.
    ///
    /// # Cancel safety
    ///
    /// As for [`upload`](Self::upload).
    async fn download(&self, remote: &str, local: &Path) -> Result<(), ConnectionError>;

    /// Re-establishes the connection after the system went away (a reboot), waiting at
    /// most until the scope is cancelled. Connections without state succeed at once.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: a dropped reconnect leaves the connection down; a later call tries
    /// again.
    async fn reconnect(&self, scope: &Scope) -> Result<(), ConnectionError> {
        let _ = scope;
        Ok(())
    }

    /// Tears down persistent state (idempotent). Later calls may reconnect.
    async fn disconnect(&self) {}

    /// Whether every spawned command leads a process group of its own that this connection
    /// supervises in full: whatever is left in that group once the leader exited is killed
    /// before [`Process::wait`] returns (whether or not it holds an output open),
    /// [`Process::terminate`] signals the whole group, and dropping the [`Process`] kills
    /// it. The FMF executor then starts tests without its remote wrapper
    /// ([`FmfOptions::always_wrap`](crate::executor::fmf::FmfOptions::always_wrap)), which
    /// saves one shell per test. `false` unless the implementation guarantees all of this;
    /// [`LocalConnection`] does.
    fn supervises_process_groups(&self) -> bool {
        false
    }

    /// Where `remote` (a path on the system) is on the file system of the machine atex
    /// runs on, when the system is this machine; `None` otherwise (the default). Callers
    /// may then write small files there directly instead of through
    /// [`upload`](Self::upload), as the FMF executor does with each test's script.
    fn local_path(&self, remote: &str) -> Option<std::path::PathBuf> {
        let _ = remote;
        None
    }
}
