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

/// A tree for upstream's `atex fmf [OPTIONS] requires|discover|show`: tests with package
/// requirements (scalar, list, duplicates, a non-package mapping, an in-tree library with
/// packages of its own, an adjust rule), a plan with `prepare: how: install`.
fn upstream_tree(root: &Path) {
    new_tree(root);
    write(
        root,
        "tests/main.fmf",
        concat!(
            "/one:\n",
            "  test: echo one\n",
            "  require: [vim, make]\n",
            "  recommend: zsh\n",
            "  tag: fast\n",
            "/two:\n",
            "  test: echo two\n",
            "  require:\n",
            "    - make\n",
            "    - type: file\n",
            "      pattern: /etc\n",
            "    - nick: mylib\n",
            "      name: /lib/mylib\n",
            "  recommend: [zsh, bash-completion]\n",
            "  adjust:\n",
            "    - when: distro == fedora\n",
            "      require+: [fedora-only]\n",
            "/three:\n",
            "  test: echo three\n",
            "  require: third\n",
            "  tag: slow\n",
        ),
    );
    write(
        root,
        "lib/mylib/main.fmf",
        "summary: a library\nrequire: [lib-needs-this]\nrecommend: lib-would-like\n",
    );
    write(root, "lib/mylib/lib.sh", "true\n");
    write(
        root,
        "plans/p.fmf",
        concat!(
            "discover:\n  how: fmf\n  test: ^/tests/(one|two)$\n",
            "prepare:\n",
            "  - how: install\n    package: [plan-pkg, make]\n",
            "  - how: shell\n    script: echo not-a-package\n",
            "  - how: install\n    package: another-plan-pkg\n",
        ),
    );
}

/// Runs `atex fmf ARGS` in `dir`: exit code, stdout, stderr.
fn fmf_in(dir: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    let out = atex()
        .arg("fmf")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    (out.status.code(), stdout, stderr)
}

