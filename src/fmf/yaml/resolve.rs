//! Scalar resolution with ruamel's YAML 1.2 rules (and 1.1 under a `%YAML 1.1` directive):
//! the implicit type of a plain scalar (booleans, integers, floats, null, timestamps, the
//! `<<` merge key, `=` rejected) and the explicit `!!` tags. The full loader and the fast
//! path both resolve their scalars here, so they cannot disagree.

use yaml_rust2::parser::Tag;
use yaml_rust2::scanner::TScalarStyle;

use super::timestamp::{TimestampError, parse_timestamp, take_while};
use crate::fmf::value::Value;

const CORE: &str = "tag:yaml.org,2002:";

/// A scalar that cannot be resolved; the loader turns it into a
/// [`YamlError`](super::YamlError) at the scalar's line (it has no cause of its own).
#[derive(Debug, thiserror::Error)]
pub(super) enum ScalarError {
    /// A tag (or `=`) no constructor handles.
    #[error("could not determine a constructor for the tag '{0}'")]
    NoConstructor(String),
    /// The text does not fit its (explicit or implicit) type.
    #[error("invalid {kind} '{text}'")]
    Invalid {
        /// `boolean`, `integer`, `float`, `timestamp`.
        kind: &'static str,
        /// The scalar.
        text: String,
    },
    /// A collection tag on a scalar.
    #[error("cannot apply tag !!{0} to a scalar")]
    TagOnScalar(String),
    /// A timestamp with out-of-range parts.
    #[error(transparent)]
    Timestamp(#[from] TimestampError),
}

fn invalid(kind: &'static str, text: &str) -> ScalarError {
    ScalarError::Invalid {
        kind,
        text: text.to_string(),
    }
}

/// The core-schema name of an explicit tag (`!!int` gives `int`); `None` without a tag.
pub(super) fn tag_name(tag: Option<&Tag>) -> Result<Option<&str>, ScalarError> {
    match tag {
        None => Ok(None),
        Some(t) => {
            if t.handle == CORE {
                Ok(Some(t.suffix.as_str()))
            } else if t.handle.is_empty() && t.suffix.starts_with(CORE) {
                Ok(Some(&t.suffix[CORE.len()..]))
            } else if t.handle == "!" && t.suffix.is_empty() {
                Ok(Some("str"))
            } else {
                Err(ScalarError::NoConstructor(format!(
                    "{}{}",
                    t.handle, t.suffix
                )))
            }
        }
    }
}

/// The value of a scalar event: its explicit tag decides, or plain-scalar resolution.
pub(super) fn scalar_value(
    text: String,
    style: TScalarStyle,
    tag: Option<&Tag>,
    v11: bool,
) -> Result<Value, ScalarError> {
    let text = match tag_name(tag)? {
        None if style != TScalarStyle::Plain => return Ok(Value::from(text)),
        None => return resolve_plain_owned(text, v11),
        Some("str") => return Ok(Value::from(text)),
        _ => text,
    };
    let text = text.as_str();
    match tag_name(tag)? {
        None | Some("str") => Ok(Value::from(text)),
        Some("null") => Ok(Value::Null),
        Some("bool") => match text.to_ascii_lowercase().as_str() {
            "true" | "yes" | "on" | "y" => Ok(Value::Bool(true)),
            "false" | "no" | "off" | "n" => Ok(Value::Bool(false)),
            _ => Err(invalid("boolean", text)),
        },
        Some("int") => construct_int(text, v11).ok_or_else(|| invalid("integer", text)),
        Some("float") => construct_float(text, v11).ok_or_else(|| invalid("float", text)),
        Some("timestamp") => parse_timestamp(text)?.ok_or_else(|| invalid("timestamp", text)),
        Some("binary") => Ok(Value::Unsupported(format!("<binary {text}>"))),
        Some(other) => Err(ScalarError::TagOnScalar(other.to_string())),
    }
}

/// [`resolve_plain`] reusing the allocation when the result is a string.
fn resolve_plain_owned(s: String, v11: bool) -> Result<Value, ScalarError> {
    let first = s.as_bytes().first().copied();
    // Fast path: most plain scalars start with a letter that no resolver claims.
    let claimed = match first {
        None => true,
        Some(c) => {
            matches!(
                c,
                b'0'..=b'9'
                    | b'-'
                    | b'+'
                    | b'.'
                    | b'~'
                    | b'<'
                    | b'='
                    | b't'
                    | b'T'
                    | b'f'
                    | b'F'
                    | b'n'
                    | b'N'
            ) || (v11 && matches!(c, b'y' | b'Y' | b'o' | b'O'))
        }
    };
    if claimed {
        resolve_plain(&s, v11)
    } else {
        Ok(Value::from(s))
    }
}

/// Implicit resolution of a plain scalar (ruamel's resolver order: bool, float, int,
/// merge, null, timestamp, value).
pub(super) fn resolve_plain(s: &str, v11: bool) -> Result<Value, ScalarError> {
    // Like ruamel, only resolvers registered for the first character are tried.
    let first = s.as_bytes().first().copied();
    let numeric_start = matches!(first, Some(b'-' | b'+' | b'0'..=b'9'));
    if first.is_none() {
        return Ok(Value::Null);
    }
    let bool_start = matches!(first, Some(b't' | b'T' | b'f' | b'F'))
        || (v11 && matches!(first, Some(b'y' | b'Y' | b'n' | b'N' | b'o' | b'O')));
    if bool_start && is_bool(s, v11) {
        let t = matches!(
            s.as_bytes().first(),
            Some(b't' | b'T' | b'y' | b'Y' | b'o' | b'O')
        ) && !matches!(s, "off" | "Off" | "OFF");
        return Ok(Value::Bool(t));
    }
    if (numeric_start || first == Some(b'.')) && is_float(s, v11) {
        return construct_float(s, v11).ok_or_else(|| invalid("float", s));
    }
    if numeric_start && is_int(s, v11) {
        return construct_int(s, v11).ok_or_else(|| invalid("integer", s));
    }
    if matches!(s, "" | "~" | "null" | "Null" | "NULL") {
        return Ok(Value::Null);
    }
    if s.as_bytes().first().is_some_and(u8::is_ascii_digit)
        && let Some(ts) = parse_timestamp(s)?
    {
        return Ok(ts);
    }
    if s == "=" {
        return Err(ScalarError::NoConstructor(format!("{CORE}value")));
    }
    Ok(Value::from(s))
}

fn is_bool(s: &str, v11: bool) -> bool {
    if matches!(s, "true" | "True" | "TRUE" | "false" | "False" | "FALSE") {
        return true;
    }
    v11 && matches!(
        s,
        "y" | "Y"
            | "yes"
            | "Yes"
            | "YES"
            | "n"
            | "N"
            | "no"
            | "No"
            | "NO"
            | "on"
            | "On"
            | "ON"
            | "off"
            | "Off"
            | "OFF"
    )
}

/// Consume `[0-9]` then `[0-9_]*`; returns the rest, or None if no leading digit.
fn digits_then_underscores(s: &str) -> Option<&str> {
    let b = s.as_bytes();
    if b.first().is_some_and(u8::is_ascii_digit) {
        let n = b
            .iter()
            .take_while(|c| c.is_ascii_digit() || **c == b'_')
            .count();
        Some(&s[n..])
    } else {
        None
    }
}

fn strip_sign(s: &str) -> &str {
    s.strip_prefix(['-', '+']).unwrap_or(s)
}

/// `[eE][-+]?[0-9]+` (sign optional unless `sign_required`) consuming the whole rest.
fn is_exponent(s: &str, sign_required: bool) -> bool {
    let Some(rest) = s.strip_prefix(['e', 'E']) else {
        return false;
    };
    let rest = match rest.strip_prefix(['-', '+']) {
        Some(r) => r,
        None if sign_required => return false,
        None => rest,
    };
    !rest.is_empty() && rest.bytes().all(|c| c.is_ascii_digit())
}

fn is_float(s: &str, v11: bool) -> bool {
    let signed = strip_sign(s);
    let has_sign = signed.len() != s.len();
    // .nan (no sign)
    if !has_sign && matches!(s, ".nan" | ".NaN" | ".NAN") {
        return true;
    }
    if matches!(signed, ".inf" | ".Inf" | ".INF") {
        return true;
    }
    // [0-9][0-9_]* ( \.[0-9_]* exp? | exp )
    if let Some(rest) = digits_then_underscores(signed) {
        if let Some(frac) = rest.strip_prefix('.') {
            let (_, after) = take_while(frac, |c| c.is_ascii_digit() || c == b'_');
            if after.is_empty() || is_exponent(after, false) {
                return true;
            }
        } else if is_exponent(rest, false) {
            return true;
        } else if v11 && rest.starts_with(':') {
            // sexagesimal float: (:[0-5]?[0-9])+ \.[0-9_]*
            let mut r = rest;
            let mut groups = 0;
            while let Some(x) = r.strip_prefix(':') {
                let (d, after) = take_while(x, |c| c.is_ascii_digit());
                if d.is_empty() || d.len() > 2 || (d.len() == 2 && d.as_bytes()[0] > b'5') {
                    return false;
                }
                groups += 1;
                r = after;
            }
            if groups > 0
                && let Some(frac) = r.strip_prefix('.')
            {
                return frac.bytes().all(|c| c.is_ascii_digit() || c == b'_');
            }
            return false;
        }
    }
    // \.[0-9_]+ ([eE][-+][0-9]+)?   (signed only in 1.2)
    if let Some(frac) = signed.strip_prefix('.') {
        if has_sign && v11 {
            return false;
        }
        let (d, after) = take_while(frac, |c| c.is_ascii_digit() || c == b'_');
        if !d.is_empty() && (after.is_empty() || is_exponent(after, true)) {
            return true;
        }
    }
    false
}

fn is_int(s: &str, v11: bool) -> bool {
    let t = strip_sign(s);
    if t.is_empty() {
        return false;
    }
    let all = |x: &str, f: fn(u8) -> bool| !x.is_empty() && x.bytes().all(f);
    if let Some(b) = t.strip_prefix("0b")
        && all(b, |c| c == b'0' || c == b'1' || c == b'_')
    {
        return true;
    }
    if let Some(h) = t.strip_prefix("0x")
        && all(h, |c| c.is_ascii_hexdigit() || c == b'_')
    {
        return true;
    }
    let octal = |c: u8| (b'0'..=b'7').contains(&c) || c == b'_';
    if v11 {
        // 0?[0-7_]+ | (0|[1-9][0-9_]*) | sexagesimal
        if all(t, octal) {
            return true;
        }
        if t == "0" {
            return true;
        }
        if t.as_bytes()[0] != b'0' && all(t, |c| c.is_ascii_digit() || c == b'_') {
            return true;
        }
        if t.as_bytes()[0] != b'0' && t.as_bytes()[0].is_ascii_digit() {
            let (_, mut r) = take_while(t, |c| c.is_ascii_digit() || c == b'_');
            let mut groups = 0;
            while let Some(x) = r.strip_prefix(':') {
                let (d, after) = take_while(x, |c| c.is_ascii_digit());
                if d.is_empty() || d.len() > 2 || (d.len() == 2 && d.as_bytes()[0] > b'5') {
                    return false;
                }
                groups += 1;
                r = after;
            }
            return groups > 0 && r.is_empty();
        }
        false
    } else {
        if let Some(o) = t.strip_prefix("0o")
            && all(o, octal)
        {
            return true;
        }
        all(t, |c| c.is_ascii_digit() || c == b'_')
    }
}

fn construct_int(text: &str, v11: bool) -> Option<Value> {
    let cleaned: String = text.chars().filter(|c| *c != '_').collect();
    let (neg, body) = match cleaned.as_bytes().first() {
        Some(b'-') => (true, &cleaned[1..]),
        Some(b'+') => (false, &cleaned[1..]),
        _ => (false, cleaned.as_str()),
    };
    if body.is_empty() {
        return None;
    }
    let parse_radix = |digits: &str, radix: u32| -> Option<Value> {
        if digits.is_empty() {
            return None;
        }
        let v = i128::from_str_radix(digits, radix).ok()?;
        Some(Value::Int(if neg { -v } else { v }))
    };
    if let Some(b) = body.strip_prefix("0b") {
        return parse_radix(b, 2);
    }
    if let Some(h) = body.strip_prefix("0x") {
        return parse_radix(h, 16);
    }
    if let Some(o) = body.strip_prefix("0o") {
        return parse_radix(o, 8);
    }
    if v11 && body.contains(':') {
        let mut acc: i128 = 0;
        for part in body.split(':') {
            let p: i128 = part.parse().ok()?;
            acc = acc.checked_mul(60)?.checked_add(p)?;
        }
        return Some(Value::Int(if neg { -acc } else { acc }));
    }
    if v11 && body.starts_with('0') {
        return parse_radix(body, 8);
    }
    if !body.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    match body.parse::<i128>() {
        Ok(v) => Some(Value::Int(if neg { -v } else { v })),
        Err(_) => {
            let trimmed = body.trim_start_matches('0');
            Some(Value::BigInt(format!(
                "{}{}",
                if neg { "-" } else { "" },
                trimmed
            )))
        }
    }
}

fn construct_float(text: &str, v11: bool) -> Option<Value> {
    let cleaned: String = text
        .chars()
        .filter(|c| *c != '_')
        .collect::<String>()
        .to_ascii_lowercase();
    let (neg, body) = match cleaned.as_bytes().first() {
        Some(b'-') => (true, &cleaned[1..]),
        Some(b'+') => (false, &cleaned[1..]),
        _ => (false, cleaned.as_str()),
    };
    let sign = if neg { -1.0 } else { 1.0 };
    if body == ".inf" {
        return Some(Value::Float(sign * f64::INFINITY));
    }
    if body == ".nan" {
        return Some(Value::Float(f64::NAN));
    }
    if v11 && body.contains(':') {
        let mut acc = 0.0f64;
        for part in body.split(':') {
            let p: f64 = part.parse().ok()?;
            acc = acc * 60.0 + p;
        }
        return Some(Value::Float(sign * acc));
    }
    let f: f64 = body.parse().ok()?;
    Some(Value::Float(sign * f))
}
