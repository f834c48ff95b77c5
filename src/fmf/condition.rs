//! Conditions: a small, safe subset of the Python expressions `fmf` evaluates
//! with `eval()` over node data (`tier == 1 and 'fast' in tag`).
//!
//! Supported: literals (ints, floats, quoted strings, `True`/`False`/`None`,
//! `[lists]`), data keys as names, subscripts (`x[0]`, `x['k']`), comparisons
//! (`==`, `!=`, `<`, `<=`, `>`, `>=`, `in`, `not in`, `is`, `is not`, chained),
//! `not`, `and`, `or`, parentheses. A name missing from the data makes the
//! condition undecidable ([`Condition::evaluate`] returns `None`), which excludes
//! the node, like the reference's `FilterError`.

use super::error::FmfError;
use super::value::Map;
use super::value::{Key, Value};

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Num(Value),
    Str(String),
    Name(String),
    Op(&'static str),
    LParen,
    RParen,
    LBrack,
    RBrack,
    Comma,
}

#[derive(Clone, Debug)]
enum Expr {
    Lit(Value),
    Name(String),
    List(Vec<Expr>),
    Index(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Cmp(Box<Expr>, Vec<(&'static str, Expr)>),
}

/// Why a condition expression cannot be parsed: the source of [`FmfError::Filter`].
#[derive(Debug, thiserror::Error)]
enum SyntaxError {
    #[error("unterminated string")]
    UnterminatedString,
    #[error("invalid number '{0}'")]
    BadNumber(String),
    #[error("unexpected character '{0}'")]
    UnexpectedChar(char),
    #[error("expression nested too deeply")]
    TooDeep,
    #[error("expected {0}")]
    Expected(&'static str),
    #[error("unexpected token {0}")]
    UnexpectedToken(String),
    #[error("unexpected trailing tokens")]
    Trailing,
}

/// A parsed condition.
#[derive(Clone, Debug)]
pub struct Condition {
    expr: Expr,
}

fn tokenize(s: &str) -> Result<Vec<Tok>, SyntaxError> {
    let chars: Vec<char> = s.chars().collect();
    let mut i = 0;
    let mut out = Vec::new();
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        if c == '\'' || c == '"' {
            let q = c;
            i += 1;
            let mut text = String::new();
            loop {
                let Some(&d) = chars.get(i) else {
                    return Err(SyntaxError::UnterminatedString);
                };
                i += 1;
                if d == q {
                    break;
                }
                if d == '\\' {
                    let Some(&e) = chars.get(i) else {
                        return Err(SyntaxError::UnterminatedString);
                    };
                    i += 1;
                    text.push(match e {
                        'n' => '\n',
                        't' => '\t',
                        other => other,
                    });
                } else {
                    text.push(d);
                }
            }
            out.push(Tok::Str(text));
            continue;
        }
        if c.is_ascii_digit() || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit)) {
            let start = i;
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric() || chars[i] == '.' || chars[i] == '_')
            {
                i += 1;
            }
            let text: String = chars[start..i].iter().collect();
            let clean = text.replace('_', "");
            let v = if let Ok(n) = clean.parse::<i128>() {
                Value::Int(n)
            } else if let Ok(f) = clean.parse::<f64>() {
                Value::Float(f)
            } else {
                return Err(SyntaxError::BadNumber(text));
            };
            out.push(Tok::Num(v));
            continue;
        }
        if c.is_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            out.push(Tok::Name(chars[start..i].iter().collect()));
            continue;
        }
        let two: String = chars[i..chars.len().min(i + 2)].iter().collect();
        let op2 = ["==", "!=", "<=", ">="].into_iter().find(|o| *o == two);
        if let Some(o) = op2 {
            out.push(Tok::Op(o));
            i += 2;
            continue;
        }
        let tok = match c {
            '<' => Tok::Op("<"),
            '>' => Tok::Op(">"),
            '(' => Tok::LParen,
            ')' => Tok::RParen,
            '[' => Tok::LBrack,
            ']' => Tok::RBrack,
            ',' => Tok::Comma,
            other => return Err(SyntaxError::UnexpectedChar(other)),
        };
        out.push(tok);
        i += 1;
    }
    Ok(out)
}

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
    depth: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }
    fn is_name(&self, n: &str) -> bool {
        matches!(self.peek(), Some(Tok::Name(x)) if x == n)
    }
    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).cloned();
        self.pos += 1;
        t
    }
    fn enter(&mut self) -> Result<(), SyntaxError> {
        self.depth += 1;
        if self.depth > 200 {
            return Err(SyntaxError::TooDeep);
        }
        Ok(())
    }
    fn or(&mut self) -> Result<Expr, SyntaxError> {
        self.enter()?;
        let mut left = self.and()?;
        while self.is_name("or") {
            self.pos += 1;
            left = Expr::Or(Box::new(left), Box::new(self.and()?));
        }
        self.depth -= 1;
        Ok(left)
    }
    fn and(&mut self) -> Result<Expr, SyntaxError> {
        let mut left = self.not()?;
        while self.is_name("and") {
            self.pos += 1;
            left = Expr::And(Box::new(left), Box::new(self.not()?));
        }
        Ok(left)
    }
    fn not(&mut self) -> Result<Expr, SyntaxError> {
        if self.is_name("not") {
            self.pos += 1;
            self.enter()?;
            let e = Expr::Not(Box::new(self.not()?));
            self.depth -= 1;
            return Ok(e);
        }
        self.cmp()
    }
    fn cmp(&mut self) -> Result<Expr, SyntaxError> {
        let first = self.postfix()?;
        let mut rest = Vec::new();
        loop {
            let op = match self.peek() {
                Some(Tok::Op(o)) => {
                    let o = *o;
                    self.pos += 1;
                    o
                }
                Some(Tok::Name(n)) if n == "in" => {
                    self.pos += 1;
                    "in"
                }
                Some(Tok::Name(n)) if n == "not" => {
                    if matches!(self.toks.get(self.pos + 1), Some(Tok::Name(x)) if x == "in") {
                        self.pos += 2;
                        "not in"
                    } else {
                        break;
                    }
                }
                Some(Tok::Name(n)) if n == "is" => {
                    self.pos += 1;
                    if self.is_name("not") {
                        self.pos += 1;
                        "is not"
                    } else {
                        "is"
                    }
                }
                _ => break,
            };
            rest.push((op, self.postfix()?));
        }
        Ok(if rest.is_empty() {
            first
        } else {
            Expr::Cmp(Box::new(first), rest)
        })
    }
    fn postfix(&mut self) -> Result<Expr, SyntaxError> {
        let mut e = self.atom()?;
        while self.peek() == Some(&Tok::LBrack) {
            self.pos += 1;
            let idx = self.or()?;
            if self.next() != Some(Tok::RBrack) {
                return Err(SyntaxError::Expected("']'"));
            }
            e = Expr::Index(Box::new(e), Box::new(idx));
        }
        Ok(e)
    }
    fn atom(&mut self) -> Result<Expr, SyntaxError> {
        match self.next() {
            Some(Tok::Num(v)) => Ok(Expr::Lit(v)),
            Some(Tok::Str(s)) => Ok(Expr::Lit(Value::from(s))),
            Some(Tok::Name(n)) => Ok(match n.as_str() {
                "True" => Expr::Lit(Value::Bool(true)),
                "False" => Expr::Lit(Value::Bool(false)),
                "None" => Expr::Lit(Value::Null),
                _ => Expr::Name(n),
            }),
            Some(Tok::LParen) => {
                let e = self.or()?;
                if self.next() != Some(Tok::RParen) {
                    return Err(SyntaxError::Expected("')'"));
                }
                Ok(e)
            }
            Some(Tok::LBrack) => {
                let mut items = Vec::new();
                if self.peek() == Some(&Tok::RBrack) {
                    self.pos += 1;
                    return Ok(Expr::List(items));
                }
                loop {
                    items.push(self.or()?);
                    match self.next() {
                        Some(Tok::Comma) => {
                            if self.peek() == Some(&Tok::RBrack) {
                                self.pos += 1;
                                break;
                            }
                        }
                        Some(Tok::RBrack) => break,
                        _ => return Err(SyntaxError::Expected("',' or ']'")),
                    }
                }
                Ok(Expr::List(items))
            }
            other => Err(SyntaxError::UnexpectedToken(format!("{other:?}"))),
        }
    }
}

fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Int(i) => *i != 0,
        Value::Float(f) => *f != 0.0,
        Value::Str(s) => !s.is_empty(),
        Value::List(l) => !l.is_empty(),
        Value::Map(m) => !m.is_empty(),
        _ => true,
    }
}

fn order(a: &Value, b: &Value) -> Option<std::cmp::Ordering> {
    if let (Some(x), Some(y)) = (a.as_number(), b.as_number()) {
        let f = |n| match n {
            super::value::Num::Int(i) => i as f64,
            super::value::Num::Float(f) => f,
        };
        return f(x).partial_cmp(&f(y));
    }
    match (a, b) {
        (Value::Str(x), Value::Str(y)) => Some(x.cmp(y)),
        (Value::List(x), Value::List(y)) => {
            for (p, q) in x.iter().zip(y.iter()) {
                if p != q {
                    return order(p, q);
                }
            }
            Some(x.len().cmp(&y.len()))
        }
        _ => None,
    }
}

fn contains(container: &Value, item: &Value) -> Option<bool> {
    match container {
        Value::List(l) => Some(l.contains(item)),
        Value::Str(s) => item.as_str().map(|i| s.contains(i)),
        Value::Map(m) => Some(m.get_key(&Key(item.clone())).is_some()),
        _ => None,
    }
}

