//! Per-attempt artifacts directories, reused when they come back empty.
//!
//! Creating and removing a directory costs hundreds of microseconds on some file systems
//! (ext4 mounted with `discard`), and opening one by path costs a path walk. A [`Workdir`]
//! is therefore created once, reused while it comes back empty, and (see [`HandleBudget`]:
//! the first few dozen, or up to thousands in a run that starts no local process) keeps an
//! open file descriptor, so that checking what an attempt left behind is a rewind and one
//! or two `getdents64` calls into a buffer on the stack. (A libc `DIR`
//! handle would do the same with a 32 KiB buffer on the heap for every directory: 32 MiB
//! for a pool of a thousand remotes.)

use std::mem::MaybeUninit;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustix::fs::{Mode, OFlags, RawDir, SeekFrom};

use crate::artifacts::RESULTS_FILE;
use crate::scope::ProcessRegistry;

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

/// Which artifacts directories of a run keep an open handle between probes.
///
/// A kept handle saves each probe an `openat` and a `close`, but every descriptor the
/// process holds is copied into each process it starts (and closed there by `exec`). So
/// the first `without_processes` directories keep theirs while the run's scope tree has
/// started no local process (remotes reached in-process: SSH, in-memory), and only the
/// first `with_processes` once it has; the others close theirs at their next probe.
#[derive(Debug)]
pub(crate) struct HandleBudget {
    processes: ProcessRegistry,
    without_processes: u64,
    with_processes: u64,
}

impl HandleBudget {
    /// A budget that watches the process groups registered in `processes`.
    pub(crate) fn new(
        processes: ProcessRegistry,
        without_processes: u64,
        with_processes: u64,
    ) -> Self {
        Self {
            processes,
            without_processes,
            with_processes,
        }
    }

    /// Whether the directory numbered `seq` (from 1) keeps its handle now.
    fn keeps(&self, seq: u64) -> bool {
        let limit = if self.processes.registered() == 0 {
            self.without_processes
        } else {
            self.with_processes
        };
        seq <= limit
    }
}

/// One artifacts directory, and the result lines of its attempt when the executor handed
/// them back in memory instead of writing its `results` file.
#[derive(Debug)]
pub(crate) struct Workdir {
    path: PathBuf,
    fd: Option<OwnedFd>,
    seq: u64,
    handles: Arc<HandleBudget>,
    exists: bool,
    lines: Option<Vec<u8>>,
}

impl Workdir {
    /// The run's directory number `seq` at `path`, created on first use; `handles`
    /// decides whether it stays open between probes.
    pub(crate) fn new(path: PathBuf, seq: u64, handles: Arc<HandleBudget>) -> Self {
        Self {
            path,
            fd: None,
            seq,
            handles,
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
        if self.handles.keeps(self.seq) {
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

    /// A budget of `n` kept handles, with or without processes.
    fn budget(n: u64) -> Arc<HandleBudget> {
        Arc::new(HandleBudget::new(ProcessRegistry::default(), n, n))
    }

    #[test]
    fn probe_sees_changes_through_a_kept_handle() {
        let tmp = tempfile::tempdir().expect("tmp");
        for keep in [true, false] {
            let mut w = Workdir::new(
                tmp.path().join(format!("w{keep}")),
                1,
                budget(u64::from(keep)),
            );
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
        let mut w = Workdir::new(tmp.path().join("w"), 1, budget(1));
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

    /// Handles are kept for the first directories of a run that starts no local process,
    /// and only for the first few once it does: the others close theirs at their next
    /// probe, and are still probed right.
    #[test]
    fn kept_handles_shrink_once_the_run_starts_a_process() {
        let tmp = tempfile::tempdir().expect("tmp");
        let processes = ProcessRegistry::default();
        let handles = Arc::new(HandleBudget::new(processes.clone(), 3, 1));
        let mut dirs: Vec<Workdir> = (1..=4)
            .map(|seq| Workdir::new(tmp.path().join(seq.to_string()), seq, handles.clone()))
            .collect();
        let kept = |dirs: &[Workdir]| dirs.iter().map(|d| d.fd.is_some()).collect::<Vec<_>>();
        for d in &mut dirs {
            d.ensure().expect("mkdir");
            assert_eq!(d.probe(), Probe::Empty);
        }
        assert_eq!(kept(&dirs), [true, true, true, false]);
        let id = processes.register(i32::MAX);
        processes.unregister(id);
        std::fs::write(dirs[1].path().join(RESULTS_FILE), "x").expect("write");
        for d in &mut dirs {
            d.probe();
        }
        assert_eq!(kept(&dirs), [true, false, false, false]);
        assert_eq!(dirs[1].probe(), Probe::Results);
        assert_eq!(dirs[2].probe(), Probe::Empty);
    }
}
