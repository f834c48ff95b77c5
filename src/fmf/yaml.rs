//! YAML loading with the reference's (`ruamel.yaml` safe loader) YAML 1.2 rules.
//!
//! `yaml-rust2` supplies the event stream (syntax, anchors, tags, positions); this
//! module builds [`Value`]s from it with its own scalar resolution, so the result
//! matches the Python library: YAML 1.2 booleans/ints/floats, dates, `=` and unknown
//! tags rejected, duplicate keys (with Python key equality) rejected, `<<` merge keys,
//! a `%YAML 1.1` directive switching a file to 1.1 rules. Only one document per
//! stream is allowed.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, Parser, Tag};
use yaml_rust2::scanner::TScalarStyle;

use super::value::{Key, Map, Timestamp, Value};

/// A YAML problem with its (1-based) line, when known.
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

/// Maximum nesting depth accepted (deeper documents are rejected, not crashed on).
const MAX_DEPTH: usize = 400;
/// Maximum number of values materialised through aliases (billion-laughs guard).
const MAX_ALIAS_EXPANSION: usize = 2_000_000;

const CORE: &str = "tag:yaml.org,2002:";

/// Parse `text` as a single YAML document. An empty stream gives [`Value::Null`].
pub fn load(text: &str) -> Result<Value, YamlError> {
    if let Some(v) = super::yaml_fast::parse(text) {
        return Ok(v);
    }
    load_full(text)
}

/// Only the fast path: `Some` for documents in the simple subset it handles (the
/// result is then identical to [`load_full`]), `None` otherwise. For diagnostics
/// and differential tests.
pub fn load_fast_path(text: &str) -> Option<Value> {
    super::yaml_fast::parse(text)
}

/// [`load`] without the fast path (always the full event-based parser).
pub fn load_full(text: &str) -> Result<Value, YamlError> {
    let v11 = is_yaml_11(text);
    let mut parser = Parser::new_from_str(text);
    let mut builder = Builder {
        v11,
        stack: Vec::new(),
        anchors: HashMap::new(),
        expanded: 0,
        root: None,
    };
    let mut documents = 0usize;
    loop {
        let (event, mark) = parser.next_token().map_err(|e| YamlError {
            line: Some(e.marker().line()),
            message: e.info().to_string(),
        })?;
        let line = mark.line();
        match event {
            Event::StreamEnd => break,
            Event::DocumentStart => {
                documents += 1;
                if documents > 1 {
                    return Err(YamlError {
                        line: Some(line),
                        message: "expected a single document in the stream, found another document"
                            .into(),
                    });
                }
            }
            other => builder.event(other, line)?,
        }
    }
    Ok(builder.root.unwrap_or(Value::Null))
}

/// Whether the stream starts with a `%YAML 1.x` directive other than 1.2.
fn is_yaml_11(text: &str) -> bool {
    for line in text.lines() {
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        if let Some(rest) = t.strip_prefix("%YAML") {
            let ver = rest.split_whitespace().next().unwrap_or("");
            return ver != "1.2";
        }
        if t.starts_with('%') {
            continue;
        }
        return false;
    }
    false
}

enum Frame {
    Seq {
        items: Vec<Value>,
        anchor: usize,
        tag: Option<Tag>,
        line: usize,
    },
    Map {
        entries: Map,
        merges: Vec<Value>,
        pending: Option<(Key, bool)>,
        anchor: usize,
        tag: Option<Tag>,
        line: usize,
    },
}

struct Builder {
    v11: bool,
    stack: Vec<Frame>,
    anchors: HashMap<usize, Value>,
    expanded: usize,
    root: Option<Value>,
}

fn err(line: usize, message: impl Into<String>) -> YamlError {
    YamlError {
        line: Some(line),
        message: message.into(),
    }
}

fn count_nodes(v: &Value) -> usize {
    match v {
        Value::List(l) => 1 + l.iter().map(count_nodes).sum::<usize>(),
        Value::Map(m) => 1 + m.values().map(count_nodes).sum::<usize>(),
        _ => 1,
    }
}