fn eval(e: &Expr, data: &Map) -> Option<Value> {
    Some(match e {
        Expr::Lit(v) => v.clone(),
        Expr::Name(n) => data.get(n)?.clone(),
        Expr::List(items) => Value::from(
            items
                .iter()
                .map(|i| eval(i, data))
                .collect::<Option<Vec<_>>>()?,
        ),
        Expr::Index(c, i) => {
            let c = eval(c, data)?;
            let i = eval(i, data)?;
            match (&c, &i) {
                (Value::List(l), Value::Int(n)) => {
                    let len = l.len() as i128;
                    let idx = if *n < 0 { len + n } else { *n };
                    l.get(usize::try_from(idx).ok()?)?.clone()
                }
                (Value::Map(m), k) => m.get_key(&Key(k.clone()))?.clone(),
                _ => return None,
            }
        }
        Expr::Not(x) => Value::Bool(!truthy(&eval(x, data)?)),
        Expr::And(a, b) => {
            let l = eval(a, data)?;
            if truthy(&l) { eval(b, data)? } else { l }
        }
        Expr::Or(a, b) => {
            let l = eval(a, data)?;
            if truthy(&l) { l } else { eval(b, data)? }
        }
        Expr::Cmp(first, rest) => {
            let mut left = eval(first, data)?;
            for (op, r) in rest {
                let right = eval(r, data)?;
                use std::cmp::Ordering::*;
                let ok = match *op {
                    "==" => left == right,
                    "!=" => left != right,
                    "<" => order(&left, &right)? == Less,
                    "<=" => order(&left, &right)? != Greater,
                    ">" => order(&left, &right)? == Greater,
                    ">=" => order(&left, &right)? != Less,
                    "in" => contains(&right, &left)?,
                    "not in" => !contains(&right, &left)?,
                    "is" => {
                        left == right
                            && std::mem::discriminant(&left) == std::mem::discriminant(&right)
                    }
                    _ => {
                        !(left == right
                            && std::mem::discriminant(&left) == std::mem::discriminant(&right))
                    }
                };
                if !ok {
                    return Some(Value::Bool(false));
                }
                left = right;
            }
            Value::Bool(true)
        }
    })
}

impl Condition {
    /// Parse a condition expression.
    pub fn parse(text: &str) -> Result<Condition, FmfError> {
        let bad = |e: SyntaxError| FmfError::Filter {
            expr: text.to_string(),
            source: Box::new(e),
        };
        let toks = tokenize(text).map_err(bad)?;
        let mut p = Parser {
            toks,
            pos: 0,
            depth: 0,
        };
        let expr = p.or().map_err(bad)?;
        if p.pos != p.toks.len() {
            return Err(bad(SyntaxError::Trailing));
        }
        Ok(Condition { expr })
    }

    /// Evaluate against node data: `Some(truthiness)`, or `None` when a name is
    /// missing or the operation is not supported for the operand types.
    pub fn evaluate(&self, data: &Map) -> Option<bool> {
        eval(&self.expr, data).map(|v| truthy(&v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions() -> Result<(), FmfError> {
        let mut d = Map::new();
        d.insert("tier", Value::Int(1));
        d.insert("tag", Value::from(vec![Value::from("fast")]));
        let ev = |c: &str| Condition::parse(c).map(|c| c.evaluate(&d));
        assert_eq!(ev("tier == 1")?, Some(true));
        assert_eq!(ev("'fast' in tag and tier < 2")?, Some(true));
        assert_eq!(ev("not 'slow' in tag")?, Some(true));
        assert_eq!(ev("'slow' not in tag")?, Some(true));
        assert_eq!(ev("missing == 1")?, None);
        assert_eq!(ev("tag[0] == 'fast'")?, Some(true));
        assert!(Condition::parse("tier ==").is_err());
        Ok(())
    }
}
