//! File transfer over the session: SFTP when the server offers it, otherwise a tar
//! stream over an exec channel. Trees keep modes and symlinks; file contents stream
//! (memory stays flat for large files).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use russh::ChannelMsg;
use russh_sftp::client::SftpSession;
use russh_sftp::protocol::{FileAttributes, OpenFlags};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::exec::ChannelError;
use super::session::Session;
use super::transfer_error::TransferError;
use crate::connection::ConnectionError;

/// Size of the copy buffer for file contents.
const CHUNK: usize = 256 * 1024;

fn transfer_err<'a>(
    from: &'a str,
    to: &'a str,
) -> impl FnOnce(TransferError) -> ConnectionError + 'a {
    move |e| ConnectionError::Transfer {
        from: from.to_string(),
        to: to.to_string(),
        source: Box::new(e),
    }
}

/// The session's SFTP subsystem, opened once; `None` when the server refuses it.
async fn sftp(session: &Session) -> Option<Arc<SftpSession>> {
    session
        .sftp
        .get_or_init(|| async {
            match open_sftp(session).await {
                Ok(s) => Some(Arc::new(s)),
                Err(e) => {
                    tracing::info!(target_host = %session.target, error = %crate::error::chain(&e),
                        "SFTP is not available; using tar over exec");
                    None
                }
            }
        })
        .await
        .clone()
}

async fn open_sftp(session: &Session) -> Result<SftpSession, TransferError> {
    let mut channel = session
        .handle
        .channel_open_session()
        .await
        .map_err(ChannelError::Open)?;
    channel
        .request_subsystem(true, "sftp")
        .await
        .map_err(ChannelError::Exec)?;
    loop {
        match channel.wait().await {
            Some(ChannelMsg::Success) => break,
            Some(ChannelMsg::Failure) => return Err(TransferError::SftpRefused),
            Some(ChannelMsg::Close) | Some(ChannelMsg::Eof) | None => {
                return Err(TransferError::SftpClosed);
            }
            Some(_) => {}
        }
    }
    let sftp = SftpSession::new(super::session::ChannelIo::new(channel))
        .await
        .map_err(TransferError::SftpOpen)?;
    sftp.set_timeout(120);
    Ok(sftp)
}

/// One entry of a local tree, relative to its root.
enum LocalEntry {
    Dir { rel: PathBuf, mode: u32 },
    File { rel: PathBuf, mode: u32 },
    Symlink { rel: PathBuf, target: PathBuf },
}

/// Lists `root` (a file, symlink or directory), parents before children.
fn walk_local(root: &Path) -> std::io::Result<Vec<LocalEntry>> {
    fn visit(root: &Path, rel: PathBuf, out: &mut Vec<LocalEntry>) -> std::io::Result<()> {
        let path = join_local(root, &rel);
        let meta = std::fs::symlink_metadata(&path)?;
        let mode = meta.permissions().mode() & 0o7777;
        let ft = meta.file_type();
        if ft.is_symlink() {
            out.push(LocalEntry::Symlink {
                rel,
                target: std::fs::read_link(&path)?,
            });
        } else if ft.is_dir() {
            out.push(LocalEntry::Dir {
                rel: rel.clone(),
                mode,
            });
            let mut names: Vec<_> = std::fs::read_dir(&path)?
                .map(|e| e.map(|e| e.file_name()))
                .collect::<Result<_, _>>()?;
            names.sort();
            for name in names {
                visit(root, rel.join(name), out)?;
            }
        } else if ft.is_file() {
            out.push(LocalEntry::File { rel, mode });
        } else {
            tracing::debug!(path = %path.display(), "skipping a special file");
        }
        Ok(())
    }
    let mut out = Vec::new();
    visit(root, PathBuf::new(), &mut out)?;
    Ok(out)
}

fn join_local(root: &Path, rel: &Path) -> PathBuf {
    if rel.as_os_str().is_empty() {
        root.to_path_buf()
    } else {
        root.join(rel)
    }
}

fn join_remote(base: &str, rel: &Path) -> String {
    let rel = rel.to_string_lossy();
    if rel.is_empty() {
        base.to_string()
    } else if base.ends_with('/') {
        format!("{base}{rel}")
    } else {
        format!("{base}/{rel}")
    }
}

/// Parent directory of a remote path, if it has one worth creating.
fn remote_parent(path: &str) -> Option<&str> {
    let trimmed = path.trim_end_matches('/');
    let (parent, _) = trimmed.rsplit_once('/')?;
    if parent.is_empty() {
        None
    } else {
        Some(parent)
    }
}

