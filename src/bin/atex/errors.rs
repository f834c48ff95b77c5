//! How the program reports errors: `error: <what failed>`, then one `  caused by: <cause>`
//! line per source ([`atex::error::chain`]); and [`CliError`], the error of a subcommand's
//! own steps.

use std::error::Error;

use atex::error::BoxError;

/// Prints `err` with its causes to stderr.
pub(crate) fn print(err: &(dyn Error + 'static)) {
    eprintln!("error: {:#}", atex::error::chain(err));
}

/// Prints a problem that has no error value (a usage mistake).
pub(crate) fn print_message(message: &str) {
    eprintln!("error: {message}");
}

/// A failed step of a subcommand: what failed; the cause is the source.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CliError {
    /// A usage mistake (no cause).
    #[error("{0}")]
    #[cfg_attr(not(feature = "reportportal"), allow(dead_code))]
    Usage(String),
    /// An error of the library that names what failed itself (shown as it is, with its
    /// causes; nothing in the program matches on it).
    #[error(transparent)]
    Lib(BoxError),
    /// A step failed.
    #[error("{what}")]
    Failed {
        /// What failed (`writing report.html`).
        what: String,
        /// Why.
        #[source]
        source: BoxError,
    },
}

impl CliError {
    /// A usage mistake.
    #[cfg_attr(not(feature = "reportportal"), allow(dead_code))]
    pub(crate) fn usage(message: impl Into<String>) -> Self {
        CliError::Usage(message.into())
    }

    /// An error that names what failed itself.
    pub(crate) fn lib(e: impl Into<BoxError>) -> Self {
        CliError::Lib(e.into())
    }

    /// `what` failed because of `source`.
    pub(crate) fn failed(what: impl Into<String>, source: impl Into<BoxError>) -> Self {
        CliError::Failed {
            what: what.into(),
            source: source.into(),
        }
    }
}

/// `result.context(|| "what failed")`: wraps the error as the source of a [`CliError`].
pub(crate) trait Context<T> {
    /// Wraps the error, naming what failed.
    fn context<S: Into<String>>(self, what: impl FnOnce() -> S) -> Result<T, CliError>;
}

impl<T, E: Into<BoxError>> Context<T> for Result<T, E> {
    fn context<S: Into<String>>(self, what: impl FnOnce() -> S) -> Result<T, CliError> {
        self.map_err(|e| CliError::failed(what(), e))
    }
}
