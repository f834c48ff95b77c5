//! FMF tests over SSH against a real OpenSSH sshd: `atex run --provisioner ssh:…`, SIGINT
//! during such a run, a reboot (sshd killed and restarted) after `disconnect`, the control
//! channel closed after `disconnect` and after the test ended, and lost connections (a cut
//! link) surfacing as lost remotes.
//! Needs root, openssh-server, openssh-client, iproute2.

#![cfg(feature = "ssh")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use atex::aggregator::{Aggregator, JsonlAggregator, JsonlOptions};
use atex::connection::ssh::SshConnection;
use atex::executor::fmf::{FmfExecutor, FmfOptions, FmfPlan, FmfTest, FmfTestSet};
use atex::executor::{CommandExecutor, Executor, ExecutorError, ExecutorFactory};
use atex::orchestrator::AdHocOrchestrator;
use atex::orchestrator::adhoc::Policy;
use atex::orchestrator::events::EventKind;
use atex::provisioner::{Remote, SshHostPool};
use atex::scope::{Scope, ShutdownOptions};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use support::sshd::{NetnsHost, Sshd, TEST_USER};

fn write_tree(root: &Path, main_fmf: &str) {
    std::fs::create_dir_all(root.join(".fmf")).unwrap();
    std::fs::write(root.join(".fmf/version"), "1\n").unwrap();
    std::fs::write(root.join("main.fmf"), main_fmf).unwrap();
}

fn hosts_file(dir: &Path, sshd: &Sshd) -> std::path::PathBuf {
    let path = dir.join("hosts");
    std::fs::write(
        &path,
        format!(
            "# the private sshd, twice would be refused as a duplicate\n{TEST_USER}@127.0.0.1:{} {}\n",
            sshd.port,
            sshd.files.client_key.display()
        ),
    )
    .unwrap();
    path
}

fn atex_run(tree: &Path, hosts: &Path, known_hosts: &Path, results: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_atex"));
    cmd.args(["-q", "run"])
        .arg(tree)
        .arg("--provisioner")
        .arg(format!("ssh:{}", hosts.display()))
        .arg("--ssh-known-hosts")
        .arg(known_hosts)
        .arg("--results")
        .arg(results);
    cmd
}

fn pgrep_user(needle: &str) -> bool {
    Command::new("pgrep")
        .args(["-u", TEST_USER, "-f", needle])
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

#[test]
fn atex_run_over_ssh() {
    let sshd = Sshd::start();
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tree");
    write_tree(
        &tree,
        concat!(
            "/pass:\n    test: test \"$(id -un)\" = atexbench && echo hello\n",
            "/fail:\n    test: exit 3\n",
            "/upload:\n    test: |\n",
            "        printf 'result 61\\n{\"status\": \"pass\", \"files\": [{\"name\": \"x.log\", \"length\": 5}]}hello' >&$ATEX_TEST_CONTROL\n",
            "/env:\n    test: test \"$V\" = 'a b' && test -n \"$TMT_TREE\"\n    environment:\n        V: a b\n",
        ),
    );
    let hosts = hosts_file(tmp.path(), &sshd);
    let results = tmp.path().join("results");
    let out = atex_run(&tree, &hosts, &sshd.files.known_hosts, &results)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let text = std::fs::read_to_string(results.join("results.jsonl")).unwrap();
    let rows: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let status = |name: &str| {
        rows.iter()
            .find(|r| r[2] == name && r[3].is_null())
            .map(|r| r[1].clone())
            .unwrap_or_else(|| panic!("no row for {name}: {text}"))
    };
    assert_eq!(status("/pass"), "pass");
    assert_eq!(status("/fail"), "fail");
    assert_eq!(status("/upload"), "pass");
    assert_eq!(status("/env"), "pass");
    assert_eq!(
        std::fs::read_to_string(results.join("files/local/pass/output.txt")).unwrap(),
        "hello\n"
    );
    assert_eq!(
        std::fs::read_to_string(results.join("files/local/upload/x.log")).unwrap(),
        "hello"
    );
    // The strict default refuses a host whose key is unknown: atex cannot run (exit 2).
    let empty_known = tmp.path().join("empty_known_hosts");
    std::fs::write(&empty_known, "").unwrap();
    let out = atex_run(&tree, &hosts, &empty_known, &tmp.path().join("refused"))
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0));
}

