//! BeakerLib tests and tmt's helper commands on the local system, with the real BeakerLib
//! (installed from its upstream archive by the executor itself, as `--beakerlib-from`
//! does): a tree mixing shell and BeakerLib tests through `atex run`, verdicts from
//! phases, concurrent phase reports, tmt helpers in plain shell tests (same lines as the
//! control protocol written by hand, `tmt-reboot`, `tmt-abort`), and a framework the
//! executor has no hook for. Needs root, make, patch and perl (BeakerLib's `make install`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use atex::connection::LocalConnection;
use atex::executor::beakerlib::BeakerlibFramework;
use atex::executor::fmf::{FRAMEWORK_REFUSED_EXIT, FmfExecutor, FmfOptions, FmfPlan, FmfTest};
use atex::executor::{Executor, ExecutorError, TestOutcome};
use atex::scope::{Scope, ShutdownOptions};
use support::beakerlib::{check_mixed_results, tarball, write_mixed_tree};

fn read(path: impl AsRef<Path>) -> String {
    std::fs::read_to_string(path.as_ref())
        .unwrap_or_else(|e| panic!("{}: {e}", path.as_ref().display()))
}

/// A BeakerLib test (`framework: beakerlib`) running `script`.
fn beakerlib_test(name: &str, script: &str) -> FmfTest {
    let mut t = FmfTest::new(name, script);
    t.metadata = serde_json::json!({"framework": "beakerlib"});
    t
}

/// Runs `tests` one by one on the local system; BeakerLib from the archive where missing.
async fn run_local(
    tests: Vec<FmfTest>,
) -> Vec<(
    String,
    Result<TestOutcome, ExecutorError>,
    tempfile::TempDir,
)> {
    let tree = tempfile::tempdir().unwrap();
    let names: Vec<String> = tests.iter().map(|t| t.name.clone()).collect();
    let scope = Scope::root("beakerlib-local");
    let mut exec = FmfExecutor::new(
        Arc::new(LocalConnection::new()),
        tree.path(),
        tests,
        FmfPlan::default(),
    )
    .with_options(FmfOptions::default())
    .with_framework(Arc::new(BeakerlibFramework::new().from_path(tarball())));
    exec.start(&scope).await.unwrap();
    let mut out = Vec::new();
    for name in names {
        let artifacts = tempfile::tempdir().unwrap();
        let res = exec.run_test(&name, artifacts.path(), &scope).await;
        out.push((name, res, artifacts));
    }
    exec.stop(&scope).await.unwrap();
    let report = scope.shutdown(ShutdownOptions::default()).await;
    assert!(report.is_clean(), "{report:?}");
    out
}

#[test]
fn a_mixed_tree_runs_locally_with_one_result_per_phase() {
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tree");
    write_mixed_tree(&tree);
    let results = tmp.path().join("results");
    let out = Command::new(env!("CARGO_BIN_EXE_atex"))
        .args(["-q", "run"])
        .arg(&tree)
        .arg("--results")
        .arg(&results)
        .arg("--beakerlib-from")
        .arg(tarball())
        .output()
        .unwrap();
    // Some tests fail (a failing phase, RPM assertions without rpm): exit 1.
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    check_mixed_results(&results, "local");
}

/// BeakerLib phases reporting at the same time (background jobs) never interleave their
/// messages on the control channel: every result arrives with its whole log.
#[tokio::test]
async fn concurrent_phase_reports_are_serialised() {
    let script = r#"head -c 200000 /dev/zero | tr '\0' 'x' > big.log
for i in $(seq 1 24); do atex-report-result "phase$i" PASS "$PWD/big.log" & done
wait
"#;
    let mut runs = run_local(vec![beakerlib_test("/concurrent", script)]).await;
    let (_, res, artifacts) = runs.remove(0);
    assert_eq!(res.unwrap().exit_code, 0);
    let results = read(artifacts.path().join("results"));
    let lines: Vec<&str> = results.lines().collect();
    assert_eq!(lines.len(), 25, "{results}");
    for i in 1..=24 {
        let line = format!(
            "{{\"status\": \"pass\", \"name\": \"phase{i}\", \"files\": [\"big.log.txt\"]}}"
        );
        assert!(lines.contains(&line.as_str()), "{line} not in {results}");
        let log =
            std::fs::read(artifacts.path().join(format!("files/phase{i}/big.log.txt"))).unwrap();
        assert_eq!(log.len(), 200_000, "phase{i}");
        assert!(log.iter().all(|b| *b == b'x'), "phase{i}");
    }
}

