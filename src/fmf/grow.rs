//! Building an FMF tree from disk: root detection, growing from directories and
//! files, raw updates with in-file `/name` hierarchy and `/` directives, and
//! top-down inheritance.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use indexmap::IndexMap;

use super::error::FmfError;
use super::merge::Merger;
use super::node::Node;
use super::pyre::RegexCache;
use super::value::{Map, Value};
use super::yaml;

/// Raw (pre-inheritance) state of a node while the tree grows.
#[derive(Default)]
struct RawNode {
    name: String,
    children: IndexMap<String, usize>,
    raw: super::value::KeyMap,
    select: Option<bool>,
    inherit: Option<bool>,
    updated: bool,
    sources: Vec<Arc<Path>>,
}

struct Grower {
    nodes: Vec<RawNode>,
    include: Vec<String>,
    symlink_targets: HashSet<PathBuf>,
}

/// Find the tree root: the nearest ancestor (or the path itself) with a `.fmf` directory.
pub(crate) fn find_root(path: &Path) -> Result<PathBuf, FmfError> {
    let abs = std::path::absolute(path).map_err(|e| FmfError::Io {
        path: path.to_path_buf(),
        source: e,
    })?;
    let mut cur = normalize(&abs);
    if !cur.is_dir() {
        return Err(FmfError::Root {
            path: path.to_path_buf(),
        });
    }
    loop {
        if cur.join(".fmf").is_dir() {
            return Ok(cur);
        }
        match cur.parent() {
            Some(p) => cur = p.to_path_buf(),
            None => {
                return Err(FmfError::Root {
                    path: path.to_path_buf(),
                });
            }
        }
    }
}

/// Lexically normalise `..` and `.` (like Python `os.path.abspath`).
fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// Read `.fmf/version` and `.fmf/config`; returns the `explore.include` list.
fn read_metadata_dir(root: &Path) -> Result<Vec<String>, FmfError> {
    let vpath = root.join(".fmf").join("version");
    let text = std::fs::read(&vpath).map_err(|e| FmfError::Version {
        path: vpath.clone(),
        message: "unable to detect format version".into(),
        source: Some(e),
    })?;
    let text = String::from_utf8(text).map_err(|_| FmfError::Version {
        path: vpath.clone(),
        message: "invalid version format".into(),
        source: None,
    })?;
    let t = text.trim_matches(|c: char| c.is_whitespace());
    let body = t.strip_prefix(['+', '-']).unwrap_or(t);
    let valid = !body.is_empty()
        && !body.starts_with('_')
        && !body.ends_with('_')
        && !body.contains("__")
        && body.chars().all(|c| c.is_ascii_digit() || c == '_');
    if !valid {
        return Err(FmfError::Version {
            path: vpath,
            message: "invalid version format".into(),
            source: None,
        });
    }
    let cpath = root.join(".fmf").join("config");
    let config = match std::fs::read(&cpath) {
        Ok(bytes) => {
            let text = String::from_utf8(bytes).map_err(|_| FmfError::Config {
                path: cpath.clone(),
                line: None,
                message: "invalid UTF-8".into(),
            })?;
            yaml::load(&text).map_err(|e| FmfError::Config {
                path: cpath.clone(),
                line: e.line,
                message: e.message,
            })?
        }
        Err(_) => Value::Null,
    };
    let include = config
        .as_map()
        .and_then(|m| m.get("explore"))
        .and_then(|e| e.as_map())
        .and_then(|e| e.get("include"));
    match include {
        None => Ok(Vec::new()),
        Some(Value::List(items)) => {
            let names: Vec<String> = items.iter().map(Value::python_str).collect();
            if names.iter().any(|n| n == ".fmf") {
                return Err(FmfError::General {
                    message: "the '.fmf' directory cannot be used for storing fmf metadata".into(),
                });
            }
            Ok(names)
        }
        Some(other) => Err(FmfError::General {
            message: format!(
                "{}: the 'include' config section should be a list, found '{}'",
                cpath.display(),
                other.python_str()
            ),
        }),
    }
}

