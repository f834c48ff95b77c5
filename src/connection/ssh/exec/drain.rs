//! The draining task of a remote command: the exec request, the process-group header, the
//! output, the exit status or signal, processes that outlive the command, an abandoned
//! stdout, and forced cancellation.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use russh::ChannelMsg;
use tokio::sync::{oneshot, watch};
use tokio_util::sync::CancellationToken;

use super::channel::{ChannelError, KILL_TIMEOUT, run_quiet, signal_group, signal_number};
use super::sink::{Sink, abandoned};
use crate::connection::ssh::session::Session;
use crate::connection::{BoxWriter, ConnectionError};
use crate::process::{ExitInfo, ExitStatus, LEAK_TIMEOUT};

/// First line the remote wrapper writes to stdout: the command's process group id.
const PGID_MARKER: &[u8] = b"ATEX-PGID ";

/// State shared by the draining task, the process control and the cleanup guard.
pub(super) struct Shared {
    /// Set once the command ended on its own (exit status seen): nothing left to kill.
    pub(super) finished: AtomicBool,
}

/// How the command's stdin is fed.
pub(super) enum StdinMode {
    Null,
    Piped,
    Bytes(Vec<u8>),
}

/// The next message of a channel's read half (`None`: the channel is gone). A free function
/// so that the drain loop can borrow the read half and its sinks separately.
async fn next_msg(read: &mut Option<russh::ChannelReadHalf>) -> Option<ChannelMsg> {
    match read.as_mut() {
        Some(read) => read.wait().await,
        None => None,
    }
}

/// What the exec task hands back to `spawn`: stdin and the bytes to feed it.
pub(super) type Started = (Option<BoxWriter>, Option<Vec<u8>>);

/// The draining task of one command: sends the exec request, then reads the channel
/// (output, exit status) until it ends, watching for leaked processes, an abandoned
/// stdout and forced cancellation.
pub(super) struct Drain {
    /// The channel's read half (set by [`start`](Self::start)).
    read: Option<russh::ChannelReadHalf>,
    write_close: Option<russh::ChannelWriteHalf<russh::client::Msg>>,
    stdout: Sink,
    stderr: Sink,
    header: Vec<u8>,
    header_done: bool,
    pgid: watch::Sender<Option<i32>>,
    session: Arc<Session>,
    shared: Arc<Shared>,
    force: CancellationToken,
    described: String,
}

impl Drain {
    /// A draining task for `described` on `session`, writing into `stdout`/`stderr`,
    /// publishing the process group id on `pgid`, and killing the group when `force` is
    /// cancelled.
    pub(super) fn new(
        session: Arc<Session>,
        stdout: Sink,
        stderr: Sink,
        pgid: watch::Sender<Option<i32>>,
        shared: Arc<Shared>,
        force: CancellationToken,
        described: String,
    ) -> Self {
        Self {
            read: None,
            write_close: None,
            stdout,
            stderr,
            header: Vec::new(),
            header_done: false,
            pgid,
            session,
            shared,
            force,
            described,
        }
    }

    /// Handles stdout data, stripping the wrapper's first line (the process group id).
    async fn on_stdout(&mut self, data: Bytes) {
        if self.header_done {
            self.stdout.put(data, "stdout").await;
            return;
        }
        self.header.extend_from_slice(&data);
        let Some(nl) = self.header.iter().position(|b| *b == b'\n') else {
            if self.header.len() > 64 {
                self.header_not_found().await;
            }
            return;
        };
        let line = &self.header[..nl];
        let parsed = line
            .strip_prefix(PGID_MARKER)
            .and_then(|rest| std::str::from_utf8(rest).ok())
            .and_then(|s| s.trim().parse::<i32>().ok())
            .filter(|p| *p > 1);
        match parsed {
            Some(pgid) => {
                let rest = Bytes::copy_from_slice(&self.header[nl + 1..]);
                self.header.clear();
                self.header_done = true;
                let _ = self.pgid.send(Some(pgid));
                if !rest.is_empty() {
                    self.stdout.put(rest, "stdout").await;
                }
            }
            None => self.header_not_found().await,
        }
    }

