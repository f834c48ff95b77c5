//! The `quickstart` example end to end: a full run, and SIGINT in the middle of one.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

fn quickstart() -> Command {
    let bin = support::built_binary("examples/quickstart");
    assert!(
        bin.exists(),
        "{} not built (cargo test builds examples)",
        bin.display()
    );
    Command::new(bin)
}

/// Every line is a valid JSONL aggregator row; returns the test names.
fn check_lines(text: &str) -> Vec<String> {
    text.lines()
        .map(|line| {
            let row: serde_json::Value =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("invalid line {line:?}: {e}"));
            let row = row.as_array().expect("a JSON array");
            assert_eq!(row.len(), 6, "{line}");
            assert_eq!(row[0], "local");
            assert!(row[1].is_string());
            row[2].as_str().expect("test name").to_string()
        })
        .collect()
}

#[test]
fn quickstart_runs_twenty_tests() {
    let dir = tempfile::tempdir().unwrap();
    let out = quickstart().arg(dir.path()).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("20 tests"), "{stdout}");
    assert!(stdout.contains("18 passed, 2 not passed"), "{stdout}");
    let names = check_lines(&std::fs::read_to_string(dir.path().join("results.jsonl")).unwrap());
    assert_eq!(names.len(), 20);
    assert!(
        dir.path()
            .join("files/local/quickstart/fails/output.txt")
            .exists()
    );
    // A second run into the same directory replaces the results.
    let again = quickstart().arg(dir.path()).output().unwrap();
    assert!(again.status.success());
}

#[test]
fn sigint_stops_quickstart_cleanly() {
    let marker = support::marker("quickstart");
    let dir = tempfile::tempdir().unwrap();
    let mut child = quickstart()
        .arg(dir.path())
        .env("ATEX_TEST_MARKER", &marker)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Let some tests finish and others run.
    support::wait_until(
        Duration::from_secs(30),
        "a finished test and running ones",
        || {
            std::fs::read_to_string(dir.path().join("results.jsonl")).is_ok_and(|t| !t.is_empty())
                && !support::processes_with_marker(&marker).is_empty()
        },
    );
    kill(Pid::from_raw(child.id() as i32), Signal::SIGINT).unwrap();
    let sent = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if sent.elapsed() > Duration::from_secs(5) {
            let _ = child.kill();
            panic!("quickstart still running 5 s after SIGINT");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(130));
    let left = support::wait_no_processes(&marker, Duration::from_secs(1));
    assert!(left.is_empty(), "processes left behind: {left:?}");
    let text = std::fs::read_to_string(dir.path().join("results.jsonl")).unwrap();
    let names = check_lines(&text);
    assert!(!names.is_empty(), "some tests finished before SIGINT");
    assert!(names.len() < 20 || text.contains("\"infra\""), "{text}");
    // No scratch directory of the local remotes is left behind.
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("cleanup incomplete"), "{stderr}");
}
