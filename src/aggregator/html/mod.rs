//! A self-contained HTML report: one file, inline CSS, JavaScript and SVG, no network.
//!
//! It shows a summary (test verdicts per platform and status, subtest statuses, a stacked
//! bar chart of the verdicts per platform), then a table of every test and its subtests
//! with status, attempts (earlier attempts' statuses, so reruns are visible), duration,
//! note and links to the uploaded files (relative to the report, so keep the report next
//! to the results directory or move them together). The table sorts by clicking a column
//! head and filters by text, status, platform, subtests shown or not, and "only tests that
//! were rerun"; `#status=fail&q=text` in the URL presets the filters.
//!
//! The summary is static HTML (readable without JavaScript); the table is built by the
//! inline script from a JSON island (`<script type="application/json" id="atex-data">`),
//! which keeps 10,000 tests within a few MB. All text goes into the page as text (escaped
//! HTML, or `textContent` from the script), never as markup.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::model::{Counts, Report, relative_to, verdict_index};
use crate::timestamp::Timestamp;
use crate::verdict::Verdict;

const CSS: &str = include_str!("report.css");
const JS: &str = include_str!("report.js");

/// Options of the HTML report.
#[derive(Debug, Clone)]
pub struct HtmlOptions {
    /// Page title (default `atex results`).
    pub title: String,
    /// The directory the report is written to; links to uploaded files are relative to it
    /// (default: the current directory).
    pub base_dir: PathBuf,
    /// The run is still going: the page says so and reloads itself every 10 s.
    pub in_progress: bool,
}

impl Default for HtmlOptions {
    fn default() -> Self {
        Self {
            title: "atex results".into(),
            base_dir: PathBuf::from("."),
            in_progress: false,
        }
    }
}

/// Appends `s` escaped for HTML text and attribute values.
fn html_escape(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
}

fn h(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    html_escape(&mut out, s);
    out
}

/// Appends `s` as a JSON string that is also safe inside a `<script>` element.
fn json_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn json_opt_str(out: &mut String, s: Option<&str>) {
    match s {
        Some(s) => json_str(out, s),
        None => out.push_str("null"),
    }
}

fn json_secs(out: &mut String, d: Option<std::time::Duration>) {
    match d {
        Some(d) => {
            let _ = write!(out, "{:.3}", d.as_secs_f64());
        }
        None => out.push_str("null"),
    }
}

/// Percent-encodes a relative path for an `href` (keeps unreserved characters and `/`).
fn href(path: &Path) -> String {
    let s = path.to_string_lossy();
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

fn counts_table(out: &mut String, id: &str, caption: &str, rows: &[(String, Counts)]) {
    let _ = write!(
        out,
        "<table class=\"counts\" id=\"{id}\"><caption hidden>{caption}</caption><thead><tr><th>platform</th>"
    );
    for v in Verdict::ALL {
        let _ = write!(out, "<th class=\"st-h s-{v}\">{v}</th>");
    }
    out.push_str("<th>total</th></tr></thead><tbody>");
    let mut all = Counts::default();
    let row = |out: &mut String, cls: &str, name: &str, c: &Counts| {
        let _ = write!(
            out,
            "<tr class=\"{cls}\" data-platform=\"{}\"><th>{}</th>",
            h(name),
            h(name)
        );
        for v in Verdict::ALL {
            let n = c.get(v);
            let zero = if n == 0 { " class=\"zero\"" } else { "" };
            let _ = write!(out, "<td data-status=\"{v}\"{zero}>{n}</td>");
        }
        let _ = write!(out, "<td data-status=\"total\">{}</td></tr>", c.total());
    };
    for (p, c) in rows {
        for (i, n) in c.0.iter().enumerate() {
            all.0[i] += n;
        }
        row(out, "platform", p, c);
    }
    if rows.len() != 1 {
        row(out, "all", "all platforms", &all);
    }
    out.push_str("</tbody></table>");
}

fn colour(v: Verdict) -> &'static str {
    match v {
        Verdict::Skip => "#8a8f98",
        Verdict::Info => "#3b7dd8",
        Verdict::Pass => "#2e9d4f",
        Verdict::Warn => "#d99a00",
        Verdict::Fail => "#d64541",
        Verdict::Error => "#a3337d",
        Verdict::Infra => "#6b4fbb",
    }
}

