//! Checks of the [`Connection`] contract: argv, environment, working directory, stdin,
//! exit status and signals, output modes, large outputs, leftover processes,
//! cancellation of whole process trees, tree transfers and reconnection.
//!
//! The checks run POSIX shell commands (`sh`, `printf`, `cat`, `dd`, `sleep`, `kill`, `tr`)
//! and read `/proc` to see processes, so the system must be a Linux with those tools.

use std::fmt::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{CheckResult, Context, DEFAULT_DEADLINE, Report, Violation, ensure, pattern, wait_for};
use crate::connection::{
    CommandOutput, CommandSpec, Connection, ConnectionError, ConnectionExt, ErrOutput, Input,
    Output,
};
use crate::process::ExitStatus;
use crate::scope::Scope;

/// A connection under test.
#[derive(Clone)]
pub struct ConnectionTarget {
    conn: Arc<dyn Connection>,
    scratch: String,
    scope: Scope,
    deadline: Duration,
}

impl std::fmt::Debug for ConnectionTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionTarget")
            .field("conn", &self.conn.describe())
            .field("scratch", &self.scratch)
            .finish()
    }
}

impl ConnectionTarget {
    /// Checks `conn`. `scratch` is an existing, empty directory on the system that the
    /// user of the connection may write to; the checks write only below it (an absolute
    /// path, or one relative to the connection's default directory). Commands run in
    /// children of `scope`.
    pub fn new(conn: Arc<dyn Connection>, scratch: impl Into<String>, scope: &Scope) -> Self {
        Self {
            conn,
            scratch: scratch.into(),
            scope: scope.clone(),
            deadline: DEFAULT_DEADLINE,
        }
    }

    /// How long one check may take (default [`DEFAULT_DEADLINE`]).
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.deadline = deadline;
        self
    }

    /// A path below the scratch directory.
    fn path(&self, rel: &str) -> String {
        format!("{}/{rel}", self.scratch.trim_end_matches('/'))
    }

    async fn output(&self, cmd: CommandSpec) -> Result<CommandOutput, Violation> {
        let shown = cmd.display();
        self.conn
            .output(cmd, &self.scope)
            .await
            .context(format!("running {shown}"))
    }

    /// Runs `sh -c script sh args…`, which must succeed; returns its stdout.
    async fn sh(&self, script: &str, args: &[&str]) -> Result<Vec<u8>, Violation> {
        let mut argv = vec!["sh", "-c", script, "sh"];
        argv.extend_from_slice(args);
        let out = self.output(CommandSpec::new(argv)).await?;
        ensure!(
            out.status.success(),
            "`sh -c {script:?}` ended with {}: {}",
            out.status,
            out.stderr_lossy()
        );
        Ok(out.stdout)
    }

    /// How many live processes carry `marker` on their command line.
    async fn count(&self, marker: &Marker) -> Result<usize, Violation> {
        let (p1, p2) = marker.0.split_at(4);
        let out = self
            .output(CommandSpec::new(["sh", "-c", PROBE]).envs([("P1", p1), ("P2", p2)]))
            .await?;
        let text = out.stdout_lossy();
        text.trim()
            .parse()
            .map_err(|_| Violation(format!("the process probe printed {text:?}")))
    }

    /// Waits until exactly `n` processes carry `marker`.
    async fn wait_count(&self, marker: &Marker, n: usize, what: &str) -> CheckResult {
        let limit = self.deadline / 4;
        wait_for(limit, what, || async {
            Ok((self.count(marker).await? == n).then_some(()))
        })
        .await
    }
}

/// Counts live (not zombie) processes whose command line contains `$P1$P2` (the marker is
/// split so that no command line of the probe itself contains it).
const PROBE: &str = r#"n=0
for d in /proc/[0-9]*; do
  c=$(tr '\000' ' ' < "$d/cmdline" 2>/dev/null) || continue
  case "$c" in
    *"$P1$P2"*)
      s=$(cat "$d/stat" 2>/dev/null) || continue
      set -- ${s##*)}
      case "$1" in Z|X) ;; *) n=$((n+1)) ;; esac ;;
  esac
done
echo "$n""#;

/// A number unique to one check, used as a `sleep` duration so that the processes of
/// that check can be found on the system.
struct Marker(String);

