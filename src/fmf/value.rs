//! The FMF data model: an ordered, YAML-faithful value type.
//!
//! Python `fmf` keeps whatever `ruamel.yaml` produced: arbitrary-size integers,
//! dates, mappings with non-string keys compared with Python semantics
//! (`1 == 1.0 == True`). [`Value`] models exactly that, so merging, filtering and
//! the canonical dump behave like the reference. [`Value::to_json`] converts to
//! `serde_json` for consumers that do not care about those details.

use std::fmt::Write as _;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use indexmap::{Equivalent, IndexMap};

pub use crate::pyfmt::python_float_repr;
use crate::pyfmt::python_str_repr;

/// A YAML date or date-time (`2024-01-02`, `2024-01-02 10:20:30.5+02:00`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Timestamp {
    /// Year.
    pub year: i32,
    /// Month (1-12).
    pub month: u8,
    /// Day of month.
    pub day: u8,
    /// Time of day `(hour, minute, second, microsecond)`; `None` for a plain date.
    pub time: Option<(u8, u8, u8, u32)>,
    /// Time-zone offset in minutes east of UTC, if the text gave one (`Z` is 0).
    pub tz_minutes: Option<i32>,
}

impl Timestamp {
    /// Python `str()` of the date/datetime (also the canonical dump text).
    pub fn python_str(&self) -> String {
        let mut s = format!("{:04}-{:02}-{:02}", self.year, self.month, self.day);
        if let Some((h, m, sec, us)) = self.time {
            let _ = write!(s, " {h:02}:{m:02}:{sec:02}");
            if us != 0 {
                let _ = write!(s, ".{us:06}");
            }
            if let Some(tz) = self.tz_minutes {
                let sign = if tz < 0 { '-' } else { '+' };
                let a = tz.unsigned_abs();
                let _ = write!(s, "{sign}{:02}:{:02}", a / 60, a % 60);
            }
        }
        s
    }

    fn python_repr(&self) -> String {
        match self.time {
            None => format!("datetime.date({}, {}, {})", self.year, self.month, self.day),
            Some((h, m, s, us)) => {
                let mut out = format!(
                    "datetime.datetime({}, {}, {}, {}, {}",
                    self.year, self.month, self.day, h, m
                );
                if s != 0 || us != 0 {
                    let _ = write!(out, ", {s}");
                }
                if us != 0 {
                    let _ = write!(out, ", {us}");
                }
                if let Some(tz) = self.tz_minutes {
                    if tz == 0 {
                        out.push_str(", tzinfo=datetime.timezone.utc");
                    } else {
                        let _ = write!(
                            out,
                            ", tzinfo=datetime.timezone(datetime.timedelta(seconds={}))",
                            tz * 60
                        );
                    }
                }
                out.push(')');
                out
            }
        }
    }
}

/// One FMF/YAML value.
#[derive(Clone, Debug)]
pub enum Value {
    /// YAML null (`~`, `null`, empty).
    Null,
    /// YAML 1.2 bool.
    Bool(bool),
    /// Integer that fits in 128 bits.
    Int(i128),
    /// Integer too large for 128 bits, kept as its decimal text (with sign).
    BigInt(String),
    /// Floating point number (may be NaN/inf, which cannot be dumped).
    Float(f64),
    /// String (shared: cloning is cheap).
    Str(Arc<str>),
    /// Date or date-time.
    Timestamp(Timestamp),
    /// Sequence (shared, copy-on-write: cloning is cheap).
    List(Arc<Vec<Value>>),
    /// Mapping (insertion ordered).
    Map(Map),
    /// A value YAML can load but that has no canonical JSON form
    /// (`!!binary`, `!!set`, `!!omap`, `!!pairs`). The string describes it.
    Unsupported(String),
}

impl PartialEq for Value {
    /// Python `==` semantics (`1 == 1.0 == True`, lists/dicts element-wise).
    fn eq(&self, other: &Self) -> bool {
        use Value::*;
        if let (Some(a), Some(b)) = (self.as_number(), other.as_number()) {
            return a.py_eq(&b);
        }
        match (self, other) {
            (Null, Null) => true,
            (Str(a), Str(b)) => a == b,
            (BigInt(a), BigInt(b)) => a == b,
            (Timestamp(a), Timestamp(b)) => a == b,
            (List(a), List(b)) => a == b,
            (Map(a), Map(b)) => {
                a.len() == b.len() && a.iter().all(|(k, v)| b.0.get(k).is_some_and(|w| w == v))
            }
            (Unsupported(a), Unsupported(b)) => a == b,
            _ => false,
        }
    }
}

