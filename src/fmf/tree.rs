//! [`Tree`]: a loaded FMF tree, its `adjust`, selection and dump.

use std::path::{Path, PathBuf};

use super::condition;
use super::context::Context;
use super::error::FmfError;
use super::filter::{self, FilterOutcome};
use super::node::Node;
use super::pyre::RegexCache;
use super::value::Value;
use super::{adjust, grow};

/// A loaded FMF tree (inheritance resolved).
#[derive(Clone, Debug)]
pub struct Tree {
    pub(super) root: PathBuf,
    pub(super) nodes: Vec<Node>,
}

/// Below this many nodes, adjusting on one thread is faster than starting others.
const PARALLEL_ADJUST_MIN_NODES: usize = 1024;

/// Applies `adjust` to `nodes` in order, stopping at the first error.
fn adjust_nodes(nodes: &mut [Node], context: &Context) -> Result<(), FmfError> {
    let mut cache = adjust::AdjustCache::default();
    for node in nodes {
        let src = node.sources.last().map_or(Path::new(""), |p| &**p);
        adjust::adjust_node(&node.name, src, &mut node.data, context, &mut cache)?;
    }
    Ok(())
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

    /// Apply `adjust` rules of every node for `context`. Each node uses the rules in its
    /// own inherited data, so nodes do not depend on each other; large trees are adjusted
    /// on all cores. When rules fail on several nodes, the error names the first of them in
    /// tree order (root first); the tree is then partly adjusted.
    pub fn adjust(&mut self, context: &Context) -> Result<(), FmfError> {
        let threads = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .min(8);
        if threads <= 1 || self.nodes.len() < PARALLEL_ADJUST_MIN_NODES {
            return adjust_nodes(&mut self.nodes, context);
        }
        let chunk = self.nodes.len().div_ceil(threads);
        std::thread::scope(|scope| {
            let mut parts = self.nodes.chunks_mut(chunk);
            let first = parts.next();
            let others: Vec<_> = parts
                .map(|part| scope.spawn(move || adjust_nodes(part, context)))
                .collect();
            // Chunks are in tree order: the first error found in that order wins.
            let mut result = first.map_or(Ok(()), |part| adjust_nodes(part, context));
            for other in others {
                let outcome = other
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
                if result.is_ok() {
                    result = outcome;
                }
            }
            result
        })
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
        let out = super::dump::dump_nodes(nodes.iter().map(|n| (n.name.as_str(), &n.data)));
        tracing::debug!(select = ?(t1 - t0), dump = ?t1.elapsed(), "fmf dump");
        out
    }
}
