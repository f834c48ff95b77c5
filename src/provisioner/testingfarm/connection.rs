//! [`TestingFarmConnection`]: the SSH connection to a reserved guest, named after its
//! request (guests of different requests may share an address).

use std::path::Path;

use async_trait::async_trait;

use crate::connection::{CommandSpec, Connection, ConnectionError, Process, SshConnection};
use crate::scope::Scope;

/// The [`SshConnection`] to a Testing Farm guest, with the request that holds it.
#[derive(Debug)]
pub struct TestingFarmConnection {
    ssh: SshConnection,
    request_id: String,
    destination: String,
}

impl TestingFarmConnection {
    pub(super) fn new(ssh: SshConnection, request_id: String, destination: String) -> Self {
        Self {
            ssh,
            request_id,
            destination,
        }
    }

    /// The SSH connection (for [`SshConnection::forward`] and the like).
    pub fn ssh(&self) -> &SshConnection {
        &self.ssh
    }

    /// The id of the Testing Farm request that holds the guest.
    pub fn request_id(&self) -> &str {
        &self.request_id
    }

    /// `user@host:port` of the guest.
    pub fn destination(&self) -> &str {
        &self.destination
    }
}

#[deny(clippy::missing_trait_methods)]
#[async_trait]
impl Connection for TestingFarmConnection {
    fn describe(&self) -> String {
        format!("testingfarm {} ({})", self.request_id, self.destination)
    }

    async fn spawn(&self, cmd: CommandSpec, scope: &Scope) -> Result<Process, ConnectionError> {
        self.ssh.spawn(cmd, scope).await
    }

    async fn upload(&self, local: &Path, remote: &str) -> Result<(), ConnectionError> {
        self.ssh.upload(local, remote).await
    }

    async fn download(&self, remote: &str, local: &Path) -> Result<(), ConnectionError> {
        self.ssh.download(remote, local).await
    }

    async fn reconnect(&self, scope: &Scope) -> Result<(), ConnectionError> {
        self.ssh.reconnect(scope).await
    }

    async fn disconnect(&self) {
        self.ssh.disconnect().await
    }

    fn supervises_process_groups(&self) -> bool {
        self.ssh.supervises_process_groups()
    }

    fn local_path(&self, remote: &str) -> Option<std::path::PathBuf> {
        self.ssh.local_path(remote)
    }
}
