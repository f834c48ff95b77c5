//! The real BeakerLib for the tests: the unchanged upstream archive kept in
//! `tests/fixtures/third-party/beakerlib` (a copy of `../shared/third-party/beakerlib`; see
//! its README), found through `ATEX_BEAKERLIB_TARBALL` (exported by `scripts/run-tests.sh`)
//! or in the checkout.

#![allow(dead_code)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// Environment variable naming the BeakerLib tarball.
pub const TARBALL_VAR: &str = "ATEX_BEAKERLIB_TARBALL";

fn tarball_in(dir: &Path) -> Option<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("beakerlib-") && n.ends_with(".tar.gz"))
        })
        .collect();
    found.sort();
    found.pop()
}

/// The BeakerLib tarball; panics (naming where it looked) when there is none.
pub fn tarball() -> PathBuf {
    if let Some(path) = std::env::var_os(TARBALL_VAR) {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "{TARBALL_VAR}={} is not a file",
            path.display()
        );
        return path;
    }
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let candidates = [
        manifest.join("tests/fixtures/third-party/beakerlib"),
        manifest.join("../shared/third-party/beakerlib"),
    ];
    for dir in &candidates {
        if let Some(t) = tarball_in(dir) {
            return t;
        }
    }
    panic!(
        "no BeakerLib tarball: set {TARBALL_VAR} (scripts/run-tests.sh does) or put it in {candidates:?}"
    );
}

/// Unpacks BeakerLib's own example tests (`src/extradocs/examples/<name>/runtest.sh`)
/// into `dir`; returns the examples directory.
pub fn examples(dir: &Path) -> PathBuf {
    let out = Command::new("tar")
        .arg("-xzf")
        .arg(tarball())
        .arg("-C")
        .arg(dir)
        .arg("--wildcards")
        .arg("*/src/extradocs/examples/*")
        .output()
        .expect("tar");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let top = std::fs::read_dir(dir)
        .expect("read")
        .flatten()
        .find(|e| e.path().join("src/extradocs/examples").is_dir())
        .expect("examples in the tarball");
    top.path().join("src/extradocs/examples")
}

/// Whether `rpm -q PACKAGE` succeeds here (BeakerLib's examples assert RPMs).
pub fn rpm_installed(package: &str) -> bool {
    Command::new("rpm")
        .args(["-q", package])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
    if path.extension().is_some_and(|e| e == "sh") {
        std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
    }
}

const BL_HEAD: &str =
    "#!/bin/bash\n. /usr/share/beakerlib/beakerlib.sh || exit 1\nrlJournalStart\n";
const BL_TAIL: &str = "rlJournalEnd\n";

/// A tree mixing a shell test and BeakerLib tests: passing phases (one with a log worth
/// attaching), a failing phase, `rlFileSubmit`, `rlImport` of a library in the tree, and
/// BeakerLib's own examples `phases` and `simple`.
pub fn write_mixed_tree(root: &Path) {
    write(&root.join(".fmf/version"), "1\n");
    write(&root.join("shell/main.fmf"), "test: echo plain shell\n");
    for t in ["pass", "fail", "submit", "import"] {
        write(
            &root.join(format!("bl/{t}/main.fmf")),
            "framework: beakerlib\ntest: ./test.sh\n",
        );
    }
    std::fs::write(
        root.join("bl/import/main.fmf"),
        "framework: beakerlib\ntest: ./test.sh\nrequire:\n  - nick: mylib\n    name: /hello\n",
    )
    .unwrap();
    write(
        &root.join("hello/main.fmf"),
        "summary: a library in the tree\n",
    );
    write(
        &root.join("hello/lib.sh"),
        "#   library-prefix = hello\nhelloGreet() { echo \"hello from the library\"; }\nhelloLibraryLoaded() { return 0; }\n",
    );
    write(
        &root.join("bl/pass/test.sh"),
        &format!(
            "{BL_HEAD}rlPhaseStartSetup\n  rlRun true\nrlPhaseEnd\n\
             rlPhaseStartTest \"Noisy phase\"\n  rlLog \"$(printf 'first\\nsecond line')\"\n  rlAssertEquals one 1 1\nrlPhaseEnd\n{BL_TAIL}"
        ),
    );
    write(
        &root.join("bl/fail/test.sh"),
        &format!(
            "{BL_HEAD}rlPhaseStartSetup\n  rlRun true\nrlPhaseEnd\n\
             rlPhaseStartTest Broken\n  rlRun false 0 \"must fail\"\nrlPhaseEnd\n\
             rlPhaseStartTest Fine\n  rlAssertEquals x 1 1\nrlPhaseEnd\n{BL_TAIL}"
        ),
    );
    write(
        &root.join("bl/submit/test.sh"),
        &format!(
            "{BL_HEAD}rlPhaseStartTest Submit\n  rlRun \"echo submitted content > data.log\"\n  rlFileSubmit data.log\nrlPhaseEnd\n{BL_TAIL}"
        ),
    );
    write(
        &root.join("bl/import/test.sh"),
        &format!(
            "{BL_HEAD}rlPhaseStartSetup Import\n  rlRun \"rlImport mylib/hello\"\nrlPhaseEnd\n\
             rlPhaseStartTest Use\n  rlRun \"helloGreet | grep 'hello from the library'\"\nrlPhaseEnd\n{BL_TAIL}"
        ),
    );
    let tmp = tempfile::tempdir().unwrap();
    let examples = examples(tmp.path());
    for name in ["phases", "simple"] {
        let text = std::fs::read_to_string(examples.join(name).join("runtest.sh")).unwrap();
        write(&root.join(format!("examples/{name}/runtest.sh")), &text);
        write(
            &root.join(format!("examples/{name}/main.fmf")),
            "framework: beakerlib\ntest: ./runtest.sh\n",
        );
    }
}

