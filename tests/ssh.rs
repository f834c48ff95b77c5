//! SshConnection against a real OpenSSH sshd (see tests/support/sshd.rs). Needs root,
//! openssh-server, openssh-client, iproute2.

#![cfg(feature = "ssh")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use atex::connection::ssh::{HostKeyPolicy, SshConnection};
use atex::connection::{CommandSpec, Connection, ConnectionError, ConnectionExt};
use atex::process::ExitStatus;
use atex::scope::{Scope, ShutdownOptions};
use atex::testing::conformance::connection::{self, ConnectionTarget};
use atex::testing::conformance::provisioner::{self, ProvisionerTarget};
use atex::testing::conformance::{Report, remote};
use support::sshd::{NetnsHost, Sshd, SshdFiles, TEST_USER};
use tokio::io::AsyncReadExt;

fn cmd<const N: usize>(argv: [&str; N]) -> CommandSpec {
    CommandSpec::new(argv)
}

/// Whether a process whose command line contains `needle` runs as the test user.
fn remote_alive(needle: &str) -> bool {
    let out = std::process::Command::new("pgrep")
        .args(["-u", TEST_USER, "-f", needle])
        .output()
        .expect("pgrep");
    !out.stdout.is_empty()
}

/// A sleep duration unique to this test run, so that `pgrep` never sees another run's
/// processes.
fn secs(base: u32) -> String {
    format!("{base}{:05}", std::process::id() % 100_000)
}

async fn wait_gone(needle: &str) -> bool {
    for _ in 0..100 {
        if !remote_alive(needle) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// A directory on the sshd's machine (this one) that the test user may fill.
fn remote_scratch() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("atex-conformance-")
        .tempdir()
        .unwrap();
    let st = std::process::Command::new("chown")
        .arg(TEST_USER)
        .arg(dir.path())
        .status()
        .unwrap();
    assert!(st.success());
    dir
}

/// The whole connection conformance suite over SSH (SFTP transfers), and the transfer
/// checks again without SFTP (tar over exec).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssh_connection_conforms() {
    let sshd = Sshd::start();
    let scope = Scope::root("t");
    let conn = SshConnection::connect(sshd.config())
        .await
        .expect("connect");
    let scratch = remote_scratch();
    let target = ConnectionTarget::new(
        Arc::new(conn.clone()),
        scratch.path().display().to_string(),
        &scope,
    );
    connection::all(&target).await.assert_passed();
    conn.disconnect().await;

    let mut files = SshdFiles::new();
    files.sftp = false;
    let no_sftp = Sshd::start_with(files);
    let conn = SshConnection::connect(no_sftp.config())
        .await
        .expect("connect");
    let scratch = remote_scratch();
    let target = ConnectionTarget::new(
        Arc::new(conn.clone()),
        scratch.path().display().to_string(),
        &scope,
    );
    let mut report = Report::new("ssh without sftp");
    let d = Duration::from_secs(120);
    report
        .run("transfer_tree", d, connection::transfer_tree(&target))
        .await;
    report
        .run("transfer_file", d, connection::transfer_file(&target))
        .await;
    report
        .run("transfer_errors", d, connection::transfer_errors(&target))
        .await;
    report.assert_passed();
    let log = no_sftp.log();
    assert!(
        log.contains("subsystem not found") || log.contains("subsystem request for sftp"),
        "{log}"
    );
    conn.disconnect().await;
    assert!(scope.shutdown(ShutdownOptions::default()).await.is_clean());
}

