//! Merge operators (`+`, `+<`, `-`, `-~`, `~`) used by inheritance and `adjust`.
//!
//! [`Merger::merge_special`] merges a source mapping into a target mapping with the
//! exact rules of the reference: the base key is the raw key right-stripped of the
//! operator's *characters*, an operator on an absent key is dropped (except `+`/`+<`,
//! which set it), and each operator has its own type rules.

use super::error::FmfError;
use super::pyre::RegexCache;
use super::value::{Key, Map, Num, Value};

/// Merge context: names the node (and its source file) for error messages and
/// caches compiled regular expressions.
pub(crate) struct Merger<'a> {
    pub node: &'a str,
    pub source: &'a std::path::Path,
    pub regexes: &'a mut RegexCache,
}

/// Which operator a raw key carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    Plus,
    Prepend,
    MinusRegexp,
    Minus,
    Regexp,
    Set,
}

/// Classify a raw key and compute its base key.
pub(crate) fn classify(key: &str) -> (Op, &str) {
    if key.ends_with('+') {
        (Op::Plus, key.trim_end_matches('+'))
    } else if key.ends_with("+<") {
        (Op::Prepend, key.trim_end_matches(['+', '<']))
    } else if key.ends_with("-~") {
        (Op::MinusRegexp, key.trim_end_matches(['-', '~']))
    } else if key.ends_with('-') {
        (Op::Minus, key.trim_end_matches('-'))
    } else if key.ends_with('~') {
        (Op::Regexp, key.trim_end_matches('~'))
    } else {
        (Op::Set, key)
    }
}

