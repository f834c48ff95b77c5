//! Context dimensions and the `when` rule language of `adjust`.
//!
//! A [`Context`] maps dimension names (`distro`, `arch`…) to one or more values.
//! [`Context::matches`] evaluates a rule such as
//! `distro >= rhel-9.4 and arch != s390x` with three-valued logic
//! ([`Outcome::Undecided`] when a dimension is missing or values cannot be
//! compared), exactly like `fmf.context.Context`.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use regex::Regex;

use super::value::Value;

/// Result of evaluating a rule against a context.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The rule holds.
    True,
    /// The rule does not hold.
    False,
    /// The rule cannot be decided (missing dimension, incomparable values).
    Undecided,
}

/// A context pair without `=` ([`Context::from_pairs`]); holds the pair.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("'{0}' is not KEY=VALUE")]
pub struct PairError(pub String);

pub use super::error::RuleError;

/// One context value split into name and version parts (`rhel-9.6` → `rhel`, `9`, `6`).
#[derive(Clone, Debug, PartialEq, Eq)]
struct CtxValue {
    raw: String,
    parts: Vec<String>,
}

impl CtxValue {
    fn new(raw: &str) -> Self {
        CtxValue {
            raw: raw.to_string(),
            parts: raw.split(['-', '.', ':']).map(str::to_string).collect(),
        }
    }
}

/// The environment a tree is adjusted for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Context {
    dims: BTreeMap<String, Vec<CtxValue>>,
    case_sensitive: bool,
}

/// Comparison operators of the rule language.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Defined,
    NotDefined,
    Less,
    MinorLess,
    LessEq,
    MinorLessEq,
    Eq,
    MinorEq,
    NotEq,
    MinorNotEq,
    GreaterEq,
    MinorGreaterEq,
    Greater,
    MinorGreater,
    Match,
    NotMatch,
}

#[derive(Clone, Debug)]
enum Expr {
    Const(bool),
    Cmp {
        dim: String,
        op: Op,
        values: Vec<CtxValue>,
    },
}

/// A parsed rule: OR of AND groups.
#[derive(Clone, Debug)]
pub struct Rule {
    groups: Vec<Vec<Expr>>,
}

// Patterns mirror the reference implementation; they are constants, so compiling
// them cannot fail at run time (checked by the unit tests).
static RE_TRIPLE: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(r"\A([\w-]+)\s*(<|~<|<=|~<=|==|~=|!=|~!=|>=|~>=|>|~>|~|!~)\s*([^=].*)").ok()
});
static RE_DOUBLE: LazyLock<Option<Regex>> =
    LazyLock::new(|| Regex::new(r"\A([\w-]+)\s*(is defined|is not defined)").ok());
static RE_AND: LazyLock<Option<Regex>> = LazyLock::new(|| Regex::new(r"\band\b").ok());
static RE_OR: LazyLock<Option<Regex>> = LazyLock::new(|| Regex::new(r"\bor\b").ok());

