//! BeakerLib tests over SSH against a real OpenSSH sshd, with the real BeakerLib: a
//! system without BeakerLib (hidden in sshd's mount namespace) gets it installed from the
//! upstream archive (`--beakerlib-from`) and runs the mixed tree; where it cannot be
//! installed each BeakerLib test gets one `infra` result naming what was tried while shell
//! tests run on; a BeakerLib test calling `tmt-reboot` between phases on a netns host that
//! the harness power-cycles.
//! Needs root, openssh-server, openssh-client, iproute2, make, patch and perl.

#![cfg(feature = "ssh")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use atex::connection::LocalConnection;
use atex::connection::ssh::SshConnection;
use atex::executor::Executor;
use atex::executor::beakerlib::BeakerlibFramework;
use atex::executor::fmf::{FmfExecutor, FmfOptions, FmfPlan, FmfTest};
use atex::scope::{Scope, ShutdownOptions};
use support::beakerlib::{check_mixed_results, rows, rows_of, tarball, write_mixed_tree};
use support::sshd::{NetnsHost, Sshd, SshdFiles, TEST_USER};

/// An sshd whose sessions see no BeakerLib: an empty tmpfs over `/usr/share/beakerlib`
/// in its private mount namespace (what a root session installs there stays private).
fn sshd_without_beakerlib() -> Sshd {
    std::fs::create_dir_all("/usr/share/beakerlib").unwrap();
    let mut files = SshdFiles::new();
    files.setup = "mount -t tmpfs -o mode=0755 tmpfs /usr/share/beakerlib".into();
    Sshd::start_with(files)
}

fn hosts_file(dir: &Path, sshd: &Sshd, user: &str) -> PathBuf {
    let path = dir.join("hosts");
    std::fs::write(
        &path,
        format!(
            "{user}@127.0.0.1:{} {}\n",
            sshd.port,
            sshd.files.client_key.display()
        ),
    )
    .unwrap();
    path
}

fn atex_run_ssh(tree: &Path, sshd: &Sshd, user: &str, results: &Path) -> std::process::Output {
    let hosts = hosts_file(results.parent().unwrap(), sshd, user);
    Command::new(env!("CARGO_BIN_EXE_atex"))
        .args(["-q", "run", "--platform", "ssh"])
        .arg(tree)
        .arg("--provisioner")
        .arg(format!("ssh:{}", hosts.display()))
        .arg("--ssh-known-hosts")
        .arg(&sshd.files.known_hosts)
        .arg("--results")
        .arg(results)
        .arg("--beakerlib-from")
        .arg(tarball())
        .output()
        .unwrap()
}

#[test]
fn a_mixed_tree_over_ssh_gets_beakerlib_from_the_archive() {
    let sshd = sshd_without_beakerlib();
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tree");
    write_mixed_tree(&tree);
    let results = tmp.path().join("results");
    let out = atex_run_ssh(&tree, &sshd, "root", &results);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    check_mixed_results(&results, "ssh");
}

#[test]
fn missing_beakerlib_is_one_infra_result_naming_what_was_tried() {
    let sshd = sshd_without_beakerlib();
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tree");
    std::fs::create_dir_all(tree.join(".fmf")).unwrap();
    std::fs::write(tree.join(".fmf/version"), "1\n").unwrap();
    std::fs::write(
        tree.join("main.fmf"),
        "/shell:\n    test: echo fine\n\
         /bl1:\n    framework: beakerlib\n    test: . /usr/share/beakerlib/beakerlib.sh\n\
         /bl2:\n    framework: beakerlib\n    test: . /usr/share/beakerlib/beakerlib.sh\n",
    )
    .unwrap();
    let results = tmp.path().join("results");
    // Not root: neither `make install` nor the package manager can install BeakerLib.
    let out = atex_run_ssh(&tree, &sshd, TEST_USER, &results);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows = rows(&results);
    let all = format!("{rows:#?}");
    assert_eq!(rows_of(&rows, "/shell").len(), 1, "{all}");
    assert_eq!(rows_of(&rows, "/shell")[0].1, "pass", "{all}");
    for test in ["/bl1", "/bl2"] {
        let mine: Vec<&serde_json::Value> = rows.iter().filter(|r| r[2] == test).collect();
        assert_eq!(mine.len(), 1, "{all}");
        assert_eq!(mine[0][1], "infra", "{all}");
        let note = mine[0][5].as_str().unwrap();
        assert!(
            note.starts_with("TestSetupError(the system is not ready for beakerlib tests: ")
                && note.contains("/usr/share/beakerlib/beakerlib.sh is missing")
                && note.contains(&format!("from {}: ", tarball().display()))
                && note.contains("make install failed")
                && note.contains("the package 'beakerlib': "),
            "{note}"
        );
    }
}

