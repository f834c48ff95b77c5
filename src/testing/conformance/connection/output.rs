//! Output modes, large outputs both ways, many commands at once.

use tokio::io::AsyncReadExt;

use super::MIB;
use super::target::ConnectionTarget;
use crate::connection::{CommandSpec, ErrOutput, Input, Output};
use crate::process::ExitStatus;
use crate::testing::conformance::{CheckResult, Context, Violation, ensure, pattern};

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
