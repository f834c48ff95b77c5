//! `atex run` results options with the real binary: `--compress`, `--old-results`,
//! `--resume` after SIGKILL (plain and xz), a torn last line, `--rerun-failed-from`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

fn atex() -> Command {
    Command::new(env!("CARGO_BIN_EXE_atex"))
}

/// `n` tests `/tests/tNN` that each append their name to `counter`, then sleep a little
/// (so that a run of them takes a while, not to synchronise anything).
fn counting_tree(root: &Path, n: usize, counter: &Path) {
    let mut fmf = String::new();
    for i in 0..n {
        fmf.push_str(&format!(
            "/t{i:02}:\n    test: echo /tests/t{i:02} >> '{}'; sleep 0.3\n",
            counter.display()
        ));
    }
    support::write_tree(root, &fmf);
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

fn counts(path: &Path) -> HashMap<String, usize> {
    let mut out = HashMap::new();
    for l in lines(path) {
        *out.entry(l).or_insert(0) += 1;
    }
    out
}

/// The rows of a results file, decoded by the real `xz`/`gzip` for compressed ones.
fn rows(file: &Path) -> Vec<serde_json::Value> {
    let text = match file.extension().and_then(|e| e.to_str()) {
        Some("xz") | Some("gz") => {
            let tool = if file.extension().unwrap() == "xz" {
                "xz"
            } else {
                "gzip"
            };
            let out = Command::new(tool).arg("-dc").arg(file).output().unwrap();
            assert!(
                out.status.success(),
                "{tool} -dc {}: {}",
                file.display(),
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8(out.stdout).unwrap()
        }
        _ => std::fs::read_to_string(file).unwrap(),
    };
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn output_ok(out: &std::process::Output, code: i32) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(code), "{stderr}");
    stderr
}

/// Starts a 40-test run on 4 remotes, SIGKILLs it once some tests finished and others run,
/// resumes it, and checks that every test has exactly one final result and that no test
/// that had finished ran again.
fn kill_and_resume(compress: Option<&str>, file_name: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tree");
    let counter = tmp.path().join("counter");
    counting_tree(&tree, 40, &counter);
    let results = tmp.path().join("results");
    let journal = results.join("run.journal");
    let mut cmd = atex();
    cmd.args(["-q", "run"])
        .arg(&tree)
        .args(["--remotes", "4", "--results"])
        .arg(&results);
    if let Some(c) = compress {
        cmd.args(["--compress", c]);
    }
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    support::wait_until(Duration::from_secs(120), "some tests finished", || {
        lines(&journal).len() >= 8 && lines(&counter).len() >= 12
    });
    kill(Pid::from_raw(child.id() as i32), Signal::SIGKILL).unwrap();
    child.wait().unwrap();
    let finished: Vec<String> = lines(&journal)
        .iter()
        .filter_map(|l| serde_json::from_str::<(String, String)>(l).ok())
        .map(|(_, t)| t)
        .collect();
    assert!(finished.len() >= 8 && finished.len() < 40, "{finished:?}");
    // The killed run left an incomplete results file (for xz a stream without its end).
    if compress == Some("xz") {
        let out = Command::new("xz")
            .arg("-dc")
            .arg(results.join(file_name))
            .output()
            .unwrap();
        assert!(!out.status.success(), "the killed run's xz stream is cut");
    }

    let out = atex()
        .args(["-q", "run", "--resume"])
        .arg(&results)
        .output()
        .unwrap();
    output_ok(&out, 0);

    let rows = rows(&results.join(file_name));
    let mut per_test: HashMap<String, usize> = HashMap::new();
    for r in &rows {
        assert_eq!(r[1], "pass", "{r}");
        *per_test
            .entry(r[2].as_str().unwrap().to_string())
            .or_insert(0) += 1;
    }
    assert_eq!(per_test.len(), 40, "{per_test:?}");
    assert!(per_test.values().all(|&n| n == 1), "{per_test:?}");
    let ran = counts(&counter);
    assert_eq!(ran.len(), 40, "{ran:?}");
    for t in &finished {
        assert_eq!(ran[t], 1, "{t} had finished before the kill and ran again");
    }
    // A second resume finds nothing to run.
    let out = atex()
        .args(["-q", "run", "--resume"])
        .arg(&results)
        .output()
        .unwrap();
    let stderr = output_ok(&out, 2);
    assert!(stderr.contains("nothing to run"), "{stderr}");
    assert_eq!(counts(&counter), ran);
}

#[test]
fn sigkill_then_resume_runs_each_unfinished_test_once() {
    kill_and_resume(None, "results.jsonl");
}

#[test]
fn sigkill_then_resume_of_an_xz_run_appends_to_the_cut_stream_file() {
    kill_and_resume(Some("xz"), "results.jsonl.xz");
}

#[test]
fn a_torn_last_line_and_stale_files_of_an_interrupted_test_are_dropped() {
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tree");
    let counter = tmp.path().join("counter");
    counting_tree(&tree, 3, &counter);
    let results = tmp.path().join("results");
    let out = atex()
        .args(["-q", "run"])
        .arg(&tree)
        .arg("--results")
        .arg(&results)
        .output()
        .unwrap();
    output_ok(&out, 0);
    // Make it look as if the run was killed while recording /tests/t02: its row torn, its
    // uploaded files half placed, its journal entry not written.
    let journal = results.join("run.journal");
    let kept: Vec<String> = lines(&journal)
        .into_iter()
        .filter(|l| !l.contains("/tests/t02"))
        .collect();
    std::fs::write(&journal, kept.join("\n") + "\n").unwrap();
    let file = results.join("results.jsonl");
    let good: Vec<String> = lines(&file)
        .into_iter()
        .filter(|l| !l.contains("/tests/t02"))
        .collect();
    // /tests/t01 is journaled but its row was lost (a power loss keeps one write and not
    // the other): it runs again too.
    std::fs::write(
        &file,
        good.iter()
            .filter(|l| !l.contains("/tests/t01"))
            .map(|l| format!("{l}\n"))
            .collect::<String>()
            + "[\"local\", \"pass\", \"/tests/t0",
    )
    .unwrap();
    let stale = results.join("files/local/tests/t02/stale.txt");
    std::fs::write(&stale, "from the killed attempt").unwrap();

    let out = atex()
        .args(["run", "--resume"])
        .arg(&results)
        .output()
        .unwrap();
    let stderr = output_ok(&out, 0);
    assert!(stderr.contains("torn last line"), "{stderr}");
    assert!(stderr.contains("without rows"), "{stderr}");
    let rows = rows(&file);
    let names: Vec<&str> = rows.iter().map(|r| r[2].as_str().unwrap()).collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(sorted, ["/tests/t00", "/tests/t01", "/tests/t02"]);
    assert!(!stale.exists(), "the interrupted attempt's files are gone");
    assert!(results.join("files/local/tests/t02/output.txt").exists());
    let ran = counts(&counter);
    assert_eq!(ran["/tests/t00"], 1);
    assert_eq!(ran["/tests/t01"], 2);
    assert_eq!(ran["/tests/t02"], 2);
}

#[test]
fn resume_refuses_a_directory_without_a_manifest() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("results.jsonl"), "").unwrap();
    let out = atex()
        .args(["run", "--resume"])
        .arg(tmp.path())
        .output()
        .unwrap();
    let stderr = output_ok(&out, 2);
    assert!(
        stderr.contains(&format!(
            "{}: no run manifest (run.json)",
            tmp.path().display()
        )),
        "{stderr}"
    );
    // --resume takes the options from the manifest: others are refused.
    let out = atex()
        .args(["run", "--remotes", "3", "--resume"])
        .arg(tmp.path())
        .output()
        .unwrap();
    let stderr = output_ok(&out, 2);
    assert!(stderr.contains("cannot be used with"), "{stderr}");
}

