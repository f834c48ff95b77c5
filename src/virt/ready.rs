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

/// Waits until `host:port` answers with an SSH banner, trying every 200 ms, for at most
/// `limit` or until `scope` is cancelled.
pub async fn wait_for_banner(
    host: &str,
    port: u16,
    limit: Duration,
    scope: &Scope,
) -> Result<(), ReadyError> {
    let address = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let deadline = tokio::time::Instant::now() + limit;
    let mut last: String;
    loop {
        match scope.run(probe(&address)).await {
            None => return Err(ReadyError::Cancelled),
            Some(Ok(bytes)) if bytes.starts_with(b"SSH-") => return Ok(()),
            Some(Ok(bytes)) => {
                last = format!("not a banner: {:?}", String::from_utf8_lossy(&bytes))
            }
            Some(Err(e)) => last = e,
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(ReadyError::Timeout {
                address,
                after: limit,
                last,
            });
        }
        if scope
            .run(tokio::time::sleep(Duration::from_millis(200)))
            .await
            .is_none()
        {
            return Err(ReadyError::Cancelled);
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
}
