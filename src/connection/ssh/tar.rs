//! Tar over an exec channel: the transfer fallback for servers without SFTP.
//!
//! Upload streams a GNU-format tar archive written here into `tar -x` on the remote side;
//! download parses the output of a remote `tar -c` as it arrives. Both keep modes and
//! symlinks, stream file contents (memory stays flat) and need only a `tar` (GNU or
//! busybox) on the remote system.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use bytes::Bytes;
use russh::ChannelMsg;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::session::Session;
use crate::connection::shell_quote;

const BLOCK: usize = 512;

fn octal(field: &mut [u8], value: u64) {
    // Width-1 digits, then NUL.
    let width = field.len() - 1;
    let s = format!("{value:0width$o}");
    let bytes = s.as_bytes();
    let start = bytes.len().saturating_sub(width);
    field[..width].copy_from_slice(&bytes[start..]);
    field[width] = 0;
}

fn put(field: &mut [u8], value: &[u8]) {
    let n = value.len().min(field.len());
    field[..n].copy_from_slice(&value[..n]);
}

/// One 512-byte header block.
fn header(name: &[u8], mode: u32, size: u64, mtime: u64, kind: u8, link: &[u8]) -> [u8; BLOCK] {
    let mut h = [0u8; BLOCK];
    put(&mut h[0..100], name);
    octal(&mut h[100..108], u64::from(mode & 0o7777));
    octal(&mut h[108..116], 0);
    octal(&mut h[116..124], 0);
    octal(&mut h[124..136], size);
    octal(&mut h[136..148], mtime);
    h[156] = kind;
    put(&mut h[157..257], link);
    put(&mut h[257..265], b"ustar  \0");
    h[148..156].copy_from_slice(b"        ");
    let sum: u64 = h.iter().map(|b| u64::from(*b)).sum();
    let s = format!("{sum:06o}\0 ");
    h[148..156].copy_from_slice(s.as_bytes());
    h
}

fn padding(size: u64) -> usize {
    let rem = (size % BLOCK as u64) as usize;
    if rem == 0 { 0 } else { BLOCK - rem }
}

/// Headers for one entry, with GNU long-name records when a name or link is too long.
fn entry_headers(name: &[u8], mode: u32, size: u64, mtime: u64, kind: u8, link: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for (data, k) in [(link, b'K'), (name, b'L')] {
        if data.len() >= 100 {
            let mut long = data.to_vec();
            long.push(0);
            out.extend_from_slice(&header(
                b"././@LongLink",
                0o644,
                long.len() as u64,
                0,
                k,
                b"",
            ));
            let pad = padding(long.len() as u64);
            out.extend_from_slice(&long);
            out.extend(std::iter::repeat_n(0u8, pad));
        }
    }
    out.extend_from_slice(&header(name, mode, size, mtime, kind, link));
    out
}

fn remote_parent_and_name(remote: &str) -> (String, String) {
    let trimmed = remote.trim_end_matches('/');
    match trimmed.rsplit_once('/') {
        Some(("", name)) => ("/".into(), name.into()),
        Some((parent, name)) => (parent.into(), name.into()),
        None => (".".into(), trimmed.into()),
    }
}

/// Runs `line` on a new channel and hands its stdout to `sink`; the remote stderr goes into
/// the error when the command fails.
async fn run_channel<S: TarSink>(session: &Session, line: &str, mut sink: S) -> Result<(), String> {
    let mut channel = session
        .handle
        .channel_open_session()
        .await
        .map_err(|e| format!("opening a channel: {e}"))?;
    channel
        .exec(true, line)
        .await
        .map_err(|e| format!("exec request: {e}"))?;
    let _ = channel.eof().await;
    let mut stderr = Vec::new();
    let mut status = None;
    let mut sink_err = None;
    while let Some(msg) = channel.wait().await {
        match msg {
            ChannelMsg::Data { data } => {
                if sink_err.is_none()
                    && let Err(e) = sink.push(data).await
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
                return Err(format!("remote tar killed by signal {signal_name:?}"));
            }
            ChannelMsg::Close => break,
            _ => {}
        }
    }
    if let Some(e) = sink_err {
        return Err(e);
    }
    match status {
        Some(0) => sink.finish().await,
        Some(code) => Err(format!(
            "remote tar failed with exit code {code}: {}",
            String::from_utf8_lossy(&stderr).trim()
        )),
        None => Err(session.end_reason()),
    }
}

