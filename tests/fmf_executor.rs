//! FmfExecutor against a real LocalConnection with real bash test scripts.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use atex::connection::LocalConnection;
use atex::executor::fmf::{FmfExecutor, FmfOptions, FmfPlan, FmfTest, PlanStep};
use atex::executor::{Executor, ExecutorError};
use atex::scope::Scope;

/// `report JSON` helper available to test scripts.
const REPORT: &str = "export LC_ALL=C\nreport() { printf 'result %d\\n%s' \"${#1}\" \"$1\" >&$ATEX_TEST_CONTROL; }\n";

struct Env {
    _tree: tempfile::TempDir,
    base: tempfile::TempDir,
    tree_path: PathBuf,
}

impl Env {
    fn new() -> Self {
        let tree = tempfile::tempdir().expect("tree");
        std::fs::create_dir_all(tree.path().join("sub/dir")).expect("mkdir");
        std::fs::write(tree.path().join("sub/dir/data.txt"), b"tree data\n").expect("write");
        std::fs::write(tree.path().join("root.txt"), b"root file\n").expect("write");
        Self {
            tree_path: tree.path().to_path_buf(),
            _tree: tree,
            base: tempfile::tempdir().expect("base"),
        }
    }

    fn options(&self) -> FmfOptions {
        FmfOptions {
            work_base: Some(self.base.path().display().to_string()),
            ..FmfOptions::default()
        }
    }

    /// An executor on the local connection, which starts tests directly (no wrapper).
    fn executor(&self, tests: Vec<FmfTest>, plan: FmfPlan) -> FmfExecutor {
        FmfExecutor::new(
            Arc::new(LocalConnection::new()),
            &self.tree_path,
            tests,
            plan,
        )
        .with_options(self.options())
    }

    /// An executor that starts every test through the wrapper, as on a remote system.
    fn wrapped_executor(&self, tests: Vec<FmfTest>, plan: FmfPlan) -> FmfExecutor {
        self.executor(tests, plan).with_options(FmfOptions {
            always_wrap: true,
            ..self.options()
        })
    }
}

fn test(name: &str, script: &str) -> FmfTest {
    FmfTest::new(name, format!("{REPORT}{script}"))
}

fn read(path: impl AsRef<Path>) -> String {
    String::from_utf8_lossy(&std::fs::read(path.as_ref()).expect("read")).into_owned()
}

async fn run(
    exec: &mut FmfExecutor,
    name: &str,
    scope: &Scope,
) -> (tempfile::TempDir, Result<i32, ExecutorError>) {
    let artifacts = tempfile::tempdir().expect("artifacts");
    let res = exec
        .run_test(name, artifacts.path(), scope)
        .await
        .map(|o| o.exit_code);
    (artifacts, res)
}

