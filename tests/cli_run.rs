//! `atex run` end to end on local remotes: exit codes, results on disk, SIGINT.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

fn atex() -> Command {
    Command::new(env!("CARGO_BIN_EXE_atex"))
}

#[test]
fn exit_codes_follow_results() {
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tree");
    support::write_tree(
        &tree,
        "/a:\n    test: echo a\n/b:\n    test: echo b\n/c:\n    test: exit 0\n",
    );
    let out = atex()
        .args(["-q", "run"])
        .arg(&tree)
        .args(["--remotes", "2", "--results"])
        .arg(tmp.path().join("ok"))
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ok = support::result_rows(&tmp.path().join("ok"));
    assert_eq!(ok.len(), 3);
    assert!(ok.iter().all(|r| r[1] == "pass" && r[0] == "local"));
    // --quiet: neither the progress log nor the table.
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("] start "), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(tmp.path().join("ok/files/local/tests/a/output.txt")).unwrap(),
        "a\n"
    );

    // A failing test and an error result (reported by the test itself) both make it 1.
    let tree2 = tmp.path().join("tree2");
    support::write_tree(
        &tree2,
        concat!(
            "/fails:\n    test: exit 3\n",
            "/reports-error:\n    test: |\n",
            "        printf 'result 19\\n{\"status\": \"error\"}' >&$ATEX_TEST_CONTROL\n",
        ),
    );
    let out = atex()
        .args(["run"])
        .arg(&tree2)
        .args(["--platform", "9.6@x86_64", "--results"])
        .arg(tmp.path().join("bad"))
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bad = support::result_rows(&tmp.path().join("bad"));
    assert_eq!(bad.len(), 2);
    assert!(bad.iter().all(|r| r[0] == "9.6@x86_64"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("/tests/fails"), "{stdout}");

    // atex itself cannot run: bad tree, bad usage, results already there.
    let out = atex()
        .args(["run"])
        .arg(tmp.path().join("missing"))
        .args(["--results"])
        .arg(tmp.path().join("x"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = atex()
        .args(["run"])
        .arg(&tree)
        .args(["--results"])
        .arg(tmp.path().join("ok"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("exists"));
    let out = atex()
        .args(["run"])
        .arg(&tree)
        .args(["--provisioner", "nonsense", "--results"])
        .arg(tmp.path().join("y"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nonsense"));
}

#[test]
fn sigint_ends_the_run_with_nothing_left_running() {
    let marker = support::marker("cli-run");
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tree");
    let mut fmf = String::from("/quick:\n    test: echo quick\n");
    for i in 0..4 {
        fmf.push_str(&format!("/slow{i}:\n    test: sleep 300 & sleep 300\n"));
    }
    support::write_tree(&tree, &fmf);
    let results = tmp.path().join("results");
    let mut child = atex()
        .args(["-q", "run"])
        .arg(&tree)
        .args(["--remotes", "3", "--results"])
        .arg(&results)
        .env("ATEX_TEST_MARKER", &marker)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the slow tests run.
    let started = Instant::now();
    while support::processes_with_marker(&marker).len() < 4 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "tests did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    support::wait_until(Duration::from_secs(30), "the quick test's result", || {
        std::fs::read_to_string(results.join("results.jsonl"))
            .is_ok_and(|t| t.contains("\"/tests/quick\""))
    });
    kill(Pid::from_raw(child.id() as i32), Signal::SIGINT).unwrap();
    let sent = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            sent.elapsed() < Duration::from_secs(15),
            "atex run still running 15 s after SIGINT"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(130));
    let left = support::wait_no_processes(&marker, Duration::from_secs(2));
    assert!(left.is_empty(), "processes left behind: {left:?}");
    // Every line on disk is valid; interrupted tests left an infra line.
    let rows = support::result_rows(&results);
    assert!(
        rows.iter()
            .any(|r| r[2] == "/tests/quick" && r[1] == "pass")
    );
    let interrupted: Vec<_> = rows
        .iter()
        .filter(|r| r[2].as_str().unwrap().starts_with("/tests/slow"))
        .collect();
    assert!(!interrupted.is_empty());
    assert!(
        interrupted.iter().all(|r| r[1] == "infra"),
        "{interrupted:?}"
    );
}

/// The result column of `test`'s row in the summary table.
fn table_result<'a>(stdout: &'a str, test: &str) -> &'a str {
    stdout
        .lines()
        .find(|l| l.split_whitespace().next() == Some(test))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or_else(|| panic!("no row for {test} in:\n{stdout}"))
}

