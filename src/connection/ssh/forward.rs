//! Local port forwarding (`ssh -L`): a listener task in the scope, one direct-tcpip
//! channel per accepted connection.

use std::net::SocketAddr;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::SshConnection;
use crate::connection::{Connection, ConnectionError};
use crate::scope::Scope;

/// A running local port forward. Dropping it (or [`close`](Self::close)) stops the
/// listener and every connection it carries; so does cancelling its scope.
#[derive(Debug)]
pub struct Forward {
    local: SocketAddr,
    remote: String,
    stop: CancellationToken,
    listener: Option<tokio::task::JoinHandle<()>>,
}

impl Forward {
    /// The local address to connect to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// `host:port` as seen from the remote system.
    pub fn remote(&self) -> &str {
        &self.remote
    }

    /// Stops the listener and its connections and waits for the listener to end.
    pub async fn close(mut self) {
        self.stop.cancel();
        if let Some(h) = self.listener.take() {
            let _ = h.await;
        }
    }
}

impl Drop for Forward {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

pub(crate) async fn start(
    conn: SshConnection,
    host: String,
    port: u16,
    scope: &Scope,
) -> Result<Forward, ConnectionError> {
    let listener = TcpListener::bind(("127.0.0.1", 0))
        .await
        .map_err(|source| ConnectionError::Io {
            context: "binding a local port for forwarding".into(),
            source,
        })?;
    let local = listener
        .local_addr()
        .map_err(|source| ConnectionError::Io {
            context: "reading the forwarded port".into(),
            source,
        })?;
    let stop = scope.token().child_token();
    let remote = format!("{host}:{port}");
    let task_scope = scope.clone();
    let task_stop = stop.clone();
    let describe = conn.describe();
    let listener_task = scope.spawn("ssh-forward-listener", async move {
        tracing::debug!(%local, remote = %format!("{host}:{port}"), target_host = %describe, "forwarding");
        loop {
            let accepted = tokio::select! {
                r = listener.accept() => r,
                _ = task_stop.cancelled() => break,
            };
            let (mut socket, peer) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accepting a forwarded connection failed");
                    continue;
                }
            };
            let _ = socket.set_nodelay(true);
            let conn = conn.clone();
            let host = host.clone();
            let stop = task_stop.clone();
            task_scope.spawn("ssh-forward-connection", async move {
                let channel = tokio::select! {
                    r = conn.open_direct_tcpip(&host, port, peer) => r,
                    _ = stop.cancelled() => return,
                };
                let channel = match channel {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!(error = %e, "opening the forwarding channel failed");
                        return;
                    }
                };
                let mut stream = channel.into_stream();
                tokio::select! {
                    r = tokio::io::copy_bidirectional(&mut socket, &mut stream) => {
                        if let Err(e) = r {
                            tracing::debug!(error = %e, "forwarded connection ended with an error");
                        }
                    }
                    _ = stop.cancelled() => {}
                }
            });
        }
    });
    Ok(Forward {
        local,
        remote,
        stop,
        listener: Some(listener_task),
    })
}