trait TarSink {
    async fn push(&mut self, data: Bytes) -> Result<(), String>;
    async fn finish(&mut self) -> Result<(), String>;
}

/// Uploads `local` to `remote` as a tar stream unpacked by the remote `tar`.
pub(crate) async fn upload_tar(
    session: &Session,
    local: &Path,
    remote: &str,
) -> Result<(), String> {
    let meta = tokio::fs::symlink_metadata(local)
        .await
        .map_err(|e| format!("{}: {e}", local.display()))?;
    let (dir, root_name) = if meta.is_dir() {
        (remote.to_string(), ".".to_string())
    } else {
        remote_parent_and_name(remote)
    };
    let line = format!(
        "mkdir -p -- {d} && exec tar -x -o -p -f - -C {d}",
        d = shell_quote(&dir)
    );
    let channel_writer = session
        .handle
        .channel_open_session()
        .await
        .map_err(|e| format!("opening a channel: {e}"))?;
    // Feed and drain on one channel: write the archive while watching for the result.
    channel_writer
        .exec(true, line)
        .await
        .map_err(|e| format!("exec request: {e}"))?;
    let (mut read, write) = channel_writer.split();
    let mut writer = write.make_writer();
    let local = local.to_path_buf();
    let feed = async {
        write_archive(&mut writer, &local, &root_name).await?;
        writer
            .shutdown()
            .await
            .map_err(|e| format!("closing the tar stream: {e}"))
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
            Some(code) => Err(format!(
                "remote tar failed with exit code {code}: {}",
                String::from_utf8_lossy(&stderr).trim()
            )),
            None => Err(session.end_reason()),
        }
    };
    let (fed, drained) = tokio::join!(feed, drain);
    drained?;
    fed
}