/// A numeric view used for Python-like arithmetic and comparisons.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Num {
    Int(i128),
    Float(f64),
}

impl Num {
    fn py_eq(&self, other: &Num) -> bool {
        match (*self, *other) {
            (Num::Int(a), Num::Int(b)) => a == b,
            (Num::Float(a), Num::Float(b)) => a == b,
            (Num::Int(a), Num::Float(b)) | (Num::Float(b), Num::Int(a)) => (a as f64) == b,
        }
    }
}

impl Value {
    pub(crate) fn as_number(&self) -> Option<Num> {
        match self {
            Value::Bool(b) => Some(Num::Int(i128::from(*b))),
            Value::Int(i) => Some(Num::Int(*i)),
            Value::Float(f) => Some(Num::Float(*f)),
            _ => None,
        }
    }

    /// Whether this is a number (bool counts, as in Python).
    pub fn is_number(&self) -> bool {
        matches!(
            self,
            Value::Bool(_) | Value::Int(_) | Value::Float(_) | Value::BigInt(_)
        )
    }

    /// The string, if this is a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The bool, if this is a bool.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// The list, if this is a list.
    pub fn as_list(&self) -> Option<&[Value]> {
        match self {
            Value::List(l) => Some(l),
            _ => None,
        }
    }

    /// The mapping, if this is a mapping.
    pub fn as_map(&self) -> Option<&Map> {
        match self {
            Value::Map(m) => Some(m),
            _ => None,
        }
    }

    /// Python type name (used in error messages).
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Null => "NoneType",
            Value::Bool(_) => "bool",
            Value::Int(_) | Value::BigInt(_) => "int",
            Value::Float(_) => "float",
            Value::Str(_) => "str",
            Value::Timestamp(t) if t.time.is_none() => "date",
            Value::Timestamp(_) => "datetime",
            Value::List(_) => "list",
            Value::Map(_) => "dict",
            Value::Unsupported(_) => "object",
        }
    }

    /// Python `str(value)`: what filters and `-~` regexes see.
    pub fn python_str(&self) -> String {
        match self {
            Value::Str(s) => s.to_string(),
            Value::Timestamp(t) => t.python_str(),
            other => other.python_repr(),
        }
    }

    /// Python `repr(value)`.
    pub fn python_repr(&self) -> String {
        let mut out = String::new();
        self.write_repr(&mut out);
        out
    }

    fn write_repr(&self, out: &mut String) {
        match self {
            Value::Null => out.push_str("None"),
            Value::Bool(true) => out.push_str("True"),
            Value::Bool(false) => out.push_str("False"),
            Value::Int(i) => {
                let _ = write!(out, "{i}");
            }
            Value::BigInt(s) => out.push_str(s),
            Value::Float(f) => out.push_str(&python_float_repr(*f)),
            Value::Str(s) => python_str_repr(out, s),
            Value::Timestamp(t) => out.push_str(&t.python_repr()),
            Value::List(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    item.write_repr(out);
                }
                out.push(']');
            }
            Value::Map(map) => {
                out.push('{');
                for (i, (k, v)) in map.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    k.0.write_repr(out);
                    out.push_str(": ");
                    v.write_repr(out);
                }
                out.push('}');
            }
            Value::Unsupported(desc) => out.push_str(desc),
        }
    }

    /// Lossy conversion to `serde_json` (dates become their string form, NaN/inf and
    /// unsupported values become `null`, non-string keys become their dump text).
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match self {
            Value::Null | Value::Unsupported(_) => J::Null,
            Value::Bool(b) => J::Bool(*b),
            Value::Int(i) => {
                if let Ok(v) = i64::try_from(*i) {
                    J::from(v)
                } else if let Ok(v) = u64::try_from(*i) {
                    J::from(v)
                } else {
                    J::from(*i as f64)
                }
            }
            Value::BigInt(s) => s.parse::<f64>().map(J::from).unwrap_or(J::Null),
            Value::Float(f) => serde_json::Number::from_f64(*f)
                .map(J::Number)
                .unwrap_or(J::Null),
            Value::Str(s) => J::String(s.to_string()),
            Value::Timestamp(t) => J::String(t.python_str()),
            Value::List(l) => J::Array(l.iter().map(Value::to_json).collect()),
            Value::Map(m) => J::Object(m.to_json_map()),
        }
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::Str(s.into())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::Str(s.into())
    }
}

