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
//! | `tree` / `node` | [`Tree`] (load, adjust, select, dump) and its [`Node`]s |
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
mod node;
mod pyre;
mod tree;
pub mod value;
pub mod yaml;

pub use context::{Context, Outcome, PairError};
pub use discover::{
    DiscoverOptions, DiscoveredTest, DiscoveredTests, FinishStep, PlanData, PrepareStep, discover,
    discover_tree,
};
pub use error::{FmfError, UnsupportedStep};
pub use node::Node;
pub use pyre::RegexCache;
pub use tree::{Tree, dump};
pub use value::{Key, Map, Timestamp, Value};