impl Builder {
    fn event(&mut self, event: Event, line: usize) -> Result<(), YamlError> {
        match event {
            Event::Nothing | Event::StreamStart | Event::DocumentEnd | Event::DocumentStart => {
                Ok(())
            }
            Event::StreamEnd => Ok(()),
            Event::Alias(id) => {
                let v = self
                    .anchors
                    .get(&id)
                    .cloned()
                    .ok_or_else(|| err(line, "found undefined alias"))?;
                self.expanded += count_nodes(&v);
                if self.expanded > MAX_ALIAS_EXPANSION {
                    return Err(err(line, "too many alias expansions"));
                }
                self.complete(v, line, true)
            }
            Event::Scalar(text, style, anchor, tag) => {
                let is_merge_key = style == TScalarStyle::Plain && tag.is_none() && text == "<<";
                let v =
                    scalar_value(text, style, tag.as_ref(), self.v11).map_err(|m| err(line, m))?;
                if anchor > 0 {
                    self.anchors.insert(anchor, v.clone());
                }
                self.complete_scalar(v, is_merge_key, line)
            }
            Event::SequenceStart(anchor, tag) => {
                if self.stack.len() >= MAX_DEPTH {
                    return Err(err(line, "document nested too deeply"));
                }
                self.stack.push(Frame::Seq {
                    items: Vec::new(),
                    anchor,
                    tag,
                    line,
                });
                Ok(())
            }
            Event::MappingStart(anchor, tag) => {
                if self.stack.len() >= MAX_DEPTH {
                    return Err(err(line, "document nested too deeply"));
                }
                self.stack.push(Frame::Map {
                    entries: Map::new(),
                    merges: Vec::new(),
                    pending: None,
                    anchor,
                    tag,
                    line,
                });
                Ok(())
            }
            Event::SequenceEnd => match self.stack.pop() {
                Some(Frame::Seq {
                    items,
                    anchor,
                    tag,
                    line: start,
                }) => {
                    let v = match tag_name(tag.as_ref()).map_err(|m| err(start, m))? {
                        None | Some("seq") => Value::from(items),
                        Some("omap") | Some("pairs") => Value::Unsupported(format!(
                            "<ordered map {}>",
                            Value::from(items).python_repr()
                        )),
                        Some(other) => {
                            return Err(err(
                                start,
                                format!("cannot apply tag !!{other} to a sequence"),
                            ));
                        }
                    };
                    if anchor > 0 {
                        self.anchors.insert(anchor, v.clone());
                    }
                    self.complete(v, line, false)
                }
                _ => Err(err(line, "unbalanced sequence end")),
            },
            Event::MappingEnd => match self.stack.pop() {
                Some(Frame::Map {
                    entries,
                    merges,
                    pending,
                    anchor,
                    tag,
                    line: start,
                    ..
                }) => {
                    if pending.is_some() {
                        return Err(err(line, "mapping key without value"));
                    }
                    let map = if merges.is_empty() {
                        entries
                    } else {
                        // Merged keys first (later merge sources first, so earlier
                        // ones override), then the explicit keys, which win.
                        let mut map = Map::new();
                        for src in merges.iter().rev() {
                            if let Value::Map(m) = src {
                                for (k, v) in m.iter() {
                                    map.insert_key(k.clone(), v.clone());
                                }
                            }
                        }
                        for (k, v) in entries.into_entries() {
                            map.insert_key(k, v);
                        }
                        map
                    };
                    let v = match tag_name(tag.as_ref()).map_err(|m| err(start, m))? {
                        None | Some("map") => Value::Map(map),
                        Some("set") => {
                            Value::Unsupported(format!("<set {}>", Value::Map(map).python_repr()))
                        }
                        Some(other) => {
                            return Err(err(
                                start,
                                format!("cannot apply tag !!{other} to a mapping"),
                            ));
                        }
                    };
                    if anchor > 0 {
                        self.anchors.insert(anchor, v.clone());
                    }
                    self.complete(v, line, false)
                }
                _ => Err(err(line, "unbalanced mapping end")),
            },
        }
    }

    fn complete_scalar(
        &mut self,
        v: Value,
        is_merge_key: bool,
        line: usize,
    ) -> Result<(), YamlError> {
        if let Some(Frame::Map { pending: None, .. }) = self.stack.last() {
            return self.set_key(v, is_merge_key, line);
        }
        self.complete(v, line, false)
    }

