//! [`TarError`]: what can go wrong writing or unpacking a tar stream.

use std::path::PathBuf;

/// A failure of the tar format code: local file work (with the path) or a malformed stream.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TarError {
    /// Local file work failed.
    #[error("{op} {}", path.display())]
    Local {
        /// What was being done (`reading`, `creating`, `setting the mode of`, …).
        op: &'static str,
        /// The local path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Writing the stream failed.
    #[error("writing the tar stream")]
    Stream(#[source] std::io::Error),
    /// A file got shorter while its contents were sent.
    #[error("{} shrank while being sent", .0.display())]
    Shrank(PathBuf),
    /// A number field of a header is not a number.
    #[error("bad number {0:?} in a tar header")]
    BadNumber(String),
    /// A base-256 number field overflows.
    #[error("a number in a tar header overflows")]
    Overflow,
    /// An entry name that would leave the destination.
    #[error("unsafe path {0:?} in the tar stream")]
    UnsafePath(String),
    /// The stream ended inside an entry.
    #[error("the tar stream ended in the middle of an entry")]
    Truncated,
    /// The single entry asked for was not in the stream.
    #[error("the remote path was not in the tar stream")]
    Missing,
}

impl TarError {
    /// Local file work (`op`) on `path` failed with `source`.
    pub(crate) fn local(op: &'static str, path: &std::path::Path, source: std::io::Error) -> Self {
        TarError::Local {
            op,
            path: path.to_path_buf(),
            source,
        }
    }
}
