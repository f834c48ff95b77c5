//! `atex tf` and the `testingfarm_api` example as processes, against the fake Testing Farm.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use atex::testingfarm::{Client, ClientBuilder, Journal, NewRequest, RetryPolicy};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use support::fake_tf::{FakeTf, Script, TOKEN};

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn client(fake: &FakeTf) -> Client {
    ClientBuilder::new()
        .url(fake.url())
        .token(TOKEN)
        .retry(RetryPolicy {
            max_retries: 3,
            backoff_factor: Duration::from_millis(10),
            backoff_max: Duration::from_millis(20),
            retry_after_max: Duration::from_secs(1),
        })
        .poll_interval(Duration::from_millis(50))
        .build()
        .unwrap()
}

/// `atex -q tf ...` pointed at the fake through the environment.
fn atex(fake: &FakeTf) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_atex"));
    c.env("TESTING_FARM_API_URL", fake.url())
        .env("TESTING_FARM_API_TOKEN", TOKEN)
        .env("TESTING_FARM_WATCH_TICK", "0.05")
        .env_remove("RUST_LOG")
        .args(["-q", "tf"])
        .stdin(Stdio::null());
    c
}

struct Out {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn run(cmd: &mut Command) -> Out {
    let o = cmd.output().unwrap();
    Out {
        code: o.status.code(),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

fn ok(cmd: &mut Command) -> String {
    let o = run(cmd);
    assert_eq!(
        o.code,
        Some(0),
        "stdout: {}\nstderr: {}",
        o.stdout,
        o.stderr
    );
    o.stdout
}

fn create(fake: &FakeTf, n: usize) -> Vec<String> {
    let c = client(fake);
    rt().block_on(async {
        let mut ids = Vec::new();
        for _ in 0..n {
            ids.push(
                c.create(&NewRequest::reserve("Fedora-42", "x86_64"))
                    .await
                    .unwrap()
                    .id()
                    .to_string(),
            );
        }
        ids
    })
}

#[test]
fn whoami_about_composes_for_people_and_as_json() {
    let fake = FakeTf::start();
    let text = ok(atex(&fake).arg("whoami"));
    assert!(text.contains("ranch: public"), "{text}");
    assert!(
        text.contains("user:  jdoe (0b7a6f2c-1e2d-4c3b-8a9f-7e6d5c4b3a21)"),
        "{text}"
    );
    let v: serde_json::Value =
        serde_json::from_str(&ok(atex(&fake).args(["--json", "whoami"]))).unwrap();
    assert_eq!(v["token"]["ranch"], "public");
    assert_eq!(ok(atex(&fake).arg("about")), "app_version: fake\n");
    let names = ok(atex(&fake).arg("composes"));
    assert!(names.lines().any(|l| l == "Fedora-42"), "{names}");
    assert!(
        !names.contains("Rawhide-[0-9]"),
        "regex entries are not names: {names}"
    );
    let v: serde_json::Value =
        serde_json::from_str(&ok(atex(&fake).args(["composes", "redhat", "--json"]))).unwrap();
    assert!(
        v.as_array()
            .unwrap()
            .iter()
            .any(|c| c["name"] == "RHEL-9.6.0-Nightly")
    );
}

#[test]
fn missing_token_and_api_errors_exit_2_with_a_clear_message() {
    let fake = FakeTf::start();
    let o = run(atex(&fake)
        .env_remove("TESTING_FARM_API_TOKEN")
        .arg("whoami"));
    assert_eq!(o.code, Some(2));
    assert!(o.stderr.contains("TESTING_FARM_API_TOKEN"), "{}", o.stderr);
    assert!(fake.calls().is_empty(), "nothing sent without a token");

    let o = run(atex(&fake).args(["get-request", "00000000-0000-4000-8000-00000000dead"]));
    assert_eq!(o.code, Some(2));
    assert!(
        o.stderr.contains(
            "GET /v0.1/requests/00000000-0000-4000-8000-00000000dead: HTTP 404: No such entity"
        ),
        "{}",
        o.stderr
    );
    let o = run(atex(&fake)
        .env("TESTING_FARM_API_TOKEN", "wrong-token")
        .arg("whoami"));
    assert_eq!(o.code, Some(2));
    assert!(
        o.stderr.contains("HTTP 401") && !o.stderr.contains("wrong-token"),
        "{}",
        o.stderr
    );
    let o = run(atex(&fake).args(["--url", "ftp://x", "about"]));
    assert_eq!(o.code, Some(2));
    assert!(
        o.stderr.contains("invalid Testing Farm API URL 'ftp://x'"),
        "{}",
        o.stderr
    );
    let o = run(atex(&fake).args(["sr", "--after", "yesterday"]));
    assert_eq!(o.code, Some(2));
    assert!(
        o.stderr.contains("invalid timestamp 'yesterday'"),
        "{}",
        o.stderr
    );
    let o = run(atex(&fake).args(["sr", "--state", "paused"]));
    assert_eq!(o.code, Some(2));
    assert!(
        o.stderr.contains("unknown request state 'paused'"),
        "{}",
        o.stderr
    );
    // A server down for good: a clear error after the configured retries.
    fake.add_fault(support::fake_tf::Fault::html(
        hyper::Method::GET,
        "/v0.1/about",
        503,
    ));
    let o = run(atex(&fake).args(["--max-retries", "0", "about"]));
    assert_eq!(o.code, Some(2));
    assert!(
        o.stderr.contains("GET /v0.1/about: HTTP 503"),
        "{}",
        o.stderr
    );
}

#[test]
fn get_request_and_search_requests() {
    let fake = FakeTf::start();
    fake.set_script(Script::manual());
    let ids = create(&fake, 3);
    fake.set_state(&ids[1], "running");
    fake.set_state(&ids[2], "complete");

    let text = ok(atex(&fake).args(["gr", &ids[0]]));
    assert!(text.contains(&format!("id:        {}", ids[0])), "{text}");
    assert!(text.contains("state:     new"), "{text}");
    assert!(text.contains("platform:  Fedora-42@x86_64"), "{text}");
    let v: serde_json::Value =
        serde_json::from_str(&ok(atex(&fake).args(["get-request", &ids[1], "--json"]))).unwrap();
    assert_eq!(v["state"], "running");
    assert_eq!(v["environments_requested"][0]["os"]["compose"], "Fedora-42");

    // Default: live states; one line each, with created time, state, id, URL, platform.
    let text = ok(atex(&fake).arg("sr"));
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(
        lines.iter().any(|l| l.contains(&format!(
            " new {} https://gitlab.com/testing-farm/tests Fedora-42@x86_64",
            ids[0]
        ))),
        "{text}"
    );
    let created = lines[0].split(' ').next().unwrap();
    assert!(
        created.len() == 19 && !created.contains('.'),
        "seconds precision: {created}"
    );
    let text = ok(atex(&fake).args(["sr", "--all", "--mine", "--after", "1h"]));
    assert_eq!(text.lines().count(), 3, "{text}");
    let text = ok(atex(&fake).args(["sr", "--state", "complete", "--state", "running"]));
    assert_eq!(text.lines().count(), 2, "{text}");
    let text = ok(atex(&fake).args(["sr", "--all", "--before", "2000-01-01"]));
    assert!(text.is_empty(), "{text}");
    let v: serde_json::Value =
        serde_json::from_str(&ok(atex(&fake).args(["sr", "--json", "--state", "running"])))
            .unwrap();
    assert_eq!(v.as_array().unwrap().len(), 1);
    assert_eq!(v[0]["id"], ids[1].as_str());
    // --mine sent the token; plain searches did not.
    let searches = fake.calls_to("GET", "/v0.1/requests");
    assert!(
        searches
            .iter()
            .any(|c| c.auth && c.query.contains("token_id="))
    );
    assert!(searches.iter().any(|c| !c.auth));
}

#[test]
fn cancel_by_id_and_all_mine() {
    let fake = FakeTf::start();
    let ids = create(&fake, 4);
    let out = ok(atex(&fake).args(["cancel", &ids[0], "00000000-0000-4000-8000-00000000beef"]));
    assert!(
        out.contains(&format!("{}: cancel requested", ids[0])),
        "{out}"
    );
    assert!(
        out.contains("00000000-0000-4000-8000-00000000beef: not found"),
        "{out}"
    );
    assert_eq!(fake.alive().len(), 3);
    let v: serde_json::Value =
        serde_json::from_str(&ok(atex(&fake).args(["cancel", "--mine", "--json"]))).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 3, "{v}");
    assert!(
        v.as_array()
            .unwrap()
            .iter()
            .all(|r| r["outcome"] == "cancel-requested")
    );
    assert!(fake.alive().is_empty());
    let o = run(atex(&fake).arg("cancel"));
    assert_eq!(o.code, Some(2), "ids or --mine are required: {}", o.stderr);
    // A cancel the server refuses is reported and makes the exit status 1.
    let theirs = {
        let c = ClientBuilder::new()
            .url(fake.url())
            .token(support::fake_tf::TOKEN_REDHAT)
            .build()
            .unwrap();
        rt().block_on(c.create(&NewRequest::reserve("RHEL-9.6.0-Nightly", "x86_64")))
            .unwrap()
            .id()
            .to_string()
    };
    let o = run(atex(&fake).args(["cancel", &theirs]));
    assert_eq!(o.code, Some(1), "{}", o.stderr);
    assert!(o.stderr.contains("HTTP 403"), "{}", o.stderr);
}

/// Reads a child's stdout lines on a thread.
fn lines_of(child: &mut Child) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

fn wait_line(rx: &mpsc::Receiver<String>, needle: &str, seen: &mut Vec<String>) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !seen.iter().any(|l| l.contains(needle)) {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(l) => seen.push(l),
            Err(_) => panic!("no line containing {needle:?}; got {seen:#?}"),
        }
    }
}