impl Grower {
    fn new_child(&mut self, parent: usize, name: &str) -> usize {
        if let Some(&idx) = self.nodes[parent].children.get(name) {
            return idx;
        }
        let full = if self.nodes[parent].name == "/" {
            format!("/{name}")
        } else {
            format!("{}/{name}", self.nodes[parent].name)
        };
        let idx = self.nodes.len();
        self.nodes.push(RawNode {
            name: full,
            ..RawNode::default()
        });
        self.nodes[parent].children.insert(name.to_string(), idx);
        idx
    }

    /// Raw update of node `idx` with a document/mapping value.
    fn update(&mut self, idx: usize, data: Value, file: &Path) -> Result<(), FmfError> {
        self.nodes[idx].updated = true;
        let mut map = match data {
            Value::Null => return Ok(()),
            Value::Map(m) => m,
            other => {
                return Err(FmfError::Data {
                    path: file.to_path_buf(),
                    message: format!(
                        "node '{}': expected a mapping, got {}",
                        self.nodes[idx].name,
                        other.type_name()
                    ),
                });
            }
        };
        if let Some(directives) = map.remove("/") {
            self.directives(idx, directives, file)?;
        }
        let own_keys = map
            .keys()
            .filter(|k| !k.as_str().is_some_and(|k| k.starts_with('/')))
            .count();
        // The common leaf: plain string keys only, into a node with no data yet. The
        // parsed mapping becomes the node's data as it is (no re-hashing, no new table).
        if own_keys == map.len()
            && self.nodes[idx].raw.is_empty()
            && map.keys().all(|k| matches!(k.0, Value::Str(_)))
        {
            self.nodes[idx].raw = map.into_key_map();
            return Ok(());
        }
        self.nodes[idx].raw.reserve(own_keys);
        for (key, value) in map.into_entries() {
            let k = match &key.0 {
                Value::Str(s) => &**s,
                Value::Null => {
                    return Err(FmfError::Key {
                        path: file.to_path_buf(),
                        node: self.nodes[idx].name.clone(),
                    });
                }
                other => {
                    return Err(FmfError::Data {
                        path: file.to_path_buf(),
                        message: format!(
                            "node '{}': key {} is not a string",
                            self.nodes[idx].name,
                            other.python_repr()
                        ),
                    });
                }
            };
            if k.starts_with('/') {
                let name = k.trim_start_matches('/');
                // Deeper nesting: the first path component names the child.
                let (child, value) = match name.find('/') {
                    Some(pos) => {
                        let mut m = Map::new();
                        m.insert(&name[pos..], value);
                        (name[..pos].to_string(), Value::Map(m))
                    }
                    None => (name.to_string(), value),
                };
                let cidx = self.new_child(idx, &child);
                match value {
                    v @ (Value::Map(_) | Value::Null) => self.update(cidx, v, file)?,
                    // A string is taken as a directory path by the reference; such
                    // a child normally stays empty.
                    Value::Str(_) => {}
                    other => {
                        return Err(FmfError::Data {
                            path: file.to_path_buf(),
                            message: format!(
                                "node '{}': expected a mapping, got {}",
                                self.nodes[cidx].name,
                                other.type_name()
                            ),
                        });
                    }
                }
            } else {
                self.nodes[idx].raw.insert(key, value);
            }
        }
        Ok(())
    }

