//! Per-attempt artifacts directories, reused when they come back empty.
//!
//! Creating and removing a directory costs hundreds of microseconds on some file systems
//! (ext4 mounted with `discard`), and opening one by path costs a path walk. A [`Workdir`]
//! is therefore created once, reused while it comes back empty, and (for the first few
//! hundred) keeps an open directory handle, so that checking what an attempt left behind
//! is two `getdents64` calls and a rewind.

use std::path::{Path, PathBuf};

use nix::dir::Dir;
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;

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

/// One artifacts directory.
#[derive(Debug)]
pub(crate) struct Workdir {
    path: PathBuf,
    dir: Option<Dir>,
    keep_handle: bool,
    exists: bool,
}

impl Workdir {
    /// A directory at `path`, created on first use; `keep_handle` keeps it open between
    /// probes.
    pub(crate) fn new(path: PathBuf, keep_handle: bool) -> Self {
        Self {
            path,
            dir: None,
            keep_handle,
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

    fn open(&self) -> Option<Dir> {
        Dir::open(
            &self.path,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .ok()
    }

    /// Reads the directory once.
    pub(crate) fn probe(&mut self) -> Probe {
        let mut dir = match self.dir.take() {
            Some(dir) => dir,
            None => match self.open() {
                Some(dir) => dir,
                None => return Probe::Unreadable,
            },
        };
        let mut found = Probe::Empty;
        // Dropping the iterator rewinds the handle for the next probe.
        for entry in dir.iter() {
            let Ok(entry) = entry else {
                found = Probe::Unreadable;
                break;
            };
            let name = entry.file_name().to_bytes();
            if name == b"." || name == b".." {
                continue;
            }
            if name == RESULTS_FILE.as_bytes() {
                found = Probe::Results;
                break;
            }
            found = Probe::Other;
        }
        if self.keep_handle {
            self.dir = Some(dir);
        }
        found
    }

    /// Removes the directory and everything in it.
    pub(crate) fn remove(self) {
        let Workdir { path, dir, .. } = self;
        drop(dir);
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
}
