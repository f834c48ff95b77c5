//! Podman containers as remotes, with real podman (runc, the project's containers.conf):
//! the connection and provisioner conformance suites, parallel creation, cleanup by label,
//! the CLI (`atex run --provisioner podman:…`, SIGINT and SIGKILL, `atex podman cleanup`,
//! `atex podman image import`), FMF results identical to local ones.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Once};
use std::time::{Duration, Instant};

use atex::connection::{CommandSpec, Connection, ConnectionExt};
use atex::podman::{Podman, PodmanConfig, PodmanConnection, PodmanProvisioner};
use atex::provisioner::{Count, Provisioner};
use atex::scope::{Scope, ShutdownOptions};
use atex::testing::conformance::connection::{self, ConnectionTarget};
use atex::testing::conformance::provisioner::{self, ProvisionerTarget};
use atex::testing::conformance::remote;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

const BB: &str = "localhost/atex-test-bb:latest";
const MINI: &str = "localhost/atex-test-mini:latest";

/// The project's containers.conf unless the environment names another.
fn containers_conf() -> PathBuf {
    match std::env::var_os("CONTAINERS_CONF") {
        Some(p) => PathBuf::from(p),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/podman/containers.conf"),
    }
}

fn podman() -> Podman {
    Podman::new().env("CONTAINERS_CONF", containers_conf())
}

fn podman_cmd() -> Command {
    let mut c = Command::new("podman");
    c.env("CONTAINERS_CONF", containers_conf());
    c
}

fn atex() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_atex"));
    c.env("CONTAINERS_CONF", containers_conf());
    c
}

/// Builds the test images once per test program (the script skips existing ones).
fn images() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let st = Command::new(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/podman/test-images.sh"),
        )
        .env("CONTAINERS_CONF", containers_conf())
        .env("ATEX", env!("CARGO_BIN_EXE_atex"))
        .status()
        .unwrap();
        assert!(st.success(), "building the test images failed");
    });
}

/// Containers (any state) carrying `label`.
fn containers_with(label: &str) -> Vec<String> {
    let out = podman_cmd()
        .args(["ps", "-a", "-q", "--filter", &format!("label={label}")])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

fn run_id(test: &str) -> String {
    format!(
        "t{}-{}-{}",
        std::process::id(),
        test,
        &support::marker("x")[2..].replace('-', "")[..8]
    )
}

/// Live (non-zombie) processes of the run `run` on this machine, as "PID ARGS": every
/// process with an argument naming one of its containers (`atex-RUN-…`: conmon's `-n`,
/// podman clients) and every descendant of one (the `runc init` of a container being
/// created).
fn processes_of_run(run: &str) -> Vec<String> {
    let prefix = format!("atex-{run}-");
    let mut procs = Vec::new(); // (pid, ppid, args)
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let mut fields = rest.split_whitespace();
        let state = fields.next().unwrap_or("Z");
        let ppid: u32 = fields.next().and_then(|f| f.parse().ok()).unwrap_or(0);
        if state == "Z" || state == "X" || pid == std::process::id() {
            continue;
        }
        let args = std::fs::read(entry.path().join("cmdline"))
            .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
            .unwrap_or_default();
        procs.push((pid, ppid, args));
    }
    let mut marked: std::collections::HashSet<u32> = procs
        .iter()
        .filter(|(_, _, a)| a.split(' ').any(|w| w.starts_with(&prefix)))
        .map(|(p, _, _)| *p)
        .collect();
    loop {
        let before = marked.len();
        for (pid, ppid, _) in &procs {
            if marked.contains(ppid) {
                marked.insert(*pid);
            }
        }
        if marked.len() == before {
            break;
        }
    }
    procs
        .into_iter()
        .filter(|(p, _, _)| marked.contains(p))
        .map(|(p, _, a)| format!("{p} {a}"))
        .collect()
}

