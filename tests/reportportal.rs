//! The ReportPortal client, aggregator and CLI against the fake ReportPortal
//! (tests/support/fake_rp.rs), which follows the contract of the ReportPortal spec.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use atex::aggregator::reportportal::{
    FileDecision, ReportPortalAggregator, RpClient, RpConfig, RpOptions,
};
use atex::aggregator::{Aggregator, AggregatorError};
use atex::http_retry::RetryPolicy;
use hyper::Method;
use support::fake_rp::{FakeRp, ItemRec, PROJECT, RpFault, RpFaultKind, TOKEN, TOKEN_NO_ACCESS};

fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        max_retries: 6,
        backoff_factor: Duration::from_millis(5),
        backoff_max: Duration::from_millis(40),
        retry_after_max: Duration::from_secs(1),
    }
}

fn client_with(fake: &FakeRp, token: &str) -> RpClient {
    let mut cfg = RpConfig::new(fake.url(), PROJECT, token);
    cfg.retry = fast_retry();
    cfg.request_timeout = Duration::from_secs(10);
    RpClient::new(cfg).unwrap()
}

fn client(fake: &FakeRp) -> RpClient {
    client_with(fake, TOKEN)
}

/// An artifacts directory with `results` lines and files (relative path, bytes).
fn artifacts(root: &Path, name: &str, results: &[&str], files: &[(&str, &[u8])]) -> PathBuf {
    let dir = root.join(name);
    std::fs::create_dir_all(dir.join("files")).unwrap();
    let mut text = results.join("\n");
    text.push('\n');
    std::fs::write(dir.join("results"), text).unwrap();
    for (p, data) in files {
        let path = dir.join("files").join(p);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, data).unwrap();
    }
    dir
}

fn by_name<'a>(items: &'a [ItemRec], name: &str) -> &'a ItemRec {
    items
        .iter()
        .find(|i| i.name == name)
        .unwrap_or_else(|| panic!("no item {name} in {items:#?}"))
}

