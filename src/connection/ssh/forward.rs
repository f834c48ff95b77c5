//! Local port forwarding (`ssh -L`): a listener task in the scope, one direct-tcpip
//! channel per accepted connection.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use super::session::ChannelIo;
use crate::connection::ConnectionError;
use crate::scope::Scope;

/// What forwarding needs from a connection: direct-tcpip channels to open, one per
/// accepted local connection (the connection is cloned into the listener task).
pub(super) trait Tunnels: Clone + Send + Sync + 'static {
    /// How the connection describes itself in logs.
    fn describe(&self) -> String;

    /// Opens a channel to `host:port` as seen from the remote system, for a local
    /// connection from `origin`.
    fn open_direct_tcpip(
        &self,
        host: &str,
        port: u16,
        origin: SocketAddr,
    ) -> impl Future<Output = Result<russh::Channel<russh::client::Msg>, ConnectionError>> + Send;
}

/// First pause after a failed `accept` (out of file descriptors, say); it doubles while
/// the errors go on, up to [`ACCEPT_BACKOFF_MAX`], and resets after a success.
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(10);
/// Longest pause between `accept` attempts after errors.
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Something that accepts connections (the listener; a fake in tests).
trait Accept {
    type Conn;
    fn accept(&mut self) -> impl Future<Output = std::io::Result<Self::Conn>> + Send + '_;
}

impl Accept for TcpListener {
    type Conn = (TcpStream, SocketAddr);
    fn accept(&mut self) -> impl Future<Output = std::io::Result<Self::Conn>> + Send + '_ {
        TcpListener::accept(self)
    }
}

/// Accepts connections until `stop`, handing each to `on_conn`. A failed `accept` (EMFILE
/// leaves the pending connection in the queue, so the next call fails at once) is retried
/// after a pause that grows while the errors go on, instead of spinning on the CPU; the
/// first error of a run is logged as a warning, the rest at debug level.
async fn accept_loop<A: Accept>(
    mut listener: A,
    stop: &CancellationToken,
    mut on_conn: impl FnMut(A::Conn),
) {
    let mut backoff: Option<Duration> = None;
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = stop.cancelled() => break,
        };
        match accepted {
            Ok(conn) => {
                if backoff.take().is_some() {
                    tracing::info!("accepting forwarded connections works again");
                }
                on_conn(conn);
            }
            Err(e) => {
                let pause = backoff.map_or(ACCEPT_BACKOFF_MIN, |b| (b * 2).min(ACCEPT_BACKOFF_MAX));
                if backoff.is_none() {
                    tracing::warn!(error = %crate::error::chain(&e), "accepting a forwarded connection failed; retrying with a growing pause");
                } else {
                    tracing::debug!(error = %crate::error::chain(&e), ?pause, "accepting a forwarded connection failed again");
                }
                backoff = Some(pause);
                tokio::select! {
                    _ = tokio::time::sleep(pause) => {}
                    _ = stop.cancelled() => break,
                }
            }
        }
    }
}

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

/// Starts forwarding a free local port on `127.0.0.1` to `host:port` through `conn`; the
/// listener runs as a task in `scope`.
pub(super) async fn start(
    conn: impl Tunnels,
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
        accept_loop(listener, &task_stop, |(mut socket, peer): (TcpStream, SocketAddr)| {
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
                        tracing::warn!(error = %crate::error::chain(&e), "opening the forwarding channel failed");
                        return;
                    }
                };
                let mut stream = ChannelIo::new(channel);
                tokio::select! {
                    r = tokio::io::copy_bidirectional(&mut socket, &mut stream) => {
                        if let Err(e) = r {
                            tracing::debug!(error = %crate::error::chain(&e), "forwarded connection ended with an error");
                        }
                    }
                    _ = stop.cancelled() => {}
                }
                stream.close().await;
            });
        })
        .await;
    });
    Ok(Forward {
        local,
        remote,
        stop,
        listener: Some(listener_task),
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// Fails `accept` like a process out of file descriptors (the first `ok_after` calls,
    /// or all of them); then one connection comes, and no more. More calls than any backoff
    /// makes in the test's time means the loop spins.
    struct Exhausted {
        calls: Arc<AtomicUsize>,
        ok_after: Option<usize>,
    }

    impl Accept for Exhausted {
        type Conn = ();
        fn accept(&mut self) -> impl Future<Output = std::io::Result<()>> + Send + '_ {
            let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
            assert!(n < 1000, "accept called {n} times: the loop spins");
            let outcome = match self.ok_after {
                Some(k) if n == k + 1 => Some(Ok(())),
                Some(k) if n > k + 1 => None,
                _ => Some(Err(std::io::Error::from_raw_os_error(nix::libc::EMFILE))),
            };
            async move {
                match outcome {
                    Some(r) => r,
                    None => std::future::pending().await,
                }
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn accept_errors_back_off_instead_of_spinning() {
        let calls = Arc::new(AtomicUsize::new(0));
        let stop = CancellationToken::new();
        let listener = Exhausted {
            calls: calls.clone(),
            ok_after: None,
        };
        let task = {
            let stop = stop.clone();
            tokio::spawn(async move { accept_loop(listener, &stop, |()| {}).await })
        };
        // Ten seconds of (paused, auto-advancing) time: 10, 20, …, 640 ms, then 1 s apart.
        tokio::time::sleep(Duration::from_secs(10)).await;
        stop.cancel();
        task.await.unwrap();
        let n = calls.load(Ordering::SeqCst);
        assert!((10..=20).contains(&n), "{n} accept attempts in 10 s");
    }

    #[tokio::test(start_paused = true)]
    async fn accept_recovers_after_errors_and_stops_while_pausing() {
        let calls = Arc::new(AtomicUsize::new(0));
        let accepted = Arc::new(AtomicUsize::new(0));
        let stop = CancellationToken::new();
        // Three failures, then connections come again.
        let listener = Exhausted {
            calls: calls.clone(),
            ok_after: Some(3),
        };
        let task = {
            let (stop, accepted) = (stop.clone(), accepted.clone());
            tokio::spawn(async move {
                accept_loop(listener, &stop, |()| {
                    accepted.fetch_add(1, Ordering::SeqCst);
                })
                .await
            })
        };
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
        stop.cancel();
        task.await.unwrap();

        // Stopping during a pause ends the loop at once (no waiting out the pause).
        let stop = CancellationToken::new();
        let listener = Exhausted {
            calls: Arc::new(AtomicUsize::new(0)),
            ok_after: None,
        };
        let task = {
            let stop = stop.clone();
            tokio::spawn(async move { accept_loop(listener, &stop, |()| {}).await })
        };
        tokio::time::sleep(Duration::from_secs(5)).await;
        let before = tokio::time::Instant::now();
        stop.cancel();
        task.await.unwrap();
        assert_eq!(before.elapsed(), Duration::ZERO);
    }
}
