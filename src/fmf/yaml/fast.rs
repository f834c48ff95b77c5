//! A fast path for the plain YAML most `.fmf` files consist of.
//!
//! [`parse`] handles a strict subset — block mappings and sequences with
//! space indentation, single-line plain and quoted scalars, single-line flow
//! collections, comments — and returns `None` for anything else (anchors, tags,
//! block or multi-line scalars, escapes, directives, tabs, duplicate keys, …), in
//! which case the full event-based loader ([`load_full`](super::load_full)) is used. On the subset
//! it accepts it must produce exactly what the full loader produces; the unit and
//! fuzz tests check this differentially.

use super::resolve::resolve_plain;
use crate::fmf::value::{Key, Map, Value};

struct Line<'a> {
    indent: usize,
    text: &'a str,
}

/// Parse `text` if it is within the fast subset.
pub(crate) fn parse(text: &str) -> Option<Value> {
    // Characters whose handling differs subtly between YAML processors.
    if text
        .chars()
        .any(|c| (c.is_control() && c != '\n') || matches!(c, '\u{feff}' | '\u{2028}' | '\u{2029}'))
    {
        return None;
    }
    // Sized once: grown line by line, it was reallocated (and the old block freed) about
    // six times per file.
    let mut lines = Vec::with_capacity(text.bytes().filter(|&b| b == b'\n').count() + 1);
    for raw in text.split('\n') {
        let content = raw.trim_start_matches(' ');
        let indent = raw.len() - content.len();
        if content.is_empty() || content.starts_with('#') {
            continue;
        }
        if indent == 0
            && (content.starts_with("---")
                || content.starts_with("...")
                || content.starts_with('%'))
        {
            return None;
        }
        lines.push(Line {
            indent,
            text: content,
        });
    }
    if lines.is_empty() {
        return Some(Value::Null);
    }
    if lines[0].indent != 0 {
        return None;
    }
    let mut p = P { lines, pos: 0 };
    let v = p.block(0, 0)?;
    if p.pos != p.lines.len() {
        return None;
    }
    Some(v)
}

struct P<'a> {
    lines: Vec<Line<'a>>,
    pos: usize,
}

fn is_seq_item(text: &str) -> bool {
    text == "-" || text.starts_with("- ")
}

impl<'a> P<'a> {
    /// Parse a block node whose first line is at `self.pos` with indent `indent`.
    fn block(&mut self, indent: usize, depth: usize) -> Option<Value> {
        if depth > 100 {
            return None;
        }
        let first = self.lines.get(self.pos)?;
        if first.indent != indent {
            return None;
        }
        if is_seq_item(first.text) {
            self.sequence(indent, depth)
        } else {
            self.mapping(indent, depth)
        }
    }

    fn sequence(&mut self, indent: usize, depth: usize) -> Option<Value> {
        let mut items = Vec::new();
        while let Some(line) = self.lines.get(self.pos) {
            if line.indent < indent {
                break;
            }
            if line.indent > indent {
                return None;
            }
            if !is_seq_item(line.text) {
                break;
            }
            let rest = line.text[1..].trim_start_matches(' ');
            let offset = line.text.len() - rest.len();
            if rest.is_empty() || rest.starts_with('#') {
                self.pos += 1;
                items.push(self.nested_value(indent, false, depth)?);
                continue;
            }
            if is_seq_item(rest) {
                return None;
            }
            if let Some((_, _)) = split_key(rest)? {
                // Compact mapping: re-read this line's rest as a mapping at its column.
                let col = indent + offset;
                self.lines[self.pos] = Line {
                    indent: col,
                    text: rest,
                };
                items.push(self.mapping(col, depth + 1)?);
                continue;
            }
            self.pos += 1;
            items.push(inline_value(rest)?);
            self.no_continuation(indent)?;
        }
        Some(Value::from(items))
    }

    fn mapping(&mut self, indent: usize, depth: usize) -> Option<Value> {
        // Room for every line at this indent up to the block's end: the entries, or more
        // when a sequence sits at the mapping's own indent (then the map is a bit larger
        // than needed, never grown while filled).
        let entries = self.lines[self.pos..]
            .iter()
            .take_while(|line| line.indent >= indent)
            .filter(|line| line.indent == indent)
            .count();
        let mut map = Map::with_capacity(entries);
        while let Some(line) = self.lines.get(self.pos) {
            if line.indent < indent {
                break;
            }
            if line.indent > indent || is_seq_item(line.text) {
                return None;
            }
            let (key_text, rest) = split_key(line.text)?.ok_or(()).ok()?;
            let key = scalar_key(key_text)?;
            if map.contains(&key) {
                return None;
            }
            self.pos += 1;
            let value = if rest.is_empty() || rest.starts_with('#') {
                self.nested_value(indent, true, depth)?
            } else {
                let v = inline_value(rest)?;
                self.no_continuation(indent)?;
                v
            };
            map.insert_key(key, value);
        }
        Some(Value::Map(map))
    }