    fn directives(&mut self, idx: usize, d: Value, file: &Path) -> Result<(), FmfError> {
        let node = self.nodes[idx].name.clone();
        let bad = |message: String| FmfError::Directive {
            path: file.to_path_buf(),
            node: node.clone(),
            message,
        };
        let Value::Map(m) = d else {
            return Err(bad(format!(
                "should be a 'dict', got a '{}' instead",
                d.type_name()
            )));
        };
        let mut inherit = None;
        let mut select = None;
        for (k, v) in m.iter() {
            let name = k.as_str().unwrap_or("");
            let slot = match name {
                "inherit" => &mut inherit,
                "select" => &mut select,
                _ => {
                    return Err(bad(format!("unknown fmf directive '{}'", k.0.python_str())));
                }
            };
            match v {
                Value::Bool(b) => *slot = Some(*b),
                other => {
                    return Err(bad(format!(
                        "'{name}' should be a 'bool', got a '{}' instead",
                        other.type_name()
                    )));
                }
            }
        }
        if inherit.is_some() {
            self.nodes[idx].inherit = inherit;
        }
        if select.is_some() {
            self.nodes[idx].select = select;
        }
        Ok(())
    }

    fn hidden(&self, name: &str) -> bool {
        name.starts_with('.') && !self.include.iter().any(|i| i == name)
    }

    /// Phase 1 of growing: walk directories (no file contents needed) and record
    /// what to do, in the reference's order.
    fn walk(&mut self, dir: &Path, ops: &mut Vec<GrowOp>) {
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) => {
                tracing::debug!("skipping {}: {e}", dir.display());
                return;
            }
        };
        let mut files: Vec<String> = Vec::new();
        let mut dirs: Vec<String> = Vec::new();
        for entry in entries.flatten() {
            let Ok(name) = entry.file_name().into_string() else {
                tracing::debug!("skipping non-UTF-8 name in {}", dir.display());
                continue;
            };
            // Classify like os.walk: symlinks are followed.
            let is_dir = match entry.file_type() {
                Ok(ft) if ft.is_symlink() => std::fs::metadata(entry.path())
                    .map(|m| m.is_dir())
                    .unwrap_or(false),
                Ok(ft) => ft.is_dir(),
                Err(_) => false,
            };
            if is_dir {
                dirs.push(name);
            } else if name.ends_with(".fmf") {
                files.push(name);
            }
        }
        files.sort();
        dirs.sort();
        if let Some(pos) = files.iter().position(|f| f == "main.fmf") {
            let main = files.remove(pos);
            files.insert(0, main);
        }
        for fname in files {
            if self.hidden(&fname) {
                continue;
            }
            let path = dir.join(&fname);
            let stem = if fname == "main.fmf" {
                None
            } else {
                Some(fname[..fname.len() - 4].to_string())
            };
            ops.push(GrowOp::File { path, stem });
        }
        for dname in dirs {
            if self.hidden(&dname) {
                continue;
            }
            let full = dir.join(&dname);
            let is_link = std::fs::symlink_metadata(&full)
                .map(|m| m.file_type().is_symlink())
                .unwrap_or(false);
            if is_link {
                let real = std::fs::canonicalize(&full).unwrap_or_else(|_| full.clone());
                if !self.symlink_targets.insert(real) {
                    tracing::debug!("not entering symlink loop {}", full.display());
                    continue;
                }
            }
            if full.join(".fmf").is_dir() {
                tracing::debug!("ignoring metadata subtree {}", full.display());
                continue;
            }
            ops.push(GrowOp::Enter(dname));
            self.walk(&full, ops);
            ops.push(GrowOp::Leave);
        }
    }

    /// Phase 3 of growing: apply parsed files in walk order.
    fn replay(
        &mut self,
        ops: Vec<GrowOp>,
        parsed: Vec<Option<Result<Value, FmfError>>>,
    ) -> Result<(), FmfError> {
        let mut stack = vec![0usize];
        let mut parsed = parsed.into_iter();
        for op in ops {
            let top = *stack.last().unwrap_or(&0);
            match op {
                GrowOp::File { path, stem } => {
                    let data = match parsed.next().flatten() {
                        Some(r) => r?,
                        None => load_file(&path)?,
                    };
                    self.apply_file(top, &path, stem.as_deref(), data)?;
                }
                GrowOp::Enter(name) => {
                    let c = self.new_child(top, &name);
                    stack.push(c);
                }
                GrowOp::Leave => {
                    stack.pop();
                    self.drop_empty_children(top);
                }
            }
        }
        self.drop_empty_children(0);
        Ok(())
    }

    fn apply_file(
        &mut self,
        idx: usize,
        path: &Path,
        stem: Option<&str>,
        data: Value,
    ) -> Result<(), FmfError> {
        let path = Arc::<Path>::from(path);
        let Some(stem) = stem else {
            self.nodes[idx].sources.push(path.clone());
            return self.update(idx, data, &path);
        };
        match data {
            Value::Str(_) => {
                // The reference treats this as a directory path (normally
                // nonexistent): the child ends up empty and is dropped.
                let cidx = self.new_child(idx, stem);
                self.nodes[cidx].sources.push(path);
            }
            Value::Map(_) | Value::Null => {
                let cidx = self.new_child(idx, stem);
                self.update(cidx, data, &path)?;
                self.nodes[cidx].sources.push(path);
            }
            other => {
                return Err(FmfError::Data {
                    path: path.to_path_buf(),
                    message: format!("document must be a mapping, got {}", other.type_name()),
                });
            }
        }
        Ok(())
    }

    /// Drop children without children that never got data.
    fn drop_empty_children(&mut self, idx: usize) {
        let nodes = &self.nodes;
        let empty: Vec<String> = nodes[idx]
            .children
            .iter()
            .filter(|(_, c)| {
                let n = &nodes[**c];
                n.children.is_empty() && !n.updated
            })
            .map(|(k, _)| k.clone())
            .collect();
        for k in empty {
            self.nodes[idx].children.shift_remove(&k);
        }
    }
}