/// The rows of `results.jsonl` in `results` (`[platform, status, test, subtest, files,
/// note]`).
pub fn rows(results: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(results.join("results.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// `(subtest, status, files)` of every row of `test`, in order (`-` for the test's own).
pub fn rows_of(rows: &[serde_json::Value], test: &str) -> Vec<(String, String, Vec<String>)> {
    rows.iter()
        .filter(|r| r[2] == test)
        .map(|r| {
            let files = r[4]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| f.as_str().unwrap().to_string())
                .collect();
            (
                r[3].as_str().unwrap_or("-").to_string(),
                r[1].as_str().unwrap().to_string(),
                files,
            )
        })
        .collect()
}

fn row(sub: &str, status: &str, files: &[&str]) -> (String, String, Vec<String>) {
    (
        sub.to_string(),
        status.to_string(),
        files.iter().map(|f| f.to_string()).collect(),
    )
}

/// Checks what a run of [`write_mixed_tree`] on `platform` left in `results`: one result
/// per phase, the uploaded files in place, and the test verdicts.
pub fn check_mixed_results(results: &Path, platform: &str) {
    let rows = rows(results);
    let all = format!("{rows:#?}");
    assert!(rows.iter().all(|r| r[0] == platform), "{all}");
    assert_eq!(
        rows_of(&rows, "/shell"),
        [row("-", "pass", &["output.txt"])],
        "{all}"
    );
    assert_eq!(
        rows_of(&rows, "/bl/fail"),
        [
            row("Setup", "pass", &[]),
            row("Broken", "fail", &[]),
            row("Fine", "pass", &[]),
            // The script exited 0; the failed phase fails the test.
            row("-", "fail", &["output.txt"]),
        ],
        "{all}"
    );
    assert_eq!(
        rows_of(&rows, "/bl/import"),
        [
            row("Import", "pass", &[]),
            row("Use", "pass", &[]),
            row("-", "pass", &["output.txt"]),
        ],
        "{all}"
    );
    assert_eq!(
        rows_of(&rows, "/bl/submit"),
        [
            row("Submit", "pass", &[]),
            row("-", "pass", &["output.txt", "data.log"]),
        ],
        "{all}"
    );
    let files = results.join("files").join(platform);
    assert_eq!(
        std::fs::read_to_string(files.join("bl/submit/data.log")).unwrap(),
        "submitted content\n"
    );
    // The noisy phase's journal is attached (`<its file name>.txt`); the others say
    // nothing beyond BeakerLib's `::` lines.
    let pass = rows_of(&rows, "/bl/pass");
    assert_eq!(pass.len(), 3, "{all}");
    assert_eq!(pass[0], row("Setup", "pass", &[]), "{all}");
    assert_eq!(
        (pass[1].0.as_str(), pass[1].1.as_str()),
        ("Noisy-phase", "pass")
    );
    assert_eq!(pass[1].2.len(), 1, "{all}");
    let log =
        std::fs::read_to_string(files.join("bl/pass/Noisy-phase").join(&pass[1].2[0])).unwrap();
    assert!(
        log.contains("first\nsecond line\n") && log.contains("one"),
        "{log}"
    );
    assert!(pass[1].2[0].starts_with("tmp.") && pass[1].2[0].ends_with(".txt"));
    assert_eq!(pass[2], row("-", "pass", &["output.txt"]), "{all}");
    let output = std::fs::read_to_string(files.join("bl/pass/output.txt")).unwrap();
    assert!(output.contains("OVERALL RESULT: PASS"), "{output}");
    // BeakerLib's own examples assert RPMs: without rpm those assertions fail, and the
    // phase says so (a setup phase warns).
    let (coreutils, setup) = (rpm_installed("coreutils"), rpm_installed("setup"));
    let phases_setup = if coreutils { "pass" } else { "warn" };
    assert_eq!(
        rows_of(&rows, "/examples/phases"),
        [
            row("Setup", phases_setup, &[]),
            row("Test", "pass", &[]),
            row("Cleanup", "pass", &[]),
            row(
                "-",
                if coreutils { "pass" } else { "fail" },
                &["output.txt"]
            ),
        ],
        "{all}"
    );
    let simple = if setup { "pass" } else { "fail" };
    assert_eq!(
        rows_of(&rows, "/examples/simple"),
        [row("Test", simple, &[]), row("-", simple, &["output.txt"])],
        "{all}"
    );
}
