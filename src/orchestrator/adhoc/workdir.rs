//! Per-attempt artifacts directories, reused when they come back empty.
//!
//! Creating and removing a directory costs hundreds of microseconds on some file systems
//! (ext4 mounted with `discard`), and opening one by path costs a path walk. A [`Workdir`]
//! is therefore created once, reused while it comes back empty, and (for the first few
//! dozen) keeps an open file descriptor, so that checking what an attempt left behind is
//! a rewind and one or two `getdents64` calls into a buffer on the stack. (A libc `DIR`
//! handle would do the same with a 32 KiB buffer on the heap for every directory: 32 MiB
//! for a pool of a thousand remotes.)

use std::mem::MaybeUninit;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use rustix::fs::{Mode, OFlags, RawDir, SeekFrom};

use crate::artifacts::RESULTS_FILE;

/// What an attempt left in its directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Probe {
    /// A results file (and maybe more).
    Results,
    /// Nothing.
    Empty,
    /// Something, but no results file.
    Other,
    /// The directory cannot be read.
    Unreadable,
}

/// The buffer one probe reads directory entries into: a Linux entry takes at most 280
/// bytes (a 255-byte name), so every read returns at least one.
const PROBE_BUFFER: usize = 1024;

/// One artifacts directory, and the result lines of its attempt when the executor handed
/// them back in memory instead of writing its `results` file.
#[derive(Debug)]
pub(crate) struct Workdir {
    path: PathBuf,
    fd: Option<OwnedFd>,
    keep_handle: bool,
    exists: bool,
    lines: Option<Vec<u8>>,
}

impl Workdir {
    /// A directory at `path`, created on first use; `keep_handle` keeps it open between
    /// probes.
    pub(crate) fn new(path: PathBuf, keep_handle: bool) -> Self {
        Self {
            path,
            fd: None,
            keep_handle,
            exists: false,
            lines: None,
        }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Keeps the attempt's result lines (given by the executor instead of a file).
    pub(crate) fn set_lines(&mut self, lines: Vec<u8>) {
        self.lines = Some(lines);
    }

    /// The attempt's result lines held in memory, if any.
    pub(crate) fn lines(&self) -> Option<&[u8]> {
        self.lines.as_deref()
    }

    /// Takes the result lines held in memory (for the ingest).
    pub(crate) fn take_lines(&mut self) -> Option<Vec<u8>> {
        self.lines.take()
    }

    /// Creates the directory unless it exists already.
    pub(crate) fn ensure(&mut self) -> std::io::Result<()> {
        if !self.exists {
            std::fs::create_dir(&self.path)?;
            self.exists = true;
        }
        Ok(())
    }

    /// Opens the directory for reading; without updating its access time when allowed
    /// (`O_NOATIME`: the run owns the directory), which every probe would otherwise check.
    fn open(&self) -> Option<OwnedFd> {
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
        match rustix::fs::open(&self.path, flags | OFlags::NOATIME, Mode::empty()) {
            Ok(fd) => Some(fd),
            Err(rustix::io::Errno::PERM) => rustix::fs::open(&self.path, flags, Mode::empty()).ok(),
            Err(_) => None,
        }
    }

    /// Reads the directory once.
    pub(crate) fn probe(&mut self) -> Probe {
        let fd = match self.fd.take() {
            Some(fd) => fd,
            None => match self.open() {
                Some(fd) => fd,
                None => return Probe::Unreadable,
            },
        };
        let found = Self::read_entries(&fd);
        if self.keep_handle {
            self.fd = Some(fd);
        }
        found
    }

    /// What the directory open as `fd` holds, read from its start, until a read returns
    /// nothing. (Stopping after a first read that left room in the buffer, as tmpfs and ext4
    /// are expected to fill it, lost a results file now and then on ext4: 2–4 of 10 runs of
    /// 20,000 instant tests on 1,000 remotes ingested 19,999.)
    fn read_entries(fd: &OwnedFd) -> Probe {
        if rustix::fs::seek(fd, SeekFrom::Start(0)).is_err() {
            return Probe::Unreadable;
        }
        let mut buf = [MaybeUninit::<u8>::uninit(); PROBE_BUFFER];
        let mut entries = RawDir::new(fd, &mut buf);
        let mut found = Probe::Empty;
        while let Some(entry) = entries.next() {
            let Ok(entry) = entry else {
                return Probe::Unreadable;
            };
            let name = entry.file_name().to_bytes();
            if name == b"." || name == b".." {
                continue;
            }
            if name == RESULTS_FILE.as_bytes() {
                return Probe::Results;
            }
            found = Probe::Other;
        }
        found
    }

    /// Removes the directory and everything in it.
    pub(crate) fn remove(self) {
        let Workdir { path, fd, .. } = self;
        drop(fd);
        match std::fs::remove_dir_all(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(dir = %path.display(), error = %crate::error::chain(&e), "cannot remove artifacts")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_sees_changes_through_a_kept_handle() {
        let tmp = tempfile::tempdir().expect("tmp");
        for keep in [true, false] {
            let mut w = Workdir::new(tmp.path().join(format!("w{keep}")), keep);
            assert_eq!(w.probe(), Probe::Unreadable);
            w.ensure().expect("mkdir");
            w.ensure().expect("idempotent");
            assert_eq!(w.probe(), Probe::Empty);
            std::fs::write(w.path().join("other"), "x").expect("write");
            assert_eq!(w.probe(), Probe::Other);
            std::fs::write(w.path().join(RESULTS_FILE), "x").expect("write");
            assert_eq!(w.probe(), Probe::Results);
            std::fs::remove_file(w.path().join(RESULTS_FILE)).expect("rm");
            std::fs::remove_file(w.path().join("other")).expect("rm");
            assert_eq!(w.probe(), Probe::Empty);
            let path = w.path().to_path_buf();
            w.remove();
            assert!(!path.exists());
        }
    }

    /// Entries that need several reads of the probe's buffer (long names, many of them),
    /// probed twice through a kept handle: the results file is found wherever it is.
    #[test]
    fn probe_reads_past_one_buffer_of_entries() {
        let tmp = tempfile::tempdir().expect("tmp");
        let mut w = Workdir::new(tmp.path().join("w"), true);
        w.ensure().expect("mkdir");
        for i in 0..40 {
            let name = format!("{i:03}{}", "x".repeat(252));
            std::fs::write(w.path().join(name), "").expect("write");
        }
        assert_eq!(w.probe(), Probe::Other);
        assert_eq!(w.probe(), Probe::Other);
        std::fs::write(w.path().join(RESULTS_FILE), "x").expect("write");
        assert_eq!(w.probe(), Probe::Results);
        assert_eq!(w.probe(), Probe::Results);
    }
}