    /// After the channel was closed early: waits, watching over another channel, until the
    /// command's process group is gone, the connection is lost or `force` is cancelled.
    async fn wait_group_gone(&self, force: &CancellationToken) {
        let Some(pgid) = *self.pgid.borrow() else {
            return;
        };
        // `kill -s 0`: dash refuses `kill -0 -- -PGID`.
        let line = format!("while kill -s 0 -- -{pgid} 2>/dev/null; do sleep 0.2; done");
        let watch = async {
            let Ok(ch) = self.session.handle.channel_open_session().await else {
                return;
            };
            if ch.exec(true, line).await.is_err() {
                return;
            }
            let mut ch = ch;
            while let Some(msg) = ch.wait().await {
                if matches!(msg, ChannelMsg::Close) {
                    break;
                }
            }
        };
        tokio::select! {
            () = watch => {}
            () = force.cancelled() => {}
        }
    }

    async fn header_not_found(&mut self) {
        tracing::warn!(command = %self.described, target_host = %self.session.target,
            "the remote wrapper did not report a process group; cancelling cannot kill the command's children");
        self.header_done = true;
        let data = Bytes::from(std::mem::take(&mut self.header));
        self.stdout.put(data, "stdout").await;
    }

    /// Sends the exec request, reports the command's stdin to `started`, then drains the
    /// channel. `None`: the exec request failed (reported to `started`).
    pub(super) async fn start(
        mut self,
        channel: russh::Channel<russh::client::Msg>,
        line: String,
        stdin: StdinMode,
        started: oneshot::Sender<Result<Started, ConnectionError>>,
    ) -> Option<Result<ExitInfo, ConnectionError>> {
        if let Err(e) = channel.exec(true, line).await {
            let _ = started.send(Err(ConnectionError::Spawn {
                command: self.described.clone(),
                target: format!("ssh {}", self.session.target),
                source: Box::new(ChannelError::Exec(e)),
            }));
            return None;
        }
        let (read, write) = channel.split();
        let stdin = match stdin {
            StdinMode::Null => {
                let _ = write.eof().await;
                (None, None)
            }
            StdinMode::Piped => (Some(Box::pin(write.make_writer()) as BoxWriter), None),
            StdinMode::Bytes(data) => {
                (Some(Box::pin(write.make_writer()) as BoxWriter), Some(data))
            }
        };
        self.read = Some(read);
        self.write_close = Some(write);
        // Nobody may be waiting any more (the spawn was dropped): drain all the same, so
        // that the group id reaches the guard that kills the command.
        let _ = started.send(Ok(stdin));
        Some(self.run().await)
    }

    /// The next message of the channel (`None`: the channel is gone).
    async fn next_msg(&mut self) -> Option<ChannelMsg> {
        next_msg(&mut self.read).await
    }

    /// Reads the channel until the group id arrived, the channel ended or `limit` passed
    /// (a command cancelled right after its start has not reported its group yet).
    async fn await_header(&mut self, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        while !self.header_done {
            match tokio::time::timeout_at(deadline, self.next_msg()).await {
                Ok(Some(ChannelMsg::Data { data })) => self.on_stdout(data).await,
                Ok(Some(ChannelMsg::Close) | None) | Err(_) => break,
                Ok(Some(_)) => {}
            }
        }
    }

