//! Error chains: causes kept as `source()`, messages that never repeat their cause, a lost
//! connection recognised wherever it is wrapped, and the `atex` program printing the whole
//! chain (`error: …` then one `  caused by: …` line per cause).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::error::Error;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;

use atex::aggregator::{Aggregator, JsonlAggregator, JsonlOptions};
use atex::connection::{CommandSpec, Connection, ConnectionError, ConnectionExt, LocalConnection};
use atex::error::{chain, sources};
use atex::executor::{Executor, ExecutorError, TestOutcome};
use atex::orchestrator::adhoc::Policy;
use atex::orchestrator::events::EventKind;
use atex::orchestrator::{AdHocOrchestrator, RetireReason};
use atex::provisioner::Remote;
use atex::scope::Scope;
use atex::testing::MemoryProvisioner;

fn atex() -> Command {
    Command::new(env!("CARGO_BIN_EXE_atex"))
}

/// No layer of `err`'s chain repeats the text of its own source.
fn assert_no_repeats(err: &(dyn Error + 'static)) {
    for layer in sources(err) {
        if let Some(source) = layer.source() {
            let (text, cause) = (layer.to_string(), source.to_string());
            assert!(
                !text.contains(&cause),
                "'{text}' repeats its source '{cause}' (chain: {})",
                chain(err)
            );
        }
    }
}

/// The `  caused by: ` lines of the program's stderr, in order.
fn caused_by(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter_map(|l| l.strip_prefix("  caused by: "))
        .collect()
}

fn write_tree(root: &Path, main_fmf: &str) {
    std::fs::create_dir_all(root.join(".fmf")).unwrap();
    std::fs::write(root.join(".fmf/version"), "1\n").unwrap();
    std::fs::create_dir_all(root.join("tests")).unwrap();
    std::fs::write(root.join("tests/main.fmf"), main_fmf).unwrap();
}

/// `atex run` on an SSH host nobody listens on: the run fails, and the chain goes from the
/// run down to the host and the OS error.
#[test]
fn unreachable_ssh_host_prints_the_whole_chain() {
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tree");
    write_tree(&tree, "/a:\n    test: echo a\n");
    // Port 1 on the loopback: nothing listens there, the connection is refused at once.
    let hosts = tmp.path().join("hosts");
    std::fs::write(&hosts, "root@127.0.0.1:1\n").unwrap();
    let out = atex()
        .args(["-q", "run"])
        .arg(&tree)
        .arg("--provisioner")
        .arg(format!("ssh:{}", hosts.display()))
        .arg("--results")
        .arg(tmp.path().join("results"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    let first = stderr
        .lines()
        .find(|l| l.starts_with("error: "))
        .unwrap_or_else(|| panic!("no error line in:\n{stderr}"));
    assert_eq!(first, "error: no remote could be had", "{stderr}");
    let causes = caused_by(&stderr);
    assert!(causes.contains(&"every machine is quarantined"), "{stderr}");
    assert!(
        causes.contains(&"cannot connect to ssh root@127.0.0.1:1"),
        "{stderr}"
    );
    assert!(
        causes
            .last()
            .is_some_and(|c| c.starts_with("Connection refused (os error")),
        "the OS error is the last cause:\n{stderr}"
    );
    // Each cause is printed once, on its own line (the log lines above carry the chain on
    // one line each).
    let report: Vec<&str> = stderr
        .lines()
        .skip_while(|l| !l.starts_with("error: "))
        .collect();
    assert_eq!(
        report
            .iter()
            .filter(|l| l.contains("Connection refused"))
            .count(),
        1,
        "{stderr}"
    );
}

/// A broken YAML file: the chain names the file and the line.
#[test]
fn broken_yaml_names_file_and_line() {
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tree");
    write_tree(&tree, "/a:\n    test: echo a\n/b:\n    test: [unclosed\n");
    let out = atex()
        .args(["-q", "run"])
        .arg(&tree)
        .arg("--results")
        .arg(tmp.path().join("results"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.starts_with("error: cannot discover the tests\n"),
        "{stderr}"
    );
    let file = tree.join("tests/main.fmf");
    let causes = caused_by(&stderr);
    assert!(
        causes
            .iter()
            .any(|c| c.starts_with(&format!("{}:5: ", file.display()))),
        "no '{}:5: …' cause in:\n{stderr}",
        file.display()
    );
}

/// `atex fmf` prints its errors the same way.
#[test]
fn fmf_subcommand_prints_the_chain() {
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tree");
    write_tree(&tree, "tag: foo\n/a:\n    test: echo a\n    tag~: '/x'\n");
    let out = atex().args(["fmf", "dump"]).arg(&tree).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.starts_with("error: bad substitution in node '/tests/a'"),
        "{stderr}"
    );
    assert_eq!(caused_by(&stderr), ["'/x' has to end with '/'"], "{stderr}");
}

/// A program that does not exist: "No such file or directory" is a cause of its own,
/// under a message naming the command and the connection.
#[tokio::test]
async fn missing_program_is_a_cause() {
    let scope = Scope::root("t");
    let err = LocalConnection::new()
        .spawn(
            CommandSpec::new(["/nonexistent/atex-missing-program"]),
            &scope,
        )
        .await
        .expect_err("spawned a missing program");
    assert!(matches!(err, ConnectionError::Spawn { .. }), "{err:?}");
    let text = format!("{:#}", chain(&err));
    assert!(
        text.starts_with("cannot start /nonexistent/atex-missing-program on local\n  caused by: No such file or directory"),
        "{text}"
    );
    assert_no_repeats(&err);
    let io = atex::error::find::<std::io::Error>(&err).expect("the OS error");
    assert_eq!(io.kind(), std::io::ErrorKind::NotFound);
}

/// Real failures from several layers: no message repeats its cause.
#[tokio::test]
async fn real_failures_never_repeat_their_cause() {
    let scope = Scope::root("t");
    let tmp = tempfile::tempdir().unwrap();
    let conn = LocalConnection::new();
    let mut errors: Vec<Box<dyn Error + Send + Sync>> = Vec::new();
    // A copy of a missing file.
    errors.push(Box::new(
        conn.upload(
            &tmp.path().join("missing"),
            &tmp.path().join("dest").display().to_string(),
        )
        .await
        .expect_err("copied a missing file"),
    ));
    // A command that cannot start.
    errors.push(Box::new(
        conn.check(CommandSpec::new(["/nonexistent/x"]), &scope)
            .await
            .expect_err("missing program"),
    ));
    // A tree without a version file, a bad regular expression, a bad condition.
    let tree = tmp.path().join("tree");
    std::fs::create_dir_all(tree.join(".fmf")).unwrap();
    errors.push(Box::new(
        atex::fmf::Tree::load(&tree).expect_err("no version"),
    ));
    let mut regexes = atex::fmf::RegexCache::new();
    errors.push(Box::new(
        regexes.search("(unclosed", "x").expect_err("bad regex"),
    ));
    errors.push(Box::new(
        atex::fmf::condition::Condition::parse("a == 'unterminated").expect_err("bad condition"),
    ));
    // A results file with a bad line, and none at all.
    let results = tmp.path().join("r.jsonl");
    std::fs::write(
        &results,
        "[\"p\", \"pass\", \"/a\", null, [], null]\nnot json\n",
    )
    .unwrap();
    errors.push(Box::new(
        atex::results::read_rows(&results, &Default::default()).expect_err("bad line"),
    ));
    errors.push(Box::new(
        atex::results::read_rows(&tmp.path().join("none"), &Default::default())
            .expect_err("no file"),
    ));
    // A cleanup that fails.
    let guard = atex::guard::CleanupGuard::new(&scope, "remove the thing", || async {
        Err(std::io::Error::from(std::io::ErrorKind::PermissionDenied).into())
    });
    errors.push(Box::new(guard.release().await.expect_err("cleanup")));
    for err in &errors {
        let err: &(dyn Error + 'static) = &**err;
        assert!(err.source().is_some(), "no cause kept: {err:?}");
        assert_no_repeats(err);
    }
}

/// Constructed errors of every public shape that has a cause.
#[test]
fn constructed_errors_never_repeat_their_cause() {
    let io = || std::io::Error::other("disk on fire");
    let lost = || {
        ConnectionError::disconnected(
            "ssh root@h:22",
            Some("running `x`".into()),
            "keepalive timeout",
        )
    };
    let errors: Vec<Box<dyn Error + Send + Sync>> = vec![
        Box::new(ConnectionError::Io {
            context: "reading the output".into(),
            source: io(),
        }),
        Box::new(ConnectionError::Transfer {
            from: "a".into(),
            to: "h:b".into(),
            source: Box::new(io()),
        }),
        Box::new(ConnectionError::Connect {
            target: "ssh h".into(),
            transient: true,
            source: Box::new(io()),
        }),
        Box::new(lost()),
        Box::new(ConnectionError::released("local")),
        Box::new(ConnectionError::Timeout {
            what: "reconnecting".into(),
            after: Duration::from_secs(1),
            last: Some(Box::new(lost())),
        }),
        Box::new(ExecutorError::from(lost())),
        Box::new(ExecutorError::connection_in("/t", lost())),
        Box::new(ExecutorError::Setup {
            what: "/t".into(),
            source: Box::new(lost()),
        }),
        Box::new(ExecutorError::Aborted {
            test: "/t".into(),
            reason: Box::new(io()),
        }),
        Box::new(atex::provisioner::ProvisionError::failed("pool", lost())),
        Box::new(atex::provisioner::ProvisionError::release("r", io())),
        Box::new(atex::provisioner::ProvisionError::Connection(lost())),
        Box::new(atex::orchestrator::OrchestratorError::Provision(
            atex::provisioner::ProvisionError::failed("pool", io()),
        )),
        Box::new(atex::orchestrator::OrchestratorError::Setup(
            ExecutorError::from(lost()),
        )),
        Box::new(atex::orchestrator::OrchestratorError::SetupLimit {
            failures: 3,
            last: ExecutorError::from(lost()),
        }),
        Box::new(atex::aggregator::AggregatorError::remote(
            "ReportPortal",
            io(),
        )),
        Box::new(atex::process::SpawnError {
            program: "x".into(),
            cause: io(),
        }),
    ];
    for err in &errors {
        let err: &(dyn Error + 'static) = &**err;
        assert!(err.source().is_some(), "no cause kept: {err:?}");
        assert_no_repeats(err);
    }
}

/// A lost connection is recognised by walking `source()`, however it is wrapped.
#[test]
fn executor_error_leads_to_its_connection_error() {
    let direct = ExecutorError::connection_in("/t", ConnectionError::released("local"));
    let source = direct.source().expect("a source");
    let conn = source
        .downcast_ref::<ConnectionError>()
        .expect("the source is the ConnectionError itself");
    assert!(conn.is_disconnect());
    assert!(direct.is_remote_lost());

    // Wrapped: an upload under a failed setup, a command under an aborted test.
    let wrapped = ExecutorError::Setup {
        what: "/t".into(),
        source: Box::new(ConnectionError::released("local")),
    };
    assert!(
        wrapped
            .connection()
            .is_some_and(ConnectionError::is_disconnect)
    );
    assert!(wrapped.is_remote_lost());
    let not_lost = ExecutorError::Aborted {
        test: "/t".into(),
        reason: Box::new(ConnectionError::NotSupported {
            operation: "upload",
            target: "memory".into(),
        }),
    };
    assert!(not_lost.connection().is_some());
    assert!(!not_lost.is_remote_lost());
    assert!(!ExecutorError::UnknownTest("/t".into()).is_remote_lost());
}

/// An executor whose first attempt of a test fails in its setup because the connection
/// went away (the lost connection wrapped in `ExecutorError::Setup`); later attempts pass.
#[derive(Debug)]
struct SetupLosesConnection {
    remote: String,
    attempts: Arc<AtomicUsize>,
}

#[async_trait]
impl Executor for SetupLosesConnection {
    async fn start(&mut self, _scope: &Scope) -> Result<(), ExecutorError> {
        Ok(())
    }

    async fn run_test(
        &mut self,
        test: &str,
        artifacts: &Path,
        _scope: &Scope,
    ) -> Result<TestOutcome, ExecutorError> {
        let results = artifacts.join("results");
        if self.attempts.fetch_add(1, Ordering::SeqCst) == 0 {
            std::fs::write(
                &results,
                "{\"status\": \"infra\", \"note\": \"setup failed\"}\n",
            )
            .unwrap();
            return Err(ExecutorError::Setup {
                what: test.into(),
                source: Box::new(ConnectionError::disconnected(
                    self.remote.clone(),
                    Some("uploading the test".into()),
                    "the connection was reset",
                )),
            });
        }
        std::fs::write(&results, "{\"status\": \"pass\"}\n").unwrap();
        Ok(TestOutcome {
            exit_code: 0,
            duration: Duration::ZERO,
        })
    }

    async fn stop(&mut self, _scope: &Scope) -> Result<(), ExecutorError> {
        Ok(())
    }
}

/// The AdHoc scheduler treats a lost connection wrapped in a setup error as a lost remote:
/// the remote is retired as lost, and `requeue_lost` runs the test again on another one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduler_recognises_a_wrapped_lost_connection() {
    let out = tempfile::tempdir().unwrap();
    let prov = MemoryProvisioner::new(1);
    let attempts = Arc::new(AtomicUsize::new(0));
    let counter = attempts.clone();
    let factory = Arc::new(move |remote: Arc<dyn Remote>| {
        Box::new(SetupLosesConnection {
            remote: remote.describe(),
            attempts: counter.clone(),
        }) as Box<dyn Executor>
    });
    let aggregator = Arc::new(
        JsonlAggregator::create(
            out.path().join("r.jsonl"),
            out.path().join("files"),
            JsonlOptions::default(),
        )
        .unwrap(),
    );
    let old = Arc::new(
        JsonlAggregator::create(
            out.path().join("old.jsonl"),
            out.path().join("old-files"),
            JsonlOptions {
                allow_duplicate: true,
                ..JsonlOptions::default()
            },
        )
        .unwrap(),
    );
    let mut orch = AdHocOrchestrator::builder("p")
        .tests(["/t"])
        .provisioner(Arc::new(prov.clone()))
        .executor(factory)
        .aggregator(aggregator.clone())
        .old_aggregator(old.clone())
        .policy(Policy::requeue_lost(1))
        .build()
        .unwrap();
    let events = orch.subscribe(1000);
    let summary = orch.run(&Scope::root("t")).await.unwrap();
    aggregator.finish().await.unwrap();
    old.finish().await.unwrap();
    assert_eq!(attempts.load(Ordering::SeqCst), 2);
    assert_eq!(summary.passed(), 1, "{summary:?}");
    assert_eq!(summary.reruns.len(), 1, "{summary:?}");
    let first = summary.reruns[0].error.as_deref().unwrap_or_default();
    assert!(
        first.contains("connection lost while uploading the test: the connection was reset"),
        "{first}"
    );
    assert_eq!(summary.retired.len(), 1, "{summary:?}");
    assert_eq!(summary.retired[0].reason, RetireReason::Lost);
    let mut events = events;
    let mut lost = Vec::new();
    while let Some(e) = events.recv().await {
        if let EventKind::RemoteLost { test, error, .. } = e.kind {
            lost.push((test, error));
        }
    }
    assert_eq!(lost.len(), 1, "{lost:?}");
    assert_eq!(lost[0].0, "/t");
    assert!(lost[0].1.contains("the connection was reset"), "{lost:?}");
}
