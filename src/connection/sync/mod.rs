//! [`DirSync`]: mirror a local directory to a directory on any [`Connection`], like
//! `rsync -a --delete --exclude=…`, with nothing but the connection's own commands and
//! transfers (no `rsync` on either side).
//!
//! # What a sync does
//!
//! 1. Walks the local directory (symlinks are not followed; the directory itself may be
//!    a symlink to a directory). Excluded entries ([`ExcludePattern`]) are left out.
//! 2. Lists the remote directory with `find` (run through `sh`; POSIX `find` with
//!    `-mindepth` and `-print0`, as GNU findutils and BusyBox have; the remote also needs
//!    `xargs -0` and `rm`). A missing remote directory is created by the upload.
//! 3. Deletes (`rm -rf`, paths fed NUL-separated to `xargs -0`) every remote entry that is
//!    not excluded and whose local counterpart is missing or of another kind (a file where
//!    a directory is, …), and every remote symlink or special file (they are recreated from
//!    the local tree). A directory that holds excluded entries is never deleted as a whole:
//!    its other entries are.
//! 4. Uploads the local tree into the remote directory with [`Connection::upload`]. When
//!    something was excluded (or a special file skipped), the upload comes from a staging
//!    copy in the temporary directory (files hard-linked where possible, copied
//!    otherwise), so that excluded entries never leave the machine.
//!
//! Every file is transferred on every sync (there is no delta transfer); the usual case, a
//! content directory sent to a fresh machine, transfers everything anyway.
//!
//! # Symlinks, permissions, special files
//!
//! * Symlinks are copied as symlinks, with their target unchanged, whether it points
//!   inside the tree or not (like `rsync -l`); they are never followed on either side.
//! * File and directory modes are kept (the [`Connection`] contract); owners are not: the
//!   remote files belong to the connection's user. Modification times are not kept.
//! * Sockets, FIFOs and device files in the local tree are skipped with a warning.
//!
//! # Safety
//!
//! The remote directory must be an absolute path without `..` and must not be `/`.
//! Every path the remote listing returns is checked to be a plain relative path below it
//! (no `..`, no empty component) before anything is deleted; a listing that would reach
//! outside is refused with [`SyncError::Escape`] and nothing is deleted.
//!
//! ```
//! use atex::connection::{DirSync, LocalConnection};
//! use atex::scope::Scope;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let src = tempfile::tempdir()?;
//! std::fs::write(src.path().join("data.txt"), "hello")?;
//! std::fs::create_dir(src.path().join(".git"))?;
//! let dst = tempfile::tempdir()?;
//! std::fs::write(dst.path().join("stale.txt"), "old")?;
//! let remote = dst.path().to_str().ok_or("not UTF-8")?;
//! let sync = DirSync::new(src.path(), remote)?.exclude(".git/")?;
//! let report = sync.run(&LocalConnection::new(), &Scope::root("doc")).await?;
//! assert_eq!(report.deleted, 1);
//! assert!(dst.path().join("data.txt").exists());
//! assert!(!dst.path().join("stale.txt").exists());
//! assert!(!dst.path().join(".git").exists());
//! # Ok(()) }
//! ```

mod exclude;

pub use exclude::{ExcludePattern, PatternError};

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Component, Path, PathBuf};

use super::Connection;
use super::command::{CommandSpec, Input};
use super::error::{CommandFailed, ConnectionError};
use super::ext::ConnectionExt as _;
use crate::scope::Scope;

/// Lists a remote directory: `D`, `L`, `F` and `O` markers, each followed by the
/// directories, symlinks, regular files and other entries, all NUL-terminated.
const LIST_SCRIPT: &str = r#"d=$1
if [ ! -e "$d" ] && [ ! -L "$d" ]; then exit 0; fi
if [ ! -d "$d" ]; then echo "$d is not a directory" >&2; exit 3; fi
cd -- "$d" || exit 4
printf 'D\0' && find . -mindepth 1 -type d -print0 &&
printf 'L\0' && find . -mindepth 1 -type l -print0 &&
printf 'F\0' && find . -mindepth 1 -type f -print0 &&
printf 'O\0' && find . -mindepth 1 ! -type d ! -type l ! -type f -print0
"#;

