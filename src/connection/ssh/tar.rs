//! Tar over an SSH exec channel: the transfer fallback for servers without SFTP.
//!
//! Upload streams an archive written by `connection/tar` into `tar -x` on the remote side;
//! download unpacks the output of a remote `tar -c` as it arrives.

use std::path::Path;

use russh::ChannelMsg;
use tokio::io::AsyncWriteExt;

use super::exec::{ChannelError, run_quiet};
use super::session::Session;
use super::transfer_error::TransferError;
use crate::connection::tar::{self, Extractor};

/// Runs `line` on a new channel and unpacks its stdout with `sink`; the remote stderr goes into
/// the error when the command fails.
async fn run_channel(
    session: &Session,
    line: &str,
    sink: &mut Extractor,
) -> Result<(), TransferError> {
    let mut channel = session
        .handle
        .channel_open_session()
        .await
        .map_err(ChannelError::Open)?;
    channel.exec(true, line).await.map_err(ChannelError::Exec)?;
    let _ = channel.eof().await;
    let mut stderr = Vec::new();
    let mut status = None;
    let mut sink_err = None;
    while let Some(msg) = channel.wait().await {
        match msg {
            ChannelMsg::Data { data } => {
                if sink_err.is_none()
                    && let Err(e) = sink.push(&data).await
                {
                    // Stop the remote tar; the loop ends with the channel.
                    sink_err = Some(e);
                    let _ = channel.close().await;
                }
            }
            ChannelMsg::ExtendedData { data, .. } if stderr.len() < 4096 => {
                stderr.extend_from_slice(&data);
            }
            ChannelMsg::ExitStatus { exit_status } => status = Some(exit_status),
            ChannelMsg::ExitSignal { signal_name, .. } if sink_err.is_none() => {
                return Err(TransferError::RemoteTarSignal(format!("{signal_name:?}")));
            }
            ChannelMsg::Close => break,
            _ => {}
        }
    }
    if let Some(e) = sink_err {
        return Err(e.into());
    }
    match status {
        Some(0) => Ok(sink.finish().await?),
        Some(code) => Err(TransferError::RemoteTar {
            code,
            stderr: String::from_utf8_lossy(&stderr).trim().to_string(),
        }),
        None => Err(TransferError::SessionEnded(session.end_reason())),
    }
}

/// Uploads `local` to `remote` as a tar stream unpacked by the remote `tar`.
pub(super) async fn upload_tar(
    session: &Session,
    local: &Path,
    remote: &str,
) -> Result<(), TransferError> {
    let meta = tokio::fs::symlink_metadata(local)
        .await
        .map_err(|e| TransferError::local("reading", local, e))?;
    let (line, root_name) = tar::extract_command(remote, meta.is_dir());
    let channel_writer = session
        .handle
        .channel_open_session()
        .await
        .map_err(ChannelError::Open)?;
    // Feed and drain on one channel: write the archive while watching for the result.
    channel_writer
        .exec(true, line)
        .await
        .map_err(ChannelError::Exec)?;
    let (mut read, write) = channel_writer.split();
    let mut writer = write.make_writer();
    let local = local.to_path_buf();
    let feed = async {
        tar::write_archive(&mut writer, &local, &root_name).await?;
        writer
            .shutdown()
            .await
            .map_err(|e| TransferError::Tar(tar::TarError::Stream(e)))
    };
    let drain = async {
        let mut stderr = Vec::new();
        let mut status = None;
        while let Some(msg) = read.wait().await {
            match msg {
                ChannelMsg::ExtendedData { data, .. } if stderr.len() < 4096 => {
                    stderr.extend_from_slice(&data)
                }
                ChannelMsg::ExitStatus { exit_status } => status = Some(exit_status),
                ChannelMsg::Close => break,
                _ => {}
            }
        }
        match status {
            Some(0) => Ok(()),
            Some(code) => Err(TransferError::RemoteTar {
                code,
                stderr: String::from_utf8_lossy(&stderr).trim().to_string(),
            }),
            None => Err(TransferError::SessionEnded(session.end_reason())),
        }
    };
    let (fed, drained) = tokio::join!(feed, drain);
    drained?;
    fed
}

/// Downloads `remote` to `local` from a tar stream made by the remote `tar`.
pub(super) async fn download_tar(
    session: &Session,
    remote: &str,
    local: &Path,
) -> Result<(), TransferError> {
    // Whether it is a directory decides how names map.
    let probe = run_quiet(session, &tar::is_dir_command(remote)).await?;
    let is_dir = probe == Some(0);
    let (line, single) = tar::create_command(remote, is_dir);
    let mut sink = Extractor::new(local.to_path_buf(), single);
    if is_dir {
        tokio::fs::create_dir_all(local)
            .await
            .map_err(|e| TransferError::local("creating", local, e))?;
    }
    run_channel(session, &line, &mut sink).await
}