impl Marker {
    fn new() -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos() as u64 ^ d.as_secs())
            .unwrap_or(0);
        let mix = nanos
            .wrapping_add(u64::from(std::process::id()) << 20)
            .wrapping_add(u64::from(NEXT.fetch_add(1, Ordering::Relaxed)) * 7919);
        Marker(format!("9{:08}", mix % 100_000_000))
    }

    /// A shell whose child `sleep` and grandchild `sleep` (in a subshell) carry the marker;
    /// with `ignore_term` all of them ignore SIGTERM.
    fn tree(&self, ignore_term: bool) -> CommandSpec {
        let trap = if ignore_term { "trap '' TERM; " } else { "" };
        let script = format!(
            "{trap}sleep \"$N\" & ( sleep \"$N\" & wait ) & echo started; wait; echo never"
        );
        CommandSpec::new(["sh", "-c", &script]).env("N", &self.0)
    }
}

/// Runs every check of this module.
pub async fn all(target: &ConnectionTarget) -> Report {
    let mut report = Report::new(format!("connection {}", target.conn.describe()));
    let d = target.deadline;
    report.run("connection::argv", d, argv(target)).await;
    report.run("connection::env", d, env(target)).await;
    report.run("connection::cwd", d, cwd(target)).await;
    report.run("connection::stdin", d, stdin(target)).await;
    report
        .run("connection::exit_status", d, exit_status(target))
        .await;
    report
        .run("connection::output_modes", d, output_modes(target))
        .await;
    report
        .run("connection::large_output", d, large_output(target))
        .await;
    report
        .run(
            "connection::concurrent_commands",
            d,
            concurrent_commands(target),
        )
        .await;
    report
        .run(
            "connection::leftover_processes",
            d,
            leftover_processes(target),
        )
        .await;
    report
        .run("connection::cancellation", d, cancellation(target))
        .await;
    report
        .run("connection::transfer_tree", d, transfer_tree(target))
        .await;
    report
        .run("connection::transfer_file", d, transfer_file(target))
        .await;
    report
        .run("connection::transfer_errors", d, transfer_errors(target))
        .await;
    report
        .run("connection::reconnect", d, reconnect(target))
        .await;
    report
}

/// Arguments arrive as exactly those arguments (spaces, quotes, empty, shell syntax,
/// newlines, non-ASCII); an empty argv and an argument with a NUL byte are refused with an
/// error; a missing program is an error or exit code 127.
pub async fn argv(t: &ConnectionTarget) -> CheckResult {
    let args = [
        "a b",
        "it's",
        "\"double\"",
        "",
        "$HOME",
        "*",
        "-n",
        "back\\slash",
        "new\nline",
        "tab\there",
        "ünïcödé ✓",
        "--",
        "; exit 3",
        "`id`",
        "$(id)",
        "~",
        "a\\nb",
    ];
    let mut argv = vec!["printf", "%s\\000"];
    argv.extend_from_slice(&args);
    let out = t.output(CommandSpec::new(argv)).await?;
    let expected: Vec<u8> = args
        .iter()
        .flat_map(|a| a.bytes().chain(std::iter::once(0)))
        .collect();
    ensure!(out.status.success(), "printf ended with {}", out.status);
    ensure!(
        out.stdout == expected,
        "the arguments arrived as {:?}, expected {:?}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&expected)
    );
    // The program name itself is not split either.
    let out = t
        .output(CommandSpec::new([
            "sh",
            "-c",
            "printf '%s|' \"$0\" \"$@\"",
            "zero one",
            "two",
        ]))
        .await?;
    ensure!(
        out.stdout == b"zero one|two|",
        "$0 and $@ arrived as {:?}",
        out.stdout_lossy()
    );

    let empty = t
        .conn
        .spawn(CommandSpec::new(Vec::<String>::new()), &t.scope)
        .await;
    ensure!(empty.is_err(), "an empty argv was accepted");
    let nul = t
        .conn
        .spawn(CommandSpec::new(["printf", "%s", "a\0b"]), &t.scope)
        .await;
    if let Ok(mut p) = nul {
        let _ = p.wait().await;
        return Err(Violation::new(
            "an argument with a NUL byte was accepted (it cannot arrive as given)",
        ));
    }

    let missing = "atex-conformance-no-such-program";
    match t.conn.output(CommandSpec::new([missing]), &t.scope).await {
        Err(e) => ensure!(
            e.to_string().contains(missing),
            "the error for a missing program does not name it: {e}"
        ),
        Ok(out) => ensure!(
            out.status == ExitStatus::Code(127),
            "a missing program ended with {} (expected an error or exit code 127)",
            out.status
        ),
    }
    Ok(())
}