/// What the suite does not cover because it is SSH's own: the description names the host,
/// the command leads its own process group (so that the group can be signalled over
/// another channel), a missing program is exit code 127 from the remote shell.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssh_specific_exec_details() {
    let sshd = Sshd::start();
    let scope = Scope::root("t");
    let conn = SshConnection::connect(sshd.config())
        .await
        .expect("connect");
    assert!(conn.describe().contains("127.0.0.1"));
    let out = conn
        .output(cmd(["sh", "-c", "ps -o pgid= -p $$; echo $$"]), &scope)
        .await
        .unwrap();
    let text = out.stdout_lossy();
    let v: Vec<&str> = text.split_whitespace().collect();
    assert_eq!(v.len(), 2, "{text}");
    assert_eq!(v[0], v[1]);
    let out = conn
        .output(cmd(["/nonexistent/prog"]), &scope)
        .await
        .unwrap();
    assert_eq!(out.status, ExitStatus::Code(127));
    conn.disconnect().await;
    assert!(scope.shutdown(ShutdownOptions::default()).await.is_clean());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unread_channel_does_not_stall_fifty_others() {
    let sshd = Sshd::start();
    let scope = Scope::root("t");
    let conn = SshConnection::connect(sshd.config())
        .await
        .expect("connect");

    // A command whose output nobody reads yet must not stall the others.
    let mut hog = conn
        .spawn(cmd(["head", "-c", "30000000", "/dev/zero"]), &scope)
        .await
        .unwrap();

    let mut tasks = Vec::new();
    for i in 0..50 {
        let conn = conn.clone();
        let scope = scope.clone();
        tasks.push(tokio::spawn(async move {
            let out = conn
                .output(cmd(["sh", "-c", &format!("sleep 0.2; echo {i}")]), &scope)
                .await
                .unwrap();
            (i, out)
        }));
    }
    for t in tasks {
        let (i, out) = t.await.unwrap();
        assert!(out.status.success());
        assert_eq!(out.stdout_lossy().trim(), i.to_string());
    }
    let mut n = 0usize;
    let mut buf = vec![0u8; 1 << 16];
    let mut r = hog.stdout.take().unwrap();
    loop {
        let k = r.read(&mut buf).await.unwrap();
        if k == 0 {
            break;
        }
        n += k;
    }
    assert_eq!(n, 30_000_000);
    assert!(hog.wait().await.unwrap().status.success());
    assert!(scope.shutdown(ShutdownOptions::default()).await.is_clean());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_key_policies() {
    let sshd = Sshd::start();
    // A known_hosts entry with another key: refused under strict and accept-new.
    let other = SshdFiles::new();
    let fields: Vec<String> = other
        .host_pub()
        .split_whitespace()
        .take(2)
        .map(String::from)
        .collect();
    std::fs::write(
        &sshd.files.known_hosts,
        format!(
            "# comment\n[127.0.0.1]:{} {}\n",
            sshd.port,
            fields.join(" ")
        ),
    )
    .unwrap();
    for policy in [HostKeyPolicy::Strict, HostKeyPolicy::AcceptNew] {
        let err = SshConnection::connect(sshd.config().host_key_policy(policy))
            .await
            .expect_err("a changed host key must be refused");
        let msg = atex::error::chain(&err).to_string();
        assert!(msg.contains("HOST KEY MISMATCH"), "{msg}");
        assert!(msg.contains("127.0.0.1"), "{msg}");
        assert!(
            !err.is_disconnect(),
            "a refused key is not a transient failure"
        );
    }

    // Unknown host: strict refuses, accept-new records, then strict accepts.
    let kh = sshd.files.dir.path().join("kh2");
    let err = SshConnection::connect(sshd.config().known_hosts(&kh))
        .await
        .expect_err("unknown host under strict");
    let msg = atex::error::chain(&err).to_string();
    assert!(msg.contains("unknown host key"), "{msg}");
    SshConnection::connect(
        sshd.config()
            .known_hosts(&kh)
            .host_key_policy(HostKeyPolicy::AcceptNew),
    )
    .await
    .expect("accept-new");
    let recorded = std::fs::read_to_string(&kh).unwrap();
    assert!(
        recorded.contains(&format!("[127.0.0.1]:{}", sshd.port)),
        "{recorded}"
    );
    SshConnection::connect(sshd.config().known_hosts(&kh))
        .await
        .expect("strict after accept-new");

    // Insecure accepts anything.
    std::fs::write(
        &kh,
        format!("[127.0.0.1]:{} {}\n", sshd.port, fields.join(" ")),
    )
    .unwrap();
    SshConnection::connect(
        sshd.config()
            .known_hosts(&kh)
            .host_key_policy(HostKeyPolicy::Insecure),
    )
    .await
    .expect("insecure");

    // Wrong user: authentication error naming the user.
    sshd.files.pin("127.0.0.1", sshd.port);
    let err = SshConnection::connect(sshd.config().user("nobody-such-user"))
        .await
        .unwrap_err();
    let msg = atex::error::chain(&err).to_string();
    assert!(msg.contains("authentication"), "{msg}");
}

fn sha256(path: &Path) -> String {
    let out = std::process::Command::new("sha256sum")
        .arg(path)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or("")
        .to_string()
}

/// A 100 MB file through SFTP and back (the suite's trees are small).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_big_file_round_trip_over_sftp() {
    let sshd = Sshd::start();
    let conn = SshConnection::connect(sshd.config())
        .await
        .expect("connect");
    let local = tempfile::tempdir().unwrap();
    let big = local.path().join("big.bin");
    let st = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "head -c 100000000 /dev/urandom > '{}'",
            big.display()
        ))
        .status()
        .unwrap();
    assert!(st.success());
    let remote = remote_scratch();
    let rpath = format!("{}/big.bin", remote.path().display());
    conn.upload(&big, &rpath).await.expect("upload");
    assert_eq!(sha256(&big), sha256(Path::new(&rpath)));
    let back = local.path().join("back/big.bin");
    conn.download(&rpath, &back).await.expect("download");
    assert_eq!(sha256(&big), sha256(&back));
    let err = conn
        .download("/nonexistent/file", &local.path().join("x"))
        .await
        .unwrap_err();
    assert!(matches!(err, ConnectionError::Transfer { .. }), "{err}");
    conn.disconnect().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_spawn_leaves_no_remote_command() {
    let sshd = Sshd::start();
    let root = Scope::root("t");
    let conn = SshConnection::connect(sshd.config())
        .await
        .expect("connect");
    let marker = support::marker("ssh-spawn-cancel");
    let command = || cmd(["sleep", "300"]).env("ATEX_TEST_MARKER", &marker);
    // How long a whole spawn takes here (the machine may be busy): the budgets below go
    // from nothing to well past it.
    let mut took = Vec::new();
    for _ in 0..5 {
        let t = std::time::Instant::now();
        let p = conn.spawn(command(), &root).await.expect("spawn");
        took.push(t.elapsed());
        drop(p);
    }
    took.sort();
    let step = took[2] / 30;
    let (mut started, mut dropped) = (0, 0);
    // The earliest cut, which timeouts cannot be relied on to reach (a timer fires on a
    // millisecond tick, and a whole spawn may take about that long here): the spawn polled
    // once, then dropped. It cannot be done by then: it waits for the server's answer to
    // opening a channel.
    {
        let mut spawn = std::pin::pin!(conn.spawn(command(), &root));
        match futures::poll!(spawn.as_mut()) {
            std::task::Poll::Ready(Ok(p)) => {
                started += 1;
                drop(p);
            }
            std::task::Poll::Ready(Err(e)) => panic!("spawn failed: {e}"),
            std::task::Poll::Pending => dropped += 1,
        }
    }
    // Cut the spawn short at every point of its way: opening the channel, the exec request,
    // the remote shell starting, the group id arriving, and after it returned.
    let mut n = 0u32;
    while n < 60 || (started < 5 && n < 600) {
        let budget = step * n;
        n += 1;
        // The spawn future dropped by a timeout; a process that did start is dropped too.
        match tokio::time::timeout(budget, conn.spawn(command(), &root)).await {
            Ok(Ok(p)) => {
                started += 1;
                drop(p);
            }
            Ok(Err(e)) => panic!("spawn failed: {e}"),
            Err(_) => dropped += 1,
        }
        // The spawn's scope cancelled while it runs in a task.
        let scope = root.child("spawn");
        let task = {
            let (conn, s, spec) = (conn.clone(), scope.clone(), command());
            scope.spawn("spawn", async move { conn.spawn(spec, &s).await })
        };
        tokio::time::sleep(budget).await;
        scope.cancel();
        match task.await.unwrap() {
            Ok(mut p) => {
                started += 1;
                let (info, _) = p.wait_or_terminate(&scope).await.unwrap();
                assert!(!info.status.success(), "{info:?}");
            }
            Err(ConnectionError::Cancelled) => dropped += 1,
            Err(e) => panic!("spawn failed: {e}"),
        }
    }
    assert!(
        started > 0 && dropped > 0,
        "started {started}, dropped {dropped}; whole spawns took {took:?}, budgets went up by {step:?}"
    );
    let report = root.shutdown(ShutdownOptions::default()).await;
    assert!(report.cleanups_failed.is_empty(), "{report:?}");
    let left = tokio::task::spawn_blocking(move || {
        support::wait_no_processes(&marker, Duration::from_secs(15))
    })
    .await
    .unwrap();
    assert!(left.is_empty(), "remote commands left running: {left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn port_forwarding() {
    let sshd = Sshd::start();
    let scope = Scope::root("t");
    let conn = SshConnection::connect(sshd.config())
        .await
        .expect("connect");
    // Forward to the sshd itself: its banner comes through the tunnel.
    let fwd = conn.forward("127.0.0.1", sshd.port, &scope).await.unwrap();
    for _ in 0..2 {
        let mut s = tokio::net::TcpStream::connect(fwd.local_addr())
            .await
            .unwrap();
        let mut buf = [0u8; 8];
        s.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"SSH-2.0-");
    }
    let addr = fwd.local_addr();
    fwd.close().await;
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());

    // Cancelling the forward's scope tears the listener down too.
    let child = scope.child("fwd");
    let fwd = conn.forward("127.0.0.1", sshd.port, &child).await.unwrap();
    let addr = fwd.local_addr();
    assert!(tokio::net::TcpStream::connect(addr).await.is_ok());
    child.cancel();
    let mut closed = false;
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(addr).await.is_err() {
            closed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        closed,
        "the listener survived the cancellation of its scope"
    );
    drop(fwd);
    assert!(scope.shutdown(ShutdownOptions::default()).await.is_clean());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn network_cut_fails_within_keepalive_bound_and_reboot_reconnects() {
    let mut host = NetnsHost::start();
    let scope = Scope::root("t");
    let cfg = host
        .config()
        .keepalive(Duration::from_secs(1), 2)
        .reconnect_timeout(Duration::from_secs(20));
    let conn = Arc::new(SshConnection::connect(cfg).await.expect("connect"));
    let out = conn.check(cmd(["echo", "up"]), &scope).await.unwrap();
    assert_eq!(out.stdout, b"up\n");

    // Cut the link during a command: it fails with a disconnect instead of hanging.
    let mut p = conn
        .spawn(cmd(["sleep", &secs(3160)]), &scope)
        .await
        .unwrap();
    let running = || remote_alive(&format!("sleep {}", secs(3160)));
    support::wait_until_async(Duration::from_secs(10), "the command", running).await;
    host.cut();
    let res = tokio::time::timeout(Duration::from_secs(30), p.wait())
        .await
        .expect("the command must fail within the keepalive bound, not hang");
    let err = res.expect_err("a cut network must fail the command");
    assert!(err.is_disconnect(), "{err}");
    let text = atex::error::chain(&err).to_string();
    assert!(text.contains("keepalive"), "{text}");
    host.restore();

    // Reboot during a command: power off, start again; reconnect succeeds.
    conn.reconnect(&scope)
        .await
        .expect("reconnect after the cut");
    let mut p = conn
        .spawn(cmd(["sleep", &secs(3161)]), &scope)
        .await
        .unwrap();
    let running = || remote_alive(&format!("sleep {}", secs(3161)));
    support::wait_until_async(Duration::from_secs(10), "the command", running).await;
    host.power_off();
    let err = tokio::time::timeout(Duration::from_secs(30), p.wait())
        .await
        .expect("no hang")
        .expect_err("power-off ends the command");
    assert!(err.is_disconnect(), "{err}");
    host.start_sshd();
    conn.reconnect(&scope)
        .await
        .expect("reconnect after reboot");
    let out = conn.check(cmd(["echo", "back"]), &scope).await.unwrap();
    assert_eq!(out.stdout, b"back\n");

    // Killed and not restarted: reconnect gives up at its deadline with a timeout error.
    host.power_off();
    let mut cfg = host.config().reconnect_timeout(Duration::from_secs(2));
    cfg.connect_timeout = Duration::from_millis(500);
    let conn2 = SshConnection::new(cfg);
    let err = conn2.reconnect(&scope).await.unwrap_err();
    assert!(matches!(err, ConnectionError::Timeout { .. }), "{err}");
    assert!(scope.shutdown(ShutdownOptions::default()).await.is_clean());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssh_host_pool_hands_out_each_machine_once_and_quarantines() {
    use atex::provisioner::{Count, Provisioner, SshHostPool};
    let sshd = Sshd::start();
    let scope = Scope::root("t");
    let hosts = sshd.files.dir.path().join("hosts");
    std::fs::write(
        &hosts,
        format!(
            "# two machines on one sshd\n{TEST_USER}@127.0.0.1:{port} id_ed25519\n\nroot@127.0.0.1:{port}   {key}  # root\n",
            port = sshd.port,
            key = sshd.files.client_key.display()
        ),
    )
    .unwrap();
    let template = sshd.config();
    let pool = SshHostPool::from_hosts_file(&hosts, &template).unwrap();
    pool.start(&scope).await.unwrap();
    pool.provision(Count::N(2)).unwrap();
    let a = pool.get_remote().await.unwrap();
    let b = pool.get_remote().await.unwrap();
    assert_ne!(a.describe(), b.describe());
    let who = |out: atex::connection::CommandOutput| out.stdout_lossy().trim().to_string();
    let mut users = vec![
        who(a.check(cmd(["id", "-un"]), &scope).await.unwrap()),
        who(b.check(cmd(["id", "-un"]), &scope).await.unwrap()),
    ];
    users.sort();
    assert_eq!(users, vec!["atexbench".to_string(), "root".to_string()]);
    // Both in use: nothing more to hand out.
    pool.provision(Count::N(1)).unwrap();
    assert!(pool.try_get_remote().unwrap().is_none());
    // Released: the machine comes back for the outstanding request.
    let a_name = a.describe();
    a.release().await.unwrap();
    assert!(a.is_released());
    assert!(a.spawn(cmd(["true"]), &scope).await.is_err());
    let c = pool.get_remote().await.unwrap();
    assert_eq!(c.describe(), a_name);
    // Released as destroyed: quarantined, never handed out again.
    c.mark_destroyed();
    c.release().await.unwrap();
    pool.provision(Count::N(1)).unwrap();
    assert!(pool.try_get_remote().unwrap().is_none());
    assert!(
        pool.quarantined()
            .iter()
            .any(|(d, q)| *q && *d == a_name.trim_start_matches("ssh "))
    );
    pool.stop().await.unwrap();
    assert!(b.is_released());
    assert!(pool.get_remote().await.is_err());

    // A failing setup quarantines every machine and get_remote says so.
    let pool = SshHostPool::from_hosts_file(&hosts, &template)
        .unwrap()
        .with_setup(["sh", "-c", "exit 3"]);
    pool.start(&scope).await.unwrap();
    pool.provision(Count::N(1)).unwrap();
    let err = pool.get_remote().await.unwrap_err();
    let text = atex::error::chain(&err).to_string();
    assert!(text.contains("quarantined"), "{text}");
    // The last machine's failure is kept: the failed setup command.
    assert!(text.contains("exit 3"), "{text}");
    pool.stop().await.unwrap();

    // Errors of the hosts file name the line.
    std::fs::write(&hosts, "root@127.0.0.1:22\nroot@x:notaport\n").unwrap();
    let err = SshHostPool::from_hosts_file(&hosts, &template).unwrap_err();
    assert_eq!(err.line, 2);
    assert!(scope.shutdown(ShutdownOptions::default()).await.is_clean());
}

#[test]
fn dropping_an_ssh_pool_remote_outside_a_runtime_does_not_panic() {
    use atex::provisioner::{Count, Provisioner, SshHostPool};
    let sshd = Sshd::start();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let pool = SshHostPool::new(vec![sshd.config()]);
    let scope = rt.block_on(async {
        let scope = Scope::root("t");
        pool.start(&scope).await.unwrap();
        // Every freed machine is prepared again for the next user.
        pool.provision(Count::Unlimited).unwrap();
        scope
    });
    let remote = rt.block_on(pool.get_remote()).unwrap();
    // Dropped on a thread that is not the runtime's, while the runtime runs.
    std::thread::spawn(move || drop(remote))
        .join()
        .expect("dropping the remote outside the runtime panicked");
    // The machine went back and was prepared again on the pool's runtime.
    let remote = rt
        .block_on(async { tokio::time::timeout(Duration::from_secs(30), pool.get_remote()).await })
        .expect("the dropped machine was never handed out again")
        .unwrap();
    let out = rt
        .block_on(remote.check(cmd(["echo", "again"]), &scope))
        .unwrap();
    assert_eq!(out.stdout, b"again\n");
    assert!(
        rt.block_on(scope.shutdown(ShutdownOptions::default()))
            .is_clean()
    );
    // Dropped after the runtime itself is gone.
    drop(rt);
    std::thread::spawn(move || drop(remote))
        .join()
        .expect("dropping the remote after the runtime panicked");
    drop(pool);
}

/// A directory of links to every program of the usual `PATH` directories except `missing`,
/// to run something on a machine that lacks that program.
fn path_without(missing: &str) -> tempfile::TempDir {
    let farm = tempfile::Builder::new()
        .prefix("atex-path-")
        .tempdir()
        .unwrap();
    for dir in [
        "/usr/local/sbin",
        "/usr/local/bin",
        "/usr/sbin",
        "/usr/bin",
        "/sbin",
        "/bin",
    ] {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let link = farm.path().join(&name);
            if name != missing && !link.exists() {
                let _ = std::os::unix::fs::symlink(entry.path(), link);
            }
        }
    }
    farm
}

