//! Errors of SSH connections.

use std::time::Duration;

/// Why an SSH session could not be established.
///
/// It is the source of a [`ConnectionError::Connect`](crate::connection::ConnectionError::Connect),
/// which names the target; `Display` says what failed and the cause is the
/// [`source`](std::error::Error::source).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SshError {
    /// The TCP connection failed.
    #[error("the TCP connection to {target} failed")]
    Connect {
        /// `user@host:port`.
        target: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Connect, key exchange and authentication did not finish in time.
    #[error("connecting timed out after {after:?}")]
    Timeout {
        /// `user@host:port`.
        target: String,
        /// The limit.
        after: Duration,
    },
    /// The server's host key differs from the recorded one.
    #[error(
        "HOST KEY MISMATCH: the server offered {algorithm} key {fingerprint}, which differs from the key recorded at line {line} of {path} (someone may be intercepting the connection, or the host was reinstalled); refusing to connect"
    )]
    HostKeyMismatch {
        /// `user@host:port`.
        target: String,
        /// Key algorithm offered.
        algorithm: String,
        /// SHA256 fingerprint of the offered key.
        fingerprint: String,
        /// The known_hosts file.
        path: String,
        /// Line of the recorded key.
        line: usize,
    },
    /// Strict policy and the host is not in known_hosts.
    #[error(
        "unknown host key: {algorithm} key {fingerprint} is not in {path} (host key policy strict; use accept-new to trust it on first use)"
    )]
    HostKeyUnknown {
        /// `user@host:port`.
        target: String,
        /// Key algorithm offered.
        algorithm: String,
        /// SHA256 fingerprint of the offered key.
        fingerprint: String,
        /// The known_hosts file.
        path: String,
    },
    /// No known_hosts file to check host keys against (no home directory).
    #[error("no known_hosts file: no home directory to find ~/.ssh/known_hosts in")]
    NoKnownHosts {
        /// `user@host:port`.
        target: String,
    },
    /// The known_hosts file could not be read or written.
    #[error("cannot {action} the known_hosts file {path}")]
    KnownHosts {
        /// `user@host:port`.
        target: String,
        /// The file.
        path: String,
        /// What was being done: `read` or `update`.
        action: &'static str,
        /// The cause.
        #[source]
        source: russh::keys::Error,
    },
    /// A private key could not be loaded.
    #[error("cannot load the private key {path}")]
    Key {
        /// `user@host:port`.
        target: String,
        /// The key file.
        path: String,
        /// The cause.
        #[source]
        source: russh::keys::Error,
    },
    /// Every authentication method was refused.
    #[error("authentication as {user} failed (tried: {tried})")]
    Auth {
        /// `user@host:port`.
        target: String,
        /// The user.
        user: String,
        /// The methods tried.
        tried: String,
    },
    /// The jump host could not open a tunnel to the target.
    #[error("the jump host {jump} could not open a tunnel")]
    Jump {
        /// `user@host:port` of the target.
        target: String,
        /// `user@host:port` of the jump host.
        jump: String,
        /// The cause.
        #[source]
        source: russh::Error,
    },
    /// An SSH protocol error (key exchange, authentication requests).
    #[error("SSH protocol error")]
    Protocol {
        /// `user@host:port`.
        target: String,
        /// The cause.
        #[source]
        source: russh::Error,
    },
}

impl SshError {
    /// Whether trying again later may help (network problems), as opposed to a refused
    /// host key or failed authentication.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            SshError::Connect { .. }
                | SshError::Timeout { .. }
                | SshError::Protocol { .. }
                | SshError::Jump { .. }
        )
    }
}

/// Why an established session ended, as the session's handler saw it: the reason of the
/// [`ConnectionError::Disconnected`](crate::connection::ConnectionError::Disconnected)
/// errors of the commands that were running.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SessionEnd {
    /// The server sent a disconnect message.
    #[error("the server disconnected: {0}")]
    ByServer(String),
    /// Keepalives went unanswered.
    #[error("no answer to keepalives (dead peer or cut network)")]
    KeepaliveTimeout,
    /// The transport failed.
    #[error("the SSH session failed")]
    Protocol(#[source] russh::Error),
    /// The host key was refused after a re-key.
    #[error("the host key was refused")]
    HostKey(#[source] SshError),
    /// Closed, the handler saw no reason (we closed it, or it went away unnoticed).
    #[error("the SSH session was closed")]
    Closed,
}