/// Environment variables arrive with their values (spaces, quotes, newlines, `=`, empty);
/// they override the connection's own; an invalid name (empty, with `=` or NUL) or a value
/// with a NUL byte is refused.
pub async fn env(t: &ConnectionTarget) -> CheckResult {
    let vars = [
        ("ATEX_A", "hi there"),
        ("ATEX_B", ""),
        ("ATEX_C", "x=y=z"),
        ("ATEX_D", "it's \"quoted\" $HOME `id`"),
        ("ATEX_E", "two\nlines"),
        ("ATEX_F", "ünï ✓"),
        ("HOME", "/atex/conformance/home"),
    ];
    let script = "printf '%s\\000' \"$ATEX_A\" \"$ATEX_B\" \"$ATEX_C\" \"$ATEX_D\" \"$ATEX_E\" \
                  \"$ATEX_F\" \"$HOME\" \"${ATEX_UNSET-unset}\"";
    let out = t
        .output(CommandSpec::new(["sh", "-c", script]).envs(vars))
        .await?;
    let mut expected: Vec<u8> = vars
        .iter()
        .flat_map(|(_, v)| v.bytes().chain(std::iter::once(0)))
        .collect();
    expected.extend_from_slice(b"unset\0");
    ensure!(
        out.stdout == expected,
        "the environment arrived as {:?}, expected {:?}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&expected)
    );
    for (name, value) in [("", "v"), ("A=B", "v"), ("A\0B", "v"), ("ATEX_NUL", "a\0b")] {
        let res = t
            .conn
            .spawn(CommandSpec::new(["true"]).env(name, value), &t.scope)
            .await;
        if let Ok(mut p) = res {
            let _ = p.wait().await;
            return Err(Violation(format!(
                "the environment variable {name:?}={value:?} was accepted (it cannot arrive \
                 as given)"
            )));
        }
    }
    Ok(())
}

/// The working directory is the one asked for (absolute, with spaces); a missing one is an
/// error or a failed command, never a command run elsewhere.
pub async fn cwd(t: &ConnectionTarget) -> CheckResult {
    let sub = t.path("cwd dir");
    t.sh("mkdir -p \"$1\"", &[&sub]).await?;
    let expected = t.sh("cd \"$1\" && pwd -P", &[&sub]).await?;
    let out = t
        .output(CommandSpec::new(["sh", "-c", "pwd -P"]).cwd(&sub))
        .await?;
    ensure!(
        out.stdout == expected,
        "with cwd {sub:?} the command ran in {:?} (expected {:?})",
        out.stdout_lossy(),
        String::from_utf8_lossy(&expected)
    );
    let missing = t.path("no such dir");
    let res = t
        .conn
        .output(
            CommandSpec::new(["sh", "-c", "echo ran"]).cwd(&missing),
            &t.scope,
        )
        .await;
    if let Ok(out) = res {
        ensure!(
            !out.status.success() && out.stdout.is_empty(),
            "with a missing cwd the command ran anyway ({}, stdout {:?})",
            out.status,
            out.stdout_lossy()
        );
    }
    Ok(())
}

/// stdin: `Null` is an immediate end of file and never a terminal; `Bytes` arrive exactly
/// (NUL and bytes that are not UTF-8 included), empty too; `Piped` streams what is
/// written until shut down.
pub async fn stdin(t: &ConnectionTarget) -> CheckResult {
    let out = t
        .output(CommandSpec::new(["sh", "-c", "test -t 0 && echo tty; cat"]))
        .await?;
    ensure!(
        out.status.success() && out.stdout.is_empty(),
        "with stdin Null, `cat` printed {:?} and ended with {}",
        out.stdout_lossy(),
        out.status
    );
    let mut binary = vec![0u8, 1, b'\n', 0x80, 0xfe, 0xff, 0, b'\r', 0x7f];
    binary.extend(pattern(4096, 1));
    for data in [binary, Vec::new()] {
        let out = t
            .output(CommandSpec::new(["cat"]).stdin(Input::Bytes(data.clone())))
            .await?;
        ensure!(
            out.stdout == data,
            "{} bytes of stdin came back as {} different bytes",
            data.len(),
            out.stdout.len()
        );
    }
    let mut p = t
        .conn
        .spawn(CommandSpec::new(["cat"]).stdin(Input::Piped), &t.scope)
        .await
        .context("spawning cat with piped stdin")?;
    let mut w = p.stdin.take().context("piped stdin")?;
    let mut r = p.stdout.take().context("piped stdout")?;
    let data = pattern(100_000, 2);
    let writer = async {
        for chunk in data.chunks(7000) {
            w.write_all(chunk).await?;
        }
        w.shutdown().await?;
        drop(w);
        Ok::<_, std::io::Error>(())
    };
    let mut got = Vec::new();
    let (written, read) = tokio::join!(writer, r.read_to_end(&mut got));
    written.context("writing stdin")?;
    read.context("reading stdout")?;
    let info = p.wait().await.context("waiting for cat")?;
    ensure!(info.status.success(), "cat ended with {}", info.status);
    ensure!(got == data, "piped stdin came back changed");
    Ok(())
}

