//! Test discovery through tmt plans: the data model the FMF executor consumes.
//!
//! [`discover`] loads and adjusts a tree, picks a plan (or a default
//! `discover: {how: fmf}` plan), checks that atex can run every step of it (see
//! [`DiscoverOptions::skip_unsupported_steps`]), runs every `how: fmf` discover section,
//! copies each section's tree into a temporary directory owned by the result, selects
//! tests (`test`, `filter`, `exclude`, `link`, plus caller names/filters/conditions/
//! excludes; only nodes with `test`, not `enabled: false`, not `manual: true`, no
//! `story`), resolves beakerlib libraries and returns [`DiscoveredTests`].
//!
//! A section's tree follows tmt: with `url`, a git clone (cached) of `url` at `ref`,
//! `path` naming the tree inside the repository; without `url`, the plan's own tree,
//! or with `path` the tree at that path (relative to the plan's tree root, which it
//! must not leave), `ref` checked out in a private clone of the local repository
//! (the user's checkout is only read). `modified-only: true` selects the tests whose
//! name starts with a directory (relative to the tree root) changed by the commits of
//! `HEAD` that `modified-ref` (default: the `origin` remote's default branch) lacks,
//! optionally after fetching `modified-url` as the remote `reference`; like tmt, those
//! names are added to the section's `test` names, and nothing changed means no tests.
//! `environment-file` entries must be files inside the plan's tree.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use indexmap::IndexMap;
use serde_json::{Map as JsonMap, Value as Json};

use super::context::Context;
use super::error::{FmfError, UnsupportedStep};
use super::pyre::RegexCache;
use super::value::{Map, Value};
use super::{Node, Tree};
use super::{git, plan};

/// What to discover.
#[derive(Clone, Debug)]
pub struct DiscoverOptions {
    /// Any directory inside the FMF tree holding the plan and/or tests.
    pub tree: PathBuf,
    /// Name of a tmt plan node; `None` uses a default `discover: {how: fmf}` plan.
    pub plan: Option<String>,
    /// Context for `adjust`.
    pub context: Context,
    /// Extra test name regexes (added to each section's `test`).
    pub names: Vec<String>,
    /// Extra filter expressions (added to each section's `filter`).
    pub filters: Vec<String>,
    /// Python-like conditions over test data (see [`super::condition`]).
    pub conditions: Vec<String>,
    /// Extra exclude regexes (added to each section's `exclude`).
    pub excludes: Vec<String>,
    /// Resolve beakerlib libraries from `require` (default true).
    pub libraries: bool,
    /// Where git checkouts of remote trees/libraries are cached; `None` uses
    /// `$ATEX_FMF_CACHE`, `$XDG_CACHE_HOME/atex/fmf` or `~/.cache/atex/fmf`.
    pub cache_dir: Option<PathBuf>,
    /// Skip plan steps atex cannot run (a `prepare` other than `install`/`shell`, a
    /// `finish` other than `shell`, a `discover` other than `fmf`, an `execute` other
    /// than `tmt`) with one warning each, instead of refusing the plan with
    /// [`FmfError::UnsupportedSteps`] (default false).
    pub skip_unsupported_steps: bool,
}

impl DiscoverOptions {
    /// Options for `tree` with everything else empty/default.
    pub fn new(tree: impl Into<PathBuf>) -> Self {
        DiscoverOptions {
            tree: tree.into(),
            plan: None,
            context: Context::new(),
            names: Vec::new(),
            filters: Vec::new(),
            conditions: Vec::new(),
            excludes: Vec::new(),
            libraries: true,
            cache_dir: None,
            skip_unsupported_steps: false,
        }
    }
}

/// One step of plan `prepare`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PrepareStep {
    /// `how: install` — packages to install.
    Install {
        /// Package names.
        packages: Vec<String>,
    },
    /// `how: shell` — scripts run with bash in the uploaded tree root.
    Shell {
        /// Script texts.
        scripts: Vec<String>,
    },
}

/// One step of plan `finish` (only `how: shell` is supported).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FinishStep {
    /// `how: shell` — scripts run with bash in the uploaded tree root.
    Shell {
        /// Script texts.
        scripts: Vec<String>,
    },
}