/// A stacked horizontal bar per platform, lengths proportional to the largest platform.
fn chart(out: &mut String, rows: &[(String, Counts)]) {
    let (label_w, bar_w, bar_h, gap) = (170.0, 430.0, 20.0, 8.0);
    let max = rows
        .iter()
        .map(|(_, c)| c.total())
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let height = rows.len() as f64 * (bar_h + gap) + 34.0;
    let _ = write!(
        out,
        "<figure><svg id=\"chart\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{height}\" viewBox=\"0 0 {w} {height}\" role=\"img\" aria-label=\"test verdicts per platform\" font-family=\"sans-serif\" font-size=\"12\">",
        w = label_w + bar_w + 60.0
    );
    for (i, (p, c)) in rows.iter().enumerate() {
        let y = i as f64 * (bar_h + gap);
        let short: String = if p.chars().count() > 24 {
            p.chars().take(23).chain(std::iter::once('…')).collect()
        } else {
            p.clone()
        };
        let _ = write!(
            out,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\" fill=\"#1d1f23\">{}<title>{}</title></text>",
            label_w - 8.0,
            y + bar_h * 0.7,
            h(&short),
            h(p)
        );
        let mut x = label_w;
        for v in Verdict::ALL {
            let n = c.get(v);
            if n == 0 {
                continue;
            }
            let w = n as f64 / max * bar_w;
            let _ = write!(
                out,
                "<rect class=\"bar\" data-platform=\"{}\" data-status=\"{v}\" data-count=\"{n}\" x=\"{x:.2}\" y=\"{y:.2}\" width=\"{w:.2}\" height=\"{bar_h}\" fill=\"{}\"><title>{}: {n} {v}</title></rect>",
                h(p),
                colour(v),
                h(p)
            );
            x += w;
        }
        let _ = write!(
            out,
            "<text x=\"{:.2}\" y=\"{}\" fill=\"#5f6670\">{}</text>",
            x + 6.0,
            y + bar_h * 0.7,
            c.total()
        );
    }
    let ly = rows.len() as f64 * (bar_h + gap) + 12.0;
    let mut lx = label_w;
    for v in Verdict::ALL {
        let _ = write!(
            out,
            "<rect x=\"{lx}\" y=\"{ly}\" width=\"11\" height=\"11\" fill=\"{}\"/><text x=\"{}\" y=\"{}\" fill=\"#1d1f23\">{v}</text>",
            colour(v),
            lx + 15.0,
            ly + 10.0
        );
        lx += 62.0;
    }
    out.push_str("</svg><figcaption>Test verdicts per platform</figcaption></figure>");
}

/// The JSON island: platforms, statuses and one array per test (see `report.js`).
fn data_json(report: &Report, opts: &HtmlOptions) -> String {
    let platforms = report.platforms();
    let mut out = String::with_capacity(report.tests().len() * 160);
    out.push_str("{\"platforms\":[");
    for (i, p) in platforms.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        json_str(&mut out, p);
    }
    out.push_str("],\"statuses\":[");
    for (i, v) in Verdict::ALL.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "\"{v}\"");
    }
    out.push_str("],\"tests\":[");
    for (ti, t) in report.tests().iter().enumerate() {
        if ti > 0 {
            out.push(',');
        }
        let last = t.last();
        let pi = platforms.iter().position(|p| *p == t.platform).unwrap_or(0);
        let _ = write!(out, "[{pi},");
        json_str(&mut out, &t.name);
        let _ = write!(out, ",{},", verdict_index(last.verdict()));
        json_secs(&mut out, last.duration);
        out.push(',');
        json_opt_str(&mut out, last.note().as_deref());
        let rel = last
            .files_dir
            .as_ref()
            .map(|d| relative_to(&opts.base_dir, d));
        let file_list = |out: &mut String, name: Option<&str>, files: &[String]| {
            out.push('[');
            for (i, f) in files.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push('[');
                json_str(out, f);
                out.push(',');
                match &rel {
                    Some(r) => {
                        let p = r.join(crate::artifacts::file_location(name, f));
                        json_str(out, &href(&p));
                    }
                    None => out.push_str("null"),
                }
                out.push(']');
            }
            out.push(']');
        };
        let own: Vec<String> = last.own_lines().flat_map(|l| l.files.clone()).collect();
        out.push(',');
        file_list(&mut out, None, &own);
        out.push_str(",[");
        for (si, l) in last.subtests().enumerate() {
            if si > 0 {
                out.push(',');
            }
            out.push('[');
            json_opt_str(&mut out, l.name.as_deref());
            out.push(',');
            json_opt_str(&mut out, l.status.as_deref());
            out.push(',');
            json_opt_str(&mut out, l.note.as_deref());
            out.push(',');
            file_list(&mut out, l.name.as_deref(), &l.files);
            out.push(',');
            json_secs(&mut out, l.duration);
            out.push(']');
        }
        out.push_str("],[");
        for (ai, a) in t.earlier().iter().enumerate() {
            if ai > 0 {
                out.push(',');
            }
            let _ = write!(out, "[{},", verdict_index(a.verdict()));
            json_secs(&mut out, a.duration);
            out.push(',');
            json_opt_str(&mut out, a.note().as_deref());
            out.push(']');
        }
        out.push_str("]]");
    }
    out.push_str("]}");
    out
}

