//! The FMF discovery options as the `atex` command line uses them: unsupported plan
//! steps refused or skipped by `atex run`, metadata values that look like options,
//! Python regexes on the command line.

#![cfg(feature = "cli")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Output};

fn atex() -> Command {
    Command::new(env!("CARGO_BIN_EXE_atex"))
}

fn write(root: &Path, rel: &str, content: &str) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, content).unwrap();
}

fn new_tree(root: &Path) {
    write(root, ".fmf/version", "1\n");
}

fn git(dir: &Path, args: &[&str]) {
    let out = Command::new("git")
        .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn run_refuses_unsupported_steps_unless_told_to_skip_them() {
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tree");
    new_tree(&tree);
    write(
        &tree,
        "plans/p.fmf",
        concat!(
            "discover:\n  how: fmf\n",
            "prepare:\n  - how: ansible\n    playbook: a.yml\n  - how: shell\n    script: echo prepared\n",
            "finish:\n  - how: feedback\n",
        ),
    );
    write(&tree, "tests/t.fmf", "test: echo hello\n");
    let out = atex()
        .arg("run")
        .arg(&tree)
        .args(["--plan", "/plans/p", "--results"])
        .arg(tmp.path().join("refused"))
        .output()
        .unwrap();
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    for needle in ["/plans/p", "prepare", "ansible", "finish", "feedback"] {
        assert!(stderr.contains(needle), "{needle} not in: {stderr}");
    }
    assert!(
        !tmp.path().join("refused/results.jsonl").exists(),
        "nothing ran"
    );

    let out = atex()
        .arg("run")
        .arg(&tree)
        .args([
            "--plan",
            "/plans/p",
            "--skip-unsupported-steps",
            "--results",
        ])
        .arg(tmp.path().join("skipped"))
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    let warnings: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("skipping plan step"))
        .collect();
    assert_eq!(warnings.len(), 2, "{stderr}");
    assert!(warnings.iter().any(|w| w.contains("ansible")), "{stderr}");
    assert!(warnings.iter().any(|w| w.contains("feedback")), "{stderr}");
}

#[test]
fn a_url_starting_with_a_dash_is_a_repository() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("-repo");
    new_tree(&repo);
    write(&repo, "remote.fmf", "test: echo remote\n");
    git(&repo, &["init", "-q"]);
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-q", "-m", "init"]);
    let tree = tmp.path().join("tree");
    new_tree(&tree);
    write(&tree, "plan.fmf", "discover:\n  how: fmf\n  url: -repo\n");
    let out = atex()
        .args(["fmf", "discover"])
        .arg(&tree)
        .args(["--plan", "/plan"])
        .env("ATEX_FMF_CACHE", tmp.path().join("cache"))
        .current_dir(tmp.path())
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stdout.contains("\"name\":\"/remote\""), "{stdout}");
}

#[test]
fn python_regexes_on_the_command_line() {
    let tmp = tempfile::tempdir().unwrap();
    new_tree(tmp.path());
    for n in ["keep", "drop", "kept"] {
        write(tmp.path(), &format!("tests/{n}.fmf"), "test: echo\n");
    }
    let out = atex()
        .args(["fmf", "discover"])
        .arg(tmp.path())
        .args(["--names", "^/tests/(?!drop)", "--exclude", "(?<=kep)t$"])
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let names: Vec<&str> = stdout
        .lines()
        .map(|l| {
            l.rsplit("\"name\":\"")
                .next()
                .unwrap()
                .split('"')
                .next()
                .unwrap()
        })
        .collect();
    assert_eq!(names, ["/tests/keep"], "{stdout}");
}

#[test]
fn library_path_option_allows_a_library_outside_the_tree() {
    let tmp = tempfile::tempdir().unwrap();
    let lib = tmp.path().join("libs-outside");
    new_tree(&lib);
    write(&lib, "extlib/main.fmf", "summary: a library\n");
    write(&lib, "extlib/lib.sh", "true\n");
    let tree = tmp.path().join("tree");
    new_tree(&tree);
    write(
        &tree,
        "t.fmf",
        &format!(
            "test: test -f libs/ext/extlib/lib.sh\nrequire:\n  - path: {}\n    nick: ext\n    name: /extlib\n",
            lib.display()
        ),
    );

    // Refused without the option, by `atex fmf discover` and `atex run`.
    let out = atex()
        .args(["fmf", "discover"])
        .arg(&tree)
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    for needle in [
        "/t",
        "ext/extlib",
        &lib.display().to_string(),
        "--library-path",
    ] {
        assert!(stderr.contains(needle), "{needle} not in: {stderr}");
    }
    let out = atex()
        .arg("run")
        .arg(&tree)
        .arg("--results")
        .arg(tmp.path().join("refused"))
        .output()
        .unwrap();
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("outside the tree"), "{stderr}");

    // Allowed with it: discovered, and the test finds the library copied next to it.
    let out = atex()
        .args(["fmf", "discover", "--library-path"])
        .arg(&lib)
        .arg(&tree)
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stdout.contains("\"name\":\"/t\""), "{stdout}");
    let out = atex()
        .arg("run")
        .arg(&tree)
        .arg("--library-path")
        .arg(&lib)
        .arg("--results")
        .arg(tmp.path().join("allowed"))
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    let results = std::fs::read_to_string(tmp.path().join("allowed/results.jsonl")).unwrap();
    assert!(results.contains("\"pass\""), "{results}");
}