impl From<Vec<Value>> for Value {
    fn from(items: Vec<Value>) -> Self {
        Value::List(Arc::new(items))
    }
}

impl From<Map> for Value {
    fn from(m: Map) -> Self {
        Value::Map(m)
    }
}

/// A mapping key: a scalar [`Value`] hashed and compared with Python semantics
/// (`1`, `1.0` and `true` are the same key; strings compare by content).
#[derive(Clone, Debug)]
pub struct Key(pub Value);

impl Key {
    /// The key as a string, if it is one.
    pub fn as_str(&self) -> Option<&str> {
        self.0.as_str()
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}
impl Eq for Key {}

impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        match &self.0 {
            // Must hash exactly like `str` so `&str` lookups work (see `Equivalent`).
            Value::Str(s) => (**s).hash(state),
            Value::Null => 0u8.hash(state),
            Value::Bool(b) => i128::from(*b).hash(state),
            Value::Int(i) => i.hash(state),
            Value::Float(f) => {
                if f.fract() == 0.0 && f.is_finite() && f.abs() < 1e30 {
                    (*f as i128).hash(state)
                } else {
                    f.to_bits().hash(state)
                }
            }
            Value::BigInt(s) => s.hash(state),
            Value::Timestamp(t) => t.hash(state),
            // Unhashable in Python; never produced as keys by the loader.
            _ => 1u8.hash(state),
        }
    }
}

impl Equivalent<Key> for str {
    fn equivalent(&self, key: &Key) -> bool {
        key.0.as_str() == Some(self)
    }
}

impl From<&str> for Key {
    fn from(s: &str) -> Self {
        Key(Value::Str(s.into()))
    }
}

/// An insertion-ordered mapping with Python key semantics. Shared and
/// copy-on-write: cloning is cheap, the first mutation of a shared copy copies
/// the entry table (values stay shared).
#[derive(Clone, Debug, Default)]
pub struct Map(pub(crate) Arc<KeyMap>);

/// The map type inside [`Map`] (fast, randomly seeded hashing).
pub(crate) type KeyMap = IndexMap<Key, Value, foldhash::fast::RandomState>;

