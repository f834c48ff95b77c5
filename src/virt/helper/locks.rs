//! Reservation locks: a non-blocking exclusive POSIX record lock on `<state>/locks/<domain>`.
//!
//! POSIX locks belong to the process and die with it, so a crashed or killed helper (and a
//! helper whose client went away, which makes it exit) frees its reservations at once.
//! Caveat of POSIX locks: closing *any* descriptor of a locked file drops the process's lock
//! on it, so a file this session holds is never opened a second time.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use nix::fcntl::{FcntlArg, fcntl};
use nix::libc;

/// Who holds a domain, as `reservations` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Holder {
    /// Nobody.
    Free,
    /// This session.
    Us,
    /// Another process, by its name (`comm`) and pid; `None` name when the process is gone
    /// by the time it is looked up.
    Other {
        /// Its pid.
        pid: i32,
        /// Its process name.
        name: Option<String>,
    },
}

impl Holder {
    /// The protocol's text: `(free)`, `(reserved for us)`, the holder's name, `(empty
    /// name)` or `(pid N disappeared)`.
    pub fn describe(&self) -> String {
        match self {
            Holder::Free => "(free)".into(),
            Holder::Us => "(reserved for us)".into(),
            Holder::Other { name: Some(n), .. } if n.is_empty() => "(empty name)".into(),
            Holder::Other { name: Some(n), .. } => n.clone(),
            Holder::Other { pid, name: None } => format!("(pid {pid} disappeared)"),
        }
    }
}

/// The locks one helper session holds.
#[derive(Debug)]
pub struct Locks {
    dir: PathBuf,
    held: HashMap<String, File>,
}

fn whole_file(kind: libc::c_short) -> libc::flock {
    libc::flock {
        l_type: kind,
        l_whence: libc::SEEK_SET as libc::c_short,
        l_start: 0,
        l_len: 0,
        l_pid: 0,
    }
}

impl Locks {
    /// Lock files live in `dir` (created when missing).
    pub fn new(dir: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        Ok(Self {
            dir: dir.to_path_buf(),
            held: HashMap::new(),
        })
    }

    fn path(&self, domain: &str) -> PathBuf {
        // Domain names cannot contain '/', but never let one escape the directory.
        self.dir.join(domain.replace('/', "_"))
    }

    /// Whether this session holds `domain`.
    pub fn holds(&self, domain: &str) -> bool {
        self.held.contains_key(domain)
    }

    /// Tries to lock `domain` without waiting; `Ok(false)` when another process holds it.
    pub fn try_lock(&mut self, domain: &str) -> std::io::Result<bool> {
        if self.holds(domain) {
            return Ok(true);
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(self.path(domain))?;
        let lock = whole_file(libc::F_WRLCK as libc::c_short);
        match fcntl(file.as_fd(), FcntlArg::F_SETLK(&lock)) {
            Ok(_) => {
                self.held.insert(domain.to_string(), file);
                Ok(true)
            }
            Err(nix::errno::Errno::EAGAIN) | Err(nix::errno::Errno::EACCES) => Ok(false),
            Err(e) => Err(std::io::Error::from(e)),
        }
    }

    /// Drops the lock on `domain`; `false` when this session did not hold it.
    pub fn unlock(&mut self, domain: &str) -> bool {
        // Closing the only descriptor releases the lock.
        self.held.remove(domain).is_some()
    }

    /// Who holds `domain`.
    pub fn holder(&self, domain: &str) -> std::io::Result<Holder> {
        if self.holds(domain) {
            return Ok(Holder::Us);
        }
        let file = match File::open(self.path(domain)) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Holder::Free),
            Err(e) => return Err(e),
        };
        let mut probe = whole_file(libc::F_WRLCK as libc::c_short);
        fcntl(file.as_fd(), FcntlArg::F_GETLK(&mut probe)).map_err(std::io::Error::from)?;
        if probe.l_type == libc::F_UNLCK as libc::c_short {
            return Ok(Holder::Free);
        }
        let pid = probe.l_pid;
        let name = std::fs::read_to_string(format!("/proc/{pid}/comm"))
            .ok()
            .map(|s| s.trim_end_matches('\n').to_string());
        Ok(Holder::Other { pid, name })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lock_is_ours_until_unlocked() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = Locks::new(dir.path()).unwrap();
        assert_eq!(a.holder("d1").unwrap(), Holder::Free);
        assert!(a.try_lock("d1").unwrap());
        assert_eq!(a.holder("d1").unwrap(), Holder::Us);
        assert!(a.unlock("d1"));
        assert!(!a.unlock("d1"));
        assert_eq!(a.holder("d1").unwrap(), Holder::Free);
        assert_eq!(
            Holder::Other { pid: 7, name: None }.describe(),
            "(pid 7 disappeared)"
        );
        assert_eq!(
            Holder::Other {
                pid: 7,
                name: Some(String::new())
            }
            .describe(),
            "(empty name)"
        );
    }
}
