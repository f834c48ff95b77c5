//! FMF tests over SSH against a real OpenSSH sshd: `atex run --provisioner ssh:…`, SIGINT
//! during such a run, and a reboot (sshd killed and restarted) after `disconnect`.
//! Needs root, openssh-server, openssh-client, iproute2.

#![cfg(feature = "ssh")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use atex::connection::ssh::SshConnection;
use atex::executor::Executor;
use atex::executor::fmf::{FmfExecutor, FmfPlan, FmfTest};
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
    assert!(text.contains("\"error\""), "{text}");
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