/// Live (non-zombie) processes whose command line contains `needle`.
fn live_processes(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("proc").flatten() {
        let path = entry.path();
        let Ok(cmdline) = std::fs::read(path.join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if !cmdline.contains(needle) {
            continue;
        }
        let stat = std::fs::read_to_string(path.join("stat")).unwrap_or_default();
        let state = stat
            .rsplit(')')
            .next()
            .and_then(|s| s.split_whitespace().next());
        if state != Some("Z") {
            found.push(cmdline);
        }
    }
    found
}

/// Waits (bounded) until no live process matches `needle`; init may reap late.
async fn assert_no_process(needle: &str) {
    for _ in 0..250 {
        if live_processes(needle).is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let ps = std::process::Command::new("ps")
        .args(["-eo", "pid,ppid,pgid,sid,stat,args"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    panic!("processes left behind: {:?}\n{ps}", live_processes(needle));
}

#[tokio::test]
async fn results_files_env_cwd_and_output() {
    let env = Env::new();
    let mut t = test(
        "/sub/test",
        r#"echo "cwd=$PWD"
cat data.txt
echo "name=$TMT_TEST_NAME tree=${TMT_TREE##*/} reboot=$TMT_REBOOT_COUNT restart=$TMT_TEST_RESTART_COUNT"
echo "plan=$PLAN_VAR test=$TEST_VAR exec=$EXEC_VAR"
[ -f "$TMT_TEST_METADATA" ] && grep -q '"custom": "value"' "$TMT_TEST_METADATA" && echo metadata-ok
printf 'file-data' > /tmp/atex-ignored-$$ ; rm -f /tmp/atex-ignored-$$
report '{"name": "sub/res", "status": "pass", "files": [{"name": "log", "length": 5}]}'
printf 'hello' >&$ATEX_TEST_CONTROL
echo "to stderr" >&2
printf '\x00\x01\x02\x03'
exit 0"#,
    );
    t.source_dir = "sub/dir".into();
    t.environment = vec![
        ("TEST_VAR".into(), "t v".into()),
        ("PLAN_VAR".into(), "overridden".into()),
    ];
    t.metadata = serde_json::json!({"custom": "value"});
    let plan = FmfPlan {
        environment: vec![("PLAN_VAR".into(), "foo bar".into())],
        ..FmfPlan::default()
    };
    let mut exec = env.executor(vec![t], plan).with_env("EXEC_VAR", "e");
    let scope = Scope::root("t");
    exec.start(&scope).await.expect("start");
    let work = exec.work_dir().expect("work dir").to_owned();
    let (art, res) = run(&mut exec, "/sub/test", &scope).await;
    assert_eq!(res.expect("run"), 0);
    assert_eq!(
        read(art.path().join("results")),
        "{\"name\": \"sub/res\", \"status\": \"pass\", \"files\": [\"log\"]}\n{\"status\": \"pass\", \"files\": [\"output.txt\"]}\n"
    );
    assert_eq!(read(art.path().join("files/sub/res/log")), "hello");
    let out = std::fs::read(art.path().join("files/output.txt")).expect("output");
    let text = String::from_utf8_lossy(&out);
    assert!(
        text.contains(&format!("cwd={work}/tests/sub/dir\n")),
        "{text}"
    );
    assert!(text.contains("tree data\n"), "{text}");
    assert!(
        text.contains("name=/sub/test tree=tests reboot=0 restart=0\n"),
        "{text}"
    );
    assert!(text.contains("plan=overridden test=t v exec=e\n"), "{text}");
    assert!(text.contains("metadata-ok\n"), "{text}");
    assert!(text.contains("to stderr\n"), "{text}");
    assert!(
        out.ends_with(b"\x00\x01\x02\x03"),
        "binary output kept byte-exact"
    );
    assert!(!art.path().join("testout.temp").exists());
    exec.stop(&scope).await.expect("stop");
    assert!(!Path::new(&work).exists(), "work dir removed");
}

#[tokio::test]
async fn exit_code_without_report_and_unknown_test() {
    let env = Env::new();
    let mut exec = env.executor(
        vec![test("/fail", "echo oops >&2; exit 3")],
        FmfPlan::default(),
    );
    let scope = Scope::root("t");
    exec.start(&scope).await.expect("start");
    let (art, res) = run(&mut exec, "/fail", &scope).await;
    assert_eq!(res.expect("run"), 3);
    assert_eq!(
        read(art.path().join("results")),
        "{\"status\": \"fail\", \"files\": [\"output.txt\"]}\n"
    );
    assert_eq!(read(art.path().join("files/output.txt")), "oops\n");
    let (_art, res) = run(&mut exec, "/nope", &scope).await;
    assert!(matches!(res, Err(ExecutorError::UnknownTest(_))), "{res:?}");
    exec.stop(&scope).await.expect("stop");
}

#[tokio::test]
async fn timeout_kills_the_whole_tree_and_records_infra() {
    let env = Env::new();
    let mut t = test(
        "/slow",
        "report '{\"status\": \"pass\"}'\nsleep 31.4159 &\nsetsid sleep 31.4159 </dev/null >/dev/null 2>&1 & disown\ntrap '' HUP\necho started\nsleep 31.4159\n",
    );
    t.duration = Some("1".into());
    let mut exec = env.executor(vec![t], FmfPlan::default());
    let scope = Scope::root("t");
    exec.start(&scope).await.expect("start");
    let (art, res) = run(&mut exec, "/slow", &scope).await;
    match res {
        Err(ExecutorError::Aborted { reason, .. }) => {
            assert_eq!(reason.to_string(), "test duration timeout reached")
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(
        read(art.path().join("results")),
        "{\"status\": \"pass\"}\n{\"status\": \"infra\", \"note\": \"TestAbortedError(test duration timeout reached)\"}\n"
    );
    // The test ignored SIGHUP: its group was SIGKILLed. The setsid daemon escaped the group
    // (documented limitation); kill it ourselves by pid.
    for entry in std::fs::read_dir("/proc").expect("proc").flatten() {
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        if cmdline == b"sleep\x0031.4159\x00" {
            let sid_leader = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
            let fields: Vec<&str> = sid_leader
                .rsplit(')')
                .next()
                .unwrap_or("")
                .split_whitespace()
                .collect();
            // fields: state ppid pgrp session ...
            let pid: i32 = entry.file_name().to_string_lossy().parse().unwrap_or(0);
            if fields.get(3).and_then(|s| s.parse::<i32>().ok()) == Some(pid) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }
    assert_no_process("31.4159").await;
    exec.stop(&scope).await.expect("stop");
}

#[tokio::test]
async fn cancel_stops_the_test() {
    let env = Env::new();
    let mut exec = env.executor(
        vec![test("/hang", "echo started\nsleep 27.1828\n")],
        FmfPlan::default(),
    );
    let scope = Scope::root("t");
    exec.start(&scope).await.expect("start");
    let test_scope = scope.child("test");
    let art = tempfile::tempdir().expect("artifacts");
    let testout = art.path().join("testout.temp");
    let run = exec.run_test("/hang", art.path(), &test_scope);
    let canceller = async {
        // wait until the test printed something, then cancel
        for _ in 0..500 {
            if std::fs::read(&testout).is_ok_and(|d| d.starts_with(b"started")) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        test_scope.cancel();
    };
    let (res, ()) = tokio::join!(run, canceller);
    assert!(
        matches!(res, Err(ExecutorError::Cancelled { .. })),
        "{res:?}"
    );
    assert_eq!(
        read(art.path().join("results")),
        "{\"status\": \"infra\", \"note\": \"TestAbortedError(cancel requested)\", \"files\": [\"output.txt\"]}\n"
    );
    assert_eq!(read(art.path().join("files/output.txt")), "started\n");
    assert_no_process("27.1828").await;
    exec.stop(&scope).await.expect("stop");
}

#[tokio::test]
async fn tty_is_emulated_only_when_asked() {
    let env = Env::new();
    let mut with = test("/tty", "tty; stty size; echo \"TERM=$TERM\"");
    with.tty = true;
    let without = test("/notty", "tty || true");
    let mut exec = env.executor(vec![with, without], FmfPlan::default());
    let scope = Scope::root("t");
    exec.start(&scope).await.expect("start");
    let (art, res) = run(&mut exec, "/tty", &scope).await;
    assert_eq!(res.expect("run"), 0);
    let out = read(art.path().join("files/output.txt"));
    assert!(out.contains("/dev/pts/"), "{out}");
    assert!(out.contains("24 80"), "{out}");
    assert!(out.contains("TERM=vt100"), "{out}");
    let (art, res) = run(&mut exec, "/notty", &scope).await;
    assert_eq!(res.expect("run"), 0);
    assert_eq!(read(art.path().join("files/output.txt")), "not a tty\n");
    exec.stop(&scope).await.expect("stop");
}

/// "Reboot" on the local machine: after `disconnect` and EPIPE, the test kills its wrapper,
/// which is what a reboot looks like to the controller.
const REBOOT: &str = r#"echo "boot $TMT_REBOOT_COUNT restart $TMT_TEST_RESTART_COUNT"
if [ "$TMT_REBOOT_COUNT" -lt 2 ]; then
    trap '' PIPE
    echo disconnect >&$ATEX_TEST_CONTROL
    while echo noop >&$ATEX_TEST_CONTROL; do sleep 0.05; done 2>/dev/null
    kill -KILL $PPID
    exit 0
fi
echo done
"#;

#[tokio::test]
async fn disconnect_restarts_with_counters() {
    let env = Env::new();
    let bad = test("/bad", "kill -KILL $PPID; sleep 1");
    let mut exec = env.wrapped_executor(vec![test("/reboot", REBOOT), bad], FmfPlan::default());
    let scope = Scope::root("t");
    exec.start(&scope).await.expect("start");
    let (art, res) = run(&mut exec, "/reboot", &scope).await;
    assert_eq!(res.expect("run"), 0);
    assert_eq!(
        read(art.path().join("files/output.txt")),
        "boot 0 restart 0\nboot 1 restart 1\nboot 2 restart 2\ndone\n"
    );
    assert_eq!(
        read(art.path().join("results")),
        "{\"status\": \"pass\", \"files\": [\"output.txt\"]}\n"
    );
    let (art, res) = run(&mut exec, "/bad", &scope).await;
    match res {
        Err(ExecutorError::Aborted { reason, .. }) => assert_eq!(
            reason.to_string(),
            "test wrapper unexpectedly exited with 137 and disconnect was not sent via test control"
        ),
        other => panic!("unexpected {other:?}"),
    }
    assert!(read(art.path().join("results")).contains("\"status\": \"infra\""));
    exec.stop(&scope).await.expect("stop");
}

#[tokio::test]
async fn plan_prepare_finish_and_environment_file() {
    let env = Env::new();
    let marker = tempfile::tempdir().expect("marker");
    let finished = marker.path().join("finished");
    let plan = FmfPlan {
        environment: vec![("VAR_FROM_PLAN".into(), "foo bar".into())],
        prepare: vec![
            PlanStep::Install {
                packages: vec!["bash".into()],
            },
            PlanStep::Shell {
                scripts: vec![
                    "cat root.txt > prepared.txt; echo \"$VAR_FROM_PLAN\" >> prepared.txt".into(),
                    "echo FROM_FILE=from-env-file >> \"$TMT_PLAN_ENVIRONMENT_FILE\"".into(),
                ],
            },
        ],
        finish: vec![PlanStep::Shell {
            scripts: vec![format!(
                "echo \"$VAR_FROM_PLAN\" > '{}'",
                finished.display()
            )],
        }],
    };
    let mut first = test(
        "/first",
        "cat \"$TMT_TREE/prepared.txt\"; echo \"file=$FROM_FILE\"; echo ADDED=yes >> \"$TMT_PLAN_ENVIRONMENT_FILE\"",
    );
    first.require = vec!["bash".into(), "coreutils".into()];
    let second = test("/second", "echo \"added=$ADDED\"");
    let mut exec = env.executor(vec![first, second], plan);
    let scope = Scope::root("t");
    exec.start(&scope).await.expect("start");
    let (art, res) = run(&mut exec, "/first", &scope).await;
    assert_eq!(res.expect("run"), 0);
    assert_eq!(
        read(art.path().join("files/output.txt")),
        "root file\nfoo bar\nfile=from-env-file\n"
    );
    let (art, res) = run(&mut exec, "/second", &scope).await;
    assert_eq!(res.expect("run"), 0);
    assert_eq!(read(art.path().join("files/output.txt")), "added=yes\n");
    let work = exec.work_dir().expect("work").to_owned();
    exec.stop(&scope).await.expect("stop");
    assert_eq!(read(&finished), "foo bar\n");
    assert!(!Path::new(&work).exists());
    // stop is idempotent
    exec.stop(&scope).await.expect("stop again");
}

#[tokio::test]
async fn setup_failure_is_a_single_infra_line() {
    let env = Env::new();
    let mut t = test("/bad-duration", "true");
    t.duration = Some("5 fortnights".into());
    let mut exec = env.executor(vec![t], FmfPlan::default());
    let scope = Scope::root("t");
    exec.start(&scope).await.expect("start");
    let (art, res) = run(&mut exec, "/bad-duration", &scope).await;
    assert!(matches!(res, Err(ExecutorError::Setup { .. })), "{res:?}");
    let results = read(art.path().join("results"));
    assert!(
        results.starts_with(
            "{\"status\": \"infra\", \"note\": \"TestSetupError(invalid duration '5 fortnights'"
        ),
        "{results}"
    );
    assert_eq!(results.lines().count(), 1);
    exec.stop(&scope).await.expect("stop");
}

#[tokio::test]
async fn missing_exitcode_and_protocol_errors() {
    let env = Env::new();
    let mut exec = env
        .executor(
            vec![
                test("/plain", "echo hi"),
                test(
                    "/garbage",
                    "echo 'bogus word' >&$ATEX_TEST_CONTROL; sleep 29.9792",
                ),
            ],
            FmfPlan::default(),
        )
        .with_options(FmfOptions {
            no_exitcode: true,
            ..env.options()
        });
    let scope = Scope::root("t");
    exec.start(&scope).await.expect("start");
    let (art, res) = run(&mut exec, "/plain", &scope).await;
    match res {
        Err(ExecutorError::Aborted { reason, .. }) => {
            assert_eq!(reason.to_string(), "exitcode not reported, wrapper bug?")
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(read(art.path().join("results")).contains("exitcode not reported"));
    let (art, res) = run(&mut exec, "/garbage", &scope).await;
    match res {
        Err(ExecutorError::Aborted { reason, .. }) => {
            // The error type (`BadControlError`) names the note's kind, not the error.
            assert_eq!(reason.to_string(), "unknown control word: bogus")
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(
        read(art.path().join("results")),
        "{\"status\": \"infra\", \"note\": \"BadControlError(unknown control word: bogus)\", \"files\": [\"output.txt\"]}\n"
    );
    assert_no_process("29.9792").await;
    exec.stop(&scope).await.expect("stop");
}

#[tokio::test]
async fn duration_control_extends_the_deadline() {
    let env = Env::new();
    let mut t = test(
        "/extend",
        "echo 'duration +3' >&$ATEX_TEST_CONTROL; sleep 1.5; echo ok",
    );
    t.duration = Some("1".into());
    let mut exec = env.executor(vec![t], FmfPlan::default());
    let scope = Scope::root("t");
    exec.start(&scope).await.expect("start");
    let (art, res) = run(&mut exec, "/extend", &scope).await;
    assert_eq!(res.expect("run"), 0);
    assert_eq!(read(art.path().join("files/output.txt")), "ok\n");
    exec.stop(&scope).await.expect("stop");
}

#[tokio::test]
async fn eval_exit_code_hook_decides_the_fallback() {
    let env = Env::new();
    let t = test(
        "/hook",
        "report '{\"name\": \"phase\", \"status\": \"fail\"}'\nexit 0",
    );
    let eval: atex::executor::fmf::EvalExitCode = Arc::new(|_name, reporter, code| {
        let failed = reporter
            .written_statuses()
            .iter()
            .any(|s| s.as_deref() == Some("fail"));
        if failed { 1 } else { code }
    });
    let mut exec = env
        .executor(vec![t], FmfPlan::default())
        .with_eval_exit_code(eval);
    let scope = Scope::root("t");
    exec.start(&scope).await.expect("start");
    let (art, res) = run(&mut exec, "/hook", &scope).await;
    assert_eq!(res.expect("run"), 1);
    assert_eq!(
        read(art.path().join("results")),
        "{\"name\": \"phase\", \"status\": \"fail\"}\n{\"status\": \"fail\", \"files\": [\"output.txt\"]}\n"
    );
    exec.stop(&scope).await.expect("stop");
}

/// As root with `contain_daemons`, a daemon that left the test's process group with
/// `setsid` dies with the test (the test runs as PID 1 of its own PID namespace).
#[tokio::test]
async fn setsid_daemons_die_with_the_test_when_root() {
    let uid = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).map(str::to_owned))
        .and_then(|l| l.split_whitespace().nth(2).map(str::to_owned));
    // The README's test command runs as root; a PID namespace needs it.
    assert_eq!(uid.as_deref(), Some("0"), "run the tests as root (README)");
    let env = Env::new();
    let marker = format!("atexdaemon{}", std::process::id());
    let options = FmfOptions {
        contain_daemons: true,
        ..env.options()
    };
    let mut exec = env.executor(
        vec![test(
            "/daemon",
            &format!("setsid bash -c 'exec -a {marker} sleep 300' </dev/null >/dev/null 2>&1 &\nsleep 0.2\necho started\n"),
        )],
        FmfPlan::default(),
    )
    .with_options(options);
    let scope = Scope::root("t");
    exec.start(&scope).await.expect("start");
    let (artifacts, res) = run(&mut exec, "/daemon", &scope).await;
    assert_eq!(res.expect("run"), 0);
    assert_eq!(
        read(artifacts.path().join("results")),
        "{\"status\": \"pass\", \"files\": [\"output.txt\"]}\n"
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !live_processes(&marker).is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the setsid daemon survived: {:?}",
            live_processes(&marker)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    exec.stop(&scope).await.expect("stop");
}

/// A required package that does not exist fails the setup with the package manager's
/// error and exactly one `infra` result; an unavailable *recommended* package is skipped
/// and an installed one is kept (checked against the real package manager of this system).
#[tokio::test]
async fn required_and_recommended_packages() {
    let has_pm = ["dnf5", "dnf", "yum", "apt-get", "zypper", "apk"]
        .iter()
        .any(|pm| std::path::Path::new(&format!("/usr/bin/{pm}")).exists());
    // scripts/run-tests.sh runs on Debian: apt-get is always there.
    assert!(has_pm, "no package manager on this system");
    let env = Env::new();
    let mut missing = test("/missing", "true");
    missing.require = vec!["atex-no-such-package-4711".into()];
    let mut recommended = test("/recommended", "command -v bash");
    recommended.require = vec!["bash".into()];
    recommended.recommend = vec!["bash".into(), "atex-no-such-package-4711".into()];
    let mut exec = env.executor(vec![missing, recommended], FmfPlan::default());
    let scope = Scope::root("t");
    exec.start(&scope).await.expect("start");
    let (art, res) = run(&mut exec, "/missing", &scope).await;
    match res {
        Err(ExecutorError::Setup { source, .. }) => {
            let message = atex::error::chain(&*source).to_string();
            assert!(message.contains("atex-no-such-package-4711"), "{message}")
        }
        other => panic!("unexpected {other:?}"),
    }
    let results = read(art.path().join("results"));
    assert_eq!(results.lines().count(), 1, "{results}");
    assert!(
        results.starts_with("{\"status\": \"infra\", \"note\": \"TestSetupError("),
        "{results}"
    );
    let (art, res) = run(&mut exec, "/recommended", &scope).await;
    assert_eq!(res.expect("run"), 0);
    assert_eq!(
        read(art.path().join("results")),
        "{\"status\": \"pass\", \"files\": [\"output.txt\"]}\n"
    );
    exec.stop(&scope).await.expect("stop");
}

/// The wrapper's own messages never reach the test output: a test whose directory is
/// missing leaves an empty `output.txt`, and the wrapper's reason is in the abort note.
#[tokio::test]
async fn wrapper_messages_stay_out_of_the_test_output() {
    let env = Env::new();
    let mut t = test("/lost-dir", "echo never");
    t.source_dir = "no/such/dir".into();
    let mut exec = env.wrapped_executor(vec![t], FmfPlan::default());
    let scope = Scope::root("t");
    exec.start(&scope).await.expect("start");
    let (art, res) = run(&mut exec, "/lost-dir", &scope).await;
    let reason = match res {
        Err(ExecutorError::Aborted { reason, .. }) => reason.to_string(),
        other => panic!("unexpected {other:?}"),
    };
    assert!(
        reason.starts_with("test wrapper unexpectedly exited with 2 and disconnect was not sent")
            && reason.contains("atex wrapper: cannot change directory to"),
        "{reason}"
    );
    assert_eq!(read(art.path().join("files/output.txt")), "");
    let results = read(art.path().join("results"));
    assert!(
        results.starts_with("{\"status\": \"infra\", \"note\": \"TestAbortedError(test wrapper unexpectedly exited with 2")
            && results.ends_with("\"files\": [\"output.txt\"]}\n"),
        "{results}"
    );
    exec.stop(&scope).await.expect("stop");
}

/// Invalid `duration` and `exitcode` arguments abort the test as `infra` with the error
/// named in the note; `output.txt` holds exactly what the test printed.
#[tokio::test]
async fn bad_control_arguments_are_infra() {
    let env = Env::new();
    let mut exec = env.executor(
        vec![
            test(
                "/duration",
                "echo printed\necho 'duration 5x' >&$ATEX_TEST_CONTROL\nsleep 28.1",
            ),
            test(
                "/exitcode",
                "echo printed\necho 'exitcode x' >&$ATEX_TEST_CONTROL\nsleep 28.2",
            ),
        ],
        FmfPlan::default(),
    );
    let scope = Scope::root("t");
    exec.start(&scope).await.expect("start");
    for (name, kind, prefix) in [
        ("/duration", "InvalidDurationError", "invalid duration '5x'"),
        (
            "/exitcode",
            "BadControlError",
            "'x' is not an integer exit code",
        ),
    ] {
        let (art, res) = run(&mut exec, name, &scope).await;
        let note = match res {
            Err(ExecutorError::Aborted { reason, .. })
                if reason.to_string().starts_with(prefix) =>
            {
                format!("{kind}({reason})")
            }
            other => panic!("{name}: {other:?}"),
        };
        let results: serde_json::Value =
            serde_json::from_str(&read(art.path().join("results"))).expect("one JSON line");
        assert_eq!(
            results,
            serde_json::json!({"status": "infra", "note": note, "files": ["output.txt"]})
        );
        assert_eq!(read(art.path().join("files/output.txt")), "printed\n");
    }
    assert_no_process("28.1").await;
    assert_no_process("28.2").await;
    exec.stop(&scope).await.expect("stop");
}

/// After `disconnect`, writes to the control channel fail with EPIPE (the local pipe's read
/// end is closed): a test that probes with `noop` until then and exits is restarted with
/// `TMT_REBOOT_COUNT=1` and passes, well inside its duration.
#[tokio::test]
async fn disconnect_closes_the_control_channel_locally() {
    let env = Env::new();
    let mut t = test("/probe", DISCONNECT_PROBE);
    t.duration = Some("2m".into());
    let mut exec = env.executor(vec![t], FmfPlan::default());
    let scope = Scope::root("t");
    exec.start(&scope).await.expect("start");
    let (art, res) = run(&mut exec, "/probe", &scope).await;
    assert_eq!(res.expect("run"), 0);
    assert_eq!(
        read(art.path().join("files/output.txt")),
        "boot 0\nthe control channel is closed\nboot 1\n"
    );
    assert_eq!(
        read(art.path().join("results")),
        "{\"status\": \"pass\", \"files\": [\"output.txt\"]}\n"
    );
    exec.stop(&scope).await.expect("stop");
}

/// The test side of a reboot without the reboot: `disconnect`, `noop` until the write
/// fails, exit. The second run must see `TMT_REBOOT_COUNT=1`.
pub const DISCONNECT_PROBE: &str = r#"echo "boot $TMT_REBOOT_COUNT"
if [ "$TMT_REBOOT_COUNT" = 0 ]; then
    trap '' PIPE
    echo disconnect >&$ATEX_TEST_CONTROL
    while echo noop >&$ATEX_TEST_CONTROL; do sleep 0.1; done 2>/dev/null
    echo "the control channel is closed"
    exit 0
fi
test "$TMT_REBOOT_COUNT" = 1 && test "$TMT_TEST_RESTART_COUNT" = 1
"#;

/// A daemon the test started with `setsid` keeps the control channel open after the test
/// exited: the executor reads on for `exit_drain` only, then closes the channel and
/// finishes the test with its exit code instead of waiting until the duration expires.
#[tokio::test]
async fn a_daemon_holding_the_control_channel_does_not_hold_the_test() {
    let env = Env::new();
    let marker = format!("atexholder{}", std::process::id());
    let mut t = test(
        "/daemon",
        &format!(
            "setsid bash -c 'echo $$ > daemon.pid; exec -a {marker} sleep 300' </dev/null >/dev/null 2>&1 &\n\
             until [ -s daemon.pid ]; do sleep 0.01; done\necho started\n"
        ),
    );
    t.duration = Some("40".into());
    let mut exec = env.executor(vec![t], FmfPlan::default());
    let scope = Scope::root("t");
    exec.start(&scope).await.expect("start");
    let (art, res) = run(&mut exec, "/daemon", &scope).await;
    let held = live_processes(&marker);
    // The daemon is outside every group the executor may kill (no containment here).
    for pid in pids_of(&marker) {
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
    }
    assert_eq!(res.expect("run"), 0, "daemon: {held:?}");
    assert_eq!(
        read(art.path().join("results")),
        "{\"status\": \"pass\", \"files\": [\"output.txt\"]}\n"
    );
    assert_eq!(read(art.path().join("files/output.txt")), "started\n");
    assert_no_process(&marker).await;
    exec.stop(&scope).await.expect("stop");
}

/// Pids of live processes whose command line contains `needle`.
fn pids_of(needle: &str) -> Vec<nix::unistd::Pid> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("proc").flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        if String::from_utf8_lossy(&cmdline).contains(needle) {
            found.push(nix::unistd::Pid::from_raw(pid));
        }
    }
    found
}

/// A wrapper killed by a signal did not clean up: the executor kills the test's process
/// group itself (the group id the wrapper recorded).
#[tokio::test]
async fn the_test_group_dies_when_its_wrapper_is_killed() {
    let env = Env::new();
    let marker = format!("atexorphan{}", std::process::id());
    let t = test(
        "/orphan",
        &format!("exec {{ATEX_TEST_CONTROL}}>&-\nkill -KILL $PPID\nexec -a {marker} sleep 300\n"),
    );
    let mut exec = env.wrapped_executor(vec![t], FmfPlan::default());
    let scope = Scope::root("t");
    exec.start(&scope).await.expect("start");
    let (art, res) = run(&mut exec, "/orphan", &scope).await;
    match res {
        Err(ExecutorError::Aborted { reason, .. }) => assert_eq!(
            reason.to_string(),
            "test wrapper unexpectedly exited with 137 and disconnect was not sent via test control"
        ),
        other => panic!("unexpected {other:?}"),
    }
    assert!(read(art.path().join("results")).starts_with("{\"status\": \"infra\""));
    assert_no_process(&marker).await;
    exec.stop(&scope).await.expect("stop");
}

/// Plan `finish` runs when the run was cancelled (gracefully) before `stop`; once the run
/// is forced, a hanging `finish` is killed and `stop` returns at once.
#[tokio::test]
async fn plan_finish_runs_after_cancel_and_stops_when_forced() {
    let env = Env::new();
    let marker = tempfile::tempdir().expect("marker");
    let finished = marker.path().join("finished");
    let plan = FmfPlan {
        finish: vec![PlanStep::Shell {
            scripts: vec![format!("echo done > '{}'", finished.display())],
        }],
        ..FmfPlan::default()
    };
    let mut exec = env.executor(vec![test("/t", "true")], plan);
    let scope = Scope::root("t");
    exec.start(&scope).await.expect("start");
    let work = exec.work_dir().expect("work").to_owned();
    scope.cancel();
    exec.stop(&scope).await.expect("stop");
    assert_eq!(read(&finished), "done\n");
    assert!(!Path::new(&work).exists(), "work dir removed");

    let hang = format!("atexfinish{}", std::process::id());
    let plan = FmfPlan {
        finish: vec![PlanStep::Shell {
            scripts: vec![format!("exec -a {hang} sleep 300")],
        }],
        ..FmfPlan::default()
    };
    let mut exec = env.executor(vec![test("/t", "true")], plan);
    let scope = Scope::root("t2");
    exec.start(&scope).await.expect("start");
    scope.cancel();
    let killer = async {
        while live_processes(&hang).is_empty() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        scope.kill();
    };
    let (stopped, ()) = tokio::join!(exec.stop(&scope), killer);
    stopped.expect("a forced finish is logged, not an error");
    assert_no_process(&hang).await;
}

/// What a test sees of its process: working directory, environment (without the shell's
/// own `SHLVL` and `_`), open descriptors (what each one is), and where its stdout and the
/// control channel lead.
const PROBE: &str = r#"echo "cwd=$PWD"
env | LC_ALL=C sort | grep -v -e '^SHLVL=' -e '^_='
for fd in /proc/$$/fd/*; do
    case $(readlink "$fd") in
        pipe:*) what=pipe ;;
        /dev/null) what=null ;;
        */testout.temp) what=output ;;
        *) what=other ;;
    esac
    echo "fd ${fd##*/} $what"
done
echo "pgid=$(($(ps -o pgid= -p $$)))" | sed "s/=$$\$/=self/"
"#;

/// On the local connection a test starts without the wrapper (its parent is the executor's
/// own process), and sees the same working directory, environment, descriptors and process
/// group as through the wrapper, except the wrapper's own two variables.
#[tokio::test]
async fn local_tests_start_directly_and_see_what_the_wrapper_gives() {
    let env = Env::new();
    let mut seen = Vec::new();
    for wrapped in [false, true] {
        let mut t = test("/probe", &format!("echo \"ppid=$PPID\"\n{PROBE}"));
        t.source_dir = "sub/dir".into();
        let mut exec = if wrapped {
            env.wrapped_executor(vec![t], FmfPlan::default())
        } else {
            env.executor(vec![t], FmfPlan::default())
        };
        let scope = Scope::root("t");
        exec.start(&scope).await.expect("start");
        let work = exec.work_dir().expect("work dir").to_owned();
        let (art, res) = run(&mut exec, "/probe", &scope).await;
        assert_eq!(res.expect("run"), 0);
        exec.stop(&scope).await.expect("stop");
        let out = read(art.path().join("files/output.txt"));
        let (ppid, rest) = out.split_once('\n').expect("ppid line");
        let direct = ppid == format!("ppid={}", std::process::id());
        assert_eq!(direct, !wrapped, "{ppid}");
        // The work directory's name differs between the two runs.
        seen.push(rest.replace(&work, "W"));
    }
    let (direct, wrapped) = (&seen[0], &seen[1]);
    let wrapper_only =
        |l: &&str| !l.starts_with("ATEX_TEST_PGID_FILE=") && !l.starts_with("ATEX_WRAPPER_LOG=");
    let wrapped: Vec<&str> = wrapped.lines().filter(wrapper_only).collect();
    assert_eq!(direct.lines().collect::<Vec<_>>(), wrapped);
    assert!(direct.contains("cwd=W/tests/sub/dir\n"), "{direct}");
    for fd in ["fd 0 null\n", "fd 1 output\n", "fd 2 output\n"] {
        assert!(direct.contains(fd), "{direct}");
    }
    // The control channel: a pipe on a descriptor of 10 or more.
    let control: u32 = direct
        .lines()
        .find_map(|l| l.strip_prefix("ATEX_TEST_CONTROL="))
        .and_then(|n| n.parse().ok())
        .expect("ATEX_TEST_CONTROL");
    assert!(control >= 10, "{direct}");
    assert!(direct.contains(&format!("fd {control} pipe\n")), "{direct}");
    assert!(direct.contains("pgid=self\n"), "{direct}");
}

/// A directly started test: what it leaves in its process group is killed once it exited,
/// a test killed by a signal exits with 128 + signal, and a missing test directory aborts
/// the test with the reason (nothing in its output).
#[tokio::test]
async fn direct_tests_leftovers_signals_and_missing_directory() {
    let env = Env::new();
    let marker = format!("atexleft{}", std::process::id());
    let mut lost = test("/lost-dir", "echo never");
    lost.source_dir = "no/such/dir".into();
    let tests = vec![
        test(
            "/leaves",
            &format!("bash -c 'exec -a {marker} sleep 300' &\necho left\n"),
        ),
        test("/signal", "echo before\nkill -TERM $$\necho after\n"),
        lost,
    ];
    let mut exec = env.executor(tests, FmfPlan::default());
    let scope = Scope::root("t");
    exec.start(&scope).await.expect("start");
    let (art, res) = run(&mut exec, "/leaves", &scope).await;
    assert_eq!(res.expect("run"), 0);
    assert_eq!(read(art.path().join("files/output.txt")), "left\n");
    assert_no_process(&marker).await;

    let (art, res) = run(&mut exec, "/signal", &scope).await;
    assert_eq!(res.expect("run"), 143);
    assert_eq!(read(art.path().join("files/output.txt")), "before\n");
    assert_eq!(
        read(art.path().join("results")),
        "{\"status\": \"fail\", \"files\": [\"output.txt\"]}\n"
    );

    let (art, res) = run(&mut exec, "/lost-dir", &scope).await;
    let reason = match res {
        Err(ExecutorError::Aborted { reason, .. }) => atex::error::chain(&*reason).to_string(),
        other => panic!("unexpected {other:?}"),
    };
    assert!(
        reason.starts_with("the test could not be started in ")
            && reason.contains("/tests/no/such/dir: cannot start /bin/bash "),
        "{reason}"
    );
    assert_eq!(read(art.path().join("files/output.txt")), "");
    let results = read(art.path().join("results"));
    assert!(
        results.starts_with(
            "{\"status\": \"infra\", \"note\": \"TestAbortedError(the test could not be started in "
        ),
        "{results}"
    );
    exec.stop(&scope).await.expect("stop");
}

/// Runs commands locally, but the reply of the script that creates the work directory is
/// lost after the script ran (a cancel or a broken link at that moment).
#[derive(Debug)]
struct LosesTheWorkDirReply(LocalConnection);

#[async_trait::async_trait]
impl atex::connection::Connection for LosesTheWorkDirReply {
    fn describe(&self) -> String {
        "loses-the-work-dir-reply".into()
    }

    async fn spawn(
        &self,
        cmd: atex::connection::CommandSpec,
        scope: &Scope,
    ) -> Result<atex::connection::Process, atex::connection::ConnectionError> {
        use atex::connection::{ConnectionExt, Input};
        let creates_work_dir = matches!(&cmd.stdin, Input::Bytes(script)
            if String::from_utf8_lossy(script).contains("cannot create a work directory"));
        if !creates_work_dir {
            return self.0.spawn(cmd, scope).await;
        }
        let out = self.0.output(cmd, scope).await?;
        assert!(out.status.success(), "{}", out.stderr_lossy());
        Err(atex::connection::ConnectionError::Io {
            context: "reading the reply".into(),
            source: std::io::Error::other("lost"),
        })
    }

    async fn upload(
        &self,
        local: &Path,
        remote: &str,
    ) -> Result<(), atex::connection::ConnectionError> {
        self.0.upload(local, remote).await
    }

    async fn download(
        &self,
        remote: &str,
        local: &Path,
    ) -> Result<(), atex::connection::ConnectionError> {
        self.0.download(remote, local).await
    }
}

/// A start that fails after the work directory was made, before its path was read, still
/// leaves nothing behind once the executor is stopped.
#[tokio::test]
async fn an_interrupted_start_leaves_no_work_directory() {
    let env = Env::new();
    let conn = Arc::new(LosesTheWorkDirReply(LocalConnection::new()));
    let mut exec = FmfExecutor::new(
        conn,
        &env.tree_path,
        vec![test("/t", "true")],
        FmfPlan::default(),
    )
    .with_options(env.options());
    let scope = Scope::root("t");
    let err = exec.start(&scope).await.expect_err("the reply was lost");
    assert!(err.to_string().contains("work directory"), "{err}");
    let made: Vec<_> = std::fs::read_dir(env.base.path())
        .expect("base")
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(made.len(), 1, "the script made the directory: {made:?}");
    exec.stop(&scope).await.expect("stop");
    let left: Vec<_> = std::fs::read_dir(env.base.path())
        .expect("base")
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

/// `run_test_lines` hands the result lines of a test that ran to its end back in memory
/// (no `results` file; the `files/` directory in place), and an aborted test's
/// lines, its `infra` line included, still go to the file.
#[tokio::test]
async fn run_test_lines_hands_finished_results_back_and_files_aborted_ones() {
    let env = Env::new();
    let done = test(
        "/done",
        "report '{\"status\": \"fail\", \"note\": \"n\"}'\necho out\n",
    );
    let mut slow = test("/slow", "report '{\"status\": \"pass\"}'\nsleep 27.1828\n");
    slow.duration = Some("1".into());
    let mut exec = env.executor(vec![done, slow], FmfPlan::default());
    let scope = Scope::root("t");
    exec.start(&scope).await.expect("start");

    let art = tempfile::tempdir().expect("artifacts");
    let (outcome, lines) = exec
        .run_test_lines("/done", art.path(), &scope)
        .await
        .expect("run");
    assert_eq!(outcome.exit_code, 0);
    let lines = String::from_utf8(lines.expect("lines in memory")).expect("utf-8");
    assert_eq!(lines, "{\"status\": \"fail\", \"note\": \"n\"}\n");
    assert!(!art.path().join("results").exists());
    assert!(art.path().join("files").is_dir());

    let art = tempfile::tempdir().expect("artifacts");
    match exec.run_test_lines("/slow", art.path(), &scope).await {
        Err(ExecutorError::Aborted { .. }) => {}
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(
        read(art.path().join("results")),
        "{\"status\": \"pass\"}\n{\"status\": \"infra\", \"note\": \"TestAbortedError(test duration timeout reached)\"}\n"
    );
    assert_no_process("27.1828").await;
    exec.stop(&scope).await.expect("stop");
}
