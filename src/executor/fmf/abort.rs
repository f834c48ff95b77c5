//! [`Abort`]: why a test run ended early, and the error `run_test` returns for it.

use super::control::ControlError;
use super::reporter::ReportError;
use crate::connection::ConnectionError;
use crate::error::{BoxError, chain};
use crate::executor::ExecutorError;

/// Why a test was aborted, when no other error says it: the source of
/// [`ExecutorError::Aborted`] (and the message of the `TestAbortedError(…)` note).
#[derive(Debug, thiserror::Error)]
pub(super) enum AbortCause {
    /// The run was cancelled.
    #[error("cancel requested")]
    CancelRequested,
    /// The test's duration passed; `last` is the last failure to reconnect, if the test
    /// was waiting for its system to come back.
    #[error("test duration timeout reached")]
    Timeout {
        #[source]
        last: Option<ConnectionError>,
    },
    /// The wrapper ended without reporting the test's exit code.
    #[error("exitcode not reported, wrapper bug?")]
    NoExitcode,
    /// The connection gave the wrapper no stdout to read the control channel from.
    #[error("the connection gave no stdout pipe for the control channel")]
    NoControlPipe,
    /// The wrapper died in the middle of a control message.
    #[error("{parser} was running while test wrapper unexpectedly exited with {rc}")]
    WrapperDiedMidMessage {
        /// The control reader that was interrupted.
        parser: &'static str,
        /// The wrapper's exit code (128 + signal).
        rc: i32,
    },
    /// A test started without the wrapper could not be started (its directory is missing,
    /// say).
    #[error("the test could not be started in {cwd}")]
    NotStarted {
        /// Where it was to run.
        cwd: String,
        /// What the connection said.
        #[source]
        source: ConnectionError,
    },
    /// The wrapper exited without `disconnect`.
    #[error("test wrapper unexpectedly exited with {rc} and disconnect was not sent via test control{}",
        if notes.is_empty() { String::new() } else { format!(" (the wrapper said: {notes})") })]
    WrapperExited {
        /// The exit code, or `a lost connection`.
        rc: String,
        /// What the wrapper logged, `; `-separated.
        notes: String,
    },
}

/// Why a test run ended early.
#[derive(Debug)]
pub(super) struct Abort {
    /// The error type named in the fallback result's note (`TestAbortedError`, ...).
    pub(super) kind: &'static str,
    /// What happened.
    cause: BoxError,
    cancelled: bool,
    /// The connection broke while the test ran: the remote is lost (`cause` is that
    /// [`ConnectionError`]).
    pub(super) lost: bool,
}

impl Abort {
    fn new(kind: &'static str, cause: impl Into<BoxError>) -> Self {
        Self {
            kind,
            cause: cause.into(),
            cancelled: false,
            lost: false,
        }
    }
    /// A connection error: a lost remote when it says the connection broke.
    pub(super) fn connection(e: ConnectionError) -> Self {
        let lost = e.is_disconnect();
        Self {
            lost,
            ..Self::new("ConnectionError", e)
        }
    }
    pub(super) fn aborted(cause: AbortCause) -> Self {
        Self::new("TestAbortedError", cause)
    }
    pub(super) fn cancelled() -> Self {
        Self {
            cancelled: true,
            ..Self::aborted(AbortCause::CancelRequested)
        }
    }
    pub(super) fn timeout() -> Self {
        Self::aborted(AbortCause::Timeout { last: None })
    }
    /// The deadline passed while reconnecting failed with `last`.
    pub(super) fn timeout_reconnecting(last: Option<ConnectionError>) -> Self {
        Self::aborted(AbortCause::Timeout { last })
    }
    pub(super) fn control(e: ControlError) -> Self {
        Self::new(e.kind(), e)
    }
    pub(super) fn report(e: ReportError) -> Self {
        Self::new(e.kind(), e)
    }
    /// The message of the fallback result's note: the cause with its own causes, on one
    /// line.
    pub(super) fn message(&self) -> String {
        chain(&*self.cause).to_string()
    }
    pub(super) fn into_error(self, test: &str) -> ExecutorError {
        if self.cancelled {
            return ExecutorError::Cancelled { test: test.into() };
        }
        if self.lost {
            match self.cause.downcast::<ConnectionError>() {
                Ok(e) => return ExecutorError::connection_in(test, *e),
                Err(cause) => {
                    return ExecutorError::Aborted {
                        test: test.into(),
                        reason: cause,
                    };
                }
            }
        }
        ExecutorError::Aborted {
            test: test.into(),
            reason: self.cause,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::assert_chain;

    /// Aborts keep their cause: the note's message is the whole chain on one line, the
    /// returned error keeps the cause as its source, and a lost connection comes back as the
    /// `ConnectionError` itself.
    #[test]
    fn aborts_keep_their_cause() {
        let read = ControlError::Read(std::io::Error::other("EIO"));
        let abort = Abort::control(read);
        assert_eq!(abort.kind, "OSError");
        assert_eq!(abort.message(), "reading the test-control stream: EIO");
        let err = abort.into_error("/t");
        assert!(matches!(err, ExecutorError::Aborted { .. }), "{err:?}");
        assert_chain(&err, 3);

        let lost = ConnectionError::released("ssh h");
        let abort = Abort::connection(lost);
        assert!(abort.lost);
        assert_eq!(
            abort.message(),
            "ssh h: connection lost: the remote was released"
        );
        let err = abort.into_error("/t");
        assert!(err.is_remote_lost());
        assert!(matches!(&err, ExecutorError::Connection { test: Some(t), .. } if t == "/t"));
        assert_chain(&err, 3);

        let reconnect = ConnectionError::Timeout {
            what: "reconnecting to ssh h".into(),
            after: std::time::Duration::from_secs(5),
            last: Some(Box::new(std::io::Error::other("refused"))),
        };
        let abort = Abort::timeout_reconnecting(Some(reconnect));
        assert_eq!(
            abort.message(),
            "test duration timeout reached: reconnecting to ssh h timed out after 5s: refused"
        );
        let err = abort.into_error("/t");
        assert!(!err.is_remote_lost());
        assert_chain(&err, 4);
    }
}
