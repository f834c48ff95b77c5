//! The FMF metadata engine: trees, inheritance, `adjust`, filters, tmt plan discovery.
//!
//! This re-implements the reference Python `fmf` library (1.7.0, YAML via
//! `ruamel.yaml` 1.2 rules) exactly, only faster. The normative description is
//! `shared/spec/fmf.md`; the conformance corpus is `tests/fixtures/fmf-corpus`.
//!
//! ```no_run
//! use atex::fmf::{Context, Tree};
//!
//! # fn main() -> Result<(), atex::fmf::FmfError> {
//! let mut tree = Tree::load("tests/")?;              // find root, grow, inherit
//! tree.adjust(&Context::new().with("distro", "fedora-40"))?;
//! for node in tree.select(&["^/tests/".into()], &["tag: fast".into()])? {
//!     println!("{} {:?}", node.name(), node.data().get("test"));
//! }
//! # Ok(()) }
//! ```
//!
//! Pipeline: [`Tree::load`] finds the root (nearest `.fmf/` directory), grows the
//! tree from `*.fmf` files and directories, then applies inheritance with the merge
//! operators (`+`, `+<`, `-`, `-~`, `~`). [`Tree::adjust`] applies every node's
//! inherited `adjust` rules for a [`Context`]. [`Tree::select`] lists leaf nodes
//! (respecting the `select` directive) filtered by name regexes and [`filter`]
//! expressions. [`dump()`] renders the canonical dump. [`discover()`] resolves tmt
//! plans into the tests an executor runs ([`DiscoveredTests`]).
//!
//! Module map (one job each):
//!
//! | module | job |
//! |---|---|
//! | [`yaml`] | YAML 1.2 loading with ruamel's scalar rules on `yaml-rust2` events (+ a differentially tested fast path for plain files) |
//! | [`value`] | [`Value`]/[`Map`]: ordered, Python-equality keys, shared copy-on-write (cheap inheritance) |
//! | `grow` | root detection, growing (walk, parallel parse, replay in order), inheritance |
//! | `merge` | the merge operators and their type rules |
//! | [`context`] | contexts and the `when` rule language (three-valued) |
//! | `adjust` | applying `adjust` rules to a node |
//! | [`filter`] / [`condition`] | `--filter` expressions / Python-like conditions |
//! | [`dump`](mod@dump) | the canonical dump format and `show` rendering |
//! | [`discover`](mod@discover) | tmt plans (their steps, environment), discover sections, git checkouts, libraries, the executor's data model |
//! | `pyre` | Python `re` syntax on the `regex` and `fancy-regex` engines |
//!
//! Errors are [`FmfError`]; [`FmfError::kind`] is the short kind of the canonical
//! dump, `Display` names the file (and line, when the YAML parser knows it) or node.
//! Nothing panics on input; inputs nested deeper than a few hundred levels and
//! YAML alias bombs are rejected as `yaml` errors.
//!
//! Regular expressions follow Python's `re` syntax: they run on the `regex` crate
//! where it accepts the pattern and on `fancy-regex` (look-around, back-references)
//! otherwise; see `pyre`. Known differences from the reference: `fancy-regex` accepts
//! a few patterns Python refuses (variable-width look-behind, `\K`), and string
//! values of YAML aliases are not shared objects (the reference's aliasing quirk).

mod adjust;
pub mod condition;
pub mod context;
pub mod discover;
pub mod dump;
mod error;
pub mod filter;
mod grow;
mod merge;
mod pyre;
pub mod value;
pub mod yaml;

use std::path::{Path, PathBuf};

pub use context::{Context, Outcome};
pub use discover::{
    DiscoverOptions, DiscoveredTest, DiscoveredTests, FinishStep, PlanData, PrepareStep, discover,
    discover_tree,
};
pub use error::{FmfError, UnsupportedStep};
pub use grow::Node;
pub use pyre::RegexCache;
pub use value::{Key, Map, Timestamp, Value};

use filter::FilterOutcome;

/// A loaded FMF tree (inheritance resolved).
#[derive(Clone, Debug)]
pub struct Tree {
    root: PathBuf,
    nodes: Vec<Node>,
}

impl Tree {
    /// Load the tree containing `path`: walks up to the nearest directory with a
    /// `.fmf/` sub-directory, grows the whole tree from there and resolves
    /// inheritance. Node names are relative to that root.
    pub fn load(path: impl AsRef<Path>) -> Result<Tree, FmfError> {
        let root = grow::find_root(path.as_ref())?;
        let nodes = grow::build(&root)?;
        tracing::debug!(root = %root.display(), nodes = nodes.len(), "fmf tree loaded");
        Ok(Tree { root, nodes })
    }

    /// Build a tree from an in-memory document (what a root `main.fmf` would hold,
    /// including `/child` keys). The root path is empty.
    pub fn from_value(data: Value) -> Result<Tree, FmfError> {
        Ok(Tree {
            root: PathBuf::new(),
            nodes: grow::build_from_value(data)?,
        })
    }

