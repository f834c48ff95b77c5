//! Operating `atex run` for long unattended runs, with the real binary on local remotes:
//! `--debug-log` (compressed, finished on exit), SIGHUP and SIGTERM like SIGINT,
//! `--stats-every` on a non-terminal stderr, `--env` for every test.

#![cfg(feature = "cli")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

fn atex() -> Command {
    Command::new(env!("CARGO_BIN_EXE_atex"))
}

/// The whole text of a debug log, decompressed by its suffix; fails on a stream without
/// its end.
fn read_log(path: &Path) -> String {
    let file = std::fs::File::open(path).unwrap();
    let mut text = String::new();
    let read = match path.extension().and_then(|e| e.to_str()) {
        Some("xz") => liblzma::read::XzDecoder::new(file).read_to_string(&mut text),
        Some("gz") => flate2::read::GzDecoder::new(file).read_to_string(&mut text),
        _ => BufReader::new(file).read_to_string(&mut text),
    };
    read.unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text
}

#[test]
fn debug_log_is_compressed_by_suffix_and_holds_what_the_console_does_not() {
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tree");
    support::write_tree(&tree, "/a:\n    test: echo a\n/b:\n    test: echo b\n");
    for name in ["debug.log.xz", "debug.log.gz", "debug.log"] {
        let log = tmp.path().join(name);
        let results = tmp.path().join(format!("results-{name}"));
        let out = atex()
            .arg("run")
            .arg(&tree)
            .arg("--results")
            .arg(&results)
            .arg("--debug-log")
            .arg(&log)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{name}: {stderr}");
        // The console stays at its level: event lines, no debug lines.
        assert!(stderr.contains("pass   /tests/a"), "{name}: {stderr}");
        assert!(!stderr.contains("DEBUG"), "{name}: {stderr}");
        let raw = std::fs::read(&log).unwrap();
        match name {
            "debug.log.xz" => assert!(raw.starts_with(b"\xfd7zXZ\0"), "not xz: {name}"),
            "debug.log.gz" => assert!(raw.starts_with(b"\x1f\x8b"), "not gzip: {name}"),
            _ => assert!(raw.starts_with(b"20"), "not plain text: {name}"),
        }
        let text = read_log(&log);
        for needle in [
            " DEBUG ",
            "fmf tree loaded",
            "test finished test=/tests/a",
            "test finished test=/tests/b",
            "closing the debug log",
        ] {
            assert!(text.contains(needle), "{name}: {needle} not in:\n{text}");
        }
        assert!(
            !text.contains('\x1b'),
            "{name}: escape sequences in:\n{text}"
        );
        assert_eq!(support::result_rows(&results).len(), 2);
    }

    // A debug log that cannot be created: exit 2 before anything ran.
    let out = atex()
        .arg("run")
        .arg(&tree)
        .arg("--results")
        .arg(tmp.path().join("never"))
        .arg("--debug-log")
        .arg(tmp.path().join("no/such/dir/log.xz"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("cannot create the debug log") && stderr.contains("no/such/dir/log.xz"),
        "{stderr}"
    );
    assert!(!tmp.path().join("never").exists());
}

/// Starts a run of one quick and four slow tests, waits until the slow ones run and the
/// quick one has its result, sends `signal`; checks the exit code, that nothing is left
/// running, the results on disk and that the debug log was finished.
fn signal_ends_the_run(signal: Signal) {
    let marker = support::marker(&format!("cli-ops-{signal}"));
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tree");
    let mut fmf = String::from("/quick:\n    test: echo quick\n");
    for i in 0..4 {
        fmf.push_str(&format!("/slow{i}:\n    test: sleep 300 & sleep 300\n"));
    }
    support::write_tree(&tree, &fmf);
    let results = tmp.path().join("results");
    let log = tmp.path().join("debug.log.xz");
    let mut child = atex()
        .args(["-q", "run"])
        .arg(&tree)
        .args(["--remotes", "3", "--results"])
        .arg(&results)
        .arg("--debug-log")
        .arg(&log)
        .env("ATEX_TEST_MARKER", &marker)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    support::wait_until(Duration::from_secs(30), "the slow tests to run", || {
        support::processes_with_marker(&marker).len() >= 4
    });
    support::wait_until(Duration::from_secs(30), "the quick test's result", || {
        std::fs::read_to_string(results.join("results.jsonl"))
            .is_ok_and(|t| t.contains("\"/tests/quick\""))
    });
    kill(Pid::from_raw(child.id() as i32), signal).unwrap();
    let sent = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            sent.elapsed() < Duration::from_secs(15),
            "atex run still running 15 s after {signal}"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    // Interrupted, as with SIGINT: 130 whichever signal it was.
    assert_eq!(status.code(), Some(130), "{signal}: {stderr}");
    let left = support::wait_no_processes(&marker, Duration::from_secs(2));
    assert!(left.is_empty(), "{signal}: processes left behind: {left:?}");
    let rows = support::result_rows(&results);
    assert!(
        rows.iter()
            .any(|r| r[2] == "/tests/quick" && r[1] == "pass"),
        "{rows:?}"
    );
    let slow: Vec<_> = rows
        .iter()
        .filter(|r| r[2].as_str().unwrap().starts_with("/tests/slow"))
        .collect();
    assert!(!slow.is_empty(), "{rows:?}");
    assert!(slow.iter().all(|r| r[1] == "infra"), "{slow:?}");
    // The debug log names the signal and ends properly (xz decodes to its end).
    let text = read_log(&log);
    assert!(
        text.contains(&format!("signal=\"{signal}\""))
            || text.contains(&format!("signal={signal}")),
        "{signal} not in the debug log:\n{text}"
    );
    assert!(text.contains("closing the debug log"), "{text}");
}

#[test]
fn sighup_ends_the_run_like_sigint() {
    signal_ends_the_run(Signal::SIGHUP);
}

#[test]
fn sigterm_ends_the_run_like_sigint() {
    signal_ends_the_run(Signal::SIGTERM);
}

#[test]
fn stats_every_prints_statistics_lines_to_a_non_terminal_stderr() {
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tree");
    let go = tmp.path().join("go");
    // The test runs until the harness saw two statistics lines.
    support::write_tree(
        &tree,
        &format!(
            "/waits:\n    test: while ! test -e '{}'; do sleep 0.05; done\n",
            go.display()
        ),
    );
    let mut child = atex()
        .arg("run")
        .arg(&tree)
        .arg("--results")
        .arg(tmp.path().join("results"))
        .args(["--stats-every", "1s"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let line = line.unwrap();
            if tx.send(line.clone()).is_err() {
                break;
            }
        }
    });
    let mut lines = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while lines
        .iter()
        .filter(|l: &&String| l.contains("] stats: "))
        .count()
        < 2
    {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => lines.push(line),
            Err(e) => panic!("no two statistics lines ({e}):\n{}", lines.join("\n")),
        }
    }
    std::fs::write(&go, "").unwrap();
    lines.extend(rx.iter());
    reader.join().unwrap();
    let status = child.wait().unwrap();
    let all = lines.join("\n");
    assert_eq!(status.code(), Some(0), "{all}");
    let stats: Vec<&String> = lines.iter().filter(|l| l.contains("] stats: ")).collect();
    // While the test runs: nothing done, one running.
    assert!(
        stats[0].contains("0/1 done") && stats[0].contains("1 running"),
        "{all}"
    );
    assert!(all.contains("pass   /tests/waits"), "{all}");

    // A period that is no period: a usage error.
    for bad in ["0s", "soon"] {
        let out = atex()
            .arg("run")
            .arg(&tree)
            .arg("--results")
            .arg(tmp.path().join("never"))
            .args(["--stats-every", bad])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{bad}: {stderr}");
        assert!(stderr.contains("--stats-every"), "{bad}: {stderr}");
    }
}