    /// Drains the channel until it ends; the command's exit, or why there is none.
    async fn run(mut self) -> Result<ExitInfo, ConnectionError> {
        let mut status: Option<ExitStatus> = None;
        let mut eof = false;
        let mut leaked = false;
        let mut leak_checked = false;
        let mut refused = false;
        let mut closed_early = false;
        let force = self.force.clone();
        let outcome = loop {
            let leak_check = status.is_some() && !eof && !leak_checked;
            tokio::select! {
                msg = next_msg(&mut self.read) => match msg {
                    Some(ChannelMsg::Data { data }) => self.on_stdout(data).await,
                    Some(ChannelMsg::ExtendedData { data, ext: 1 }) => self.stderr.put(data, "stderr").await,
                    Some(ChannelMsg::ExitStatus { exit_status }) => {
                        status = Some(ExitStatus::Code(i32::try_from(exit_status).unwrap_or(i32::MAX)));
                    }
                    Some(ChannelMsg::ExitSignal { signal_name, .. }) => {
                        status = Some(ExitStatus::Signal(signal_number(&signal_name)));
                    }
                    Some(ChannelMsg::Failure) if !self.header_done && status.is_none() => {
                        refused = true;
                    }
                    Some(ChannelMsg::Eof) => eof = true,
                    Some(ChannelMsg::Close) | None => break None,
                    Some(_) => {}
                },
                _ = tokio::time::sleep(LEAK_TIMEOUT), if leak_check => {
                    // The command ended but something it started still holds its output open.
                    // (Data still in flight on a slow link also delays the EOF: then the
                    // group is already empty, `kill` finds nobody and nothing leaked.)
                    let pgid = *self.pgid.borrow();
                    if let Some(pgid) = pgid {
                        let line = format!("kill -s KILL -- -{pgid} 2>/dev/null");
                        leaked = matches!(run_quiet(&self.session, &line).await, Ok(Some(0)));
                        if leaked {
                            tracing::warn!(command = %self.described, target_host = %self.session.target, pgid,
                                "processes outlived the remote command; killed them");
                        }
                    } else if let Some(w) = self.write_close.as_ref() {
                        leaked = true;
                        let _ = w.close().await;
                    }
                    leak_checked = true;
                }
                // Only once the group id is known: the kill guard of a spawn dropped before
                // it returned needs it, and the channel is its only source.
                () = abandoned(&self.stdout), if !closed_early && !eof && self.header_done => {
                    // Nobody reads stdout any more. Close the channel, so that the remote
                    // command's writes to its stdout fail with EPIPE as they do on a local
                    // pipe whose reader is gone (a test's control channel after `disconnect`).
                    // OpenSSH's `eow@openssh.com`, which would close stdout alone, cannot be
                    // sent with russh; closing the channel also ends the collection of stderr.
                    closed_early = true;
                    if let Some(w) = self.write_close.take() {
                        let _ = w.close().await;
                    }
                    // russh delivers nothing more for a channel we closed: the exit status is
                    // known by now or never. Without it, wait until the command is gone.
                    if status.is_none() {
                        self.wait_group_gone(&force).await;
                        if force.is_cancelled() {
                            let pgid = *self.pgid.borrow();
                            if let Some(pgid) = pgid {
                                let _ = signal_group(&self.session, pgid, "KILL").await;
                            }
                            break Some(ConnectionError::Cancelled);
                        }
                    }
                    break None;
                }
                _ = force.cancelled() => {
                    if !self.header_done {
                        self.await_header(KILL_TIMEOUT).await;
                    }
                    let pgid = *self.pgid.borrow();
                    if let Some(pgid) = pgid {
                        let _ = signal_group(&self.session, pgid, "KILL").await;
                    }
                    break Some(ConnectionError::Cancelled);
                }
            }
        };
        if !self.header_done && !self.header.is_empty() {
            self.header_not_found().await;
        }
        self.stdout.finish().await;
        self.stderr.finish().await;
        if let Some(w) = self.write_close.take() {
            let _ = w.close().await;
        }
        if let Some(err) = outcome {
            return Err(err);
        }
        match status {
            Some(status) => {
                self.shared.finished.store(true, Ordering::SeqCst);
                Ok(ExitInfo { status, leaked })
            }
            None if refused => Err(ConnectionError::Spawn {
                command: self.described.clone(),
                target: format!("ssh {}", self.session.target),
                source: Box::new(ChannelError::ExecRefused),
            }),
            None => {
                // Give the session a moment to record why it ended.
                for _ in 0..20 {
                    if self.session.is_closed() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                let reason: crate::error::BoxError = if self.session.is_closed() {
                    Box::new(self.session.end_reason())
                } else if closed_early {
                    Box::new(ChannelError::StdoutClosed)
                } else {
                    Box::new(ChannelError::NoExitStatus)
                };
                Err(ConnectionError::disconnected(
                    format!("ssh {}", self.session.target),
                    Some(format!("running `{}`", self.described)),
                    reason,
                ))
            }
        }
    }
}
