//! Errors of SSH connections.

use std::time::Duration;

/// Why an SSH session could not be established.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SshError {
    /// The TCP connection failed.
    #[error("{target}: cannot connect: {source}")]
    Connect {
        /// `user@host:port`.
        target: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Connect, key exchange and authentication did not finish in time.
    #[error("{target}: connecting timed out after {after:?}")]
    Timeout {
        /// `user@host:port`.
        target: String,
        /// The limit.
        after: Duration,
    },
    /// The server's host key differs from the recorded one.
    #[error(
        "{target}: HOST KEY MISMATCH: the server offered {algorithm} key {fingerprint}, which differs from the key recorded at line {line} of {path} (someone may be intercepting the connection, or the host was reinstalled); refusing to connect"
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
        "{target}: unknown host key: {algorithm} key {fingerprint} is not in {path} (host key policy strict; use accept-new to trust it on first use)"
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
    /// The known_hosts file could not be read or written.
    #[error("{target}: known_hosts file {path}: {message}")]
    KnownHosts {
        /// `user@host:port`.
        target: String,
        /// The file.
        path: String,
        /// What went wrong.
        message: String,
    },
    /// A private key could not be loaded.
    #[error("{target}: cannot load private key {path}: {message}")]
    Key {
        /// `user@host:port`.
        target: String,
        /// The key file.
        path: String,
        /// What went wrong.
        message: String,
    },
    /// Every authentication method was refused.
    #[error("{target}: authentication as {user} failed (tried: {tried})")]
    Auth {
        /// `user@host:port`.
        target: String,
        /// The user.
        user: String,
        /// The methods tried.
        tried: String,
    },
    /// The jump host could not open a tunnel to the target.
    #[error("{target}: jump host {jump} could not open a tunnel: {message}")]
    Jump {
        /// `user@host:port` of the target.
        target: String,
        /// `user@host:port` of the jump host.
        jump: String,
        /// What went wrong.
        message: String,
    },
    /// An SSH protocol error.
    #[error("{target}: SSH error: {source}")]
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