impl Map {
    /// Empty mapping.
    pub fn new() -> Self {
        Map(Arc::new(KeyMap::default()))
    }
    /// Empty mapping with room for `capacity` entries.
    pub(crate) fn with_capacity(capacity: usize) -> Self {
        Map(Arc::new(KeyMap::with_capacity_and_hasher(
            capacity,
            Default::default(),
        )))
    }
    fn inner_mut(&mut self) -> &mut KeyMap {
        Arc::make_mut(&mut self.0)
    }
    /// Makes room for `additional` more entries. A shared map is copied here, once, with
    /// that room, instead of being copied at its exact size by the first mutation and grown
    /// again by the inserts that follow.
    pub(crate) fn reserve(&mut self, additional: usize) {
        match Arc::get_mut(&mut self.0) {
            Some(map) => map.reserve(additional),
            None => {
                // A clone keeps the stored hashes (no key is hashed again); the table of
                // the copy usually has room for a few more entries already.
                let mut map = (*self.0).clone();
                map.reserve(additional);
                self.0 = Arc::new(map);
            }
        }
    }
    /// Take the entries (in order), copying only if shared.
    pub(crate) fn into_key_map(self) -> KeyMap {
        Arc::try_unwrap(self.0).unwrap_or_else(|shared| (*shared).clone())
    }
    /// Owned entries in order (a shared mapping is copied first).
    pub fn into_entries(self) -> impl Iterator<Item = (Key, Value)> {
        Arc::try_unwrap(self.0)
            .unwrap_or_else(|shared| (*shared).clone())
            .into_iter()
    }
    /// Number of entries.
    pub fn len(&self) -> usize {
        self.0.len()
    }
    /// Whether the mapping is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    /// Look up a string key.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.0.get(key)
    }
    /// Look up a string key mutably.
    pub fn get_mut(&mut self, key: &str) -> Option<&mut Value> {
        if !self.0.contains_key(key) {
            return None;
        }
        self.inner_mut().get_mut(key)
    }
    /// Look up any key.
    pub fn get_key(&self, key: &Key) -> Option<&Value> {
        self.0.get(key)
    }
    /// Whether a string key is present.
    pub fn contains_key(&self, key: &str) -> bool {
        self.0.contains_key(key)
    }
    /// Insert or replace (an existing key keeps its position, like a Python dict).
    pub fn insert(&mut self, key: impl Into<Key>, value: Value) {
        self.inner_mut().insert(key.into(), value);
    }
    /// Insert with an arbitrary key.
    pub fn insert_key(&mut self, key: Key, value: Value) {
        self.inner_mut().insert(key, value);
    }
    /// Whether a key is present.
    pub fn contains(&self, key: &Key) -> bool {
        self.0.contains_key(key)
    }
    /// Remove a string key (keeps the order of the others).
    pub fn remove(&mut self, key: &str) -> Option<Value> {
        if !self.0.contains_key(key) {
            return None;
        }
        self.inner_mut().shift_remove(key)
    }
    /// Remove any key (keeps the order of the others).
    pub fn remove_key(&mut self, key: &Key) -> Option<Value> {
        if !self.0.contains_key(key) {
            return None;
        }
        self.inner_mut().shift_remove(key)
    }
    /// Iterate entries in order.
    pub fn iter(&self) -> impl Iterator<Item = (&Key, &Value)> {
        self.0.iter()
    }
    /// Iterate keys in order.
    pub fn keys(&self) -> impl Iterator<Item = &Key> {
        self.0.keys()
    }
    /// Iterate values in order.
    pub fn values(&self) -> impl Iterator<Item = &Value> {
        self.0.values()
    }
    /// Keep only entries for which `f` returns true.
    pub fn retain(&mut self, mut f: impl FnMut(&Key, &Value) -> bool) {
        self.inner_mut().retain(|k, v| f(k, v));
    }
    /// Convert to an ordered `serde_json` object (see [`Value::to_json`]).
    pub fn to_json_map(&self) -> serde_json::Map<String, serde_json::Value> {
        self.0
            .iter()
            .map(|(k, v)| (key_text(&k.0), v.to_json()))
            .collect()
    }
}

impl From<String> for Key {
    fn from(s: String) -> Self {
        Key(Value::Str(s.into()))
    }
}

impl FromIterator<(String, Value)> for Map {
    fn from_iter<T: IntoIterator<Item = (String, Value)>>(iter: T) -> Self {
        Map(Arc::new(
            iter.into_iter()
                .map(|(k, v)| (Key(Value::Str(k.into())), v))
                .collect(),
        ))
    }
}

impl<'a> IntoIterator for &'a Map {
    type Item = (&'a Key, &'a Value);
    type IntoIter = indexmap::map::Iter<'a, Key, Value>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

/// The text a key becomes in JSON output (`1`, `true`, `null`, `2.5`).
pub(crate) fn key_text(k: &Value) -> String {
    match k {
        Value::Str(s) => s.to_string(),
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Int(i) => i.to_string(),
        Value::BigInt(s) => s.clone(),
        Value::Float(f) => python_float_repr(*f),
        Value::Timestamp(t) => t.python_str(),
        other => other.python_repr(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_key_equality() {
        let mut m = Map::new();
        m.insert_key(Key(Value::Int(1)), Value::from("a"));
        assert!(m.get_key(&Key(Value::Bool(true))).is_some());
        assert!(m.get_key(&Key(Value::Float(1.0))).is_some());
        m.insert("x", Value::Null);
        assert!(m.contains_key("x"));
    }

    #[test]
    fn repr_like_python() {
        let v = Value::from(vec![
            Value::from("it's"),
            Value::Bool(true),
            Value::Null,
            Value::Float(1.5),
        ]);
        assert_eq!(v.python_str(), "[\"it's\", True, None, 1.5]");
    }
}