/// The plan part of a discovery result.
#[derive(Clone, Debug, Default)]
pub struct PlanData {
    /// Plan node name (`None` for the default plan).
    pub name: Option<String>,
    /// The full adjusted plan data.
    pub data: JsonMap<String, Json>,
    /// Plan environment: `environment-file` entries, then `environment` (dict or
    /// list of dicts), later wins. Values stringified Python-style.
    pub environment: IndexMap<String, String>,
    /// `prepare` steps (`install`, `shell`; other `how`s are dropped).
    pub prepare: Vec<PrepareStep>,
    /// `finish` steps (`shell`).
    pub finish: Vec<FinishStep>,
    /// The plan's `context` mapping (values stringified; lists joined with `,`).
    pub context: IndexMap<String, String>,
    /// Steps skipped because atex cannot run them (only with
    /// [`DiscoverOptions::skip_unsupported_steps`]; otherwise discovery fails).
    pub skipped_steps: Vec<UnsupportedStep>,
}

/// One discovered test.
#[derive(Clone, Debug)]
pub struct DiscoveredTest {
    /// Test name (prefixed with `/<section>` for named sections).
    pub name: String,
    /// Fully resolved (inherited, adjusted, libraries resolved) metadata, ordered.
    pub data: JsonMap<String, Json>,
    /// Directory of the test's fmf definition, relative to [`DiscoveredTests::root`].
    pub source_dir: PathBuf,
}

pub(super) fn listlike(v: Option<&Json>) -> Vec<&Json> {
    match v {
        None | Some(Json::Null) => Vec::new(),
        Some(Json::Array(a)) => a.iter().collect(),
        Some(other) => vec![other],
    }
}

/// Python `str()` of a JSON value (as the reference stringifies env values).
pub(super) fn py_str(v: &Json) -> String {
    match v {
        Json::String(s) => s.clone(),
        Json::Bool(true) => "True".into(),
        Json::Bool(false) => "False".into(),
        Json::Null => "None".into(),
        Json::Number(n) => match n.as_f64() {
            Some(f) if !n.is_i64() && !n.is_u64() => super::value::python_float_repr(f),
            _ => n.to_string(),
        },
        other => other.to_string(),
    }
}

impl DiscoveredTest {
    /// The `test` command (bash script text).
    pub fn test_script(&self) -> Option<&str> {
        self.data.get("test").and_then(Json::as_str)
    }
    /// The raw `duration` string (e.g. `5m`, `1h 30m`); parse it elsewhere.
    pub fn duration(&self) -> Option<&str> {
        self.data.get("duration").and_then(Json::as_str)
    }
    /// Test `environment` (dict, or list of dicts merged in order), stringified.
    pub fn environment(&self) -> IndexMap<String, String> {
        env_from(self.data.get("environment"))
    }
    /// String entries of `require` (package names; libraries are skipped).
    pub fn require(&self) -> Vec<&str> {
        listlike(self.data.get("require"))
            .into_iter()
            .filter_map(Json::as_str)
            .collect()
    }
    /// String entries of `recommend`.
    pub fn recommend(&self) -> Vec<&str> {
        listlike(self.data.get("recommend"))
            .into_iter()
            .filter_map(Json::as_str)
            .collect()
    }
    /// Whether `tty: true`.
    pub fn tty(&self) -> bool {
        self.data
            .get("tty")
            .and_then(Json::as_bool)
            .unwrap_or(false)
    }
    /// `tag` entries (string or list).
    pub fn tags(&self) -> Vec<String> {
        listlike(self.data.get("tag"))
            .into_iter()
            .map(py_str)
            .collect()
    }
    /// `extra-priority` as an integer (default 0).
    pub fn priority(&self) -> i64 {
        match self.data.get("extra-priority") {
            Some(Json::Number(n)) => n.as_i64().unwrap_or(0),
            Some(Json::String(s)) => s.trim().parse().unwrap_or(0),
            _ => 0,
        }
    }
    /// One canonical JSON line `{"data":{…},"name":"…","source_dir":"…"}`.
    pub fn to_json_line(&self) -> String {
        let mut out = String::from("{\"data\":");
        out.push_str(&canonical(&Json::Object(self.data.clone())));
        out.push_str(",\"name\":");
        super::dump::write_str(&mut out, &self.name);
        out.push_str(",\"source_dir\":");
        super::dump::write_str(&mut out, &self.source_dir.to_string_lossy());
        out.push('}');
        out
    }
}

