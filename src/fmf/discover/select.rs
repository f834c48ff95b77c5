//! Which nodes of a section are tests: `link` needles and the test markers (`test`,
//! `enabled`, `manual`, `story`).

use crate::fmf::Node;
use crate::fmf::error::FmfError;
use crate::fmf::pyre::RegexCache;
use crate::fmf::value::Value;

/// A key's value as a list of strings (a scalar is a one-element list).
pub(super) fn strings_of(v: &Value) -> Vec<String> {
    match v {
        Value::List(l) => l.iter().map(Value::python_str).collect(),
        Value::Null => Vec::new(),
        other => vec![other.python_str()],
    }
}

/// tmt link relations (a `relation:` prefix in a discover `link` needle).
const LINK_RELATIONS: [&str; 16] = [
    "verifies",
    "verified-by",
    "implements",
    "implemented-by",
    "documents",
    "documented-by",
    "blocks",
    "blocked-by",
    "duplicates",
    "duplicated-by",
    "parent",
    "child",
    "relates",
    "test-script",
    "note",
    "required-by",
];

/// Whether any of the node's `link`s matches any needle (`[RELATION:]TARGET`,
/// both regular expressions searched in the link's relation and target).
pub(super) fn matches_links(
    needles: &[String],
    node: &Node,
    re: &mut RegexCache,
) -> Result<bool, FmfError> {
    let mut links: Vec<(String, String)> = Vec::new();
    let items: Vec<&Value> = match node.data.get("link") {
        None | Some(Value::Null) => return Ok(false),
        Some(Value::List(l)) => l.iter().collect(),
        Some(other) => vec![other],
    };
    for item in items {
        match item {
            Value::Str(t) => links.push(("relates".into(), t.to_string())),
            Value::Map(m) => {
                for (k, v) in m.iter() {
                    let rel = k.0.python_str();
                    if rel != "note" {
                        links.push((rel, v.python_str()));
                    }
                }
            }
            _ => {}
        }
    }
    for needle in needles {
        let (relation, target) = match needle.split_once(':') {
            Some((r, t)) if LINK_RELATIONS.iter().any(|x| re_full(re, r, x)) => (Some(r), t),
            _ => (None, needle.as_str()),
        };
        for (rel, tgt) in &links {
            let rel_ok = match relation {
                Some(r) => re.search(&format!("^(?:{r})$"), rel)?,
                None => true,
            };
            if rel_ok && re.search(target, tgt)? {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

/// Whether `pattern` (a relation name or a regex) could name `relation`.
fn re_full(re: &mut RegexCache, pattern: &str, relation: &str) -> bool {
    re.search(&format!(r"\A(?:{pattern})\Z"), relation)
        .unwrap_or(false)
}

/// Whether the node is a test discovery selects: it has `test`, is not `enabled: false`
/// or `manual: true`, and is no `story`.
pub(super) fn is_test(node: &Node) -> bool {
    let d = &node.data;
    d.contains_key("test")
        && !matches!(d.get("enabled"), Some(Value::Bool(false)))
        && !matches!(d.get("manual"), Some(Value::Bool(true)))
        && !d.contains_key("story")
}
