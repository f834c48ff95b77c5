//! `atex run --provisioner testingfarm:...`, `atex tf reserve` and `atex tf cleanup` as
//! processes against the fake Testing Farm (guest: a real sshd on port 22 of a
//! network-namespace host): a run on 4 reservations, Ctrl-C at many moments, `kill -9`
//! then cleanup.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use atex::testingfarm::Journal;
use hyper::Method;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use support::fake_tf::{FakeConfig, FakeTf, Fault, FaultKind, Guest, Script, TOKEN_REDHAT};
use support::sshd::NetnsHost;

struct Lab {
    fake: FakeTf,
    _host: NetnsHost,
    dir: tempfile::TempDir,
}

impl Lab {
    fn new() -> Self {
        let host = NetnsHost::start();
        let fake = FakeTf::start_with(FakeConfig {
            guests: vec![Guest {
                user: "root".into(),
                host: host.ip.clone(),
            }],
            authorized_keys: Some(host.files.dir.path().join("authorized_keys.root")),
            minute: Duration::from_secs(60),
            ..FakeConfig::default()
        });
        let dir = tempfile::tempdir().unwrap();
        Self {
            fake,
            _host: host,
            dir,
        }
    }

    fn journal(&self) -> PathBuf {
        self.dir.path().join("journal")
    }

    fn atex(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_atex"));
        c.env("TESTING_FARM_API_URL", self.fake.url())
            .env("TESTING_FARM_API_TOKEN", TOKEN_REDHAT)
            .env("TESTING_FARM_WATCH_TICK", "0.05")
            .env_remove("RUST_LOG")
            .current_dir(self.dir.path())
            .stdin(Stdio::null());
        c
    }

    /// `atex -q run TREE --provisioner testingfarm:CentOS-Stream-9 --remotes N`.
    fn run(&self, tree: &Path, remotes: u32, results: &str) -> Command {
        let mut c = self.atex();
        c.args(["-q", "run"])
            .arg(tree)
            .args(["--provisioner", "testingfarm:CentOS-Stream-9", "--remotes"])
            .arg(remotes.to_string())
            .arg("--journal")
            .arg(self.journal())
            .arg("--results")
            .arg(self.dir.path().join(results));
        c
    }

    fn tree(&self, name: &str, main_fmf: &str) -> PathBuf {
        let root = self.dir.path().join(name);
        std::fs::create_dir_all(root.join(".fmf")).unwrap();
        std::fs::write(root.join(".fmf/version"), "1\n").unwrap();
        std::fs::create_dir_all(root.join("tests")).unwrap();
        std::fs::write(root.join("tests/main.fmf"), main_fmf).unwrap();
        root
    }

    fn outstanding(&self) -> atex::testingfarm::Outstanding {
        Journal::new(self.journal()).outstanding().unwrap()
    }
}

fn wait_exit(child: &mut Child, limit: Duration) -> Option<i32> {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code();
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("atex did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn stderr_of(child: &mut Child) -> String {
    let mut s = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut e, &mut s);
    }
    s
}

