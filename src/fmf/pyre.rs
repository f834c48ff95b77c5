//! Python `re` compatibility on top of the `regex` and `fancy-regex` crates.
//!
//! FMF data, filters, rules, tmt plan selections (`test`, `exclude`, `link`) and the
//! `--names`/`--exclude` options contain Python regular expressions. Patterns are
//! first rewritten where Python and the `regex` crate disagree ([`translate`]:
//! `\Z`, `$` before a final newline, `re.match` anchoring, literal `{`, `\<`,
//! `(?#...)` comments, set-operation characters inside classes) and compiled with
//! the fast `regex` crate. Only when that engine refuses the pattern (look-around,
//! back-references, atomic groups, conditionals…) is it compiled with `fancy-regex`,
//! a backtracking engine that accepts those (Python's syntax for them included:
//! `(?P<name>...)`, `(?P=name)`, `\1`). `re.sub` replacement templates (`\1`,
//! `\g<name>`) are translated for both.

use std::borrow::Cow;
use std::collections::HashMap;

use super::error::FmfError;

/// How a compiled pattern will be used.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum Mode {
    /// `re.search`: boolean, anywhere.
    Search,
    /// `re.match`: boolean, anchored at the start.
    Match,
    /// `re.sub`: spans matter; `$` stays end-of-text.
    Sub,
}

/// Why a pattern cannot be compiled or used: the source of [`FmfError::Regex`].
#[derive(Debug, thiserror::Error)]
enum PatternError {
    /// The fast engine's syntax error (the more precise one when both engines refuse a
    /// construct it knows, e.g. an unclosed group).
    #[error("{0}")]
    Syntax(String),
    /// The backtracking engine refused the pattern, or failed while matching
    /// (backtrack limit).
    #[error(transparent)]
    Fancy(#[from] fancy_regex::Error),
    /// `{m,n}` with `m > n`.
    #[error("min repeat greater than max repeat")]
    SwappedRepeat,
    /// A `\` at the end of a replacement template.
    #[error("bad escape (end of pattern)")]
    TrailingEscape,
    /// An unknown escape in a replacement template.
    #[error("bad escape \\{0}")]
    BadEscape(char),
    /// A replacement refers to a group the pattern does not have.
    #[error("invalid group reference{}", .0.map(|n| format!(" {n}")).unwrap_or_default())]
    BadGroup(Option<usize>),
    /// `\g` without `<`.
    #[error("missing < in group reference")]
    MissingOpen,
    /// `\g<…` without `>`.
    #[error("missing > in group reference")]
    MissingClose,
    /// A replacement names a group the pattern does not have.
    #[error("unknown group name '{0}'")]
    UnknownGroup(String),
    /// The compiled pattern went missing from the cache.
    #[error("internal cache error")]
    Cache,
}

/// A compiled pattern: the fast engine when it accepts the pattern, else the
/// backtracking one.
enum Compiled {
    Fast(regex::Regex),
    Fancy(Box<fancy_regex::Regex>),
}

impl Compiled {
    fn new(pattern: &str) -> Result<Self, PatternError> {
        match regex::Regex::new(pattern) {
            Ok(re) => Ok(Compiled::Fast(re)),
            Err(fast) => match fancy_regex::Regex::new(pattern) {
                Ok(re) => Ok(Compiled::Fancy(Box::new(re))),
                // The fast engine's message is the more precise one when both
                // refuse a construct it knows (e.g. an unclosed group).
                Err(fancy) => Err(match fast {
                    regex::Error::Syntax(m) if !m.contains("not supported") => {
                        PatternError::Syntax(m)
                    }
                    _ => PatternError::Fancy(fancy),
                }),
            },
        }
    }

    fn is_match(&self, text: &str) -> Result<bool, PatternError> {
        match self {
            Compiled::Fast(re) => Ok(re.is_match(text)),
            Compiled::Fancy(re) => Ok(re.is_match(text)?),
        }
    }

    fn captures_len(&self) -> usize {
        match self {
            Compiled::Fast(re) => re.captures_len(),
            Compiled::Fancy(re) => re.captures_len(),
        }
    }

    fn capture_names(&self) -> Vec<String> {
        match self {
            Compiled::Fast(re) => re.capture_names().flatten().map(str::to_string).collect(),
            Compiled::Fancy(re) => re.capture_names().flatten().map(str::to_string).collect(),
        }
    }

    fn replace_all<'t>(&self, text: &'t str, template: &str) -> Result<Cow<'t, str>, PatternError> {
        match self {
            Compiled::Fast(re) => Ok(re.replace_all(text, template)),
            Compiled::Fancy(re) => Ok(re.try_replacen(text, 0, template)?),
        }
    }
}

/// A cache of compiled patterns (compiling is far more expensive than matching).
#[derive(Default)]
pub struct RegexCache {
    map: HashMap<(String, Mode), Compiled>,
}