/// Installs BeakerLib on this machine (the netns host shares its file system) through
/// the executor itself, as `--beakerlib-from` does; a no-op once it is there.
async fn install_beakerlib_here() {
    let tree = tempfile::tempdir().unwrap();
    let mut test = FmfTest::new("/installed", "test -f /usr/share/beakerlib/beakerlib.sh");
    test.metadata = serde_json::json!({"framework": "beakerlib"});
    let scope = Scope::root("install-beakerlib");
    let mut exec = FmfExecutor::new(
        Arc::new(LocalConnection::new()),
        tree.path(),
        [test],
        FmfPlan::default(),
    )
    .with_options(FmfOptions::default())
    .with_framework(Arc::new(BeakerlibFramework::new().from_path(tarball())));
    exec.start(&scope).await.unwrap();
    let artifacts = tempfile::tempdir().unwrap();
    let res = exec.run_test("/installed", artifacts.path(), &scope).await;
    exec.stop(&scope).await.unwrap();
    assert_eq!(res.unwrap().exit_code, 0);
}

/// A BeakerLib test that calls `tmt-reboot` between phases on a host that the harness
/// power-cycles: the phases after the reboot run once, with `TMT_REBOOT_COUNT=1`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tmt_reboot_between_beakerlib_phases_over_ssh() {
    install_beakerlib_here().await;
    let mut host = NetnsHost::start();
    let tmp = tempfile::tempdir().unwrap();
    let signals = tmp.path().join("signals");
    std::fs::create_dir(&signals).unwrap();
    std::fs::set_permissions(
        &signals,
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    let flag = signals.join("rebooting");
    let after = signals.join("after");
    let script = format!(
        ". /usr/share/beakerlib/beakerlib.sh || exit 1\n\
         rlJournalStart\n\
         if [ \"$TMT_REBOOT_COUNT\" = 0 ]; then\n\
           rlPhaseStartSetup Before\n  rlRun true\n  rlPhaseEnd\n\
           rlPhaseStartTest Reboot\n  rlRun \"tmt-reboot -c 'touch {flag}'\"\n  rlPhaseEnd\n\
         fi\n\
         rlPhaseStartTest After\n\
           rlAssertEquals 'rebooted once' \"$TMT_REBOOT_COUNT\" 1\n\
           rlRun 'echo after >> {after}'\n\
         rlPhaseEnd\n\
         rlJournalEnd\n",
        flag = flag.display(),
        after = after.display()
    );
    let mut test = FmfTest::new("/reboot", script);
    test.metadata = serde_json::json!({"framework": "beakerlib"});
    test.duration = Some("3m".into());
    let tree = tmp.path().join("tree");
    std::fs::create_dir(&tree).unwrap();
    let conn = Arc::new(SshConnection::new(
        host.config().reconnect_timeout(Duration::from_secs(60)),
    ));
    let scope = Scope::root("beakerlib-reboot");
    let mut exec = FmfExecutor::new(conn, &tree, [test], FmfPlan::default())
        .with_options(FmfOptions::default())
        .with_framework(Arc::new(BeakerlibFramework::new()));
    exec.start(&scope).await.unwrap();
    let artifacts = tempfile::tempdir().unwrap();
    let run = exec.run_test("/reboot", artifacts.path(), &scope);
    let reboot = async {
        support::wait_until_async(Duration::from_secs(120), "tmt-reboot's command", || {
            flag.exists()
        })
        .await;
        // The "host" goes down (every process in its PID namespace dies) and comes back.
        host.power_off();
        host.start_sshd();
    };
    let (outcome, ()) = tokio::join!(run, reboot);
    let results = std::fs::read_to_string(artifacts.path().join("results")).unwrap();
    let output =
        std::fs::read_to_string(artifacts.path().join("files/output.txt")).unwrap_or_default();
    assert_eq!(outcome.unwrap().exit_code, 0, "{results}\n{output}");
    assert_eq!(
        results,
        "{\"status\": \"pass\", \"name\": \"Before\"}\n\
         {\"status\": \"pass\", \"name\": \"After\"}\n\
         {\"status\": \"pass\", \"files\": [\"output.txt\"]}\n",
        "{output}"
    );
    assert_eq!(std::fs::read_to_string(&after).unwrap(), "after\n");
    exec.stop(&scope).await.unwrap();
    let report = scope.shutdown(ShutdownOptions::default()).await;
    assert!(report.is_clean(), "{report:?}");
}