impl Merger<'_> {
    fn merge_err(&self, key: &str, message: impl Into<String>) -> FmfError {
        FmfError::Merge {
            node: self.node.to_string(),
            source_file: self.source.display().to_string(),
            key: key.to_string(),
            message: message.into(),
        }
    }

    fn pattern_err(&self, e: SubstitutionError) -> FmfError {
        FmfError::Pattern {
            node: self.node.to_string(),
            source_file: self.source.display().to_string(),
            source: Box::new(e),
        }
    }

    /// Merge `source` entries (in order) into `data`.
    pub fn merge_special<I>(&mut self, data: &mut Map, source: I) -> Result<(), FmfError>
    where
        I: IntoIterator<Item = (Key, Value)>,
    {
        for (key, value) in source {
            let Some(raw) = key.as_str() else {
                data.insert_key(key, value);
                continue;
            };
            let (op, base) = classify(raw);
            match op {
                Op::Set => data.insert_key(key, value),
                Op::Plus => self.plus(data, base, value, false)?,
                Op::Prepend => self.plus(data, base, value, true)?,
                Op::Minus => self.minus(data, base, value)?,
                Op::MinusRegexp => self.minus_regexp(data, base, value)?,
                Op::Regexp => self.regexp(data, base, value)?,
            }
        }
        Ok(())
    }

    fn merge_map_into(&mut self, target: &mut Map, source: &Map) -> Result<(), FmfError> {
        let entries: Vec<(Key, Value)> =
            source.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        self.merge_special(target, entries)
    }

    fn plus(
        &mut self,
        data: &mut Map,
        key: &str,
        value: Value,
        prepend: bool,
    ) -> Result<(), FmfError> {
        let Some(old) = data.get_mut(key) else {
            data.insert(key, value);
            return Ok(());
        };
        match (old, value) {
            (Value::List(items), Value::Map(src)) => {
                for item in std::sync::Arc::make_mut(items).iter_mut() {
                    match item {
                        Value::Map(m) => self.merge_map_into(m, &src)?,
                        other => {
                            return Err(self.merge_err(
                                key,
                                format!("item '{}' must be a dictionary", other.python_str()),
                            ));
                        }
                    }
                }
                Ok(())
            }
            (old @ Value::Map(_), Value::List(src)) => {
                let Value::Map(base) = &*old else {
                    return Ok(());
                };
                let mut result = Vec::with_capacity(src.len());
                for item in src.iter() {
                    match item {
                        Value::Map(m) => {
                            let mut copy = base.clone();
                            self.merge_map_into(&mut copy, m)?;
                            result.push(Value::Map(copy));
                        }
                        other => {
                            return Err(self.merge_err(
                                key,
                                format!("item '{}' must be a dictionary", other.python_str()),
                            ));
                        }
                    }
                }
                *old = Value::from(result);
                Ok(())
            }
            (Value::Map(m), Value::Map(src)) => self.merge_special(m, src.into_entries()),
            (Value::List(items), Value::List(extra)) => {
                let joined: Vec<Value> = if prepend {
                    extra.iter().chain(items.iter()).cloned().collect()
                } else {
                    items.iter().chain(extra.iter()).cloned().collect()
                };
                *items = std::sync::Arc::new(joined);
                Ok(())
            }
            (Value::Str(s), Value::Str(extra)) => {
                let joined = if prepend {
                    format!("{extra}{s}")
                } else {
                    format!("{s}{extra}")
                };
                *s = joined.into();
                Ok(())
            }
            (old, value) => {
                let (a, b) = if prepend {
                    (&value, &*old)
                } else {
                    (&*old, &value)
                };
                let result = arith(a, b, false).ok_or_else(|| {
                    self.merge_err(
                        key,
                        format!(
                            "unsupported operand type(s) for +: '{}' and '{}'",
                            a.type_name(),
                            b.type_name()
                        ),
                    )
                })?;
                *old = result;
                Ok(())
            }
        }
    }

    fn minus(&mut self, data: &mut Map, key: &str, value: Value) -> Result<(), FmfError> {
        let Some(old) = data.get_mut(key) else {
            return Ok(());
        };
        match (&mut *old, &value) {
            (o, v) if o.is_number() && v.is_number() => {
                let r = arith(o, v, true)
                    .ok_or_else(|| self.merge_err(key, "unsupported numeric operation"))?;
                *old = r;
            }
            (Value::Str(s), Value::Str(pattern)) => {
                let r = self.regexes.sub(pattern, "", s)?;
                *s = r.into();
            }
            (Value::List(items), Value::List(remove)) => {
                if items.iter().any(|i| remove.contains(i)) {
                    std::sync::Arc::make_mut(items).retain(|i| !remove.contains(i));
                }
            }
            (Value::Map(m), Value::List(remove)) => {
                for k in remove.iter() {
                    if matches!(k, Value::List(_) | Value::Map(_)) {
                        return Err(self.merge_err(key, "unhashable key to remove"));
                    }
                    m.remove_key(&Key(k.clone()));
                }
            }
            (o, v) => {
                return Err(self.merge_err(
                    key,
                    format!("wrong type ({} - {})", o.type_name(), v.type_name()),
                ));
            }
        }
        Ok(())
    }

    fn patterns(&self, key: &str, value: &Value) -> Result<Vec<String>, FmfError> {
        match value {
            Value::Str(s) => Ok(vec![s.to_string()]),
            Value::List(items) => items
                .iter()
                .map(|i| match i {
                    Value::Str(s) => Ok(s.to_string()),
                    other => Err(self.merge_err(
                        key,
                        format!("pattern must be a string, got {}", other.type_name()),
                    )),
                })
                .collect(),
            Value::Map(m) => m
                .keys()
                .map(|k| {
                    k.as_str()
                        .map(str::to_string)
                        .ok_or_else(|| self.merge_err(key, "pattern must be a string"))
                })
                .collect(),
            other => Err(self.merge_err(
                key,
                format!(
                    "patterns must be a string or a list, got {}",
                    other.type_name()
                ),
            )),
        }
    }

    fn minus_regexp(&mut self, data: &mut Map, key: &str, value: Value) -> Result<(), FmfError> {
        if !data.contains_key(key) {
            return Ok(());
        }
        let patterns = self.patterns(key, &value)?;
        let regexes = &mut *self.regexes;
        let mut any = |text: &str| -> Result<bool, FmfError> {
            for p in &patterns {
                if regexes.search(p, text)? {
                    return Ok(true);
                }
            }
            Ok(false)
        };
        let Some(old) = data.get_mut(key) else {
            return Ok(());
        };
        match old {
            Value::List(items) => {
                let mut kept = Vec::with_capacity(items.len());
                for item in items.iter() {
                    if !any(&item.python_str())? {
                        kept.push(item.clone());
                    }
                }
                *items = std::sync::Arc::new(kept);
            }
            Value::Str(s) => {
                if any(s)? {
                    *s = "".into();
                }
            }
            Value::Map(m) => {
                let mut drop = Vec::new();
                for k in m.keys() {
                    if any(&k.0.python_str())? {
                        drop.push(k.clone());
                    }
                }
                for k in drop {
                    m.remove_key(&k);
                }
            }
            other => {
                let t = other.type_name();
                return Err(self.merge_err(key, format!("wrong type ({t})")));
            }
        }
        Ok(())
    }

    fn regexp(&mut self, data: &mut Map, key: &str, value: Value) -> Result<(), FmfError> {
        if !data.contains_key(key) {
            return Ok(());
        }
        let sources: Vec<Value> = match value {
            Value::Str(s) => vec![Value::Str(s)],
            Value::List(l) => l.to_vec(),
            other => {
                return Err(
                    self.pattern_err(SubstitutionError::NotAString(Some(other.type_name())))
                );
            }
        };
        let mut pairs = Vec::with_capacity(sources.len());
        for s in &sources {
            let Value::Str(s) = s else {
                return Err(self.pattern_err(SubstitutionError::NotAString(None)));
            };
            pairs.push(split_pattern_replacement(s).map_err(|e| self.pattern_err(e))?);
        }
        for (pattern, repl) in pairs {
            let Some(old) = data.get_mut(key) else {
                return Ok(());
            };
            match old {
                Value::List(items) => {
                    for item in std::sync::Arc::make_mut(items).iter_mut() {
                        match item {
                            Value::Str(s) => *s = self.regexes.sub(&pattern, &repl, s)?.into(),
                            _ => return Err(self.merge_err(key, "not a string")),
                        }
                    }
                }
                Value::Str(s) => *s = self.regexes.sub(&pattern, &repl, s)?.into(),
                _ => return Err(self.merge_err(key, "wrong type")),
            }
        }
        Ok(())
    }
}