#[test]
fn sigint_during_atex_run_over_ssh_leaves_nothing_remote() {
    let sshd = Sshd::start();
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tree");
    let marker = format!("atexsigint{}", std::process::id());
    write_tree(
        &tree,
        &format!("/slow:\n    test: sleep 300 & bash -c 'exec -a {marker} sleep 301'\n"),
    );
    let hosts = hosts_file(tmp.path(), &sshd);
    let results = tmp.path().join("results");
    let mut child = atex_run(&tree, &hosts, &sshd.files.known_hosts, &results)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while !pgrep_user(&marker) {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the test did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    kill(Pid::from_raw(child.id() as i32), Signal::SIGINT).unwrap();
    let sent = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            sent.elapsed() < Duration::from_secs(20),
            "atex run did not stop"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(130));
    let deadline = Instant::now() + Duration::from_secs(5);
    while pgrep_user(&marker) || pgrep_user("sleep 300") {
        assert!(
            Instant::now() < deadline,
            "test processes left on the remote side"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let text = std::fs::read_to_string(results.join("results.jsonl")).unwrap();
    assert!(text.contains("\"infra\""), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reboot_after_disconnect_reconnects_and_restarts_the_test() {
    let mut host = NetnsHost::start();
    let tmp = tempfile::tempdir().unwrap();
    let signal_dir = tmp.path().join("signals");
    std::fs::create_dir(&signal_dir).unwrap();
    std::fs::set_permissions(
        &signal_dir,
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    let tree = tmp.path().join("tree");
    std::fs::create_dir(&tree).unwrap();
    let flag = signal_dir.join("disconnected");
    let script = format!(
        "echo \"boot $TMT_REBOOT_COUNT\"\n\
         if [ \"$TMT_REBOOT_COUNT\" = 0 ]; then\n\
           echo disconnect >&$ATEX_TEST_CONTROL\n\
           touch {flag}\n\
           while echo noop >&$ATEX_TEST_CONTROL; do sleep 0.1; done 2>/dev/null\n\
           sleep 600\n\
         fi\n\
         test \"$TMT_REBOOT_COUNT\" = 1 && test \"$TMT_TEST_RESTART_COUNT\" = 1\n",
        flag = flag.display()
    );
    let mut test = FmfTest::new("/reboot", script);
    test.duration = Some("2m".into());
    let conn = Arc::new(SshConnection::new(
        host.config().reconnect_timeout(Duration::from_secs(60)),
    ));
    let scope = Scope::root("reboot");
    let mut exec = FmfExecutor::new(conn, &tree, [test], FmfPlan::default());
    exec.start(&scope).await.unwrap();
    let artifacts = tempfile::tempdir().unwrap();
    let run = exec.run_test("/reboot", artifacts.path(), &scope);
    let reboot = async {
        let started = Instant::now();
        while !flag.exists() {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "no disconnect: {}",
                host.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // The "host" goes down (every process in its PID namespace dies) and comes back.
        host.power_off();
        tokio::time::sleep(Duration::from_millis(300)).await;
        host.start_sshd();
    };
    let (outcome, ()) = tokio::join!(run, reboot);
    let outcome = outcome.unwrap();
    assert_eq!(outcome.exit_code, 0);
    let results = std::fs::read_to_string(artifacts.path().join("results")).unwrap();
    assert_eq!(
        results,
        "{\"status\": \"pass\", \"files\": [\"output.txt\"]}\n"
    );
    let output = std::fs::read_to_string(artifacts.path().join("files/output.txt")).unwrap();
    assert!(
        output.contains("boot 0") && output.contains("boot 1"),
        "{output}"
    );
    exec.stop(&scope).await.unwrap();
    let report = scope.shutdown(ShutdownOptions::default()).await;
    assert!(report.is_clean(), "{report:?}");
}

/// A world-writable directory for flag files the test user writes.
fn signal_dir(tmp: &Path) -> std::path::PathBuf {
    let dir = tmp.join("signals");
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    dir
}

async fn wait_for_file(path: &Path, what: &str) {
    let started = Instant::now();
    while !path.exists() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{what}: {} never appeared",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Runs one FMF test over the private sshd; returns the outcome and the artifacts.
async fn run_over_ssh(
    sshd: &Sshd,
    test: FmfTest,
) -> (
    Result<atex::executor::TestOutcome, ExecutorError>,
    tempfile::TempDir,
) {
    let tree = tempfile::tempdir().unwrap();
    let conn = Arc::new(SshConnection::new(sshd.config()));
    let scope = Scope::root("ssh-test");
    let name = test.name.clone();
    let mut exec = FmfExecutor::new(conn, tree.path(), [test], FmfPlan::default())
        .with_options(FmfOptions::default());
    exec.start(&scope).await.unwrap();
    let artifacts = tempfile::tempdir().unwrap();
    let outcome = exec.run_test(&name, artifacts.path(), &scope).await;
    exec.stop(&scope).await.unwrap();
    let report = scope.shutdown(ShutdownOptions::default()).await;
    assert!(report.is_clean(), "{report:?}");
    (outcome, artifacts)
}

/// After `disconnect`, writes to the control channel fail with EPIPE over SSH too: a test
/// that probes with `noop` until then and exits (no reboot) is restarted with
/// `TMT_REBOOT_COUNT=1` and passes, well inside its duration.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnect_closes_the_control_channel_over_ssh() {
    let sshd = Sshd::start();
    let mut test = FmfTest::new(
        "/probe",
        r#"echo "boot $TMT_REBOOT_COUNT"
if [ "$TMT_REBOOT_COUNT" = 0 ]; then
    trap '' PIPE
    echo disconnect >&$ATEX_TEST_CONTROL
    while echo noop >&$ATEX_TEST_CONTROL; do sleep 0.1; done 2>/dev/null
    exit 0
fi
test "$TMT_REBOOT_COUNT" = 1 && test "$TMT_TEST_RESTART_COUNT" = 1
"#,
    );
    test.duration = Some("40".into());
    let (outcome, artifacts) = run_over_ssh(&sshd, test).await;
    assert_eq!(outcome.unwrap().exit_code, 0);
    assert_eq!(
        std::fs::read_to_string(artifacts.path().join("results")).unwrap(),
        "{\"status\": \"pass\", \"files\": [\"output.txt\"]}\n"
    );
    let output = std::fs::read_to_string(artifacts.path().join("files/output.txt")).unwrap();
    assert!(
        output.starts_with("boot 0\n") && output.ends_with("boot 1\n"),
        "{output}"
    );
}

/// What a test prints around `disconnect` (at the same moment, or just after while the
/// system is going down) reaches the test output over SSH: the output and the control
/// channel are two streams of the channel, and the channel is closed (EPIPE for later
/// control writes) only after the output had time to arrive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_printed_around_disconnect_is_kept_over_ssh() {
    let sshd = Sshd::start();
    let mut test = FmfTest::new(
        "/loud",
        r#"if [ "$TMT_REBOOT_COUNT" = 0 ]; then
    echo first
    echo with-disconnect &
    trap '' PIPE
    echo disconnect >&$ATEX_TEST_CONTROL
    wait
    sleep 0.05
    echo after-disconnect
    while echo noop >&$ATEX_TEST_CONTROL; do sleep 0.1; done 2>/dev/null
    exit 0
fi
echo after-reboot
"#,
    );
    test.duration = Some("40".into());
    let (outcome, artifacts) = run_over_ssh(&sshd, test).await;
    assert_eq!(outcome.unwrap().exit_code, 0);
    let output = std::fs::read_to_string(artifacts.path().join("files/output.txt")).unwrap();
    assert_eq!(
        output,
        "first\nwith-disconnect\nafter-disconnect\nafter-reboot\n"
    );
}

/// A daemon the test left behind holding the control channel does not hold the test over
/// SSH either: the channel is closed `exit_drain` after `exitcode`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_holding_the_control_channel_over_ssh() {
    let sshd = Sshd::start();
    let marker = format!("atexsshholder{}", std::process::id());
    let mut test = FmfTest::new(
        "/daemon",
        format!(
            "setsid bash -c 'echo $$ > daemon.pid; exec -a {marker} sleep 301' </dev/null >/dev/null 2>&1 &\n\
             until [ -s daemon.pid ]; do sleep 0.01; done\necho started\n"
        ),
    );
    test.duration = Some("40".into());
    let (outcome, artifacts) = run_over_ssh(&sshd, test).await;
    let held = pgrep_user(&marker);
    let _ = Command::new("pkill")
        .args(["-KILL", "-u", TEST_USER, "-f", &marker])
        .status();
    assert!(
        held,
        "the daemon was meant to outlive the test: {outcome:?} {:?}",
        std::fs::read_to_string(artifacts.path().join("results"))
    );
    assert_eq!(outcome.unwrap().exit_code, 0);
    assert_eq!(
        std::fs::read_to_string(artifacts.path().join("results")).unwrap(),
        "{\"status\": \"pass\", \"files\": [\"output.txt\"]}\n"
    );
    assert_eq!(
        std::fs::read_to_string(artifacts.path().join("files/output.txt")).unwrap(),
        "started\n"
    );
}

/// A connection that breaks mid-test (a cut link) is a lost remote: the FMF executor
/// returns the connection error, the AdHoc scheduler reports `RemoteLost`, and
/// `requeue_lost` runs the test again on a fresh remote, where it passes. The lost
/// attempt's results (an `infra` line) go to the old-results aggregator.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_link_is_a_lost_remote_and_the_test_is_requeued() {
    let hosts = [NetnsHost::start(), NetnsHost::start()];
    let tmp = tempfile::tempdir().unwrap();
    let signals = signal_dir(tmp.path());
    let flag = signals.join("started");
    let tree = tmp.path().join("tree");
    std::fs::create_dir(&tree).unwrap();
    let script = format!(
        "f={flag}\nif [ -e \"$f\" ]; then echo second; exit 0; fi\n\
         echo \"$SSH_CONNECTION\" > \"$f.tmp\" && mv \"$f.tmp\" \"$f\"\nexec sleep 303\n",
        flag = flag.display()
    );
    let tests = Arc::new(FmfTestSet::new([FmfTest::new("/lose", script)]));
    let plan = Arc::new(FmfPlan::default());
    let factory: Arc<dyn ExecutorFactory> = Arc::new(move |remote: Arc<dyn Remote>| {
        Box::new(
            FmfExecutor::with_shared(remote, &tree, tests.clone(), plan.clone())
                .with_options(FmfOptions::default()),
        ) as Box<dyn Executor>
    });
    let pool = SshHostPool::new(
        hosts
            .iter()
            .map(|h| {
                h.config()
                    .keepalive(Duration::from_secs(1), 2)
                    .reconnect_timeout(Duration::from_secs(5))
            })
            .collect(),
    );
    let jsonl = |name: &str| {
        Arc::new(
            JsonlAggregator::create(
                tmp.path().join(format!("{name}.jsonl")),
                tmp.path().join(format!("{name}-files")),
                JsonlOptions::default(),
            )
            .unwrap(),
        )
    };
    let (results, old) = (jsonl("results"), jsonl("old"));
    let mut orch = AdHocOrchestrator::builder("netns")
        .test("/lose")
        .provisioner(Arc::new(pool))
        .executor(factory)
        .aggregator(results.clone() as Arc<dyn Aggregator>)
        .old_aggregator(old.clone() as Arc<dyn Aggregator>)
        .policy(Policy::requeue_lost(1))
        .build()
        .unwrap();
    let mut events = orch.subscribe(1000);
    let scope = Scope::root("lost");
    let cutter = async {
        wait_for_file(&flag, "first attempt").await;
        let connection = std::fs::read_to_string(&flag).unwrap();
        let server = connection.split_whitespace().nth(2).unwrap_or_default();
        let host = hosts
            .iter()
            .find(|h| h.ip == server)
            .unwrap_or_else(|| panic!("no host for {connection:?}"));
        host.cut();
        let mut seen = Vec::new();
        while let Some(event) = events.recv().await {
            if let EventKind::RemoteLost { test, error, .. } = &event.kind {
                assert_eq!(test, "/lose");
                assert!(error.contains("keepalive"), "{error}");
                // Bring the link back: the pool may hand this machine out again.
                host.restore();
            }
            seen.push(event.kind);
        }
        seen
    };
    let (summary, seen) = tokio::join!(orch.run(&scope), cutter);
    let summary = summary.unwrap();
    results.finish().await.unwrap();
    old.finish().await.unwrap();
    let lost = seen
        .iter()
        .filter(|k| matches!(k, EventKind::RemoteLost { .. }))
        .count();
    assert_eq!(lost, 1, "{seen:?}");
    assert_eq!(summary.passed(), 1, "{summary:?}");
    assert_eq!(summary.reruns.len(), 1, "{summary:?}");
    let starts: Vec<u32> = seen
        .iter()
        .filter_map(|k| match k {
            EventKind::TestStarted { attempt, .. } => Some(*attempt),
            _ => None,
        })
        .collect();
    assert_eq!(starts, [0, 1]);
    let rows = |name: &str| -> Vec<serde_json::Value> {
        std::fs::read_to_string(tmp.path().join(format!("{name}.jsonl")))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let old_rows = rows("old");
    assert_eq!(old_rows.len(), 1, "{old_rows:?}");
    assert_eq!(old_rows[0][1], "infra");
    assert!(
        old_rows[0][5]
            .as_str()
            .unwrap_or_default()
            .starts_with("ConnectionError("),
        "{old_rows:?}"
    );
    let new_rows = rows("results");
    assert_eq!(new_rows.len(), 1, "{new_rows:?}");
    assert_eq!(new_rows[0][1], "pass");
}

/// `CommandExecutor` over a connection that breaks mid-test writes an `infra` line and
/// returns the connection error (a lost remote), instead of losing the test.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn command_executor_records_infra_when_the_link_is_cut() {
    let host = NetnsHost::start();
    let tmp = tempfile::tempdir().unwrap();
    let flag = signal_dir(tmp.path()).join("started");
    let conn = SshConnection::connect(host.config().keepalive(Duration::from_secs(1), 2))
        .await
        .unwrap();
    let mut exec = CommandExecutor::new(Arc::new(conn)).with_test(
        "/sleep",
        [
            "sh".to_string(),
            "-c".to_string(),
            format!("echo started; touch {}; exec sleep 304", flag.display()),
        ],
    );
    let scope = Scope::root("cut");
    let artifacts = tempfile::tempdir().unwrap();
    let run = exec.run_test("/sleep", artifacts.path(), &scope);
    let cutter = async {
        wait_for_file(&flag, "the test").await;
        host.cut();
    };
    let (res, ()) = tokio::join!(run, cutter);
    host.restore();
    match res {
        Err(e @ ExecutorError::Connection { .. }) => {
            // The lost connection is the executor error's source, as it is: the scheduler
            // recognises a lost remote by walking the chain.
            let source = std::error::Error::source(&e)
                .and_then(|s| s.downcast_ref::<atex::connection::ConnectionError>());
            assert!(source.is_some_and(|c| c.is_disconnect()), "{e:?}");
            assert!(e.is_remote_lost(), "{e:?}");
            let text = format!("{:#}", atex::error::chain(&e));
            assert!(
                text.starts_with("the connection failed during test '/sleep'")
                    && text.contains("\n  caused by: ssh ")
                    && text.contains("connection lost while running `sh -c"),
                "{text}"
            );
        }
        other => panic!("unexpected {other:?}"),
    }
    let line: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(artifacts.path().join("results")).expect("a results line"),
    )
    .unwrap();
    assert_eq!(line["status"], "infra");
    assert_eq!(line["files"], serde_json::json!(["output.txt"]));
    assert!(
        line["note"]
            .as_str()
            .unwrap_or_default()
            .starts_with("the connection failed while the test ran:"),
        "{line}"
    );
    assert_eq!(
        std::fs::read_to_string(artifacts.path().join("files/output.txt")).unwrap(),
        "started\n"
    );
}