/// One step recorded by [`Grower::walk`].
enum GrowOp {
    /// A metadata file: `stem` is `None` for `main.fmf`.
    File { path: PathBuf, stem: Option<String> },
    /// Descend into a child directory (creates/reuses the child node).
    Enter(String),
    /// Leave the current directory (drops its empty children).
    Leave,
}

/// Phase 2 of growing: parse all files, in parallel when worthwhile.
///
/// The calling thread parses too: its allocations come from the main malloc arena, which
/// grows in large steps, while a fresh thread's arena grows a few pages at a time. Files
/// are handed out one at a time through a shared counter, so a thread slowed down by
/// the rest of the machine does not hold the others up.
fn parse_all(paths: &[&Path]) -> Vec<Option<Result<Value, FmfError>>> {
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(8);
    if threads <= 1 || paths.len() < 64 {
        return paths.iter().map(|p| Some(load_file(p))).collect();
    }
    let next = AtomicUsize::new(0);
    let work = || {
        let mut done = Vec::new();
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some(path) = paths.get(i) else {
                return done;
            };
            done.push((i, load_file(path)));
        }
    };
    let mut out: Vec<Option<Result<Value, FmfError>>> = Vec::with_capacity(paths.len());
    out.resize_with(paths.len(), || None);
    std::thread::scope(|scope| {
        let helpers: Vec<_> = (1..threads).map(|_| scope.spawn(work)).collect();
        let mut place = |done: Vec<(usize, Result<Value, FmfError>)>| {
            for (i, parsed) in done {
                out[i] = Some(parsed);
            }
        };
        place(work());
        for helper in helpers {
            // A helper that failed unexpectedly leaves its files to be parsed in replay.
            if let Ok(done) = helper.join() {
                place(done);
            }
        }
    });
    out
}

/// Read and parse one `.fmf` file.
pub(crate) fn load_file(path: &Path) -> Result<Value, FmfError> {
    let bytes = std::fs::read(path).map_err(|e| FmfError::Io {
        path: path.to_path_buf(),
        source: e,
    })?;
    let text = String::from_utf8(bytes).map_err(|_| FmfError::Encoding {
        path: path.to_path_buf(),
    })?;
    yaml::load(&text).map_err(|e| FmfError::Yaml {
        path: path.to_path_buf(),
        line: e.line,
        message: e.message,
    })
}

