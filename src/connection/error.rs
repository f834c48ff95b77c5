//! [`ConnectionError`] and [`CommandFailed`].

use std::time::Duration;

use crate::error::BoxError;
use crate::process::ExitStatus;

/// Errors of connections.
///
/// `Display` names what failed (the command, the target, the files); the cause is the
/// [`source`](std::error::Error::source) (print it with [`chain`](crate::error::chain)).
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
        /// The cause (an [`std::io::Error`] of kind `NotFound` for a missing local
        /// program).
        #[source]
        source: BoxError,
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
    #[error("copying {from} to {to} failed")]
    Transfer {
        /// Source.
        from: String,
        /// Destination.
        to: String,
        /// The cause.
        #[source]
        source: BoxError,
    },
    /// A connection could not be established (refused host key, failed authentication,
    /// unreachable host, …).
    #[error("cannot connect to {target}")]
    Connect {
        /// The connection's description.
        target: String,
        /// Whether trying again later may help (a network problem rather than a refused
        /// host key or failed authentication).
        transient: bool,
        /// The cause.
        #[source]
        source: BoxError,
    },
    /// The connection is down (not connected yet, lost, or the system is rebooting).
    #[error("{target}: connection lost{}", during.as_deref().map(|d| format!(" while {d}")).unwrap_or_default())]
    Disconnected {
        /// The connection's description.
        target: String,
        /// What was being done (`running \`cmd\``), when it matters.
        during: Option<String>,
        /// Why the connection is down.
        #[source]
        reason: BoxError,
    },
    /// An operation did not finish in time.
    #[error("{what} timed out after {after:?}")]
    Timeout {
        /// What timed out.
        what: String,
        /// The time limit.
        after: Duration,
        /// The last failure before the time was up, when there was one.
        #[source]
        last: Option<BoxError>,
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

/// The reason of [`ConnectionError::released`].
#[derive(Debug, thiserror::Error)]
#[error("the remote was released")]
pub struct Released;

impl ConnectionError {
    /// The error of a command on a remote that was already released
    /// ([`Disconnected`](Self::Disconnected) with [`Released`] as its reason).
    pub fn released(target: impl Into<String>) -> Self {
        Self::disconnected(target, None, Released)
    }

    /// [`Disconnected`](Self::Disconnected): the connection to `target` is down because of
    /// `reason`, noticed while doing `during` (`running \`cmd\``), if given.
    pub fn disconnected(
        target: impl Into<String>,
        during: Option<String>,
        reason: impl Into<BoxError>,
    ) -> Self {
        ConnectionError::Disconnected {
            target: target.into(),
            during,
            reason: reason.into(),
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
    /// The connection failed (the command may not have run); the
    /// [`ConnectionError`] is the source.
    #[error("cannot run {command} on {target}")]
    Connection {
        /// The command.
        command: String,
        /// The connection's description.
        target: String,
        /// The cause.
        #[source]
        source: ConnectionError,
    },
    /// The command ran but did not exit with 0. Its stderr is part of the message (it is
    /// what the command said, not a cause).
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