/// Exit codes and signals arrive as they are (`exit 255` is code 255, `kill -TERM $$` is
/// signal 15).
pub async fn exit_status(t: &ConnectionTarget) -> CheckResult {
    for code in [0, 1, 7, 255] {
        let out = t
            .output(CommandSpec::new(["sh", "-c", &format!("exit {code}")]))
            .await?;
        ensure!(
            out.status == ExitStatus::Code(code),
            "`exit {code}` ended with {}",
            out.status
        );
    }
    for (name, number) in [("TERM", 15), ("KILL", 9), ("USR2", 12)] {
        let out = t
            .output(CommandSpec::new([
                "sh",
                "-c",
                &format!("kill -s {name} $$; sleep 5"),
            ]))
            .await?;
        ensure!(
            out.status == ExitStatus::Signal(number),
            "a command killed by SIG{name} ended with {}",
            out.status
        );
    }
    Ok(())
}

/// Output modes: separate pipes; stderr merged into stdout in order (pipe and file);
/// stdout and stderr appended to files; discarded streams (no pipe handed out); never a
/// terminal.
pub async fn output_modes(t: &ConnectionTarget) -> CheckResult {
    let script = "echo out1; echo err1 >&2; echo out2; echo err2 >&2";
    let out = t.output(CommandSpec::new(["sh", "-c", script])).await?;
    ensure!(
        out.stdout == b"out1\nout2\n" && out.stderr == b"err1\nerr2\n",
        "separate pipes got stdout {:?} and stderr {:?}",
        out.stdout_lossy(),
        out.stderr_lossy()
    );
    let out = t
        .output(CommandSpec::new(["sh", "-c", script]).stderr(ErrOutput::ToStdout))
        .await?;
    ensure!(
        out.stdout == b"out1\nerr1\nout2\nerr2\n" && out.stderr.is_empty(),
        "merged output came as {:?} (stderr {:?})",
        out.stdout_lossy(),
        out.stderr_lossy()
    );
    let tty = "for fd in 0 1 2; do test -t $fd && echo \"fd $fd is a terminal\"; done; true";
    let out = t
        .output(CommandSpec::new(["sh", "-c", tty]).stderr(ErrOutput::ToStdout))
        .await?;
    ensure!(out.stdout.is_empty(), "{}", out.stdout_lossy());

    let dir = tempfile::tempdir().context("a local temporary directory")?;
    let open_append = |name: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, b"before\n").context("writing a local file")?;
        let file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .context("opening a local file")?;
        Ok::<_, Violation>((path, file))
    };
    // Files, separate.
    let (out_path, out_file) = open_append("out")?;
    let (err_path, err_file) = open_append("err")?;
    let mut p = t
        .conn
        .spawn(
            CommandSpec::new(["sh", "-c", script])
                .stdout(Output::File(out_file))
                .stderr(ErrOutput::File(err_file)),
            &t.scope,
        )
        .await
        .context("spawning with output files")?;
    ensure!(
        p.stdout.is_none() && p.stderr.is_none(),
        "pipes handed out for file outputs"
    );
    let info = p.wait().await.context("waiting")?;
    ensure!(info.status.success(), "ended with {}", info.status);
    let got = (std::fs::read(&out_path), std::fs::read(&err_path));
    ensure!(
        matches!(&got, (Ok(o), Ok(e)) if o == b"before\nout1\nout2\n" && e == b"before\nerr1\nerr2\n"),
        "the output files hold {got:?}"
    );
    // One file, merged.
    let (both_path, both_file) = open_append("both")?;
    let mut p = t
        .conn
        .spawn(
            CommandSpec::new(["sh", "-c", script])
                .stdout(Output::File(both_file))
                .stderr(ErrOutput::ToStdout),
            &t.scope,
        )
        .await
        .context("spawning with a merged output file")?;
    let info = p.wait().await.context("waiting")?;
    ensure!(info.status.success(), "ended with {}", info.status);
    let got = std::fs::read(&both_path).context("reading the output file")?;
    ensure!(
        got == b"before\nout1\nerr1\nout2\nerr2\n",
        "the merged output file holds {:?}",
        String::from_utf8_lossy(&got)
    );
    // Discarded.
    let mut p = t
        .conn
        .spawn(
            CommandSpec::new(["sh", "-c", script])
                .stdout(Output::Null)
                .stderr(ErrOutput::Null),
            &t.scope,
        )
        .await
        .context("spawning with discarded output")?;
    ensure!(
        p.stdout.is_none() && p.stderr.is_none(),
        "pipes handed out for discarded output"
    );
    let info = p.wait().await.context("waiting")?;
    ensure!(
        info.status.success(),
        "with discarded output, ended with {}",
        info.status
    );
    Ok(())
}

