//! The transient VM provisioner for real (private libvirt, QEMU TCG): the provisioner and
//! remote conformance suites; `atex run --provisioner virt:` on two clones with a test that
//! really reboots its VM; SIGINT during boot and during tests, SIGKILL then `atex virt
//! cleanup`; errors (unknown origin, no libvirt, no address) exit 2 with nothing left;
//! `atex virt reserve` holds a clone until Ctrl-C.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use atex::connection::ssh::{HostKeyPolicy, SshConfig};
use atex::connection::{CommandSpec, ConnectionExt, LocalConnection, SshConnection};
use atex::provisioner::{Provisioner, TempVirtProvisioner};
use atex::scope::{Scope, ShutdownOptions};
use atex::testing::conformance::provisioner::{self, ProvisionerTarget};
use atex::testing::conformance::remote;
use atex::virt::{CloneConfig, Virsh};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use support::virt::{ORIGIN, POOL, VirtHost, guest};

/// Distinct port ranges for the provisioners of one test process, so that concurrent
/// provisioners never race for a port.
fn ports(n: u16) -> std::ops::RangeInclusive<u16> {
    static NEXT: AtomicU16 = AtomicU16::new(21000);
    let start = NEXT.fetch_add(n, Ordering::SeqCst);
    start..=start + n - 1
}