fn re(r: &'static LazyLock<Option<Regex>>) -> Result<&'static Regex, RuleError> {
    r.as_ref()
        .ok_or_else(|| RuleError("internal pattern failed to compile".into()))
}

/// Rewrite single `=` (not part of `==`, `!=`, `~=`, `<=`, `>=`) into `==`.
fn rewrite_equals(rule: &str) -> String {
    let chars: Vec<char> = rule.chars().collect();
    let mut out = String::with_capacity(rule.len() + 4);
    for (i, &c) in chars.iter().enumerate() {
        if c == '=' {
            let prev = if i > 0 { Some(chars[i - 1]) } else { None };
            let next = chars.get(i + 1).copied();
            let prev_ok = !matches!(prev, Some('=' | '!' | '~' | '<' | '>'));
            if prev_ok && next != Some('=') {
                out.push_str("==");
                continue;
            }
        }
        out.push(c);
    }
    out
}

impl Rule {
    /// Parse a rule string.
    pub fn parse(rule: &str) -> Result<Rule, RuleError> {
        let rule = rewrite_equals(rule);
        let mut groups = Vec::new();
        for or_group in re(&RE_OR)?.split(&rule) {
            if or_group.is_empty() {
                return Err(RuleError(format!("empty OR expression in '{rule}'")));
            }
            let mut and_group = Vec::new();
            for part in re(&RE_AND)?.split(or_group) {
                let part = part.trim_matches(is_py_space);
                if part.is_empty() {
                    return Err(RuleError(format!("empty AND expression in '{rule}'")));
                }
                and_group.push(parse_expression(part)?);
            }
            groups.push(and_group);
        }
        Ok(Rule { groups })
    }

    /// A constant rule (`when: true`).
    pub fn constant(value: bool) -> Rule {
        Rule {
            groups: vec![vec![Expr::Const(value)]],
        }
    }
}

fn is_py_space(c: char) -> bool {
    c.is_whitespace() || ('\x1c'..='\x1f').contains(&c)
}

fn parse_expression(expr: &str) -> Result<Expr, RuleError> {
    if expr.starts_with("true") {
        return Ok(Expr::Const(true));
    }
    if expr.starts_with("false") {
        return Ok(Expr::Const(false));
    }
    if let Some(c) = re(&RE_TRIPLE)?.captures(expr) {
        let dim = c.get(1).map_or("", |m| m.as_str()).to_string();
        let op = match c.get(2).map_or("", |m| m.as_str()) {
            "<" => Op::Less,
            "~<" => Op::MinorLess,
            "<=" => Op::LessEq,
            "~<=" => Op::MinorLessEq,
            "==" => Op::Eq,
            "~=" => Op::MinorEq,
            "!=" => Op::NotEq,
            "~!=" => Op::MinorNotEq,
            ">=" => Op::GreaterEq,
            "~>=" => Op::MinorGreaterEq,
            ">" => Op::Greater,
            "~>" => Op::MinorGreater,
            "~" => Op::Match,
            _ => Op::NotMatch,
        };
        let raw = c.get(3).map_or("", |m| m.as_str());
        let values = raw
            .split(',')
            .map(|v| CtxValue::new(v.trim_matches(is_py_space)))
            .collect();
        return Ok(Expr::Cmp { dim, op, values });
    }
    if let Some(c) = re(&RE_DOUBLE)?.captures(expr) {
        let dim = c.get(1).map_or("", |m| m.as_str()).to_string();
        let op = if c.get(2).map_or("", |m| m.as_str()) == "is defined" {
            Op::Defined
        } else {
            Op::NotDefined
        };
        return Ok(Expr::Cmp {
            dim,
            op,
            values: Vec::new(),
        });
    }
    Err(RuleError(format!("cannot parse expression '{expr}'")))
}

/// Python `int(s)` acceptance: optional sign, digits with single underscores between.
fn py_int(s: &str) -> Option<i128> {
    let t = s.trim_matches(is_py_space);
    let body = t.strip_prefix(['+', '-']).unwrap_or(t);
    if body.is_empty() || body.starts_with('_') || body.ends_with('_') || body.contains("__") {
        return None;
    }
    if !body.chars().all(|c| c.is_ascii_digit() || c == '_') {
        // Python also accepts other Unicode decimal digits; map them.
        if !body
            .chars()
            .all(|c| c == '_' || c.is_ascii_digit() || c.is_numeric())
        {
            return None;
        }
    }
    let digits: String = body
        .chars()
        .filter(|c| *c != '_')
        .map(|c| {
            c.to_digit(10)
                .and_then(|d| char::from_digit(d, 10))
                .unwrap_or(c)
        })
        .collect();
    if !digits.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let v: i128 = digits.parse().ok()?;
    Some(if t.starts_with('-') { -v } else { v })
}

fn fold(s: &str, case_sensitive: bool) -> std::borrow::Cow<'_, str> {
    if case_sensitive {
        std::borrow::Cow::Borrowed(s)
    } else {
        std::borrow::Cow::Owned(s.to_lowercase())
    }
}

fn compare_part(a: &str, b: &str, cs: bool) -> std::cmp::Ordering {
    match (py_int(a), py_int(b)) {
        (Some(x), Some(y)) => x.cmp(&y),
        _ => fold(a, cs).cmp(&fold(b, cs)),
    }
}

fn same(a: &str, b: &str, cs: bool) -> bool {
    fold(a, cs) == fold(b, cs)
}

