//! [`TransferError`]: what went wrong in an SSH transfer (SFTP or tar over exec), the
//! source of [`ConnectionError::Transfer`](crate::connection::ConnectionError::Transfer).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::error::SessionEnd;
use super::exec::ChannelError;
use crate::connection::tar::TarError;

/// What went wrong in a transfer.
#[derive(Debug, thiserror::Error)]
pub(super) enum TransferError {
    /// An SFTP request failed.
    #[error("{op} {path}")]
    Sftp {
        /// What was being done (`creating`, `reading`, …).
        op: &'static str,
        /// The remote path.
        path: String,
        /// The cause.
        #[source]
        source: russh_sftp::client::error::Error,
    },
    /// Reading or writing a remote file's contents over SFTP failed.
    #[error("{op} {path}")]
    SftpIo {
        /// `reading`, `writing` or `closing`.
        op: &'static str,
        /// The remote path.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Local file work failed.
    #[error("{op} {}", path.display())]
    Local {
        /// What was being done.
        op: &'static str,
        /// The local path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The task listing the local tree failed.
    #[error("listing the local tree")]
    Walk(#[source] tokio::task::JoinError),
    /// A remote directory to create is something else.
    #[error("{0} exists and is not a directory")]
    NotADirectory(String),
    /// The tar stream (the fallback without SFTP).
    #[error(transparent)]
    Tar(#[from] TarError),
    /// A channel of the session (the fallback without SFTP).
    #[error(transparent)]
    Channel(#[from] ChannelError),
    /// The SFTP subsystem could not be opened.
    #[error("opening the SFTP subsystem")]
    SftpOpen(#[source] russh_sftp::client::error::Error),
    /// The server refused the SFTP subsystem.
    #[error("the server refused the sftp subsystem")]
    SftpRefused,
    /// The SFTP channel closed while it was being opened.
    #[error("the sftp channel closed")]
    SftpClosed,
    /// The remote `tar` failed.
    #[error("remote tar failed with exit code {code}: {stderr}")]
    RemoteTar {
        /// Its exit code.
        code: u32,
        /// What it wrote to stderr (the first 4 KiB).
        stderr: String,
    },
    /// The remote `tar` was killed.
    #[error("remote tar killed by signal {0}")]
    RemoteTarSignal(String),
    /// The session ended during the transfer.
    #[error("the SSH session ended")]
    SessionEnded(#[source] Arc<SessionEnd>),
}

impl TransferError {
    pub(super) fn sftp<'a>(
        op: &'static str,
        path: &'a str,
    ) -> impl FnOnce(russh_sftp::client::error::Error) -> Self + 'a {
        move |source| TransferError::Sftp {
            op,
            path: path.to_string(),
            source,
        }
    }

    pub(super) fn sftp_io(op: &'static str, path: &str, source: std::io::Error) -> Self {
        TransferError::SftpIo {
            op,
            path: path.to_string(),
            source,
        }
    }

    pub(super) fn local(op: &'static str, path: &Path, source: std::io::Error) -> Self {
        TransferError::Local {
            op,
            path: path.to_path_buf(),
            source,
        }
    }
}
