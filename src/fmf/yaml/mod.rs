//! YAML loading with the reference's (`ruamel.yaml` safe loader) YAML 1.2 rules.
//!
//! `yaml-rust2` supplies the event stream (syntax, anchors, tags, positions); this
//! module builds [`Value`](crate::fmf::Value)s from it with its own scalar resolution, so the result
//! matches the Python library: YAML 1.2 booleans/ints/floats, dates, `=` and unknown
//! tags rejected, duplicate keys (with Python key equality) rejected, `<<` merge keys,
//! a `%YAML 1.1` directive switching a file to 1.1 rules. Only one document per
//! stream is allowed.
//!
//! Files: `load.rs` builds values from the event stream; `resolve.rs` resolves scalars
//! (implicit types of plain scalars, explicit `!!` tags), with `timestamp.rs` for YAML
//! timestamps; `fast.rs` is the fast path for plain files, which resolves its scalars with
//! the same rules.

mod fast;
mod load;
mod resolve;
#[cfg(test)]
mod tests;
mod timestamp;

pub use load::{load, load_fast_path, load_full};

/// A YAML problem with its (1-based) line, when known: the leaf of an error chain (the
/// scanner's message, a structural problem, or a scalar that cannot be resolved).
#[derive(Debug, Clone, PartialEq)]
pub struct YamlError {
    /// Line (1-based) where the problem was detected, if known.
    pub line: Option<usize>,
    /// Description.
    pub message: String,
}

impl std::fmt::Display for YamlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.line {
            Some(l) => write!(f, "line {l}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}
