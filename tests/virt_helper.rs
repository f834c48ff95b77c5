//! The shared VM host helper (`atex virt-helper`) and its client, for real: spawned
//! locally and over the private sshd, against a private libvirt with persistent domains.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use atex::connection::{ErrOutput, LocalConnection, SshConnection};
use atex::scope::{Scope, ShutdownOptions};
use atex::virt::helper::{HelperClient, HelperError, PONG};
use serde_json::json;
use support::sshd::Sshd;
use support::virt::{ORIGIN, VirtHost};

fn helper_argv(host: &VirtHost, state: &std::path::Path) -> Vec<String> {
    vec![
        support::built_binary("atex").to_string_lossy().into_owned(),
        "virt-helper".into(),
        host.uri.clone(),
        "--state-dir".into(),
        state.to_string_lossy().into_owned(),
    ]
}

/// A state directory the test user can write.
fn state_dir(host: &VirtHost) -> std::path::PathBuf {
    let d = host.dir.path().join("helper-state");
    std::fs::create_dir_all(&d).unwrap();
    let ok = std::process::Command::new("chown")
        .arg(&host.user)
        .arg(&d)
        .status()
        .unwrap();
    assert!(ok.success());
    d
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_clients_never_share_a_domain_and_a_killed_client_frees_its_own() {
    let host = VirtHost::start();
    host.define_origin("shared-2");
    let state = state_dir(&host);
    let scope = Scope::root("helper");
    let local = LocalConnection::new();
    let a = HelperClient::spawn(&local, helper_argv(&host, &state), ErrOutput::Null, &scope)
        .await
        .expect("helper a");
    let b = HelperClient::spawn(&local, helper_argv(&host, &state), ErrOutput::Null, &scope)
        .await
        .expect("helper b");
    a.set_name("run-a", &scope).await.unwrap();
    let da = a.reserve(None, &scope).await.unwrap();
    let db = b.reserve(None, &scope).await.unwrap();
    assert_ne!(da, db, "two sessions got the same domain");
    let all: BTreeSet<String> = [da.clone(), db.clone()].into();
    assert_eq!(all, [ORIGIN.to_string(), "shared-2".to_string()].into());
    // Both are taken now.
    let err = a.reserve(None, &scope).await.unwrap_err();
    assert!(err.is_no_domain_free(), "{err}");
    let err = b.reserve(Some("nothing-.*"), &scope).await.unwrap_err();
    assert!(
        err.to_string().contains("no domain matches the filter"),
        "{err}"
    );
    let seen = b.reservations(&scope).await.unwrap();
    assert_eq!(seen[&da], "run-a");
    assert_eq!(seen[&db], "(reserved for us)");
    // virsh through the helper; errors quote virsh.
    assert_eq!(
        a.virsh(&["domstate", &da], &scope).await.unwrap(),
        "shut off\n"
    );
    let err = a.virsh(&["domstate", "nope"], &scope).await.unwrap_err();
    assert!(
        err.to_string().contains("failed to get domain 'nope'"),
        "{err}"
    );
    // Protocol errors keep the session alive.
    for (req, want) in [
        (json!({"cmd": "bogus"}), "invalid cmd: 'bogus'"),
        (
            json!({"cmd": "release"}),
            "missing argument for cmd 'release': domain",
        ),
        (
            json!({"cmd": "ping", "x": 1}),
            "leftover arguments for cmd 'ping': {\"x\":1}",
        ),
        (
            json!({"cmd": "release", "domain": "nope"}),
            "domain not locked",
        ),
    ] {
        match a.request(req, None, &scope).await {
            Err(HelperError::Failed { reply, .. }) => assert_eq!(reply, want),
            other => panic!("{other:?}"),
        }
    }
    let path = a.upload("ks.cfg", b"text\n", &scope).await.unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), b"text\n");
    let err = a.upload("../x", b"abc", &scope).await.unwrap_err();
    assert!(err.to_string().contains("invalid file name"), "{err}");
    assert_eq!(
        a.request(json!({"cmd": "ping"}), None, &scope)
            .await
            .unwrap()["reply"],
        PONG
    );
    // Releasing hands the domain over.
    b.release(&db, &scope).await.unwrap();
    assert_eq!(a.reserve(None, &scope).await.unwrap(), db);
    a.release(&db, &scope).await.unwrap();
    // Killing a's helper (its client crashed) frees a's domain for b.
    drop(a);
    let deadline = Instant::now() + Duration::from_secs(10);
    let got = loop {
        match b.reserve(Some(&da), &scope).await {
            Ok(d) => break d,
            Err(e) if e.is_no_domain_free() && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("{e}"),
        }
    };
    assert_eq!(got, da);
    b.close(Duration::from_secs(5)).await;
    assert!(scope.shutdown(ShutdownOptions::default()).await.is_clean());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helper_over_ssh_and_a_dropped_connection_releases() {
    let host = VirtHost::start();
    let state = state_dir(&host);
    let sshd = Sshd::start();
    let scope = Scope::root("helper-ssh");
    let conn = SshConnection::connect(sshd.config()).await.expect("ssh");
    let remote = HelperClient::spawn(&conn, helper_argv(&host, &state), ErrOutput::Null, &scope)
        .await
        .expect("helper over ssh");
    remote.set_name("ssh-run", &scope).await.unwrap();
    let d = remote.reserve(None, &scope).await.unwrap();
    assert_eq!(d, ORIGIN);
    let local = LocalConnection::new();
    let other = HelperClient::spawn(&local, helper_argv(&host, &state), ErrOutput::Null, &scope)
        .await
        .unwrap();
    assert_eq!(other.reservations(&scope).await.unwrap()[ORIGIN], "ssh-run");
    assert!(
        other
            .reserve(None, &scope)
            .await
            .unwrap_err()
            .is_no_domain_free()
    );
    // The client's connection drops (a crashed run): the helper's stdin ends, it exits,
    // its lock goes with it.
    drop(remote);
    drop(conn);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match other.reserve(None, &scope).await {
            Ok(got) => {
                assert_eq!(got, ORIGIN);
                break;
            }
            Err(e) if e.is_no_domain_free() && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("{e}"),
        }
    }
    // A helper that is gone is reported as such.
    let argv = vec!["sh".to_string(), "-c".into(), "read x; exit 3".into()];
    let err = HelperClient::spawn(&local, argv, ErrOutput::Null, &scope)
        .await
        .unwrap_err();
    assert!(matches!(err, HelperError::Died { .. }), "{err:?}");
    assert!(err.to_string().contains("exit"), "{err}");
    other.close(Duration::from_secs(5)).await;
    assert!(scope.shutdown(ShutdownOptions::default()).await.is_clean());
}

