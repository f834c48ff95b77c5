//! [`LedgerProvisioner`]: a provisioner whose bookkeeping is a [`Ledger`].

use std::fmt;
use std::sync::Arc;

use super::Ledger;
use crate::connection::Connection;
use crate::provisioner::{Count, ProvisionError, Provisioner, Remote};
use crate::scope::Scope;

/// A provisioner whose bookkeeping is a [`Ledger`]: implementing this trait implements
/// [`Provisioner`](crate::provisioner::Provisioner) (every method forwards to the ledger, `start`
/// after [`before_start`](Self::before_start)).
///
/// ```
/// use atex::connection::LocalConnection;
/// use atex::provisioner::{Count, CreateError, Creator, Lease, Ledger, LedgerProvisioner, Provisioner};
/// use atex::scope::Scope;
///
/// #[derive(Debug)]
/// struct Here(Ledger<LocalConnection>);
///
/// impl LedgerProvisioner for Here {
///     type Conn = LocalConnection;
///     fn ledger(&self) -> &Ledger<LocalConnection> {
///         &self.0
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let here = Here(Ledger::new("here", None, Creator::immediate(|_| {
///     Ok::<_, CreateError>(Lease::new(LocalConnection::new()))
/// })));
/// let scope = Scope::root("doc");
/// here.start(&scope).await?;
/// here.provision(Count::N(1))?;
/// assert!(here.try_get_remote()?.is_some());
/// here.stop().await?;
/// # Ok(()) }
/// ```
#[async_trait::async_trait]
pub trait LedgerProvisioner: Send + Sync + fmt::Debug {
    /// The connection type of the remotes.
    type Conn: Connection + 'static;

    /// The ledger.
    fn ledger(&self) -> &Ledger<Self::Conn>;

    /// [`Provisioner::describe`](crate::provisioner::Provisioner::describe); default: the ledger's name.
    fn description(&self) -> String {
        self.ledger().name().to_string()
    }

    /// Work before the ledger starts handing out remotes (create a base directory, log in
    /// to an API). Default: nothing.
    async fn before_start(&self, scope: &Scope) -> Result<(), ProvisionError> {
        let _ = scope;
        Ok(())
    }
}

#[async_trait::async_trait]
impl<T: LedgerProvisioner> Provisioner for T {
    fn describe(&self) -> String {
        self.description()
    }

    async fn start(&self, scope: &Scope) -> Result<(), ProvisionError> {
        self.before_start(scope).await?;
        self.ledger().start(scope);
        Ok(())
    }

    fn provision(&self, count: Count) -> Result<(), ProvisionError> {
        self.ledger().provision(count)
    }

    async fn get_remote(&self) -> Result<Arc<dyn Remote>, ProvisionError> {
        self.ledger().get_remote().await
    }

    fn try_get_remote(&self) -> Result<Option<Arc<dyn Remote>>, ProvisionError> {
        self.ledger().try_get_remote()
    }

    fn clear(&self) {
        self.ledger().clear()
    }

    async fn stop(&self) -> Result<(), ProvisionError> {
        self.ledger().stop().await
    }
}
