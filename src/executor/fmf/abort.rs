//! [`Abort`]: why a test run ended early, and the error `run_test` returns for it.

use super::control::ControlError;
use super::reporter::ReportError;
use crate::connection::ConnectionError;
use crate::executor::ExecutorError;

/// Why a test run ended early.
#[derive(Debug)]
pub(super) struct Abort {
    /// The error type named in the fallback result's note (`TestAbortedError`, ...).
    pub(super) kind: &'static str,
    /// What happened.
    pub(super) message: String,
    cancelled: bool,
    /// The connection broke while the test ran: the remote is lost.
    pub(super) lost: Option<ConnectionError>,
}

impl Abort {
    pub(super) fn new(kind: &'static str, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            cancelled: false,
            lost: None,
        }
    }
    /// A connection error: a lost remote when it says the connection broke.
    pub(super) fn connection(e: ConnectionError) -> Self {
        let mut abort = Self::new("ConnectionError", e.to_string());
        if e.is_disconnect() {
            abort.lost = Some(e);
        }
        abort
    }
    pub(super) fn aborted(message: impl Into<String>) -> Self {
        Self::new("TestAbortedError", message)
    }
    pub(super) fn cancelled() -> Self {
        Self {
            cancelled: true,
            ..Self::aborted("cancel requested")
        }
    }
    pub(super) fn timeout() -> Self {
        Self::aborted("test duration timeout reached")
    }
    pub(super) fn control(e: ControlError) -> Self {
        Self::new(e.kind(), e.to_string())
    }
    pub(super) fn report(e: ReportError) -> Self {
        Self::new(e.kind(), e.to_string())
    }
    pub(super) fn into_error(self, test: &str) -> ExecutorError {
        if self.cancelled {
            return ExecutorError::Cancelled { test: test.into() };
        }
        if let Some(e) = self.lost {
            return ExecutorError::Connection(e);
        }
        let reason = if self.kind == "TestAbortedError" {
            self.message
        } else {
            format!("{}({})", self.kind, self.message)
        };
        ExecutorError::Aborted {
            test: test.into(),
            reason,
        }
    }
}