/// `None` = cannot decide; `Some(ordering)` of context vs rule value.
fn version_cmp(
    ctx: &CtxValue,
    rule: &CtxValue,
    minor: bool,
    ordered: bool,
    cs: bool,
) -> Option<std::cmp::Ordering> {
    use std::cmp::Ordering::*;
    let (c, r) = (&ctx.parts, &rule.parts);
    if c.is_empty() || r.is_empty() {
        return None;
    }
    if !same(&c[0], &r[0], cs) {
        return if ordered { None } else { Some(Greater) };
    }
    if minor && r.len() > 1 {
        let cmaj = c.get(1)?;
        if !same(cmaj, &r[1], cs) {
            if ordered {
                if r.len() > 2 {
                    return None;
                }
            } else {
                return Some(Greater);
            }
        }
    }
    for (a, b) in c[1..].iter().zip(r[1..].iter()) {
        let o = compare_part(a, b, cs);
        if o != Equal {
            return Some(o);
        }
    }
    if r.len() <= c.len() {
        Some(Equal)
    } else if minor {
        None
    } else if !ordered {
        Some(Greater)
    } else if c.len() == 1 {
        None
    } else {
        Some(Less)
    }
}

/// Python `re.search` used by `~` / `!~`; an invalid pattern counts as undecidable.
fn regex_search(pattern: &str, text: &str) -> Option<bool> {
    let mut cache = super::pyre::RegexCache::new();
    cache.search(pattern, text).ok()
}

impl Context {
    /// Empty context (every dimension undefined), case-sensitive.
    pub fn new() -> Self {
        Context {
            dims: BTreeMap::new(),
            case_sensitive: true,
        }
    }

