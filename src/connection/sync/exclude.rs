//! [`ExcludePattern`]: rsync-style exclude patterns for [`DirSync`](super::DirSync).

use std::path::{Component, Path};

use regex::bytes::Regex;

/// One exclude pattern, matched like rsync's `--exclude`:
///
/// * a trailing `/` matches directories only (`.git/`);
/// * a pattern without any other `/` matches the last name of a path at any depth
///   (`*.pyc`, `.git/`);
/// * a pattern with a `/` inside (or a leading `/`) matches the whole path relative to the
///   synced directory (`/build`, `docs/tmp`);
/// * `*` matches any run of characters except `/`, `**` any run including `/`, `?` one
///   character except `/`; everything else matches itself.
///
/// An excluded directory excludes everything below it.
#[derive(Debug, Clone)]
pub struct ExcludePattern {
    text: String,
    regex: Regex,
    dir_only: bool,
    anchored: bool,
}

/// A bad exclude pattern.
#[derive(Debug, thiserror::Error)]
#[error("bad exclude pattern '{pattern}': {reason}")]
pub struct PatternError {
    /// The pattern as given.
    pub pattern: String,
    /// What is wrong with it.
    pub reason: String,
}

impl ExcludePattern {
    /// Parses `pattern` (see the type's docs). Empty patterns and `/` alone are refused.
    pub fn new(pattern: &str) -> Result<Self, PatternError> {
        let bad = |reason: &str| PatternError {
            pattern: pattern.to_string(),
            reason: reason.to_string(),
        };
        let (body, dir_only) = match pattern.strip_suffix('/') {
            Some(b) => (b, true),
            None => (pattern, false),
        };
        let anchored = body.contains('/');
        let body = body.strip_prefix('/').unwrap_or(body);
        if body.is_empty() {
            return Err(bad("it matches nothing"));
        }
        if body.contains('\0') {
            return Err(bad("it holds a NUL byte"));
        }
        let mut re = String::from("^");
        let mut chars = body.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '*' if chars.peek() == Some(&'*') => {
                    chars.next();
                    re.push_str(".*");
                }
                '*' => re.push_str("[^/]*"),
                '?' => re.push_str("[^/]"),
                other => re.push_str(&regex::escape(other.encode_utf8(&mut [0; 4]))),
            }
        }
        re.push('$');
        let regex = regex::bytes::RegexBuilder::new(&re)
            .unicode(false)
            .dot_matches_new_line(true)
            .build()
            .map_err(|e| bad(&e.to_string()))?;
        Ok(Self {
            text: pattern.to_string(),
            regex,
            dir_only,
            anchored,
        })
    }

    /// The pattern as given.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether the entry at `rel` (relative to the synced directory; a directory when
    /// `is_dir`) matches this pattern itself (ancestors are not looked at).
    pub fn matches(&self, rel: &Path, is_dir: bool) -> bool {
        use std::os::unix::ffi::OsStrExt as _;
        if self.dir_only && !is_dir {
            return false;
        }
        if self.anchored {
            self.regex.is_match(rel.as_os_str().as_bytes())
        } else {
            rel.file_name()
                .is_some_and(|n| self.regex.is_match(n.as_bytes()))
        }
    }
}

/// Whether `rel` (a directory when `is_dir`) or one of its ancestor directories matches
/// one of `patterns`.
pub(super) fn excluded(patterns: &[ExcludePattern], rel: &Path, is_dir: bool) -> bool {
    if patterns.is_empty() {
        return false;
    }
    let mut prefix = std::path::PathBuf::new();
    let count = rel.components().count();
    for (i, comp) in rel.components().enumerate() {
        if let Component::Normal(name) = comp {
            prefix.push(name);
        }
        let dir = i + 1 < count || is_dir;
        if patterns.iter().any(|p| p.matches(&prefix, dir)) {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pats(p: &[&str]) -> Vec<ExcludePattern> {
        p.iter().map(|p| ExcludePattern::new(p).unwrap()).collect()
    }

    #[test]
    fn dir_only_names_match_at_any_depth() {
        let p = pats(&[".git/"]);
        assert!(excluded(&p, Path::new(".git"), true));
        assert!(excluded(&p, Path::new(".git/config"), false));
        assert!(excluded(&p, Path::new("sub/.git/HEAD"), false));
        assert!(!excluded(&p, Path::new(".git"), false), "a file named .git");
        assert!(!excluded(&p, Path::new(".gitignore"), false));
    }

    #[test]
    fn globs_and_anchors() {
        let p = pats(&["*.pyc", "/build", "docs/**/tmp"]);
        assert!(excluded(&p, Path::new("a/b/x.pyc"), false));
        assert!(!excluded(&p, Path::new("a/b/x.py"), false));
        assert!(excluded(&p, Path::new("build/out"), false));
        assert!(!excluded(&p, Path::new("src/build"), false));
        assert!(excluded(&p, Path::new("docs/a/b/tmp"), true));
        assert!(!excluded(&p, Path::new("docs/tmp"), true));
    }

    #[test]
    fn empty_patterns_are_refused() {
        assert!(ExcludePattern::new("").is_err());
        assert!(ExcludePattern::new("/").is_err());
        let e = ExcludePattern::new("//").unwrap_err();
        assert!(e.to_string().contains("'//'"), "{e}");
    }
}
