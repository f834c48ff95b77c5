//! Beakerlib library resolution: `library(nick/name)` and `type: library` entries of
//! `require`, fetched (or found in the tree), copied or linked under `libs/`, their own
//! requirements added transitively.
//!
//! A library's `path` is metadata of the tree, so it must not make discovery read files
//! outside the tree: a local `path` must resolve (after symlinks) inside the tree or inside
//! a directory the user allowed ([`DiscoverOptions::library_paths`](super::DiscoverOptions::library_paths)),
//! and with `url`, inside the library's repository; anything else is
//! [`FmfError::LibraryPath`].

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde_json::{Map as JsonMap, Value as Json};

use super::files::{copy_tree, node_dir};
use super::git;
use super::json::listlike;
use crate::fmf::Tree;
use crate::fmf::context::Context;
use crate::fmf::error::FmfError;

/// A library's transitive `require` and `recommend` entries.
type LibDeps = (Vec<Json>, Vec<Json>);

/// Beakerlib library resolution for one section.
pub(super) struct LibraryResolver<'a> {
    section_root: PathBuf,
    cache_dir: PathBuf,
    tree: &'a Tree,
    cache: HashMap<String, Option<LibDeps>>,
    context: &'a Context,
    /// Canonical directories outside the tree that local libraries may come from.
    trusted: &'a [PathBuf],
    /// The tree's root, canonical (computed when first needed).
    tree_root: Option<PathBuf>,
    /// Library requirements that could not be fetched (kept as RPM provides).
    pub(super) missing: Vec<String>,
}

fn lib_err(m: impl Into<String>) -> FmfError {
    FmfError::Plan { message: m.into() }
}

/// The canonical forms of the directories the user allows libraries to come from
/// ([`DiscoverOptions::library_paths`](super::DiscoverOptions::library_paths)); each must
/// exist.
pub(super) fn trusted_library_dirs(dirs: &[PathBuf]) -> Result<Vec<PathBuf>, FmfError> {
    dirs.iter()
        .map(|d| {
            let canonical = d.canonicalize().map_err(|e| FmfError::Usage {
                message: format!("library path '{}': {e}", d.display()),
            })?;
            if canonical.is_dir() {
                Ok(canonical)
            } else {
                Err(FmfError::Usage {
                    message: format!("library path '{}' is not a directory", d.display()),
                })
            }
        })
        .collect()
}

/// One library requirement with a `url` or a `path`.
struct Lib<'p> {
    /// The test (or library) whose `require` names the library.
    test: &'p str,
    /// Its nick (the directory under `libs/`).
    nick: &'p str,
    /// The library node's name (`/name`).
    name: &'p str,
    /// `path` as written: in the repository with a `url`, else a directory.
    path: Option<&'p str>,
}

impl Lib<'_> {
    /// [`FmfError::LibraryPath`] for this library's `path`.
    fn error(&self, message: String) -> FmfError {
        FmfError::LibraryPath {
            test: self.test.to_string(),
            library: format!("{}{}", self.nick, self.name),
            path: self.path.unwrap_or_default().to_string(),
            message,
        }
    }

    /// `dir` after symlinks, if it is inside one of `allowed` (canonical directories);
    /// `what` describes them for the error.
    fn resolve(&self, dir: &Path, allowed: &[&Path], what: &str) -> Result<PathBuf, FmfError> {
        let resolved = dir
            .canonicalize()
            .map_err(|e| self.error(format!("cannot be resolved: {}: {e}", dir.display())))?;
        self.inside(&resolved, allowed, what)?;
        Ok(resolved)
    }

    /// Refuses `resolved` (canonical) unless it is inside one of `allowed`.
    fn inside(&self, resolved: &Path, allowed: &[&Path], what: &str) -> Result<(), FmfError> {
        if allowed.iter().any(|root| resolved.starts_with(root)) {
            return Ok(());
        }
        Err(self.error(format!(
            "resolves to '{}', outside {what}",
            resolved.display()
        )))
    }
}

