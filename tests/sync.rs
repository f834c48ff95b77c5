//! DirSync (an rsync-like mirror with delete and excludes) over a real LocalConnection and
//! a real SSH connection (private sshd, with and without SFTP), and as a setup hook of the
//! AdHoc orchestrator.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::sync::Arc;

use atex::connection::sync::SyncError;
use atex::connection::{Connection, DirSync, LocalConnection};
use atex::scope::{Scope, ShutdownOptions};

/// Every entry below `root`: `d MODE`, `f MODE CONTENT` or `l TARGET`.
fn tree(root: &Path) -> BTreeMap<String, String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            let meta = std::fs::symlink_metadata(&p).unwrap();
            let mode = meta.permissions().mode() & 0o7777;
            if meta.file_type().is_symlink() {
                out.insert(
                    rel,
                    format!("l {}", std::fs::read_link(&p).unwrap().display()),
                );
            } else if meta.is_dir() {
                out.insert(rel, format!("d {mode:o}"));
                walk(root, &p, out);
            } else {
                let content = std::fs::read_to_string(&p).unwrap();
                out.insert(rel, format!("f {mode:o} {content}"));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

fn write(path: &Path, content: &str, mode: u32) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, content).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn expected(entries: &[(&str, &str)]) -> BTreeMap<String, String> {
    entries
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The scenario: a first sync to an empty directory, then a deleted file, a changed file,
/// a new subdirectory, a changed `.git/` (excluded) and remote-only entries (stale, and
/// excluded ones that must stay), and a second sync. `remote` is the remote directory as a
/// local path (the systems share this file system); `fixup` runs after the test wrote into
/// it directly (SSH: hand it to the test user).
async fn mirror_scenario(conn: &dyn Connection, remote: &Path, fixup: impl Fn(&Path)) {
    let scope = Scope::root("sync");
    let src = tempfile::tempdir().unwrap();
    let s = src.path();
    write(&s.join("keep.txt"), "keep\n", 0o644);
    write(&s.join("changed.txt"), "old\n", 0o644);
    write(&s.join("deleted.txt"), "bye\n", 0o644);
    write(&s.join("bin/run.sh"), "#!/bin/sh\n", 0o755);
    write(&s.join(".git/HEAD"), "ref: main\n", 0o644);
    std::os::unix::fs::symlink("keep.txt", s.join("link")).unwrap();
    let target = remote.join("content");
    let target_str = target.to_str().unwrap();
    let sync = DirSync::new(s, &format!("{target_str}/"))
        .unwrap()
        .exclude(".git/")
        .unwrap();

    let report = sync.run(conn, &scope).await.expect("first sync");
    assert_eq!(
        (report.uploaded, report.deleted, report.excluded),
        (5, 0, 1)
    );
    assert_eq!(
        tree(&target),
        expected(&[
            ("bin", "d 755"),
            ("bin/run.sh", "f 755 #!/bin/sh\n"),
            ("changed.txt", "f 644 old\n"),
            ("deleted.txt", "f 644 bye\n"),
            ("keep.txt", "f 644 keep\n"),
            ("link", "l keep.txt"),
        ])
    );

    // Local changes.
    std::fs::remove_file(s.join("deleted.txt")).unwrap();
    write(&s.join("changed.txt"), "new content\n", 0o600);
    write(&s.join("newdir/sub/file"), "fresh\n", 0o644);
    write(&s.join(".git/HEAD"), "ref: other\n", 0o644);
    // Remote-only entries: stale ones go, excluded ones stay (also in a directory that is
    // gone locally, which is kept for them).
    write(&target.join("stale/x"), "x\n", 0o644);
    write(&target.join(".git/config"), "remote only\n", 0o644);
    write(&target.join("olddir/.git/HEAD"), "nested\n", 0o644);
    write(&target.join("olddir/old.txt"), "old\n", 0o644);
    std::os::unix::fs::symlink("/etc/passwd", target.join("bin/escape")).unwrap();
    std::fs::create_dir_all(target.join("stale/deeper")).unwrap();
    fixup(&target);

    let report = sync.run(conn, &scope).await.expect("second sync");
    assert_eq!(
        tree(&target),
        expected(&[
            (".git", "d 755"),
            (".git/config", "f 644 remote only\n"),
            ("bin", "d 755"),
            ("bin/run.sh", "f 755 #!/bin/sh\n"),
            ("changed.txt", "f 600 new content\n"),
            ("keep.txt", "f 644 keep\n"),
            ("link", "l keep.txt"),
            ("newdir", "d 755"),
            ("newdir/sub", "d 755"),
            ("newdir/sub/file", "f 644 fresh\n"),
            ("olddir", "d 755"),
            ("olddir/.git", "d 755"),
            ("olddir/.git/HEAD", "f 644 nested\n"),
        ])
    );
    // deleted.txt, stale/, olddir/old.txt, bin/escape and the old link (recreated).
    assert_eq!(report.deleted, 5, "{report:?}");
    assert!(
        std::fs::read_to_string("/etc/passwd")
            .unwrap()
            .contains("root")
    );
    assert!(scope.shutdown(ShutdownOptions::default()).await.is_clean());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_mirror_deletes_updates_and_keeps_excluded() {
    let remote = tempfile::tempdir().unwrap();
    mirror_scenario(&LocalConnection::new(), remote.path(), |_| {}).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_destinations_and_missing_sources_are_refused() {
    let scope = Scope::root("sync");
    for bad in ["relative/dir", "/", "/srv/../etc"] {
        let err = DirSync::new("/tmp", bad).unwrap_err();
        assert!(matches!(err, SyncError::BadRemote { .. }), "{bad}: {err}");
        assert!(err.to_string().contains(bad), "{err}");
    }
    let err = DirSync::new("/tmp", "/srv/x")
        .unwrap()
        .exclude("")
        .unwrap_err();
    assert!(matches!(err, SyncError::Pattern(_)), "{err}");

    // A missing source is an error naming it; nothing is created remotely.
    let remote = tempfile::tempdir().unwrap();
    let dst = remote.path().join("d");
    let sync = DirSync::new("/nonexistent/atex-src", dst.to_str().unwrap()).unwrap();
    let err = sync.run(&LocalConnection::new(), &scope).await.unwrap_err();
    assert!(matches!(err, SyncError::Local { .. }), "{err}");
    assert!(err.to_string().contains("/nonexistent/atex-src"), "{err}");
    assert!(!dst.exists());

    // A remote path that is a file is refused before anything is deleted or uploaded.
    let src = tempfile::tempdir().unwrap();
    write(&src.path().join("a"), "a", 0o644);
    std::fs::write(&dst, "a file").unwrap();
    let sync = DirSync::new(src.path(), dst.to_str().unwrap()).unwrap();
    let err = sync.run(&LocalConnection::new(), &scope).await.unwrap_err();
    assert!(matches!(err, SyncError::List { .. }), "{err}");
    let chain = atex::error::chain(&err).to_string();
    assert!(chain.contains("is not a directory"), "{chain}");
    assert_eq!(std::fs::read_to_string(&dst).unwrap(), "a file");
}

#[cfg(feature = "ssh")]
mod ssh {
    use super::*;
    use atex::connection::SshConnection;
    use support::sshd::{Sshd, SshdFiles, TEST_USER};

    fn chown_test_user(path: &Path) {
        let st = std::process::Command::new("chown")
            .args(["-R", "--no-dereference", TEST_USER])
            .arg(path)
            .status()
            .unwrap();
        assert!(st.success());
    }

    async fn over(sshd: &Sshd) {
        let conn = SshConnection::connect(sshd.config())
            .await
            .expect("connect");
        let remote = tempfile::Builder::new()
            .prefix("atex-sync-")
            .tempdir()
            .unwrap();
        chown_test_user(remote.path());
        mirror_scenario(&conn, remote.path(), chown_test_user).await;
        conn.disconnect().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn ssh_mirror_deletes_updates_and_keeps_excluded() {
        over(&Sshd::start()).await;
        let mut files = SshdFiles::new();
        files.sftp = false;
        over(&Sshd::start_with(files)).await;
    }
}

/// The hook as the orchestrator runs it: a sync and a script on every remote; a failing
/// script fails the setup.
mod hooks {
    use super::*;
    use atex::aggregator::{Aggregator, JsonlAggregator, JsonlOptions};
    use atex::executor::{CommandExecutor, Executor, ExecutorFactory};
    use atex::orchestrator::adhoc::{ScriptHook, SetupHook};
    use atex::orchestrator::events::EventKind;
    use atex::orchestrator::{AdHocOrchestrator, OrchestratorError};
    use atex::provisioner::{LocalProvisioner, Remote};

    fn factory(script: String) -> Arc<dyn ExecutorFactory> {
        Arc::new(move |remote: Arc<dyn Remote>| {
            let conn: Arc<dyn Connection> = remote;
            Box::new(CommandExecutor::new(conn).with_test("/t", ["sh", "-c", script.as_str()]))
                as Box<dyn Executor>
        })
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sync_and_script_run_before_the_first_test() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        write(&src.join("data.txt"), "payload\n", 0o644);
        write(&src.join(".git/HEAD"), "x\n", 0o644);
        let dst = tmp.path().join("dst");
        let script = tmp.path().join("prepare.sh");
        write(
            &script,
            &format!(
                "#!/bin/sh\nset -e\ncat {0}/data.txt > {0}/prepared\n",
                dst.display()
            ),
            0o644,
        );
        let agg = Arc::new(
            JsonlAggregator::create(
                tmp.path().join("r.jsonl"),
                tmp.path().join("files"),
                JsonlOptions::default(),
            )
            .unwrap(),
        );
        let sync = DirSync::new(&src, dst.to_str().unwrap())
            .unwrap()
            .exclude(".git/")
            .unwrap();
        let orch = AdHocOrchestrator::builder("p")
            .test("/t")
            .provisioner(Arc::new(LocalProvisioner::new()))
            // The test passes only if both hooks ran before it, in order.
            .executor(factory(format!(
                "test \"$(cat {}/prepared)\" = payload",
                dst.display()
            )))
            .aggregator(agg.clone())
            .setup_hook(Arc::new(sync) as Arc<dyn SetupHook>)
            .setup_hook(Arc::new(ScriptHook::from_file(&script).unwrap()))
            .build()
            .unwrap();
        let summary = orch.run(&Scope::root("t")).await.expect("run");
        agg.finish().await.unwrap();
        assert!(
            summary.setup_errors.is_empty(),
            "{:?}",
            summary.setup_errors
        );
        assert_eq!(summary.passed(), 1);
        assert!(!dst.join(".git").exists());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn failing_script_is_a_failed_setup() {
        let tmp = tempfile::tempdir().unwrap();
        let script = tmp.path().join("broken.sh");
        let counter = tmp.path().join("count");
        write(
            &script,
            &format!(
                "#!/bin/sh\necho run >> {}\necho 'no content server' >&2\nexit 7\n",
                counter.display()
            ),
            0o644,
        );
        let agg = Arc::new(
            JsonlAggregator::create(
                tmp.path().join("r.jsonl"),
                tmp.path().join("files"),
                JsonlOptions::default(),
            )
            .unwrap(),
        );
        let mut orch = AdHocOrchestrator::builder("p")
            .test("/t")
            .provisioner(Arc::new(LocalProvisioner::new()))
            .executor(factory("true".into()))
            .aggregator(agg.clone())
            .setup_hook(Arc::new(ScriptHook::from_file(&script).unwrap()))
            .max_failed_setups(1)
            .build()
            .unwrap();
        let events = orch.subscribe(100);
        let err = orch.run(&Scope::root("t")).await.expect_err("must abort");
        agg.finish().await.unwrap();
        let OrchestratorError::SetupLimit { failures, last } = err else {
            panic!("unexpected {err}");
        };
        assert_eq!(failures, 2);
        let chain = atex::error::chain(&last).to_string();
        assert!(chain.contains("broken.sh"), "{chain}");
        assert!(
            chain.contains("exit code 7") || chain.contains("7"),
            "{chain}"
        );
        assert!(chain.contains("no content server"), "{chain}");
        let mut events = events;
        let mut failed = Vec::new();
        while let Some(e) = events.recv().await {
            if let EventKind::SetupFailed { error, .. } = e.kind {
                failed.push(error);
            }
        }
        assert_eq!(failed.len(), 2, "{failed:?}");
        assert!(failed[0].contains("no content server"), "{failed:?}");
        assert_eq!(std::fs::read_to_string(&counter).unwrap(), "run\nrun\n");
        // The test never ran.
        assert_eq!(
            std::fs::read_to_string(tmp.path().join("r.jsonl")).unwrap(),
            ""
        );
    }
}

/// `atex run --sync DIR:REMOTE_DIR --sync-exclude PATTERN --setup-script FILE` with the real
/// binary on local remotes.
#[cfg(feature = "cli")]
mod cli {
    use super::*;

    fn atex() -> std::process::Command {
        std::process::Command::new(env!("CARGO_BIN_EXE_atex"))
    }

    fn write_tree(root: &Path, main_fmf: &str) {
        write(&root.join(".fmf/version"), "1\n", 0o644);
        write(&root.join("tests/main.fmf"), main_fmf, 0o644);
    }

    #[test]
    fn sync_and_setup_script_prepare_each_remote() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("content");
        write(&src.join("data.txt"), "payload\n", 0o644);
        write(&src.join("sub/tool.sh"), "#!/bin/sh\n", 0o755);
        write(&src.join(".git/HEAD"), "ref\n", 0o644);
        write(&src.join("cache.pyc"), "x", 0o644);
        let dst = tmp.path().join("remote/content");
        write(&dst.join("stale.txt"), "old\n", 0o644);
        write(&dst.join(".git/remote-only"), "kept\n", 0o644);
        let script = tmp.path().join("prepare.sh");
        write(
            &script,
            &format!(
                "#!/bin/sh\nset -e\necho prepared >> {}/prepared\n",
                dst.display()
            ),
            0o644,
        );
        let fmf_tree = tmp.path().join("tree");
        let d = dst.display();
        write_tree(
            &fmf_tree,
            &format!(
                "/a:\n    test: test \"$(cat {d}/data.txt)\" = payload && test -x {d}/sub/tool.sh && test ! -e {d}/stale.txt && test -e {d}/prepared\n/b:\n    test: test ! -e {d}/.git/HEAD\n"
            ),
        );
        let results = tmp.path().join("results");
        let out = atex()
            .args(["-q", "run"])
            .arg(&fmf_tree)
            .arg("--sync")
            .arg(format!("{}:{}", src.display(), dst.display()))
            .args(["--sync-exclude", ".git/", "--sync-exclude", "*.pyc"])
            .arg("--setup-script")
            .arg(&script)
            .arg("--results")
            .arg(&results)
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            tree(&dst),
            expected(&[
                (".git", "d 755"),
                (".git/remote-only", "f 644 kept\n"),
                ("data.txt", "f 644 payload\n"),
                ("prepared", "f 644 prepared\n"),
                ("sub", "d 755"),
                ("sub/tool.sh", "f 755 #!/bin/sh\n"),
            ])
        );
    }

    #[test]
    fn a_failing_setup_script_fails_the_setups() {
        let tmp = tempfile::tempdir().unwrap();
        let script = tmp.path().join("broken.sh");
        let counter = tmp.path().join("count");
        write(
            &script,
            &format!(
                "#!/bin/sh\necho run >> {}\necho 'cannot reach the mirror' >&2\nexit 3\n",
                counter.display()
            ),
            0o644,
        );
        let tree = tmp.path().join("tree");
        write_tree(&tree, "/a:\n    test: true\n");
        let results = tmp.path().join("results");
        let out = atex()
            .args(["run"])
            .arg(&tree)
            .arg("--setup-script")
            .arg(&script)
            .arg("--results")
            .arg(&results)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains("setup retries limit exceeded"), "{stderr}");
        assert!(stderr.contains("cannot reach the mirror"), "{stderr}");
        assert!(stderr.contains("broken.sh"), "{stderr}");
        // Every setup ran the script (the default limit: 10 failures, the 11th aborts).
        let runs = std::fs::read_to_string(&counter).unwrap();
        assert_eq!(runs.lines().count(), 11, "{runs}");
        assert_eq!(
            std::fs::read_to_string(results.join("results.jsonl")).unwrap(),
            ""
        );

        // Bad flags are usage errors before anything runs.
        for (flag, value, want) in [
            ("--sync", "no-colon".to_string(), "is not DIR:REMOTE_DIR"),
            (
                "--sync",
                format!("{}:/", tmp.path().display()),
                "would delete the whole system",
            ),
            (
                "--sync",
                "/nonexistent-atex:/srv/x".into(),
                "is not a directory",
            ),
            (
                "--setup-script",
                "/nonexistent-atex.sh".into(),
                "cannot read --setup-script",
            ),
        ] {
            let out = atex()
                .args(["-q", "run"])
                .arg(&tree)
                .args([flag, value.as_str(), "--results"])
                .arg(tmp.path().join("r2"))
                .output()
                .unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{value}: {stderr}");
            assert!(stderr.contains(want), "{value}: {stderr}");
        }
    }
}
