//! [`DiscoverOptions`]: what to discover.

use std::path::PathBuf;

use crate::fmf::context::Context;

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
    /// Python-like conditions over test data (see [`crate::fmf::condition`]).
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
    /// [`FmfError::UnsupportedSteps`](crate::fmf::FmfError::UnsupportedSteps) (default false).
    pub skip_unsupported_steps: bool,
    /// Directories outside the tree that a library requirement's `path` may name (the
    /// directories and everything under them, after symlinks). A tree's metadata never
    /// reads files outside the tree otherwise: a library `path` that resolves outside it is
    /// refused with [`FmfError::LibraryPath`](crate::fmf::FmfError::LibraryPath) (default
    /// empty). Each directory must exist.
    pub library_paths: Vec<PathBuf>,
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
            library_paths: Vec::new(),
        }
    }
}
