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
//! `environment-file` entries must be files inside the plan's tree. A library's `path`
//! must resolve inside the tree or inside a directory of
//! [`DiscoverOptions::library_paths`]; with `url`, inside the library's repository.
//!
//! Files, in the order discovery uses them:
//!
//! | file | job |
//! |---|---|
//! | `options.rs` | [`DiscoverOptions`]: what to discover |
//! | `run.rs` | [`discover`]: pick the plan, run its `discover` sections, assemble the result |
//! | `plan.rs` | the plan's steps ([`PlanData`], [`PrepareStep`], [`FinishStep`]), environment, `environment-file`s, paths kept inside the tree |
//! | `section.rs` | where one discover section's tree comes from (`url`, `ref`, `path`, `modified-only`) |
//! | `git.rs` | cached clones, `ref` checkouts, `modified-only` directories |
//! | `select.rs` | which nodes of a section are tests (`link` needles, `enabled`, `manual`, `story`) |
//! | `library.rs` | beakerlib libraries from `require` |
//! | `files.rs` | copying test trees and libraries into the result's directory |
//! | `discovered.rs` | the result: [`DiscoveredTests`], [`DiscoveredTest`] |
//! | `json.rs` | metadata as JSON: list-like keys, Python `str()` of values, environments |

mod discovered;
mod files;
mod git;
mod json;
mod library;
mod options;
mod plan;
mod run;
mod section;
mod select;

pub use discovered::{DiscoveredTest, DiscoveredTests};
pub use options::DiscoverOptions;
pub use plan::{FinishStep, PlanData, PrepareStep};
pub use run::{discover, discover_tree};
