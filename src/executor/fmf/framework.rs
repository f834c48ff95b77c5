//! Test frameworks: what a test's `framework` key adds to the FMF executor.
//!
//! A test runs through the plain FMF flow whatever its framework; a [`TestFramework`]
//! registered with [`FmfExecutor::with_framework`](super::FmfExecutor::with_framework)
//! hooks into it for the tests whose `framework` names it:
//!
//! - [`prepare_system`](TestFramework::prepare_system): once per executor start, before the
//!   first such test (installing the framework, helper commands in `W/bin`). A failure is
//!   remembered: every test of the framework on that system then ends as a setup failure
//!   (one `infra` result saying why), while tests of other frameworks run on;
//! - [`prepare_test`](TestFramework::prepare_test): before each such test, after its
//!   setup; returns environment variables that override the test's own;
//! - [`eval_exit_code`](TestFramework::eval_exit_code): the exit code of the fallback
//!   result, from what the test reported.
//!
//! `framework: shell` (and no `framework`) is the plain flow. A framework no hook is
//! registered for is refused (the test's setup fails, naming it), never run as a shell
//! test.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;

use super::reporter::Reporter;
use super::test::FmfTest;
use crate::connection::Connection;
use crate::executor::ExecutorError;
use crate::scope::Scope;

/// The framework of tests without a `framework` key.
pub const SHELL: &str = "shell";

/// The system a framework hook works on.
#[derive(Clone, Copy)]
pub struct FrameworkContext<'a> {
    /// The connection to the system.
    pub conn: &'a dyn Connection,
    /// The work directory `W` on the system (helpers go to `W/bin`, which is on the
    /// `PATH` of every test).
    pub work: &'a str,
}

impl fmt::Debug for FrameworkContext<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FrameworkContext")
            .field("connection", &self.conn.describe())
            .field("work", &self.work)
            .finish()
    }
}

/// What a test framework (the `framework` key of a test) adds to the FMF executor (see the
/// [module docs](self)).
#[async_trait]
pub trait TestFramework: Send + Sync + fmt::Debug {
    /// The `framework` value of the tests this hook runs (`beakerlib`).
    fn name(&self) -> &str;

    /// Prepares the system for the framework's tests: once per executor start, before the
    /// first of them.
    async fn prepare_system(
        &self,
        ctx: FrameworkContext<'_>,
        scope: &Scope,
    ) -> Result<(), ExecutorError>;

    /// Prepares one test (after its setup); returns environment variables for it, which
    /// override the test's and the executor's own.
    async fn prepare_test(
        &self,
        ctx: FrameworkContext<'_>,
        test: &FmfTest,
        scope: &Scope,
    ) -> Result<Vec<(String, String)>, ExecutorError>;

    /// The exit code used for the test's fallback result and returned by `run_test`,
    /// from the test's `exit_code` and what it reported so far.
    fn eval_exit_code(&self, test: &FmfTest, reporter: &Reporter, exit_code: i32) -> i32;
}

/// A test's `framework` that cannot be run.
#[derive(Debug, thiserror::Error)]
pub enum FrameworkError {
    /// No hook is registered for it.
    #[error("framework '{name}' is not supported here (known: {known})")]
    Unknown {
        /// The `framework` value.
        name: String,
        /// The frameworks the executor knows.
        known: String,
    },
    /// The value is not a string.
    #[error("'framework' must be a string, got: {0}")]
    NotAString(String),
    /// Preparing the system for the framework failed earlier (remembered until the
    /// executor stops).
    #[error("the system is not ready for {name} tests: {reason}")]
    Unavailable {
        /// The framework.
        name: String,
        /// Why (the whole error chain of the failed preparation).
        reason: String,
    },
}

/// The frameworks of one executor and whether each prepared its system.
#[derive(Debug, Default, Clone)]
pub(super) struct Frameworks {
    hooks: Vec<Arc<dyn TestFramework>>,
    /// Per hook (same index): `None` until prepared, then the outcome.
    prepared: Vec<Option<Result<(), String>>>,
}

impl Frameworks {
    /// Registers `hook` (replacing one of the same name).
    pub(super) fn add(&mut self, hook: Arc<dyn TestFramework>) {
        match self.hooks.iter().position(|h| h.name() == hook.name()) {
            Some(i) => {
                self.hooks[i] = hook;
                self.prepared[i] = None;
            }
            None => {
                self.hooks.push(hook);
                self.prepared.push(None);
            }
        }
    }

    /// Forgets what was prepared (the work directory is gone).
    pub(super) fn reset(&mut self) {
        self.prepared.iter_mut().for_each(|p| *p = None);
    }

    /// The hook of `test`'s framework (`None` for shell tests), after preparing the system
    /// for it if this is its first test, and the environment it adds to the test.
    pub(super) async fn prepare(
        &mut self,
        ctx: FrameworkContext<'_>,
        test: &FmfTest,
        scope: &Scope,
    ) -> Result<Option<(Arc<dyn TestFramework>, Vec<(String, String)>)>, ExecutorError> {
        let setup = |e: FrameworkError| ExecutorError::setup(&test.name, e);
        let name = match test.metadata.get("framework") {
            None | Some(Value::Null) => return Ok(None),
            Some(Value::String(name)) if name == SHELL => return Ok(None),
            Some(Value::String(name)) => name,
            Some(other) => return Err(setup(FrameworkError::NotAString(other.to_string()))),
        };
        let Some(i) = self.hooks.iter().position(|h| h.name() == name) else {
            let known: Vec<&str> = std::iter::once(SHELL)
                .chain(self.hooks.iter().map(|h| h.name()))
                .collect();
            return Err(setup(FrameworkError::Unknown {
                name: name.clone(),
                known: known.join(", "),
            }));
        };
        let hook = self.hooks[i].clone();
        match &self.prepared[i] {
            Some(Ok(())) => {}
            Some(Err(reason)) => {
                return Err(setup(FrameworkError::Unavailable {
                    name: name.clone(),
                    reason: reason.clone(),
                }));
            }
            None => match hook.prepare_system(ctx, scope).await {
                Ok(()) => self.prepared[i] = Some(Ok(())),
                // A lost connection or a cancellation says nothing about the system: the
                // next test tries again.
                Err(e) if e.connection().is_some() || scope.is_cancelled() => return Err(e),
                Err(e) => {
                    let reason = crate::error::chain(&e).to_string();
                    tracing::warn!(framework = %name, %reason, "the system is not ready for the framework's tests");
                    self.prepared[i] = Some(Err(reason.clone()));
                    return Err(setup(FrameworkError::Unavailable {
                        name: name.clone(),
                        reason,
                    }));
                }
            },
        }
        let env = hook.prepare_test(ctx, test, scope).await?;
        Ok(Some((hook, env)))
    }
}
