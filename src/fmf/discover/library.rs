//! Beakerlib library resolution: `library(nick/name)` and `type: library` entries of
//! `require`, fetched (or found in the tree), copied or linked under `libs/`, their own
//! requirements added transitively.

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
    /// Library requirements that could not be fetched (kept as RPM provides).
    pub(super) missing: Vec<String>,
}

fn lib_err(m: impl Into<String>) -> FmfError {
    FmfError::Plan { message: m.into() }
}

impl<'a> LibraryResolver<'a> {
    /// A resolver for one section copied to `section_root`, its libraries found in `tree`
    /// or fetched into `cache_dir`, and adjusted for `context`.
    pub(super) fn new(
        section_root: PathBuf,
        cache_dir: PathBuf,
        tree: &'a Tree,
        context: &'a Context,
    ) -> Self {
        Self {
            section_root,
            cache_dir,
            tree,
            cache: HashMap::new(),
            context,
            missing: Vec::new(),
        }
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
                match self.remote(&url, None, nick, &name, depth) {
                    Ok((req, rec)) => {
                        let mut m = JsonMap::new();
                        m.insert("type".into(), Json::from("library"));
                        m.insert("url".into(), Json::from(url));
                        m.insert("name".into(), Json::from(name));
                        Ok((Json::Object(m), req, rec))
                    }
                    Err(e) => {
                        tracing::warn!(
                            "library {s} not found, keeping it as a package: {}",
                            crate::error::chain(&e)
                        );
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
                let (req, rec) = match url {
                    Some(u) => {
                        let reference = m.get("ref").and_then(Json::as_str);
                        let sub = path.map(|p| p.trim_start_matches('/').to_string());
                        self.remote_full(u, reference, sub.as_deref(), &nick, &name, depth)?
                    }
                    None => self.local(Path::new(path.unwrap_or("")), &nick, &name, depth)?,
                };
                Ok((r.clone(), req, rec))
            }
            other => Err(lib_err(format!("{test}: invalid require '{other}'"))),
        }
    }

    fn remote(
        &mut self,
        url: &str,
        reference: Option<&str>,
        nick: &str,
        name: &str,
        depth: usize,
    ) -> Result<(Vec<Json>, Vec<Json>), FmfError> {
        self.remote_full(url, reference, None, nick, name, depth)
    }

    fn remote_full(
        &mut self,
        url: &str,
        reference: Option<&str>,
        path: Option<&str>,
        nick: &str,
        name: &str,
        depth: usize,
    ) -> Result<(Vec<Json>, Vec<Json>), FmfError> {
        let key = format!("{nick}\0{}\0{name}", path.unwrap_or(""));
        if let Some(c) = self.cache.get(&key) {
            return Ok(c.clone().unwrap_or_default());
        }
        self.cache.insert(key.clone(), None);
        let checkout = git::fetch(&self.cache_dir, url, reference)?;
        let repo = match path {
            Some(p) => checkout.join(p),
            None => checkout,
        };
        let mut target = self.section_root.join("libs").join(nick);
        if let Some(p) = path {
            target = target.join(p);
        }
        let target = target.join(name.trim_start_matches('/'));
        let result = self.load_library(&repo, name, &target, depth)?;
        self.cache.insert(key, Some(result.clone()));
        Ok(result)
    }

    fn local(
        &mut self,
        path: &Path,
        nick: &str,
        name: &str,
        depth: usize,
    ) -> Result<(Vec<Json>, Vec<Json>), FmfError> {
        let key = format!("{nick}\0{}\0{name}", path.display());
        if let Some(c) = self.cache.get(&key) {
            return Ok(c.clone().unwrap_or_default());
        }
        self.cache.insert(key.clone(), None);
        let repo = if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.tree.root().join(path)
        };
        let target = self
            .section_root
            .join("libs")
            .join(nick)
            .join(name.trim_start_matches('/'));
        let result = self.load_library(&repo, name, &target, depth)?;
        self.cache.insert(key, Some(result.clone()));
        Ok(result)
    }

    fn load_library(
        &mut self,
        repo: &Path,
        name: &str,
        target: &Path,
        depth: usize,
    ) -> Result<(Vec<Json>, Vec<Json>), FmfError> {
        let mut t = Tree::load(repo).map_err(|e| FmfError::Fetch {
            message: format!("{}: repository has no fmf metadata", repo.display()),
            source: Some(Box::new(e)),
        })?;
        t.adjust(self.context)?;
        let node = t.find(name).ok_or_else(|| FmfError::Fetch {
            message: format!(
                "{}: library node '{name}' not found in repository",
                repo.display()
            ),
            source: None,
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
