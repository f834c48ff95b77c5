//! File transfers of a Podman connection: tar streams through commands in the container
//! (the container needs only a `tar`, GNU or busybox).

use std::path::Path;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::connection::tar::{self, Extractor, TarError};
use crate::connection::{CommandSpec, Connection, ConnectionError, ConnectionExt, Input};
use crate::scope::Scope;

/// Why a transfer failed (the source of [`ConnectionError::Transfer`]).
#[derive(Debug, thiserror::Error)]
enum TransferError {
    #[error(transparent)]
    Tar(#[from] TarError),
    #[error("tar in the container ended with {status}: {stderr}")]
    RemoteTar {
        status: crate::process::ExitStatus,
        stderr: String,
    },
    #[error(transparent)]
    Connection(#[from] ConnectionError),
}

fn transfer_error(from: String, to: String, e: TransferError) -> ConnectionError {
    match e {
        // A connection that is down stays recognisable as such.
        TransferError::Connection(e) if e.is_disconnect() => e,
        e => ConnectionError::Transfer {
            from,
            to,
            source: Box::new(e),
        },
    }
}

/// Uploads `local` to `remote` in the container.
pub(super) async fn upload(
    conn: &dyn Connection,
    scope: &Scope,
    local: &Path,
    remote: &str,
) -> Result<(), ConnectionError> {
    let to = format!("{}:{remote}", conn.describe());
    let from = local.display().to_string();
    upload_inner(conn, scope, local, remote)
        .await
        .map_err(|e| transfer_error(from, to, e))
}

async fn upload_inner(
    conn: &dyn Connection,
    scope: &Scope,
    local: &Path,
    remote: &str,
) -> Result<(), TransferError> {
    let meta = tokio::fs::symlink_metadata(local)
        .await
        .map_err(|e| TarError::local("reading", local, e))?;
    let (line, root_name) = tar::extract_command(remote, meta.is_dir());
    let mut p = conn
        .spawn(
            CommandSpec::new(["/bin/sh", "-c", &line]).stdin(Input::Piped),
            scope,
        )
        .await?;
    let mut stdin = p.stdin.take();
    let mut stderr = p.stderr.take();
    let _ = p.stdout.take();
    let feed = async {
        if let Some(w) = stdin.as_mut() {
            tar::write_archive(w, local, &root_name).await?;
            w.shutdown().await.map_err(TarError::Stream)?;
        }
        drop(stdin.take());
        Ok::<_, TarError>(())
    };
    let drain = async {
        let mut buf = Vec::new();
        if let Some(r) = stderr.as_mut() {
            let _ = r.read_to_end(&mut buf).await;
        }
        buf
    };
    let (fed, err) = tokio::join!(feed, drain);
    let info = p.wait().await?;
    if !info.status.success() {
        return Err(TransferError::RemoteTar {
            status: info.status,
            stderr: String::from_utf8_lossy(&err).trim().to_string(),
        });
    }
    fed?;
    Ok(())
}

/// Downloads `remote` from the container to `local`.
pub(super) async fn download(
    conn: &dyn Connection,
    scope: &Scope,
    remote: &str,
    local: &Path,
) -> Result<(), ConnectionError> {
    let from = format!("{}:{remote}", conn.describe());
    let to = local.display().to_string();
    download_inner(conn, scope, remote, local)
        .await
        .map_err(|e| transfer_error(from, to, e))
}

async fn download_inner(
    conn: &dyn Connection,
    scope: &Scope,
    remote: &str,
    local: &Path,
) -> Result<(), TransferError> {
    if let Some(parent) = local.parent()
        && !parent.as_os_str().is_empty()
    {
        tokio::fs::create_dir_all(parent)
            .await
            .map_err(|e| TarError::local("creating", parent, e))?;
    }
    let probe = conn
        .output(
            CommandSpec::new(["/bin/sh", "-c", &tar::is_dir_command(remote)]),
            scope,
        )
        .await?;
    let is_dir = probe.status.success();
    let (line, single) = tar::create_command(remote, is_dir);
    let mut sink = Extractor::new(local.to_path_buf(), single);
    if is_dir {
        tokio::fs::create_dir_all(local)
            .await
            .map_err(|e| TarError::local("creating", local, e))?;
    }
    let mut p = conn
        .spawn(CommandSpec::new(["/bin/sh", "-c", &line]), scope)
        .await?;
    let mut stdout = p.stdout.take();
    let mut stderr = p.stderr.take();
    let unpack = async {
        let mut buf = vec![0u8; 256 * 1024];
        if let Some(r) = stdout.as_mut() {
            loop {
                let n = r.read(&mut buf).await.map_err(TarError::Stream)?;
                if n == 0 {
                    break;
                }
                sink.push(&buf[..n]).await?;
            }
        }
        Ok::<_, TarError>(())
    };
    let drain = async {
        let mut buf = Vec::new();
        if let Some(r) = stderr.as_mut() {
            let _ = r.read_to_end(&mut buf).await;
        }
        buf
    };
    let (unpacked, err) = tokio::join!(unpack, drain);
    let info = p.wait().await?;
    if !info.status.success() {
        return Err(TransferError::RemoteTar {
            status: info.status,
            stderr: String::from_utf8_lossy(&err).trim().to_string(),
        });
    }
    unpacked?;
    sink.finish().await?;
    Ok(())
}