const MIB: usize = 1 << 20;

/// Many megabytes both ways without deadlock: 16 MiB on stdout and on stderr at once,
/// 16 MiB through stdin and back, streamed through pipes, and a command whose output nobody
/// reads does not hold up others.
pub async fn large_output(t: &ConnectionTarget) -> CheckResult {
    let out = t
        .output(CommandSpec::new([
            "sh",
            "-c",
            "dd if=/dev/zero bs=65536 count=256 2>/dev/null & \
             dd if=/dev/zero bs=65536 count=256 >&2 2>/dev/null; wait",
        ]))
        .await?;
    ensure!(
        out.stdout.len() == 16 * MIB && out.stderr.len() == 16 * MIB,
        "16 MiB on stdout and stderr arrived as {} and {} bytes",
        out.stdout.len(),
        out.stderr.len()
    );
    ensure!(
        out.stdout.iter().chain(&out.stderr).all(|b| *b == 0),
        "the zeros came back changed"
    );
    let data = pattern(16 * MIB, 3);
    let out = t
        .output(CommandSpec::new(["cat"]).stdin(Input::Bytes(data.clone())))
        .await?;
    ensure!(
        out.stdout == data,
        "16 MiB through stdin came back as {} (different) bytes",
        out.stdout.len()
    );

    // A command whose stdout nobody reads yet, while others run.
    let mut hog = t
        .conn
        .spawn(
            CommandSpec::new(["dd", "if=/dev/zero", "bs=65536", "count=256"])
                .stderr(ErrOutput::Null),
            &t.scope,
        )
        .await
        .context("spawning the unread command")?;
    let others = futures::future::join_all((0..8).map(|i| async move {
        let out = t
            .output(CommandSpec::new(["sh", "-c", "echo $0", &i.to_string()]))
            .await?;
        ensure!(
            out.stdout == format!("{i}\n").as_bytes(),
            "command {i} printed {:?}",
            out.stdout_lossy()
        );
        Ok::<_, Violation>(())
    }))
    .await;
    for res in others {
        res?;
    }
    let mut r = hog.stdout.take().context("the unread command's stdout")?;
    let mut n = 0usize;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let k = r.read(&mut buf).await.context("reading")?;
        if k == 0 {
            break;
        }
        n += k;
    }
    ensure!(
        n == 16 * MIB,
        "the unread command's output arrived as {n} bytes"
    );
    let info = hog.wait().await.context("waiting")?;
    ensure!(info.status.success(), "dd ended with {}", info.status);
    Ok(())
}

/// Several commands at once on one connection each get their own output.
pub async fn concurrent_commands(t: &ConnectionTarget) -> CheckResult {
    let runs = futures::future::join_all((0..16).map(|i| async move {
        let out = t
            .output(CommandSpec::new([
                "sh",
                "-c",
                "sleep 0.1; echo \"$0\"; echo \"$0\" >&2; exit $(($0 % 4))",
                &i.to_string(),
            ]))
            .await?;
        let line = format!("{i}\n");
        ensure!(
            out.stdout == line.as_bytes() && out.stderr == line.as_bytes(),
            "command {i} got stdout {:?} and stderr {:?}",
            out.stdout_lossy(),
            out.stderr_lossy()
        );
        ensure!(
            out.status == ExitStatus::Code(i % 4),
            "command {i} ended with {}",
            out.status
        );
        Ok::<_, Violation>(())
    }))
    .await;
    runs.into_iter().collect()
}

