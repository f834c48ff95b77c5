//! How a backend makes one system for a [`Ledger`](super::Ledger): a [`Creator`], the
//! [`CreateContext`] it gets and the [`CreateError`] it may return.

use std::fmt;
use std::future::Future;
use std::sync::{Arc, Weak};

use futures::future::BoxFuture;

use crate::error::BoxError;
use crate::provisioner::ProvisionError;
use crate::provisioner::lease::Lease;
use crate::scope::Scope;

/// Why a creation produced no system.
#[derive(Debug)]
pub enum CreateError {
    /// The creation failed: the error goes to one caller of
    /// [`get_remote`](super::Ledger::get_remote) or [`try_get_remote`](super::Ledger::try_get_remote)
    /// (an immediate creation's request is kept for a later try).
    Failed(ProvisionError),
    /// Nothing to report: the request is put back (unless the request was
    /// [`Count::Unlimited`](crate::provisioner::Count::Unlimited) or [`clear`](super::Ledger::clear) came meanwhile) and, for task
    /// creations, another creation starts if capacity allows.
    Retry,
}

impl From<ProvisionError> for CreateError {
    fn from(e: ProvisionError) -> Self {
        CreateError::Failed(e)
    }
}

type ImmediateFn<C> = dyn Fn(&CreateContext) -> Result<Lease<C>, CreateError> + Send + Sync;
type TaskFn<C> =
    dyn Fn(CreateContext) -> BoxFuture<'static, Result<Lease<C>, CreateError>> + Send + Sync;

/// How a backend makes one system (see [`Ledger`](super::Ledger)).
pub enum Creator<C> {
    /// Synchronous, in the caller of `get_remote`/`try_get_remote`.
    Immediate(Box<ImmediateFn<C>>),
    /// Asynchronous, one task of the provisioner's scope per request.
    Task(Box<TaskFn<C>>),
}

impl<C> fmt::Debug for Creator<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Creator::Immediate(_) => "Creator::Immediate",
            Creator::Task(_) => "Creator::Task",
        })
    }
}

impl<C> Creator<C> {
    /// A synchronous creator. It must not block for long: it runs in `get_remote`.
    pub fn immediate(
        f: impl Fn(&CreateContext) -> Result<Lease<C>, CreateError> + Send + Sync + 'static,
    ) -> Self {
        Creator::Immediate(Box::new(f))
    }

    /// An asynchronous creator: `f(cx)` runs as a task, raced against `cx.scope()`, which
    /// [`clear`](super::Ledger::clear) and [`stop`](super::Ledger::stop) cancel. A backend keeps whatever
    /// it creates in a [`CleanupGuard`](crate::guard::CleanupGuard) until it returns the
    /// [`Lease`], so that a cancelled creation leaves nothing behind.
    pub fn task<F, Fut>(f: F) -> Self
    where
        F: Fn(CreateContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Lease<C>, CreateError>> + Send + 'static,
    {
        Creator::Task(Box::new(move |cx| Box::pin(f(cx))))
    }
}

/// What a creation gets: a scope to work in and a handle on its ledger.
pub struct CreateContext {
    pub(super) scope: Scope,
    pub(super) ledger: LedgerHandle,
}

impl CreateContext {
    /// The scope of the creation: guards are armed in it; task creations are cancelled
    /// with it.
    pub fn scope(&self) -> &Scope {
        &self.scope
    }

    /// The ledger, to change capacity or fail it from inside a creation or a release hook.
    pub fn ledger(&self) -> &LedgerHandle {
        &self.ledger
    }
}

/// What a [`LedgerHandle`] can do to its ledger.
pub(super) trait Capacity: Send + Sync {
    fn add_capacity(&self, n: usize);
    fn retire(&self, n: usize);
    fn fail(&self, cause: SharedError);
}

/// A weak handle on a [`Ledger`](super::Ledger) for creations and release hooks (it does
/// not keep the ledger alive; calls on a dropped ledger do nothing).
#[derive(Clone)]
pub struct LedgerHandle {
    pub(super) inner: Weak<dyn Capacity>,
}

impl fmt::Debug for LedgerHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LedgerHandle").finish_non_exhaustive()
    }
}

impl LedgerHandle {
    /// Room for `n` more systems (no effect without a capacity limit).
    pub fn add_capacity(&self, n: usize) {
        if let Some(inner) = self.inner.upgrade() {
            inner.add_capacity(n);
        }
    }

    /// `n` systems fewer for good (a machine of a fixed pool turned out broken).
    pub fn retire(&self, n: usize) {
        if let Some(inner) = self.inner.upgrade() {
            inner.retire(n);
        }
    }

    /// No system will ever come any more: every waiting and later
    /// [`get_remote`](super::Ledger::get_remote) fails with [`ProvisionError::Failed`]
    /// whose source is `cause` (systems already made are still handed out first).
    pub fn fail(&self, cause: impl Into<BoxError>) {
        if let Some(inner) = self.inner.upgrade() {
            inner.fail(SharedError(Arc::from(cause.into())));
        }
    }
}

/// The cause of a failed ledger, shared by every [`ProvisionError`] it returns from then on.
#[derive(Debug, Clone)]
pub(super) struct SharedError(pub(super) Arc<dyn std::error::Error + Send + Sync>);

impl fmt::Display for SharedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for SharedError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}