/// Renders the report as one self-contained HTML page.
///
/// ```
/// use atex::aggregator::{html, Report, Attempt, Line};
/// let mut report = Report::new();
/// let line = Line { name: None, status: Some("pass".into()), note: None, files: vec![],
///                   duration: None };
/// report.add_attempt("9.6@x86_64", "/a", Attempt::new("/a", vec![line]));
/// let page = html::render(&report, &html::HtmlOptions::default());
/// assert!(page.contains("<td data-status=\"pass\">1</td>"));
/// assert!(!page.contains("http://") || !page.contains("src=\"http"));
/// ```
pub fn render(report: &Report, opts: &HtmlOptions) -> String {
    let counts = report.counts();
    let sub_counts = report.subtest_counts();
    let tests = report.tests().len();
    let reruns: usize = report.tests().iter().map(|t| t.earlier().len()).sum();
    let subtests: usize = report
        .tests()
        .iter()
        .map(|t| t.last().subtests().count())
        .sum();
    let passed = report
        .tests()
        .iter()
        .filter(|t| t.verdict().passed())
        .count();
    let data = data_json(report, opts);
    let mut out = String::with_capacity(data.len() + CSS.len() + JS.len() + 16 * 1024);
    out.push_str("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">");
    out.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">");
    out.push_str("<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:\">");
    if opts.in_progress {
        out.push_str("<meta http-equiv=\"refresh\" content=\"10\">");
    }
    let _ = write!(
        out,
        "<title>{}</title><style>{CSS}</style></head><body>",
        h(&opts.title)
    );
    let _ = write!(
        out,
        "<header><h1>{}</h1><p class=\"meta\" id=\"meta\" data-tests=\"{tests}\" data-passed=\"{passed}\" data-reruns=\"{reruns}\" data-subtests=\"{subtests}\">{tests} tests on {} platform(s), {passed} passed, {} not passed; {subtests} subtests; {reruns} rerun attempt(s). {} {} UTC.</p></header>",
        h(&opts.title),
        counts.len(),
        tests - passed,
        if opts.in_progress {
            "Run in progress, updated"
        } else {
            "Generated"
        },
        Timestamp::now().to_seconds_string().replace('T', " ")
    );
    out.push_str(
        "<section id=\"summary\"><h2>Summary</h2><div class=\"overview\"><div><h3>Tests</h3>",
    );
    counts_table(&mut out, "test-counts", "tests", &counts);
    out.push_str("<h3>Subtests</h3>");
    counts_table(&mut out, "subtest-counts", "subtests", &sub_counts);
    out.push_str("</div><div><h3>Chart</h3>");
    chart(&mut out, &counts);
    out.push_str("</div></div></section>");
    out.push_str("<section id=\"results\"><h2>Tests</h2><div class=\"controls\">");
    out.push_str("<input id=\"q\" type=\"search\" placeholder=\"filter by name or note\" aria-label=\"filter\">");
    out.push_str(
        "<select id=\"f-status\" aria-label=\"status\"><option value=\"\">any status</option>",
    );
    for v in Verdict::ALL {
        let _ = write!(out, "<option value=\"{v}\">{v}</option>");
    }
    out.push_str("</select><select id=\"f-platform\" aria-label=\"platform\"><option value=\"\">any platform</option>");
    for (p, _) in &counts {
        let _ = write!(out, "<option value=\"{}\">{}</option>", h(p), h(p));
    }
    out.push_str(
        "</select><label><input type=\"checkbox\" id=\"f-subtests\" checked> subtests</label>",
    );
    out.push_str("<label><input type=\"checkbox\" id=\"f-reruns\"> only rerun tests</label><span id=\"shown\"></span></div>");
    out.push_str("<table id=\"tests\"><thead><tr><th data-key=\"platform\">platform</th><th data-key=\"name\">test</th><th data-key=\"status\">status</th><th data-key=\"attempts\">attempts</th><th data-key=\"duration\">duration</th><th class=\"nosort\">note</th><th class=\"nosort\">files</th></tr></thead><tbody></tbody></table>");
    out.push_str("<noscript><p class=\"empty\">The test table needs JavaScript; the summary above does not.</p></noscript></section>");
    out.push_str("<footer>atex ");
    out.push_str(env!("CARGO_PKG_VERSION"));
    out.push_str("</footer><script type=\"application/json\" id=\"atex-data\">");
    out.push_str(&data);
    out.push_str("</script><script>");
    out.push_str(JS);
    out.push_str("</script></body></html>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes() {
        assert_eq!(
            h("<a href='x'>&\""),
            "&lt;a href=&#39;x&#39;&gt;&amp;&quot;"
        );
        let mut s = String::new();
        json_str(&mut s, "</script><!--\u{2028}\"\\\u{1}");
        assert_eq!(
            s,
            "\"\\u003c/script\\u003e\\u003c!--\\u2028\\\"\\\\\\u0001\""
        );
        assert_eq!(
            href(Path::new("../files/9.6@x86_64/a b/#1%.txt")),
            "../files/9.6%40x86_64/a%20b/%231%25.txt"
        );
    }
}