/// Waits up to 10 s until no process of the run is left; panics naming the survivors.
fn assert_no_processes_of_run(run: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = processes_of_run(run);
        if left.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "processes of run {run} left: {left:#?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A container the test owns, removed when dropped.
struct Container(String);

impl Container {
    fn start(image: &str, label: &str) -> Self {
        let out = podman_cmd()
            .args([
                "run",
                "-d",
                "--pull=never",
                "--init",
                "--label",
                label,
                image,
                "sleep",
                "infinity",
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        Container(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = podman_cmd().args(["rm", "-f", "-t", "0", &self.0]).output();
    }
}

/// The whole connection conformance suite in a busybox container and in a container of
/// the bash+coreutils image (GNU tar).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn podman_connection_conforms() {
    images();
    let scope = Scope::root("t");
    for image in [BB, MINI] {
        let c = Container::start(image, "atex-test=conformance");
        let conn = PodmanConnection::connect(podman(), &c.0, &scope)
            .await
            .unwrap();
        conn.check(CommandSpec::new(["mkdir", "-p", "/scratch"]), &scope)
            .await
            .unwrap();
        let target = ConnectionTarget::new(Arc::new(conn), "/scratch", &scope);
        connection::all(&target).await.assert_passed();
    }
    assert!(scope.shutdown(ShutdownOptions::default()).await.is_clean());
}

/// Cancelling a command kills its processes inside the container, and so does dropping
/// it; killing the `podman exec` client alone would leave them running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_commands_die_inside_the_container() {
    images();
    let scope = Scope::root("t");
    let c = Container::start(BB, "atex-test=cancel");
    let conn = PodmanConnection::connect(podman(), &c.0, &scope)
        .await
        .unwrap();
    let child = scope.child("cmd");
    child.set_kill_grace(Duration::from_millis(500));
    let mut p = conn
        .spawn(
            CommandSpec::new(["sh", "-c", "trap '' TERM; setsid sleep 777 & sleep 777"]),
            &child,
        )
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while count(&conn, &scope, "777").await < 2 {
        assert!(Instant::now() < deadline, "the command never started");
    }
    child.cancel();
    let (info, cancelled) = p.wait_or_terminate(&child).await.unwrap();
    assert!(cancelled && !info.status.success(), "{info:?}");
    assert_eq!(
        count(&conn, &scope, "777").await,
        0,
        "processes survived the cancellation (also the one that left its session)"
    );
    drop(p);
    assert!(scope.shutdown(ShutdownOptions::default()).await.is_clean());
}

/// A cancelled command's children that cleared their environment (`env -i`), also ones
/// that left its session (`setsid env -i`), and one of those that ignores SIGTERM and is
/// orphaned when its parent dies of it, are all killed inside the container (the marker
/// in the environment alone found none of them). A command that ended by itself and left
/// an `env -i` child in its session has it killed and reports a leak.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_commands_kill_children_that_cleared_their_environment() {
    images();
    let scope = Scope::root("t");
    let c = Container::start(MINI, "atex-test=env-i");
    let conn = PodmanConnection::connect(podman(), &c.0, &scope)
        .await
        .unwrap();
    let child = scope.child("cmd");
    child.set_kill_grace(Duration::from_millis(500));
    let script = concat!(
        "env -i sleep 781 & setsid env -i sleep 781 & ",
        "setsid env -i sh -c 'trap \"\" TERM; exec sleep 781' & sleep 780"
    );
    let mut p = conn
        .spawn(CommandSpec::new(["bash", "-c", script]), &child)
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while count(&conn, &scope, "781").await < 3 || count(&conn, &scope, "780").await < 1 {
        assert!(Instant::now() < deadline, "the command never started");
    }
    child.cancel();
    let (info, cancelled) = p.wait_or_terminate(&child).await.unwrap();
    assert!(cancelled && !info.status.success(), "{info:?}");
    drop(p);
    assert_eq!(
        (
            count(&conn, &scope, "781").await,
            count(&conn, &scope, "780").await
        ),
        (0, 0),
        "processes of the cancelled command survived in the container"
    );

    let mut cmd = CommandSpec::new(["bash", "-c", "env -i sleep 782 & exit 3"]);
    cmd.stdout = atex::connection::Output::Null;
    cmd.stderr = atex::connection::ErrOutput::Null;
    let mut p = conn.spawn(cmd, &scope).await.unwrap();
    let info = p.wait().await.unwrap();
    assert_eq!(info.status, atex::process::ExitStatus::Code(3));
    assert!(info.leaked, "{info:?}");
    assert_eq!(count(&conn, &scope, "782").await, 0);
    assert!(scope.shutdown(ShutdownOptions::default()).await.is_clean());
}

/// How many `sleep NEEDLE` processes run in the container (read from `/proc`, so that it
/// works with busybox and procps alike).
async fn count(conn: &PodmanConnection, scope: &Scope, needle: &str) -> usize {
    let script = "for d in /proc/[0-9]*; do tr '\\000' ' ' < $d/cmdline 2>/dev/null; echo; done \
                  | grep -c \"^sleep $0 *$\" || true";
    let out = conn
        .check(CommandSpec::new(["sh", "-c", script, needle]), scope)
        .await
        .unwrap();
    out.stdout_lossy().trim().parse().unwrap()
}

fn provisioner(image: &str, run: &str, max: usize) -> Arc<PodmanProvisioner> {
    let mut config = PodmanConfig::new(image);
    config.run_id = run.to_string();
    config.max_remotes = max;
    config.podman = podman();
    Arc::new(PodmanProvisioner::new(config).unwrap())
}

/// The provisioner and remote conformance suites on containers; nothing of the run is
/// left afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn podman_provisioner_conforms() {
    images();
    let scope = Scope::root("t");
    let run = run_id("conf");
    let (r1, r2) = (run.clone(), run.clone());
    let target = ProvisionerTarget::new(move || provisioner(BB, &r1, 2), &scope)
        .limited(move || provisioner(BB, &r2, 1))
        .capacity(2);
    provisioner::all(&target).await.assert_passed();
    remote::all(&target).await.assert_passed();
    assert!(scope.shutdown(ShutdownOptions::default()).await.is_clean());
    assert_eq!(
        containers_with(&format!("atex.run={run}")),
        Vec::<String>::new()
    );
    assert_no_processes_of_run(&run);
}

