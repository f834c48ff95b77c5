//! [`Extractor`]: unpacks a tar stream as it arrives.

use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use tokio::io::AsyncWriteExt;

use super::error::TarError;
use super::header::{BLOCK, cstr, padding, parse_octal, parse_pax};

/// Unpacks a tar stream as it arrives, into `root` (`.`-relative names) or as the single
/// entry `single` written to `root`.
pub(crate) struct Extractor {
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

impl Extractor {
    /// An extractor into the directory `root`, or (with `single`) of the single entry
    /// named `single`, written to the path `root`.
    pub(crate) fn new(root: PathBuf, single: Option<String>) -> Self {
        Self {
            root,
            single,
            pending: Vec::new(),
            state: State::Header,
            long_name: None,
            long_link: None,
            dir_modes: Vec::new(),
            ended: false,
        }
    }

    fn target_path(&self, name: &[u8]) -> Result<Option<PathBuf>, TarError> {
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
                _ => return Err(TarError::UnsafePath(name)),
            }
        }
        Ok(Some(out))
    }

    async fn on_header(&mut self, h: &[u8]) -> Result<(), TarError> {
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
                            .map_err(|e| TarError::local("replacing", &path, e))?;
                        tokio::fs::create_dir(&path)
                            .await
                            .map_err(|e| TarError::local("creating", &path, e))?;
                    }
                    Err(_) => tokio::fs::create_dir_all(&path)
                        .await
                        .map_err(|e| TarError::local("creating", &path, e))?,
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
                    .map_err(|e| TarError::local("creating symlink", &path, e))?;
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
                    .map_err(|e| TarError::local("creating", &path, e))?;
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

    async fn finish_file(&mut self) -> Result<(), TarError> {
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
                .map_err(|e| TarError::local("writing", &path, e))?;
            drop(file);
            tokio::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
                .await
                .map_err(|e| TarError::local("setting the mode of", &path, e))?;
            if pad > 0 {
                self.state = State::Skip { left: pad as u64 };
            }
        }
        Ok(())
    }
}

impl Extractor {
    /// Unpacks the next piece of the stream.
    pub(crate) async fn push(&mut self, data: &[u8]) -> Result<(), TarError> {
        let mut data = data;
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
                        .map_err(|e| TarError::local("writing", path, e))?;
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

    /// Checks that the stream ended cleanly and gives directories their modes (last, so
    /// that read-only directories could be filled).
    pub(crate) async fn finish(&mut self) -> Result<(), TarError> {
        if !self.ended && !matches!(self.state, State::Header) {
            return Err(TarError::Truncated);
        }
        for (path, mode) in std::mem::take(&mut self.dir_modes).into_iter().rev() {
            tokio::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
                .await
                .map_err(|e| TarError::local("setting the mode of", &path, e))?;
        }
        if self.single.is_some() && tokio::fs::symlink_metadata(&self.root).await.is_err() {
            return Err(TarError::Missing);
        }
        Ok(())
    }
}
