//! The canonical dump format (`atex fmf dump`), byte-compatible with the reference
//! oracle: one line, sorted keys, ASCII-only escapes, Python float `repr`.

use std::borrow::Cow;
use std::fmt::Write as _;

use super::error::FmfError;
use super::value::{Map, Value, key_text, python_float_repr};

/// A value with no canonical JSON form: the source of [`FmfError::Dump`].
#[derive(Debug, thiserror::Error)]
enum DumpError {
    #[error("key {0} cannot be dumped")]
    Key(String),
    #[error("duplicate key '{0}' after conversion")]
    DuplicateKey(String),
    #[error("{0} cannot be dumped")]
    Value(String),
}

/// Serialise listed nodes as `{"nodes":[{"data":{…},"name":"/a"},…]}` plus `\n`.
///
/// `nodes` are `(name, data)` pairs; they are sorted by name here and the top-level
/// `adjust` key is left out of each node's data.
pub fn dump_nodes<'a, I>(nodes: I) -> Result<String, FmfError>
where
    I: IntoIterator<Item = (&'a str, &'a Map)>,
{
    let mut nodes: Vec<(&str, &Map)> = nodes.into_iter().collect();
    nodes.sort_by(|a, b| a.0.cmp(b.0));
    let mut out = String::from("{\"nodes\":[");
    for (i, (name, data)) in nodes.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str("{\"data\":");
        write_map(&mut out, data, true).map_err(|e| FmfError::Dump {
            node: name.to_string(),
            source: Box::new(e),
        })?;
        out.push_str(",\"name\":");
        write_str(&mut out, name);
        out.push('}');
    }
    out.push_str("]}\n");
    Ok(out)
}

/// The canonical JSON text of one value (no trailing newline).
pub fn canonical_json(value: &Value) -> Result<String, FmfError> {
    let mut out = String::new();
    write_value(&mut out, value).map_err(|e| FmfError::Dump {
        node: String::new(),
        source: Box::new(e),
    })?;
    Ok(out)
}

fn write_map(out: &mut String, map: &Map, top: bool) -> Result<(), DumpError> {
    let mut entries: Vec<(Cow<'_, str>, &Value)> = Vec::with_capacity(map.len());
    let mut converted = false;
    for (k, v) in map.iter() {
        let text = match &k.0 {
            Value::Str(s) => {
                if top && &**s == "adjust" {
                    continue;
                }
                Cow::Borrowed(&**s)
            }
            Value::Null | Value::Bool(_) | Value::Int(_) | Value::BigInt(_) => {
                converted = true;
                Cow::Owned(key_text(&k.0))
            }
            Value::Float(f) if f.is_finite() => {
                converted = true;
                Cow::Owned(key_text(&k.0))
            }
            other => return Err(DumpError::Key(other.python_repr())),
        };
        entries.push((text, v));
    }
    entries.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    if converted {
        for w in entries.windows(2) {
            if w[0].0 == w[1].0 {
                return Err(DumpError::DuplicateKey(w[0].0.to_string()));
            }
        }
    }
    out.push('{');
    for (i, (k, v)) in entries.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_str(out, k);
        out.push(':');
        write_value(out, v)?;
    }
    out.push('}');
    Ok(())
}

fn write_value(out: &mut String, v: &Value) -> Result<(), DumpError> {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Int(i) => {
            let _ = write!(out, "{i}");
        }
        Value::BigInt(s) => out.push_str(s),
        Value::Float(f) => {
            if !f.is_finite() {
                return Err(DumpError::Value(format!("float {}", python_float_repr(*f))));
            }
            out.push_str(&python_float_repr(*f));
        }
        Value::Str(s) => write_str(out, s),
        Value::Timestamp(t) => write_str(out, &t.python_str()),
        Value::List(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(out, item)?;
            }
            out.push(']');
        }
        Value::Map(m) => write_map(out, m, false)?,
        Value::Unsupported(desc) => return Err(DumpError::Value(desc.to_string())),
    }
    Ok(())
}

/// JSON string with Python `json.dumps(ensure_ascii=True)` escapes.
pub(crate) fn write_str(out: &mut String, s: &str) {
    crate::jsonfmt::write_string(out, s);
}

/// A human-friendly multi-line rendering of one node (`atex fmf show`).
pub fn show_node(node: &super::Node) -> String {
    let mut out = String::new();
    out.push_str(node.name());
    out.push('\n');
    for (k, v) in node.data().iter() {
        let key = key_text(&k.0);
        let text = canonical_json(v).unwrap_or_else(|_| v.python_repr());
        let _ = writeln!(out, "  {key}: {text}");
    }
    let sources: Vec<String> = node
        .sources()
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    if !sources.is_empty() {
        let _ = writeln!(out, "  (sources: {})", sources.join(", "));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes() {
        let mut s = String::new();
        write_str(&mut s, "tab\there\u{1}\u{7f}é🚀/");
        assert_eq!(s, "\"tab\\there\\u0001\\u007f\\u00e9\\ud83d\\ude80/\"");
    }

    #[test]
    fn empty() -> Result<(), FmfError> {
        assert_eq!(dump_nodes(Vec::new())?, "{\"nodes\":[]}\n");
        Ok(())
    }
}