/// SIGTERM (how a client stops its helper, and how `evict` ends another session) ends the
/// session cleanly: exit 0 and its temporary directory removed.
#[test]
fn sigterm_ends_a_helper_session_and_removes_its_directory() {
    use std::io::{BufRead, BufReader, Write};
    use std::process::{Command, Stdio};
    let state = tempfile::tempdir().unwrap();
    let mut child = Command::new(support::built_binary("atex"))
        .args(["virt-helper", "--state-dir"])
        .arg(state.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(b"{\"cmd\": \"upload\", \"name\": \"f\", \"length\": 3}\nabc")
        .unwrap();
    stdin.flush().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let reply: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(reply["success"], true, "{line}");
    let path = std::path::PathBuf::from(reply["path"].as_str().unwrap());
    assert_eq!(std::fs::read(&path).unwrap(), b"abc");
    let session_dir = path.parent().unwrap().to_path_buf();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the helper ignored SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    drop(stdin);
    assert_eq!(status.code(), Some(0), "{status:?}");
    assert!(
        !session_dir.exists(),
        "{} left behind",
        session_dir.display()
    );
}

/// `atex shvirt local release DOMAIN` frees a domain another session holds: that session's
/// helper is ended (its client sees it gone), the domain can be reserved again, and a free
/// domain is simply reported as such.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shvirt_release_frees_a_domain_another_session_holds() {
    let host = VirtHost::start();
    let state = state_dir(&host);
    let scope = Scope::root("evict");
    let local = LocalConnection::new();
    let argv = helper_argv(&host, &state);
    let holder = HelperClient::spawn(&local, argv.clone(), ErrOutput::Null, &scope)
        .await
        .expect("holder");
    holder.set_name("stuck-run", &scope).await.unwrap();
    assert_eq!(holder.reserve(None, &scope).await.unwrap(), ORIGIN);
    let release = || {
        std::process::Command::new(support::built_binary("atex"))
            .args([
                "shvirt",
                "local",
                "--helper",
                &argv.join(" "),
                "release",
                ORIGIN,
            ])
            .output()
            .unwrap()
    };
    let out = release();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(stdout.contains(&format!("{ORIGIN} released")), "{stdout}");
    // The holder's session is over.
    let err = holder.reservations(&scope).await.unwrap_err();
    assert!(matches!(err, HelperError::Died { .. }), "{err:?}");
    let other = HelperClient::spawn(&local, argv.clone(), ErrOutput::Null, &scope)
        .await
        .unwrap();
    assert_eq!(other.reservations(&scope).await.unwrap()[ORIGIN], "(free)");
    // Releasing a free domain says so, and succeeds.
    let out = release();
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("was not reserved"));
    assert_eq!(other.reserve(None, &scope).await.unwrap(), ORIGIN);
    other.close(Duration::from_secs(5)).await;
    // A holder that is not a helper (here this test process) is never signalled.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(state.join("locks").join(ORIGIN))
        .unwrap();
    let lock = nix::libc::flock {
        l_type: nix::libc::F_WRLCK as nix::libc::c_short,
        l_whence: nix::libc::SEEK_SET as nix::libc::c_short,
        l_start: 0,
        l_len: 0,
        l_pid: 0,
    };
    nix::fcntl::fcntl(
        std::os::fd::AsFd::as_fd(&file),
        nix::fcntl::FcntlArg::F_SETLK(&lock),
    )
    .unwrap();
    let out = release();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("not an atex virt-helper"), "{stderr}");
    drop(file);
    drop(holder);
    assert!(scope.shutdown(ShutdownOptions::default()).await.is_clean());
}