    fn set_key(&mut self, v: Value, is_merge: bool, line: usize) -> Result<(), YamlError> {
        if matches!(v, Value::List(_) | Value::Map(_) | Value::Unsupported(_)) {
            return Err(err(line, "found unhashable key"));
        }
        if let Some(Frame::Map { pending, .. }) = self.stack.last_mut() {
            *pending = Some((Key(v), is_merge));
        }
        Ok(())
    }

    fn complete(&mut self, v: Value, line: usize, _alias: bool) -> Result<(), YamlError> {
        match self.stack.last_mut() {
            None => {
                self.root = Some(v);
                Ok(())
            }
            Some(Frame::Seq { items, .. }) => {
                items.push(v);
                Ok(())
            }
            Some(Frame::Map {
                entries,
                merges,
                pending,
                ..
            }) => match pending.take() {
                None => {
                    // A collection (or alias) used as a key.
                    if matches!(v, Value::List(_) | Value::Map(_) | Value::Unsupported(_)) {
                        return Err(err(line, "found unhashable key"));
                    }
                    *pending = Some((Key(v), false));
                    Ok(())
                }
                Some((_, true)) => {
                    match &v {
                        Value::Map(_) => merges.push(v),
                        Value::List(items) => {
                            if items.iter().any(|i| !matches!(i, Value::Map(_))) {
                                return Err(err(line, "expected a mapping for merging"));
                            }
                            // Iterated in reverse later: earlier mappings override.
                            merges.extend(items.iter().cloned());
                        }
                        _ => {
                            return Err(err(
                                line,
                                "expected a mapping or list of mappings for merging",
                            ));
                        }
                    }
                    Ok(())
                }
                Some((key, false)) => {
                    if entries.0.contains_key(&key) {
                        return Err(err(
                            line,
                            format!("found duplicate key {}", key.0.python_repr()),
                        ));
                    }
                    entries.insert_key(key, v);
                    Ok(())
                }
            },
        }
    }
}

fn tag_name(tag: Option<&Tag>) -> Result<Option<&str>, String> {
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
                Err(format!(
                    "could not determine a constructor for the tag '{}{}'",
                    t.handle, t.suffix
                ))
            }
        }
    }
}

fn scalar_value(
    text: String,
    style: TScalarStyle,
    tag: Option<&Tag>,
    v11: bool,
) -> Result<Value, String> {
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
            _ => Err(format!("invalid boolean '{text}'")),
        },
        Some("int") => construct_int(text, v11).ok_or_else(|| format!("invalid integer '{text}'")),
        Some("float") => {
            construct_float(text, v11).ok_or_else(|| format!("invalid float '{text}'"))
        }
        Some("timestamp") => {
            parse_timestamp(text)?.ok_or_else(|| format!("invalid timestamp '{text}'"))
        }
        Some("binary") => Ok(Value::Unsupported(format!("<binary {text}>"))),
        Some(other) => Err(format!("cannot apply tag !!{other} to a scalar")),
    }
}

