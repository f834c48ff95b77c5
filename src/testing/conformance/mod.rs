//! The conformance suite: public async checks of the documented contracts of
//! [`Connection`](crate::connection::Connection), [`Remote`](crate::provisioner::Remote),
//! [`Provisioner`](crate::provisioner::Provisioner), [`Executor`](crate::executor::Executor)
//! and [`Aggregator`](crate::aggregator::Aggregator) (feature `conformance`).
//!
//! Every backend of this crate runs the whole list in its tests: the local connection and
//! provisioner, SSH connections and the SSH host pool against a real `sshd`, the in-memory
//! doubles, the command and FMF executors, the JSONL and YAML aggregators. **If you write
//! your own backend, run it too**: a backend that passes behaves the way orchestrators,
//! executors and the other blocks of atex expect.
//!
//! Each module has a *target* type that describes the backend under test (a factory or a
//! closure, plus flags where backends legitimately differ, such as "reuses systems") and an
//! `all` function that runs every check of the module and returns a [`Report`]. The checks
//! are public one by one too. A check never panics on a misbehaving backend: it returns a
//! [`Violation`]; a panic inside the backend, or a check that does not end within the
//! target's deadline, is recorded as a failure of that check.
//!
//! ```no_run
//! use std::sync::Arc;
//! use atex::connection::LocalConnection;
//! use atex::provisioner::LocalProvisioner;
//! use atex::scope::Scope;
//! use atex::testing::conformance::{connection, provisioner, remote};
//!
//! # #[tokio::main] async fn main() {
//! let scope = Scope::root("conformance");
//! // A connection: an empty directory on the system the checks may fill.
//! let dir = tempfile::tempdir().unwrap();
//! let target = connection::ConnectionTarget::new(
//!     Arc::new(LocalConnection::new()),
//!     dir.path().display().to_string(),
//!     &scope,
//! );
//! connection::all(&target).await.assert_passed();
//!
//! // A provisioner: a factory of fresh, unstarted provisioners, and what it can do.
//! let target = provisioner::ProvisionerTarget::new(|| Arc::new(LocalProvisioner::new()), &scope)
//!     .limited(|| Arc::new(LocalProvisioner::new().with_max_remotes(1)));
//! provisioner::all(&target).await.assert_passed();
//! remote::all(&target).await.assert_passed();
//! # }
//! ```

pub mod aggregator;
pub mod connection;
pub mod executor;
pub mod provisioner;
pub mod remote;

use std::fmt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::time::Duration;

use futures::FutureExt;

/// How long one check may take by default before it counts as failed (hung).
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(120);

/// A broken rule of a contract: what a check expected and what the backend did.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Violation(pub String);

impl Violation {
    /// A violation with this message.
    pub fn new(message: impl Into<String>) -> Self {
        Violation(message.into())
    }
}

/// What one check returns.
pub type CheckResult = Result<(), Violation>;

/// Turns a backend's error into a [`Violation`] saying what was being done.
pub trait Context<T> {
    /// `Err(e)` becomes a violation "`what`: `e`", with `e`'s causes.
    fn context(self, what: impl fmt::Display) -> Result<T, Violation>;
}

impl<T, E: std::error::Error> Context<T> for Result<T, E> {
    fn context(self, what: impl fmt::Display) -> Result<T, Violation> {
        self.map_err(|e| Violation(format!("{what}: {}", crate::error::chain(&e))))
    }
}

/// `None` becomes a violation "`what`: missing".
impl<T> Context<T> for Option<T> {
    fn context(self, what: impl fmt::Display) -> Result<T, Violation> {
        self.ok_or_else(|| Violation(format!("{what}: missing")))
    }
}

/// Returns a [`Violation`] from the current check unless `cond` holds.
macro_rules! ensure {
    ($cond:expr, $($arg:tt)+) => {
        if !$cond {
            return Err($crate::testing::conformance::Violation(format!($($arg)+)));
        }
    };
}
pub(crate) use ensure;

/// One failed check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The check (`connection::argv`, …).
    pub check: String,
    /// What went wrong.
    pub message: String,
}

/// The outcome of a list of checks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// What was checked (`connection: local`, …).
    pub subject: String,
    /// The checks that passed.
    pub passed: Vec<String>,
    /// The checks that failed.
    pub failed: Vec<Failure>,
    /// The checks that did not apply to this backend (with the reason).
    pub skipped: Vec<(String, String)>,
}

impl Report {
    /// An empty report about `subject`.
    pub fn new(subject: impl Into<String>) -> Self {
        Self {
            subject: subject.into(),
            ..Self::default()
        }
    }

    /// Runs one check, within `deadline`, recording a panic or a timeout as a failure.
    pub async fn run<F>(&mut self, check: &str, deadline: Duration, fut: F)
    where
        F: Future<Output = CheckResult>,
    {
        let outcome = tokio::time::timeout(deadline, AssertUnwindSafe(fut).catch_unwind()).await;
        let message = match outcome {
            Ok(Ok(Ok(()))) => {
                tracing::debug!(subject = %self.subject, check, "conformance check passed");
                self.passed.push(check.to_string());
                return;
            }
            Ok(Ok(Err(violation))) => violation.0,
            Ok(Err(panic)) => format!("panicked: {}", panic_message(panic.as_ref())),
            Err(_) => format!("did not end within {deadline:?}"),
        };
        tracing::warn!(subject = %self.subject, check, %message, "conformance check failed");
        self.failed.push(Failure {
            check: check.to_string(),
            message,
        });
    }

    /// Records a check that does not apply to this backend.
    pub fn skip(&mut self, check: &str, why: &str) {
        self.skipped.push((check.to_string(), why.to_string()));
    }

    /// Whether every check passed.
    pub fn is_ok(&self) -> bool {
        self.failed.is_empty()
    }

    /// Whether the check named `check` failed.
    pub fn has_failed(&self, check: &str) -> bool {
        self.failed.iter().any(|f| f.check == check)
    }

    /// Adds another report's checks to this one.
    pub fn merge(&mut self, other: Report) {
        self.passed.extend(other.passed);
        self.failed.extend(other.failed);
        self.skipped.extend(other.skipped);
    }

    /// Panics listing every failed check unless all passed (for `#[test]` functions).
    #[track_caller]
    pub fn assert_passed(&self) {
        assert!(self.is_ok(), "{self}");
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "conformance of {}: {} passed, {} failed, {} skipped",
            self.subject,
            self.passed.len(),
            self.failed.len(),
            self.skipped.len()
        )?;
        for failure in &self.failed {
            write!(f, "\n  {}: {}", failure.check, failure.message)?;
        }
        Ok(())
    }
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_string())
}

/// Polls `probe` (every 20 ms) until it returns `Some`, or fails with `what` after
/// `limit`. For waiting on an outside event (a process, a file) with a deadline.
pub(crate) async fn wait_for<T, F, Fut>(
    limit: Duration,
    what: &str,
    mut probe: F,
) -> Result<T, Violation>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>, Violation>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(v) = probe().await? {
            return Ok(v);
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(Violation(format!("{what} (waited {limit:?})")));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Deterministic bytes covering every value, for binary-safety checks.
pub(crate) fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

#[cfg(test)]
mod tests;
