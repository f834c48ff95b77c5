//! The HTML report of a real `atex run` (passes, a failure, an error, subtests, uploaded
//! files, a rerun) loaded in a real headless Chromium: the DOM after the page's script ran
//! has the right counts, rows and links; a screenshot renders. The JUnit file of the same
//! run validates against the Jenkins schema.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const TREE: &str = r#"/pass:
    test: echo hello
/fail:
    test: echo failing >&2; exit 1
/error:
    test: |
        j='{"status": "error", "note": "broken setup"}'
        printf 'result %d\n%s' ${#j} "$j" >&$ATEX_TEST_CONTROL
/subtests:
    test: |
        j='{"name": "sub/a", "status": "pass"}'
        printf 'result %d\n%s' ${#j} "$j" >&$ATEX_TEST_CONTROL
        j='{"name": "sub/b", "status": "fail", "note": "b broke", "files": [{"name": "b.log", "length": 5}]}'
        printf 'result %d\n%s%s' ${#j} "$j" "b-log" >&$ATEX_TEST_CONTROL
        echo subtests done
/flaky:
    test: |
        if [ -e "$FLAKY_MARK" ]; then echo second; exit 0; fi
        touch "$FLAKY_MARK"; echo first; exit 1
"#;

/// Runs Chromium headless with the flags this machine's closed network needs, a fresh
/// profile, and a deadline.
fn chromium(profile: &Path, args: &[&str], url: &str) -> std::process::Output {
    let child = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-quic",
            "--hide-scrollbars",
            "--virtual-time-budget=5000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(url)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("chromium (Debian package chromium) starts");
    let pid = child.id();
    let deadline = Instant::now() + Duration::from_secs(120);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        Ok(out) => out.unwrap(),
        Err(_) => {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
            panic!("chromium did not finish within 120 s");
        }
    }
}

/// The text of the first element with `attr` (e.g. `id="shown"`), up to its end tag.
fn element<'a>(dom: &'a str, attr: &str) -> &'a str {
    let start = dom
        .find(attr)
        .unwrap_or_else(|| panic!("no {attr} in the DOM"));
    let open = dom[..start].rfind('<').unwrap();
    let end = dom[start..].find("</").unwrap() + start;
    &dom[open..end]
}

/// The count in the summary table `table` for `platform` and `status`.
fn count(dom: &str, table: &str, platform: &str, status: &str) -> usize {
    let t = &dom[dom.find(&format!("id=\"{table}\"")).unwrap()..];
    let t = &t[..t.find("</table>").unwrap()];
    let row = &t[t.find(&format!("data-platform=\"{platform}\"")).unwrap()..];
    let row = &row[..row.find("</tr>").unwrap()];
    let cell = &row[row.find(&format!("data-status=\"{status}\"")).unwrap()..];
    let value = &cell[cell.find('>').unwrap() + 1..cell.find("</td>").unwrap()];
    value.parse().unwrap()
}