async fn write_archive<W: tokio::io::AsyncWrite + Unpin>(
    out: &mut W,
    root: &Path,
    root_name: &str,
) -> Result<(), String> {
    let w = |e: std::io::Error| format!("writing the tar stream: {e}");
    // Parents before children; directory entries carry their modes.
    let mut stack = vec![(root.to_path_buf(), root_name.to_string())];
    let mut buf = vec![0u8; 256 * 1024];
    while let Some((path, name)) = stack.pop() {
        let meta = tokio::fs::symlink_metadata(&path)
            .await
            .map_err(|e| format!("{}: {e}", path.display()))?;
        let mode = meta.permissions().mode();
        let mtime = u64::try_from(meta.mtime()).unwrap_or(0);
        let ft = meta.file_type();
        if ft.is_symlink() {
            let target = tokio::fs::read_link(&path)
                .await
                .map_err(|e| format!("{}: {e}", path.display()))?;
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
                .map_err(|e| format!("{}: {e}", path.display()))?;
            let mut children = Vec::new();
            while let Some(e) = rd
                .next_entry()
                .await
                .map_err(|e| format!("{}: {e}", path.display()))?
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
                .map_err(|e| format!("{}: {e}", path.display()))?;
            let mut left = size;
            while left > 0 {
                let want = usize::try_from(left.min(buf.len() as u64)).unwrap_or(buf.len());
                let n = f
                    .read(&mut buf[..want])
                    .await
                    .map_err(|e| format!("{}: {e}", path.display()))?;
                if n == 0 {
                    return Err(format!("{} shrank while being sent", path.display()));
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

/// Unpacks a tar stream as it arrives, into `root` (`.`-relative names) or as the single
/// entry `single` written to `root`.
struct Extractor {
    root: PathBuf,
    single: Option<String>,
    pending: Vec<u8>,
    state: State,
    long_name: Option<Vec<u8>>,
    long_link: Option<Vec<u8>>,
    dir_modes: Vec<(PathBuf, u32)>,
    ended: bool,
}

enum State {
    Header,
    File {
        file: tokio::fs::File,
        path: PathBuf,
        mode: u32,
        left: u64,
        pad: usize,
    },
    Skip {
        left: u64,
    },
    Long {
        kind: u8,
        acc: Vec<u8>,
        left: u64,
        pad: usize,
    },
}

fn parse_octal(field: &[u8]) -> Result<u64, String> {
    // GNU base-256 for big sizes.
    if field.first().is_some_and(|b| b & 0x80 != 0) {
        let mut v: u64 = 0;
        for (i, b) in field.iter().enumerate() {
            let b = if i == 0 { b & 0x7f } else { *b };
            v = v
                .checked_mul(256)
                .and_then(|v| v.checked_add(u64::from(b)))
                .ok_or("size overflow")?;
        }
        return Ok(v);
    }
    let s: String = field
        .iter()
        .take_while(|b| **b != 0)
        .map(|b| *b as char)
        .collect();
    let s = s.trim();
    if s.is_empty() {
        return Ok(0);
    }
    u64::from_str_radix(s, 8).map_err(|_| format!("bad number {s:?} in a tar header"))
}

fn cstr(field: &[u8]) -> Vec<u8> {
    field.iter().take_while(|b| **b != 0).copied().collect()
}

impl Extractor {
    fn target_path(&self, name: &[u8]) -> Result<Option<PathBuf>, String> {
        let name = String::from_utf8_lossy(name).into_owned();
        let rel = Path::new(&name);
        if let Some(single) = &self.single {
            let trimmed = name.trim_end_matches('/');
            if trimmed == single {
                return Ok(Some(self.root.clone()));
            }
            return Ok(None);
        }
        let mut out = self.root.clone();
        for c in rel.components() {
            match c {
                Component::CurDir => {}
                Component::Normal(p) => out.push(p),
                _ => return Err(format!("unsafe path {name:?} in the tar stream")),
            }
        }
        Ok(Some(out))
    }

    async fn on_header(&mut self, h: &[u8]) -> Result<(), String> {
        if h.iter().all(|b| *b == 0) {
            self.ended = true;
            return Ok(());
        }
        let kind = h[156];
        let size = parse_octal(&h[124..136])?;
        let mode = u32::try_from(parse_octal(&h[100..108])?).unwrap_or(0o644) & 0o7777;
        let mut name = cstr(&h[0..100]);
        let prefix = cstr(&h[345..500]);
        if &h[257..262] == b"ustar" && h[262] == 0 && !prefix.is_empty() {
            let mut full = prefix;
            full.push(b'/');
            full.extend_from_slice(&name);
            name = full;
        }
        if kind == b'L' || kind == b'K' || kind == b'x' || kind == b'g' {
            self.state = State::Long {
                kind,
                acc: Vec::new(),
                left: size,
                pad: padding(size),
            };
            return Ok(());
        }
        if let Some(long) = self.long_name.take() {
            name = long;
        }
        let link = self.long_link.take().unwrap_or_else(|| cstr(&h[157..257]));
        let Some(path) = self.target_path(&name)? else {
            self.state = State::Skip {
                left: size + padding(size) as u64,
            };
            return Ok(());
        };
        match kind {
            b'5' => {
                match tokio::fs::symlink_metadata(&path).await {
                    Ok(m) if m.is_dir() => {}
                    Ok(_) => {
                        tokio::fs::remove_file(&path)
                            .await
                            .map_err(|e| format!("replacing {}: {e}", path.display()))?;
                        tokio::fs::create_dir(&path)
                            .await
                            .map_err(|e| format!("creating {}: {e}", path.display()))?;
                    }
                    Err(_) => tokio::fs::create_dir_all(&path)
                        .await
                        .map_err(|e| format!("creating {}: {e}", path.display()))?,
                }
                self.dir_modes.push((path, mode));
                self.state = State::Skip {
                    left: size + padding(size) as u64,
                };
            }
            b'2' => {
                if tokio::fs::symlink_metadata(&path).await.is_ok() {
                    let _ = tokio::fs::remove_file(&path).await;
                }
                let target = PathBuf::from(String::from_utf8_lossy(&link).into_owned());
                tokio::fs::symlink(&target, &path)
                    .await
                    .map_err(|e| format!("creating symlink {}: {e}", path.display()))?;
                self.state = State::Skip {
                    left: size + padding(size) as u64,
                };
            }
            b'0' | 0 | b'7' => {
                if let Ok(m) = tokio::fs::symlink_metadata(&path).await
                    && !m.is_dir()
                {
                    let _ = tokio::fs::remove_file(&path).await;
                }
                let file = tokio::fs::File::create(&path)
                    .await
                    .map_err(|e| format!("creating {}: {e}", path.display()))?;
                self.state = State::File {
                    file,
                    path,
                    mode,
                    left: size,
                    pad: padding(size),
                };
                if size == 0 {
                    self.finish_file().await?;
                }
            }
            _ => {
                tracing::debug!(kind, "skipping a tar entry of an unsupported kind");
                self.state = State::Skip {
                    left: size + padding(size) as u64,
                };
            }
        }
        Ok(())
    }

    async fn finish_file(&mut self) -> Result<(), String> {
        if let State::File {
            file,
            path,
            mode,
            left: 0,
            pad,
        } = std::mem::replace(&mut self.state, State::Header)
        {
            let mut file = file;
            file.flush()
                .await
                .map_err(|e| format!("writing {}: {e}", path.display()))?;
            drop(file);
            tokio::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
                .await
                .map_err(|e| format!("setting the mode of {}: {e}", path.display()))?;
            if pad > 0 {
                self.state = State::Skip { left: pad as u64 };
            }
        }
        Ok(())
    }
}

impl TarSink for Extractor {
    async fn push(&mut self, data: Bytes) -> Result<(), String> {
        let mut data = &data[..];
        while !data.is_empty() && !self.ended {
            match &mut self.state {
                State::Header => {
                    let need = BLOCK - self.pending.len();
                    let n = need.min(data.len());
                    self.pending.extend_from_slice(&data[..n]);
                    data = &data[n..];
                    if self.pending.len() == BLOCK {
                        let h = std::mem::take(&mut self.pending);
                        self.on_header(&h).await?;
                    }
                }
                State::Skip { left } => {
                    let n = usize::try_from((*left).min(data.len() as u64)).unwrap_or(data.len());
                    *left -= n as u64;
                    data = &data[n..];
                    if *left == 0 {
                        self.state = State::Header;
                    }
                }
                State::File {
                    file, path, left, ..
                } => {
                    let n = usize::try_from((*left).min(data.len() as u64)).unwrap_or(data.len());
                    file.write_all(&data[..n])
                        .await
                        .map_err(|e| format!("writing {}: {e}", path.display()))?;
                    *left -= n as u64;
                    data = &data[n..];
                    if *left == 0 {
                        self.finish_file().await?;
                    }
                }
                State::Long {
                    kind,
                    acc,
                    left,
                    pad,
                } => {
                    let total = *left + *pad as u64;
                    let n = usize::try_from(total.min(data.len() as u64)).unwrap_or(data.len());
                    let keep = usize::try_from((*left).min(n as u64)).unwrap_or(n);
                    acc.extend_from_slice(&data[..keep]);
                    *left -= keep as u64;
                    *pad -= n - keep;
                    data = &data[n..];
                    if *left == 0 && *pad == 0 {
                        let kind = *kind;
                        let acc = std::mem::take(acc);
                        self.state = State::Header;
                        match kind {
                            b'L' => self.long_name = Some(cstr(&acc)),
                            b'K' => self.long_link = Some(cstr(&acc)),
                            b'x' => {
                                for (k, v) in parse_pax(&acc) {
                                    match k.as_slice() {
                                        b"path" => self.long_name = Some(v),
                                        b"linkpath" => self.long_link = Some(v),
                                        _ => {}
                                    }
                                }
                            }
                            _ => {}
                        }
                    }
                }
            }
        }
        Ok(())
    }

    async fn finish(&mut self) -> Result<(), String> {
        if !self.ended && !matches!(self.state, State::Header) {
            return Err("the tar stream ended in the middle of an entry".into());
        }
        for (path, mode) in std::mem::take(&mut self.dir_modes).into_iter().rev() {
            tokio::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
                .await
                .map_err(|e| format!("setting the mode of {}: {e}", path.display()))?;
        }
        if self.single.is_some() && tokio::fs::symlink_metadata(&self.root).await.is_err() {
            return Err("the remote path was not in the tar stream".into());
        }
        Ok(())
    }
}

/// `len key=value\n` records of a pax header.
fn parse_pax(data: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut out = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        let Some(sp) = rest.iter().position(|b| *b == b' ') else {
            break;
        };
        let Ok(len) = std::str::from_utf8(&rest[..sp])
            .unwrap_or("")
            .parse::<usize>()
        else {
            break;
        };
        if len == 0 || len > rest.len() {
            break;
        }
        let record = &rest[sp + 1..len];
        let record = record.strip_suffix(b"\n").unwrap_or(record);
        if let Some(eq) = record.iter().position(|b| *b == b'=') {
            out.push((record[..eq].to_vec(), record[eq + 1..].to_vec()));
        }
        rest = &rest[len..];
    }
    out
}

/// Downloads `remote` to `local` from a tar stream made by the remote `tar`.
pub(crate) async fn download_tar(
    session: &Session,
    remote: &str,
    local: &Path,
) -> Result<(), String> {
    let (parent, name) = remote_parent_and_name(remote);
    let r = shell_quote(remote);
    // Whether it is a directory decides how names map.
    let probe = super::exec::run_quiet(session, &format!("[ -d {r} ] && [ ! -L {r} ]")).await?;
    let is_dir = probe == Some(0);
    let line = if is_dir {
        format!("cd {r} && exec tar -c -f - .")
    } else {
        format!(
            "cd {p} && exec tar -c -f - -- {n}",
            p = shell_quote(&parent),
            n = shell_quote(&name)
        )
    };
    let sink = Extractor {
        root: local.to_path_buf(),
        single: if is_dir { None } else { Some(name) },
        pending: Vec::new(),
        state: State::Header,
        long_name: None,
        long_link: None,
        dir_modes: Vec::new(),
        ended: false,
    };
    if is_dir {
        tokio::fs::create_dir_all(local)
            .await
            .map_err(|e| format!("creating {}: {e}", local.display()))?;
    }
    run_channel(session, &line, sink).await
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn header_checksum_and_numbers() {
        let h = header(b"a.txt", 0o755, 1234, 0, b'0', b"");
        let stored = parse_octal(&h[148..156]).unwrap();
        let mut copy = h;
        copy[148..156].copy_from_slice(b"        ");
        let sum: u64 = copy.iter().map(|b| u64::from(*b)).sum();
        assert_eq!(stored, sum);
        assert_eq!(parse_octal(&h[124..136]).unwrap(), 1234);
        assert_eq!(parse_octal(&h[100..108]).unwrap(), 0o755);
        assert_eq!(padding(512), 0);
        assert_eq!(padding(513), 511);
        let long = "d/".repeat(80);
        let hs = entry_headers(long.as_bytes(), 0o644, 0, 0, b'5', b"");
        assert_eq!(hs.len() % BLOCK, 0);
        assert_eq!(hs[156], b'L');
        assert_eq!(
            parse_pax(b"16 path=abc/def\n"),
            vec![(b"path".to_vec(), b"abc/def".to_vec())]
        );
    }
}