impl<'a> LibraryResolver<'a> {
    /// A resolver for one section copied to `section_root`, its libraries found in `tree`
    /// or fetched into `cache_dir`, and adjusted for `context`.
    pub(super) fn new(
        section_root: PathBuf,
        cache_dir: PathBuf,
        tree: &'a Tree,
        context: &'a Context,
        trusted: &'a [PathBuf],
    ) -> Self {
        Self {
            section_root,
            cache_dir,
            tree,
            cache: HashMap::new(),
            context,
            trusted,
            tree_root: None,
            missing: Vec::new(),
        }
    }

    /// The tree's root after symlinks.
    fn tree_root(&mut self) -> Result<PathBuf, FmfError> {
        if let Some(root) = &self.tree_root {
            return Ok(root.clone());
        }
        let root = self.tree.root().canonicalize().map_err(|e| FmfError::Io {
            path: self.tree.root().to_path_buf(),
            source: e,
        })?;
        Ok(self.tree_root.insert(root).clone())
    }

    /// Resolves the libraries among the test's `require` entries in `data`.
    pub(super) fn resolve(
        &mut self,
        test: &str,
        data: &mut JsonMap<String, Json>,
    ) -> Result<(), FmfError> {
        let mut recommend = Vec::new();
        for r in listlike(data.get("recommend")) {
            match r {
                Json::String(_) => recommend.push(r.clone()),
                _ => {
                    return Err(lib_err(format!(
                        "{test}: libraries are not supported in 'recommend'"
                    )));
                }
            }
        }
        let mut require = Vec::new();
        let reqs: Vec<Json> = listlike(data.get("require")).into_iter().cloned().collect();
        let original_recommends = recommend.len();
        for r in &reqs {
            let (keep, extra_req, extra_rec) = self.one(test, r, 0)?;
            require.push(keep);
            require.extend(extra_req);
            recommend.extend(extra_rec);
        }
        // Rewrite (as lists) only when libraries changed something, so plain
        // metadata such as a scalar `require: pkg` stays as written.
        if require != reqs {
            data.insert("require".into(), Json::Array(require));
        }
        if recommend.len() != original_recommends {
            data.insert("recommend".into(), Json::Array(recommend));
        }
        Ok(())
    }

    /// Returns the entry to keep plus the library's own transitive entries.
    fn one(
        &mut self,
        test: &str,
        r: &Json,
        depth: usize,
    ) -> Result<(Json, Vec<Json>, Vec<Json>), FmfError> {
        if depth > 32 {
            return Err(lib_err(format!("{test}: library nesting too deep")));
        }
        match r {
            Json::String(s) => {
                let Some(inner) = s.strip_prefix("library(").and_then(|x| x.strip_suffix(')'))
                else {
                    return Ok((r.clone(), Vec::new(), Vec::new()));
                };
                let Some((nick, name)) = inner.split_once('/') else {
                    return Ok((r.clone(), Vec::new(), Vec::new()));
                };
                let url = format!("https://github.com/beakerlib/{nick}");
                let name = format!("/{name}");
                let lib = Lib {
                    test,
                    nick,
                    name: &name,
                    path: None,
                };
                match self.remote(&lib, &url, None, depth) {
                    Ok((req, rec)) => {
                        let mut m = JsonMap::new();
                        m.insert("type".into(), Json::from("library"));
                        m.insert("url".into(), Json::from(url));
                        m.insert("name".into(), Json::from(name));
                        Ok((Json::Object(m), req, rec))
                    }
                    Err(e) => {
                        tracing::warn!("library {s} not found, keeping it as a package: {e}");
                        self.missing.push(s.clone());
                        Ok((r.clone(), Vec::new(), Vec::new()))
                    }
                }
            }
            Json::Object(m) => {
                if let Some(t) = m.get("type")
                    && t.as_str() != Some("library")
                {
                    return Ok((r.clone(), Vec::new(), Vec::new()));
                }
                let url = m.get("url").and_then(Json::as_str);
                let path = m.get("path").and_then(Json::as_str);
                let name = m
                    .get("name")
                    .and_then(Json::as_str)
                    .unwrap_or("/")
                    .to_string();
                if url.is_none() && path.is_none() {
                    let nick = m.get("nick").and_then(Json::as_str).ok_or_else(|| {
                        lib_err(format!("{test}: in-tree library {r} needs a 'nick'"))
                    })?;
                    let (req, rec) = self.in_tree(test, nick, &name, depth)?;
                    return Ok((r.clone(), req, rec));
                }
                let nick = match m.get("nick").and_then(Json::as_str) {
                    Some(n) => n.to_string(),
                    None => match url {
                        Some(u) => u
                            .trim_end_matches('/')
                            .trim_end_matches(".git")
                            .rsplit('/')
                            .next()
                            .unwrap_or("")
                            .to_string(),
                        None => Path::new(path.unwrap_or(""))
                            .file_name()
                            .map(|f| f.to_string_lossy().to_string())
                            .unwrap_or_default(),
                    },
                };
                let lib = Lib {
                    test,
                    nick: &nick,
                    name: &name,
                    path: match url {
                        Some(_) => path.map(|p| p.trim_start_matches('/')),
                        None => Some(path.unwrap_or("")),
                    },
                };
                let (req, rec) = match url {
                    Some(u) => {
                        let reference = m.get("ref").and_then(Json::as_str);
                        self.remote(&lib, u, reference, depth)?
                    }
                    None => self.local(&lib, depth)?,
                };
                Ok((r.clone(), req, rec))
            }
            other => Err(lib_err(format!("{test}: invalid require '{other}'"))),
        }
    }

