//! Unit tests of the YAML loader and of the fast path against it.

use super::{fast, load, load_full};
use crate::fmf::value::Value;

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

#[test]
fn agrees_with_full_parser_on_tricky_inputs() {
    let docs = [
        "a:\n- x\n- y\nb: 1\n",
        "- a: 1\n  b: 2\n- c\n",
        "key: 'it''s' # c\n",
        "a: b\n  c\n",
        "a: [1, 2]\nb: {x: y, z: [1, 'q']}\n",
        "? a\n: b\n",
        "a: 1\n a2: 2\n",
        "-x: 1\n",
        "a:\n  - b\n  -\n    c: 1\n",
        "a:\n    b: 1\n  c: 2\n",
        "1: one\ntrue: t\n~: n\n",
        "a: 1\na: 2\n",
        "a: _000\nb: .5\nc: +1\nd: 2024-01-02\n",
        "a: x #c\nb: x#c\nc: http://x\n",
        "list: [a, b,]\n",
        "t: \"dq\"\n",
        "t: \"d\\tq\"\n",
        "",
        "# only a comment\n",
        "a:\n",
        "top\n",
    ];
    for d in docs {
        if let Some(fast) = fast::parse(d) {
            let full = load_full(d);
            assert_eq!(
                Ok(format!("{fast:?}")),
                full.map(|v| format!("{v:?}")).map_err(|e| e.message),
                "{d:?}"
            );
        }
    }
    assert!(fast::parse("a: 1\nb: [x, y]\n/c:\n  d: 'e'\n").is_some());
    assert!(fast::parse("a:\n- x\n- y\nb: 1\n").is_some());
    assert!(fast::parse("a: &x 1\n").is_none());
    assert!(fast::parse("a: |\n  x\n").is_none());
}