/// A BeakerLib test's environment, and its verdict from its phases.
#[tokio::test]
async fn beakerlib_environment_and_verdict_from_phases() {
    let env_script = r#"test "$BEAKERLIB_JOURNAL" = 0
test "$BEAKERLIB_DIR" = "${TMT_TREE%/tests}/beakerlib" && test -d "$BEAKERLIB_DIR"
test "$(readlink "$BEAKERLIB_DIR/metadata.yaml")" = ../test/metadata.yaml
grep -q beakerlib "$BEAKERLIB_DIR/metadata.yaml"
[[ $TESTID =~ ^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$ ]]
test "${BEAKERLIB_COMMAND_REPORT_RESULT##*/}" = atex-report-result
test "${BEAKERLIB_COMMAND_SUBMIT_LOG##*/}" = atex-file-submit
echo "$TESTID" > "$BEAKERLIB_DIR/../testid.$RANDOM"
"#;
    let mut with_user_env = beakerlib_test("/env", env_script);
    // The framework's variables override the test's own.
    with_user_env.environment = vec![("BEAKERLIB_JOURNAL".into(), "1".into())];
    let failing_phase = beakerlib_test(
        "/phases",
        ". /usr/share/beakerlib/beakerlib.sh\nrlJournalStart\nrlPhaseStartTest Bad\nrlRun false\nrlPhaseEnd\nrlJournalEnd\n",
    );
    let own_result = beakerlib_test(
        "/own",
        "atex-report-result sub FAIL\nprintf 'result 18\\n{\"status\": \"pass\"}' >&$ATEX_TEST_CONTROL\n",
    );
    let runs = run_local(vec![with_user_env, failing_phase, own_result]).await;
    let results: Vec<String> = runs
        .iter()
        .map(|(_, _, a)| read(a.path().join("results")))
        .collect();
    let codes: Vec<i32> = runs
        .into_iter()
        .map(|(name, res, _)| res.unwrap_or_else(|e| panic!("{name}: {e:?}")).exit_code)
        .collect();
    assert_eq!(codes, [0, 1, 0], "{results:?}");
    assert_eq!(
        results[0],
        "{\"status\": \"pass\", \"files\": [\"output.txt\"]}\n"
    );
    assert_eq!(
        results[1],
        "{\"status\": \"fail\", \"name\": \"Bad\"}\n{\"status\": \"fail\", \"files\": [\"output.txt\"]}\n"
    );
    // A test that wrote its own result keeps it (no fallback; the phase still fails it).
    assert_eq!(
        results[2],
        "{\"status\": \"fail\", \"name\": \"sub\"}\n{\"status\": \"pass\"}\n"
    );
}

/// A plain shell test using tmt's helpers sends the same lines as one writing the control
/// protocol by hand.
#[tokio::test]
async fn tmt_helpers_send_what_a_test_writes_by_hand() {
    let setup = "printf 'line one\\nline two\\n' > sub.log\nprintf 'binary\\0data' > data.bin\n";
    let helpers = format!(
        "{setup}tmt-report-result -o sub.log -t 'a \"note\"' /sub/one FAIL\n\
         rhts-report-result second PASS data.bin\n\
         tmt-report-result third SKIP 42\n\
         tmt-file-submit -l data.bin\n\
         rhts-submit-log -l sub.log\n"
    );
    let by_hand = format!(
        "{setup}export LC_ALL=C\n\
         send() {{ printf 'result %d\\n%s' \"${{#1}}\" \"$1\" >&$ATEX_TEST_CONTROL; shift; cat \"$@\" >&$ATEX_TEST_CONTROL; }}\n\
         send '{{\"status\": \"fail\", \"name\": \"/sub/one\", \"note\": \"a \\\"note\\\"\", \"files\": [{{\"name\": \"sub.log\", \"length\": 18}}]}}' sub.log\n\
         send '{{\"status\": \"pass\", \"name\": \"second\", \"files\": [{{\"name\": \"data.bin\", \"length\": 11}}]}}' data.bin\n\
         send '{{\"status\": \"skip\", \"name\": \"third\"}}' /dev/null\n\
         send '{{\"partial\": true, \"files\": [{{\"name\": \"data.bin\", \"length\": 11}}]}}' data.bin\n\
         send '{{\"partial\": true, \"files\": [{{\"name\": \"sub.log\", \"length\": 18}}]}}' sub.log\n"
    );
    let runs = run_local(vec![
        FmfTest::new("/helpers", helpers),
        FmfTest::new("/by-hand", by_hand),
    ])
    .await;
    let tree = |dir: &Path| -> Vec<(String, Vec<u8>)> {
        let mut files = Vec::new();
        let mut stack = vec![dir.join("files")];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap().flatten() {
                if e.path().is_dir() {
                    stack.push(e.path());
                } else {
                    let rel = e.path().strip_prefix(dir).unwrap().display().to_string();
                    files.push((rel, std::fs::read(e.path()).unwrap()));
                }
            }
        }
        files.sort();
        files
    };
    let mut seen = Vec::new();
    for (name, res, artifacts) in &runs {
        assert_eq!(res.as_ref().unwrap().exit_code, 0, "{name}");
        seen.push((
            read(artifacts.path().join("results")),
            tree(artifacts.path()),
        ));
    }
    assert_eq!(seen[0], seen[1]);
    assert_eq!(
        seen[0].0,
        "{\"status\": \"fail\", \"name\": \"/sub/one\", \"note\": \"a \\\"note\\\"\", \"files\": [\"sub.log\"]}\n\
         {\"status\": \"pass\", \"name\": \"second\", \"files\": [\"data.bin\"]}\n\
         {\"status\": \"skip\", \"name\": \"third\"}\n\
         {\"files\": [\"output.txt\", \"data.bin\", \"sub.log\"], \"status\": \"pass\"}\n"
    );
    let files: Vec<&str> = seen[0].1.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        files,
        [
            "files/data.bin",
            "files/output.txt",
            "files/second/data.bin",
            "files/sub.log",
            "files/sub/one/sub.log"
        ]
    );
}