#[test]
fn a_run_that_is_still_writing_is_not_resumed_under_it() {
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tree");
    let go = tmp.path().join("go");
    let started = tmp.path().join("started");
    support::write_tree(
        &tree,
        &format!(
            "/waits:\n    test: |\n        touch '{}'\n        while [ ! -e '{}' ]; do sleep 0.05; done\n",
            started.display(),
            go.display()
        ),
    );
    let results = tmp.path().join("results");
    let mut child = atex()
        .args(["-q", "run"])
        .arg(&tree)
        .arg("--results")
        .arg(&results)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    support::wait_until(Duration::from_secs(60), "the test to start", || {
        started.exists()
    });
    let out = atex()
        .args(["run", "--resume"])
        .arg(&results)
        .output()
        .unwrap();
    let stderr = output_ok(&out, 2);
    assert!(stderr.contains("still writing"), "{stderr}");
    std::fs::write(&go, "").unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(0));
    assert_eq!(rows(&results.join("results.jsonl")).len(), 1);
}

/// A test that fails the first time it runs (it leaves a file behind) and passes after.
fn flaky(dir: &Path) -> String {
    format!(
        "/flaky:\n    test: |\n        echo log\n        if [ -e '{0}' ]; then exit 0; fi\n        touch '{0}'; exit 1\n",
        dir.join("flaky-ran").display()
    )
}