/// Deletes the NUL-separated relative paths on stdin below `$1`.
const DELETE_SCRIPT: &str = r#"cd -- "$1" && xargs -0 rm -rf --"#;

/// Kinds of directory entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Dir,
    Link,
    File,
    Other,
}

/// Mirrors a local directory to a remote one; see the [module docs](self).
#[derive(Debug, Clone)]
pub struct DirSync {
    local: PathBuf,
    remote: String,
    excludes: Vec<ExcludePattern>,
}

/// What a sync did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SyncReport {
    /// Files and symlinks uploaded.
    pub uploaded: usize,
    /// Remote entries deleted (a deleted directory counts once).
    pub deleted: usize,
    /// Local entries left out by the excludes (an excluded directory counts once).
    pub excluded: usize,
}

/// Why a sync failed. `Display` says what failed; the cause is the source.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SyncError {
    /// The remote directory is not an absolute path below `/` without `..`.
    #[error("cannot sync to '{remote}': {reason}")]
    BadRemote {
        /// The remote directory as given.
        remote: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A bad exclude pattern.
    #[error(transparent)]
    Pattern(#[from] PatternError),
    /// Reading the local tree (or staging it) failed.
    #[error("cannot read {} to sync it", path.display())]
    Local {
        /// The local path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Listing the remote directory failed.
    #[error("cannot list {remote} to sync it")]
    List {
        /// The remote directory.
        remote: String,
        /// The failed command.
        #[source]
        source: Box<CommandFailed>,
    },
    /// The remote listing named a path outside the remote directory (or an unusable one).
    #[error("the listing of {remote} names '{path}', which is not a plain path below it")]
    Escape {
        /// The remote directory.
        remote: String,
        /// The offending path, lossily decoded.
        path: String,
    },
    /// Deleting stale remote entries failed.
    #[error("cannot delete stale entries below {remote}")]
    Delete {
        /// The remote directory.
        remote: String,
        /// The failed command.
        #[source]
        source: Box<CommandFailed>,
    },
    /// The upload failed.
    #[error("cannot upload {} to {remote}", local.display())]
    Upload {
        /// The local directory.
        local: PathBuf,
        /// The remote directory.
        remote: String,
        /// The cause.
        #[source]
        source: ConnectionError,
    },
    /// The scope was cancelled.
    #[error("the sync was cancelled")]
    Cancelled,
}

impl DirSync {
    /// A mirror of the local directory `local` to `remote` (an absolute path on the
    /// system, not `/`, without `..`; trailing slashes and `.` components are dropped).
    pub fn new(local: impl Into<PathBuf>, remote: &str) -> Result<Self, SyncError> {
        Ok(Self {
            local: local.into(),
            remote: normalize_remote(remote)?,
            excludes: Vec::new(),
        })
    }

    /// Adds an exclude pattern ([`ExcludePattern`]): matching entries are neither copied
    /// nor deleted.
    pub fn exclude(mut self, pattern: &str) -> Result<Self, SyncError> {
        self.excludes.push(ExcludePattern::new(pattern)?);
        Ok(self)
    }

    /// The local directory.
    pub fn local(&self) -> &Path {
        &self.local
    }

    /// The remote directory (normalized).
    pub fn remote(&self) -> &str {
        &self.remote
    }

    /// Mirrors the local directory to the remote one over `conn`. Cancelling `scope` stops
    /// the sync between steps and terminates its commands ([`SyncError::Cancelled`]); the
    /// remote directory may then hold part of the new tree.
    pub async fn run(&self, conn: &dyn Connection, scope: &Scope) -> Result<SyncReport, SyncError> {
        let local = self.local.clone();
        let excludes = self.excludes.clone();
        let walked = scope
            .spawn_blocking("sync-walk", move || walk(&local, &excludes))
            .await
            .map_err(|e| SyncError::Local {
                path: self.local.clone(),
                source: std::io::Error::other(e),
            })??;
        let remote_entries = self.list(conn, scope).await?;
        let deletions = plan_deletions(&walked.entries, &remote_entries, &self.excludes);
        if !deletions.is_empty() {
            self.delete(conn, scope, &deletions).await?;
        }
        let staged = if walked.excluded > 0 || walked.skipped > 0 {
            let local = self.local.clone();
            let entries = walked.entries.clone();
            let dir = scope
                .spawn_blocking("sync-stage", move || stage(&local, &entries))
                .await
                .map_err(|e| SyncError::Local {
                    path: self.local.clone(),
                    source: std::io::Error::other(e),
                })??;
            Some(dir)
        } else {
            None
        };
        let source = staged.as_ref().map_or(self.local.as_path(), |d| d.path());
        let uploaded = scope.run(conn.upload(source, &self.remote)).await;
        if let Some(dir) = staged {
            // Removing the staging copy is blocking work; it runs also after a failure.
            let _ = scope
                .spawn_blocking("sync-unstage", move || drop(dir))
                .await;
        }
        match uploaded {
            None => return Err(SyncError::Cancelled),
            Some(Err(source)) => {
                return Err(SyncError::Upload {
                    local: self.local.clone(),
                    remote: self.remote.clone(),
                    source,
                });
            }
            Some(Ok(())) => {}
        }
        let report = SyncReport {
            uploaded: walked
                .entries
                .iter()
                .filter(|(_, k)| *k != Kind::Dir)
                .count(),
            deleted: deletions.len(),
            excluded: walked.excluded,
        };
        tracing::debug!(
            local = %self.local.display(),
            remote = %self.remote,
            target = %conn.describe(),
            ?report,
            "directory synced"
        );
        Ok(report)
    }

    async fn list(
        &self,
        conn: &dyn Connection,
        scope: &Scope,
    ) -> Result<HashMap<PathBuf, Kind>, SyncError> {
        let cmd = CommandSpec::new(["sh", "-c", LIST_SCRIPT, "sh", self.remote.as_str()]);
        let out = conn.check(cmd, scope).await.map_err(|source| {
            if scope.is_cancelled() {
                SyncError::Cancelled
            } else {
                SyncError::List {
                    remote: self.remote.clone(),
                    source: Box::new(source),
                }
            }
        })?;
        let mut kind = None;
        let mut entries = HashMap::new();
        for item in out.stdout.split(|b| *b == 0) {
            match item {
                b"" => continue,
                b"D" => kind = Some(Kind::Dir),
                b"L" => kind = Some(Kind::Link),
                b"F" => kind = Some(Kind::File),
                b"O" => kind = Some(Kind::Other),
                path => {
                    let rel = path
                        .strip_prefix(b"./")
                        .map(|p| PathBuf::from(OsStr::from_bytes(p)))
                        .filter(|p| is_plain_relative(p));
                    match (kind, rel) {
                        (Some(k), Some(rel)) => {
                            entries.insert(rel, k);
                        }
                        _ => {
                            return Err(SyncError::Escape {
                                remote: self.remote.clone(),
                                path: String::from_utf8_lossy(path).into_owned(),
                            });
                        }
                    }
                }
            }
        }
        Ok(entries)
    }

    async fn delete(
        &self,
        conn: &dyn Connection,
        scope: &Scope,
        paths: &[PathBuf],
    ) -> Result<(), SyncError> {
        let mut stdin = Vec::new();
        for p in paths {
            stdin.extend_from_slice(b"./");
            stdin.extend_from_slice(p.as_os_str().as_bytes());
            stdin.push(0);
        }
        let cmd = CommandSpec::new(["sh", "-c", DELETE_SCRIPT, "sh", self.remote.as_str()])
            .stdin(Input::Bytes(stdin));
        conn.check(cmd, scope).await.map_err(|source| {
            if scope.is_cancelled() {
                SyncError::Cancelled
            } else {
                SyncError::Delete {
                    remote: self.remote.clone(),
                    source: Box::new(source),
                }
            }
        })?;
        Ok(())
    }
}

/// Checks and normalizes a remote directory.
fn normalize_remote(remote: &str) -> Result<String, SyncError> {
    let bad = |reason| SyncError::BadRemote {
        remote: remote.to_string(),
        reason,
    };
    if !remote.starts_with('/') {
        return Err(bad("not an absolute path"));
    }
    if remote.contains('\0') {
        return Err(bad("it holds a NUL byte"));
    }
    let mut out = String::new();
    for part in remote.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err(bad("it holds '..'")),
            p => {
                out.push('/');
                out.push_str(p);
            }
        }
    }
    if out.is_empty() {
        return Err(bad("a mirror onto / would delete the whole system"));
    }
    Ok(out)
}