/// Grow the tree rooted at `root` and resolve inheritance.
pub(crate) fn build(root: &Path) -> Result<Vec<Node>, FmfError> {
    let include = read_metadata_dir(root)?;
    let mut g = Grower {
        nodes: vec![RawNode {
            name: "/".into(),
            ..RawNode::default()
        }],
        include,
        symlink_targets: HashSet::new(),
    };
    let t0 = std::time::Instant::now();
    let mut ops = Vec::new();
    g.walk(root, &mut ops);
    let t1 = std::time::Instant::now();
    let paths: Vec<&Path> = ops
        .iter()
        .filter_map(|op| match op {
            GrowOp::File { path, .. } => Some(path.as_path()),
            _ => None,
        })
        .collect();
    let parsed = parse_all(&paths);
    let files = paths.len();
    drop(paths);
    let t2 = std::time::Instant::now();
    g.replay(ops, parsed)?;
    let t3 = std::time::Instant::now();
    let nodes = inherit(g.nodes)?;
    tracing::debug!(
        files,
        walk = ?(t1 - t0),
        parse = ?(t2 - t1),
        grow = ?(t3 - t2),
        inherit = ?t3.elapsed(),
        "fmf tree built"
    );
    Ok(nodes)
}

/// Build a tree from an in-memory mapping (the root node's document).
pub(crate) fn build_from_value(data: Value) -> Result<Vec<Node>, FmfError> {
    let mut g = Grower {
        nodes: vec![RawNode {
            name: "/".into(),
            ..RawNode::default()
        }],
        include: Vec::new(),
        symlink_targets: HashSet::new(),
    };
    g.update(0, data, Path::new("<data>"))?;
    inherit(g.nodes)
}

/// Top-down inheritance, producing resolved nodes with the same indices for
/// reachable nodes (unreachable, removed children are dropped).
fn inherit(raw: Vec<RawNode>) -> Result<Vec<Node>, FmfError> {
    let mut regexes = RegexCache::new();
    let mut out: Vec<Node> = Vec::with_capacity(raw.len());
    let mut raw: Vec<Option<RawNode>> = raw.into_iter().map(Some).collect();
    // (raw index, new parent index, name under that parent)
    let mut stack: Vec<(usize, Option<usize>, String)> = vec![(0, None, String::new())];
    while let Some((ridx, parent, short)) = stack.pop() {
        let Some(r) = raw.get_mut(ridx).and_then(Option::take) else {
            continue;
        };
        let inherited = match parent {
            Some(p) if r.inherit != Some(false) => Some(&out[p]),
            _ => None,
        };
        let mut data = inherited.map_or_else(Map::new, |p| p.data.clone());
        // One allocation of the exact size (a clone then an extend would grow it again).
        let inherited_sources = inherited.map_or(&[][..], |p| &p.sources[..]);
        let mut sources = Vec::with_capacity(inherited_sources.len() + r.sources.len());
        sources.extend(inherited_sources.iter().cloned());
        sources.extend(r.sources);
        if !r.raw.is_empty() {
            data.reserve(r.raw.len());
            let src = sources.last().map_or(Path::new(""), |p| &**p);
            Merger {
                node: &r.name,
                source: src,
                regexes: &mut regexes,
            }
            .merge_special(&mut data, r.raw)?;
        }
        let idx = out.len();
        out.push(Node {
            name: r.name,
            parent,
            children: IndexMap::with_capacity(r.children.len()),
            data,
            sources,
            select: r.select,
            inherit: r.inherit,
        });
        if let Some(p) = parent {
            out[p].children.insert(short, idx);
        }
        // Push children in reverse so they are processed in insertion order.
        for (name, c) in r.children.into_iter().rev() {
            stack.push((c, Some(idx), name));
        }
    }
    Ok(out)
}
