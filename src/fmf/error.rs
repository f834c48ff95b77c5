//! Error type of the FMF engine.

use std::path::PathBuf;

/// Everything that can go wrong while loading, resolving, filtering or discovering.
///
/// [`FmfError::kind`] gives the short error kind of the canonical dump
/// (`{"error":"KIND"}`); `Display` gives a human message naming the file (and the
/// line where the YAML parser knows it) or the node.
#[derive(Debug, thiserror::Error)]
pub enum FmfError {
    /// No `.fmf/` directory in the path or any ancestor.
    #[error("unable to find fmf tree root for '{}'", path.display())]
    Root {
        /// The path given.
        path: PathBuf,
    },
    /// `.fmf/version` missing or not an integer.
    #[error("{}: {message}", path.display())]
    Version {
        /// The version file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// `.fmf/config` is not valid YAML.
    #[error("{}{}: {message}", path.display(), fmt_line(*line))]
    Config {
        /// The config file.
        path: PathBuf,
        /// Line (1-based) if known.
        line: Option<usize>,
        /// Parser message.
        message: String,
    },
    /// Generic problem (e.g. `explore.include` is not a list).
    #[error("{message}")]
    General {
        /// What is wrong.
        message: String,
    },
    /// An `.fmf` file is not one valid YAML document.
    #[error("{}{}: {message}", path.display(), fmt_line(*line))]
    Yaml {
        /// The file.
        path: PathBuf,
        /// Line (1-based) if known.
        line: Option<usize>,
        /// Parser message.
        message: String,
    },
    /// An `.fmf` file is not valid UTF-8.
    #[error("{}: invalid UTF-8", path.display())]
    Encoding {
        /// The file.
        path: PathBuf,
    },
    /// Reading a file or directory failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A document or node-level key of an unsupported type.
    #[error("{}: {message}", path.display())]
    Data {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A `null` key at node level.
    #[error("{}: invalid key 'None' in node '{node}'", path.display())]
    Key {
        /// The file.
        path: PathBuf,
        /// The node.
        node: String,
    },
    /// A bad `/` directive block.
    #[error("{}: invalid fmf directive in '{node}': {message}", path.display())]
    Directive {
        /// The file.
        path: PathBuf,
        /// The node.
        node: String,
        /// What is wrong.
        message: String,
    },
    /// A merge operator applied to incompatible types.
    #[error("merge error in node '{node}' ({source_file}), key '{key}': {message}")]
    Merge {
        /// The node.
        node: String,
        /// The last source file of the node.
        source_file: String,
        /// The base key.
        key: String,
        /// What is wrong.
        message: String,
    },
    /// A malformed `~` substitution string.
    #[error("bad substitution in node '{node}' ({source_file}): {message}")]
    Pattern {
        /// The node.
        node: String,
        /// The last source file of the node.
        source_file: String,
        /// What is wrong.
        message: String,
    },
    /// Bad `adjust` structure.
    #[error("invalid adjust in node '{node}' ({source_file}): {message}")]
    Adjust {
        /// The node.
        node: String,
        /// The last source file of the node.
        source_file: String,
        /// What is wrong.
        message: String,
    },
    /// A `when` rule with a syntax error.
    #[error("invalid rule '{rule}' in node '{node}' ({source_file}): {message}")]
    Rule {
        /// The node.
        node: String,
        /// The last source file of the node.
        source_file: String,
        /// The rule text.
        rule: String,
        /// What is wrong.
        message: String,
    },
    /// An invalid regular expression (filter, `--names`, merge operator).
    #[error("invalid regular expression '{pattern}': {message}")]
    Regex {
        /// The pattern.
        pattern: String,
        /// Compiler message.
        message: String,
    },
    /// A filter or condition expression that cannot be parsed.
    #[error("invalid filter or condition '{expr}': {message}")]
    Filter {
        /// The expression.
        expr: String,
        /// What is wrong.
        message: String,
    },
    /// A value with no canonical JSON form.
    #[error("cannot dump node '{node}': {message}")]
    Dump {
        /// The node.
        node: String,
        /// What is wrong.
        message: String,
    },
    /// Bad command-line usage (e.g. `--context` without `=`).
    #[error("usage: {message}")]
    Usage {
        /// What is wrong.
        message: String,
    },
    /// A tmt plan problem during discovery.
    #[error("plan error: {message}")]
    Plan {
        /// What is wrong.
        message: String,
    },
    /// Fetching a remote tree or library failed.
    #[error("fetch error: {message}")]
    Fetch {
        /// What is wrong.
        message: String,
    },
    /// The plan has steps atex cannot run (a `prepare` other than `install`/`shell`,
    /// a `finish` other than `shell`, a `discover` other than `fmf`, an `execute`
    /// other than `tmt`); see `DiscoverOptions::skip_unsupported_steps`.
    #[error(
        "plan '{plan}' has steps atex cannot run: {}; remove them or skip them \
         (`atex run --skip-unsupported-steps`)",
        fmt_steps(steps)
    )]
    UnsupportedSteps {
        /// The plan name.
        plan: String,
        /// The steps, in plan order (`discover`, `prepare`, `execute`, `finish`).
        steps: Vec<UnsupportedStep>,
    },
    /// A plan key whose value atex refuses (a `path` or `environment-file` outside
    /// the tree, an unknown `ref`, `modified-only` without git…).
    #[error("plan '{plan}': {key} '{value}': {message}")]
    PlanKey {
        /// The plan name.
        plan: String,
        /// The key, with its step when it has one (`discover path`, `environment-file`).
        key: String,
        /// The offending value.
        value: String,
        /// What is wrong.
        message: String,
    },
    /// A library requirement's `path` that atex refuses: it resolves (after symlinks)
    /// outside the test tree and outside every directory the user allowed
    /// (`DiscoverOptions::library_paths`), or, for a library fetched with `url`, outside
    /// its repository; or it cannot be resolved at all.
    #[error("{test}: library '{library}': path '{path}' {message}")]
    LibraryPath {
        /// The test (or library) whose `require` names it.
        test: String,
        /// The library: its nick and name (`nick/name`).
        library: String,
        /// The `path` as written.
        path: String,
        /// What is wrong with it (where it resolves to, and what it must stay in).
        message: String,
    },
}

