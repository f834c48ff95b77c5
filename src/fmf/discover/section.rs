//! Where one discover section's tree comes from: the plan's tree, a `path` inside it, a
//! private checkout of a local `ref`, or a cached clone of `url`; and, with
//! `modified-only`, the directories changed since the reference revision.

use std::path::{Path, PathBuf};

use super::git;
use super::options::DiscoverOptions;
use super::plan::{inside, key_err, key_err_from};
use crate::fmf::Tree;
use crate::fmf::error::FmfError;
use crate::fmf::value::{Map, Value};

/// Where one discover section's tests come from.
pub(super) struct SectionSource {
    /// The section's own tree (loaded and adjusted); `None` is the plan's tree.
    pub(super) tree: Option<Tree>,
    /// With `modified-only`: the directories (relative to the tree root) changed
    /// since the reference revision.
    pub(super) modified: Option<Vec<String>>,
    /// A private checkout of a local `ref`, kept until the section is copied.
    _scratch: Option<tempfile::TempDir>,
}

fn real_path(path: &Path) -> Result<PathBuf, FmfError> {
    path.canonicalize().map_err(|e| FmfError::Io {
        path: path.to_path_buf(),
        source: e,
    })
}

/// The tree of one discover section, following tmt: `url` (+ `ref`, `path` inside
/// the repository) is a cached git clone; without `url`, `path` is a tree inside the
/// plan's tree, `ref` is checked out in a private clone of the local repository, and
/// `modified-only` (`modified-ref`, `modified-url`) selects the directories changed
/// since the reference revision. Nothing outside the plan's tree (or the fetched
/// repository) is read.
pub(super) fn section_source(
    section: &Map,
    plan: &str,
    tree: &Tree,
    opts: &DiscoverOptions,
    cache: &Path,
) -> Result<SectionSource, FmfError> {
    let get = |k: &str| {
        section
            .get(k)
            .filter(|v| !matches!(v, Value::Null))
            .map(Value::python_str)
    };
    // `repository`/`revision` are tmt's legacy names of `url`/`ref`.
    let url = get("url").or_else(|| get("repository"));
    let reference = get("ref").or_else(|| get("revision"));
    let path = get("path");
    let modified_url = get("modified-url");
    let modified_only = match section.get("modified-only") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(other) => {
            return Err(key_err(
                plan,
                "discover modified-only",
                &other.python_str(),
                "must be true or false",
            ));
        }
    };
    let sub_path = |base: &Path, p: &str| {
        inside(base, &base.join(p.trim_start_matches('/')))
            .map_err(|e| e.into_key_err(plan, "discover path", p))
    };

    // (directory to load, git repository, private checkout, bound of the tree root)
    let (load_dir, repo, scratch, bound) = if let Some(url) = &url {
        let checkout = git::fetch(cache, url, reference.as_deref())?;
        let dir = match &path {
            Some(p) => sub_path(&checkout, p)?,
            None => checkout.clone(),
        };
        (dir, Some(checkout.clone()), None, checkout)
    } else {
        let root = tree.root();
        let fmf_root = match &path {
            Some(p) => sub_path(root, p)?,
            None => real_path(root)?,
        };
        if reference.is_none() && !modified_only {
            if path.is_none() {
                return Ok(SectionSource {
                    tree: None,
                    modified: None,
                    _scratch: None,
                });
            }
            (fmf_root, None, None, root.to_path_buf())
        } else {
            let (key, value) = match &reference {
                Some(r) => ("discover ref", r.clone()),
                None => ("discover modified-only", "true".to_string()),
            };
            let top = git::toplevel(&fmf_root)
                .map_err(|e| key_err_from(plan, key, &value, "needs a git repository", e))?;
            let top = real_path(&top)?;
            let rel = |p: &Path| -> Result<PathBuf, FmfError> {
                Ok(real_path(p)?
                    .strip_prefix(&top)
                    .map_err(|_| {
                        key_err(
                            plan,
                            key,
                            &value,
                            format!("{} is not in {}", p.display(), top.display()),
                        )
                    })?
                    .to_path_buf())
            };
            let (fmf_rel, root_rel) = (rel(&fmf_root)?, rel(root)?);
            match &reference {
                Some(r) => {
                    let scratch = tempfile::Builder::new()
                        .prefix("atex-fmf-ref-")
                        .tempdir()
                        .map_err(|e| FmfError::Io {
                            path: std::env::temp_dir(),
                            source: e,
                        })?;
                    let clone = scratch.path().join("repo");
                    git::clone_local(&top, &clone).map_err(|e| FmfError::Fetch {
                        message: format!("cannot clone {}", top.display()),
                        source: Some(Box::new(e)),
                    })?;
                    git::checkout(&clone, r).map_err(|e| {
                        key_err_from(plan, "discover ref", r, "cannot check it out", e)
                    })?;
                    (
                        clone.join(fmf_rel),
                        Some(clone.clone()),
                        Some(scratch),
                        clone.join(root_rel),
                    )
                }
                None => (fmf_root, Some(top), None, root.to_path_buf()),
            }
        }
    };

    let mut loaded = Tree::load(&load_dir).map_err(|e| match &url {
        Some(u) => FmfError::Fetch {
            message: format!("{u}: repository has no fmf metadata"),
            source: Some(Box::new(e)),
        },
        None => e,
    })?;
    // Finding the root climbs up from `load_dir`: it must not leave the tree.
    let found = real_path(loaded.root())?;
    let bound = real_path(&bound)?;
    if !found.starts_with(&bound) {
        return Err(key_err(
            plan,
            "discover path",
            path.as_deref().unwrap_or("/"),
            format!(
                "no fmf tree there: the nearest .fmf/ is at {}, outside {}",
                found.display(),
                bound.display()
            ),
        ));
    }
    loaded.adjust(&opts.context)?;

    let modified = match (&repo, modified_only) {
        (Some(repo), true) => {
            let base = match get("modified-ref") {
                Some(b) => b,
                None => git::default_branch(repo).ok_or_else(|| {
                    key_err(
                        plan,
                        "discover modified-only",
                        "true",
                        "no modified-ref given and the default branch of the 'origin' \
                         remote is unknown; set modified-ref",
                    )
                })?,
            };
            let sub = found
                .strip_prefix(real_path(repo)?)
                .map(Path::to_path_buf)
                .unwrap_or_default();
            let dirs =
                git::modified_dirs(repo, &sub, &base, modified_url.as_deref()).map_err(|e| {
                    key_err_from(
                        plan,
                        "discover modified-ref",
                        &base,
                        "cannot list the modified directories",
                        e,
                    )
                })?;
            tracing::debug!(plan, ?dirs, base, "modified-only");
            Some(dirs)
        }
        _ => None,
    };
    Ok(SectionSource {
        tree: Some(loaded),
        modified,
        _scratch: scratch,
    })
}
