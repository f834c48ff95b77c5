//! [`LineFile`]: an append-only text file, plain, gzip or xz, where every append lands whole
//! or not at all.
//!
//! A failed write (disk full, file size limit, I/O error) is rolled back by truncating the
//! file to where the append began, so the file never holds half a line and a compressed file
//! never holds a compressed stream that disagrees with what the encoder has seen.
//!
//! Compressed files are written as a sequence of complete gzip members / xz streams
//! (`gzip -d`, `xz -d` and Python's `gzip`/`lzma` modules read them as one text). The
//! current member is open: each append adds a sync-flushed piece of it. Its uncompressed
//! text is kept in memory (at most [`MEMBER_TEXT_LIMIT`] bytes, then the member is closed
//! and a new one begins), so that after a failed write the member can be encoded again from
//! the text that was committed, whatever state the encoder was left in.

use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::FileExt;

/// Uncompressed bytes after which the open member is closed and a new one begins. Bounds
/// the memory kept to rebuild a member; costs one member header and trailer, and a fresh
/// dictionary, per this much text.
pub(super) const MEMBER_TEXT_LIMIT: usize = 1 << 20;

/// How the text is encoded on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Encoding {
    /// Plain text.
    Plain,
    /// gzip at this level (0–9).
    Gzip(u32),
    /// xz with this preset (0–9).
    Xz(u32),
}

/// A streaming encoder whose output collects in memory until taken.
enum Encoder {
    Gzip(flate2::write::GzEncoder<Vec<u8>>),
    Xz(liblzma::write::XzEncoder<Vec<u8>>),
}

impl Encoder {
    fn new(encoding: Encoding) -> Option<Self> {
        match encoding {
            Encoding::Plain => None,
            Encoding::Gzip(level) => Some(Encoder::Gzip(flate2::write::GzEncoder::new(
                Vec::new(),
                flate2::Compression::new(level.min(9)),
            ))),
            Encoding::Xz(preset) => Some(Encoder::Xz(liblzma::write::XzEncoder::new(
                Vec::new(),
                preset.min(9),
            ))),
        }
    }

    /// Encodes `text` and returns everything the encoder produced so far, flushed so that
    /// it decodes to all the text given up to now.
    fn feed(&mut self, text: &[u8]) -> io::Result<Vec<u8>> {
        match self {
            Encoder::Gzip(g) => {
                g.write_all(text)?;
                g.flush()?;
                Ok(std::mem::take(g.get_mut()))
            }
            Encoder::Xz(x) => {
                x.write_all(text)?;
                x.flush()?;
                // `flush` may leave the flushed block in the encoder's own buffer; an empty
                // write moves it out (and consumes nothing).
                let consumed = x.write(&[])?;
                debug_assert_eq!(consumed, 0);
                Ok(std::mem::take(x.get_mut()))
            }
        }
    }

    /// Ends the member/stream; returns the remaining bytes (with the trailer).
    fn finish(self) -> io::Result<Vec<u8>> {
        match self {
            Encoder::Gzip(g) => g.finish(),
            Encoder::Xz(x) => x.finish(),
        }
    }
}

/// An append-only line file; see the module docs.
pub(super) struct LineFile {
    file: File,
    encoding: Encoding,
    /// Length of the committed content of the file.
    committed: u64,
    /// Compressed: offset of the open member.
    member_start: u64,
    /// Compressed: the committed text of the open member.
    member_text: Vec<u8>,
    /// Compressed: the encoder, in step with `member_text`; `None` after a failed write,
    /// until the member is encoded again from `member_text` at `member_start`.
    encoder: Option<Encoder>,
    /// A rollback could not truncate the file: truncate before the next write.
    truncate_pending: bool,
    /// `finish` was called.
    finished: bool,
}

impl Drop for LineFile {
    fn drop(&mut self) {
        if !self.finished
            && let Err(e) = self.close()
        {
            tracing::warn!(error = %crate::error::chain(&e), "closing a results file that was not finished");
        }
    }
}