/// Whether `p` is a non-empty relative path of plain names only.
fn is_plain_relative(p: &Path) -> bool {
    let bytes = p.as_os_str().as_bytes();
    !bytes.is_empty()
        && !bytes.ends_with(b"/")
        && !bytes.windows(2).any(|w| w == b"//")
        && p.components().all(|c| matches!(c, Component::Normal(_)))
        && !bytes.split(|b| *b == b'/').any(|c| c == b"." || c == b"..")
}

/// The local tree after the excludes.
struct Walked {
    /// Included entries, parents before children.
    entries: Vec<(PathBuf, Kind)>,
    /// Excluded entries (an excluded directory counts once).
    excluded: usize,
    /// Special files skipped.
    skipped: usize,
}

fn walk(root: &Path, excludes: &[ExcludePattern]) -> Result<Walked, SyncError> {
    let err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| SyncError::Local { path, source }
    };
    let meta = std::fs::metadata(root).map_err(err(root))?;
    if !meta.is_dir() {
        return Err(SyncError::Local {
            path: root.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::NotADirectory, "not a directory"),
        });
    }
    let mut out = Walked {
        entries: Vec::new(),
        excluded: 0,
        skipped: 0,
    };
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let dir = root.join(&rel);
        let mut names = Vec::new();
        for entry in std::fs::read_dir(&dir).map_err(err(&dir))? {
            names.push(entry.map_err(err(&dir))?.file_name());
        }
        names.sort();
        let mut subdirs = Vec::new();
        for name in names {
            let rel = rel.join(&name);
            let path = root.join(&rel);
            let ft = std::fs::symlink_metadata(&path)
                .map_err(err(&path))?
                .file_type();
            let kind = if ft.is_dir() {
                Kind::Dir
            } else if ft.is_symlink() {
                Kind::Link
            } else if ft.is_file() {
                Kind::File
            } else {
                Kind::Other
            };
            if excludes.iter().any(|p| p.matches(&rel, kind == Kind::Dir)) {
                out.excluded += 1;
                continue;
            }
            match kind {
                Kind::Other => {
                    tracing::warn!(path = %path.display(), "sync skips a special file");
                    out.skipped += 1;
                }
                Kind::Dir => {
                    out.entries.push((rel.clone(), kind));
                    subdirs.push(rel);
                }
                Kind::File | Kind::Link => out.entries.push((rel, kind)),
            }
        }
        // Depth first, in name order.
        stack.extend(subdirs.into_iter().rev());
    }
    Ok(out)
}