/// `tmt-reboot` in a plain shell test: `disconnect`, the channel closes, the "reboot"
/// (here a custom command killing the test's process group, which it runs in, as a
/// power-off would) restarts the test with `TMT_REBOOT_COUNT=1`.
#[tokio::test]
async fn tmt_reboot_restarts_a_plain_test() {
    let mut test = FmfTest::new(
        "/reboot",
        r#"echo "boot $TMT_REBOOT_COUNT"
if [ "$TMT_REBOOT_COUNT" = 0 ]; then
    tmt-reboot -t 30 -c 'kill -KILL 0'
    echo "tmt-reboot returned"
    exit 1
fi
test "$TMT_REBOOT_COUNT" = 1 && test "$TMT_TEST_RESTART_COUNT" = 1
"#,
    );
    test.duration = Some("1m".into());
    let mut runs = run_local(vec![test]).await;
    let (_, res, artifacts) = runs.remove(0);
    assert_eq!(res.unwrap().exit_code, 0);
    assert_eq!(
        read(artifacts.path().join("results")),
        "{\"status\": \"pass\", \"files\": [\"output.txt\"]}\n"
    );
    assert_eq!(
        read(artifacts.path().join("files/output.txt")),
        "boot 0\nboot 1\n"
    );
}

/// `tmt-abort` ends the test at once with an `error` result.
#[tokio::test]
async fn tmt_abort_is_an_error_result() {
    let test = FmfTest::new("/abort", "echo before\ntmt-abort\necho after\n");
    let mut runs = run_local(vec![test]).await;
    let (_, res, artifacts) = runs.remove(0);
    assert_eq!(res.unwrap().exit_code, 137);
    assert_eq!(
        read(artifacts.path().join("results")),
        "{\"status\": \"error\", \"note\": \"aborted by tmt-abort\", \"files\": [\"output.txt\"]}\n"
    );
    assert_eq!(read(artifacts.path().join("files/output.txt")), "before\n");
}

/// Helpers refuse what they cannot honour, and fail outside atex.
#[tokio::test]
async fn helpers_refuse_what_they_cannot_do() {
    let script = r#"out=$(tmt-reboot -e 2>&1) && exit 10
[[ $out == *"-e (EFI boot order) is not supported"* ]] || exit 11
out=$(tmt-file-submit -l /nonexistent 2>&1) && exit 12
[[ $out == *"'/nonexistent' is not a file"* ]] || exit 13
out=$(ATEX_TEST_CONTROL= tmt-report-result x PASS 2>&1) && exit 14
[[ $out == *"not running under atex"* ]] || exit 15
out=$(tmt-report-result --bogus x PASS 2>&1) && exit 16
[[ $out == *"unknown option '--bogus'"* ]] || exit 17
exit 0
"#;
    let mut runs = run_local(vec![FmfTest::new("/refuse", script)]).await;
    let (_, res, artifacts) = runs.remove(0);
    assert_eq!(
        res.unwrap().exit_code,
        0,
        "{}",
        read(artifacts.path().join("files/output.txt"))
    );
}