fn provisioner(host: &VirtHost, run: &str, max: usize) -> Arc<dyn Provisioner> {
    let virsh = Virsh::new(Arc::new(LocalConnection::new()), Some(host.uri.clone()));
    let mut cfg = CloneConfig::new(ORIGIN, POOL, run, guest().key());
    cfg.isolated = true;
    cfg.boot_timeout = Duration::from_secs(240);
    cfg.ports = ports(20);
    Arc::new(TempVirtProvisioner::new(virsh, cfg, max))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tempvirt_provisioner_conforms() {
    let host = Arc::new(VirtHost::start());
    let scope = Scope::root("conformance");
    let (h1, h2) = (host.clone(), host.clone());
    // Every check boots fresh clones (one after another in the cancel-safety check):
    // generous deadlines under TCG on a shared machine.
    let target = ProvisionerTarget::new(move || provisioner(&h1, "conf", 2), &scope)
        .limited(move || provisioner(&h2, "conf1", 1))
        .capacity(2)
        .deadline(Duration::from_secs(900));
    // The two suites at once: each keeps at most two clones running.
    let (p, r) = tokio::join!(provisioner::all(&target), remote::all(&target));
    p.assert_passed();
    r.assert_passed();
    assert!(scope.shutdown(ShutdownOptions::default()).await.is_clean());
    host.assert_clean(&[ORIGIN]);
}

fn atex() -> Command {
    Command::new(support::built_binary("atex"))
}

/// `(name, status)` of every row of a results directory.
fn verdicts(results: &Path) -> BTreeMap<String, String> {
    std::fs::read_to_string(results.join("results.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let row: serde_json::Value = serde_json::from_str(l).unwrap();
            (
                row[2].as_str().unwrap().to_string(),
                row[1].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// The text of every file of the results directory whose path contains `needle`.
fn files_of(results: &Path, needle: &str) -> String {
    let mut out = String::new();
    let mut stack = vec![results.join("files")];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.to_string_lossy().contains(needle) {
                let text = std::fs::read_to_string(&p).unwrap_or_default();
                out.push_str(&format!("--- {}\n{text}\n", p.display()));
            }
        }
    }
    out
}

/// `atex run` arguments of the `virt:` provisioner on `host`.
fn virt_args(host: &VirtHost, remotes: u32) -> Vec<String> {
    let r = ports(20);
    vec![
        "--provisioner".into(),
        format!("virt:{ORIGIN}"),
        "--remotes".into(),
        remotes.to_string(),
        "--virt-connect".into(),
        host.uri.clone(),
        "--virt-pool".into(),
        POOL.into(),
        "--virt-key".into(),
        guest().key().to_string_lossy().into_owned(),
        "--virt-isolated".into(),
        "--virt-ports".into(),
        format!("{}-{}", r.start(), r.end()),
    ]
}

const REBOOT_TEST: &str = r#"    test: |
        boot=$(cat /proc/sys/kernel/random/boot_id)
        echo "reboot count $TMT_REBOOT_COUNT, boot $boot"
        if [ "$TMT_REBOOT_COUNT" = 0 ]; then
            echo "$boot" > /var/tmp/boot0
            echo disconnect >&$ATEX_TEST_CONTROL
            # Wait until atex closed the channel (EPIPE, not SIGPIPE), then reboot.
            trap '' PIPE
            while echo noop >&$ATEX_TEST_CONTROL; do sleep 0.1; done 2>/dev/null
            reboot
            sleep 600
        fi
        test "$TMT_REBOOT_COUNT" = 1 && test "$(cat /var/tmp/boot0)" != "$boot"
    duration: 5m
"#;

#[test]
fn atex_run_on_two_clones_matches_local_and_reboots_for_real() {
    let host = VirtHost::start();
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tree");
    let mut fmf = String::from(
        "/pass:\n    test: echo hello; uname -r\n/fail:\n    test: echo bad; exit 1\n/reboot:\n",
    );
    fmf.push_str(REBOOT_TEST);
    support::write_tree(&tree, &fmf);
    // Locally (without the reboot test) for comparison.
    let local = tmp.path().join("local");
    let out = atex()
        .args(["-q", "run"])
        .arg(&tree)
        .args(["--exclude", "reboot", "--results"])
        .arg(&local)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let started = Instant::now();
    let vms = tmp.path().join("vms");
    let out = atex()
        .args(["-q", "run"])
        .arg(&tree)
        .args(virt_args(&host, 2))
        .arg("--results")
        .arg(&vms)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("atex run on 2 clones: {:?}", started.elapsed());
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let mut on_vms = verdicts(&vms);
    assert_eq!(
        on_vms.remove("/tests/reboot").as_deref(),
        Some("pass"),
        "{on_vms:?} {stderr}\n{}",
        files_of(&vms, "reboot")
    );
    assert_eq!(on_vms, verdicts(&local));
    host.assert_clean(&[ORIGIN]);
}

/// The transient provisioner as root on `qemu:///system` (a privileged libvirtd: QEMU
/// runs as libvirt-qemu, the overlays and the origin's files are relabelled for it):
/// `atex run` with the URI given by `--virt-connect` on two clones, and at the same time
/// another with the URI in `LIBVIRT_DEFAULT_URI` on one clone; both get the local results,
/// and nothing is left afterwards.
#[test]
fn atex_run_as_root_on_qemu_system() {
    let host = VirtHost::start_system();
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tree");
    support::write_tree(
        &tree,
        "/pass:\n    test: echo hello; test \"$(id -u)\" = 0\n/fail:\n    test: echo bad; exit 1\n",
    );
    let local = tmp.path().join("local");
    let out = atex()
        .args(["-q", "run"])
        .arg(&tree)
        .arg("--results")
        .arg(&local)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let by_option = tmp.path().join("option");
    let mut option = atex()
        .args(["-q", "run"])
        .arg(&tree)
        .args(virt_args(&host, 2))
        .arg("--results")
        .arg(&by_option)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut args = virt_args(&host, 1);
    let at = args.iter().position(|a| a == "--virt-connect").unwrap();
    args.drain(at..at + 2);
    let by_env = tmp.path().join("env");
    let mut env = atex()
        .env("LIBVIRT_DEFAULT_URI", &host.uri)
        .args(["-q", "run"])
        .arg(&tree)
        .args(args)
        .arg("--results")
        .arg(&by_env)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The clones' QEMU runs as libvirt-qemu, not as root.
    host.wait_until(Duration::from_secs(120), "a clone's QEMU", || {
        !host.qemu_processes().is_empty()
    });
    let qemu_uid: u32 = String::from_utf8(
        Command::new("id")
            .args(["-u", "libvirt-qemu"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap()
    .trim()
    .parse()
    .unwrap();
    for pid in host.qemu_processes() {
        if let Some(uid) = VirtHost::process_uid(pid) {
            assert_eq!(uid, qemu_uid, "QEMU {pid} does not run as libvirt-qemu");
        }
    }
    let wait = |child: &mut Child, what: &str| {
        let mut stderr = String::new();
        std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
        let status = child.wait().unwrap();
        assert_eq!(status.code(), Some(1), "{what}: {stderr}\n{}", host.log());
    };
    wait(&mut option, "--virt-connect");
    wait(&mut env, "LIBVIRT_DEFAULT_URI");
    assert_eq!(verdicts(&by_option), verdicts(&local));
    assert_eq!(verdicts(&by_env), verdicts(&local));
    host.assert_clean(&[ORIGIN]);
}

/// Starts `atex run` of `tree` on one clone with stderr piped.
fn spawn_run(host: &VirtHost, tree: &Path, results: &Path, extra: &[&str]) -> Child {
    atex()
        .args(["run"])
        .arg(tree)
        .args(virt_args(host, 1))
        .args(extra)
        .arg("--results")
        .arg(results)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Sends `signal` and waits (at most 20 s) for the exit code.
fn signal_and_wait(child: &mut Child, signal: Signal) -> Option<i32> {
    kill(Pid::from_raw(child.id() as i32), signal).unwrap();
    let sent = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code();
        }
        assert!(
            sent.elapsed() < Duration::from_secs(20),
            "atex still running 20 s after {signal}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn interrupted_and_killed_runs_leave_nothing() {
    let host = VirtHost::start();
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tree");
    support::write_tree(
        &tree,
        "/quick:\n    test: echo quick\n/slow:\n    test: sleep 600\n    duration: 20m\n",
    );
    let clone_running = || {
        host.domains().iter().any(|d| d.starts_with("atex-")) && !host.qemu_processes().is_empty()
    };

    // SIGINT while the clone boots.
    let mut child = spawn_run(&host, &tree, &tmp.path().join("r1"), &[]);
    host.wait_until(Duration::from_secs(120), "a clone to start", clone_running);
    assert_eq!(signal_and_wait(&mut child, Signal::SIGINT), Some(130));
    host.assert_clean(&[ORIGIN]);

    // SIGINT while the tests run.
    let r2 = tmp.path().join("r2");
    let mut child = spawn_run(&host, &tree, &r2, &[]);
    support::wait_until(Duration::from_secs(300), "the quick test's result", || {
        std::fs::read_to_string(r2.join("results.jsonl"))
            .is_ok_and(|t| t.contains("\"/tests/quick\""))
    });
    assert_eq!(signal_and_wait(&mut child, Signal::SIGINT), Some(130));
    host.assert_clean(&[ORIGIN]);
    let v = verdicts(&r2);
    assert_eq!(v["/tests/quick"], "pass");
    assert_eq!(v.get("/tests/slow").map(String::as_str), Some("infra"));

    // SIGKILL leaves the clone; `atex virt cleanup` removes it.
    let mut child = spawn_run(&host, &tree, &tmp.path().join("r3"), &[]);
    host.wait_until(Duration::from_secs(120), "a clone to start", clone_running);
    assert_eq!(signal_and_wait(&mut child, Signal::SIGKILL), None);
    assert!(!host.domains().iter().all(|d| d == ORIGIN));
    let out = atex()
        .args(["virt", "cleanup", "--connect", &host.uri, "--pool", POOL])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    host.assert_clean(&[ORIGIN]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_exit_2_leaving_nothing_and_reserve_holds_until_ctrl_c() {
    let host = VirtHost::start();
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tree");
    support::write_tree(&tree, "/quick:\n    test: echo quick\n");
    let run = |name: &str, args: Vec<String>| {
        atex()
            .args(["-q", "run"])
            .arg(&tree)
            .args(args)
            .arg("--results")
            .arg(tmp.path().join(name))
            .output()
            .unwrap()
    };
    // An unknown origin.
    let mut args = virt_args(&host, 1);
    args[1] = "virt:nope".into();
    let out = run("unknown", args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("origin domain 'nope' does not exist"),
        "{stderr}"
    );
    // No libvirt daemon behind the URI.
    let mut args = virt_args(&host, 1);
    let gone = "qemu:///session?socket=/nonexistent/libvirt-sock";
    args[5] = gone.into();
    let out = run("nolibvirt", args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("/nonexistent/libvirt-sock"), "{stderr}");
    // A clone that never answers in time (its sshd is not up after 1 s).
    let mut args = virt_args(&host, 1);
    args.extend(["--virt-boot-timeout".into(), "1".into()]);
    let out = run("noaddress", args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("never became reachable") && stderr.contains("atex-"),
        "{stderr}"
    );
    host.assert_clean(&[ORIGIN]);
    // A missing key is a usage error before anything starts.
    let mut args = virt_args(&host, 1);
    args[9] = "/nonexistent/key".into();
    let out = run("nokey", args);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/key"));

    // `atex virt reserve` interrupted while its clone boots: 130, nothing left.
    let reserve = |ports: &std::ops::RangeInclusive<u16>| {
        let mut cmd = atex();
        cmd.args([
            "virt",
            "reserve",
            ORIGIN,
            "--connect",
            &host.uri,
            "--pool",
            POOL,
        ])
        .arg("--key")
        .arg(guest().key())
        .args([
            "--isolated",
            "--ports",
            &format!("{}-{}", ports.start(), ports.end()),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
        cmd
    };
    let mut child = reserve(&ports(20)).spawn().unwrap();
    host.wait_until(Duration::from_secs(120), "the clone to start", || {
        host.domains().iter().any(|d| d.starts_with("atex-")) && !host.qemu_processes().is_empty()
    });
    assert_eq!(signal_and_wait(&mut child, Signal::SIGINT), Some(130));
    host.assert_clean(&[ORIGIN]);

    // `atex virt reserve`: prints the ssh command, the clone answers, Ctrl-C destroys it.
    let r = ports(20);
    let mut child = reserve(&r).spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let ssh_line = loop {
        let line = lines
            .next()
            .expect("reserve printed no ssh command")
            .unwrap();
        if line.trim_start().starts_with("ssh ") {
            break line;
        }
    };
    let words: Vec<&str> = ssh_line.split_whitespace().collect();
    let port: u16 = words[words.iter().position(|w| *w == "-p").unwrap() + 1]
        .parse()
        .unwrap();
    assert!(r.contains(&port), "{ssh_line}");
    assert_eq!(*words.last().unwrap(), "root@127.0.0.1");
    let scope = Scope::root("reserve");
    let conn = SshConnection::connect(
        SshConfig::new("127.0.0.1")
            .port(port)
            .user("root")
            .key_file(guest().key())
            .host_key_policy(HostKeyPolicy::Insecure),
    )
    .await
    .expect("ssh to the reserved clone");
    let out = conn
        .check(CommandSpec::new(["echo", "reserved"]), &scope)
        .await
        .unwrap();
    assert_eq!(out.stdout_lossy(), "reserved\n");
    atex::connection::Connection::disconnect(&conn).await;
    assert_eq!(signal_and_wait(&mut child, Signal::SIGINT), Some(0));
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(rest.iter().any(|l| l.contains("destroyed")), "{rest:?}");
    host.assert_clean(&[ORIGIN]);
    assert!(scope.shutdown(ShutdownOptions::default()).await.is_clean());
}