#[test]
fn upstream_form_requires_discover_show() {
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tree");
    upstream_tree(&tree);
    let root = tree.to_str().unwrap();
    let ok = |args: &[&str]| {
        let (code, stdout, stderr) = fmf_in(tmp.path(), args);
        assert_eq!(code, Some(0), "{args:?}: {stderr}");
        stdout
    };

    // Every test of the tree (default plan): tests' require + recommend strings and the
    // packages of the library /two uses, sorted and unique; not the library itself, not
    // the `type: file` mapping.
    assert_eq!(
        ok(&["--root", root, "requires"]),
        "bash-completion\nlib-needs-this\nlib-would-like\nmake\nthird\nvim\nzsh\n"
    );
    // The plan adds its install packages (not its shell script) and selects two tests;
    // -c adjusts; `req` is an alias.
    assert_eq!(
        ok(&[
            "--root",
            root,
            "--plan",
            "/plans/p",
            "-c",
            "distro=fedora",
            "req"
        ]),
        concat!(
            "another-plan-pkg\nbash-completion\nfedora-only\nlib-needs-this\n",
            "lib-would-like\nmake\nplan-pkg\nvim\nzsh\n"
        )
    );
    // Selection: -t, --exclude, --condition, --filter narrow the tests.
    assert_eq!(
        ok(&[
            "--root",
            root,
            "-t",
            "/tests/th",
            "--test",
            "one$",
            "requires"
        ]),
        "make\nthird\nvim\nzsh\n"
    );
    assert_eq!(
        ok(&[
            "--root",
            root,
            "--exclude",
            "o$",
            "--filter",
            "tag: fast",
            "requires"
        ]),
        "make\nvim\nzsh\n"
    );
    // --no-libraries: the library mapping is not resolved, so its packages are not in.
    assert_eq!(
        ok(&["--root", root, "-t", "two", "requires", "--no-libraries"]),
        "bash-completion\nmake\nzsh\n"
    );

    // discover: one name per line, in discovery order (fmf sorts siblings by name); `di` is an alias; --root defaults
    // to the current directory.
    assert_eq!(
        ok(&["--root", root, "discover"]),
        "/tests/one\n/tests/three\n/tests/two\n"
    );
    assert_eq!(
        ok(&["--root", root, "--plan", "/plans/p", "di"]),
        "/tests/one\n/tests/two\n"
    );
    assert_eq!(
        ok(&["--root", root, "--condition", "'slow' in tag", "discover"]),
        "/tests/three\n"
    );
    let (code, stdout, stderr) = fmf_in(&tree.join("tests"), &["--exclude", "^/tests/t", "di"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(stdout, "/tests/one\n");

    // show: each test's name, then its metadata one key per line.
    assert_eq!(
        ok(&["--root", root, "-t", "one|three", "show"]),
        concat!(
            "/tests/one\n",
            "  test: \"echo one\"\n",
            "  require: [\"vim\",\"make\"]\n",
            "  recommend: \"zsh\"\n",
            "  tag: \"fast\"\n",
            "/tests/three\n",
            "  test: \"echo three\"\n",
            "  require: \"third\"\n",
            "  tag: \"slow\"\n",
        )
    );

    // The forms with a TREE argument still work as before.
    let json = ok(&["discover", root, "--names", "three"]);
    assert_eq!(json.lines().count(), 1, "{json}");
    assert!(json.starts_with("{\"data\":{"), "{json}");
    assert!(json.contains("\"name\":\"/tests/three\""), "{json}");
    let shown = ok(&["show", root, "/tests/three", "--context", "distro=fedora"]);
    assert!(
        shown.starts_with("/tests/three\n  test: \"echo three\"\n"),
        "{shown}"
    );
    assert!(shown.contains("(sources: "), "{shown}");
    let dumped = ok(&["dump", root, "--names", "three"]);
    assert!(dumped.contains("/tests/three"), "{dumped}");
}

#[test]
fn upstream_form_bad_input_exits_2_with_a_precise_error() {
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tree");
    upstream_tree(&tree);
    let root = tree.to_str().unwrap();
    let missing = tmp.path().join("none");
    let missing = missing.to_str().unwrap();
    let cases: &[(&[&str], &[&str])] = &[
        (
            &["--root", root, "--plan", "/plans/nope", "requires"],
            &["plan '/plans/nope' not found"],
        ),
        (
            &["--root", root, "-t", "one(", "discover"],
            &["invalid regular expression 'one('"],
        ),
        (
            &["--root", root, "--exclude", "[z-a]", "requires"],
            &["invalid regular expression '[z-a]'"],
        ),
        (
            &["--root", root, "-c", "distro", "show"],
            &["-c 'distro' is not KEY=VALUE"],
        ),
        (
            &["--root", root, "-c", "=fedora", "requires"],
            &["-c '=fedora' is not KEY=VALUE"],
        ),
        (
            &["--root", root, "--condition", "tag ==", "discover"],
            &["invalid filter or condition 'tag =='"],
        ),
        (
            &["--root", root, "--filter", "tag: [", "discover"],
            &["invalid regular expression '^[$'"],
        ),
        (&["--root", missing, "requires"], &["none"]),
        (
            &["--root", root, "discover", root],
            &["--root before 'discover'", "no TREE argument"],
        ),
        (&["-t", "one", "show", root], &["--test before 'show'"]),
        (&["discover", "--names", "one"], &["need a TREE argument"]),
    ];
    for (args, needles) in cases {
        let (code, stdout, stderr) = fmf_in(tmp.path(), args);
        assert_eq!(code, Some(2), "{args:?}: {stdout}\n{stderr}");
        assert!(stdout.is_empty(), "{args:?}: {stdout}");
        assert!(stderr.starts_with("error: "), "{args:?}: {stderr}");
        for needle in *needles {
            assert!(
                stderr.contains(needle),
                "{args:?}: {needle} not in: {stderr}"
            );
        }
    }
}