fn canonical(v: &Json) -> String {
    let mut out = String::new();
    write_json(&mut out, v);
    out
}

fn write_json(out: &mut String, v: &Json) {
    match v {
        Json::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                super::dump::write_str(out, k);
                out.push(':');
                if let Some(x) = m.get(*k) {
                    write_json(out, x);
                }
            }
            out.push('}');
        }
        Json::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json(out, x);
            }
            out.push(']');
        }
        Json::String(s) => super::dump::write_str(out, s),
        Json::Number(n) => match n.as_f64() {
            Some(f) if !n.is_i64() && !n.is_u64() => {
                out.push_str(&super::value::python_float_repr(f))
            }
            _ => out.push_str(&n.to_string()),
        },
        other => out.push_str(&other.to_string()),
    }
}

pub(super) fn env_from(v: Option<&Json>) -> IndexMap<String, String> {
    let mut env = IndexMap::new();
    for item in listlike(v) {
        if let Json::Object(m) = item {
            for (k, v) in m {
                env.insert(k.clone(), py_str(v));
            }
        }
    }
    env
}

/// Result of [`discover`]: plan data, tests, and the temporary tree copy.
#[derive(Debug)]
pub struct DiscoveredTests {
    /// The plan.
    pub plan: PlanData,
    /// Discovered tests in discovery order (names unique).
    pub tests: Vec<DiscoveredTest>,
    /// Library requirements that could not be fetched (kept as RPM provides).
    pub missing_libraries: Vec<String>,
    root: tempfile::TempDir,
}

impl DiscoveredTests {
    /// The directory holding the copied tree(s) to upload (`TMT_TREE`). It is
    /// removed when this value is dropped.
    pub fn root(&self) -> &Path {
        self.root.path()
    }
    /// Find a test by name.
    pub fn get(&self, name: &str) -> Option<&DiscoveredTest> {
        self.tests.iter().find(|t| t.name == name)
    }
    /// Test names in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tests.iter().map(|t| t.name.as_str())
    }
    /// Union (first-seen order) of plan `prepare: install` packages and all tests'
    /// string `require` entries.
    pub fn all_required_packages(&self) -> Vec<String> {
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        let plan = self.plan.prepare.iter().flat_map(|p| match p {
            PrepareStep::Install { packages } => packages.clone(),
            PrepareStep::Shell { .. } => Vec::new(),
        });
        let tests = self.tests.iter().flat_map(|t| {
            t.require()
                .into_iter()
                .map(str::to_string)
                .collect::<Vec<_>>()
        });
        for p in plan.chain(tests) {
            if seen.insert(p.clone()) {
                out.push(p);
            }
        }
        out
    }
}

fn plan_err(message: impl Into<String>) -> FmfError {
    FmfError::Plan {
        message: message.into(),
    }
}

pub(super) fn json_strings(v: Option<&Json>) -> Vec<String> {
    listlike(v).into_iter().map(py_str).collect()
}

/// Discover tests from the tree at `opts.tree`. See the module documentation.
pub fn discover(opts: &DiscoverOptions) -> Result<DiscoveredTests, FmfError> {
    discover_in(Tree::load(&opts.tree)?, opts)
}

/// Discover tests from an already loaded (not yet adjusted) tree; `opts.tree` is
/// ignored. The tree is copied, the caller's value stays untouched.
pub fn discover_tree(tree: &Tree, opts: &DiscoverOptions) -> Result<DiscoveredTests, FmfError> {
    discover_in(tree.clone(), opts)
}

