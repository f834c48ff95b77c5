//! [`ConnectionError`] and [`CommandFailed`].

use std::time::Duration;

use crate::process::ExitStatus;

/// Errors of connections.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectionError {
    /// The command could not be started.
    #[error("cannot start {command} on {target}")]
    Spawn {
        /// The command, shell-quoted for display.
        command: String,
        /// The connection's description.
        target: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// An I/O error while talking to a running command or moving files.
    #[error("{context}")]
    Io {
        /// What was being done.
        context: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Copying files failed.
    #[error("copying {from} to {to} failed: {message}")]
    Transfer {
        /// Source.
        from: String,
        /// Destination.
        to: String,
        /// What went wrong.
        message: String,
    },
    /// A connection could not be established (refused host key, failed authentication,
    /// unreachable host, …).
    #[error("{source}")]
    Connect {
        /// The connection's description.
        target: String,
        /// Whether trying again later may help (a network problem rather than a refused
        /// host key or failed authentication).
        transient: bool,
        /// The cause.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The connection is down (not connected yet, lost, or the system is rebooting).
    #[error("{target}: connection lost: {message}")]
    Disconnected {
        /// The connection's description.
        target: String,
        /// Details.
        message: String,
    },
    /// An operation did not finish in time.
    #[error("{what} timed out after {after:?}")]
    Timeout {
        /// What timed out.
        what: String,
        /// The time limit.
        after: Duration,
    },
    /// The operation was cancelled.
    #[error("cancelled")]
    Cancelled,
    /// The operation is not supported by this connection.
    #[error("{operation} is not supported by {target}")]
    NotSupported {
        /// The operation.
        operation: &'static str,
        /// The connection's description.
        target: String,
    },
}

impl ConnectionError {
    /// The error of a command on a remote that was already released.
    pub fn released(target: impl Into<String>) -> Self {
        ConnectionError::Disconnected {
            target: target.into(),
            message: "the remote was released".into(),
        }
    }

    /// Whether this error means the connection (not the command) failed, so that a
    /// reconnect may help.
    pub fn is_disconnect(&self) -> bool {
        matches!(
            self,
            ConnectionError::Disconnected { .. }
                | ConnectionError::Connect {
                    transient: true,
                    ..
                }
        )
    }
}

/// Error of [`ConnectionExt::check`](super::ConnectionExt::check).
#[derive(Debug, thiserror::Error)]
pub enum CommandFailed {
    /// The connection failed.
    #[error(transparent)]
    Connection(#[from] ConnectionError),
    /// The command ran but did not exit with 0.
    #[error("{command} on {target} ended with {status}: {stderr}")]
    Status {
        /// The command.
        command: String,
        /// The connection's description.
        target: String,
        /// How it ended.
        status: ExitStatus,
        /// Its stderr.
        stderr: String,
    },
}
