//! The `git` operations of discovery: cached clones of remote trees and libraries,
//! checking out a `ref`, and the directories changed since a reference revision
//! (`modified-only`).
//!
//! Every value that comes from metadata (`url`, `ref`, `modified-url`,
//! `modified-ref`) reaches `git` where it cannot be read as an option: after `--`,
//! or after `--end-of-options`, or only once resolved to a commit id.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::fmf::error::FmfError;

/// A failed `git` operation: the source of the fetch and plan-key errors of discovery.
#[derive(Debug, thiserror::Error)]
pub(super) enum GitError {
    /// `git` could not be started.
    #[error("cannot run git")]
    Spawn(#[source] std::io::Error),
    /// `git` failed; its stderr says why.
    #[error("git {args} failed: {stderr}")]
    Failed {
        /// The arguments.
        args: String,
        /// What git wrote to stderr.
        stderr: String,
    },
    /// A revision is not in the repository.
    #[error("revision '{reference}' not found in {}", repo.display())]
    NoRevision {
        /// The revision asked for.
        reference: String,
        /// The repository.
        repo: PathBuf,
    },
    /// Local file work around git failed.
    #[error("{what} {}", path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// Runs `git ARGS` (in `cwd` when given); returns its standard output, or an error
/// naming the command with git's own error text.
fn git<S: AsRef<OsStr>>(args: &[S], cwd: Option<&Path>) -> Result<String, GitError> {
    let mut cmd = Command::new("git");
    cmd.args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        .stdin(Stdio::null());
    if let Some(d) = cwd {
        cmd.current_dir(d);
    }
    let shown = || {
        args.iter()
            .map(|a| a.as_ref().to_string_lossy())
            .collect::<Vec<_>>()
            .join(" ")
    };
    let out = cmd.output().map_err(GitError::Spawn)?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(GitError::Failed {
            args: shown(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

/// The git checkout cache directory (`$ATEX_FMF_CACHE`, else
/// `$XDG_CACHE_HOME/atex/fmf`, else `~/.cache/atex/fmf`, else a temp dir).
pub(super) fn default_cache_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("ATEX_FMF_CACHE") {
        return PathBuf::from(d);
    }
    if let Some(d) = std::env::var_os("XDG_CACHE_HOME") {
        return PathBuf::from(d).join("atex").join("fmf");
    }
    if let Some(h) = std::env::var_os("HOME") {
        return PathBuf::from(h).join(".cache").join("atex").join("fmf");
    }
    std::env::temp_dir().join("atex-fmf-cache")
}

fn cache_key(url: &str, reference: Option<&str>) -> String {
    // FNV-1a: stable across runs and platforms.
    let mut h: u64 = 0xcbf29ce484222325;
    for b in url
        .bytes()
        .chain([0u8])
        .chain(reference.unwrap_or("").bytes())
    {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100000001b3);
    }
    let base: String = url
        .trim_end_matches('/')
        .trim_end_matches(".git")
        .rsplit('/')
        .next()
        .unwrap_or("repo")
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect();
    format!("{base}-{h:016x}")
}

/// Resolves `reference` (a branch, tag or commit; a branch only the `origin` remote
/// has is found too) to a full commit id in `repo`.
pub(super) fn resolve_commit(repo: &Path, reference: &str) -> Result<String, GitError> {
    let candidates = [
        format!("{reference}^{{commit}}"),
        format!("refs/remotes/origin/{reference}^{{commit}}"),
    ];
    for candidate in &candidates {
        let found = git(
            &[
                "rev-parse",
                "--verify",
                "--quiet",
                "--end-of-options",
                candidate.as_str(),
            ],
            Some(repo),
        );
        if let Ok(out) = found {
            let id = out.trim();
            if !id.is_empty() && id.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Ok(id.to_string());
            }
        }
    }
    Err(GitError::NoRevision {
        reference: reference.to_string(),
        repo: repo.to_path_buf(),
    })
}

/// Checks out `reference` in `repo` (detached at the resolved commit).
pub(super) fn checkout(repo: &Path, reference: &str) -> Result<(), GitError> {
    let id = resolve_commit(repo, reference)?;
    git(
        &["checkout", "--quiet", "--force", "--detach", id.as_str()],
        Some(repo),
    )
    .map(drop)
}

/// Clone (or reuse a cached clone of) `url`, check out `reference`; returns the
/// checkout directory.
pub(super) fn fetch(cache: &Path, url: &str, reference: Option<&str>) -> Result<PathBuf, FmfError> {
    let fetch_err = |e: GitError| FmfError::Fetch {
        message: format!("cannot fetch {url}"),
        source: Some(Box::new(e)),
    };
    let dir = cache.join(cache_key(url, reference));
    if !dir.join(".git").is_dir() {
        if let Some(parent) = dir.parent() {
            std::fs::create_dir_all(parent).map_err(|source| {
                fetch_err(GitError::Io {
                    what: "creating the cache directory",
                    path: parent.to_path_buf(),
                    source,
                })
            })?;
        }
        let tmp = dir.with_extension(format!("partial-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        let cleanup = |e: GitError| {
            let _ = std::fs::remove_dir_all(&tmp);
            fetch_err(e)
        };
        git(
            &[
                OsStr::new("clone"),
                OsStr::new("--quiet"),
                OsStr::new("--"),
                OsStr::new(url),
                tmp.as_os_str(),
            ],
            None,
        )
        .map_err(cleanup)?;
        if let Some(r) = reference {
            checkout(&tmp, r).map_err(cleanup)?;
        }
        if std::fs::rename(&tmp, &dir).is_err() {
            // Someone else populated the cache meanwhile.
            let _ = std::fs::remove_dir_all(&tmp);
        }
        tracing::debug!(url, dir = %dir.display(), "fetched fmf repository");
    } else {
        tracing::debug!(url, dir = %dir.display(), "using cached fmf repository");
    }
    Ok(dir)
}

/// The top directory of the git work tree holding `dir`.
pub(super) fn toplevel(dir: &Path) -> Result<PathBuf, GitError> {
    let out = git(&["rev-parse", "--show-toplevel"], Some(dir))?;
    Ok(PathBuf::from(out.trim_end_matches('\n')))
}

/// A private clone of the local repository `repo` in `dest` (no checkout yet); the
/// user's repository is only read.
pub(super) fn clone_local(repo: &Path, dest: &Path) -> Result<(), GitError> {
    git(
        &[
            OsStr::new("clone"),
            OsStr::new("--quiet"),
            OsStr::new("--no-checkout"),
            OsStr::new("--"),
            repo.as_os_str(),
            dest.as_os_str(),
        ],
        None,
    )
    .map(drop)
}

/// The default branch of `repo`'s `origin` remote (`main` for
/// `refs/remotes/origin/HEAD -> refs/remotes/origin/main`), if known.
pub(super) fn default_branch(repo: &Path) -> Option<String> {
    let out = git(
        &["symbolic-ref", "--quiet", "refs/remotes/origin/HEAD"],
        Some(repo),
    )
    .ok()?;
    out.trim()
        .strip_prefix("refs/remotes/origin/")
        .filter(|b| !b.is_empty())
        .map(str::to_string)
}

/// Directories (relative to `subdir` of the repository, which is where the fmf tree
/// root lies; `""` for the top) holding files changed by the commits of `HEAD` that
/// `base` does not have (tmt: `git log BASE..HEAD`). Files directly in `subdir` are
/// left out, like tmt does.
///
/// With `reference_url`, that repository is fetched first as the remote `reference`
/// (so `base` may be `reference/main`) into a private repository that borrows
/// `repo`'s objects: `repo` itself is only read.
pub(super) fn modified_dirs(
    repo: &Path,
    subdir: &Path,
    base: &str,
    reference_url: Option<&str>,
) -> Result<Vec<String>, GitError> {
    let scratch;
    let (git_dir, head): (PathBuf, String) = match reference_url {
        None => (repo.to_path_buf(), "HEAD".to_string()),
        Some(url) => {
            let head = resolve_commit(repo, "HEAD")?;
            let objects = PathBuf::from(
                git(
                    &[
                        "rev-parse",
                        "--path-format=absolute",
                        "--git-path",
                        "objects",
                    ],
                    Some(repo),
                )?
                .trim(),
            );
            scratch = tempfile::Builder::new()
                .prefix("atex-fmf-modified-")
                .tempdir()
                .map_err(|source| GitError::Io {
                    what: "creating a temporary directory in",
                    path: std::env::temp_dir(),
                    source,
                })?;
            let dir = scratch.path().to_path_buf();
            git(
                &[
                    OsStr::new("init"),
                    OsStr::new("--quiet"),
                    OsStr::new("--bare"),
                    OsStr::new("--"),
                    dir.as_os_str(),
                ],
                None,
            )?;
            let alternates = dir.join("objects/info/alternates");
            std::fs::write(&alternates, format!("{}\n", objects.display())).map_err(|source| {
                GitError::Io {
                    what: "writing",
                    path: alternates.clone(),
                    source,
                }
            })?;
            let mut git_dir_arg = std::ffi::OsString::from("--git-dir=");
            git_dir_arg.push(&dir);
            git(
                &[
                    git_dir_arg.as_os_str(),
                    OsStr::new("fetch"),
                    OsStr::new("--quiet"),
                    OsStr::new("--no-tags"),
                    OsStr::new("--"),
                    OsStr::new(url),
                    OsStr::new("+refs/heads/*:refs/remotes/reference/*"),
                    OsStr::new("+refs/tags/*:refs/tags/*"),
                ],
                None,
            )?;
            (dir, head)
        }
    };
    let base = resolve_commit(&git_dir, base)?;
    let mut args = vec![
        "log".to_string(),
        "--format=".into(),
        "--name-only".into(),
        "--no-renames".into(),
    ];
    let sub = subdir.to_string_lossy();
    if !sub.is_empty() {
        args.push(format!("--relative={sub}"));
    }
    args.push(format!("{base}..{head}"));
    args.push("--".into());
    let out = git(&args, Some(&git_dir))?;
    let mut dirs: Vec<String> = Vec::new();
    for line in out.lines().filter(|l| !l.is_empty()) {
        let dir = match Path::new(line).parent() {
            Some(p) => p.to_string_lossy().into_owned(),
            None => continue,
        };
        if !dir.is_empty() && !dirs.contains(&dir) {
            dirs.push(dir);
        }
    }
    Ok(dirs)
}