#[test]
fn compressed_results_and_old_results_read_back_with_gzip_and_xz() {
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tree");
    support::write_tree(
        &tree,
        &format!("{}/ok:\n    test: echo ok\n", flaky(tmp.path())),
    );
    let results = tmp.path().join("results");
    let old = tmp.path().join("old");
    let out = atex()
        .args(["-q", "run"])
        .arg(&tree)
        .args(["--reruns", "1", "--compress", "xz", "--compress-files"])
        .arg("--results")
        .arg(&results)
        .arg("--old-results")
        .arg(&old)
        .output()
        .unwrap();
    output_ok(&out, 0);
    let main = rows(&results.join("results.jsonl.xz"));
    assert_eq!(main.len(), 2);
    assert!(main.iter().all(|r| r[1] == "pass"), "{main:?}");
    assert!(!results.join("results.jsonl").exists());
    let old_rows = rows(&old.join("results.jsonl.xz"));
    assert_eq!(old_rows.len(), 1, "{old_rows:?}");
    assert_eq!(old_rows[0][1], "fail");
    assert_eq!(old_rows[0][2], "/tests/flaky");
    // Uploaded files are compressed too, in both directories.
    for dir in [&results, &old] {
        let log = dir.join("files/local/tests/flaky/output.txt.xz");
        let out = Command::new("xz").arg("-dc").arg(&log).output().unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "log\n", "{log:?}");
    }
    // atex report reads the compressed results and old results.
    let junit = tmp.path().join("junit.xml");
    let out = atex()
        .arg("report")
        .arg(&results)
        .arg("--old")
        .arg(&old)
        .arg("--junit")
        .arg(&junit)
        .output()
        .unwrap();
    output_ok(&out, 0);
    assert!(std::fs::read_to_string(&junit).unwrap().contains("flaky"));

    // gzip; nothing is rerun, so the old-results directory is removed again.
    let results = tmp.path().join("results-gz");
    let old = tmp.path().join("old-gz");
    let out = atex()
        .args(["-q", "run"])
        .arg(&tree)
        .args(["--reruns", "1", "--compress", "gz"])
        .arg("--results")
        .arg(&results)
        .arg("--old-results")
        .arg(&old)
        .output()
        .unwrap();
    output_ok(&out, 0);
    assert_eq!(rows(&results.join("results.jsonl.gz")).len(), 2);
    // Without --compress-files the uploaded files stay as they are.
    assert!(results.join("files/local/tests/flaky/output.txt").exists());
    assert!(!old.exists(), "an empty old-results directory is removed");
}

#[test]
fn rerun_failed_from_selects_exactly_the_tests_that_did_not_pass() {
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tree");
    let control = "printf 'result %d\\n%s' \"${#R}\" \"$R\" >&$ATEX_TEST_CONTROL";
    support::write_tree(
        &tree,
        &format!(
            concat!(
                "/pass:\n    test: exit 0\n",
                "/fail:\n    test: exit 1\n",
                "/skip:\n    test: |\n        R='{{\"status\": \"skip\"}}'; {c}\n",
                "/warn:\n    test: |\n        R='{{\"status\": \"warn\"}}'; {c}\n",
                "/error:\n    test: |\n        R='{{\"status\": \"error\"}}'; {c}\n",
                "/subtest-fails:\n    test: |\n        R='{{\"status\": \"fail\", \"name\": \"sub\"}}'; {c}\n",
            ),
            c = control
        ),
    );
    let first = tmp.path().join("first");
    let out = atex()
        .args(["-q", "run"])
        .arg(&tree)
        .arg("--results")
        .arg(&first)
        .output()
        .unwrap();
    output_ok(&out, 1);
    let second = tmp.path().join("second");
    let out = atex()
        .args(["-q", "run"])
        .arg(&tree)
        .arg("--results")
        .arg(&second)
        .arg("--rerun-failed-from")
        .arg(&first)
        .output()
        .unwrap();
    output_ok(&out, 1);
    let mut names: Vec<String> = rows(&second.join("results.jsonl"))
        .iter()
        .map(|r| r[2].as_str().unwrap().to_string())
        .collect();
    names.sort();
    names.dedup();
    assert_eq!(
        names,
        [
            "/tests/error",
            "/tests/fail",
            "/tests/subtest-fails",
            "/tests/warn"
        ]
    );
    // The new run's manifest lists only those: a resume would run nothing else.
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(second.join("run.json")).unwrap()).unwrap();
    assert_eq!(manifest["tests"].as_array().unwrap().len(), 4);
}