/// The remote entries to delete, without those below a deleted directory.
fn plan_deletions(
    local: &[(PathBuf, Kind)],
    remote: &HashMap<PathBuf, Kind>,
    excludes: &[ExcludePattern],
) -> Vec<PathBuf> {
    let local: HashMap<&Path, Kind> = local.iter().map(|(p, k)| (p.as_path(), *k)).collect();
    // Directories holding excluded entries are kept (their other entries are deleted).
    let mut protected: HashSet<&Path> = HashSet::new();
    let mut candidates = Vec::new();
    for (rel, kind) in remote {
        if exclude::excluded(excludes, rel, *kind == Kind::Dir) {
            protected.extend(rel.ancestors().skip(1));
            continue;
        }
        let stale = match (kind, local.get(rel.as_path())) {
            (_, None) | (Kind::Link | Kind::Other, _) => true,
            (Kind::Dir, Some(l)) => *l != Kind::Dir,
            (Kind::File, Some(l)) => *l != Kind::File,
        };
        if stale {
            candidates.push(rel.as_path());
        }
    }
    let deleted: HashSet<&Path> = candidates
        .iter()
        .copied()
        .filter(|p| !protected.contains(p))
        .collect();
    let mut out: Vec<PathBuf> = deleted
        .iter()
        .filter(|p| !p.ancestors().skip(1).any(|a| deleted.contains(a)))
        .map(|p| p.to_path_buf())
        .collect();
    out.sort();
    out
}

