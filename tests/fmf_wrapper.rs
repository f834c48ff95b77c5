//! The bash test wrapper, run locally with real processes.

mod support;

use std::path::Path;
use std::process::{Command, Stdio};

use atex::executor::fmf::scripts::WRAPPER;

struct Run {
    code: i32,
    control: String,
    output: String,
}

fn write_script(dir: &Path, name: &str, body: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/bash\n{body}\n")).expect("write");
    let status = Command::new("chmod")
        .arg("0755")
        .arg(&path)
        .status()
        .expect("chmod");
    assert!(status.success());
    path.display().to_string()
}

fn wrap(dir: &Path, test: &str, cwd: &str, flags: &[&str]) -> Run {
    wrap_env(dir, test, cwd, flags, "")
}

/// `bash wrapper.sh TEST CWD` with the wrapper written into `dir` and stdin from /dev/null.
fn wrapper_command(dir: &Path, test: &str, cwd: &str) -> Command {
    let wrapper = dir.join("wrapper.sh");
    std::fs::write(&wrapper, WRAPPER).expect("write wrapper");
    let mut cmd = Command::new("bash");
    cmd.arg(&wrapper).arg(test).arg(cwd).stdin(Stdio::null());
    cmd
}

/// [`wrap`] with `ATEX_TEST_MARKER=<marker>` in the environment (see `support`).
fn wrap_env(dir: &Path, test: &str, cwd: &str, flags: &[&str], marker: &str) -> Run {
    let out = wrapper_command(dir, test, cwd)
        .args(flags)
        .env("ATEX_TEST_MARKER", marker)
        .output()
        .expect("run wrapper");
    Run {
        code: out.status.code().unwrap_or(-1),
        control: String::from_utf8_lossy(&out.stdout).into_owned(),
        output: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[test]
fn channels_cwd_and_exit_code() {
    let dir = tempfile::tempdir().expect("tempdir");
    let test = write_script(
        dir.path(),
        "t.sh",
        "echo \"cwd=$PWD\"; echo out; echo err >&2; echo noop >&$ATEX_TEST_CONTROL; [ \"$ATEX_TEST_CONTROL\" -gt 2 ] && echo high-fd; exit 7",
    );
    let cwd = dir.path().display().to_string();
    let run = wrap(dir.path(), &test, &cwd, &[]);
    assert_eq!(run.code, 0, "{}", run.output);
    assert_eq!(run.control, "noop\nexitcode 7\n");
    assert_eq!(run.output, format!("cwd={cwd}\nout\nerr\nhigh-fd\n"));
}

#[test]
fn chdir_failure_exits_2_and_exec_failures_are_126_127() {
    let dir = tempfile::tempdir().expect("tempdir");
    let test = write_script(dir.path(), "t.sh", "true");
    let run = wrap(dir.path(), &test, "/nonexistent/dir", &[]);
    assert_eq!(run.code, 2);
    assert_eq!(run.control, "");
    let cwd = dir.path().display().to_string();
    let run = wrap(dir.path(), "/nonexistent/test", &cwd, &[]);
    assert_eq!((run.code, run.control.as_str()), (0, "exitcode 127\n"));
    let plain = dir.path().join("plain.sh");
    std::fs::write(&plain, "echo hi\n").expect("write");
    let run = wrap(dir.path(), &plain.display().to_string(), &cwd, &[]);
    assert_eq!((run.code, run.control.as_str()), (0, "exitcode 126\n"));
    let run = wrap(dir.path(), &test, &cwd, &["bogus"]);
    assert_eq!(run.code, 4);
}

#[test]
fn signal_exit_code_noexitcode_and_leftovers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cwd = dir.path().display().to_string();
    let killed = write_script(dir.path(), "k.sh", "kill -TERM $$");
    let run = wrap(dir.path(), &killed, &cwd, &[]);
    assert_eq!(run.control, "exitcode 143\n");
    let run = wrap(dir.path(), &killed, &cwd, &["noexitcode"]);
    assert_eq!((run.code, run.control.as_str()), (0, ""));

    // A background job outliving the test is killed, unless nokill.
    let marker = dir.path().join("marker");
    let bg = write_script(
        dir.path(),
        "bg.sh",
        &format!(
            "(sleep 0.5; touch '{}') >/dev/null 2>&1 &\nexit 0",
            marker.display()
        ),
    );
    let job = format!("atex-bg-{}", std::process::id());
    let run = wrap_env(dir.path(), &bg, &cwd, &[], &job);
    assert_eq!(run.control, "exitcode 0\n");
    // Once no process of the job is left, it either touched the marker or was killed.
    let left = support::wait_no_processes(&job, std::time::Duration::from_secs(5));
    assert!(left.is_empty(), "leftover job still running: {left:?}");
    assert!(!marker.exists(), "leftover job was killed");
    let run = wrap(dir.path(), &bg, &cwd, &["nokill"]);
    assert_eq!(run.control, "exitcode 0\n");
    for _ in 0..100 {
        if marker.exists() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(marker.exists(), "with nokill the job survives");
}

#[test]
fn sigterm_is_forwarded_as_sighup() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cwd = dir.path().display().to_string();
    let test = write_script(
        dir.path(),
        "t.sh",
        "trap 'echo got-hup; exit 9' HUP\necho ready >&$ATEX_TEST_CONTROL\nsleep 30 & wait",
    );
    let pgid_file = dir.path().join("pgid");
    let mut child = wrapper_command(dir.path(), &test, &cwd)
        .env("ATEX_TEST_PGID_FILE", &pgid_file)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut stdout = child.stdout.take().expect("stdout");
    let mut line = [0u8; 6];
    std::io::Read::read_exact(&mut stdout, &mut line).expect("ready");
    assert_eq!(&line, b"ready\n");
    // The wrapper writes the file right after starting the test, maybe after "ready".
    let written = || std::fs::read_to_string(&pgid_file).is_ok_and(|t| t.ends_with('\n'));
    support::wait_until(std::time::Duration::from_secs(10), "the pgid file", written);
    let pgid: i32 = std::fs::read_to_string(&pgid_file)
        .expect("pgid file")
        .trim()
        .parse()
        .expect("pgid");
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("pid"));
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("kill");
    let out = child.wait_with_output().expect("wait");
    assert_eq!(out.status.code(), Some(143));
    assert_eq!(String::from_utf8_lossy(&out.stderr), "got-hup\n");
    // Emptied rather than removed (no inode freed per test): it names no group any more.
    assert_eq!(
        std::fs::read_to_string(&pgid_file).expect("pgid file kept"),
        "",
        "pgid file emptied"
    );
    // the whole test group is gone
    let mut gone = false;
    for _ in 0..100 {
        if !atex::process::group_has_live_members(pgid) {
            gone = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(gone, "test process group {pgid} still has live members");
}

/// The test output holds exactly what the test printed. The wrapper's own messages go to
/// `ATEX_WRAPPER_LOG`, and so do bash's job notices (`line N: PID Killed ...`), which bash
/// prints now and then when the test dies of a signal right after it was started: the
/// latter is a race, hence the many runs.
#[test]
fn wrapper_text_never_reaches_the_test_output() {
    let dir = tempfile::tempdir().expect("tempdir");
    let wrapper = dir.path().join("wrapper.sh");
    std::fs::write(&wrapper, WRAPPER).expect("write wrapper");
    let log = dir.path().join("wrapper.log");
    let run = |test: &str, cwd: &str| {
        Command::new("bash")
            .arg(&wrapper)
            .arg(test)
            .arg(cwd)
            .env("ATEX_WRAPPER_LOG", &log)
            .stdin(Stdio::null())
            .output()
            .expect("run wrapper")
    };
    let test = write_script(dir.path(), "t.sh", "echo never");
    let out = run(&test, "/nonexistent/dir");
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
    assert_eq!(
        std::fs::read_to_string(&log).expect("log"),
        "atex wrapper: cannot change directory to '/nonexistent/dir'\n"
    );

    let suicide = dir.path().join("k.sh");
    std::fs::write(&suicide, "#!/bin/sh\nkill -KILL $$\n").expect("write");
    let status = Command::new("chmod")
        .arg("0755")
        .arg(&suicide)
        .status()
        .expect("chmod");
    assert!(status.success());
    let cwd = dir.path().display().to_string();
    for _ in 0..300 {
        let out = run(&suicide.display().to_string(), &cwd);
        assert_eq!(String::from_utf8_lossy(&out.stdout), "exitcode 137\n");
        assert_eq!(
            String::from_utf8_lossy(&out.stderr),
            "",
            "the test printed nothing"
        );
    }
}

/// The group id file names the test's group while the test runs and names nothing once the
/// test has ended: the wrapper empties it (a builtin, no `rm` process per test).
#[test]
fn the_group_file_names_the_group_while_the_test_runs_and_is_emptied_after() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cwd = dir.path().display().to_string();
    let pgid_file = dir.path().join("pgid");
    let test = write_script(
        dir.path(),
        "t.sh",
        "read -r g < \"$ATEX_TEST_PGID_FILE\"; [ \"$g\" = \"$(ps -o pgid= -p $$ | tr -d ' ')\" ] && echo same-group",
    );
    let out = wrapper_command(dir.path(), &test, &cwd)
        .env("ATEX_TEST_PGID_FILE", &pgid_file)
        .output()
        .expect("run wrapper");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "exitcode 0\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "same-group\n");
    assert_eq!(
        std::fs::read_to_string(&pgid_file).expect("pgid file kept"),
        "",
        "pgid file emptied"
    );
}