#[test]
fn html_report_of_a_real_run_renders_in_chromium() {
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tree");
    support::write_tree(&tree, TREE);
    let results = tmp.path().join("results");
    let html = tmp.path().join("report/index.html");
    let junit = tmp.path().join("report/junit.xml");
    let out = Command::new(env!("CARGO_BIN_EXE_atex"))
        .args(["-q", "run"])
        .arg(&tree)
        .args([
            "--remotes",
            "2",
            "--reruns",
            "1",
            "--platform",
            "f42@x86_64",
        ])
        .arg("--env")
        .arg(format!(
            "FLAKY_MARK={}",
            tmp.path().join("flaky.mark").display()
        ))
        .arg("--results")
        .arg(&results)
        .arg("--html")
        .arg(&html)
        .arg("--junit")
        .arg(&junit)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "failures make it 1: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The JUnit file of the run validates.
    let xsd = support::junit_xsd();
    let lint = Command::new("xmllint")
        .arg("--noout")
        .arg("--schema")
        .arg(&xsd)
        .arg(&junit)
        .output()
        .unwrap();
    assert!(
        lint.status.success(),
        "{}",
        String::from_utf8_lossy(&lint.stderr)
    );
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(
        xml.contains("tests=\"5\" failures=\"2\" errors=\"1\""),
        "{xml}"
    );
    assert_eq!(
        xml.matches("<flakyFailure type=\"fail\"").count(),
        1,
        "{xml}"
    );
    assert_eq!(
        xml.matches("<rerunFailure type=\"fail\"").count(),
        2,
        "{xml}"
    );
    assert_eq!(
        xml.matches("<rerunError type=\"error\"").count(),
        1,
        "{xml}"
    );

    let page = std::fs::read_to_string(&html).unwrap();
    assert!(
        !page.contains("http-equiv=\"refresh\""),
        "the final page does not reload"
    );
    for needle in ["src=\"http", "href=\"http", "url(http", "@import"] {
        assert!(!page.contains(needle), "no network: {needle}");
    }

    let url = format!("file://{}", html.display());
    let dom = chromium(&tmp.path().join("profile"), &["--dump-dom"], &url);
    assert!(
        dom.status.success(),
        "{}",
        String::from_utf8_lossy(&dom.stderr)
    );
    let dom = String::from_utf8(dom.stdout).unwrap();
    // The script ran: it filled the table and the counter.
    assert!(dom.contains("data-ready=\"1\""), "script did not run");
    let shown = element(&dom, "id=\"shown\"");
    assert!(shown.contains("data-tests=\"5\""), "{shown}");
    assert!(shown.contains("data-subtests=\"2\""), "{shown}");
    assert!(
        shown.contains("showing 5 of 5 tests, 2 subtests"),
        "{shown}"
    );
    // Summary counts per status and platform.
    let p = "f42@x86_64";
    assert_eq!(count(&dom, "test-counts", p, "pass"), 2);
    assert_eq!(count(&dom, "test-counts", p, "fail"), 2);
    assert_eq!(count(&dom, "test-counts", p, "error"), 1);
    assert_eq!(count(&dom, "test-counts", p, "skip"), 0);
    assert_eq!(count(&dom, "test-counts", p, "total"), 5);
    assert_eq!(count(&dom, "subtest-counts", p, "pass"), 1);
    assert_eq!(count(&dom, "subtest-counts", p, "fail"), 1);
    // Every test that did not pass ran twice (--reruns 1): four earlier attempts.
    let meta = element(&dom, "id=\"meta\"");
    assert!(meta.contains("data-reruns=\"4\""), "{meta}");
    // One row per test and subtest; rerun tests show their earlier attempts.
    assert_eq!(dom.matches("<tr class=\"test").count(), 5);
    assert_eq!(dom.matches("<tr class=\"test rerun\"").count(), 4);
    assert_eq!(dom.matches("<tr class=\"sub\"").count(), 2);
    let flaky = &dom[dom.find("/tests/flaky").unwrap()..];
    let flaky_row_start = dom[..dom.find("/tests/flaky").unwrap()]
        .rfind("<tr")
        .unwrap();
    assert!(dom[flaky_row_start..].starts_with("<tr class=\"test rerun\""));
    assert!(flaky[..flaky.find("</tr>").unwrap()].contains("title=\"attempt 1: fail"));
    // Links to the uploaded files, relative to the report, pointing at real files.
    let link = "href=\"../results/files/f42%40x86_64/tests/subtests/sub/b/b.log\"";
    assert!(dom.contains(link), "{dom}");
    assert_eq!(
        std::fs::read_to_string(results.join("files/f42@x86_64/tests/subtests/sub/b/b.log"))
            .unwrap(),
        "b-log"
    );
    assert!(dom.contains("href=\"../results/files/f42%40x86_64/tests/pass/output.txt\""));
    // Durations are shown (the run knows them).
    assert!(dom.matches(" s</td>").count() >= 5, "durations");
    // The chart has a bar per status present.
    assert_eq!(dom.matches("<rect class=\"bar\"").count(), 3);

    // A filter from the URL applies (the script reads `#status=`).
    let dom = chromium(
        &tmp.path().join("profile2"),
        &["--dump-dom"],
        &format!("{url}#status=fail"),
    );
    let dom = String::from_utf8(dom.stdout).unwrap();
    let shown = element(&dom, "id=\"shown\"");
    assert!(shown.contains("data-tests=\"2\""), "{shown}");
    assert!(shown.contains("data-subtests=\"1\""), "{shown}");

    // A screenshot renders.
    let shot = tmp.path().join("shot.png");
    let out = chromium(
        &tmp.path().join("profile3"),
        &[
            "--window-size=1280,1000",
            &format!("--screenshot={}", shot.display()),
        ],
        &url,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let png = std::fs::read(&shot).unwrap();
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000);
}