impl LineFile {
    /// Wraps an empty file opened for writing.
    pub(super) fn new(file: File, encoding: Encoding) -> Self {
        Self {
            file,
            encoding,
            committed: 0,
            member_start: 0,
            member_text: Vec::new(),
            encoder: Encoder::new(encoding),
            truncate_pending: false,
            finished: false,
        }
    }

    /// Appends `text` (whole lines): on success all of it is in the file, on error none of
    /// it, and the file is as it was before (a compressed file may hold less of the open
    /// member until the next successful write or [`finish`](Self::finish), never a broken
    /// stream).
    pub(super) fn append(&mut self, text: &[u8]) -> io::Result<()> {
        if self.encoding == Encoding::Plain {
            let at = self.committed;
            self.write_at(text, at)?;
            self.committed = at + text.len() as u64;
            return Ok(());
        }
        let (at, mut encoder) = self.open_member()?;
        let bytes = encoder.feed(text)?;
        self.write_at(&bytes, at)?;
        self.committed = at + bytes.len() as u64;
        self.member_text.extend_from_slice(text);
        self.encoder = Some(encoder);
        if self.member_text.len() >= MEMBER_TEXT_LIMIT {
            // The text is committed either way: a failure here only means the member is
            // written again (and closed) later.
            if let Err(e) = self.close_member() {
                tracing::warn!(error = %crate::error::chain(&e), "closing a compressed member failed; will retry");
            }
        }
        Ok(())
    }

    /// Ends the open compressed member (nothing for plain text), so that what is in the
    /// file so far is complete on its own; later appends start a new member.
    pub(super) fn seal(&mut self) -> io::Result<()> {
        if self.encoding != Encoding::Plain && !self.member_text.is_empty() {
            self.close_member()?;
        }
        Ok(())
    }

    /// Writes what is still open (the compressed trailer). Dropping a `LineFile` without
    /// `finish` does the same, logging a failure.
    pub(super) fn finish(mut self) -> io::Result<()> {
        self.finished = true;
        self.close()
    }

    fn close(&mut self) -> io::Result<()> {
        if self.encoding != Encoding::Plain {
            self.close_member()?;
        } else if self.truncate_pending {
            self.file.set_len(self.committed)?;
            self.truncate_pending = false;
        }
        self.file.flush()
    }

    /// The encoder of the open member and the offset its next bytes go to; re-encodes the
    /// member's committed text after a failed write.
    fn open_member(&mut self) -> io::Result<(u64, Encoder)> {
        if let Some(encoder) = self.encoder.take() {
            return Ok((self.committed, encoder));
        }
        let mut encoder = Encoder::new(self.encoding)
            .ok_or_else(|| io::Error::other("internal error: a plain line file has no encoder"))?;
        // Whatever of the member the file still holds is written again from its text.
        self.file.set_len(self.member_start)?;
        self.truncate_pending = false;
        self.committed = self.member_start;
        if !self.member_text.is_empty() {
            let prefix = encoder.feed(&self.member_text)?;
            let at = self.member_start;
            self.write_at(&prefix, at)?;
            self.committed = at + prefix.len() as u64;
        }
        Ok((self.committed, encoder))
    }

    /// Ends the open member; the next append starts a new one.
    fn close_member(&mut self) -> io::Result<()> {
        let (at, encoder) = self.open_member()?;
        let tail = encoder.finish()?;
        self.write_at(&tail, at)?;
        self.committed = at + tail.len() as u64;
        self.member_start = self.committed;
        self.member_text.clear();
        self.encoder = Encoder::new(self.encoding);
        Ok(())
    }

    /// Writes `bytes` at `at`; on error truncates the file back to `at`.
    fn write_at(&mut self, bytes: &[u8], at: u64) -> io::Result<()> {
        if self.truncate_pending {
            self.file.set_len(at)?;
            self.truncate_pending = false;
        }
        if let Err(e) = self.file.write_all_at(bytes, at) {
            if let Err(te) = self.file.set_len(at) {
                tracing::error!(error = %crate::error::chain(&te), "could not truncate a failed write; retrying later");
                self.truncate_pending = true;
            }
            return Err(e);
        }
        Ok(())
    }
}