fn discover_in(mut tree: Tree, opts: &DiscoverOptions) -> Result<DiscoveredTests, FmfError> {
    if tree.nodes.is_empty() {
        return Err(plan_err("empty fmf tree"));
    }
    tree.adjust(&opts.context)?;
    let (plan_name, plan_map) = match &opts.plan {
        Some(name) => {
            let node = tree
                .find(name)
                .ok_or_else(|| plan_err(format!("plan '{name}' not found")))?;
            if node.data.contains_key("test") {
                return Err(plan_err(format!(
                    "'{name}' appears to be a test, not a plan"
                )));
            }
            if !node.is_leaf() {
                return Err(plan_err(format!("'{name}' matches multiple plans")));
            }
            (Some(name.clone()), node.data.clone())
        }
        None => {
            let mut m = Map::new();
            let mut d = Map::new();
            d.insert("how", Value::from("fmf"));
            m.insert("discover", Value::Map(d));
            let mut e = Map::new();
            e.insert("how", Value::from("tmt"));
            m.insert("execute", Value::Map(e));
            (None, m)
        }
    };
    let plan_label = plan::display_name(plan_name.as_deref());
    let plan = plan::plan_data(
        plan_name,
        plan_map.to_json_map(),
        tree.root(),
        opts.skip_unsupported_steps,
    )?;

    // Sections.
    let sections: Vec<Map> = match plan_map.get("discover") {
        Some(Value::Map(m)) => vec![m.clone()],
        Some(Value::List(l)) => l
            .iter()
            .map(|s| match s {
                Value::Map(m) => Ok(m.clone()),
                _ => Err(plan_err("discover section must be a mapping")),
            })
            .collect::<Result<_, _>>()?,
        _ => Vec::new(),
    };
    let sections: Vec<Map> = sections
        .into_iter()
        .filter(|s| match s.get("how") {
            None | Some(Value::Null) => true,
            Some(v) => v.as_str() == Some("fmf"),
        })
        .collect();
    if sections.is_empty() {
        return Err(plan_err(
            "no 'discover' section with 'how: fmf' in the plan",
        ));
    }
    let mut seen_names = HashSet::new();
    let multi = sections.len() > 1;
    for s in &sections {
        let name = s.get("name").map(Value::python_str);
        if multi {
            let Some(n) = &name else {
                return Err(plan_err(
                    "with several discover sections every one needs a 'name'",
                ));
            };
            if !seen_names.insert(n.clone()) {
                return Err(plan_err(format!("duplicate discover section name '{n}'")));
            }
        }
        if let Some(n) = &name
            && (n.contains('/') || n == "." || n == ".." || n.is_empty())
        {
            return Err(plan_err(format!("invalid discover section name '{n}'")));
        }
    }

    let tmp = tempfile::Builder::new()
        .prefix("atex-fmf-discover-")
        .tempdir()
        .map_err(|e| FmfError::Io {
            path: std::env::temp_dir(),
            source: e,
        })?;
    let cache = opts
        .cache_dir
        .clone()
        .unwrap_or_else(git::default_cache_dir);
    let mut tests: IndexMap<String, DiscoveredTest> = IndexMap::new();
    let mut missing_libraries = Vec::new();
    for section in &sections {
        let sname = section.get("name").map(Value::python_str);
        let source = section_source(section, &plan_label, &tree, opts, &cache)?;
        let source_tree: &Tree = source.tree.as_ref().unwrap_or(&tree);
        if source.modified.as_ref().is_some_and(Vec::is_empty) {
            tracing::info!(
                plan = %plan_label,
                section = sname.as_deref().unwrap_or(""),
                "modified-only: nothing changed, no tests from this section"
            );
            continue;
        }
        let dest = match &sname {
            Some(n) if multi || section.contains_key("name") => tmp.path().join(n),
            _ => tmp.path().to_path_buf(),
        };
        copy_tree(source_tree.root(), &dest)?;

        let mut names: Vec<String> = section.get("test").map(strings_of).unwrap_or_default();
        names.extend(opts.names.iter().cloned());
        // tmt appends the changed directories to the selected names.
        names.extend(
            source
                .modified
                .iter()
                .flatten()
                .map(|d| format!("^/{}", regex::escape(d))),
        );
        let mut filters: Vec<String> = section.get("filter").map(strings_of).unwrap_or_default();
        filters.extend(opts.filters.iter().cloned());
        let mut excludes: Vec<String> = opts.excludes.clone();
        excludes.extend(section.get("exclude").map(strings_of).unwrap_or_default());
        let links: Vec<String> = section.get("link").map(strings_of).unwrap_or_default();
        let mut regexes = RegexCache::new();
        let nodes = source_tree.prune(&names, &filters, &opts.conditions)?;
        let mut libs = LibraryResolver {
            section_root: dest.clone(),
            cache_dir: cache.clone(),
            tree: source_tree,
            cache: HashMap::new(),
            context: &opts.context,
            missing: Vec::new(),
        };
        'node: for node in nodes {
            for ex in &excludes {
                if regexes.search(ex, &node.name)? {
                    continue 'node;
                }
            }
            if !is_test(node) {
                continue;
            }
            if !links.is_empty() && !matches_links(&links, node, &mut regexes)? {
                continue;
            }
            let mut data = node.data.clone();
            data.remove("adjust");
            let mut json = data.to_json_map();
            if opts.libraries {
                libs.resolve(&node.name, &mut json)?;
            }
            let rel = source_dir(node, source_tree.root());
            let (name, source_dir) = match &sname {
                Some(n) if section.contains_key("name") => {
                    (format!("/{n}{}", node.name), Path::new(n).join(rel))
                }
                _ => (node.name.clone(), rel),
            };
            tests.insert(
                name.clone(),
                DiscoveredTest {
                    name,
                    data: json,
                    source_dir,
                },
            );
        }
        missing_libraries.extend(libs.missing);
    }
    Ok(DiscoveredTests {
        plan,
        tests: tests.into_values().collect(),
        missing_libraries,
        root: tmp,
    })
}