/// Pids of live processes holding an open file under `dir` (deleted files too).
fn processes_holding_files_in(dir: &Path) -> Vec<u32> {
    let prefix = dir.display().to_string();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let zombie = std::fs::read_to_string(entry.path().join("stat"))
            .ok()
            .and_then(|s| {
                s.rsplit_once(')')
                    .map(|(_, r)| r.trim_start().starts_with('Z'))
            })
            .unwrap_or(true);
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        let holds = fds.flatten().any(|fd| {
            std::fs::read_link(fd.path())
                .is_ok_and(|target| target.display().to_string().starts_with(&prefix))
        });
        if holds && !zombie {
            found.push(pid);
        }
    }
    found
}

/// Command lines of `pids`, for messages.
fn cmdlines(pids: &[u32]) -> Vec<String> {
    pids.iter()
        .map(|p| {
            std::fs::read_to_string(format!("/proc/{p}/cmdline"))
                .unwrap_or_default()
                .replace('\0', " ")
        })
        .collect()
}

/// Runs the `ssh_bench` example (`--quick`, `PATH` replaced when given) and waits for it to
/// exit; then checks that it left nothing running: no process with its marker in the
/// environment (the `ssh` clients, the ControlMaster) and none holding a file in its
/// temporary directory (the sshd and its per-connection processes, whose stderr is the log
/// there; sshd overwrites its environment with its process title).
fn run_ssh_bench(test: &str, path: Option<&Path>) -> std::process::Output {
    let bin = support::built_binary("examples/ssh_bench");
    assert!(
        bin.exists(),
        "{} not built (cargo test builds examples)",
        bin.display()
    );
    let marker = support::marker(test);
    let tmp = tempfile::Builder::new()
        .prefix("atex-bench-tmp-")
        .tempdir()
        .unwrap();
    let mut cmd = std::process::Command::new(bin);
    cmd.arg("--quick")
        .env("ATEX_TEST_MARKER", &marker)
        .env("TMPDIR", tmp.path())
        .stdin(std::process::Stdio::null());
    if let Some(path) = path {
        cmd.env("PATH", path);
    }
    let out = cmd.output().expect("run ssh_bench");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let left = loop {
        let mut left = support::processes_with_marker(&marker);
        left.extend(processes_holding_files_in(tmp.path()));
        if left.is_empty() || std::time::Instant::now() >= deadline {
            break left;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(
        left.is_empty(),
        "left running after ssh_bench exited ({}): {:?}\n{}",
        out.status,
        cmdlines(&left),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[test]
fn ssh_bench_leaves_no_ssh_or_sshd_process_behind() {
    support::sshd::ensure_test_user();
    let out = run_ssh_bench("ssh-bench", None);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("round trip `true`"), "{stdout}");
}

#[test]
fn ssh_bench_without_rsync_names_it_and_leaves_nothing_behind() {
    support::sshd::ensure_test_user();
    let path = path_without("rsync");
    let out = run_ssh_bench("ssh-bench-no-rsync", Some(path.path()));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "ran without rsync?\n{stderr}");
    assert!(
        stderr.contains("cannot run `rsync`") && stderr.contains("No such file or directory"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jump_host_one_hop() {
    let jump = Sshd::start();
    let target = Sshd::start();
    let scope = Scope::root("t");
    let cfg = target.config().jump_host(jump.config());
    let conn = SshConnection::connect(cfg)
        .await
        .expect("connect through the jump host");
    let out = conn.check(cmd(["echo", "via jump"]), &scope).await.unwrap();
    assert_eq!(out.stdout, b"via jump\n");
    // Both sshds saw a login: the jump host's (which opened the tunnel) and the target's.
    assert!(
        jump.log().contains("Accepted publickey for atexbench"),
        "{}",
        jump.log()
    );
    assert!(
        target.log().contains("Accepted publickey for atexbench"),
        "{}",
        target.log()
    );
    // A refused target key is reported for the target, not the jump host.
    let other = SshdFiles::new();
    let bad_kh = other.dir.path().join("kh");
    let fields: Vec<String> = other
        .host_pub()
        .split_whitespace()
        .take(2)
        .map(String::from)
        .collect();
    std::fs::write(
        &bad_kh,
        format!("[127.0.0.1]:{} {}\n", target.port, fields.join(" ")),
    )
    .unwrap();
    let err = SshConnection::connect(
        target
            .config()
            .known_hosts(&bad_kh)
            .jump_host(jump.config()),
    )
    .await
    .unwrap_err();
    let text = atex::error::chain(&err).to_string();
    assert!(text.contains("HOST KEY MISMATCH"), "{text}");
    assert!(
        text.contains(&format!("127.0.0.1:{}", target.port)),
        "{text}"
    );
    conn.disconnect().await;
    assert!(scope.shutdown(ShutdownOptions::default()).await.is_clean());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_commands_than_the_servers_max_sessions_wait_for_a_slot() {
    let mut files = SshdFiles::new();
    files.max_sessions = 10; // OpenSSH's default
    let sshd = Sshd::start_with(files);
    let scope = Scope::root("t");
    let conn = SshConnection::connect(sshd.config())
        .await
        .expect("connect");
    let runs = (0..25).map(|i| {
        let conn = conn.clone();
        let scope = scope.clone();
        async move {
            conn.check(cmd(["sh", "-c", &format!("sleep 0.3; echo {i}")]), &scope)
                .await
                .map(|o| o.stdout_lossy())
        }
    });
    let results = futures::future::join_all(runs).await;
    for (i, r) in results.into_iter().enumerate() {
        assert_eq!(r.unwrap().trim(), i.to_string());
    }
    // With every allowed channel busy, cancelling still reaches the commands.
    let busy = scope.child("busy");
    let mut procs = Vec::new();
    for _ in 0..9 {
        procs.push(
            conn.spawn(cmd(["sleep", &secs(3150)]), &busy)
                .await
                .unwrap(),
        );
    }
    let all_running = || {
        std::process::Command::new("pgrep")
            .args([
                "-c",
                "-u",
                TEST_USER,
                "-f",
                &format!("sleep {}", secs(3150)),
            ])
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "9")
    };
    support::wait_until_async(Duration::from_secs(10), "9 commands", all_running).await;
    busy.cancel();
    for p in &mut procs {
        let (_, cancelled) = p.wait_or_terminate(&busy).await.unwrap();
        assert!(cancelled);
    }
    assert!(wait_gone(&format!("sleep {}", secs(3150))).await);
    assert!(scope.shutdown(ShutdownOptions::default()).await.is_clean());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_types_passphrase_and_agent() {
    let sshd = Sshd::start();
    let scope = Scope::root("t");
    let d = sshd.files.dir.path().to_path_buf();
    let ak = d.join(format!("authorized_keys.{TEST_USER}"));
    let mut keys = std::fs::read_to_string(&ak).unwrap();
    let keygen = |name: &str, args: &[&str]| {
        let path = d.join(name);
        let st = std::process::Command::new("ssh-keygen")
            .args(["-q", "-C", name])
            .args(args)
            .arg("-f")
            .arg(&path)
            .status()
            .unwrap();
        assert!(st.success());
        path
    };
    let rsa = keygen("id_rsa", &["-t", "rsa", "-b", "2048", "-N", ""]);
    let ecdsa = keygen("id_ecdsa", &["-t", "ecdsa", "-N", ""]);
    let locked = keygen("id_locked", &["-t", "ed25519", "-N", "s3cret"]);
    let agent_key = keygen("id_agent", &["-t", "ed25519", "-N", ""]);
    for k in [&rsa, &ecdsa, &locked, &agent_key] {
        keys.push_str(&std::fs::read_to_string(k.with_extension("pub")).unwrap());
    }
    std::fs::write(&ak, keys).unwrap();

    let base = || {
        let mut c = sshd.config();
        c.auth.clear();
        c
    };
    for key in [&rsa, &ecdsa] {
        let conn = SshConnection::connect(base().key_file(key))
            .await
            .expect("key auth");
        assert!(conn.check(cmd(["true"]), &scope).await.is_ok());
    }
    SshConnection::connect(base().key_file_with_passphrase(&locked, "s3cret"))
        .await
        .expect("passphrase");
    let err = SshConnection::connect(base().key_file(&locked))
        .await
        .unwrap_err();
    let text = atex::error::chain(&err).to_string();
    assert!(text.contains("id_locked"), "{text}");

    // ssh-agent on a private socket, holding only the agent key.
    let sock = d.join("agent.sock");
    let mut agent = std::process::Command::new("ssh-agent")
        .arg("-D")
        .arg("-a")
        .arg(&sock)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    for _ in 0..200 {
        if sock.exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let added = std::process::Command::new("ssh-add")
        .arg("-q")
        .arg(&agent_key)
        .env("SSH_AUTH_SOCK", &sock)
        .status()
        .unwrap();
    let res = SshConnection::connect(base().agent_socket(&sock)).await;
    let _ = agent.kill();
    let _ = agent.wait();
    assert!(added.success());
    let conn = res.expect("agent auth");
    assert!(conn.check(cmd(["true"]), &scope).await.is_ok());
    // Methods are tried in order: a refused key, then the working one.
    SshConnection::connect(base().key_file(&sshd.files.host_key).key_file(&ecdsa))
        .await
        .expect("second method");
    assert!(scope.shutdown(ShutdownOptions::default()).await.is_clean());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn released_pool_remote_refuses_upload_and_download() {
    use atex::provisioner::{Count, Provisioner, SshHostPool};
    let sshd = Sshd::start();
    let scope = Scope::root("t");
    let hosts = sshd.files.dir.path().join("hosts");
    std::fs::write(
        &hosts,
        format!("{TEST_USER}@127.0.0.1:{} id_ed25519\n", sshd.port),
    )
    .unwrap();
    let pool = SshHostPool::from_hosts_file(&hosts, &sshd.config()).unwrap();
    pool.start(&scope).await.unwrap();
    pool.provision(Count::N(1)).unwrap();
    let remote = pool.get_remote().await.unwrap();
    let (f, g) = (
        format!("atex-released-{}", secs(1)),
        format!("atex-released-{}", secs(2)),
    );
    let tmp = tempfile::tempdir().unwrap();
    let local = tmp.path().join("f");
    std::fs::write(&local, b"data").unwrap();
    remote.upload(&local, &f).await.unwrap();
    remote.release().await.unwrap();
    // Released: the machine may already be someone else's, so no transfer reaches it.
    let spawn_err = remote.spawn(cmd(["true"]), &scope).await.unwrap_err();
    let up_err = remote.upload(&local, &g).await.unwrap_err();
    let down_err = remote
        .download(&f, &tmp.path().join("back"))
        .await
        .unwrap_err();
    for err in [&up_err, &down_err] {
        assert!(err.is_disconnect(), "{err}");
        assert_eq!(err.to_string(), spawn_err.to_string());
    }
    assert!(!tmp.path().join("back").exists());
    // The machine itself is fine: the next holder reaches it, and the refused upload never
    // landed.
    pool.provision(Count::N(1)).unwrap();
    let next = pool.get_remote().await.unwrap();
    let out = next.output(cmd(["ls", &f, &g]), &scope).await.unwrap();
    assert_eq!(out.stdout_lossy(), format!("{f}\n"));
    next.check(cmd(["rm", "-f", &f, &g]), &scope).await.unwrap();
    pool.stop().await.unwrap();
    assert!(scope.shutdown(ShutdownOptions::default()).await.is_clean());
}

/// The provisioner and remote conformance suites on SSH host pools: two machines (two users
/// of one sshd) that are reused, and a pool of one machine for the capacity checks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssh_host_pool_conforms() {
    use atex::provisioner::SshHostPool;
    let sshd = Sshd::start();
    let scope = Scope::root("t");
    let user = sshd.config();
    let root = sshd.config().user("root");
    let (two, one) = (vec![user.clone(), root], vec![user]);
    let target = ProvisionerTarget::new(move || Arc::new(SshHostPool::new(two.clone())), &scope)
        .limited(move || Arc::new(SshHostPool::new(one.clone())))
        .capacity(2)
        .reuses_systems(true);
    provisioner::all(&target).await.assert_passed();
    remote::all(&target).await.assert_passed();
    assert!(scope.shutdown(ShutdownOptions::default()).await.is_clean());
}
