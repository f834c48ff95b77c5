//! JSON serialisation byte-compatible with Python's `json.dumps` defaults.
//!
//! Upstream writes results and JSONL lines with `json.dumps(obj)`: separators `", "` and
//! `": "`, non-ASCII characters escaped as `\uXXXX` (surrogate pairs above U+FFFF), key
//! order as inserted, floats in Python's `repr` form. Producing the same bytes makes
//! outputs comparable with upstream.

use serde_json::Value;
use std::fmt::Write as _;

/// Serialises `value` the way Python's `json.dumps(value)` would.
///
/// ```
/// use serde_json::json;
/// let v = json!({"status": "pass", "files": ["a", "ž"], "n": 1.0e-5});
/// assert_eq!(
///     atex::jsonfmt::to_python_json(&v),
///     r#"{"status": "pass", "files": ["a", "\u017e"], "n": 1e-05}"#
/// );
/// ```
pub fn to_python_json(value: &Value) -> String {
    let mut out = String::new();
    write_value(&mut out, value);
    out
}

fn write_value(out: &mut String, value: &Value) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Number(n) => write_number(out, n),
        Value::String(s) => write_string(out, s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_value(out, item);
            }
            out.push(']');
        }
        Value::Object(map) => {
            out.push('{');
            for (i, (k, v)) in map.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_string(out, k);
                out.push_str(": ");
                write_value(out, v);
            }
            out.push('}');
        }
    }
}

fn write_number(out: &mut String, n: &serde_json::Number) {
    if n.is_f64() {
        match n.as_f64() {
            Some(f) => out.push_str(&python_float_repr(f)),
            None => out.push_str(&n.to_string()),
        }
    } else {
        out.push_str(&n.to_string());
    }
}

/// A float as Python's `json.dumps` writes it: `repr` for finite values
/// ([`crate::fmf::value::python_float_repr`]), `NaN` / `Infinity` / `-Infinity` otherwise.
fn python_float_repr(f: f64) -> String {
    if f.is_nan() {
        "NaN".into()
    } else if f.is_infinite() {
        if f > 0.0 { "Infinity" } else { "-Infinity" }.into()
    } else {
        crate::pyfmt::python_float_repr(f)
    }
}

/// Appends `s` as a JSON string with Python's `ensure_ascii` escapes: `\uXXXX` for control
/// characters, DEL and everything beyond ASCII (surrogate pairs above U+FFFF).
pub fn write_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || (c as u32) > 0x7e => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn floats_like_python() {
        assert_eq!(python_float_repr(1.0), "1.0");
        assert_eq!(python_float_repr(0.5), "0.5");
        assert_eq!(python_float_repr(1e16), "1e+16");
        assert_eq!(python_float_repr(1.5e-7), "1.5e-07");
        assert_eq!(python_float_repr(123456.789), "123456.789");
        assert_eq!(python_float_repr(0.0001), "0.0001");
    }

    #[test]
    fn escapes_like_python() {
        let v = json!(["\u{1f600}", "\u{7f}", "a\"b\\c\u{1}"]);
        assert_eq!(
            to_python_json(&v),
            r#"["\ud83d\ude00", "\u007f", "a\"b\\c\u0001"]"#
        );
    }
}
