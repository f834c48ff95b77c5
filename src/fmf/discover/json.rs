//! Metadata as JSON: list-like keys, Python `str()` of values, environments.

use indexmap::IndexMap;
use serde_json::Value as Json;

use crate::pyfmt::python_float_repr;

pub(super) fn listlike(v: Option<&Json>) -> Vec<&Json> {
    match v {
        None | Some(Json::Null) => Vec::new(),
        Some(Json::Array(a)) => a.iter().collect(),
        Some(other) => vec![other],
    }
}

/// Python `str()` of a JSON value (as the reference stringifies env values).
pub(super) fn py_str(v: &Json) -> String {
    match v {
        Json::String(s) => s.clone(),
        Json::Bool(true) => "True".into(),
        Json::Bool(false) => "False".into(),
        Json::Null => "None".into(),
        Json::Number(n) => match n.as_f64() {
            Some(f) if !n.is_i64() && !n.is_u64() => python_float_repr(f),
            _ => n.to_string(),
        },
        other => other.to_string(),
    }
}

pub(super) fn env_from(v: Option<&Json>) -> IndexMap<String, String> {
    let mut env = IndexMap::new();
    for item in listlike(v) {
        if let Json::Object(m) = item {
            for (k, v) in m {
                env.insert(k.clone(), py_str(v));
            }
        }
    }
    env
}

pub(super) fn json_strings(v: Option<&Json>) -> Vec<String> {
    listlike(v).into_iter().map(py_str).collect()
}
