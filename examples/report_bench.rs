//! Measures the HTML and JUnit reports of a large run: generation time (reading
//! `results.jsonl` included) and file size.
//!
//! ```text
//! cargo run --release --example report_bench [-- RESULTS]
//! ```
//!
//! Two synthetic runs on three platforms with realistic names, notes and one `output.txt`
//! per test (a fifth of them failing): 10,000 result lines (8,000 tests, 1,000 of them
//! with two subtests) and 10,000 tests without subtests. Each measurement is repeated 5
//! times; the median, min and max are printed.

/// With the opt-in feature `mimalloc`, the allocator the `atex` program is then built with.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::io::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use atex::aggregator::{Report, html, junit};
use atex::results::{ReadOptions, locate};

fn write_results(dir: &Path, tests: usize, with_subtests_every: usize) -> usize {
    std::fs::create_dir_all(dir.join("files")).expect("mkdir");
    let mut out =
        std::io::BufWriter::new(std::fs::File::create(dir.join("results.jsonl")).expect("create"));
    let platforms = ["9.6@x86_64", "10.1@aarch64", "f42@s390x"];
    let statuses = ["pass", "pass", "pass", "pass", "fail"];
    let mut lines = 0;
    for i in 0..tests {
        let p = platforms[i % platforms.len()];
        let s = statuses[i % statuses.len()];
        let name = format!("/hardening/oscap/profile-{:05}/rule_{}", i, i * 7 % 1000);
        if with_subtests_every > 0 && i % with_subtests_every == 0 {
            for sub in ["check", "remediate"] {
                writeln!(
                    out,
                    "[\"{p}\", \"{s}\", \"{name}\", \"{sub}\", [\"{sub}.log\"], null]"
                )
                .expect("write");
                lines += 1;
            }
        }
        let note = if s == "fail" {
            "\"exit code 1: assertion failed in rule\""
        } else {
            "null"
        };
        writeln!(
            out,
            "[\"{p}\", \"{s}\", \"{name}\", null, [\"output.txt\"], {note}]"
        )
        .expect("write");
        lines += 1;
    }
    out.flush().expect("flush");
    lines
}

fn stats(mut v: Vec<Duration>) -> (f64, f64, f64) {
    v.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    (ms(v[v.len() / 2]), ms(v[0]), ms(v[v.len() - 1]))
}

fn measure(dir: &Path, label: &str) {
    let loc = locate(dir).expect("locate");
    let out = dir.join("report");
    std::fs::create_dir_all(&out).expect("mkdir");
    let mut html_times = Vec::new();
    let mut junit_times = Vec::new();
    let (mut html_size, mut junit_size, mut tests) = (0, 0, 0);
    for _ in 0..5 {
        let t = Instant::now();
        let mut report = Report::new();
        report
            .add_results(&loc, &ReadOptions::default())
            .expect("read");
        let page = html::render(
            &report,
            &html::HtmlOptions {
                base_dir: out.clone(),
                ..Default::default()
            },
        );
        atex::aggregator::write_atomic(&out.join("index.html"), page.as_bytes()).expect("write");
        html_times.push(t.elapsed());
        html_size = page.len();
        tests = report.tests().len();

        let t = Instant::now();
        let mut report = Report::new();
        report
            .add_results(&loc, &ReadOptions::default())
            .expect("read");
        let xml = junit::render(
            &report,
            &junit::JunitOptions {
                base_dir: out.clone(),
                output_limit: 0,
                ..Default::default()
            },
        );
        atex::aggregator::write_atomic(&out.join("junit.xml"), xml.as_bytes()).expect("write");
        junit_times.push(t.elapsed());
        junit_size = xml.len();
    }
    let (h, hmin, hmax) = stats(html_times);
    let (j, jmin, jmax) = stats(junit_times);
    println!(
        "{label}: {tests} tests\n  HTML : {h:.1} ms (min {hmin:.1}, max {hmax:.1}), {:.2} MB\n  JUnit: {j:.1} ms (min {jmin:.1}, max {jmax:.1}), {:.2} MB",
        html_size as f64 / 1e6,
        junit_size as f64 / 1e6
    );
}

fn main() {
    let tmp = tempfile::tempdir().expect("tmp");
    let a = tmp.path().join("a");
    let lines = write_results(&a, 8_000, 8);
    measure(&a, &format!("{lines} result lines"));
    let b = tmp.path().join("b");
    let lines = write_results(&b, 10_000, 0);
    measure(&b, &format!("{lines} result lines"));
}