/// One plan step atex cannot run (see [`FmfError::UnsupportedSteps`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnsupportedStep {
    /// The step: `discover`, `prepare`, `execute` or `finish`.
    pub step: String,
    /// The phase's `name`, or its 1-based position in the step when it has none.
    pub phase: String,
    /// The phase's `how`.
    pub how: String,
}

impl std::fmt::Display for UnsupportedStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} '{}' (how: {})", self.step, self.phase, self.how)
    }
}

fn fmt_steps(steps: &[UnsupportedStep]) -> String {
    steps
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

fn fmt_line(line: Option<usize>) -> String {
    line.map(|l| format!(":{l}")).unwrap_or_default()
}

impl FmfError {
    /// The short error kind used by the canonical dump (`root`, `yaml`, `merge`…).
    pub fn kind(&self) -> &'static str {
        match self {
            FmfError::Root { .. } => "root",
            FmfError::Version { .. } => "version",
            FmfError::Config { .. } => "config",
            FmfError::General { .. } => "general",
            FmfError::Yaml { .. } => "yaml",
            FmfError::Encoding { .. } => "encoding",
            FmfError::Io { .. } => "format",
            FmfError::Data { .. } => "data",
            FmfError::Key { .. } => "key",
            FmfError::Directive { .. } => "directive",
            FmfError::Merge { .. } => "merge",
            FmfError::Pattern { .. } => "pattern",
            FmfError::Adjust { .. } => "adjust",
            FmfError::Rule { .. } => "rule",
            FmfError::Regex { .. } => "regex",
            FmfError::Filter { .. } => "format",
            FmfError::Dump { .. } => "dump",
            FmfError::Usage { .. } => "usage",
            FmfError::Plan { .. } => "plan",
            FmfError::Fetch { .. } => "fetch",
            FmfError::UnsupportedSteps { .. }
            | FmfError::PlanKey { .. }
            | FmfError::LibraryPath { .. } => "plan",
        }
    }
}
