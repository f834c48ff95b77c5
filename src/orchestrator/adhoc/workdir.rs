//! Per-attempt artifacts directories, reused when they come back empty.
//!
//! Creating and removing a directory costs hundreds of microseconds on some file systems
//! (ext4 mounted with `discard`), and opening one by path costs a path walk. A [`Workdir`]
//! is therefore created once, reused while it comes back empty, and (for the first few
//! hundred) keeps an open file descriptor, so that checking what an attempt left behind is
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

/// The buffer one probe reads directory entries into: a Linux entry takes at most
/// [`MAX_ENTRY`] bytes, so every read returns at least one.
const PROBE_BUFFER: usize = 1024;

/// The largest `linux_dirent64` record: a 255-byte name, its NUL, the 19-byte header,
/// rounded up to 8 bytes.
const MAX_ENTRY: usize = 280;

/// The size of the `linux_dirent64` record of a name of `len` bytes.
fn entry_len(len: usize) -> usize {
    (19 + len + 1).next_multiple_of(8)
}

/// Whether the file system holding `dir` fills a directory read until the buffer is full
/// or the directory ends (the `readdir` of tmpfs, ext2/3/4, XFS and Btrfs), so that a read
/// that left room for one more entry of any size reached the end, and the read that would
/// return nothing can be skipped. Other file systems (network, FUSE) may return short
/// reads in the middle of a directory, and are read until a read returns nothing.
pub(crate) fn fills_reads(dir: &Path) -> bool {
    use nix::sys::statfs::{
        BTRFS_SUPER_MAGIC, EXT4_SUPER_MAGIC, TMPFS_MAGIC, XFS_SUPER_MAGIC, statfs,
    };
    statfs(dir).is_ok_and(|fs| {
        [
            TMPFS_MAGIC,
            EXT4_SUPER_MAGIC,
            XFS_SUPER_MAGIC,
            BTRFS_SUPER_MAGIC,
        ]
        .contains(&fs.filesystem_type())
    })
}

/// One artifacts directory.
#[derive(Debug)]
pub(crate) struct Workdir {
    path: PathBuf,
    fd: Option<OwnedFd>,
    keep_handle: bool,
    /// The file system fills reads ([`fills_reads`]).
    fills_reads: bool,
    exists: bool,
}

impl Workdir {
    /// A directory at `path`, created on first use; `keep_handle` keeps it open between
    /// probes; `fills_reads` tells what [`fills_reads`] says of its file system.
    pub(crate) fn new(path: PathBuf, keep_handle: bool, fills_reads: bool) -> Self {
        Self {
            path,
            fd: None,
            keep_handle,
            fills_reads,
            exists: false,
        }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
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
        let found = Self::read_entries(&fd, self.fills_reads);
        if self.keep_handle {
            self.fd = Some(fd);
        }
        found
    }

    /// What the directory open as `fd` holds, read from its start; with `fills_reads`, a
    /// first read that left room for any entry is taken as the whole directory.
    fn read_entries(fd: &OwnedFd, fills_reads: bool) -> Probe {
        if rustix::fs::seek(fd, SeekFrom::Start(0)).is_err() {
            return Probe::Unreadable;
        }
        let mut buf = [MaybeUninit::<u8>::uninit(); PROBE_BUFFER];
        let mut entries = RawDir::new(fd, &mut buf);
        let mut found = Probe::Empty;
        // Bytes of the records read so far (RawDir may give up to 7 bytes of the buffer to
        // alignment).
        let mut read = 0;
        while let Some(entry) = entries.next() {
            let Ok(entry) = entry else {
                return Probe::Unreadable;
            };
            let name = entry.file_name().to_bytes();
            read += entry_len(name.len());
            if name == RESULTS_FILE.as_bytes() {
                return Probe::Results;
            }
            if name != b"." && name != b".." {
                found = Probe::Other;
            }
            if fills_reads && entries.is_buffer_empty() && read + MAX_ENTRY + 8 <= PROBE_BUFFER {
                break;
            }
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

    /// Temporary directories on the disk (`/tmp`) and on tmpfs (`/dev/shm`), each with the
    /// probe modes its file system allows.
    fn places() -> Vec<(tempfile::TempDir, bool)> {
        let disk = tempfile::tempdir().expect("tmp");
        let shm = tempfile::tempdir_in("/dev/shm").expect("tmpfs");
        assert!(fills_reads(shm.path()), "tmpfs fills directory reads");
        let mut places = Vec::new();
        for dir in [disk, shm] {
            if fills_reads(dir.path()) {
                places.push((tempfile::tempdir_in(dir.path()).expect("tmp"), true));
            }
            places.push((dir, false));
        }
        places
    }

    #[test]
    fn probe_sees_changes_through_a_kept_handle() {
        for (tmp, fills) in places() {
            for keep in [true, false] {
                let mut w = Workdir::new(tmp.path().join(format!("w{keep}")), keep, fills);
                assert_eq!(w.probe(), Probe::Unreadable);
                w.ensure().expect("mkdir");
                w.ensure().expect("idempotent");
                assert_eq!(w.probe(), Probe::Empty);
                std::fs::write(w.path().join("other"), "x").expect("write");
                assert_eq!(w.probe(), Probe::Other);
                std::fs::write(w.path().join(RESULTS_FILE), "x").expect("write");
                assert_eq!(w.probe(), Probe::Results);
                std::fs::remove_file(w.path().join(RESULTS_FILE)).expect("rm");
                assert_eq!(w.probe(), Probe::Other);
                std::fs::remove_file(w.path().join("other")).expect("rm");
                assert_eq!(w.probe(), Probe::Empty);
                std::fs::write(w.path().join(RESULTS_FILE), "x").expect("write");
                assert_eq!(w.probe(), Probe::Results, "results alone");
                std::fs::remove_file(w.path().join(RESULTS_FILE)).expect("rm");
                assert_eq!(w.probe(), Probe::Empty);
                let path = w.path().to_path_buf();
                w.remove();
                assert!(!path.exists());
            }
        }
    }

    /// Entries that need several reads of the probe's buffer (long names, many of them),
    /// probed twice through a kept handle: the results file is found wherever it is, and
    /// an entry of the longest name after two short ones is seen.
    #[test]
    fn probe_reads_past_one_buffer_of_entries() {
        for (tmp, fills) in places() {
            let mut w = Workdir::new(tmp.path().join("w"), true, fills);
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

    #[test]
    fn entry_lengths_match_the_kernel_records() {
        assert_eq!(entry_len(1), 24); // "."
        assert_eq!(entry_len(2), 24); // ".."
        assert_eq!(entry_len(4), 24);
        assert_eq!(entry_len(5), 32);
        assert_eq!(entry_len(255), MAX_ENTRY);
    }
}