#[test]
fn env_reaches_every_test() {
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tree");
    support::write_tree(
        &tree,
        concat!(
            "/one:\n    test: printf '%s|%s\\n' \"$FIRST\" \"$SECOND\"\n",
            "/two:\n    test: printf '%s|%s\\n' \"$FIRST\" \"$SECOND\"\n",
            // --env wins over the test's own environment (as `tmt run -e` does and as
            // upstream orders it: plan, test, then the executor's environment).
            "/own:\n    test: printf '%s\\n' \"$FIRST\"\n    environment:\n        FIRST: mine\n",
        ),
    );
    let results = tmp.path().join("results");
    let out = atex()
        .args(["-q", "run"])
        .arg(&tree)
        .arg("--results")
        .arg(&results)
        .args(["--env", "FIRST=a=b", "-e", "SECOND=with space"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for test in ["one", "two"] {
        assert_eq!(
            std::fs::read_to_string(results.join(format!("files/local/tests/{test}/output.txt")))
                .unwrap(),
            "a=b|with space\n",
            "{test}"
        );
    }
    assert_eq!(
        std::fs::read_to_string(results.join("files/local/tests/own/output.txt")).unwrap(),
        "a=b\n"
    );

    let out = atex()
        .arg("run")
        .arg(&tree)
        .arg("--results")
        .arg(tmp.path().join("never"))
        .args(["--env", "NOEQUALS"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("--env 'NOEQUALS' is not KEY=VALUE"),
        "{stderr}"
    );
}
