//! JUnit XML, as CI systems (Jenkins, GitLab, GitHub actions) read it.
//!
//! # Mapping
//!
//! * `<testsuites name="atex">` holds one `<testsuite>` per platform, named after it.
//! * One `<testcase>` per test: `name` = the test name, `classname` = the platform, `time`
//!   = the final attempt's duration in seconds when known.
//! * The test's [verdict](crate::verdict) (of its final attempt) decides the element:
//!   `pass` and `info`: none; `skip`: `<skipped/>`; `warn` and `fail`: `<failure
//!   type="warn|fail">`; `error` and `infra`: `<error type="error|infra">`. The `message`
//!   is the test's note; the element's text lists the subtests that did not pass.
//! * **Subtests are not test cases** (CI systems count test cases, and a test's verdict
//!   already includes its subtests): the test case's `<system-out>` lists every subtest as
//!   `[status] name: note`, then the test's files (with their paths relative to the JUnit
//!   file), then the end of the test's `output.txt` (at most
//!   [`output_limit`](JunitOptions::output_limit) bytes, cut at the front).
//! * **Reruns**: every earlier attempt that did not pass is one element before the output,
//!   as Maven Surefire writes them: `<flakyFailure>`/`<flakyError>` when the final attempt
//!   passed, `<rerunFailure>`/`<rerunError>` when it did not (`type` = its verdict,
//!   `message` = "attempt N of M: note").
//! * Counts: `tests` = test cases, `failures` = warn + fail, `errors` = error + infra,
//!   `skipped` = skip.
//!
//! Characters that XML 1.0 cannot carry (most C0 controls) become U+FFFD. The output is
//! valid against the Jenkins xUnit plugin's `junit-10.xsd` (checked by the test suite with
//! `xmllint --schema`).

use std::io::Read as _;
use std::path::{Path, PathBuf};

use super::model::{Attempt, Report, TestEntry, relative_to};
use crate::verdict::Verdict;

/// Options of the JUnit writer.
#[derive(Debug, Clone)]
pub struct JunitOptions {
    /// `name` of `<testsuites>` (default `atex`).
    pub name: String,
    /// The directory the XML is written to, for the file paths listed in `<system-out>`
    /// (default: the current directory).
    pub base_dir: PathBuf,
    /// At most this many bytes of each test's `output.txt` (its end) go into
    /// `<system-out>`; 0 attaches none (default 64 KiB).
    pub output_limit: usize,
}

impl Default for JunitOptions {
    fn default() -> Self {
        Self {
            name: "atex".into(),
            base_dir: PathBuf::from("."),
            output_limit: 64 * 1024,
        }
    }
}

/// Appends `s` escaped for an XML attribute value.
fn escape_into(out: &mut String, s: &str) {
    escape(out, s, true);
}

/// Appends `s` escaped for XML text (newlines and tabs stay literal).
fn escape_text(out: &mut String, s: &str) {
    escape(out, s, false);
}