#[test]
fn a_test_reporting_fail_and_exiting_0_is_not_passed() {
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tree");
    support::write_tree(
        &tree,
        concat!(
            "/passes:\n    test: 'true'\n",
            "/reports-fail:\n    test: |\n",
            "        printf 'result 18\\n{\"status\": \"fail\"}' >&$ATEX_TEST_CONTROL\n",
            "        exit 0\n",
        ),
    );
    let out = atex()
        .args(["run"])
        .arg(&tree)
        .args(["--results"])
        .arg(tmp.path().join("r"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert_eq!(
        table_result(&stdout, "/tests/reports-fail"),
        "fail",
        "{stdout}"
    );
    assert_eq!(table_result(&stdout, "/tests/passes"), "pass", "{stdout}");
    assert!(
        stdout.contains("2 tests in ") && stdout.contains("s: 1 passed, 1 not passed"),
        "{stdout}"
    );
    assert!(
        stdout.lines().any(|l| l == "verdicts: 1 pass, 1 fail"),
        "{stdout}"
    );
    // The plain progress log (stderr is not a terminal) says so too, and ends with the
    // run's statistics.
    assert!(
        stderr
            .lines()
            .any(|l| l.contains("/tests/reports-fail") && l.contains("] fail ")),
        "{stderr}"
    );
    assert!(
        stderr
            .lines()
            .any(|l| l.contains("] run finished: 2/2 done: 1 passed, 1 not passed (1 fail)")),
        "{stderr}"
    );
}

#[test]
fn reruns_rerun_a_test_that_reported_fail_and_exited_0() {
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tree");
    let counter = tmp.path().join("attempts");
    support::write_tree(
        &tree,
        &format!(
            concat!(
                "/reports-fail:\n    test: |\n",
                "        echo attempt >> '{}'\n",
                "        printf 'result 18\\n{{\"status\": \"fail\"}}' >&$ATEX_TEST_CONTROL\n",
            ),
            counter.display()
        ),
    );
    let out = atex()
        .args(["run"])
        .arg(&tree)
        .args(["--reruns", "1", "--results"])
        .arg(tmp.path().join("r"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let attempts = std::fs::read_to_string(&counter).unwrap();
    assert_eq!(attempts.lines().count(), 2, "{stdout}");
    assert!(
        stdout.contains("1 not passed, 0 not run, 1 reruns"),
        "{stdout}"
    );
    assert_eq!(table_result(&stdout, "/tests/reports-fail"), "fail");
}

#[test]
fn an_unreadable_or_corrupt_results_file_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    for (case, script) in [
        ("removed", "rm -f -- \"$RESULTS/results.jsonl\""),
        (
            "corrupt",
            "rm -f -- \"$RESULTS/results.jsonl\"; echo 'not json' > \"$RESULTS/results.jsonl\"",
        ),
    ] {
        let tree = tmp.path().join(format!("tree-{case}"));
        let results = tmp.path().join(format!("results-{case}"));
        support::write_tree(
            &tree,
            &format!(
                "/damages-results:\n    test: |\n        RESULTS='{}'\n        {script}\n",
                results.display()
            ),
        );
        let out = atex()
            .args(["run"])
            .arg(&tree)
            .args(["--results"])
            .arg(&results)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{case}: {stderr}");
        assert!(stderr.contains("results.jsonl"), "{case}: {stderr}");
    }
}

/// `(test, remote)` of every `start` line of the plain progress log, in order.
#[cfg(feature = "ssh")]
fn starts(stderr: &str) -> Vec<(String, String)> {
    stderr
        .lines()
        .filter_map(|l| l.split_once("] start  "))
        .filter_map(|(_, rest)| rest.split_once(" on "))
        .map(|(test, remote)| {
            let remote = remote.split(" (rerun").next().unwrap_or(remote);
            (test.to_string(), remote.to_string())
        })
        .collect()
}

#[cfg(feature = "ssh")]
#[test]
fn a_destructive_test_retires_its_ssh_host() {
    use support::sshd::{Sshd, TEST_USER};
    let hosts_sshd = [Sshd::start(), Sshd::start()];
    let tmp = tempfile::tempdir().unwrap();
    let mut hosts = String::new();
    let mut known = String::new();
    for s in &hosts_sshd {
        hosts.push_str(&format!(
            "{TEST_USER}@127.0.0.1:{} {}\n",
            s.port,
            s.files.client_key.display()
        ));
        known.push_str(&std::fs::read_to_string(&s.files.known_hosts).unwrap());
    }
    let hosts_file = tmp.path().join("hosts");
    std::fs::write(&hosts_file, hosts).unwrap();
    let known_hosts = tmp.path().join("known_hosts");
    std::fs::write(&known_hosts, known).unwrap();
    let tree = tmp.path().join("tree");
    let mut fmf = String::from(
        "/destroy:\n    test: echo destroying\n    tag: [destructive]\n    extra-priority: 10\n",
    );
    // Work that keeps the queue busy long enough for a host handed back to get more.
    for i in 0..4 {
        fmf.push_str(&format!("/t{i}:\n    test: sleep 1\n"));
    }
    support::write_tree(&tree, &fmf);
    let out = atex()
        .args(["run"])
        .arg(&tree)
        .arg("--provisioner")
        .arg(format!("ssh:{}", hosts_file.display()))
        .arg("--ssh-known-hosts")
        .arg(&known_hosts)
        .args(["--order", "priority", "--results"])
        .arg(tmp.path().join("results"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    let starts = starts(&stderr);
    assert_eq!(starts.len(), 5, "{stderr}");
    let destroyed = starts
        .iter()
        .find(|(t, _)| t == "/tests/destroy")
        .map(|(_, r)| r.clone())
        .unwrap_or_else(|| panic!("/tests/destroy never started:\n{stderr}"));
    let others: Vec<_> = starts
        .iter()
        .filter(|(t, r)| *r == destroyed && t != "/tests/destroy")
        .collect();
    assert!(
        others.is_empty(),
        "the destroyed host {destroyed} got more tests: {others:?}\n{stderr}"
    );
    let said = format!("remote {destroyed} retired (destructive test /tests/destroy)");
    assert!(stderr.contains(&said), "log lacks '{said}':\n{stderr}");
    assert!(stdout.contains(&said), "summary lacks '{said}':\n{stdout}");
}