/// A framework the executor has no hook for is refused (an `infra` setup failure naming
/// it), never run as a shell test.
#[tokio::test]
async fn an_unknown_framework_is_refused() {
    let tree = tempfile::tempdir().unwrap();
    let scope = Scope::root("unknown-framework");
    let flag = tree.path().join("ran");
    let mut bl = FmfTest::new("/bl", format!("touch {}", flag.display()));
    bl.metadata = serde_json::json!({"framework": "beakerlib"});
    let mut odd = FmfTest::new("/odd", "true");
    odd.metadata = serde_json::json!({"framework": 3});
    let mut exec = FmfExecutor::new(
        Arc::new(LocalConnection::new()),
        tree.path(),
        [bl, odd, FmfTest::new("/shell", "true")],
        FmfPlan::default(),
    )
    .with_options(FmfOptions::default());
    exec.start(&scope).await.unwrap();
    let artifacts = tempfile::tempdir().unwrap();
    // Not run, but the system is fine: no error (which would retire it).
    let refused = exec.run_test("/bl", artifacts.path(), &scope).await;
    assert_eq!(refused.unwrap().exit_code, FRAMEWORK_REFUSED_EXIT);
    assert_eq!(
        read(artifacts.path().join("results")),
        "{\"status\": \"infra\", \"note\": \"TestSetupError(framework 'beakerlib' is not supported here (known: shell))\"}\n"
    );
    assert!(!flag.exists());
    let artifacts = tempfile::tempdir().unwrap();
    let refused = exec.run_test("/odd", artifacts.path(), &scope).await;
    assert_eq!(refused.unwrap().exit_code, FRAMEWORK_REFUSED_EXIT);
    assert!(
        read(artifacts.path().join("results")).contains("'framework' must be a string, got: 3")
    );
    let artifacts = tempfile::tempdir().unwrap();
    let ok = exec.run_test("/shell", artifacts.path(), &scope).await;
    assert_eq!(ok.unwrap().exit_code, 0);
    exec.stop(&scope).await.unwrap();
}

/// The FMF executor with the BeakerLib hook passes the executor conformance suite on
/// BeakerLib tests (a failing phase is the failing test: exit 1 although the script
/// exited 0).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beakerlib_executor_conforms() {
    use atex::testing::conformance::executor::{self, ExecutorTarget};
    let scope = Scope::root("t");
    let tree = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let flag = work.path().join("started");
    let bl = |body: &str| {
        format!(". /usr/share/beakerlib/beakerlib.sh\nrlJournalStart\n{body}rlJournalEnd\n")
    };
    let tests = vec![
        beakerlib_test("/pass", &bl("rlPhaseStartTest\nrlRun true\nrlPhaseEnd\n")),
        beakerlib_test(
            "/fail",
            &bl("rlPhaseStartTest Bad\nrlRun false\nrlPhaseEnd\n"),
        ),
        beakerlib_test("/hang", &format!("touch '{}'; sleep 1000", flag.display())),
    ];
    let (tree_path, work_base) = (tree.path().to_path_buf(), work.path().display().to_string());
    let target = ExecutorTarget::new(
        move || {
            Box::new(
                FmfExecutor::new(
                    Arc::new(LocalConnection::new()),
                    &tree_path,
                    tests.clone(),
                    FmfPlan::default(),
                )
                .with_options(FmfOptions {
                    work_base: Some(work_base.clone()),
                    ..FmfOptions::default()
                })
                .with_framework(Arc::new(BeakerlibFramework::new().from_path(tarball()))),
            ) as Box<dyn Executor>
        },
        "/pass",
        ("/fail", 1),
        "/hang",
        &scope,
    )
    .hanging_started({
        let flag = flag.clone();
        move || std::future::ready(flag.exists())
    });
    executor::all(&target).await.assert_passed();
}

/// `--beakerlib-from` naming nothing is a usage error before anything runs.
#[test]
fn beakerlib_from_must_exist() {
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tree");
    write_mixed_tree(&tree);
    let out = Command::new(env!("CARGO_BIN_EXE_atex"))
        .args(["-q", "run"])
        .arg(&tree)
        .arg("--results")
        .arg(tmp.path().join("results"))
        .arg("--beakerlib-from")
        .arg(tmp.path().join("nothing-here.tar.gz"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--beakerlib-from '")
            && stderr.contains("nothing-here.tar.gz' does not exist"),
        "{stderr}"
    );
    assert!(!tmp.path().join("results/results.jsonl").exists());
}
