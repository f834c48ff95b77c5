//! Error chains: walking an error's [`source`](Error::source) chain and printing it.
//!
//! Every error of atex keeps its cause as `source()`, and its `Display` names only what
//! failed (the command, the file and line, the remote, the test) — never the cause again.
//! To show the whole story, print the chain:
//!
//! * [`chain`]`(&err)` with `{}`: one line, `what failed: cause: cause`, for log fields
//!   (`tracing::warn!(error = %atex::error::chain(&e), …)`) and result notes;
//! * with `{:#}`: the top message, then one `  caused by: …` line per cause, for people
//!   (the `atex` program prints `error: {:#}`);
//! * [`sources`] iterates over the error and its causes, outermost first; [`find`] returns
//!   the first one of a given type (a [`ConnectionError`](crate::connection::ConnectionError)
//!   inside an aborted test, for example).
//!
//! ```
//! use atex::error::chain;
//!
//! #[derive(Debug, thiserror::Error)]
//! #[error("reading {path}")]
//! struct ReadError {
//!     path: String,
//!     source: std::io::Error,
//! }
//!
//! let err = ReadError {
//!     path: "plan.fmf".into(),
//!     source: std::io::Error::from(std::io::ErrorKind::NotFound),
//! };
//! assert_eq!(chain(&err).to_string(), "reading plan.fmf: entity not found");
//! assert_eq!(format!("{:#}", chain(&err)), "reading plan.fmf\n  caused by: entity not found");
//! ```

use std::error::Error;
use std::fmt;

/// A boxed cause: what public error enums keep as `source` when the cause is a private
/// error of a module (or of another crate) that callers display but need not match on.
pub type BoxError = Box<dyn Error + Send + Sync + 'static>;

/// What was being done when `source` happened: a one-off layer of a chain, for the few
/// places where a module needs no error enum of its own.
#[derive(Debug, thiserror::Error)]
#[error("{what}")]
pub(crate) struct Context {
    what: String,
    #[source]
    source: BoxError,
}

impl Context {
    /// `source` happened while doing `what` (`creating /var/tmp/x`).
    pub(crate) fn new(what: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Self {
            what: what.into(),
            source: source.into(),
        }
    }
}

/// The error and its causes, outermost first.
pub fn sources<'a>(
    error: &'a (dyn Error + 'static),
) -> impl Iterator<Item = &'a (dyn Error + 'static)> {
    let mut next = Some(error);
    std::iter::from_fn(move || {
        let current = next?;
        next = current.source();
        Some(current)
    })
}

/// The first error of type `T` in the chain of `error` (`error` itself included).
pub fn find<'a, T: Error + 'static>(error: &'a (dyn Error + 'static)) -> Option<&'a T> {
    sources(error).find_map(|e| e.downcast_ref::<T>())
}

/// Displays an error with its causes; see the [module docs](self).
pub fn chain<'a>(error: &'a (dyn Error + 'a)) -> DisplayChain<'a> {
    DisplayChain { error }
}

/// An error and its causes, for `Display`: `{}` on one line (`top: cause: cause`), `{:#}`
/// with one `  caused by: …` line per cause.
///
/// A cause whose text the previous message already ends with (an error from another crate
/// that repeats its source) is shown once.
#[derive(Clone, Copy)]
pub struct DisplayChain<'a> {
    error: &'a (dyn Error + 'a),
}

impl fmt::Debug for DisplayChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for DisplayChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut previous = self.error.to_string();
        f.write_str(&previous)?;
        let mut next = self.error.source();
        while let Some(cause) = next {
            let text = cause.to_string();
            if !text.is_empty() && !previous.ends_with(&text) {
                if f.alternate() {
                    write!(f, "\n  caused by: {text}")?;
                } else {
                    write!(f, ": {text}")?;
                }
            }
            previous = text;
            next = cause.source();
        }
        Ok(())
    }
}

/// Test helper: no layer of `err`'s chain repeats the text of its own source, and the
/// chain has `min_depth` layers at least.
#[cfg(test)]
pub(crate) fn assert_chain(err: &(dyn Error + 'static), min_depth: usize) {
    for layer in sources(err) {
        if let Some(source) = layer.source() {
            let (text, cause) = (layer.to_string(), source.to_string());
            assert!(
                !text.contains(&cause),
                "'{text}' repeats its source '{cause}' (chain: {})",
                chain(err)
            );
        }
    }
    assert!(
        sources(err).count() >= min_depth,
        "expected {min_depth} layers at least: {}",
        chain(err)
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer {0}")]
    struct Outer(&'static str, #[source] Middle);

    #[derive(Debug, thiserror::Error)]
    #[error("middle")]
    struct Middle(#[source] std::io::Error);

    fn sample() -> Outer {
        Outer("x", Middle(std::io::Error::other("disk on fire")))
    }

    #[test]
    fn one_line_and_multi_line() {
        let e = sample();
        assert_eq!(chain(&e).to_string(), "outer x: middle: disk on fire");
        assert_eq!(
            format!("{:#}", chain(&e)),
            "outer x\n  caused by: middle\n  caused by: disk on fire"
        );
    }

    #[test]
    fn find_walks_the_chain() {
        let e = sample();
        assert!(find::<Middle>(&e).is_some());
        assert_eq!(
            find::<std::io::Error>(&e)
                .map(ToString::to_string)
                .as_deref(),
            Some("disk on fire")
        );
        assert!(find::<std::fmt::Error>(&e).is_none());
        assert_eq!(sources(&e).count(), 3);
    }

    /// An error of another crate that repeats its source does not print it twice.
    #[test]
    fn repeated_cause_is_shown_once() {
        #[derive(Debug, thiserror::Error)]
        #[error("wrapper: {0}")]
        struct Repeats(#[source] std::io::Error);
        let e = Repeats(std::io::Error::other("cause"));
        assert_eq!(chain(&e).to_string(), "wrapper: cause");
        assert_eq!(format!("{:#}", chain(&e)), "wrapper: cause");
    }
}