    /// The tree root directory (contains `.fmf/`).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Apply `adjust` rules of every node for `context` (root first, then children
    /// in tree order). Each node uses the rules in its own inherited data.
    pub fn adjust(&mut self, context: &Context) -> Result<(), FmfError> {
        let mut cache = adjust::AdjustCache::default();
        for node in &mut self.nodes {
            let src = node.sources.last().map_or(Path::new(""), |p| &**p);
            adjust::adjust_node(&node.name, src, &mut node.data, context, &mut cache)?;
        }
        Ok(())
    }

    /// All nodes in tree order (root first, depth first, children in insertion order).
    pub fn nodes(&self) -> impl Iterator<Item = &Node> {
        self.nodes.iter()
    }

    /// The root node.
    pub fn root_node(&self) -> Option<&Node> {
        self.nodes.first()
    }

    /// Find a node by its full name.
    pub fn find(&self, name: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.name == name)
    }

    /// Mutable access to a node by full name.
    pub fn find_mut(&mut self, name: &str) -> Option<&mut Node> {
        self.nodes.iter_mut().find(|n| n.name == name)
    }

    /// Children of a node, in insertion order.
    pub fn children<'a>(&'a self, node: &'a Node) -> impl Iterator<Item = &'a Node> + 'a {
        node.children.values().filter_map(|&i| self.nodes.get(i))
    }

    /// Listed nodes (leaves, `select: true` branches, not `select: false` ones) in
    /// the reference's climb order: depth first, children sorted by name per level.
    pub fn selected(&self) -> Vec<&Node> {
        let mut out = Vec::new();
        let mut stack = vec![0usize];
        while let Some(i) = stack.pop() {
            let Some(n) = self.nodes.get(i) else { continue };
            if n.is_selected() {
                out.push(n);
            }
            let mut kids: Vec<(&String, &usize)> = n.children.iter().collect();
            kids.sort_by(|a, b| b.0.cmp(a.0));
            stack.extend(kids.into_iter().map(|(_, &c)| c));
        }
        out
    }

    /// [`Tree::selected`] nodes whose name matches any of `names` (regex search; no
    /// names = all) and that match every filter expression in `filters`.
    pub fn select(&self, names: &[String], filters: &[String]) -> Result<Vec<&Node>, FmfError> {
        self.prune(names, filters, &[])
    }

    /// Like [`Tree::select`], plus Python-like `conditions` (see [`condition`]); a
    /// condition naming a key missing from the data excludes the node.
    pub fn prune(
        &self,
        names: &[String],
        filters: &[String],
        conditions: &[String],
    ) -> Result<Vec<&Node>, FmfError> {
        let mut regexes = RegexCache::new();
        let parsed: Vec<condition::Condition> = conditions
            .iter()
            .map(|c| condition::Condition::parse(c))
            .collect::<Result<_, _>>()?;
        let mut out = Vec::new();
        'nodes: for node in self.selected() {
            if !names.is_empty() {
                let mut any = false;
                for n in names {
                    if regexes.search(n, &node.name)? {
                        any = true;
                    }
                }
                if !any {
                    continue;
                }
            }
            // Every filter is evaluated (errors surface like in the reference);
            // a missing dimension stops and excludes the node.
            let mut all = true;
            for f in filters {
                match filter::apply(f, &node.name, &node.data, &mut regexes)? {
                    FilterOutcome::Match => {}
                    FilterOutcome::NoMatch => all = false,
                    FilterOutcome::Missing(_) => continue 'nodes,
                }
            }
            if !all {
                continue;
            }
            for c in &parsed {
                if c.evaluate(&node.data) != Some(true) {
                    continue 'nodes;
                }
            }
            out.push(node);
        }
        Ok(out)
    }
}

/// Load, adjust, select and render the canonical dump of a tree, as
/// `atex fmf dump` does.
pub fn dump(
    path: impl AsRef<Path>,
    context: &Context,
    filters: &[String],
    names: &[String],
) -> Result<String, FmfError> {
    let mut tree = Tree::load(path)?;
    let t0 = std::time::Instant::now();
    tree.adjust(context)?;
    tracing::debug!(adjust = ?t0.elapsed(), "fmf adjust");
    tree.dump(filters, names)
}

impl Tree {
    /// The canonical dump of the listed nodes matching `filters` and `names` (call
    /// [`Tree::adjust`] first for adjusted data).
    pub fn dump(&self, filters: &[String], names: &[String]) -> Result<String, FmfError> {
        let t0 = std::time::Instant::now();
        let nodes = self.select(names, filters)?;
        let t1 = std::time::Instant::now();
        let out = dump::dump_nodes(nodes.iter().map(|n| (n.name.as_str(), &n.data)));
        tracing::debug!(select = ?(t1 - t0), dump = ?t1.elapsed(), "fmf dump");
        out
    }
}
