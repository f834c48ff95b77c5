//! The full loader: builds [`Value`]s from `yaml-rust2`'s event stream (anchors and
//! aliases, merge keys, duplicate keys, nesting and alias-expansion limits).

use std::collections::HashMap;

use yaml_rust2::parser::{Event, Parser, Tag};
use yaml_rust2::scanner::TScalarStyle;

use super::YamlError;
use super::resolve::{scalar_value, tag_name};
use crate::fmf::value::{Key, Map, Value};

/// Maximum nesting depth accepted (deeper documents are rejected, not crashed on).
const MAX_DEPTH: usize = 400;
/// Maximum number of values materialised through aliases (billion-laughs guard).
const MAX_ALIAS_EXPANSION: usize = 2_000_000;

/// Parse `text` as a single YAML document. An empty stream gives [`Value::Null`].
pub fn load(text: &str) -> Result<Value, YamlError> {
    if let Some(v) = super::fast::parse(text) {
        return Ok(v);
    }
    load_full(text)
}

/// Only the fast path: `Some` for documents in the simple subset it handles (the
/// result is then identical to [`load_full`]), `None` otherwise. For diagnostics
/// and differential tests.
pub fn load_fast_path(text: &str) -> Option<Value> {
    super::fast::parse(text)
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

/// A YAML problem at `line`: a structural message, or a scalar that cannot be resolved
/// (its own text is the message; it has no cause of its own).
fn err(line: usize, message: impl std::fmt::Display) -> YamlError {
    YamlError {
        line: Some(line),
        message: message.to_string(),
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