    /// Library `lib` of the repository at `url` (`ref` `reference`), its `path` inside the
    /// repository.
    fn remote(
        &mut self,
        lib: &Lib<'_>,
        url: &str,
        reference: Option<&str>,
        depth: usize,
    ) -> Result<(Vec<Json>, Vec<Json>), FmfError> {
        let key = format!("{}\0{}\0{}", lib.nick, lib.path.unwrap_or(""), lib.name);
        if let Some(c) = self.cache.get(&key) {
            return Ok(c.clone().unwrap_or_default());
        }
        self.cache.insert(key.clone(), None);
        let checkout = git::fetch(&self.cache_dir, url, reference)?;
        let mut target = self.section_root.join("libs").join(lib.nick);
        let mut t = match lib.path {
            Some(p) => {
                let top = canonical(&checkout)?;
                let what = format!("the repository {url}");
                let repo = lib.resolve(&checkout.join(p), &[&top], &what)?;
                let t = load_tree(&repo)?;
                // The tree found from a subdirectory may start above it: keep it inside.
                lib.inside(&canonical(t.root())?, &[&top], &what)?;
                // Copied under libs/<nick>/<path>, with the path as checked.
                target = target.join(repo.strip_prefix(&top).unwrap_or(Path::new("")));
                t
            }
            None => load_tree(&checkout)?,
        };
        let target = target.join(lib.name.trim_start_matches('/'));
        let result = self.use_library(&mut t, lib.name, &target, depth)?;
        self.cache.insert(key, Some(result.clone()));
        Ok(result)
    }

    /// Library `lib` from the directory its `path` names: inside the tree or inside a
    /// directory the user allowed.
    fn local(&mut self, lib: &Lib<'_>, depth: usize) -> Result<(Vec<Json>, Vec<Json>), FmfError> {
        let path = lib.path.unwrap_or("");
        let key = format!("{}\0{path}\0{}", lib.nick, lib.name);
        if let Some(c) = self.cache.get(&key) {
            return Ok(c.clone().unwrap_or_default());
        }
        self.cache.insert(key.clone(), None);
        let given = Path::new(path);
        let dir = if given.is_absolute() {
            given.to_path_buf()
        } else {
            self.tree.root().join(given)
        };
        let root = self.tree_root()?;
        let mut allowed: Vec<&Path> = vec![&root];
        allowed.extend(self.trusted.iter().map(PathBuf::as_path));
        let what = format!(
            "the tree '{}'{}; allow its directory with `--library-path DIR` \
             (DiscoverOptions::library_paths)",
            root.display(),
            if self.trusted.is_empty() {
                ""
            } else {
                " and the allowed library directories"
            }
        );
        let repo = lib.resolve(&dir, &allowed, &what)?;
        let mut t = load_tree(&repo)?;
        // The tree found from the directory may start above it: keep it allowed too.
        lib.inside(&canonical(t.root())?, &allowed, &what)?;
        let target = self
            .section_root
            .join("libs")
            .join(lib.nick)
            .join(lib.name.trim_start_matches('/'));
        let result = self.use_library(&mut t, lib.name, &target, depth)?;
        self.cache.insert(key, Some(result.clone()));
        Ok(result)
    }

