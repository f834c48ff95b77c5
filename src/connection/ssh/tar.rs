//! Tar over an exec channel: the transfer fallback for servers without SFTP.

use std::path::Path;

use super::session::Session;

/// Uploads `local` to `remote` as a tar stream unpacked by the remote `tar`.
pub(crate) async fn upload_tar(
    session: &Session,
    local: &Path,
    remote: &str,
    _empty: bool,
) -> Result<(), String> {
    let _ = (session, local, remote);
    Err("the server offers no SFTP subsystem and the tar fallback is not implemented".into())
}

/// Downloads `remote` to `local` from a tar stream made by the remote `tar`.
pub(crate) async fn download_tar(
    session: &Session,
    remote: &str,
    local: &Path,
) -> Result<(), String> {
    let _ = (session, remote, local);
    Err("the server offers no SFTP subsystem and the tar fallback is not implemented".into())
}
