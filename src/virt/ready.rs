//! Readiness: a guest is ready when its sshd sends its banner (`SSH-…`).
//!
//! Port forwarders (QEMU's user networking, passt) accept a TCP connection before the guest
//! listens and then close it, so "the port accepts" proves nothing; the banner does.

use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use crate::scope::Scope;

/// Why [`wait_for_banner`] gave up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReadyError {
    /// No banner within the time limit.
    #[error("no SSH banner on {address} within {after:?} (last: {last})")]
    Timeout {
        /// `host:port`.
        address: String,
        /// The limit.
        after: Duration,
        /// The last thing observed.
        last: String,
    },
    /// The scope was cancelled.
    #[error("cancelled")]
    Cancelled,
}

/// Reads the first bytes a server sends after connecting; `Ok(bytes)` or why not.
async fn probe(address: &str) -> Result<Vec<u8>, String> {
    let mut stream = tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(address))
        .await
        .map_err(|_| "connect timed out".to_string())?
        .map_err(|e| format!("connect: {e}"))?;
    let mut buf = [0u8; 8];
    let n = tokio::time::timeout(Duration::from_secs(3), stream.read(&mut buf))
        .await
        .map_err(|_| "no data within 3 s".to_string())?
        .map_err(|e| format!("read: {e}"))?;
    if n == 0 {
        return Err("connection closed without data".into());
    }
    Ok(buf[..n].to_vec())
}

/// How often a new probe starts while the others still wait.
const PROBE_EVERY: Duration = Duration::from_millis(250);
/// At most this many probes at once.
const PROBES_IN_FLIGHT: usize = 3;

/// Waits until `host:port` answers with an SSH banner, for at most `limit` or until
/// `scope` is cancelled.
///
/// A probe to a forwarder whose guest has no network yet neither gets data nor is closed:
/// it waits for the forwarder's retransmissions (seconds under QEMU's user networking). So
/// while one waits, another starts every 250 ms (at most three at once): the first that
/// reads a banner ends the wait, however long the others hang.
pub async fn wait_for_banner(
    host: &str,
    port: u16,
    limit: Duration,
    scope: &Scope,
) -> Result<(), ReadyError> {
    use futures::StreamExt;
    let address = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let deadline = tokio::time::Instant::now() + limit;
    let mut last = String::from("no probe answered yet");
    let mut probes = futures::stream::FuturesUnordered::new();
    let mut next_start = tokio::time::Instant::now();
    loop {
        let now = tokio::time::Instant::now();
        if probes.len() < PROBES_IN_FLIGHT && now >= next_start {
            probes.push(probe(&address));
            next_start = now + PROBE_EVERY;
        }
        // With every probe slot taken, only an outcome (or the deadline) wakes us.
        let wake = if probes.len() < PROBES_IN_FLIGHT {
            next_start.min(deadline)
        } else {
            deadline
        };
        let step = async {
            tokio::select! {
                Some(outcome) = probes.next() => Some(outcome),
                () = tokio::time::sleep_until(wake) => None,
            }
        };
        match scope.run(step).await {
            None => return Err(ReadyError::Cancelled),
            Some(Some(Ok(bytes))) if bytes.starts_with(b"SSH-") => return Ok(()),
            Some(Some(Ok(bytes))) => {
                last = format!("not a banner: {:?}", String::from_utf8_lossy(&bytes))
            }
            Some(Some(Err(e))) => last = e,
            Some(None) => {}
        }
        if tokio::time::Instant::now() >= deadline {
            drop(probes);
            return Err(ReadyError::Timeout {
                address,
                after: limit,
                last,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn a_listener_without_banner_is_not_ready_and_a_banner_is() {
        let scope = Scope::root("t");
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = silent.local_addr().unwrap().port();
        let closer = scope.spawn("closer", async move {
            // Accept and close at once, like a forwarder whose guest does not listen yet.
            for _ in 0..3 {
                if let Ok((s, _)) = silent.accept().await {
                    drop(s);
                }
            }
        });
        let err = wait_for_banner("127.0.0.1", port, Duration::from_millis(300), &scope)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("closed without data"), "{err}");
        closer.abort();
        let sshd = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = sshd.local_addr().unwrap().port();
        scope.spawn("banner", async move {
            if let Ok((mut s, _)) = sshd.accept().await {
                let _ = s.write_all(b"SSH-2.0-test\r\n").await;
            }
        });
        wait_for_banner("127.0.0.1", port, Duration::from_secs(5), &scope)
            .await
            .unwrap();
    }

    /// A forwarder whose guest has no network yet accepts and then says nothing (until its
    /// retransmissions get through): a later probe that gets the banner ends the wait
    /// without waiting for the silent one.
    #[tokio::test]
    async fn a_silent_probe_does_not_hold_up_a_later_banner() {
        let scope = Scope::root("t");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        scope.spawn("forwarder", async move {
            // The first connection is held open without a byte (longer than the probe's
            // 3 s read limit); every later one gets the banner.
            let (_held, _) = listener.accept().await.unwrap();
            loop {
                if let Ok((mut s, _)) = listener.accept().await {
                    let _ = s.write_all(b"SSH-2.0-test\r\n").await;
                }
            }
        });
        // Shorter than the silent probe's read limit: only a second probe can make it.
        wait_for_banner("127.0.0.1", port, Duration::from_secs(2), &scope)
            .await
            .expect("a later probe read the banner");
        scope.cancel();
    }
}
