//! Python `re` compatibility on top of the `regex` crate.
//!
//! FMF data, filters and rules contain Python regular expressions. The common
//! syntax is shared with the `regex` crate; this module bridges the differences
//! that matter for FMF: `\Z`, `$` matching before a final newline, `re.match`
//! anchoring and `re.sub` replacement templates (`\1`, `\g<name>`). Constructs the
//! `regex` crate lacks (look-around, back-references) are reported as invalid.

use std::collections::HashMap;

use regex::Regex;

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

/// A cache of compiled patterns (compiling is far more expensive than matching).
#[derive(Default)]
pub struct RegexCache {
    map: HashMap<(String, Mode), Regex>,
}

fn regex_error(pattern: &str, message: impl ToString) -> FmfError {
    FmfError::Regex {
        pattern: pattern.to_string(),
        message: message.to_string(),
    }
}

/// Rewrite Python-only syntax into `regex` crate syntax.
fn translate(pattern: &str, dollar_newline: bool) -> String {
    let mut out = String::with_capacity(pattern.len() + 8);
    let mut chars = pattern.chars().peekable();
    let mut in_class = false;
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some('Z') if !in_class => out.push_str(r"\z"),
                Some(n) => {
                    out.push('\\');
                    out.push(n);
                }
                None => out.push('\\'),
            },
            '[' if !in_class => {
                in_class = true;
                out.push('[');
                if chars.peek() == Some(&'^') {
                    out.push('^');
                    chars.next();
                }
                if chars.peek() == Some(&']') {
                    out.push_str(r"\]");
                    chars.next();
                }
            }
            '[' if in_class => out.push_str(r"\["),
            ']' if in_class => {
                in_class = false;
                out.push(']');
            }
            '$' if !in_class && dollar_newline => out.push_str(r"(?:\n?\z)"),
            c => out.push(c),
        }
    }
    out
}

impl RegexCache {
    /// New empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    fn get(&mut self, pattern: &str, mode: Mode) -> Result<&Regex, FmfError> {
        let key = (pattern.to_string(), mode);
        if !self.map.contains_key(&key) {
            // Validate the pattern on its own first (wrapping could hide errors).
            Regex::new(&translate(pattern, false)).map_err(|e| regex_error(pattern, e))?;
            let body = translate(pattern, mode != Mode::Sub);
            let full = match mode {
                Mode::Match => format!(r"\A(?:{body})"),
                _ => body,
            };
            let re = Regex::new(&full).map_err(|e| regex_error(pattern, e))?;
            self.map.insert(key.clone(), re);
        }
        self.map
            .get(&key)
            .ok_or_else(|| regex_error(pattern, "internal cache error"))
    }

    /// Python `re.search(pattern, text) is not None`.
    pub fn search(&mut self, pattern: &str, text: &str) -> Result<bool, FmfError> {
        Ok(self.get(pattern, Mode::Search)?.is_match(text))
    }

    /// Python `re.match(pattern, text) is not None` (anchored at the start only).
    pub fn is_match_start(&mut self, pattern: &str, text: &str) -> Result<bool, FmfError> {
        Ok(self.get(pattern, Mode::Match)?.is_match(text))
    }

    /// Python `re.sub(pattern, repl, text)`.
    pub fn sub(&mut self, pattern: &str, repl: &str, text: &str) -> Result<String, FmfError> {
        let re = self.get(pattern, Mode::Sub)?;
        let template = translate_replacement(repl, re).map_err(|m| regex_error(pattern, m))?;
        Ok(re.replace_all(text, template.as_str()).into_owned())
    }
}

/// Convert a Python `re.sub` template into a `regex` crate replacement string.
fn translate_replacement(repl: &str, re: &Regex) -> Result<String, String> {
    let groups = re.captures_len();
    let names: Vec<&str> = re.capture_names().flatten().collect();
    let mut out = String::with_capacity(repl.len());
    let mut chars = repl.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '$' => out.push_str("$$"),
            '\\' => match chars.next() {
                None => return Err("bad escape (end of pattern)".into()),
                Some(d) if d.is_ascii_digit() => {
                    let mut num = d.to_string();
                    if let Some(&e) = chars.peek()
                        && e.is_ascii_digit()
                    {
                        num.push(e);
                        chars.next();
                    }
                    let n: usize = num.parse().map_err(|_| "invalid group reference")?;
                    if n == 0 || n >= groups {
                        return Err(format!("invalid group reference {n}"));
                    }
                    out.push_str(&format!("${{{n}}}"));
                }
                Some('g') => {
                    if chars.next() != Some('<') {
                        return Err("missing < in group reference".into());
                    }
                    let mut name = String::new();
                    loop {
                        match chars.next() {
                            Some('>') => break,
                            Some(ch) => name.push(ch),
                            None => return Err("missing > in group reference".into()),
                        }
                    }
                    if let Ok(n) = name.parse::<usize>() {
                        if n >= groups {
                            return Err(format!("invalid group reference {n}"));
                        }
                    } else if !names.contains(&name.as_str()) {
                        return Err(format!("unknown group name '{name}'"));
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
                Some(x) if x.is_ascii_alphabetic() => return Err(format!("bad escape \\{x}")),
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
}