#[test]
fn a_run_on_four_reservations_cancels_all_four() {
    let lab = Lab::new();
    let mut fmf = String::new();
    for i in 0..8 {
        fmf.push_str(&format!("/t{i}:\n    test: echo test {i}; hostname -I\n"));
    }
    let tree = lab.tree("tree", &fmf);
    let out = lab.run(&tree, 4, "results").output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Vec<serde_json::Value> =
        std::fs::read_to_string(lab.dir.path().join("results/results.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
    assert_eq!(rows.len(), 8);
    assert!(rows.iter().all(|r| r[1] == "pass"), "{rows:?}");
    let requests = lab.fake.requests();
    assert_eq!(requests.len(), 4, "creates: {}", requests.len());
    for r in &requests {
        assert_eq!(
            r.delete_count, 1,
            "request {}: {} DELETEs",
            r.id, r.delete_count
        );
    }
    assert_eq!(lab.fake.calls_to("DELETE", "/v0.1/requests/*").len(), 4);
    assert!(lab.fake.alive().is_empty(), "{:?}", lab.fake.alive());
    assert!(lab.fake.orphans().is_empty());
    assert!(lab.outstanding().is_empty());
    assert_eq!(std::fs::metadata(lab.journal()).unwrap().len(), 0);
}

/// One moment of the interrupt matrix: how to set the fake up, and when to send SIGINT.
struct Moment {
    name: &'static str,
    remotes: u32,
    setup: fn(&Lab),
    /// Returns once the moment has come.
    wait: fn(&Lab, &Path),
}

fn first_request(lab: &Lab, what: &str, pred: impl Fn(&support::fake_tf::RequestRecord) -> bool) {
    lab.fake
        .wait_until(what, Duration::from_secs(60), |rs| rs.iter().any(&pred));
}

fn started_marker(lab: &Lab) -> PathBuf {
    lab.dir.path().join("started")
}

fn moments() -> Vec<Moment> {
    vec![
        Moment {
            name: "during the create (reply delayed)",
            remotes: 2,
            setup: |lab| {
                lab.fake.add_fault(Fault::new(
                    Some(Method::POST),
                    "/v0.1/requests",
                    FaultKind::Delay(Duration::from_secs(2)),
                ));
            },
            wait: |lab, _| first_request(lab, "a create", |_| true),
        },
        Moment {
            name: "during the create's retries (503s)",
            remotes: 1,
            setup: |lab| {
                lab.fake
                    .add_fault(Fault::html(Method::POST, "/v0.1/requests", 503));
            },
            wait: |lab, _| {
                support::wait_until(Duration::from_secs(30), "a refused POST", || {
                    !lab.fake.calls_to("POST", "/v0.1/requests").is_empty()
                })
            },
        },
        Moment {
            name: "while new",
            remotes: 2,
            setup: |lab| lab.fake.set_script(Script::manual()),
            wait: |lab, _| first_request(lab, "a new request", |r| r.state == "new"),
        },
        Moment {
            name: "while queued",
            remotes: 3,
            setup: |lab| lab.fake.set_script(Script::stuck_queued()),
            wait: |lab, _| first_request(lab, "a queued request", |r| r.state == "queued"),
        },
        Moment {
            name: "running, no guest yet",
            remotes: 2,
            setup: |lab| lab.fake.set_script(Script::guest_never_ready()),
            wait: |lab, _| first_request(lab, "a running request", |r| r.state == "running"),
        },
        Moment {
            name: "guest known, reserve test not started",
            remotes: 2,
            setup: |lab| lab.fake.set_script(Script::tests_never_start()),
            wait: |lab, _| first_request(lab, "a guest line", |r| r.log.contains("Guest is ready")),
        },
        Moment {
            name: "probing SSH (key never installed)",
            remotes: 2,
            setup: |lab| lab.fake.set_script(Script::keys_never_installed()),
            wait: |lab, _| {
                first_request(lab, "tests execution", |r| {
                    r.log.contains("execute task #1")
                })
            },
        },
        Moment {
            name: "during tests",
            remotes: 2,
            setup: |_| {},
            wait: |lab, _| {
                let m = started_marker(lab);
                support::wait_until(Duration::from_secs(60), "a test to start", || m.exists())
            },
        },
        Moment {
            name: "some remotes ready, others queued",
            remotes: 3,
            setup: |lab| {
                lab.fake.set_script(Script::reservation());
            },
            wait: |lab, _| {
                let m = started_marker(lab);
                support::wait_until(Duration::from_secs(60), "a test to start", || m.exists());
                lab.fake.set_script(Script::stuck_queued());
            },
        },
        Moment {
            name: "during release (DELETE delayed)",
            remotes: 1,
            setup: |lab| {
                lab.fake.add_fault(Fault::new(
                    Some(Method::DELETE),
                    "/v0.1/requests/*",
                    FaultKind::Delay(Duration::from_secs(2)),
                ));
            },
            wait: |lab, _| {
                support::wait_until(Duration::from_secs(60), "a DELETE", || {
                    !lab.fake.calls_to("DELETE", "/v0.1/requests/*").is_empty()
                        || lab.fake.requests().iter().any(|r| r.delete_count > 0)
                })
            },
        },
    ]
}

#[test]
fn sigint_at_any_moment_leaves_no_request_alive() {
    for m in moments() {
        let lab = Lab::new();
        (m.setup)(&lab);
        let marker = started_marker(&lab);
        let fmf = if m.name.starts_with("during release") {
            // One quick test: the run ends and releases its remote.
            "/quick:\n    test: echo quick\n".to_string()
        } else {
            format!(
                "/a:\n    test: touch {0}; sleep 60\n/b:\n    test: touch {0}; sleep 60\n/c:\n    test: touch {0}; sleep 60\n",
                marker.display()
            )
        };
        let tree = lab.tree("tree", &fmf);
        let mut child = lab
            .run(&tree, m.remotes, "results")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        (m.wait)(&lab, &tree);
        kill(Pid::from_raw(child.id() as i32), Signal::SIGINT).unwrap();
        let code = wait_exit(&mut child, Duration::from_secs(60));
        let stderr = stderr_of(&mut child);
        assert!(
            matches!(code, Some(130) | Some(0)),
            "{}: exit {code:?}: {stderr}",
            m.name
        );
        assert!(
            lab.fake.alive().is_empty(),
            "{}: alive after SIGINT: {:?}\n{stderr}",
            m.name,
            lab.fake.alive()
        );
        assert!(lab.fake.orphans().is_empty(), "{}: orphans", m.name);
        for r in lab.fake.requests() {
            assert!(
                r.delete_count >= 1 || !matches!(r.state.as_str(), "new" | "queued" | "running"),
                "{}: {} never cancelled",
                m.name,
                r.id
            );
        }
        assert!(
            lab.outstanding().is_empty(),
            "{}: journal {:?}",
            m.name,
            lab.outstanding()
        );
    }
}

#[test]
fn sigkill_mid_run_then_cleanup_leaves_nothing_alive() {
    let lab = Lab::new();
    let marker = started_marker(&lab);
    let fmf = format!(
        "/a:\n    test: touch {0}; sleep 60\n/b:\n    test: touch {0}; sleep 60\n",
        marker.display()
    );
    let tree = lab.tree("tree", &fmf);
    let mut child = lab
        .run(&tree, 3, "results")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    support::wait_until(Duration::from_secs(60), "a test to start", || {
        marker.exists()
    });
    kill(Pid::from_raw(child.id() as i32), Signal::SIGKILL).unwrap();
    let _ = child.wait();
    let alive = lab.fake.alive();
    assert!(!alive.is_empty(), "the killed run held no request");
    assert_eq!(lab.outstanding().requests.len(), lab.fake.requests().len());
    let out = lab
        .atex()
        .args(["-q", "tf", "cleanup"])
        .arg(lab.journal())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(lab.fake.alive().is_empty(), "{:?}", lab.fake.alive());
    assert!(lab.outstanding().is_empty());
}

#[test]
fn reserve_prints_a_working_ssh_command_and_cancels_on_ctrl_c() {
    let lab = Lab::new();
    let mut child = lab
        .atex()
        .args([
            "-q",
            "tf",
            "reserve",
            "--compose",
            "CentOS-Stream-9",
            "--journal",
        ])
        .arg(lab.journal())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut lines = Vec::new();
    let ssh = loop {
        let mut line = String::new();
        assert!(
            stdout.read_line(&mut line).unwrap() > 0,
            "no ssh command: {lines:?}"
        );
        if line.starts_with("ssh ") {
            break line.trim().to_string();
        }
        lines.push(line);
    };
    assert!(lines.iter().any(|l| l.contains("is ready")), "{lines:?}");
    let id = lab.fake.requests()[0].id.clone();
    assert!(lines[0].contains(&id), "{lines:?}");
    // The printed command logs in (BatchMode: no prompt).
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "{} -o BatchMode=yes -- id -un",
            ssh.replacen("ssh ", "ssh -q ", 1)
        ))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "root\n",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(lab.fake.alive(), vec![id.clone()]);
    assert_eq!(lab.outstanding().requests, vec![id.clone()]);
    kill(Pid::from_raw(child.id() as i32), Signal::SIGINT).unwrap();
    assert_eq!(wait_exit(&mut child, Duration::from_secs(30)), Some(0));
    assert!(lab.fake.alive().is_empty());
    assert_eq!(lab.fake.request(&id).unwrap().delete_count, 1);
    assert!(lab.outstanding().is_empty());
}

#[test]
fn a_bad_compose_is_a_clear_error_without_hanging() {
    let lab = Lab::new();
    let tree = lab.tree("tree", "/a:\n    test: true\n");
    let mut cmd = lab.atex();
    cmd.args(["-q", "run"])
        .arg(&tree)
        .args([
            "--provisioner",
            "testingfarm:No-Such-Compose@x86_64",
            "--journal",
        ])
        .arg(lab.journal())
        .arg("--results")
        .arg(lab.dir.path().join("results"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let code = wait_exit(&mut child, Duration::from_secs(60));
    let stderr = stderr_of(&mut child);
    assert_ne!(code, Some(0), "{stderr}");
    assert!(stderr.contains("No-Such-Compose"), "{stderr}");
    assert!(lab.fake.requests().is_empty());
    assert!(lab.outstanding().is_empty());
    let out = lab
        .atex()
        .args(["-q", "run"])
        .arg(&tree)
        .args(["--provisioner", "testingfarm:@x86_64", "--results"])
        .arg(lab.dir.path().join("r2"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("expected testingfarm:COMPOSE[@ARCH]"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