#[tokio::test]
async fn nested_tree_with_logs_statuses_and_attachments() {
    let fake = FakeRp::start();
    let tmp = tempfile::tempdir().unwrap();
    let rp = ReportPortalAggregator::start(client(&fake), RpOptions::new_launch("ER#12345 comp"))
        .await
        .unwrap();
    let binary: Vec<u8> = (0..=255u8).collect();
    let a = artifacts(
        tmp.path(),
        "a",
        &[
            r#"{"name": "sub/one", "status": "pass", "files": ["s.txt"]}"#,
            r#"{"name": "sub2", "status": "fail", "note": "bad", "files": ["j.log"]}"#,
            r#"{"status": "fail", "note": "exit 1", "files": ["output.txt", "bin.dat"]}"#,
            r#"{"status": "pass", "note": "ignored: after the test's own result"}"#,
        ],
        &[
            ("sub/one/s.txt", b"sub one"),
            ("sub2/j.log", b"journal\x00bytes"),
            ("output.txt", b"test output\n"),
            ("bin.dat", &binary),
        ],
    );
    rp.ingest("9.6@x86_64", "/a", &a).await.unwrap();
    let b = artifacts(
        tmp.path(),
        "b",
        &[r#"{"name": "x", "status": "pass"}"#],
        &[],
    );
    rp.ingest("9.6@x86_64", "/b", &b).await.unwrap();
    let c = artifacts(
        tmp.path(),
        "c",
        &[
            "{}",
            r#"{"note": "no status: not sane"}"#,
            r#"{"status": "infra", "note": "TestAbortedError(timeout)"}"#,
        ],
        &[],
    );
    rp.ingest("9.6@x86_64", "/c", &c).await.unwrap();
    let d = artifacts(
        tmp.path(),
        "d",
        &[r#"{"status": "skip"}"#, r#"{"status": "warn"}"#],
        &[],
    );
    rp.ingest("10@s390x", "/a", &d).await.unwrap();
    let e = artifacts(tmp.path(), "e", &[r#"{"status": "xfail"}"#], &[]);
    rp.ingest("10@s390x", "/custom", &e).await.unwrap();
    rp.finish().await.unwrap();

    let launch = rp.launch_uuid().to_string();
    let launches = fake.launches();
    assert_eq!(launches.len(), 1);
    assert_eq!(launches[0].name, "ER#12345 comp");
    assert!(fake.unfinished_launches().is_empty());
    let roots = fake.children(&launch, None);
    let names: Vec<(&str, &str)> = roots
        .iter()
        .map(|i| (i.item_type.as_str(), i.name.as_str()))
        .collect();
    assert_eq!(names, [("test", "9.6@x86_64"), ("test", "10@s390x")]);
    // Only the platform items were left for the launch finish.
    let open: Vec<String> = fake
        .open_at_finish()
        .into_iter()
        .map(|(_, t, _)| t)
        .collect();
    assert_eq!(open, ["test", "test"]);

    let tests = fake.children(&launch, Some(&roots[0].uuid));
    let names: Vec<&str> = tests.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(names, ["/a", "/b", "/c"]);
    assert!(
        tests
            .iter()
            .all(|t| t.item_type == "step" && !t.retry && t.has_stats)
    );

    let ta = by_name(&tests, "/a");
    assert_eq!(ta.status, "FAILED");
    assert_eq!(ta.description.as_deref(), Some("exit 1"));
    assert_eq!(
        ta.finish_attempts, 1,
        "the line after the nameless result is ignored"
    );
    let subs = fake.children(&launch, Some(&ta.uuid));
    let s: Vec<(&str, &str, bool)> = subs
        .iter()
        .map(|i| (i.name.as_str(), i.status.as_str(), i.has_stats))
        .collect();
    assert_eq!(s, [("sub/one", "PASSED", false), ("sub2", "FAILED", false)]);
    assert_eq!(subs[1].description.as_deref(), Some("bad"));
    // Files only for failing results: none for the passing subtest.
    assert!(fake.logs_of(&subs[0].uuid).is_empty());
    let sub2_logs = fake.logs_of(&subs[1].uuid);
    assert_eq!(sub2_logs.len(), 1);
    assert_eq!(sub2_logs[0].level, "ERROR");
    assert_eq!(sub2_logs[0].message, "j.log");
    let (name, mime, data) = sub2_logs[0].attachment.clone().unwrap();
    assert_eq!(
        (name.as_str(), data.as_slice()),
        ("j.log", b"journal\x00bytes".as_slice())
    );
    assert_eq!(mime.as_deref(), Some("text/plain"));
    let a_logs = fake.logs_of(&ta.uuid);
    assert_eq!(a_logs.len(), 2);
    assert_eq!(a_logs[0].message, "test output\n", "output.txt inline");
    assert!(a_logs[0].attachment.is_none());
    let (name, mime, data) = a_logs[1].attachment.clone().unwrap();
    assert_eq!(name, "bin.dat");
    assert_eq!(mime.as_deref(), Some("application/octet-stream"));
    assert_eq!(data, binary);

    let tb = by_name(&tests, "/b");
    assert_eq!(tb.status, "INTERRUPTED");
    assert_eq!(
        tb.description.as_deref(),
        Some("no name-less result reported for the test itself")
    );
    assert_eq!(fake.children(&launch, Some(&tb.uuid))[0].status, "PASSED");
    let tc = by_name(&tests, "/c");
    assert_eq!(tc.status, "INTERRUPTED");
    assert_eq!(tc.description.as_deref(), Some("TestAbortedError(timeout)"));
    let other = fake.children(&launch, Some(&roots[1].uuid));
    assert_eq!(by_name(&other, "/a").status, "SKIPPED");
    assert_eq!(by_name(&other, "/custom").status, "INFO");

    assert!(fake.duplicate_siblings().is_empty());
    assert!(fake.double_finishes().is_empty());
    assert!(fake.peak_concurrency() >= 1);
    // Every call authenticated; writes on v2; the log is multipart, attachment first.
    let calls = fake.calls();
    assert!(calls.iter().all(|c| c.token.as_deref() == Some(TOKEN)));
    assert!(
        calls
            .iter()
            .all(|c| c.path.starts_with(&format!("/api/v2/{PROJECT}/")))
    );
    let log_calls = fake.calls_to("POST", "/api/v2/*/log");
    assert_eq!(log_calls.len(), 3, "one request per file");
    // The first log is the sub2 attachment.
    let parts: Vec<(&str, Option<&str>)> = log_calls[0]
        .parts
        .iter()
        .map(|p| (p.name.as_str(), p.content_type.as_deref()))
        .collect();
    assert_eq!(
        parts,
        [
            ("j.log", Some("text/plain")),
            ("json_request_part", Some("application/json"))
        ]
    );
    // The artifacts were consumed.
    for dir in [&a, &b, &c, &d] {
        assert!(!dir.join("results").exists());
        assert!(!dir.join("files").exists());
    }
    // The model dump names everything.
    let tree = fake.tree();
    assert_eq!(
        tree[0]["items"][0]["children"][0]["children"][1]["logs"][0]["attachment"],
        "j.log"
    );
}

#[tokio::test]
async fn a_5xx_during_log_upload_is_retried_without_duplicating_items() {
    let fake = FakeRp::start();
    let tmp = tempfile::tempdir().unwrap();
    let log_path = format!("/api/v2/{PROJECT}/log");
    fake.add_fault(RpFault::status(Method::POST, &log_path, 503).times(1));
    fake.add_fault(RpFault::html(Method::POST, &log_path, 502).times(1));
    fake.add_fault(
        RpFault::new(
            Some(Method::POST),
            &log_path,
            RpFaultKind::Status {
                status: 429,
                html: false,
                retry_after: Some("0".into()),
            },
        )
        .times(1),
    );
    let rp = ReportPortalAggregator::start(client(&fake), RpOptions::new_launch("retries"))
        .await
        .unwrap();
    let a = artifacts(
        tmp.path(),
        "a",
        &[
            r#"{"name": "s", "status": "error", "files": ["s.log"]}"#,
            r#"{"status": "fail", "files": ["output.txt"]}"#,
        ],
        &[("s/s.log", b"sub log"), ("output.txt", b"out")],
    );
    rp.ingest("p", "/t", &a).await.unwrap();
    rp.finish().await.unwrap();
    let launch = rp.launch_uuid();
    // Three failed log calls, then the two real ones.
    let log_calls = fake.calls_to("POST", &log_path);
    let statuses: Vec<Option<u16>> = log_calls.iter().map(|c| c.status).collect();
    assert_eq!(
        statuses,
        [Some(503), Some(502), Some(429), Some(201), Some(201)]
    );
    // The same bytes were re-sent, and each log exists once.
    assert_eq!(log_calls[0].parts[0].data, log_calls[3].parts[0].data);
    let logs = fake.logs();
    assert_eq!(logs.len(), 2);
    // No item was created twice.
    assert_eq!(fake.items().len(), 3, "{:#?}", fake.items());
    assert!(fake.duplicate_siblings().is_empty());
    let platform = &fake.children(launch, None)[0];
    let t = &fake.children(launch, Some(&platform.uuid))[0];
    assert_eq!(t.status, "FAILED");
    let s = &fake.children(launch, Some(&t.uuid))[0];
    assert_eq!(fake.logs_of(&s.uuid).len(), 1);
    assert_eq!(fake.logs_of(&t.uuid).len(), 1);
}

#[tokio::test]
async fn a_finish_whose_reply_was_lost_is_not_an_error() {
    let fake = FakeRp::start();
    let tmp = tempfile::tempdir().unwrap();
    let rp = ReportPortalAggregator::start(client(&fake), RpOptions::new_launch("drops"))
        .await
        .unwrap();
    fake.add_fault(
        RpFault::new(
            Some(Method::PUT),
            &format!("/api/v2/{PROJECT}/item/*"),
            RpFaultKind::CommitThenDrop,
        )
        .times(1),
    );
    let a = artifacts(tmp.path(), "a", &[r#"{"status": "pass"}"#], &[]);
    rp.ingest("p", "/t", &a).await.unwrap();
    rp.finish().await.unwrap();
    let items = fake.items();
    let t = by_name(&items, "/t");
    assert_eq!(t.status, "PASSED");
    // Applied, reply lost, retried, refused as already finished: counted as done.
    assert_eq!(t.finish_attempts, 2);
    assert_eq!(fake.double_finishes(), std::slice::from_ref(&t.uuid));
}

#[tokio::test]
async fn retries_reruns_promises_and_existing_tests() {
    let fake = FakeRp::start();
    let tmp = tempfile::tempdir().unwrap();
    let rp = ReportPortalAggregator::start(client(&fake), RpOptions::new_launch("nightly"))
        .await
        .unwrap();
    rp.promise("p", &["/t".to_string(), "/never".to_string()])
        .await
        .unwrap();
    let launch = rp.launch_uuid().to_string();
    let promised = fake.items();
    assert_eq!(promised.len(), 3);
    assert!(promised.iter().all(|i| i.status == "IN_PROGRESS"));
    let a = artifacts(tmp.path(), "a", &[r#"{"status": "fail"}"#], &[]);
    rp.ingest("p", "/t", &a).await.unwrap();
    // The promised item was used.
    assert_eq!(fake.items().len(), 3);
    let a = artifacts(tmp.path(), "a2", &[r#"{"status": "pass"}"#], &[]);
    rp.ingest("p", "/t", &a).await.unwrap();
    rp.finish().await.unwrap();
    let platform = fake.children(&launch, None)[0].clone();
    let steps = fake.children(&launch, Some(&platform.uuid));
    let s: Vec<(&str, bool, &str)> = steps
        .iter()
        .map(|i| (i.name.as_str(), i.retry, i.status.as_str()))
        .collect();
    assert_eq!(
        s,
        [
            ("/t", false, "FAILED"),
            ("/never", false, "INTERRUPTED"),
            ("/t", true, "PASSED")
        ]
    );
    assert!(fake.duplicate_siblings().is_empty());
    let open: Vec<String> = fake
        .open_at_finish()
        .into_iter()
        .map(|(_, _, n)| n)
        .collect();
    assert_eq!(open, ["p", "/never"]);

    // Reads through v1.
    let c = client(&fake);
    let mut passed = c.existing_tests(&launch, "p", &["passed"]).await.unwrap();
    passed.sort();
    assert_eq!(passed, ["/t"]);
    let mut all = c.existing_tests(&launch, "p", &[]).await.unwrap();
    all.sort();
    assert_eq!(all, ["/never", "/t", "/t"]);
    assert!(
        c.existing_tests(&launch, "nope", &[])
            .await
            .unwrap()
            .is_empty()
    );

    // A rerun reopens the same launch; same-named items are then RP's business.
    let rerun = ReportPortalAggregator::start(client(&fake), RpOptions::rerun(launch.clone()))
        .await
        .unwrap();
    assert_eq!(rerun.launch_uuid(), launch);
    let b = artifacts(tmp.path(), "b", &[r#"{"status": "pass"}"#], &[]);
    rerun.ingest("p", "/never", &b).await.unwrap();
    rerun.finish().await.unwrap();
    let l = &fake.launches()[0];
    assert_eq!(l.reruns.len(), 1);
    assert!(l.end_micros.is_some());
    assert_eq!(fake.launches().len(), 1);
    let body = &fake.calls_to("POST", "/api/v2/*/launch")[1].body;
    let body = body.as_ref().unwrap();
    assert_eq!(body["rerun"], true);
    assert_eq!(body["rerunOf"], launch.as_str());
    // A rerun of a launch RP does not know is an error.
    let err = ReportPortalAggregator::start(client(&fake), RpOptions::rerun("nope"))
        .await
        .unwrap_err();
    assert!(
        atex::error::chain(&err).to_string().contains("404"),
        "{err}"
    );
}

#[tokio::test]
async fn flat_mode_and_custom_decisions() {
    let fake = FakeRp::start();
    let tmp = tempfile::tempdir().unwrap();
    let mut options = RpOptions::new_launch("flat");
    options.join_subtest = Some("/".into());
    options.decide_subtest =
        Arc::new(|_, _, r| r.get("name").and_then(|n| n.as_str()) != Some("skipme"));
    options.decide_file = Arc::new(|_, _, _, path| {
        Some(FileDecision {
            level: "INFO".into(),
            inline: path.extension().is_some_and(|e| e == "txt"),
        })
    });
    let rp = ReportPortalAggregator::start(client(&fake), options)
        .await
        .unwrap();
    let a = artifacts(
        tmp.path(),
        "a",
        &[
            r#"{"name": "s1", "status": "pass", "files": ["n.txt"]}"#,
            r#"{"name": "skipme", "status": "fail"}"#,
            r#"{"status": "pass", "files": ["img.png"]}"#,
        ],
        &[("s1/n.txt", b"note"), ("img.png", b"\x89PNG")],
    );
    rp.ingest("p", "/t", &a).await.unwrap();
    rp.finish().await.unwrap();
    let launch = rp.launch_uuid();
    let platform = &fake.children(launch, None)[0];
    let steps = fake.children(launch, Some(&platform.uuid));
    let s: Vec<(&str, bool)> = steps
        .iter()
        .map(|i| (i.name.as_str(), i.has_stats))
        .collect();
    assert_eq!(s, [("/t/s1", true), ("/t", true)]);
    let l = fake.logs_of(&steps[0].uuid);
    assert_eq!(
        (l[0].level.as_str(), l[0].message.as_str()),
        ("INFO", "note")
    );
    let l = fake.logs_of(&steps[1].uuid);
    let (name, mime, data) = l[0].attachment.clone().unwrap();
    assert_eq!(
        (name.as_str(), mime.as_deref(), data.as_slice()),
        ("img.png", Some("image/png"), b"\x89PNG".as_slice())
    );
}

#[tokio::test]
async fn refusals_are_errors_and_not_retried() {
    let fake = FakeRp::start();
    let bad = ReportPortalAggregator::start(
        client_with(&fake, "wrong_token"),
        RpOptions::new_launch("x"),
    )
    .await
    .unwrap_err();
    assert!(
        atex::error::chain(&bad).to_string().contains("HTTP 401"),
        "{bad}"
    );
    let denied = ReportPortalAggregator::start(
        client_with(&fake, TOKEN_NO_ACCESS),
        RpOptions::new_launch("x"),
    )
    .await
    .unwrap_err();
    assert!(
        atex::error::chain(&denied).to_string().contains("HTTP 403"),
        "{denied}"
    );
    assert_eq!(fake.calls().len(), 2, "4xx are not retried");
    // Retries give up after the budget, naming the endpoint.
    fake.add_fault(RpFault::status(
        Method::POST,
        &format!("/api/v2/{PROJECT}/launch"),
        500,
    ));
    let err = ReportPortalAggregator::start(client(&fake), RpOptions::new_launch("x"))
        .await
        .unwrap_err();
    let text = atex::error::chain(&err).to_string();
    assert!(text.contains("POST /api/v2/"), "{text}");
    assert!(text.contains("7 attempt"), "{text}");
    // A missing results file and a missing listed file are errors.
    let fake = FakeRp::start();
    let rp = ReportPortalAggregator::start(client(&fake), RpOptions::new_launch("x"))
        .await
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let err = rp.ingest("p", "/t", tmp.path()).await.unwrap_err();
    assert!(matches!(err, AggregatorError::MissingResults(_)), "{err}");
    let a = artifacts(
        tmp.path(),
        "a",
        &[r#"{"status": "fail", "files": ["gone.txt"]}"#],
        &[],
    );
    let err = rp.ingest("p", "/t", &a).await.unwrap_err();
    assert!(
        atex::error::chain(&err).to_string().contains("gone.txt"),
        "{err}"
    );
    // A non-JSON 200 is retried like a gateway error.
    fake.add_fault(
        RpFault::new(
            Some(Method::PUT),
            &format!("/api/v2/{PROJECT}/launch/*"),
            RpFaultKind::NonJson200,
        )
        .times(1),
    );
    rp.finish().await.unwrap();
    assert!(fake.unfinished_launches().is_empty());
}

fn atex() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_atex"));
    for k in ["URL", "PROJECT", "TOKEN"] {
        c.env_remove(format!("ATEX_REPORTPORTAL_{k}"));
        c.env_remove(format!("TMT_PLUGIN_REPORT_REPORTPORTAL_{k}"));
    }
    c
}

#[test]
fn cli_launches_and_report_from_results() {
    let fake = FakeRp::start();
    let env = |c: &mut Command| {
        c.env("ATEX_REPORTPORTAL_URL", fake.url())
            .env("ATEX_REPORTPORTAL_PROJECT", PROJECT)
            .env("ATEX_REPORTPORTAL_TOKEN", TOKEN);
    };
    let mut c = atex();
    env(&mut c);
    let out = c
        .args([
            "rp",
            "launch-start",
            "-n",
            "manual launch",
            "--description",
            "by hand",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let uuid = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert_eq!(fake.launches()[0].uuid, uuid);
    assert_eq!(fake.launches()[0].description.as_deref(), Some("by hand"));
    let mut c = atex();
    env(&mut c);
    let out = c.args(["reportportal", "ls"]).output().unwrap();
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        format!("{uuid} IN_PROGRESS: manual launch #1\n")
    );
    let mut c = atex();
    env(&mut c);
    let out = c.args(["rp", "finish", &uuid]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8(out.stdout)
            .unwrap()
            .contains("/ui/#atexproject/launches/all/")
    );
    // Finishing again is refused: an error, exit 2.
    let mut c = atex();
    env(&mut c);
    let out = c.args(["rp", "launch-finish", &uuid]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("406"));
    // Nothing configured: a usage error naming what is missing.
    let out = atex().args(["rp", "ls"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("ATEX_REPORTPORTAL_URL"));

    // `atex report` from a results directory, configured through tmt's variables.
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    std::fs::create_dir_all(run.join("files/p/t")).unwrap();
    std::fs::write(
        run.join("results.jsonl"),
        "[\"p\", \"fail\", \"/t\", \"sub\", [], \"subnote\"]\n\
         [\"p\", \"fail\", \"/t\", null, [\"output.txt\"], \"exit 1\"]\n\
         [\"p\", \"pass\", \"/u\", null, [], null]\n\
         [\"p\", \"pass\", \"/t (1)\", null, [], null]\n",
    )
    .unwrap();
    std::fs::write(run.join("files/p/t/output.txt"), "boom\n").unwrap();
    let out = atex()
        .env("TMT_PLUGIN_REPORT_REPORTPORTAL_URL", fake.url())
        .env("TMT_PLUGIN_REPORT_REPORTPORTAL_PROJECT", PROJECT)
        .env("TMT_PLUGIN_REPORT_REPORTPORTAL_TOKEN", TOKEN)
        .arg("report")
        .arg(&run)
        .args(["--rp-launch", "from results"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let launch = fake
        .launches()
        .into_iter()
        .find(|l| l.name == "from results")
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains(&launch.uuid));
    assert!(launch.end_micros.is_some());
    let platform = &fake.children(&launch.uuid, None)[0];
    let steps = fake.children(&launch.uuid, Some(&platform.uuid));
    let s: Vec<(&str, bool, &str)> = steps
        .iter()
        .map(|i| (i.name.as_str(), i.retry, i.status.as_str()))
        .collect();
    assert_eq!(
        s,
        [
            ("/t", false, "FAILED"),
            ("/t", true, "PASSED"),
            ("/u", false, "PASSED")
        ]
    );
    let logs = fake.logs_of(&steps[0].uuid);
    assert_eq!(logs[0].message, "boom\n");
    // The results directory is left as it was.
    assert!(run.join("files/p/t/output.txt").exists());
}