/// 8 containers created in parallel, 20 rounds, without an error; each remote runs a
/// command; release removes them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_containers_in_parallel_twenty_rounds() {
    images();
    let scope = Scope::root("t");
    let run = run_id("par");
    let prov = provisioner(BB, &run, 8);
    prov.start(&scope).await.unwrap();
    for round in 0..20 {
        prov.provision(Count::N(8)).unwrap();
        let mut remotes = Vec::new();
        for _ in 0..8 {
            remotes.push(
                prov.get_remote()
                    .await
                    .unwrap_or_else(|e| panic!("round {round}: {}", atex::error::chain(&e))),
            );
        }
        let outs = futures::future::join_all(
            remotes
                .iter()
                .map(|r| r.check(CommandSpec::new(["echo", "ok"]), &scope)),
        )
        .await;
        for o in outs {
            assert_eq!(o.unwrap().stdout, b"ok\n");
        }
        assert_eq!(containers_with(&format!("atex.run={run}")).len(), 8);
        futures::future::join_all(remotes.iter().map(|r| r.release()))
            .await
            .into_iter()
            .for_each(|r| r.unwrap());
    }
    prov.stop().await.unwrap();
    assert!(containers_with(&format!("atex.run={run}")).is_empty());
    assert!(scope.shutdown(ShutdownOptions::default()).await.is_clean());
}

/// A remote dropped without release (and a creation cancelled by stop) leaves no
/// container once the scope tree shut down; a missing image fails the start, naming it
/// and quoting podman.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_remotes_and_missing_images() {
    images();
    let scope = Scope::root("t");
    let run = run_id("drop");
    let prov = provisioner(BB, &run, 3);
    prov.start(&scope).await.unwrap();
    prov.provision(Count::N(3)).unwrap();
    let r = prov.get_remote().await.unwrap();
    drop(r);
    prov.stop().await.unwrap();
    drop(prov);
    assert!(scope.shutdown(ShutdownOptions::default()).await.is_clean());
    assert!(containers_with(&format!("atex.run={run}")).is_empty());
    assert_no_processes_of_run(&run);

    let scope = Scope::root("t2");
    let prov = provisioner("localhost/atex-no-such-image:1", &run, 1);
    let err = prov.start(&scope).await.unwrap_err();
    let text = format!("{:#}", atex::error::chain(&err));
    assert!(text.contains("localhost/atex-no-such-image:1"), "{text}");
    assert!(text.contains("image not known"), "{text}");
}