/// Copies a local file or tree to `remote`.
pub(crate) async fn upload(
    session: &Session,
    local: &Path,
    remote: &str,
) -> Result<(), ConnectionError> {
    let from = local.display().to_string();
    let to = format!("{}:{remote}", session.target);
    let root = local.to_path_buf();
    let entries = crate::scope::spawn_blocking("ssh-walk-local", move || walk_local(&root))
        .await
        .map_err(TransferError::Walk)
        .and_then(|r| r.map_err(|e| TransferError::local("listing", local, e)))
        .map_err(transfer_err(&from, &to))?;
    match sftp(session).await {
        Some(sftp) => upload_sftp(&sftp, local, remote, &entries)
            .await
            .map_err(transfer_err(&from, &to)),
        None => super::tar::upload_tar(session, local, remote)
            .await
            .map_err(transfer_err(&from, &to)),
    }
}

async fn sftp_mkdir_p(sftp: &SftpSession, dir: &str) -> Result<(), TransferError> {
    if let Ok(meta) = sftp.metadata(dir).await {
        if meta.is_dir() {
            return Ok(());
        }
        return Err(TransferError::NotADirectory(dir.to_string()));
    }
    if let Some(parent) = remote_parent(dir) {
        Box::pin(sftp_mkdir_p(sftp, parent)).await?;
    }
    match sftp.create_dir(dir).await {
        Ok(()) => Ok(()),
        Err(e) => match sftp.metadata(dir).await {
            Ok(meta) if meta.is_dir() => Ok(()),
            _ => Err(TransferError::sftp("creating directory", dir)(e)),
        },
    }
}

fn mode_attrs(mode: u32) -> FileAttributes {
    FileAttributes {
        permissions: Some(mode),
        ..FileAttributes::empty()
    }
}

async fn upload_sftp(
    sftp: &SftpSession,
    local_root: &Path,
    remote_root: &str,
    entries: &[LocalEntry],
) -> Result<(), TransferError> {
    if let Some(parent) = remote_parent(remote_root) {
        sftp_mkdir_p(sftp, parent).await?;
    }
    // Directory modes are set last so that read-only directories can be filled first.
    let mut dir_modes = Vec::new();
    for entry in entries {
        match entry {
            LocalEntry::Dir { rel, mode } => {
                let path = join_remote(remote_root, rel);
                match sftp.symlink_metadata(&path).await {
                    Ok(m) if m.is_dir() => {}
                    Ok(_) => {
                        sftp.remove_file(&path)
                            .await
                            .map_err(TransferError::sftp("replacing", &path))?;
                        sftp.create_dir(&path)
                            .await
                            .map_err(TransferError::sftp("creating directory", &path))?;
                    }
                    Err(_) => sftp
                        .create_dir(&path)
                        .await
                        .map_err(TransferError::sftp("creating directory", &path))?,
                }
                dir_modes.push((path, *mode));
            }
            LocalEntry::File { rel, mode } => {
                let path = join_remote(remote_root, rel);
                if let Ok(m) = sftp.symlink_metadata(&path).await
                    && m.is_symlink()
                {
                    let _ = sftp.remove_file(&path).await;
                }
                let src = join_local(local_root, rel);
                let mut input = tokio::fs::File::open(&src)
                    .await
                    .map_err(|e| TransferError::local("opening", &src, e))?;
                let mut output = sftp
                    .open_with_flags_and_attributes(
                        &path,
                        OpenFlags::CREATE | OpenFlags::TRUNCATE | OpenFlags::WRITE,
                        mode_attrs(*mode),
                    )
                    .await
                    .map_err(TransferError::sftp("creating", &path))?;
                let mut buf = vec![0u8; CHUNK];
                loop {
                    let n = input
                        .read(&mut buf)
                        .await
                        .map_err(|e| TransferError::local("reading", &src, e))?;
                    if n == 0 {
                        break;
                    }
                    output
                        .write_all(&buf[..n])
                        .await
                        .map_err(|e| TransferError::sftp_io("writing", &path, e))?;
                }
                output
                    .shutdown()
                    .await
                    .map_err(|e| TransferError::sftp_io("closing", &path, e))?;
                // The mode given at open is filtered by the umask: set it explicitly.
                sftp.set_metadata(&path, mode_attrs(*mode))
                    .await
                    .map_err(TransferError::sftp("setting the mode of", &path))?;
            }
            LocalEntry::Symlink { rel, target } => {
                let path = join_remote(remote_root, rel);
                if sftp.symlink_metadata(&path).await.is_ok() {
                    let _ = sftp.remove_file(&path).await;
                }
                // OpenSSH's server takes the arguments of SSH_FXP_SYMLINK in the reverse
                // order of the draft: target first, then the link's path.
                sftp.symlink(target.to_string_lossy(), &path)
                    .await
                    .map_err(TransferError::sftp("creating symlink", &path))?;
            }
        }
    }
    for (path, mode) in dir_modes.into_iter().rev() {
        sftp.set_metadata(&path, mode_attrs(mode))
            .await
            .map_err(TransferError::sftp("setting the mode of", &path))?;
    }
    Ok(())
}

