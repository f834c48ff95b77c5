//! [`SshConnection`]: SSH spoken in-process with `russh` (feature `ssh`).
//!
//! One TCP connection per system carries many concurrent channels; no `ssh`, `sshpass` or
//! `rsync` binary is needed on either side.
//!
//! * **Commands** run on exec channels, each drained by its own task in the caller's
//!   [`Scope`](crate::scope::Scope) so that one slow reader never stalls the others. No pty is allocated. The
//!   environment is passed as `env K=V …` and the working directory as `cd DIR &&` in the
//!   quoted command line (servers usually refuse `setenv`). Each command leads its own
//!   process group on the remote side; cancelling or dropping the [`Process`](crate::connection::Process) kills the whole
//!   group over a second channel (`kill -TERM -- -PGID`, then `-KILL` after the grace).
//! * **Host keys**: [`HostKeyPolicy`] — strict against a known_hosts file (the default,
//!   `~/.ssh/known_hosts`), accept-new (trust on first use, recorded), or insecure.
//! * **Dead peers**: keepalives; a cut network fails running commands with
//!   [`ConnectionError::Disconnected`](crate::connection::ConnectionError::Disconnected) after at most [`SshConfig::dead_peer_bound`]
//!   (60 s by default) instead of hanging.
//! * **Files** go over SFTP on the same connection when the server offers it, otherwise as
//!   a tar stream over an exec channel; trees keep modes and symlinks and large files
//!   stream with flat memory.
//! * **Reconnect**: a lost session is re-established on the next use (one attempt), and
//!   [`Connection::reconnect`](crate::connection::Connection::reconnect) retries until [`SshConfig::reconnect_timeout`] (after a
//!   reboot).
//! * **Port forwarding**: [`SshConnection::forward`]. **Jump hosts**: [`SshConfig::jump_host`].
//!
//! ```no_run
//! use atex::connection::ssh::{HostKeyPolicy, SshConfig, SshConnection};
//! use atex::connection::{CommandSpec, ConnectionExt};
//! use atex::scope::Scope;
//!
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let scope = Scope::root("doc");
//! let cfg = SshConfig::parse_destination("root@192.0.2.7:22")?
//!     .key_file("/root/.ssh/id_ed25519")
//!     .host_key_policy(HostKeyPolicy::AcceptNew);
//! let conn = SshConnection::connect(cfg).await?;
//! let out = conn.check(CommandSpec::new(["uname", "-r"]), &scope).await?;
//! println!("{}", out.stdout_lossy());
//! # Ok(()) }
//! ```
//!
//! Files: `connection.rs` — [`SshConnection`] and its [`Connection`](super::Connection)
//! implementation; `config.rs` — [`SshConfig`], destinations, host-key policies;
//! `session.rs` — establishing and keeping one authenticated session; `exec.rs` — commands
//! on exec channels; `transfer.rs` — uploads and downloads (SFTP or tar); `tar.rs` — tar
//! streams over an exec channel; `forward.rs` — local port forwarding; `error.rs` —
//! [`SshError`].

mod config;
mod connection;
mod error;
mod exec;
mod forward;
mod session;
mod tar;
mod transfer;
mod transfer_error;

#[cfg(test)]
mod error_tests;

pub use config::{
    DEFAULT_CONNECT_TIMEOUT, DEFAULT_KEEPALIVE_INTERVAL, DEFAULT_KEEPALIVE_MAX,
    DEFAULT_RECONNECT_TIMEOUT, DestinationError, HostKeyPolicy, ParsePolicyError, SshAuth,
    SshConfig,
};
pub use connection::SshConnection;
pub use error::SshError;
pub use forward::Forward;
