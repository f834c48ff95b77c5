//! The test-artifacts layout shared by executors and aggregators.
//!
//! A test's artifacts directory holds:
//!
//! ```text
//! <artifacts>/results     JSON Lines, one JSON object per reported result
//! <artifacts>/files/      files uploaded by the test (may contain subdirectories)
//! ```
//!
//! A path `p` listed in a result named `n` lives at `files/<n>/<p>`, or at `files/<p>`
//! for a nameless result. Both parts go through [`normalize_name`] first, so a hostile
//! name such as `../../etc/passwd` can never leave the `files/` directory.

use std::path::{Component, Path, PathBuf};

/// File name of the JSON-lines results file inside an artifacts directory.
pub const RESULTS_FILE: &str = "results";
/// Directory name of the uploaded files inside an artifacts directory.
pub const FILES_DIR: &str = "files";

/// Turns a result or file name into a relative path that cannot escape its base directory.
///
/// Every C0 control character, DEL and C1 control character is replaced by `_`; the name
/// is split on `/`; the root, empty components, `.` and `..` are dropped (not resolved).
/// An empty result means "the base directory itself".
///
/// ```
/// use atex::artifacts::normalize_name;
/// use std::path::PathBuf;
/// assert_eq!(normalize_name("/abs/x"), PathBuf::from("abs/x"));
/// assert_eq!(normalize_name("../../etc/passwd"), PathBuf::from("etc/passwd"));
/// assert_eq!(normalize_name("sub/../x"), PathBuf::from("sub/x"));
/// assert_eq!(normalize_name("a//b"), PathBuf::from("a/b"));
/// assert_eq!(normalize_name("a\nb"), PathBuf::from("a_b"));
/// assert_eq!(normalize_name("/"), PathBuf::new());
/// ```
pub fn normalize_name(name: &str) -> PathBuf {
    let cleaned: String = name
        .chars()
        .map(|c| {
            let cp = c as u32;
            if cp < 0x20 || (0x7f..=0x9f).contains(&cp) {
                '_'
            } else {
                c
            }
        })
        .collect();
    let mut out = PathBuf::new();
    for part in cleaned.split('/') {
        if part.is_empty() || part == "." || part == ".." {
            continue;
        }
        out.push(part);
    }
    out
}

/// Where a file named `file` that belongs to the result named `result_name` (`None` for
/// the test's own, nameless result) lives, relative to the `files/` directory.
///
/// ```
/// use atex::artifacts::file_location;
/// use std::path::PathBuf;
/// assert_eq!(file_location(Some("sub/one"), "log"), PathBuf::from("sub/one/log"));
/// assert_eq!(file_location(None, "../out.txt"), PathBuf::from("out.txt"));
/// ```
pub fn file_location(result_name: Option<&str>, file: &str) -> PathBuf {
    let mut path = match result_name {
        Some(name) => normalize_name(name),
        None => PathBuf::new(),
    };
    path.push(normalize_name(file));
    path
}

/// Returns true when `path` is relative and has only normal components, that is when
/// joining it to a base directory can never point outside that directory.
pub fn is_contained(path: &Path) -> bool {
    path.components().all(|c| matches!(c, Component::Normal(_)))
}

/// Paths of one test's artifacts directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArtifactsDir {
    root: PathBuf,
}

impl ArtifactsDir {
    /// Wraps an existing directory.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The directory itself.
    pub fn path(&self) -> &Path {
        &self.root
    }

    /// `<root>/results`.
    pub fn results(&self) -> PathBuf {
        self.root.join(RESULTS_FILE)
    }

    /// `<root>/files`.
    pub fn files(&self) -> PathBuf {
        self.root.join(FILES_DIR)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_replaced() {
        assert_eq!(
            normalize_name("a\u{7f}b\u{85}c\u{0}"),
            PathBuf::from("a_b_c_")
        );
    }

    #[test]
    fn only_dots_is_empty() {
        assert_eq!(normalize_name("../.././/"), PathBuf::new());
        assert!(is_contained(&normalize_name("../../x")));
    }
}
