//! The filter expression language (`--filter 'tag: fast & tier: 1 | tag: smoke'`).
//!
//! Semantics follow `fmf.utils.filter(..., regexp=True)`: `|` separates clauses
//! (OR), `&` literals (AND), `\|`/`\&` escape them; `dim: v1, -v2` matches data
//! values (stringified Python-style) against `^v$` with `re.match`; a literal
//! without `:` searches the node name. A dimension missing from the data makes the
//! whole filter fail for that node ([`FilterOutcome::Missing`]).

use super::error::FmfError;
use super::pyre::RegexCache;
use super::value::{Map, Value};

/// Result of applying one filter to one node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FilterOutcome {
    /// The filter matches.
    Match,
    /// The filter does not match.
    NoMatch,
    /// A dimension used by the filter is missing in the node data (node excluded).
    Missing(String),
}

/// Split on unescaped `sep`, trimming whitespace around each separator only.
fn split_unescaped(s: &str, sep: char) -> Vec<String> {
    let mut parts = Vec::new();
    let mut current = String::new();
    let mut prev: Option<char> = None;
    let mut after_sep = false;
    for c in s.chars() {
        if after_sep {
            if c.is_whitespace() {
                continue;
            }
            after_sep = false;
        }
        if c == sep && prev != Some('\\') {
            let trimmed_len = current.trim_end().len();
            current.truncate(trimmed_len);
            parts.push(std::mem::take(&mut current));
            after_sep = true;
            prev = Some(c);
            continue;
        }
        current.push(c);
        prev = Some(c);
    }
    parts.push(current);
    parts
}

/// Split values on commas with surrounding whitespace (`re.split(r"\s*,\s*")`).
fn split_values(s: &str) -> Vec<&str> {
    let pieces: Vec<&str> = s.split(',').collect();
    let n = pieces.len();
    pieces
        .into_iter()
        .enumerate()
        .map(|(i, p)| {
            let p = if i > 0 { p.trim_start() } else { p };
            if i + 1 < n { p.trim_end() } else { p }
        })
        .collect()
}

fn stringify(value: &Value) -> Vec<String> {
    match value {
        Value::List(items) => items.iter().map(Value::python_str).collect(),
        other => vec![other.python_str()],
    }
}

/// Parse `DIM: VALUES`; `None` if the literal is a name pattern.
fn split_literal(literal: &str) -> Option<(&str, &str)> {
    let pos = literal.find(':')?;
    let dim = &literal[..pos];
    let mut value = literal[pos + 1..].trim_start();
    if let Some(v) = value.strip_suffix('\n') {
        value = v;
    }
    if value.contains('\n') {
        return None;
    }
    Some((dim, value))
}

/// Apply one filter expression to a node's data (`name` is the node name).
pub fn apply(
    filter: &str,
    name: &str,
    data: &Map,
    regexes: &mut RegexCache,
) -> Result<FilterOutcome, FmfError> {
    if filter.is_empty() {
        return Ok(FilterOutcome::Match);
    }
    let mut any = false;
    for clause in split_unescaped(filter, '|') {
        let clause = clause.replace("\\|", "|");
        match check_clause(&clause, name, data, regexes)? {
            FilterOutcome::Match => any = true,
            FilterOutcome::NoMatch => {}
            missing @ FilterOutcome::Missing(_) => return Ok(missing),
        }
    }
    Ok(if any {
        FilterOutcome::Match
    } else {
        FilterOutcome::NoMatch
    })
}

/// Convenience: whether `filter` matches (a missing dimension counts as no match).
pub fn matches(filter: &str, name: &str, data: &Map) -> Result<bool, FmfError> {
    let mut cache = RegexCache::new();
    Ok(apply(filter, name, data, &mut cache)? == FilterOutcome::Match)
}

fn check_clause(
    clause: &str,
    name: &str,
    data: &Map,
    regexes: &mut RegexCache,
) -> Result<FilterOutcome, FmfError> {
    let mut dims: Vec<(String, Vec<String>)> = Vec::new();
    for literal in split_unescaped(clause, '&') {
        let literal = literal.replace("\\&", "&");
        match split_literal(&literal) {
            None => {
                if !regexes.search(&literal, name)? {
                    return Ok(FilterOutcome::NoMatch);
                }
            }
            Some((dim, value)) => match dims.iter_mut().find(|(d, _)| d == dim) {
                Some((_, vals)) => vals.push(value.to_string()),
                None => dims.push((dim.to_string(), vec![value.to_string()])),
            },
        }
    }
    let mut all = true;
    for (dim, values) in &dims {
        let Some(v) = data.get(dim) else {
            return Ok(FilterOutcome::Missing(dim.clone()));
        };
        let strings = stringify(v);
        for value in values {
            if !check_value(value, &strings, regexes)? {
                all = false;
            }
        }
    }
    Ok(if all {
        FilterOutcome::Match
    } else {
        FilterOutcome::NoMatch
    })
}

fn check_value(value: &str, data: &[String], regexes: &mut RegexCache) -> Result<bool, FmfError> {
    for atom in split_values(value) {
        if let Some(neg) = atom.strip_prefix('-') {
            let pattern = format!("^{neg}$");
            let mut found = false;
            for d in data {
                if regexes.is_match_start(&pattern, d)? {
                    found = true;
                    break;
                }
            }
            if !found {
                return Ok(true);
            }
        } else {
            let pattern = format!("^{atom}$");
            for d in data {
                if regexes.is_match_start(&pattern, d)? {
                    return Ok(true);
                }
            }
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data() -> Map {
        let mut m = Map::new();
        m.insert(
            "tag",
            Value::from(vec![Value::from("fast"), Value::from("smoke")]),
        );
        m.insert("tier", Value::Int(1));
        m.insert("enabled", Value::Bool(true));
        m
    }

    #[test]
    fn basics() -> Result<(), FmfError> {
        let d = data();
        assert!(matches("tag: fast", "/t1", &d)?);
        assert!(matches("tag: -slow", "/t1", &d)?);
        assert!(!matches("tag: -fast", "/t1", &d)?);
        assert!(matches("tag: fast & tier: 1", "/t1", &d)?);
        assert!(matches("enabled: True", "/t1", &d)?);
        assert!(!matches("enabled: true", "/t1", &d)?);
        assert!(matches("tag: fa\\|bar", "/t1", &d)?);
        assert!(matches("/t & tier: 1", "/t1", &d)?);
        assert!(!matches("tier: 3 | nothere: x", "/t1", &d)?);
        assert!(matches("", "/t1", &d)?);
        assert!(matches("tag: (unclosed", "/t1", &d).is_err());
        Ok(())
    }

    #[test]
    fn splitting() {
        assert_eq!(
            split_unescaped("a | b\\|c |d", '|'),
            vec!["a", "b\\|c", "d"]
        );
        assert_eq!(split_values("a , b,c"), vec!["a", "b", "c"]);
    }
}