/// Copies a remote file or tree to `local`.
pub(crate) async fn download(
    session: &Session,
    remote: &str,
    local: &Path,
) -> Result<(), ConnectionError> {
    let from = format!("{}:{remote}", session.target);
    let to = local.display().to_string();
    if let Some(parent) = local.parent()
        && !parent.as_os_str().is_empty()
    {
        tokio::fs::create_dir_all(parent)
            .await
            .map_err(|e| TransferError::local("creating", parent, e))
            .map_err(transfer_err(&from, &to))?;
    }
    match sftp(session).await {
        Some(sftp) => download_sftp(&sftp, remote, local)
            .await
            .map_err(transfer_err(&from, &to)),
        None => super::tar::download_tar(session, remote, local)
            .await
            .map_err(transfer_err(&from, &to)),
    }
}

async fn remove_local_non_dir(path: &Path) -> Result<(), TransferError> {
    match tokio::fs::symlink_metadata(path).await {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => tokio::fs::remove_file(path)
            .await
            .map_err(|e| TransferError::local("replacing", path, e)),
        Err(_) => Ok(()),
    }
}

async fn download_sftp(
    sftp: &SftpSession,
    remote_root: &str,
    local_root: &Path,
) -> Result<(), TransferError> {
    let mut stack = vec![(remote_root.to_string(), local_root.to_path_buf())];
    let mut dir_modes = Vec::new();
    while let Some((rpath, lpath)) = stack.pop() {
        let meta = sftp
            .symlink_metadata(&rpath)
            .await
            .map_err(TransferError::sftp("reading the attributes of", &rpath))?;
        let mode = meta.permissions.unwrap_or(0o644) & 0o7777;
        if meta.is_symlink() {
            let target = sftp
                .read_link(&rpath)
                .await
                .map_err(TransferError::sftp("reading symlink", &rpath))?;
            let _ = tokio::fs::remove_file(&lpath).await;
            tokio::fs::symlink(&target, &lpath)
                .await
                .map_err(|e| TransferError::local("creating symlink", &lpath, e))?;
        } else if meta.is_dir() {
            match tokio::fs::symlink_metadata(&lpath).await {
                Ok(m) if m.is_dir() => {}
                Ok(_) => {
                    remove_local_non_dir(&lpath).await?;
                    tokio::fs::create_dir(&lpath)
                        .await
                        .map_err(|e| TransferError::local("creating", &lpath, e))?;
                }
                Err(_) => tokio::fs::create_dir(&lpath)
                    .await
                    .map_err(|e| TransferError::local("creating", &lpath, e))?,
            }
            dir_modes.push((lpath.clone(), mode));
            let entries = sftp
                .read_dir(&rpath)
                .await
                .map_err(TransferError::sftp("listing", &rpath))?;
            for entry in entries {
                let name = entry.file_name();
                if name == "." || name == ".." {
                    continue;
                }
                stack.push((join_remote(&rpath, Path::new(&name)), lpath.join(&name)));
            }
        } else if meta.is_regular() {
            remove_local_non_dir(&lpath).await?;
            let mut input = sftp
                .open_with_flags(&rpath, OpenFlags::READ)
                .await
                .map_err(TransferError::sftp("opening", &rpath))?;
            let mut output = tokio::fs::File::create(&lpath)
                .await
                .map_err(|e| TransferError::local("creating", &lpath, e))?;
            let mut buf = vec![0u8; CHUNK];
            loop {
                let n = input
                    .read(&mut buf)
                    .await
                    .map_err(|e| TransferError::sftp_io("reading", &rpath, e))?;
                if n == 0 {
                    break;
                }
                output
                    .write_all(&buf[..n])
                    .await
                    .map_err(|e| TransferError::local("writing", &lpath, e))?;
            }
            output
                .flush()
                .await
                .map_err(|e| TransferError::local("writing", &lpath, e))?;
            drop(output);
            let _ = input.shutdown().await;
            tokio::fs::set_permissions(&lpath, std::fs::Permissions::from_mode(mode))
                .await
                .map_err(|e| TransferError::local("setting the mode of", &lpath, e))?;
        } else {
            tracing::debug!(path = %rpath, "skipping a special remote file");
        }
    }
    for (path, mode) in dir_modes.into_iter().rev() {
        tokio::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
            .await
            .map_err(|e| TransferError::local("setting the mode of", &path, e))?;
    }
    Ok(())
}