/// A creation cancelled at any moment of `podman run` (as soon as the client runs, once
/// conmon runs, once runc runs under conmon) leaves no container and no process of it:
/// no conmon naming it, no `runc init` under such a conmon.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_creations_leave_no_conmon_or_runc() {
    images();
    type Moment = fn(&str) -> bool;
    let moments: [(&str, Moment); 3] = [
        ("podman run client", |p| p.contains("podman run ")),
        ("conmon", |p| p.contains("conmon ")),
        ("runc under conmon", |p| p.contains("runc")),
    ];
    for (what, seen) in moments {
        for round in 0..3 {
            let scope = Scope::root("t");
            let run = run_id(&format!("cancel{round}"));
            let prov = provisioner(BB, &run, 2);
            prov.start(&scope).await.unwrap();
            prov.provision(Count::N(2)).unwrap();
            support::wait_until_async(Duration::from_secs(60), what, || {
                processes_of_run(&run).iter().any(|p| seen(p))
            })
            .await;
            prov.stop().await.unwrap();
            drop(prov);
            let report = scope.shutdown(ShutdownOptions::default()).await;
            assert!(
                report.is_clean(),
                "cancelled at {what}, round {round}: {report:?}"
            );
            assert_eq!(
                containers_with(&format!("atex.run={run}")),
                Vec::<String>::new(),
                "cancelled at {what}, round {round}"
            );
            assert_no_processes_of_run(&run);
        }
    }
}

/// The FMF executor runs the same tree in containers as locally, with identical result
/// lines (but the platform and timing), including a test whose duration expires.
#[test]
fn fmf_results_in_containers_match_local_ones() {
    images();
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tree");
    support::write_tree(
        &tree,
        concat!(
            "/pass:\n    test: echo hello; echo err >&2\n",
            "/fail:\n    test: exit 3\n",
            "/report:\n    test: |\n",
            "        printf 'result 20\\n{\"status\": \"warn\"}' >&$ATEX_TEST_CONTROL\n",
            "/timeout:\n    test: sleep 600\n    duration: 2s\n",
        ),
    );
    let mut all = Vec::new();
    for (name, prov) in [
        ("local", "local".to_string()),
        ("podman", format!("podman:{MINI}")),
    ] {
        let results = tmp.path().join(name);
        let out = atex()
            .args(["-q", "run"])
            .arg(&tree)
            .args([
                "--provisioner",
                &prov,
                "--remotes",
                "2",
                "--platform",
                "p",
                "--results",
            ])
            .arg(&results)
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(1),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut r: Vec<String> = support::result_rows(&results)
            .into_iter()
            .map(|mut v| {
                // Drop timing-dependent fields.
                if let Some(a) = v.as_array_mut() {
                    a.truncate(5);
                }
                v.to_string()
            })
            .collect();
        r.sort();
        all.push(r);
    }
    assert_eq!(all[0], all[1]);
    assert!(all[1].iter().any(|l| l.contains("/tests/timeout")));
}