/// A malformed `<d>PATTERN<d>REPLACEMENT<d>` string: the source of [`FmfError::Pattern`].
#[derive(Debug, thiserror::Error)]
pub(crate) enum SubstitutionError {
    #[error("'{0}' has to start and end with the same delimiter")]
    NoDelimiter(String),
    #[error("'{0}' has to end with '{1}'")]
    Unterminated(String, char),
    #[error("'{0}' can't be split in two parts")]
    NotTwoParts(String),
    #[error("pattern cannot be empty: '{0}'")]
    EmptyPattern(String),
    #[error("{}", match .0 {
        Some(t) => format!("substitution must be a string or list of strings, got {t}"),
        None => "substitution must be a string".to_string(),
    })]
    NotAString(Option<&'static str>),
}

/// Split `<d>PATTERN<d>REPLACEMENT<d>`.
pub(crate) fn split_pattern_replacement(
    source: &str,
) -> Result<(String, String), SubstitutionError> {
    let mut chars = source.chars();
    let Some(delim) = chars.next() else {
        return Err(SubstitutionError::NoDelimiter(source.to_string()));
    };
    if !source.ends_with(delim) {
        return Err(SubstitutionError::Unterminated(source.to_string(), delim));
    }
    let inner = if source.len() >= 2 * delim.len_utf8() {
        &source[delim.len_utf8()..source.len() - delim.len_utf8()]
    } else {
        ""
    };
    let parts: Vec<&str> = inner.split(delim).collect();
    if parts.len() != 2 {
        return Err(SubstitutionError::NotTwoParts(source.to_string()));
    }
    if parts[0].is_empty() {
        return Err(SubstitutionError::EmptyPattern(source.to_string()));
    }
    Ok((parts[0].to_string(), parts[1].to_string()))
}

/// Python `a + b` / `a - b` for numbers (bool counts as int).
fn arith(a: &Value, b: &Value, minus: bool) -> Option<Value> {
    match (a.as_number()?, b.as_number()?) {
        (Num::Int(x), Num::Int(y)) => {
            let r = if minus {
                x.checked_sub(y)?
            } else {
                x.checked_add(y)?
            };
            Some(Value::Int(r))
        }
        (x, y) => {
            let f = |n: Num| match n {
                Num::Int(i) => i as f64,
                Num::Float(f) => f,
            };
            Some(Value::Float(if minus { f(x) - f(y) } else { f(x) + f(y) }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classify_rstrip() {
        assert_eq!(classify("tag++"), (Op::Plus, "tag"));
        assert_eq!(classify("name+<+<"), (Op::Prepend, "name"));
        assert_eq!(classify("foo--"), (Op::Minus, "foo"));
        assert_eq!(classify("x-~"), (Op::MinusRegexp, "x"));
        assert_eq!(classify("x~"), (Op::Regexp, "x"));
        assert_eq!(classify("x"), (Op::Set, "x"));
    }

    #[test]
    fn split_patterns() {
        assert!(split_pattern_replacement("/a/b/").is_ok());
        assert!(split_pattern_replacement("/a/b").is_err());
        assert!(split_pattern_replacement("/a/b/c/").is_err());
        assert!(split_pattern_replacement("//b/").is_err());
        assert!(split_pattern_replacement("").is_err());
        assert!(split_pattern_replacement("/").is_err());
    }
}
