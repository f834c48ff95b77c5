//! [`Node`]: one node of a resolved tree.

use std::path::Path;
use std::sync::Arc;

use indexmap::IndexMap;

use super::value::Map;

/// One node of a resolved tree.
#[derive(Clone, Debug)]
pub struct Node {
    pub(crate) name: String,
    pub(crate) parent: Option<usize>,
    pub(crate) children: IndexMap<String, usize>,
    pub(crate) data: Map,
    pub(crate) sources: Vec<Arc<Path>>,
    pub(crate) select: Option<bool>,
    pub(crate) inherit: Option<bool>,
}

impl Node {
    /// Full node name (`/`, `/tests/smoke`).
    pub fn name(&self) -> &str {
        &self.name
    }
    /// Resolved data (after inheritance, and after adjust once applied).
    pub fn data(&self) -> &Map {
        &self.data
    }
    /// Mutable resolved data.
    pub fn data_mut(&mut self) -> &mut Map {
        &mut self.data
    }
    /// Source files that contributed, ancestors' first (as Python `fmf` lists them).
    pub fn sources(&self) -> &[Arc<Path>] {
        &self.sources
    }
    /// Whether the node has children.
    pub fn is_leaf(&self) -> bool {
        self.children.is_empty()
    }
    /// Whether listings include this node: the `select` directive if given,
    /// otherwise "has no children".
    pub fn is_selected(&self) -> bool {
        self.select.unwrap_or(self.children.is_empty())
    }
    /// Index of the parent node in [`Tree::nodes`](super::Tree::nodes) order (`None` for the root).
    pub fn parent_index(&self) -> Option<usize> {
        self.parent
    }
    /// The `inherit` directive, if given.
    pub fn inherit_directive(&self) -> Option<bool> {
        self.inherit
    }
    /// The `select` directive, if given.
    pub fn select_directive(&self) -> Option<bool> {
        self.select
    }
    /// Names of direct children in insertion order.
    pub fn child_names(&self) -> impl Iterator<Item = &str> {
        self.children.keys().map(String::as_str)
    }
}