/// Background processes that outlive their command while holding its output open do not
/// keep it (or its output) from ending: they are killed and
/// [`ExitInfo::leaked`](crate::process::ExitInfo) says so.
pub async fn leftover_processes(t: &ConnectionTarget) -> CheckResult {
    let m = Marker::new();
    let out = t
        .output(CommandSpec::new(["sh", "-c", "sleep \"$N\" & echo started"]).env("N", &m.0))
        .await?;
    ensure!(
        out.stdout == b"started\n" && out.status.success(),
        "got {:?} and {}",
        out.stdout_lossy(),
        out.status
    );
    t.wait_count(&m, 0, "a background process outlived its command")
        .await?;
    let m = Marker::new();
    let mut p = t
        .conn
        .spawn(
            CommandSpec::new(["sh", "-c", "sleep \"$N\" &"])
                .env("N", &m.0)
                .stdout(Output::Null),
            &t.scope,
        )
        .await
        .context("spawning")?;
    let info = p.wait().await.context("waiting")?;
    ensure!(
        info.leaked && info.status.success(),
        "a command that left a background process ended with {info:?} (expected leaked)"
    );
    t.wait_count(&m, 0, "a background process outlived its command")
        .await?;
    let mut p = t
        .conn
        .spawn(CommandSpec::new(["true"]), &t.scope)
        .await
        .context("spawning true")?;
    let info = p.wait().await.context("waiting")?;
    ensure!(!info.leaked, "`true` was reported as leaking processes");
    Ok(())
}

/// Cancellation kills the command's whole process tree (a child and a grandchild), also
/// when they ignore SIGTERM; dropping a running process kills its tree;
/// [`ConnectionExt::output`] returns [`ConnectionError::Cancelled`].
pub async fn cancellation(t: &ConnectionTarget) -> CheckResult {
    for ignore_term in [false, true] {
        let scope = t.scope.child("conformance-cancel");
        scope.set_kill_grace(Duration::from_millis(300));
        let m = Marker::new();
        let mut p = t
            .conn
            .spawn(m.tree(ignore_term).stdout(Output::Null), &scope)
            .await
            .context("spawning a process tree")?;
        t.wait_count(&m, 2, "the child and grandchild never started")
            .await?;
        scope.cancel();
        let (info, cancelled) = p
            .wait_or_terminate(&scope)
            .await
            .context("terminating a cancelled command")?;
        ensure!(
            cancelled,
            "wait_or_terminate did not report the cancellation"
        );
        ensure!(
            !info.status.success(),
            "a terminated command ended with {}",
            info.status
        );
        let what = if ignore_term {
            "the child or grandchild (ignoring SIGTERM) survived the cancellation"
        } else {
            "the child or grandchild survived the cancellation"
        };
        t.wait_count(&m, 0, what).await?;
    }

    let m = Marker::new();
    let p = t
        .conn
        .spawn(m.tree(false).stdout(Output::Null), &t.scope)
        .await
        .context("spawning a process tree")?;
    t.wait_count(&m, 2, "the child and grandchild never started")
        .await?;
    drop(p);
    t.wait_count(
        &m,
        0,
        "dropping the process left its child or grandchild running",
    )
    .await?;

    let scope = t.scope.child("conformance-cancel-output");
    scope.set_kill_grace(Duration::from_millis(300));
    let m = Marker::new();
    let canceller = async {
        let seen = t
            .wait_count(&m, 2, "the child and grandchild never started")
            .await;
        scope.cancel();
        seen
    };
    let (res, seen) = tokio::join!(t.conn.output(m.tree(false), &scope), canceller);
    seen?;
    ensure!(
        matches!(res, Err(ConnectionError::Cancelled)),
        "a cancelled output() returned {res:?} (expected ConnectionError::Cancelled)"
    );
    t.wait_count(&m, 0, "a cancelled output() left its processes running")
        .await
}

/// One entry of a tree, for comparisons.
#[derive(Debug, PartialEq, Eq)]
enum Entry {
    Dir(u32),
    File(u32, Vec<u8>),
    Link(PathBuf),
}

