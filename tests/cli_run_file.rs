//! `atex run --run-file FILE`: several platforms (each its own context, pool and
//! environment) in one run, one results file, one summary per platform; precise errors for
//! bad run files; SIGINT stops every platform.

#![cfg(feature = "cli")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

fn atex() -> Command {
    Command::new(env!("CARGO_BIN_EXE_atex"))
}

/// `(platform, status, test)` of every row.
fn rows(results: &Path) -> Vec<(String, String, String)> {
    let mut out: Vec<(String, String, String)> =
        std::fs::read_to_string(results.join("results.jsonl"))
            .unwrap()
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                let s = |i: usize| v[i].as_str().unwrap().to_string();
                (s(0), s(1), s(2))
            })
            .collect();
    out.sort();
    out
}

const TREE: &str = concat!(
    "/common:\n    test: echo common\n",
    "/only-x:\n    test: echo x\n    adjust:\n      - when: distro == y\n        enabled: false\n",
    "/only-y:\n    test: echo y\n    enabled: false\n    adjust:\n      - when: distro == y\n        enabled: true\n",
    "/who:\n    test: echo \"who=$WHO\"\n",
);

#[test]
fn two_platforms_share_one_results_file_with_a_summary_each() {
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tree");
    support::write_tree(&tree, TREE);
    let run_file = tmp.path().join("run.yaml");
    std::fs::write(
        &run_file,
        concat!(
            "platforms:\n",
            "  - name: alpha\n    context: {distro: x}\n    provisioner: local\n",
            "    remotes: 2\n    env: {WHO: alpha}\n",
            "  - name: beta\n    context: [distro=y]\n",
        ),
    )
    .unwrap();
    let results = tmp.path().join("results");
    let out = atex()
        .arg("run")
        .arg(&tree)
        .arg("--run-file")
        .arg(&run_file)
        .arg("--results")
        .arg(&results)
        .env("WHO", "")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pass = |p: &str, t: &str| (p.to_string(), "pass".to_string(), t.to_string());
    assert_eq!(
        rows(&results),
        [
            pass("alpha", "/tests/common"),
            pass("alpha", "/tests/only-x"),
            pass("alpha", "/tests/who"),
            pass("beta", "/tests/common"),
            pass("beta", "/tests/only-y"),
            pass("beta", "/tests/who"),
        ]
    );
    // Each platform ran with its own environment.
    let output = |p: &str| {
        std::fs::read_to_string(results.join(format!("files/{p}/tests/who/output.txt"))).unwrap()
    };
    assert_eq!(output("alpha"), "who=alpha\n");
    assert_eq!(output("beta"), "who=\n");
    // One summary per platform, in run-file order, then the results file.
    let alpha = stdout.find("platform alpha:").expect(&stdout);
    let beta = stdout.find("platform beta:").expect(&stdout);
    assert!(alpha < beta, "{stdout}");
    assert!(stdout[alpha..beta].contains("/tests/only-x"), "{stdout}");
    assert!(!stdout[alpha..beta].contains("/tests/only-y"), "{stdout}");
    assert!(stdout[beta..].contains("/tests/only-y"), "{stdout}");
    assert_eq!(stdout.matches("results: ").count(), 1, "{stdout}");
    // One progress log: remotes named with their platform, statistics over both.
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(" on alpha/local:"), "{stderr}");
    assert!(stderr.contains(" on beta/local:"), "{stderr}");
    assert!(stderr.contains("run finished: 6/6 done"), "{stderr}");
    // Its manifest names the run file: `--resume` refuses it (one platform only, for now),
    // and `--rerun-failed-from` cannot be combined with a run file.
    let out = atex()
        .arg("run")
        .arg("--resume")
        .arg(&results)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("cannot be resumed"), "{stderr}");
    let out = atex()
        .arg("run")
        .arg(&tree)
        .arg("--run-file")
        .arg(&run_file)
        .arg("--rerun-failed-from")
        .arg(&results)
        .arg("--results")
        .arg(tmp.path().join("again"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(!tmp.path().join("again").exists());
}

#[test]
fn bad_run_files_are_precise_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tree");
    support::write_tree(&tree, TREE);
    let cases = [
        (
            "platforms:\n  - name: a\n    contxt: {distro: x}\n",
            "platforms[0].contxt: unknown key",
        ),
        (
            "platforms:\n  - name: a\n  - context: {distro: y}\n",
            "platforms[1].name: missing",
        ),
        (
            "platforms:\n  - name: a\n  - name: a\n",
            "platforms[1].name: duplicate platform name 'a'",
        ),
        (
            "platforms:\n  - name: a\n    provisioner: nonsense\n",
            "platforms[0].provisioner",
        ),
    ];
    for (i, (text, want)) in cases.iter().enumerate() {
        let run_file = tmp.path().join(format!("run{i}.yaml"));
        std::fs::write(&run_file, text).unwrap();
        let results = tmp.path().join(format!("results{i}"));
        let out = atex()
            .args(["-q", "run"])
            .arg(&tree)
            .arg("--run-file")
            .arg(&run_file)
            .arg("--results")
            .arg(&results)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{text}: {stderr}");
        let at = format!("{}: {want}", run_file.display());
        assert!(stderr.contains(&at), "{text}: want {at} in {stderr}");
        assert!(!results.join("results.jsonl").exists(), "{text}");
    }
    // The provisioner error says what is wrong with the spec.
    let stderr = String::from_utf8_lossy(
        &atex()
            .args(["-q", "run"])
            .arg(&tree)
            .arg("--run-file")
            .arg(tmp.path().join("run3.yaml"))
            .arg("--results")
            .arg(tmp.path().join("results-again"))
            .output()
            .unwrap()
            .stderr,
    )
    .into_owned();
    assert!(
        stderr.contains("unknown provisioner 'nonsense'"),
        "{stderr}"
    );
    // --run-file replaces the single-platform flags.
    let out = atex()
        .args(["-q", "run"])
        .arg(&tree)
        .arg("--run-file")
        .arg(tmp.path().join("run0.yaml"))
        .args(["--platform", "p", "--results"])
        .arg(tmp.path().join("results-conflict"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot be used with"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn sigint_stops_every_platform_and_leaves_no_process() {
    let marker = support::marker("cli-run-file");
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tree");
    let flags = tmp.path().join("flags");
    std::fs::create_dir(&flags).unwrap();
    support::write_tree(
        &tree,
        &format!(
            "/slow:\n    test: touch {}/started-$P; sleep 300 & sleep 300\n",
            flags.display()
        ),
    );
    let run_file = tmp.path().join("run.yaml");
    std::fs::write(
        &run_file,
        "platforms:\n  - name: alpha\n    env: {P: alpha}\n  - name: beta\n    env: {P: beta}\n",
    )
    .unwrap();
    let results = tmp.path().join("results");
    let mut child = atex()
        .args(["-q", "run"])
        .arg(&tree)
        .arg("--run-file")
        .arg(&run_file)
        .arg("--results")
        .arg(&results)
        .env("ATEX_TEST_MARKER", &marker)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    support::wait_until(Duration::from_secs(60), "both platforms' tests", || {
        flags.join("started-alpha").exists() && flags.join("started-beta").exists()
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
    let infra = |p: &str| {
        (
            p.to_string(),
            "infra".to_string(),
            "/tests/slow".to_string(),
        )
    };
    assert_eq!(rows(&results), [infra("alpha"), infra("beta")]);
}