fn regex_error(pattern: &str, e: PatternError) -> FmfError {
    FmfError::Regex {
        pattern: pattern.to_string(),
        source: Box::new(e),
    }
}

/// Whether `rest` (the text after a `{`) starts a Python repetition
/// (`{m}`, `{m,}`, `{,n}`, `{m,n}`, `{,}`); returns its length up to and including
/// `}`, or an error for a swapped range (which `fancy-regex` would read as possessive).
fn repetition_len(rest: &str) -> Result<Option<usize>, PatternError> {
    let Some(end) = rest.find('}') else {
        return Ok(None);
    };
    let body = &rest[..end];
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    match body.split_once(',') {
        None if !body.is_empty() && digits(body) => Ok(Some(end + 1)),
        Some((lo, hi)) if digits(lo) && digits(hi) => {
            if let (Ok(lo), Ok(hi)) = (lo.parse::<u64>(), hi.parse::<u64>())
                && lo > hi
            {
                return Err(PatternError::SwappedRepeat);
            }
            Ok(Some(end + 1))
        }
        _ => Ok(None),
    }
}

/// Rewrite Python-only syntax into syntax both Rust engines read the same way.
fn translate(pattern: &str, dollar_newline: bool) -> Result<String, PatternError> {
    let mut out = String::with_capacity(pattern.len() + 8);
    let mut in_class = false;
    let mut i = 0;
    let bytes = pattern.as_bytes();
    while let Some(c) = pattern[i..].chars().next() {
        let rest = &pattern[i + c.len_utf8()..];
        i += c.len_utf8();
        match c {
            '\\' => match rest.chars().next() {
                Some(n) => {
                    i += n.len_utf8();
                    match n {
                        'Z' if !in_class => out.push_str(r"\z"),
                        // `\<`/`\>` are word boundaries in `regex`, literals in Python.
                        '<' | '>' => out.push(n),
                        _ => {
                            out.push('\\');
                            out.push(n);
                        }
                    }
                }
                None => out.push('\\'),
            },
            '[' if !in_class => {
                in_class = true;
                out.push('[');
                if bytes.get(i) == Some(&b'^') {
                    out.push('^');
                    i += 1;
                }
                if bytes.get(i) == Some(&b']') {
                    out.push_str(r"\]");
                    i += 1;
                }
            }
            '[' if in_class => out.push_str(r"\["),
            // Class set operators of `regex` (`&&`, `~~`, `--` need a pair) are
            // plain characters in Python.
            '&' | '~' if in_class => {
                out.push('\\');
                out.push(c);
            }
            ']' if in_class => {
                in_class = false;
                out.push(']');
            }
            '(' if !in_class && rest.starts_with("?#") => {
                // A Python comment group: drop it up to the first `)`.
                match rest.find(')') {
                    Some(end) => i += end + 1,
                    None => out.push('('),
                }
            }
            '{' if !in_class => match repetition_len(rest)? {
                Some(len) => {
                    let body = &rest[..len - 1];
                    out.push('{');
                    if body.starts_with(',') {
                        out.push('0');
                    }
                    out.push_str(body);
                    out.push('}');
                    i += len;
                }
                None => out.push_str(r"\{"),
            },
            '}' if !in_class => out.push_str(r"\}"),
            '$' if !in_class && dollar_newline => out.push_str(r"(?:\n?\z)"),
            c => out.push(c),
        }
    }
    Ok(out)
}

impl RegexCache {
    /// New empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    fn get(&mut self, pattern: &str, mode: Mode) -> Result<&Compiled, FmfError> {
        let key = (pattern.to_string(), mode);
        if !self.map.contains_key(&key) {
            // Validate the pattern on its own first (wrapping could hide errors).
            let err = |e| regex_error(pattern, e);
            Compiled::new(&translate(pattern, false).map_err(err)?).map_err(err)?;
            let body = translate(pattern, mode != Mode::Sub).map_err(err)?;
            let full = match mode {
                Mode::Match => format!(r"\A(?:{body})"),
                _ => body,
            };
            let re = Compiled::new(&full).map_err(err)?;
            self.map.insert(key.clone(), re);
        }
        self.map
            .get(&key)
            .ok_or_else(|| regex_error(pattern, PatternError::Cache))
    }

    /// Python `re.search(pattern, text) is not None`.
    pub fn search(&mut self, pattern: &str, text: &str) -> Result<bool, FmfError> {
        self.get(pattern, Mode::Search)?
            .is_match(text)
            .map_err(|e| regex_error(pattern, e))
    }

    /// Python `re.match(pattern, text) is not None` (anchored at the start only).
    pub fn is_match_start(&mut self, pattern: &str, text: &str) -> Result<bool, FmfError> {
        self.get(pattern, Mode::Match)?
            .is_match(text)
            .map_err(|e| regex_error(pattern, e))
    }

    /// Python `re.sub(pattern, repl, text)`.
    pub fn sub(&mut self, pattern: &str, repl: &str, text: &str) -> Result<String, FmfError> {
        let re = self.get(pattern, Mode::Sub)?;
        let template = translate_replacement(repl, re).map_err(|e| regex_error(pattern, e))?;
        re.replace_all(text, &template)
            .map(Cow::into_owned)
            .map_err(|e| regex_error(pattern, e))
    }
}