/// Where one discover section's tests come from.
struct SectionSource {
    /// The section's own tree (loaded and adjusted); `None` is the plan's tree.
    tree: Option<Tree>,
    /// With `modified-only`: the directories (relative to the tree root) changed
    /// since the reference revision.
    modified: Option<Vec<String>>,
    /// A private checkout of a local `ref`, kept until the section is copied.
    _scratch: Option<tempfile::TempDir>,
}

fn key_err(plan: &str, key: &str, value: &str, message: impl Into<String>) -> FmfError {
    FmfError::PlanKey {
        plan: plan.to_string(),
        key: key.to_string(),
        value: value.to_string(),
        message: message.into(),
    }
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
fn section_source(
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
        super::plan::inside(base, &base.join(p.trim_start_matches('/')))
            .map_err(|m| key_err(plan, "discover path", p, m))
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
                .map_err(|m| key_err(plan, key, &value, format!("needs a git repository: {m}")))?;
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
                    git::clone_local(&top, &clone).map_err(|m| FmfError::Fetch {
                        message: format!("{}: {m}", top.display()),
                    })?;
                    git::checkout(&clone, r).map_err(|m| key_err(plan, "discover ref", r, m))?;
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
            message: format!("{u}: repository has no fmf metadata: {e}"),
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
            let dirs = git::modified_dirs(repo, &sub, &base, modified_url.as_deref())
                .map_err(|m| key_err(plan, "discover modified-ref", &base, m))?;
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

fn strings_of(v: &Value) -> Vec<String> {
    match v {
        Value::List(l) => l.iter().map(Value::python_str).collect(),
        Value::Null => Vec::new(),
        other => vec![other.python_str()],
    }
}

/// tmt link relations (a `relation:` prefix in a discover `link` needle).
const LINK_RELATIONS: [&str; 16] = [
    "verifies",
    "verified-by",
    "implements",
    "implemented-by",
    "documents",
    "documented-by",
    "blocks",
    "blocked-by",
    "duplicates",
    "duplicated-by",
    "parent",
    "child",
    "relates",
    "test-script",
    "note",
    "required-by",
];

/// Whether any of the node's `link`s matches any needle (`[RELATION:]TARGET`,
/// both regular expressions searched in the link's relation and target).
fn matches_links(needles: &[String], node: &Node, re: &mut RegexCache) -> Result<bool, FmfError> {
    let mut links: Vec<(String, String)> = Vec::new();
    let items: Vec<&Value> = match node.data.get("link") {
        None | Some(Value::Null) => return Ok(false),
        Some(Value::List(l)) => l.iter().collect(),
        Some(other) => vec![other],
    };
    for item in items {
        match item {
            Value::Str(t) => links.push(("relates".into(), t.to_string())),
            Value::Map(m) => {
                for (k, v) in m.iter() {
                    let rel = k.0.python_str();
                    if rel != "note" {
                        links.push((rel, v.python_str()));
                    }
                }
            }
            _ => {}
        }
    }
    for needle in needles {
        let (relation, target) = match needle.split_once(':') {
            Some((r, t)) if LINK_RELATIONS.iter().any(|x| re_full(re, r, x)) => (Some(r), t),
            _ => (None, needle.as_str()),
        };
        for (rel, tgt) in &links {
            let rel_ok = match relation {
                Some(r) => re.search(&format!("^(?:{r})$"), rel)?,
                None => true,
            };
            if rel_ok && re.search(target, tgt)? {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

/// Whether `pattern` (a relation name or a regex) could name `relation`.
fn re_full(re: &mut RegexCache, pattern: &str, relation: &str) -> bool {
    re.search(&format!(r"\A(?:{pattern})\Z"), relation)
        .unwrap_or(false)
}

fn is_test(node: &Node) -> bool {
    let d = &node.data;
    d.contains_key("test")
        && !matches!(d.get("enabled"), Some(Value::Bool(false)))
        && !matches!(d.get("manual"), Some(Value::Bool(true)))
        && !d.contains_key("story")
}

/// Parent directory of the last source file, relative to the tree root.
fn source_dir(node: &Node, root: &Path) -> PathBuf {
    node.sources
        .last()
        .and_then(|p| p.parent())
        .and_then(|p| p.strip_prefix(root).ok())
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// Copy `src` into `dest` (merging), skipping `.git`, preserving symlinks.
pub(crate) fn copy_tree(src: &Path, dest: &Path) -> Result<(), FmfError> {
    let io = |path: &Path, e: std::io::Error| FmfError::Io {
        path: path.to_path_buf(),
        source: e,
    };
    std::fs::create_dir_all(dest).map_err(|e| io(dest, e))?;
    let mut stack = vec![(src.to_path_buf(), dest.to_path_buf())];
    while let Some((from, to)) = stack.pop() {
        for entry in std::fs::read_dir(&from).map_err(|e| io(&from, e))? {
            let entry = entry.map_err(|e| io(&from, e))?;
            let name = entry.file_name();
            if name == ".git" {
                continue;
            }
            let path = entry.path();
            let target = to.join(&name);
            let ft = entry.file_type().map_err(|e| io(&path, e))?;
            if ft.is_symlink() {
                let link = std::fs::read_link(&path).map_err(|e| io(&path, e))?;
                if std::fs::symlink_metadata(&target).is_ok() {
                    let _ = std::fs::remove_file(&target);
                }
                std::os::unix::fs::symlink(&link, &target).map_err(|e| io(&target, e))?;
            } else if ft.is_dir() {
                std::fs::create_dir_all(&target).map_err(|e| io(&target, e))?;
                stack.push((path, target));
            } else if ft.is_file() {
                std::fs::copy(&path, &target).map_err(|e| io(&path, e))?;
            }
        }
    }
    Ok(())
}

/// A library's transitive `require` and `recommend` entries.
type LibDeps = (Vec<Json>, Vec<Json>);

/// Beakerlib library resolution for one section.
struct LibraryResolver<'a> {
    section_root: PathBuf,
    cache_dir: PathBuf,
    tree: &'a Tree,
    cache: HashMap<String, Option<LibDeps>>,
    context: &'a Context,
    missing: Vec<String>,
}

fn lib_err(m: impl Into<String>) -> FmfError {
    FmfError::Plan { message: m.into() }
}

impl LibraryResolver<'_> {
    fn resolve(&mut self, test: &str, data: &mut JsonMap<String, Json>) -> Result<(), FmfError> {
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
        let checkout = super::git::fetch(&self.cache_dir, url, reference)?;
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
            message: format!("{}: repository has no fmf metadata: {e}", repo.display()),
        })?;
        t.adjust(self.context)?;
        let node = t.find(name).ok_or_else(|| FmfError::Fetch {
            message: format!(
                "{}: library node '{name}' not found in repository",
                repo.display()
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

/// Directory of a node's definition relative to its tree root.
fn node_dir(node: &Node, root: &Path) -> PathBuf {
    let name_dir = root.join(node.name.trim_start_matches('/'));
    if name_dir.is_dir() {
        return PathBuf::from(node.name.trim_start_matches('/'));
    }
    source_dir(node, root)
}