    /// The value of a key/item whose text was empty: a nested block or null.
    fn nested_value(&mut self, indent: usize, in_mapping: bool, depth: usize) -> Option<Value> {
        match self.lines.get(self.pos) {
            Some(next) if next.indent > indent => self.block(next.indent, depth + 1),
            // `key:\n- item` — a sequence may sit at the mapping's own indent.
            Some(next) if in_mapping && next.indent == indent && is_seq_item(next.text) => {
                self.sequence(indent, depth + 1)
            }
            _ => Some(Value::Null),
        }
    }

    /// After an inline value, a more indented line would continue a multi-line
    /// scalar (or be an error): leave those to the full parser.
    fn no_continuation(&self, indent: usize) -> Option<()> {
        match self.lines.get(self.pos) {
            Some(next) if next.indent > indent => None,
            _ => Some(()),
        }
    }
}

/// Split `key: rest` at the first `: ` (or a final `:`) of a plain or quoted key.
/// `Some(None)` means "not a mapping entry"; `None` means "bail out".
fn split_key(text: &str) -> Option<Option<(&str, &str)>> {
    let first = text.chars().next()?;
    if first == '\'' || first == '"' {
        // Quoted key: find its end, then require `:`.
        let end = quoted_end(text)?;
        let after = &text[end..];
        return match after.strip_prefix(':') {
            Some("") => Some(Some((&text[..end], ""))),
            Some(r) if r.starts_with(' ') => Some(Some((&text[..end], r.trim_start_matches(' ')))),
            _ => {
                if after.trim_start_matches(' ').is_empty()
                    || after.trim_start_matches(' ').starts_with('#')
                {
                    Some(None)
                } else {
                    None
                }
            }
        };
    }
    if matches!(
        first,
        '[' | '{' | '?' | '&' | '*' | '!' | '|' | '>' | '%' | '@' | '`' | ',' | ']' | '}' | '#'
    ) {
        return if matches!(first, '[' | '{') && !text.contains(": ") && !text.ends_with(':') {
            Some(None)
        } else {
            None
        };
    }
    let bytes = text.as_bytes();
    for i in 0..bytes.len() {
        match bytes[i] {
            b'#' if i > 0 && bytes[i - 1] == b' ' => return Some(None),
            b':' if i + 1 == bytes.len() => {
                return Some(Some((text[..i].trim_end_matches(' '), "")));
            }
            b':' if bytes[i + 1] == b' ' => {
                return Some(Some((
                    text[..i].trim_end_matches(' '),
                    text[i + 1..].trim_start_matches(' '),
                )));
            }
            _ => {}
        }
    }
    Some(None)
}

/// Byte index just after the closing quote of a quoted scalar starting at 0.
fn quoted_end(text: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    let q = bytes[0];
    let mut i = 1;
    while i < bytes.len() {
        let b = bytes[i];
        if q == b'"' && b == b'\\' {
            return None;
        }
        if b == q {
            if q == b'\'' && bytes.get(i + 1) == Some(&b'\'') {
                i += 2;
                continue;
            }
            return Some(i + 1);
        }
        i += 1;
    }
    None
}

fn unquote(text: &str) -> String {
    let inner = &text[1..text.len() - 1];
    if text.starts_with('\'') {
        inner.replace("''", "'")
    } else {
        inner.to_string()
    }
}

fn scalar_key(text: &str) -> Option<Key> {
    if text.starts_with('\'') || text.starts_with('"') {
        return Some(Key(Value::from(unquote(text))));
    }
    if text.is_empty() || text == "<<" || !plain_ok(text, false) {
        return None;
    }
    let v = resolve_plain(text, false).ok()?;
    Some(Key(v))
}

/// Whether `text` is a valid single-line plain scalar we are sure about.
fn plain_ok(text: &str, flow: bool) -> bool {
    let Some(first) = text.chars().next() else {
        return false;
    };
    if matches!(
        first,
        '[' | ']'
            | '{'
            | '}'
            | ','
            | '#'
            | '&'
            | '*'
            | '!'
            | '|'
            | '>'
            | '\''
            | '"'
            | '%'
            | '@'
            | '`'
            | '?'
            | ':'
    ) {
        return false;
    }
    if first == '-' && (text.len() == 1 || text.as_bytes()[1] == b' ') {
        return false;
    }
    if text.contains(": ") || text.ends_with(':') || text.contains(" #") {
        return false;
    }
    if flow && text.contains([',', '[', ']', '{', '}', ':']) {
        return false;
    }
    !text.ends_with(' ')
}