/// Convert a Python `re.sub` template into a `regex` crate replacement string.
fn translate_replacement(repl: &str, re: &Compiled) -> Result<String, PatternError> {
    let groups = re.captures_len();
    let names = re.capture_names();
    let mut out = String::with_capacity(repl.len());
    let mut chars = repl.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '$' => out.push_str("$$"),
            '\\' => match chars.next() {
                None => return Err(PatternError::TrailingEscape),
                Some(d) if d.is_ascii_digit() => {
                    let mut num = d.to_string();
                    if let Some(&e) = chars.peek()
                        && e.is_ascii_digit()
                    {
                        num.push(e);
                        chars.next();
                    }
                    let n: usize = num.parse().map_err(|_| PatternError::BadGroup(None))?;
                    if n == 0 || n >= groups {
                        return Err(PatternError::BadGroup(Some(n)));
                    }
                    out.push_str(&format!("${{{n}}}"));
                }
                Some('g') => {
                    if chars.next() != Some('<') {
                        return Err(PatternError::MissingOpen);
                    }
                    let mut name = String::new();
                    loop {
                        match chars.next() {
                            Some('>') => break,
                            Some(ch) => name.push(ch),
                            None => return Err(PatternError::MissingClose),
                        }
                    }
                    if let Ok(n) = name.parse::<usize>() {
                        if n >= groups {
                            return Err(PatternError::BadGroup(Some(n)));
                        }
                    } else if !names.contains(&name) {
                        return Err(PatternError::UnknownGroup(name.to_string()));
                    }
                    out.push_str(&format!("${{{name}}}"));
                }
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some('r') => out.push('\r'),
                Some('f') => out.push('\x0c'),
                Some('v') => out.push('\x0b'),
                Some('a') => out.push('\x07'),
                Some('b') => out.push('\x08'),
                Some('\\') => out.push('\\'),
                Some(x) if x.is_ascii_alphabetic() => return Err(PatternError::BadEscape(x)),
                Some(x) => {
                    out.push('\\');
                    if x == '$' {
                        out.push_str("$$");
                    } else {
                        out.push(x);
                    }
                }
            },
            c => out.push(c),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_like() -> Result<(), FmfError> {
        let mut c = RegexCache::new();
        assert!(c.search("ell", "hello")?);
        assert!(c.is_match_start("^fa|bar$", "fast")?);
        assert!(!c.is_match_start("^fa|bar$", "foobar")?);
        assert!(c.is_match_start("^x$", "x\n")?);
        assert_eq!(
            c.sub(r"fedora-(\d+)", r"F\1", "fedora-40 and fedora-41")?,
            "F40 and F41"
        );
        assert_eq!(c.sub("a", "$x", "a")?, "$x");
        assert!(c.search("(unclosed", "x").is_err());
        Ok(())
    }

    #[test]
    fn python_only_constructs() -> Result<(), FmfError> {
        let mut c = RegexCache::new();
        // Look-around and back-references (backtracking engine).
        assert!(c.search("^/tests/(?!discover|prepare)", "/tests/other")?);
        assert!(!c.search("^/tests/(?!discover|prepare)", "/tests/prepare")?);
        assert!(c.search("(?<=a)b", "ab")? && !c.search("(?<=a)b", "cb")?);
        assert!(c.search(r"(\w)\1", "xaay")? && !c.search(r"(\w)\1", "xay")?);
        assert!(c.search("(?P<q>['\"]).*(?P=q)", "say 'hi'")?);
        assert!(c.is_match_start("(?!x)a$", "a\n")?);
        assert_eq!(c.sub(r"(\w)\1", r"<\1>", "aabcc")?, "<a>b<c>");
        assert_eq!(c.sub(r"(?<=-)(\d+)", r"[\g<1>]", "f-40")?, "f-[40]");
        // Literal braces, `{,n}`, `\<`/`\>`, comments, `&&`/`~~` in classes.
        assert!(c.search("a{", "xa{")? && c.search("{x}", "{x}")?);
        assert!(c.is_match_start("a{,2}b$", "aab")? && !c.is_match_start("a{,2}b$", "aaab")?);
        assert!(c.search(r"\<x\>", "<x>")? && !c.search(r"\<x\>", "x")?);
        assert!(c.search("a(?# a comment)b", "ab")?);
        assert!(c.search("[&&]", "&")? && c.search("[a~~]", "~")?);
        // Still errors in Python, still errors here.
        for bad in ["(?P=missing)", "a{2,1}", "[unclosed", r"(\w)\2"] {
            assert!(c.search(bad, "x").is_err(), "{bad}");
        }
        Ok(())
    }
}