fn read_tree(root: &Path) -> Result<Vec<(PathBuf, Entry)>, Violation> {
    fn walk(root: &Path, rel: &Path, out: &mut Vec<(PathBuf, Entry)>) -> std::io::Result<()> {
        let mut names: Vec<_> = std::fs::read_dir(root.join(rel))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<Result<_, _>>()?;
        names.sort();
        for name in names {
            let rel = rel.join(name);
            let path = root.join(&rel);
            let meta = std::fs::symlink_metadata(&path)?;
            let mode = meta.permissions().mode() & 0o7777;
            if meta.file_type().is_symlink() {
                out.push((rel, Entry::Link(std::fs::read_link(&path)?)));
            } else if meta.is_dir() {
                out.push((rel.clone(), Entry::Dir(mode)));
                walk(root, &rel, out)?;
            } else {
                out.push((rel, Entry::File(mode, std::fs::read(&path)?)));
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(root, Path::new(""), &mut out).context(format!("reading {}", root.display()))?;
    Ok(out)
}

/// Writes the tree the transfer checks send: nested directories, modes, an executable, an
/// empty file and directory, binary data, relative and dangling symlinks.
fn write_tree(root: &Path) -> Result<(), Violation> {
    let build = || -> std::io::Result<()> {
        let mode =
            |p: &Path, m: u32| std::fs::set_permissions(p, std::fs::Permissions::from_mode(m));
        std::fs::create_dir_all(root.join("bin"))?;
        std::fs::create_dir_all(root.join("deep/er/est"))?;
        std::fs::create_dir_all(root.join("empty"))?;
        std::fs::write(root.join("bin/run.sh"), b"#!/bin/sh\necho ran\n")?;
        mode(&root.join("bin/run.sh"), 0o750)?;
        std::fs::write(root.join("deep/er/est/data.bin"), pattern(3 * MIB + 17, 4))?;
        std::fs::write(root.join("private.txt"), b"secret\n")?;
        mode(&root.join("private.txt"), 0o600)?;
        std::fs::write(root.join("zero"), b"")?;
        std::fs::write(root.join("name with spaces 'and' quotes"), b"x\n")?;
        std::os::unix::fs::symlink("bin/run.sh", root.join("link"))?;
        std::os::unix::fs::symlink("/atex/nonexistent/target", root.join("dangling"))?;
        mode(&root.join("deep/er"), 0o750)?;
        Ok(())
    };
    build().context(format!("writing a local tree in {}", root.display()))
}

/// Directory trees go up and come back with contents, modes, empty files and directories
/// and symlinks (relative and dangling) kept; an uploaded directory is merged into an
/// existing one; the uploaded executable runs on the system.
pub async fn transfer_tree(t: &ConnectionTarget) -> CheckResult {
    let local = tempfile::tempdir().context("a local temporary directory")?;
    let src = local.path().join("src");
    write_tree(&src)?;
    let remote = t.path("tree");
    t.conn
        .upload(&src, &remote)
        .await
        .context(format!("uploading a tree to {remote}"))?;
    let out = t
        .sh("cd \"$1\" && ./bin/run.sh && cat ./link", &[&remote])
        .await?;
    ensure!(
        out == b"ran\n#!/bin/sh\necho ran\n",
        "the uploaded executable and its symlink gave {:?}",
        String::from_utf8_lossy(&out)
    );
    // Merged into an existing directory.
    let extra = local.path().join("extra");
    std::fs::create_dir_all(extra.join("bin")).context("writing a local tree")?;
    std::fs::write(extra.join("bin/more.txt"), b"more\n").context("writing a local tree")?;
    t.conn
        .upload(&extra, &remote)
        .await
        .context(format!("uploading a second tree into {remote}"))?;
    let back = local.path().join("back");
    t.conn
        .download(&remote, &back)
        .await
        .context(format!("downloading {remote}"))?;
    std::fs::remove_file(back.join("bin/more.txt")).map_err(|_| {
        Violation::new("a tree uploaded into an existing directory was not merged into it")
    })?;
    let (sent, got) = (read_tree(&src)?, read_tree(&back)?);
    if sent != got {
        let mut diff = String::new();
        for (path, entry) in &sent {
            match got.iter().find(|(p, _)| p == path) {
                None => {
                    let _ = write!(diff, "\n  {} is missing", path.display());
                }
                Some((_, e)) if e != entry => {
                    let _ = write!(diff, "\n  {} differs: {}", path.display(), brief(entry, e));
                }
                _ => {}
            }
        }
        for (path, _) in got
            .iter()
            .filter(|(p, _)| !sent.iter().any(|(q, _)| q == p))
        {
            let _ = write!(diff, "\n  {} appeared", path.display());
        }
        return Err(Violation(format!("the tree came back changed:{diff}")));
    }
    Ok(())
}

fn brief(sent: &Entry, got: &Entry) -> String {
    let show = |e: &Entry| match e {
        Entry::Dir(m) => format!("directory {m:o}"),
        Entry::File(m, data) => format!("file {m:o}, {} bytes", data.len()),
        Entry::Link(target) => format!("symlink to {}", target.display()),
    };
    format!("sent {}, got {}", show(sent), show(got))
}

/// A single file goes to a new nested path (parents created) with its mode, and comes back
/// to a new nested local path.
pub async fn transfer_file(t: &ConnectionTarget) -> CheckResult {
    let local = tempfile::tempdir().context("a local temporary directory")?;
    let file = local.path().join("tool.sh");
    std::fs::write(&file, b"#!/bin/sh\necho tool\n").context("writing a local file")?;
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o750)).context("chmod")?;
    let remote = t.path("new/nested/tool.sh");
    t.conn
        .upload(&file, &remote)
        .await
        .context(format!("uploading a file to {remote}"))?;
    let out = t.sh("\"$1\"", &[&remote]).await?;
    ensure!(
        out == b"tool\n",
        "the uploaded file ran as {:?}",
        String::from_utf8_lossy(&out)
    );
    let back = local.path().join("a/b/tool.sh");
    t.conn
        .download(&remote, &back)
        .await
        .context(format!("downloading {remote}"))?;
    let meta = std::fs::metadata(&back).context("the downloaded file")?;
    let data = std::fs::read(&back).context("the downloaded file")?;
    ensure!(
        data == b"#!/bin/sh\necho tool\n" && meta.permissions().mode() & 0o777 == 0o750,
        "the file came back as {:?} with mode {:o}",
        String::from_utf8_lossy(&data),
        meta.permissions().mode() & 0o777
    );
    Ok(())
}

/// Transfers of missing files fail with an error that names them, and create nothing.
pub async fn transfer_errors(t: &ConnectionTarget) -> CheckResult {
    let local = tempfile::tempdir().context("a local temporary directory")?;
    let missing_local = local.path().join("atex-missing-source");
    let target = t.path("never");
    let err = t.conn.upload(&missing_local, &target).await;
    match err {
        Ok(()) => return Err(Violation::new("uploading a missing local file succeeded")),
        Err(e) => ensure!(
            e.to_string().contains("atex-missing-source"),
            "the upload error does not name the missing file: {e}"
        ),
    }
    let missing_remote = t.path("atex-missing-remote");
    let dest = local.path().join("dest");
    match t.conn.download(&missing_remote, &dest).await {
        Ok(()) => {
            return Err(Violation::new(
                "downloading a missing remote file succeeded",
            ));
        }
        Err(e) => ensure!(
            e.to_string().contains("atex-missing-remote"),
            "the download error does not name the missing file: {e}"
        ),
    }
    ensure!(!dest.exists(), "a failed download left {}", dest.display());
    let left = t
        .sh(
            "if [ -e \"$1\" ] || [ -L \"$1\" ]; then echo exists; fi",
            &[&target],
        )
        .await?;
    ensure!(left.is_empty(), "a failed upload created {target}");
    Ok(())
}

/// `disconnect` is idempotent and `reconnect` brings a working connection back.
pub async fn reconnect(t: &ConnectionTarget) -> CheckResult {
    t.conn.disconnect().await;
    t.conn.disconnect().await;
    t.conn
        .reconnect(&t.scope)
        .await
        .context("reconnecting after disconnect")?;
    let out = t.output(CommandSpec::new(["echo", "back"])).await?;
    ensure!(
        out.stdout == b"back\n",
        "after reconnecting, echo printed {:?}",
        out.stdout_lossy()
    );
    t.conn
        .reconnect(&t.scope)
        .await
        .context("reconnecting a working connection")?;
    let out = t.output(CommandSpec::new(["echo", "again"])).await?;
    ensure!(
        out.stdout == b"again\n",
        "after a second reconnect, echo printed {:?}",
        out.stdout_lossy()
    );
    Ok(())
}