/// [`resolve_plain`] reusing the allocation when the result is a string.
fn resolve_plain_owned(s: String, v11: bool) -> Result<Value, String> {
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
pub(crate) fn resolve_plain(s: &str, v11: bool) -> Result<Value, String> {
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
        return construct_float(s, v11).ok_or_else(|| format!("invalid float '{s}'"));
    }
    if numeric_start && is_int(s, v11) {
        return construct_int(s, v11).ok_or_else(|| format!("invalid integer '{s}'"));
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
        return Err(
            "could not determine a constructor for the tag 'tag:yaml.org,2002:value'".into(),
        );
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

fn take_while(s: &str, f: impl Fn(u8) -> bool) -> (&str, &str) {
    let n = s.bytes().take_while(|c| f(*c)).count();
    (&s[..n], &s[n..])
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

/// Parse the YAML timestamp forms; `Ok(None)` if the text is not a timestamp.
fn parse_timestamp(s: &str) -> Result<Option<Value>, String> {
    let b = s.as_bytes();
    let num = |x: &str| x.parse::<u32>().ok();
    // YYYY-MM-DD exactly
    if b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit())
    {
        let (y, m, d) = (num(&s[..4]), num(&s[5..7]), num(&s[8..10]));
        return match (y, m, d) {
            (Some(y), Some(m), Some(d)) => {
                Ok(Some(Value::Timestamp(make_ts(y, m, d, None, None)?)))
            }
            _ => Ok(None),
        };
    }
    // YYYY-M?M-D?D (T|t|[ \t]+) H?H:MM:SS (.frac)? ([ \t]*(Z|[-+]H?H(:MM)?))?
    let (year, rest) = take_while(s, |c| c.is_ascii_digit());
    if year.len() != 4 {
        return Ok(None);
    }
    let Some(rest) = rest.strip_prefix('-') else {
        return Ok(None);
    };
    let (month, rest) = take_while(rest, |c| c.is_ascii_digit());
    if month.is_empty() || month.len() > 2 {
        return Ok(None);
    }
    let Some(rest) = rest.strip_prefix('-') else {
        return Ok(None);
    };
    let (day, rest) = take_while(rest, |c| c.is_ascii_digit());
    if day.is_empty() || day.len() > 2 {
        return Ok(None);
    }
    let rest = if let Some(r) = rest.strip_prefix(['T', 't']) {
        r
    } else {
        let (ws, r) = take_while(rest, |c| c == b' ' || c == b'\t');
        if ws.is_empty() {
            return Ok(None);
        }
        r
    };
    let (hour, rest) = take_while(rest, |c| c.is_ascii_digit());
    if hour.is_empty() || hour.len() > 2 {
        return Ok(None);
    }
    let Some(rest) = rest.strip_prefix(':') else {
        return Ok(None);
    };
    let (minute, rest) = take_while(rest, |c| c.is_ascii_digit());
    if minute.len() != 2 {
        return Ok(None);
    }
    let Some(rest) = rest.strip_prefix(':') else {
        return Ok(None);
    };
    let (second, mut rest) = take_while(rest, |c| c.is_ascii_digit());
    if second.len() != 2 {
        return Ok(None);
    }
    let mut micro = 0u32;
    if let Some(r) = rest.strip_prefix('.') {
        let (frac, r2) = take_while(r, |c| c.is_ascii_digit());
        let mut f: String = frac.chars().take(6).collect();
        while f.len() < 6 {
            f.push('0');
        }
        micro = f.parse().unwrap_or(0);
        rest = r2;
    }
    let (_, r) = take_while(rest, |c| c == b' ' || c == b'\t');
    let mut tz = None;
    if !r.is_empty() {
        if r == "Z" {
            tz = Some(0);
        } else if let Some(sign) = r.strip_prefix(['-', '+']) {
            let neg = r.starts_with('-');
            let (h, after) = take_while(sign, |c| c.is_ascii_digit());
            if h.is_empty() || h.len() > 2 {
                return Ok(None);
            }
            let mut mins = 0i32;
            if !after.is_empty() {
                let Some(mm) = after.strip_prefix(':') else {
                    return Ok(None);
                };
                if mm.len() != 2 || !mm.bytes().all(|c| c.is_ascii_digit()) {
                    return Ok(None);
                }
                mins = mm.parse().unwrap_or(0);
            }
            let total = h.parse::<i32>().unwrap_or(0) * 60 + mins;
            tz = Some(if neg { -total } else { total });
        } else {
            return Ok(None);
        }
        if rest.len() == r.len() && r != "Z" && !r.starts_with(['-', '+']) {
            return Ok(None);
        }
    } else if rest.len() != r.len() {
        // trailing whitespace only: not matched by the resolver
        return Ok(None);
    }
    let (Some(y), Some(mo), Some(d), Some(h), Some(mi), Some(se)) = (
        num(year),
        num(month),
        num(day),
        num(hour),
        num(minute),
        num(second),
    ) else {
        return Ok(None);
    };
    if h > 23 || mi > 59 || se > 59 {
        return Err(format!("invalid time in timestamp '{s}'"));
    }
    if let Some(t) = tz
        && t.abs() >= 24 * 60
    {
        return Err(format!("invalid time zone in timestamp '{s}'"));
    }
    Ok(Some(Value::Timestamp(make_ts(
        y,
        mo,
        d,
        Some((h as u8, mi as u8, se as u8, micro)),
        tz,
    )?)))
}

fn make_ts(
    y: u32,
    m: u32,
    d: u32,
    time: Option<(u8, u8, u8, u32)>,
    tz: Option<i32>,
) -> Result<Timestamp, String> {
    let leap = (y.is_multiple_of(4) && !y.is_multiple_of(100)) || y.is_multiple_of(400);
    let dim = match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return Err(format!("month must be in 1..12, got {m}")),
    };
    if y == 0 {
        return Err("year 0 is out of range".into());
    }
    if d == 0 || d > dim {
        return Err(format!("day is out of range for month: {y}-{m}-{d}"));
    }
    Ok(Timestamp {
        year: y as i32,
        month: m as u8,
        day: d as u8,
        time,
        tz_minutes: tz,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(text: &str) -> Value {
        match load(&format!("k: {text}")) {
            Ok(Value::Map(m)) => m
                .get("k")
                .cloned()
                .unwrap_or(Value::Str("<missing>".into())),
            other => Value::from(format!("{other:?}")),
        }
    }

    #[test]
    fn scalars_yaml_12() {
        assert_eq!(one("yes"), Value::from("yes"));
        assert_eq!(one("True"), Value::Bool(true));
        assert_eq!(one("017"), Value::Int(17));
        assert_eq!(one("0o17"), Value::Int(15));
        assert_eq!(one("0x1F"), Value::Int(31));
        assert_eq!(one("1_000"), Value::Int(1000));
        assert_eq!(one("1.5"), Value::Float(1.5));
        assert_eq!(one("1."), Value::Float(1.0));
        assert_eq!(one(".5e3"), Value::from(".5e3"));
        assert_eq!(one("1e3"), Value::Float(1000.0));
        assert_eq!(one("1:20"), Value::from("1:20"));
        assert_eq!(one("~"), Value::Null);
        assert_eq!(one("2024-1-2"), Value::from("2024-1-2"));
        assert!(matches!(one("2024-01-02"), Value::Timestamp(_)));
        assert_eq!(
            one("2024-01-02T10:20:30.5+02:00").python_str(),
            "2024-01-02 10:20:30.500000+02:00"
        );
        assert_eq!(
            one("12345678901234567890"),
            Value::Int(12345678901234567890)
        );
        assert_eq!(one("!!str 12"), Value::from("12"));
        assert_eq!(one("!!float 3"), Value::Float(3.0));
    }

    #[test]
    fn yaml_11_directive() {
        let v = load("%YAML 1.1\n---\na: yes\nb: 017\nc: 1:20\n").unwrap_or(Value::Null);
        let m = v.as_map().cloned().unwrap_or_default();
        assert_eq!(m.get("a"), Some(&Value::Bool(true)));
        assert_eq!(m.get("b"), Some(&Value::Int(15)));
        assert_eq!(m.get("c"), Some(&Value::Int(80)));
    }

    #[test]
    fn errors() {
        assert!(load("a: 1\na: 2\n").is_err());
        assert!(load("m: {1: a, true: b}\n").is_err());
        assert!(load("a: =\n").is_err());
        assert!(load("a: !custom 1\n").is_err());
        assert!(load("a: 1\n---\nb: 2\n").is_err());
        assert!(load("a:\n\tb: 1\n").is_err());
        let e = load("a: 1\nb: [1, 2\n").err();
        assert!(e.and_then(|e| e.line).is_some());
    }

    #[test]
    fn merge_keys() {
        let v = load("b: &b {x: 1, y: 2}\nm:\n  <<: *b\n  y: 3\n").unwrap_or(Value::Null);
        let m = v
            .as_map()
            .and_then(|m| m.get("m"))
            .and_then(|m| m.as_map())
            .cloned();
        let m = m.unwrap_or_default();
        assert_eq!(m.get("x"), Some(&Value::Int(1)));
        assert_eq!(m.get("y"), Some(&Value::Int(3)));
    }
}