    /// Copies library `name` of `t` (adjusted here) to `target`; returns its transitive
    /// requirements.
    fn use_library(
        &mut self,
        t: &mut Tree,
        name: &str,
        target: &Path,
        depth: usize,
    ) -> Result<(Vec<Json>, Vec<Json>), FmfError> {
        t.adjust(self.context)?;
        let node = t.find(name).ok_or_else(|| FmfError::Fetch {
            message: format!(
                "{}: library node '{name}' not found in repository",
                t.root().display()
            ),
        })?;
        let node_dir = node_dir(node, t.root());
        copy_tree(&t.root().join(&node_dir), target)?;
        let data = node.data.to_json_map();
        self.transitive(name, &data, depth)
    }

    fn in_tree(
        &mut self,
        test: &str,
        nick: &str,
        name: &str,
        depth: usize,
    ) -> Result<(Vec<Json>, Vec<Json>), FmfError> {
        let key = format!("{nick}\0\0{name}");
        if let Some(c) = self.cache.get(&key) {
            return Ok(c.clone().unwrap_or_default());
        }
        self.cache.insert(key.clone(), None);
        let tree = self.tree;
        let node = tree.find(name).ok_or_else(|| {
            lib_err(format!(
                "{test}: library node '{name}' not found in the tree"
            ))
        })?;
        let rel_name = name.trim_start_matches('/');
        let link = self.section_root.join("libs").join(nick).join(rel_name);
        if std::fs::symlink_metadata(&link).is_err() {
            if let Some(parent) = link.parent() {
                std::fs::create_dir_all(parent).map_err(|e| FmfError::Io {
                    path: parent.to_path_buf(),
                    source: e,
                })?;
            }
            // Relative target: up from libs/<nick>/<name parent> to the section root.
            let ups = 2 + Path::new(rel_name).components().count().saturating_sub(1);
            let mut rel = PathBuf::new();
            for _ in 0..ups {
                rel.push("..");
            }
            rel.push(node_dir(node, tree.root()));
            std::os::unix::fs::symlink(&rel, &link).map_err(|e| FmfError::Io {
                path: link.clone(),
                source: e,
            })?;
        }
        let data = node.data.to_json_map();
        let result = self.transitive(name, &data, depth)?;
        self.cache.insert(key, Some(result.clone()));
        Ok(result)
    }

    /// The library node's own require/recommend, resolved recursively.
    fn transitive(
        &mut self,
        name: &str,
        data: &JsonMap<String, Json>,
        depth: usize,
    ) -> Result<(Vec<Json>, Vec<Json>), FmfError> {
        let mut req = Vec::new();
        let mut rec = Vec::new();
        for r in listlike(data.get("recommend")) {
            if r.is_string() {
                rec.push(r.clone());
            }
        }
        let reqs: Vec<Json> = listlike(data.get("require")).into_iter().cloned().collect();
        for r in reqs {
            let (keep, more_req, more_rec) = self.one(name, &r, depth + 1)?;
            req.push(keep);
            req.extend(more_req);
            rec.extend(more_rec);
        }
        Ok((req, rec))
    }
}

/// The library tree holding directory `repo`.
fn load_tree(repo: &Path) -> Result<Tree, FmfError> {
    Tree::load(repo).map_err(|e| FmfError::Fetch {
        message: format!("{}: repository has no fmf metadata: {e}", repo.display()),
    })
}

/// `path` after symlinks.
fn canonical(path: &Path) -> Result<PathBuf, FmfError> {
    path.canonicalize().map_err(|e| FmfError::Io {
        path: path.to_path_buf(),
        source: e,
    })
}