fn wait_exit(child: &mut Child, limit: Duration) -> Option<i32> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st.code();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("process did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn watch_pipeline_follows_the_log_until_the_request_ends() {
    let fake = FakeTf::start();
    let id = create(&fake, 1).remove(0);
    let mut child = atex(&fake)
        .args(["wp", &id, "--interval", "0.05"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let rx = lines_of(&mut child);
    let mut seen = Vec::new();
    wait_line(&rx, "execute task #1", &mut seen);
    assert!(
        seen.iter()
            .any(|l| l.contains("] Guest is ready: ArtemisGuest(")),
        "{seen:#?}"
    );
    fake.append_log(&id, "a late line");
    wait_line(&rx, "a late line", &mut seen);
    rt().block_on(client(&fake).cancel(&id)).unwrap();
    assert_eq!(wait_exit(&mut child, Duration::from_secs(20)), Some(0));
    wait_line(&rx, "Cancelling pipeline", &mut seen);
    // Each line exactly once (Range reads, no repeats).
    let guest_lines = seen.iter().filter(|l| l.contains("Guest is ready")).count();
    assert_eq!(guest_lines, 1, "{seen:#?}");
    let gets = fake.calls_to("GET", "/artifacts/*");
    assert!(
        gets.iter().all(|c| c.range.is_some()),
        "every read used Range"
    );
}

#[test]
fn watch_pipeline_stops_on_ctrl_c() {
    let fake = FakeTf::start();
    fake.set_script(Script::stuck_queued());
    let id = create(&fake, 1).remove(0);
    let mut child = atex(&fake)
        .args(["wp", &id, "--interval", "0.05"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until it polls the request, then interrupt.
    let deadline = Instant::now() + Duration::from_secs(20);
    while fake.request(&id).unwrap().polls < 2 {
        assert!(Instant::now() < deadline, "watch never polled");
        std::thread::sleep(Duration::from_millis(20));
    }
    kill(Pid::from_raw(child.id() as i32), Signal::SIGINT).unwrap();
    assert_eq!(wait_exit(&mut child, Duration::from_secs(10)), Some(130));
    rt().block_on(client(&fake).cancel(&id)).unwrap();
}

#[test]
fn cleanup_cancels_everything_in_the_journal() {
    let fake = FakeTf::start();
    let ids = create(&fake, 3);
    let dir = tempfile::tempdir().unwrap();
    // The default journal in the working directory.
    let journal = Journal::new(dir.path().join(".atex-tf-journal"));
    for id in &ids {
        journal.record_created(id, "m").unwrap();
    }
    journal
        .record_created("00000000-0000-4000-8000-000000000404", "gone")
        .unwrap();
    // A create whose id was never written: found by its marker.
    let lost = NewRequest::reserve("Fedora-42", "x86_64");
    journal.record_pending(lost.marker()).unwrap();
    let lost_id = rt()
        .block_on(client(&fake).create(&lost))
        .unwrap()
        .id()
        .to_string();
    assert_eq!(fake.alive().len(), 4);
    let out = ok(atex(&fake).arg("cleanup").current_dir(dir.path()));
    for id in ids.iter().chain([&lost_id]) {
        assert!(out.contains(&format!("{id}: cancel requested")), "{out}");
    }
    assert!(
        out.contains("00000000-0000-4000-8000-000000000404: not found"),
        "{out}"
    );
    assert!(
        out.contains(".atex-tf-journal: nothing outstanding"),
        "{out}"
    );
    assert!(fake.alive().is_empty());
    assert_eq!(std::fs::metadata(journal.path()).unwrap().len(), 0);
    // Again, explicitly named, as JSON: nothing to do.
    let v: serde_json::Value = serde_json::from_str(&ok(atex(&fake)
        .args(["cleanup", "--json"])
        .arg(journal.path())))
    .unwrap();
    assert_eq!(v["cancelled"], serde_json::json!([]));
    // A journal that does not exist holds nothing.
    let out = ok(atex(&fake).args(["cleanup", "/nonexistent/journal"]));
    assert!(out.contains("nothing outstanding"), "{out}");
}

#[test]
fn cleanup_that_cannot_cancel_exits_1_and_keeps_the_entry() {
    let fake = FakeTf::start();
    let ids = create(&fake, 1);
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::new(dir.path().join("j"));
    journal.record_created(&ids[0], "m").unwrap();
    fake.add_fault(support::fake_tf::Fault::status(
        hyper::Method::DELETE,
        "/v0.1/requests/*",
        500,
    ));
    let o = run(atex(&fake)
        .args(["--max-retries", "1", "cleanup"])
        .arg(journal.path()));
    assert_eq!(o.code, Some(1), "{}", o.stderr);
    assert!(
        o.stderr.contains(&ids[0]) && o.stderr.contains("HTTP 500"),
        "{}",
        o.stderr
    );
    assert!(
        o.stdout
            .contains("1 request(s) and 0 create(s) still outstanding"),
        "{}",
        o.stdout
    );
    assert_eq!(journal.outstanding().unwrap().requests, ids);
    fake.clear_faults();
    ok(atex(&fake).arg("cleanup").arg(journal.path()));
    assert!(fake.alive().is_empty());
}

fn example(fake: &FakeTf) -> Command {
    let bin = support::built_binary("examples/testingfarm_api");
    assert!(
        bin.exists(),
        "{} not built (cargo test builds examples)",
        bin.display()
    );
    let mut c = Command::new(bin);
    c.env("TESTING_FARM_API_URL", fake.url())
        .env("TESTING_FARM_API_TOKEN", TOKEN)
        .env("TESTING_FARM_WATCH_TICK", "0.05")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null());
    c
}

#[test]
fn example_submits_waits_and_cancels() {
    let fake = FakeTf::start();
    let out = ok(example(&fake).args(["Fedora-42", "aarch64"]));
    let requests = fake.requests();
    assert_eq!(requests.len(), 1);
    let id = &requests[0].id;
    assert_eq!(requests[0].body["environments"][0]["arch"], "aarch64");
    assert!(out.contains(&format!("request {id} submitted")), "{out}");
    assert!(
        out.contains(&format!(
            "request {id} is running; artifacts: {}/artifacts/{id}",
            fake.url()
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!("request {id}: cancel requested")),
        "{out}"
    );
    assert!(fake.alive().is_empty());
    assert_eq!(requests[0].delete_count, 1);
}

#[test]
fn example_reports_a_request_that_failed() {
    let fake = FakeTf::start();
    fake.set_script(Script::error_from(
        "queued",
        std::time::Duration::from_millis(50),
    ));
    let o = run(&mut example(&fake));
    assert_eq!(o.code, Some(1), "{}\n{}", o.stdout, o.stderr);
    assert!(
        o.stdout
            .contains("ended with state 'error': Guest provisioning failed"),
        "{}",
        o.stdout
    );
    assert!(o.stdout.contains(": already finished"), "{}", o.stdout);
    assert!(fake.alive().is_empty());
}

#[test]
fn example_interrupted_while_queued_still_cancels() {
    let fake = FakeTf::start();
    fake.set_script(Script::stuck_queued());
    let mut child = example(&fake)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    fake.wait_until("a queued request", Duration::from_secs(20), |rs| {
        rs.first().is_some_and(|r| r.state == "queued")
    });
    kill(Pid::from_raw(child.id() as i32), Signal::SIGINT).unwrap();
    assert_eq!(wait_exit(&mut child, Duration::from_secs(20)), Some(130));
    assert!(fake.alive().is_empty(), "{:?}", fake.alive());
    assert_eq!(fake.requests()[0].delete_count, 1);
}

#[test]
fn example_interrupted_during_create_still_cancels() {
    let fake = FakeTf::start();
    // The create is committed but its reply hangs: Ctrl-C arrives mid-POST.
    fake.add_fault(support::fake_tf::Fault::new(
        Some(hyper::Method::POST),
        "/v0.1/requests",
        support::fake_tf::FaultKind::Delay(Duration::from_secs(3600)),
    ));
    let mut child = example(&fake)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    fake.wait_until("a request", Duration::from_secs(20), |rs| !rs.is_empty());
    kill(Pid::from_raw(child.id() as i32), Signal::SIGINT).unwrap();
    assert_eq!(wait_exit(&mut child, Duration::from_secs(20)), Some(130));
    assert!(fake.alive().is_empty(), "{:?}", fake.alive());
    assert!(fake.orphans().is_empty());
}
