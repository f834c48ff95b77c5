//! [`spawn`]: starting a command on a new exec channel.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::{oneshot, watch};

use super::channel::{ChannelError, KILL_TIMEOUT, open_channel, signal_group};
use super::control::SshControl;
use super::drain::{Drain, Shared, StdinMode};
use super::line::remote_command_line;
use super::sink::{SinkKind, sink_pair};
use crate::connection::ssh::session::Session;
use crate::connection::{CommandSpec, ConnectionError, ErrOutput, Input, Output, Process};
use crate::guard::CleanupGuard;
use crate::scope::Scope;

/// Starts `cmd` on a new channel of `session`.
///
/// # Cancel safety
///
/// Until the channel is open nothing runs remotely, and dropping this future or cancelling
/// `scope` simply stops. From the exec request on, the remote command may run: the request,
/// the group id and the output are handled by a task of `scope`, and a [`CleanupGuard`]
/// armed before the request went out kills the remote process group when the [`Process`]
/// (or this future, before it returned one) is dropped, waiting for the group id if it has
/// not arrived yet. A forced cancellation of `scope` kills the group too.
pub(in crate::connection::ssh) async fn spawn(
    session: Arc<Session>,
    cmd: CommandSpec,
    scope: &Scope,
) -> Result<Process, ConnectionError> {
    let described = cmd.display();
    let target = session.target.clone();
    let line = remote_command_line(&cmd).map_err(|e| ConnectionError::Spawn {
        command: described.clone(),
        target: format!("ssh {target}"),
        source: Box::new(e),
    })?;
    let (channel, open) = match scope.run(open_channel(&session)).await {
        None => return Err(ConnectionError::Cancelled),
        Some(Ok(opened)) => opened,
        Some(Err(e)) => {
            if session.is_closed() {
                return Err(ConnectionError::disconnected(
                    format!("ssh {target}"),
                    Some(format!("starting `{described}`")),
                    session.end_reason(),
                ));
            }
            return Err(ConnectionError::Spawn {
                command: described.clone(),
                target: format!("ssh {target}"),
                source: Box::new(e),
            });
        }
    };

    let stdin_mode = match cmd.stdin {
        Input::Null => StdinMode::Null,
        Input::Piped => StdinMode::Piped,
        Input::Bytes(data) => StdinMode::Bytes(data),
    };
    let out_kind = match cmd.stdout {
        Output::Null => SinkKind::Discard,
        Output::Piped => SinkKind::Pipe,
        Output::File(f) => SinkKind::File(f),
    };
    let err_kind = match cmd.stderr {
        ErrOutput::Null | ErrOutput::ToStdout => SinkKind::Discard,
        ErrOutput::Piped => SinkKind::Pipe,
        ErrOutput::File(f) => SinkKind::File(f),
    };
    let (out_sink, stdout) = sink_pair(out_kind);
    let (err_sink, stderr) = sink_pair(err_kind);

    let (pgid_tx, pgid_rx) = watch::channel(None::<i32>);
    let (started_tx, started_rx) = oneshot::channel();
    let (result_tx, result_rx) = oneshot::channel();
    let shared = Arc::new(Shared {
        finished: AtomicBool::new(false),
    });
    // Armed before the exec request goes out: from then on the command may run.
    let guard = kill_guard(&session, &described, &shared, &pgid_rx, scope);

    let drain = Drain::new(
        session.clone(),
        out_sink,
        err_sink,
        pgid_tx,
        shared,
        scope.force_token().clone(),
        described.clone(),
    );
    // Runs to its end even when this future is dropped (the guard then kills the group).
    scope.spawn("ssh-exec", async move {
        let res = drain.start(channel, line, stdin_mode, started_tx).await;
        drop(open);
        if let Some(res) = res {
            let _ = result_tx.send(res);
        }
    });
    let (stdin, stdin_data) = match started_rx.await {
        Ok(Ok(started)) => started,
        Ok(Err(e)) => return Err(e),
        Err(_) => {
            return Err(ConnectionError::disconnected(
                format!("ssh {target}"),
                Some(format!("starting `{described}`")),
                ChannelError::TaskEnded,
            ));
        }
    };

    let control = SshControl::new(session, described, result_rx, pgid_rx, guard);
    Ok(Process::new(
        stdin,
        stdout,
        stderr,
        stdin_data,
        Box::new(control),
        scope.kill_grace(),
    ))
}

/// The guard that kills a remote command's process group unless the command ended on its
/// own. The group id arrives with the command's first output; the cleanup waits for it
/// (bounded) when it is not known yet.
fn kill_guard(
    session: &Arc<Session>,
    described: &str,
    shared: &Arc<Shared>,
    pgid: &watch::Receiver<Option<i32>>,
    scope: &Scope,
) -> CleanupGuard {
    let session = session.clone();
    let shared = shared.clone();
    let mut pgid = pgid.clone();
    let target = session.target.clone();
    CleanupGuard::new(
        scope,
        format!("kill the remote process group of `{described}` on {target} (kill -KILL -- -PGID)"),
        move || async move {
            if shared.finished.load(Ordering::SeqCst) {
                return Ok(());
            }
            // The sender lives in the draining task: it is dropped when the channel ended.
            let known =
                match tokio::time::timeout(KILL_TIMEOUT, pgid.wait_for(Option::is_some)).await {
                    Ok(Ok(p)) => *p,
                    Ok(Err(_)) => None,
                    Err(_) => {
                        return Err(ChannelError::NoGroupId {
                            after: KILL_TIMEOUT,
                            target,
                        }
                        .into());
                    }
                };
            let Some(pgid) = known else {
                // The channel ended without a group id: the command never ran, or the
                // wrapper's warning was logged already.
                return Ok(());
            };
            if shared.finished.load(Ordering::SeqCst) {
                return Ok(());
            }
            if session.is_closed() {
                return Err(ChannelError::GoneBeforeKill { pgid, target }.into());
            }
            Ok(signal_group(&session, pgid, "KILL").await?)
        },
    )
}