    /// Build from `KEY=VALUE` strings (split at the first `=`; a repeated key replaces
    /// the earlier value). The error holds the first string that has no `=`.
    pub fn from_pairs<I, S>(pairs: I) -> Result<Self, PairError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut ctx = Context::new();
        for p in pairs {
            let p = p.as_ref();
            let (k, v) = p.split_once('=').ok_or_else(|| PairError(p.to_string()))?;
            ctx.set(k, v);
        }
        Ok(ctx)
    }

    /// Set a dimension to one value (replacing earlier values).
    pub fn set(&mut self, dimension: &str, value: &str) {
        self.dims
            .insert(dimension.to_string(), vec![CtxValue::new(value)]);
    }

    /// Set a dimension to several values (a comparison succeeds if any value does).
    pub fn set_many<S: AsRef<str>>(&mut self, dimension: &str, values: &[S]) {
        let mut vals: Vec<CtxValue> = Vec::new();
        for v in values {
            let cv = CtxValue::new(v.as_ref());
            if !vals.contains(&cv) {
                vals.push(cv);
            }
        }
        self.dims.insert(dimension.to_string(), vals);
    }

    /// Builder-style variant of [`Context::set`].
    pub fn with(mut self, dimension: &str, value: &str) -> Self {
        self.set(dimension, value);
        self
    }

    /// Use case-insensitive comparisons (as tmt does). Default: case-sensitive.
    pub fn case_sensitive(mut self, yes: bool) -> Self {
        self.case_sensitive = yes;
        self
    }

    /// Whether no dimension is defined.
    pub fn is_empty(&self) -> bool {
        self.dims.is_empty()
    }

    /// The dimensions as `name → values` (for plan environment like `TMT_CONTEXT`).
    pub fn dimensions(&self) -> impl Iterator<Item = (&str, Vec<&str>)> {
        self.dims
            .iter()
            .map(|(k, v)| (k.as_str(), v.iter().map(|c| c.raw.as_str()).collect()))
    }

    /// Evaluate a rule given as a YAML value (`when:` — a string or a bool).
    pub fn matches_value(&self, rule: &Value) -> Result<Outcome, RuleError> {
        match rule {
            Value::Bool(b) => Ok(self.evaluate(&Rule::constant(*b))),
            Value::Str(s) => self.matches(s),
            other => Err(RuleError(format!(
                "rule must be a string or a bool, got {}",
                other.type_name()
            ))),
        }
    }

    /// Parse and evaluate a rule string.
    pub fn matches(&self, rule: &str) -> Result<Outcome, RuleError> {
        Ok(self.evaluate(&Rule::parse(rule)?))
    }

    /// Evaluate a parsed rule.
    pub fn evaluate(&self, rule: &Rule) -> Outcome {
        let mut final_outcome: Option<Outcome> = None;
        for group in &rule.groups {
            let mut and_outcome: Option<Outcome> = None;
            for expr in group {
                let r = self.eval_expr(expr);
                and_outcome = Some(match and_outcome {
                    None => r,
                    Some(prev) => {
                        if prev == Outcome::False || r == Outcome::False {
                            Outcome::False
                        } else if prev == Outcome::True && r == Outcome::True {
                            Outcome::True
                        } else {
                            Outcome::Undecided
                        }
                    }
                });
                if and_outcome == Some(Outcome::False) {
                    break;
                }
            }
            let a = and_outcome.unwrap_or(Outcome::Undecided);
            if a == Outcome::True {
                return Outcome::True;
            }
            final_outcome = Some(match final_outcome {
                None => a,
                Some(prev) => {
                    if a == Outcome::Undecided || prev == Outcome::Undecided {
                        Outcome::Undecided
                    } else {
                        Outcome::False
                    }
                }
            });
        }
        match final_outcome {
            Some(Outcome::False) => Outcome::False,
            _ => Outcome::Undecided,
        }
    }

    fn eval_expr(&self, expr: &Expr) -> Outcome {
        let (dim, op, values) = match expr {
            Expr::Const(true) => return Outcome::True,
            Expr::Const(false) => return Outcome::False,
            Expr::Cmp { dim, op, values } => (dim, *op, values),
        };
        let defined = self.dims.contains_key(dim.as_str());
        match op {
            Op::Defined => {
                return if defined {
                    Outcome::True
                } else {
                    Outcome::False
                };
            }
            Op::NotDefined => {
                return if defined {
                    Outcome::False
                } else {
                    Outcome::True
                };
            }
            _ => {}
        }
        let Some(ctx_values) = self.dims.get(dim.as_str()) else {
            return Outcome::Undecided;
        };
        let cs = self.case_sensitive;
        let mut decided = false;
        for cv in ctx_values {
            for rv in values {
                use std::cmp::Ordering::*;
                let result: Option<bool> = match op {
                    Op::Eq => version_cmp(cv, rv, false, false, cs).map(|o| o == Equal),
                    Op::NotEq => version_cmp(cv, rv, false, false, cs).map(|o| o != Equal),
                    Op::MinorEq => version_cmp(cv, rv, true, false, cs).map(|o| o == Equal),
                    Op::MinorNotEq => version_cmp(cv, rv, true, false, cs).map(|o| o != Equal),
                    Op::Less => version_cmp(cv, rv, false, true, cs).map(|o| o == Less),
                    Op::LessEq => version_cmp(cv, rv, false, true, cs).map(|o| o != Greater),
                    Op::Greater => version_cmp(cv, rv, false, true, cs).map(|o| o == Greater),
                    Op::GreaterEq => version_cmp(cv, rv, false, true, cs).map(|o| o != Less),
                    Op::MinorLess => version_cmp(cv, rv, true, true, cs).map(|o| o == Less),
                    Op::MinorLessEq => version_cmp(cv, rv, true, true, cs).map(|o| o != Greater),
                    Op::MinorGreater => version_cmp(cv, rv, true, true, cs).map(|o| o == Greater),
                    Op::MinorGreaterEq => version_cmp(cv, rv, true, true, cs).map(|o| o != Less),
                    Op::Match => regex_search(&rv.raw, &cv.raw),
                    Op::NotMatch => regex_search(&rv.raw, &cv.raw).map(|b| !b),
                    Op::Defined | Op::NotDefined => None,
                };
                match result {
                    Some(true) => return Outcome::True,
                    Some(false) => decided = true,
                    None => {}
                }
            }
        }
        if decided {
            Outcome::False
        } else {
            Outcome::Undecided
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_compile() {
        assert!(RE_TRIPLE.is_some() && RE_DOUBLE.is_some() && RE_AND.is_some() && RE_OR.is_some());
    }

    #[test]
    fn examples_from_spec() -> Result<(), RuleError> {
        let c = Context::new().with("distro", "rhel-9.6");
        for r in [
            "distro == rhel-9",
            "distro == rhel",
            "distro = rhel-9.6",
            "distro==rhel-9.6",
            "distro < rhel-10",
            "distro ~= rhel-9",
            "distro ~< rhel-10",
            "distro ~ ^rhel",
            "arch is not defined",
            "distro == rhel or arch == x86_64",
        ] {
            assert_eq!(c.matches(r)?, Outcome::True, "{r}");
        }
        assert_eq!(c.matches("distro > fedora-40")?, Outcome::Undecided);
        assert_eq!(c.matches("distro ~< rhel-9")?, Outcome::False);
        assert_eq!(
            c.matches("arch == x86_64 or distro == fedora")?,
            Outcome::Undecided
        );
        assert!(c.matches("distro === fedora").is_err());
        assert!(c.matches("distro == fedora and").is_err());
        Ok(())
    }
}