/// SIGINT to `atex run --provisioner podman:… --remotes 4` in the middle of tests: it
/// exits 130 within 15 s and no container of the run is left.
#[test]
fn sigint_removes_every_container_of_the_run() {
    images();
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tree");
    let mut fmf = String::new();
    for i in 0..6 {
        fmf.push_str(&format!("/slow{i}:\n    test: sleep 300\n"));
    }
    support::write_tree(&tree, &fmf);
    let run = run_id("sigint");
    let mut child = atex()
        .args(["-q", "run"])
        .arg(&tree)
        .args([
            "--provisioner",
            &format!("podman:{MINI}"),
            "--remotes",
            "4",
            "--podman-run-id",
            &run,
            "--results",
        ])
        .arg(tmp.path().join("results"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let label = format!("atex.run={run}");
    // Wait until four tests run (their sleeps are in the containers).
    support::wait_until(Duration::from_secs(60), "four running tests", || {
        let ids = containers_with(&label);
        ids.len() == 4
            && ids.iter().all(|id| {
                podman_cmd()
                    .args(["exec", id, "sh", "-c", "ps -o args | grep -q '^sleep 300'"])
                    .status()
                    .is_ok_and(|s| s.success())
            })
    });
    kill(Pid::from_raw(child.id() as i32), Signal::SIGINT).unwrap();
    let sent = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            sent.elapsed() < Duration::from_secs(15),
            "atex run still running 15 s after SIGINT"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(130));
    assert_eq!(containers_with(&label), Vec::<String>::new());
    assert_no_processes_of_run(&run);
}

/// SIGKILL leaves the containers; `atex podman cleanup --run ID` removes them (and only
/// them), `atex podman cleanup` the rest of atex's.
#[test]
fn sigkill_then_cleanup_leaves_nothing() {
    images();
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tree");
    support::write_tree(
        &tree,
        "/a:\n    test: sleep 300\n/b:\n    test: sleep 300\n",
    );
    let run = run_id("kill");
    let other = Container::start(BB, "atex-test=bystander");
    let mut child = atex()
        .args(["-q", "run"])
        .arg(&tree)
        .args([
            "--provisioner",
            &format!("podman:{MINI}"),
            "--remotes",
            "2",
            "--podman-run-id",
            &run,
            "--results",
        ])
        .arg(tmp.path().join("results"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let label = format!("atex.run={run}");
    // Both tests running (the image has bash, which the FMF executor needs: without it each
    // remote fails its setup and its container is replaced, so their number changes).
    support::wait_until(
        Duration::from_secs(60),
        "two containers running a test",
        || {
            let ids = containers_with(&label);
            ids.len() == 2
                && ids.iter().all(|id| {
                    podman_cmd()
                        .args(["top", id, "args"])
                        .output()
                        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("sleep 300"))
                })
        },
    );
    kill(Pid::from_raw(child.id() as i32), Signal::SIGKILL).unwrap();
    child.wait().unwrap();
    assert_eq!(containers_with(&label).len(), 2);
    let out = atex()
        .args(["podman", "cleanup", "--run", &run, "--dry-run"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 2);
    assert_eq!(containers_with(&label).len(), 2);
    let out = atex()
        .args(["podman", "cleanup", "--run", &run])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(containers_with(&label).is_empty());
    // The bystander is not atex's.
    assert!(
        containers_with("atex-test=bystander")
            .iter()
            .any(|id| other.0.starts_with(id.as_str()))
    );
}

/// `atex podman image import` from a directory and from a tarball; the image runs.
#[test]
fn image_import_from_directory_and_tarball() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).unwrap();
    std::os::unix::fs::symlink("busybox", root.join("bin/sh")).unwrap();
    std::fs::write(root.join("hello"), "from the rootfs\n").unwrap();
    let tag = format!("localhost/atex-test-import-{}", std::process::id());
    let tarball = tmp.path().join("root.tar");
    let st = Command::new("tar")
        .arg("-C")
        .arg(&root)
        .args(["-cf"])
        .arg(&tarball)
        .arg(".")
        .status()
        .unwrap();
    assert!(st.success());
    for (src, t) in [
        (root.as_path(), format!("{tag}-dir")),
        (tarball.as_path(), format!("{tag}-tar")),
    ] {
        let out = atex()
            .args(["podman", "image", "import"])
            .arg(src)
            .arg(&t)
            .args(["--change", "ENV PATH=/bin"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let run = podman_cmd()
            .args(["run", "--rm", "--pull=never", &t, "sh", "-c", "cat /hello"])
            .output()
            .unwrap();
        let _ = podman_cmd().args(["rmi", "-f", &t]).output();
        assert_eq!(
            String::from_utf8_lossy(&run.stdout),
            "from the rootfs\n",
            "{}",
            String::from_utf8_lossy(&run.stderr)
        );
    }
    let out = atex()
        .args(["podman", "image", "import", "/nonexistent/rootfs", "x"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/rootfs"));
}

const DEBSD: &str = "localhost/atex-test-debsd:latest";

/// The systemd image (Debian minbase with systemd, by debootstrap), built once.
fn systemd_image() {
    static ONCE: Once = Once::new();
    images();
    ONCE.call_once(|| {
        let st = Command::new(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/podman/test-images.sh"),
        )
        .env("CONTAINERS_CONF", containers_conf())
        .env("ATEX", env!("CARGO_BIN_EXE_atex"))
        .env("ATEX_PODMAN_SYSTEMD_IMAGE", "1")
        .status()
        .unwrap();
        assert!(st.success(), "building the systemd test image failed");
    });
}

/// A test in a systemd container that reboots it (`disconnect`, then `systemctl reboot`:
/// the container exits) gets its container started again and finishes with
/// `TMT_REBOOT_COUNT=1`; the container is removed at the end.
#[test]
fn systemd_container_reboots_and_the_test_continues() {
    systemd_image();
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tree");
    support::write_tree(
        &tree,
        concat!(
            "/reboot:\n    duration: 5m\n    test: |\n",
            "        echo \"boot $TMT_REBOOT_COUNT $(cat /proc/1/comm)\"\n",
            "        if [ \"$TMT_REBOOT_COUNT\" = 0 ]; then\n",
            "            echo disconnect >&$ATEX_TEST_CONTROL\n",
            "            systemctl reboot\n",
            "            sleep 600\n",
            "        fi\n",
            "        test \"$TMT_REBOOT_COUNT\" = 1\n",
        ),
    );
    let run = run_id("reboot");
    let results = tmp.path().join("results");
    let out = atex()
        .args(["-q", "run"])
        .arg(&tree)
        .args([
            "--provisioner",
            &format!("podman:{DEBSD}"),
            "--podman-systemd",
            "--podman-run-id",
            &run,
            "--results",
        ])
        .arg(&results)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows = support::result_rows(&results);
    assert!(
        rows.iter()
            .any(|r| r[2] == "/tests/reboot" && r[1] == "pass"),
        "{rows:?}"
    );
    let output =
        std::fs::read_to_string(results.join("files/local/tests/reboot/output.txt")).unwrap();
    assert!(
        output.contains("boot 0 systemd") && output.contains("boot 1 systemd"),
        "{output}"
    );
    assert!(containers_with(&format!("atex.run={run}")).is_empty());
}

/// A test whose duration expires is killed inside the container: none of its processes is
/// left there, and its result is `infra`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_test_leaves_no_process_in_the_container() {
    use atex::executor::Executor;
    use atex::executor::fmf::{FmfExecutor, FmfPlan, FmfTest};
    images();
    let scope = Scope::root("t");
    let c = Container::start(MINI, "atex-test=timeout");
    let conn = Arc::new(
        PodmanConnection::connect(podman(), &c.0, &scope)
            .await
            .unwrap(),
    );
    let tree = tempfile::tempdir().unwrap();
    let mut test = FmfTest::new("/slow", "sleep 778 & setsid sleep 778 & sleep 778\n");
    test.duration = Some("3s".into());
    let mut exec = FmfExecutor::new(conn.clone(), tree.path(), [test], FmfPlan::default());
    exec.start(&scope).await.unwrap();
    let artifacts = tempfile::tempdir().unwrap();
    let probe = async {
        let deadline = Instant::now() + Duration::from_secs(30);
        while count(&conn, &scope, "778").await < 3 {
            assert!(Instant::now() < deadline, "the test's processes never ran");
        }
    };
    let (_, ()) = tokio::join!(exec.run_test("/slow", artifacts.path(), &scope), probe);
    let results = std::fs::read_to_string(artifacts.path().join("results")).unwrap();
    assert!(results.contains("\"infra\""), "{results}");
    assert_eq!(
        count(&conn, &scope, "778").await,
        0,
        "processes of the expired test are left"
    );
    exec.stop(&scope).await.unwrap();
    assert!(scope.shutdown(ShutdownOptions::default()).await.is_clean());
}

/// `atex podman image build-with-deps` end to end: from the Debian test image (apt, no
/// `hello`, no `tree`), an image with the package the FMF tree's test requires (`hello`)
/// and one given with `-p` (`tree`); a container of it runs both. The base's command and
/// stop signal are kept, and the image carries no label of atex.
#[test]
fn build_with_deps_installs_what_the_tree_requires() {
    systemd_image();
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tree");
    support::write_tree(&tree, "/hi:\n    test: hello\n    require: [hello]\n");
    let tag = format!("localhost/atex-test-deps-{}:1", std::process::id());
    let absent = podman_cmd()
        .args(["run", "--rm", "--pull=never", DEBSD, "sh", "-c"])
        .arg("command -v hello || command -v tree")
        .output()
        .unwrap();
    assert!(!absent.status.success(), "{absent:?}");
    let out = atex()
        .args(["-q", "podman", "image", "build-with-deps", DEBSD, &tag])
        .args(["-p", "tree", "--fmf-root"])
        .arg(&tree)
        .args(BUILD_NETWORK)
        .output()
        .unwrap();
    let image = ImageGone(tag.clone());
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let run = podman_cmd()
        .args(["run", "--rm", "--pull=never", &id, "sh", "-c"])
        .arg("hello && tree --version")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&run.stdout);
    assert!(
        text.contains("Hello, world!") && text.contains("tree v"),
        "{text}{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let config = |image: &str| {
        let out = podman_cmd()
            .args(["image", "inspect", "--format"])
            .arg(
                "{{json .Config.Cmd}} {{.Config.StopSignal}} {{json .Config.Env}}|{{json .Labels}}",
            )
            .arg(image)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let (config, labels) = text.split_once('|').unwrap();
        (config.to_string(), labels.to_string())
    };
    let ((derived, labels), (base, _)) = (config(&tag), config(DEBSD));
    assert_eq!(derived, base);
    assert!(derived.starts_with(r#"["/sbin/init"] "#), "{derived}");
    assert!(!labels.contains("\"atex"), "{labels}");
    drop(image);
}

/// The `--network` of the test builds (see [`build_with_deps_installs_what_the_tree_requires`]).
const BUILD_NETWORK: [&str; 2] = ["--network", "host"];

/// Removes an image when dropped.
struct ImageGone(String);

impl Drop for ImageGone {
    fn drop(&mut self) {
        let _ = podman_cmd().args(["rmi", "-f", &self.0]).output();
    }
}

/// Errors of `atex podman image build-with-deps` exit with 2 and name the image or the
/// package, with the tool's message: a base that does not exist, a package that does not
/// exist (apt's message), a base without a package manager, `podman build` failing (an
/// unknown network), an invalid package name, a tree that does not exist. No image is
/// left under the name.
#[test]
fn build_with_deps_errors_name_the_image_and_the_package() {
    systemd_image();
    let tag = format!("localhost/atex-test-deps-err-{}:1", std::process::id());
    let _image = ImageGone(tag.clone());
    let tag = tag.as_str();
    let cases: [(&[&str], &[&str]); 6] = [
        (
            &["localhost/atex-no-such-base:1", tag, "-p", "hello"],
            &["localhost/atex-no-such-base:1", "image not known"],
        ),
        (
            &[
                DEBSD,
                tag,
                "-p",
                "atex-no-such-package",
                "--network",
                "host",
            ],
            &[DEBSD, "atex-no-such-package", "Unable to locate package"],
        ),
        (
            &[BB, tag, "-p", "hello"],
            &[BB, "no dnf, yum, apt-get, apk or zypper"],
        ),
        (
            &[BB, tag, "-p", "hello", "--network", "atex-no-such-network"],
            &[BB, "hello", "atex-no-such-network"],
        ),
        (&[BB, tag, "-p", "a;b"], &["\"a;b\""]),
        (
            &[BB, tag, "--fmf-root", "/nonexistent/atex-tree"],
            &["/nonexistent/atex-tree"],
        ),
    ];
    for (args, wanted) in cases {
        let out = atex()
            .args(["-q", "podman", "image", "build-with-deps"])
            .args(args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        for w in wanted {
            assert!(err.contains(w), "{args:?}: {w:?} not in {err}");
        }
        let exists = podman_cmd()
            .args(["image", "exists", tag])
            .status()
            .unwrap();
        assert!(!exists.success(), "{args:?} left the image {tag}");
    }
}