/// A value written on the same line as its key or `- `.
fn inline_value(rest: &str) -> Option<Value> {
    let first = rest.chars().next()?;
    if first == '\'' || first == '"' {
        let end = quoted_end(rest)?;
        let after = rest[end..].trim_start_matches(' ');
        if !(after.is_empty() || (after.starts_with('#') && rest[end..].starts_with(' '))) {
            return None;
        }
        return Some(Value::from(unquote(&rest[..end])));
    }
    if first == '[' || first == '{' {
        let mut f = Flow {
            s: rest.as_bytes(),
            text: rest,
            i: 0,
            depth: 0,
        };
        let v = f.value()?;
        let after = &rest[f.i..];
        let trimmed = after.trim_start_matches(' ');
        if !(trimmed.is_empty() || (trimmed.starts_with('#') && after.starts_with(' '))) {
            return None;
        }
        return Some(v);
    }
    // Plain scalar, possibly followed by a comment.
    let text = match rest.find(" #") {
        Some(pos) => &rest[..pos],
        None => rest,
    }
    .trim_end_matches(' ');
    if !plain_ok(text, false) {
        return None;
    }
    resolve_plain(text, false).ok()
}

/// Single-line flow collections.
struct Flow<'a> {
    s: &'a [u8],
    text: &'a str,
    i: usize,
    depth: usize,
}

impl Flow<'_> {
    fn skip_spaces(&mut self) {
        while self.s.get(self.i) == Some(&b' ') {
            self.i += 1;
        }
    }

    fn value(&mut self) -> Option<Value> {
        self.depth += 1;
        if self.depth > 50 {
            return None;
        }
        self.skip_spaces();
        let v = match self.s.get(self.i)? {
            b'[' => self.seq(),
            b'{' => self.map(),
            b'\'' | b'"' => {
                let end = self.i + quoted_end(&self.text[self.i..])?;
                let v = Value::from(unquote(&self.text[self.i..end]));
                self.i = end;
                Some(v)
            }
            _ => {
                let start = self.i;
                while let Some(&b) = self.s.get(self.i) {
                    if matches!(b, b',' | b']' | b'}' | b'#' | b'[' | b'{') {
                        break;
                    }
                    if b == b':' {
                        return None;
                    }
                    self.i += 1;
                }
                let text = self.text[start..self.i].trim_end_matches(' ');
                if text.is_empty() || !plain_ok(text, true) {
                    return None;
                }
                resolve_plain(text, false).ok()
            }
        };
        self.depth -= 1;
        v
    }

    fn seq(&mut self) -> Option<Value> {
        self.i += 1;
        let mut items = Vec::new();
        self.skip_spaces();
        if self.s.get(self.i) == Some(&b']') {
            self.i += 1;
            return Some(Value::from(items));
        }
        loop {
            items.push(self.value()?);
            self.skip_spaces();
            match self.s.get(self.i)? {
                b',' => {
                    self.i += 1;
                    self.skip_spaces();
                    if matches!(self.s.get(self.i), Some(b']' | b',')) {
                        return None;
                    }
                }
                b']' => {
                    self.i += 1;
                    return Some(Value::from(items));
                }
                _ => return None,
            }
        }
    }

    fn map(&mut self) -> Option<Value> {
        self.i += 1;
        let mut map = Map::new();
        self.skip_spaces();
        if self.s.get(self.i) == Some(&b'}') {
            self.i += 1;
            return Some(Value::Map(map));
        }
        loop {
            self.skip_spaces();
            let key = match self.s.get(self.i)? {
                b'\'' | b'"' => {
                    let end = self.i + quoted_end(&self.text[self.i..])?;
                    let k = Key(Value::from(unquote(&self.text[self.i..end])));
                    self.i = end;
                    k
                }
                _ => {
                    let start = self.i;
                    while let Some(&b) = self.s.get(self.i) {
                        if matches!(b, b',' | b']' | b'}' | b'#' | b'[' | b'{' | b':') {
                            break;
                        }
                        self.i += 1;
                    }
                    let text = self.text[start..self.i].trim_end_matches(' ');
                    if text.is_empty() || text == "<<" || !plain_ok(text, true) {
                        return None;
                    }
                    Key(resolve_plain(text, false).ok()?)
                }
            };
            // Require `: ` (or `:` right before a closing/space) after the key.
            if self.s.get(self.i) != Some(&b':') || self.s.get(self.i + 1) != Some(&b' ') {
                return None;
            }
            self.i += 2;
            let v = self.value()?;
            if map.contains(&key) || matches!(key.0, Value::List(_) | Value::Map(_)) {
                return None;
            }
            map.insert_key(key, v);
            self.skip_spaces();
            match self.s.get(self.i)? {
                b',' => {
                    self.i += 1;
                    self.skip_spaces();
                    if matches!(self.s.get(self.i), Some(b'}' | b',')) {
                        return None;
                    }
                }
                b'}' => {
                    self.i += 1;
                    return Some(Value::Map(map));
                }
                _ => return None,
            }
        }
    }
}