fn escape(out: &mut String, s: &str, attr: bool) {
    for c in s.chars() {
        match c {
            '\n' | '\t' if !attr => out.push(c),
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\n' => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            '\t' => out.push_str("&#9;"),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
}

fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    escape_into(&mut out, s);
    out
}

fn seconds(d: std::time::Duration) -> String {
    format!("{:.3}", d.as_secs_f64())
}

/// The failure kind of a verdict: `None` for passed, else (element, is_error).
fn kind(v: Verdict) -> Option<bool> {
    match v {
        Verdict::Pass | Verdict::Info | Verdict::Skip => None,
        Verdict::Warn | Verdict::Fail => Some(false),
        Verdict::Error | Verdict::Infra => Some(true),
    }
}

/// The last `limit` bytes of a (possibly compressed) file, as text.
fn output_tail(path: &Path, limit: usize) -> Option<String> {
    let bytes = if path.extension().is_some_and(|e| e == "gz" || e == "xz") {
        crate::results::read_decoded(path).ok()?
    } else {
        let mut f = std::fs::File::open(path).ok()?;
        let len = f.metadata().ok()?.len();
        if len > limit as u64 {
            use std::io::Seek as _;
            f.seek(std::io::SeekFrom::Start(len - limit as u64)).ok()?;
        }
        let mut b = Vec::new();
        f.take(limit as u64).read_to_end(&mut b).ok()?;
        if len > limit as u64 {
            let mut cut = format!("[… {} bytes cut …]\n", len - limit as u64).into_bytes();
            cut.extend_from_slice(&b);
            b = cut;
        }
        b
    };
    let bytes = if bytes.len() > limit {
        let mut cut = format!("[… {} bytes cut …]\n", bytes.len() - limit).into_bytes();
        cut.extend_from_slice(&bytes[bytes.len() - limit..]);
        cut
    } else {
        bytes
    };
    Some(String::from_utf8_lossy(&bytes).into_owned())
}

fn is_output(file: &str) -> bool {
    let base = file.rsplit('/').next().unwrap_or(file);
    matches!(base, "output.txt" | "output.txt.gz" | "output.txt.xz")
}

fn write_testcase(out: &mut String, t: &TestEntry, opts: &JunitOptions) {
    let last = t.last();
    let verdict = last.verdict();
    out.push_str("    <testcase name=\"");
    escape_into(out, &t.name);
    out.push_str("\" classname=\"");
    escape_into(out, &t.platform);
    out.push('"');
    if let Some(d) = last.duration {
        out.push_str(" time=\"");
        out.push_str(&seconds(d));
        out.push('"');
    }
    out.push_str(">\n");
    let note = last.note();
    let bad_subtests: Vec<String> = last
        .subtests()
        .filter(|l| l.verdict().is_some_and(|v| !v.passed()))
        .map(|l| {
            let mut s = format!(
                "{}: {}",
                l.status.as_deref().unwrap_or(""),
                l.name.as_deref().unwrap_or("")
            );
            if let Some(n) = &l.note {
                s.push_str(" — ");
                s.push_str(n);
            }
            s
        })
        .collect();
    match (verdict, kind(verdict)) {
        (Verdict::Skip, _) => {
            out.push_str("      <skipped");
            if let Some(n) = &note {
                out.push_str(" message=\"");
                escape_into(out, n);
                out.push('"');
            }
            out.push_str("/>\n");
        }
        (v, Some(is_error)) => {
            let el = if is_error { "error" } else { "failure" };
            out.push_str(&format!("      <{el} type=\"{}\"", v.as_str()));
            out.push_str(" message=\"");
            escape_into(out, note.as_deref().unwrap_or(v.as_str()));
            out.push_str("\">");
            if !bad_subtests.is_empty() {
                escape_text(out, "subtests that did not pass:\n");
                for s in &bad_subtests {
                    escape_text(out, s);
                    out.push('\n');
                }
            }
            out.push_str(&format!("</{el}>\n"));
        }
        _ => {}
    }
    let total = t.attempts.len();
    for (i, a) in t.earlier().iter().enumerate() {
        let av = a.verdict();
        let Some(is_error) = kind(av) else { continue };
        let el = match (verdict.passed(), is_error) {
            (true, false) => "flakyFailure",
            (true, true) => "flakyError",
            (false, false) => "rerunFailure",
            (false, true) => "rerunError",
        };
        let mut msg = format!("attempt {} of {total}: {}", i + 1, av.as_str());
        if let Some(n) = a.note() {
            msg.push_str(": ");
            msg.push_str(&n);
        }
        out.push_str(&format!(
            "      <{el} type=\"{}\" message=\"{}\"/>\n",
            av.as_str(),
            esc(&msg)
        ));
    }
    let system_out = system_out(t, last, opts);
    if !system_out.is_empty() {
        out.push_str("      <system-out>");
        escape_text(out, &system_out);
        out.push_str("</system-out>\n");
    }
    out.push_str("    </testcase>\n");
}

fn system_out(t: &TestEntry, last: &Attempt, opts: &JunitOptions) -> String {
    let mut s = String::new();
    if t.attempts.len() > 1 {
        let earlier: Vec<&str> = t.earlier().iter().map(|a| a.verdict().as_str()).collect();
        s.push_str(&format!(
            "attempt {} of {} (earlier: {})\n",
            t.attempts.len(),
            t.attempts.len(),
            earlier.join(", ")
        ));
    }
    let subtests: Vec<_> = last.subtests().collect();
    if !subtests.is_empty() {
        s.push_str("subtests:\n");
        for l in subtests {
            s.push_str(&format!(
                "  [{}] {}",
                l.status.as_deref().unwrap_or("-"),
                l.name.as_deref().unwrap_or("")
            ));
            if let Some(n) = &l.note {
                s.push_str(": ");
                s.push_str(n);
            }
            s.push('\n');
        }
    }
    let mut output = None;
    let mut files = Vec::new();
    for l in &last.lines {
        for f in &l.files {
            let path = last.file_path(l, f);
            let shown = path
                .as_ref()
                .map(|p| relative_to(&opts.base_dir, p).display().to_string());
            let label = match &l.name {
                Some(n) => format!("{n}: {f}"),
                None => f.clone(),
            };
            files.push(match shown {
                Some(p) => format!("  {label} -> {p}"),
                None => format!("  {label}"),
            });
            if l.name.is_none() && output.is_none() && is_output(f) {
                output = path;
            }
        }
    }
    if !files.is_empty() {
        s.push_str("files:\n");
        for f in files {
            s.push_str(&f);
            s.push('\n');
        }
    }
    if opts.output_limit > 0
        && let Some(p) = output
        && let Some(text) = output_tail(&p, opts.output_limit)
    {
        s.push_str("--- output.txt ---\n");
        s.push_str(&text);
    }
    s
}

/// Renders `report` as JUnit XML (see the [module docs](self) for the mapping).
///
/// ```
/// use atex::aggregator::{junit, Report, Attempt, Line};
/// let mut report = Report::new();
/// let line = Line { name: None, status: Some("fail".into()), note: Some("boom".into()),
///                   files: vec![], duration: None };
/// report.add_attempt("9.6@x86_64", "/a", Attempt::new("/a", vec![line]));
/// let xml = junit::render(&report, &junit::JunitOptions::default());
/// assert!(xml.contains("<testsuite name=\"9.6@x86_64\" tests=\"1\" failures=\"1\" errors=\"0\" skipped=\"0\""));
/// assert!(xml.contains("<failure type=\"fail\" message=\"boom\">"));
/// ```
pub fn render(report: &Report, opts: &JunitOptions) -> String {
    let mut suites = String::new();
    let (mut all_tests, mut all_fail, mut all_err) = (0, 0, 0);
    let mut all_time = 0.0;
    for platform in report.platforms() {
        let tests: Vec<&TestEntry> = report
            .tests()
            .iter()
            .filter(|t| t.platform == platform)
            .collect();
        let mut failures = 0;
        let mut errors = 0;
        let mut skipped = 0;
        let mut time = 0.0;
        let mut body = String::new();
        for t in &tests {
            match t.verdict() {
                Verdict::Skip => skipped += 1,
                Verdict::Warn | Verdict::Fail => failures += 1,
                Verdict::Error | Verdict::Infra => errors += 1,
                Verdict::Pass | Verdict::Info => {}
            }
            time += t.last().duration.map_or(0.0, |d| d.as_secs_f64());
            write_testcase(&mut body, t, opts);
        }
        suites.push_str(&format!(
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{failures}\" errors=\"{errors}\" skipped=\"{skipped}\" time=\"{time:.3}\">\n",
            esc(platform),
            tests.len()
        ));
        suites.push_str(&body);
        suites.push_str("  </testsuite>\n");
        all_tests += tests.len();
        all_fail += failures;
        all_err += errors;
        all_time += time;
    }
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"{}\" tests=\"{all_tests}\" failures=\"{all_fail}\" errors=\"{all_err}\" time=\"{all_time:.3}\">\n{suites}</testsuites>\n",
        esc(&opts.name)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_removes_what_xml_cannot_carry() {
        assert_eq!(esc("a<b>&\"'"), "a&lt;b&gt;&amp;&quot;&apos;");
        assert_eq!(esc("x\u{1}y\u{1b}[0m\n"), "x\u{FFFD}y\u{FFFD}[0m&#10;");
        assert_eq!(esc("\u{FFFF}"), "\u{FFFD}");
    }

    #[test]
    fn kinds() {
        assert_eq!(kind(Verdict::Pass), None);
        assert_eq!(kind(Verdict::Warn), Some(false));
        assert_eq!(kind(Verdict::Infra), Some(true));
        assert!(is_output("output.txt.gz"));
        assert!(!is_output("xoutput.txt"));
    }
}
