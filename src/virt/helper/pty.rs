//! Running a program under a pseudo-terminal and relaying its output (virt-install wants a
//! terminal for its console).

use std::process::Stdio;

use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::scope::Scope;

/// Runs `program args` with a pty as stdin/stdout/stderr, copying everything it prints to
/// `aux`. If `aux` cannot be written (the client's side went away) the program is killed
/// and this fails. Returns the exit code (128 + signal when killed by one).
pub(crate) async fn run_relayed<E: AsyncWrite + Unpin + Send>(
    program: &str,
    args: &[String],
    aux: &mut E,
    scope: &Scope,
) -> Result<i32, String> {
    let pty = nix::pty::openpty(None, None).map_err(|e| format!("openpty: {e}"))?;
    let slave = std::fs::File::from(pty.slave);
    let stdio = |f: &std::fs::File| -> Result<Stdio, String> {
        f.try_clone()
            .map(Stdio::from)
            .map_err(|e| format!("pty: {e}"))
    };
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .stdin(stdio(&slave)?)
        .stdout(stdio(&slave)?)
        .stderr(stdio(&slave)?)
        .kill_on_drop(true)
        .process_group(0)
        .spawn()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    // Only the child keeps the slave open: its exit makes reads of the master end.
    drop(slave);
    let mut master = tokio::fs::File::from_std(std::fs::File::from(pty.master));
    let mut buf = vec![0u8; 8192];
    loop {
        let n = match scope.run(master.read(&mut buf)).await {
            None => {
                let _ = child.start_kill();
                let _ = child.wait().await;
                return Err("cancelled".into());
            }
            // EIO: the slave side is closed (the program ended).
            Some(Ok(0)) | Some(Err(_)) => break,
            Some(Ok(n)) => n,
        };
        let written = async {
            aux.write_all(&buf[..n]).await?;
            aux.flush().await
        };
        if written.await.is_err() {
            let _ = child.start_kill();
            let _ = child.wait().await;
            return Err(format!(
                "the client's output stream went away; {program} was terminated"
            ));
        }
    }
    let status = child
        .wait()
        .await
        .map_err(|e| format!("waiting for {program}: {e}"))?;
    use std::os::unix::process::ExitStatusExt;
    Ok(status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0)))
}
