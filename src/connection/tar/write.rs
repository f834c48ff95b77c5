//! [`write_archive`]: a local tree (or file) as a tar stream.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::error::TarError;
use super::header::{BLOCK, entry_headers, padding};

/// Writes `root` as a tar stream into `out`, its entries named under `root_name` (`.` for
/// a directory's contents), parents before children, then the end-of-archive blocks.
pub(crate) async fn write_archive<W: tokio::io::AsyncWrite + Unpin>(
    out: &mut W,
    root: &Path,
    root_name: &str,
) -> Result<(), TarError> {
    let w = TarError::Stream;
    // Parents before children; directory entries carry their modes.
    let mut stack = vec![(root.to_path_buf(), root_name.to_string())];
    let mut buf = vec![0u8; 256 * 1024];
    while let Some((path, name)) = stack.pop() {
        let meta = tokio::fs::symlink_metadata(&path)
            .await
            .map_err(|e| TarError::local("reading", &path, e))?;
        let mode = meta.permissions().mode();
        let mtime = u64::try_from(meta.mtime()).unwrap_or(0);
        let ft = meta.file_type();
        if ft.is_symlink() {
            let target = tokio::fs::read_link(&path)
                .await
                .map_err(|e| TarError::local("reading", &path, e))?;
            let t = target.as_os_str().as_encoded_bytes();
            out.write_all(&entry_headers(name.as_bytes(), 0o777, 0, mtime, b'2', t))
                .await
                .map_err(w)?;
        } else if ft.is_dir() {
            let dname = if name.ends_with('/') {
                name.clone()
            } else {
                format!("{name}/")
            };
            out.write_all(&entry_headers(dname.as_bytes(), mode, 0, mtime, b'5', b""))
                .await
                .map_err(w)?;
            let mut rd = tokio::fs::read_dir(&path)
                .await
                .map_err(|e| TarError::local("reading", &path, e))?;
            let mut children = Vec::new();
            while let Some(e) = rd
                .next_entry()
                .await
                .map_err(|e| TarError::local("reading", &path, e))?
            {
                children.push(e.file_name());
            }
            children.sort();
            for child in children.into_iter().rev() {
                let cname = format!("{}{}", dname, child.to_string_lossy());
                stack.push((path.join(&child), cname));
            }
        } else if ft.is_file() {
            let size = meta.len();
            out.write_all(&entry_headers(
                name.as_bytes(),
                mode,
                size,
                mtime,
                b'0',
                b"",
            ))
            .await
            .map_err(w)?;
            let mut f = tokio::fs::File::open(&path)
                .await
                .map_err(|e| TarError::local("reading", &path, e))?;
            let mut left = size;
            while left > 0 {
                let want = usize::try_from(left.min(buf.len() as u64)).unwrap_or(buf.len());
                let n = f
                    .read(&mut buf[..want])
                    .await
                    .map_err(|e| TarError::local("reading", &path, e))?;
                if n == 0 {
                    return Err(TarError::Shrank(path));
                }
                out.write_all(&buf[..n]).await.map_err(w)?;
                left -= n as u64;
            }
            out.write_all(&vec![0u8; padding(size)]).await.map_err(w)?;
        }
    }
    out.write_all(&[0u8; 2 * BLOCK]).await.map_err(w)?;
    Ok(())
}
