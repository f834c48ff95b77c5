//! argv, environment, working directory, stdin, exit status, reconnection.

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::target::ConnectionTarget;
use crate::connection::{CommandSpec, ConnectionExt, Input};
use crate::process::ExitStatus;
use crate::testing::conformance::{CheckResult, Context, Violation, ensure, pattern};

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