/// Copies the included entries into a fresh temporary directory (files hard-linked where
/// possible), with the modes of the original directories.
fn stage(root: &Path, entries: &[(PathBuf, Kind)]) -> Result<tempfile::TempDir, SyncError> {
    use std::os::unix::fs::PermissionsExt as _;
    let staging_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| SyncError::Local { path, source }
    };
    let dir = tempfile::Builder::new()
        .prefix("atex-sync-")
        .tempdir()
        .map_err(staging_err(&std::env::temp_dir()))?;
    let mut dirs = vec![(root.to_path_buf(), dir.path().to_path_buf())];
    for (rel, kind) in entries {
        let from = root.join(rel);
        let to = dir.path().join(rel);
        match kind {
            Kind::Dir => {
                std::fs::create_dir(&to).map_err(staging_err(&to))?;
                dirs.push((from, to));
            }
            Kind::Link => {
                let target = std::fs::read_link(&from).map_err(staging_err(&from))?;
                std::os::unix::fs::symlink(target, &to).map_err(staging_err(&to))?;
            }
            Kind::File => {
                if std::fs::hard_link(&from, &to).is_err() {
                    std::fs::copy(&from, &to).map_err(staging_err(&from))?;
                }
            }
            Kind::Other => {}
        }
    }
    // Modes last, deepest first, so that read-only directories could be filled.
    for (from, to) in dirs.iter().rev() {
        let mode = std::fs::metadata(from)
            .map_err(staging_err(from))?
            .permissions()
            .mode();
        std::fs::set_permissions(to, std::fs::Permissions::from_mode(mode))
            .map_err(staging_err(to))?;
    }
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_directories_are_checked() {
        assert_eq!(normalize_remote("/srv//x/./y/").unwrap(), "/srv/x/y");
        for bad in ["relative", "/", "//", "/a/../b", "/a\0b"] {
            assert!(
                matches!(normalize_remote(bad), Err(SyncError::BadRemote { .. })),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn listed_paths_must_stay_below() {
        assert!(is_plain_relative(Path::new("a/b")));
        for bad in ["", "/a", "a/../b", "..", "a//b", "a/", "./a"] {
            assert!(!is_plain_relative(Path::new(bad)), "{bad:?}");
        }
    }

    #[test]
    fn deletions_skip_excluded_and_children_of_deleted_dirs() {
        let local = vec![
            (PathBuf::from("keep"), Kind::File),
            (PathBuf::from("dir"), Kind::Dir),
        ];
        let remote: HashMap<PathBuf, Kind> = [
            ("keep", Kind::File),
            ("dir", Kind::File),
            ("gone", Kind::Dir),
            ("gone/a", Kind::File),
            ("holds", Kind::Dir),
            ("holds/.git", Kind::Dir),
            ("holds/.git/HEAD", Kind::File),
            ("holds/old", Kind::File),
            ("link", Kind::Link),
        ]
        .into_iter()
        .map(|(p, k)| (PathBuf::from(p), k))
        .collect();
        let excludes = vec![ExcludePattern::new(".git/").unwrap()];
        let got = plan_deletions(&local, &remote, &excludes);
        let want: Vec<PathBuf> = ["dir", "gone", "holds/old", "link"]
            .into_iter()
            .map(PathBuf::from)
            .collect();
        assert_eq!(got, want);
    }
}
