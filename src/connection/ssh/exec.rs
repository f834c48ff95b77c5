//! Running commands on exec channels: the remote command line, one draining task per
//! channel, exit status and signals, and killing the remote process group.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use russh::{ChannelMsg, Sig};
use tokio::io::{AsyncRead, AsyncWriteExt, ReadBuf};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use super::session::Session;
use crate::connection::{
    BoxReader, BoxWriter, CommandSpec, ConnectionError, ErrOutput, Input, Output, Process,
    ProcessControl, shell_quote,
};
use crate::guard::CleanupGuard;
use crate::process::{ExitInfo, ExitStatus, LEAK_TIMEOUT};
use crate::scope::Scope;

/// First line the remote wrapper writes to stdout: the command's process group id.
const PGID_MARKER: &[u8] = b"ATEX-PGID ";
/// How long a kill command over a second channel may take.
const KILL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long to wait for a command to end after SIGKILL before giving up.
const AFTER_KILL_TIMEOUT: Duration = Duration::from_secs(10);

/// Builds the line sent with `exec`. The login shell runs it; the command replaces the
/// shell (`exec`), so its exit status and signal are the command's.
///
/// OpenSSH's sshd already makes the session's shell a session and process group leader;
/// when the shell is not one (another server), the command is re-run under `setsid` so
/// that it leads its own group either way. The group id is printed first so that the
/// client can signal the whole tree (`kill -- -PGID`) over another channel.
pub(crate) fn remote_command_line(cmd: &CommandSpec) -> Result<String, String> {
    if cmd.argv.is_empty() {
        return Err("empty argv".into());
    }
    let mut inner = String::from("printf 'ATEX-PGID %s\\n' \"$$\"; ");
    if let Some(dir) = &cmd.cwd {
        inner.push_str("cd ");
        inner.push_str(&shell_quote(dir));
        inner.push_str(" && ");
    }
    inner.push_str("exec ");
    if !cmd.env.is_empty() {
        inner.push_str("env ");
        for (k, v) in &cmd.env {
            if k.is_empty() || k.contains('=') || k.contains('\0') {
                return Err(format!("invalid environment variable name {k:?}"));
            }
            inner.push_str(&shell_quote(&format!("{k}={v}")));
            inner.push(' ');
        }
    }
    inner.push_str(&cmd.display());
    if matches!(cmd.stdin, Input::Null) {
        inner.push_str(" </dev/null");
    }
    if matches!(cmd.stdout, Output::Null) {
        inner.push_str(" >/dev/null");
    }
    match cmd.stderr {
        ErrOutput::Null => inner.push_str(" 2>/dev/null"),
        ErrOutput::ToStdout => inner.push_str(" 2>&1"),
        _ => {}
    }
    Ok(format!(
        "{{ read -r _atex </proc/$$/stat; }} 2>/dev/null; set -- ${{_atex##*)}}; \
         if [ \"${{3:-}}\" = \"$$\" ]; then {inner}; else exec setsid /bin/sh -c {}; fi",
        shell_quote(&inner)
    ))
}

/// Runs `line` on a fresh channel and returns its exit status (a helper for kills).
pub(crate) async fn run_quiet(session: &Session, line: &str) -> Result<Option<u32>, String> {
    let fut = async {
        let mut ch = session
            .handle
            .channel_open_session()
            .await
            .map_err(|e| e.to_string())?;
        ch.exec(true, line).await.map_err(|e| e.to_string())?;
        let mut status = None;
        while let Some(msg) = ch.wait().await {
            match msg {
                ChannelMsg::ExitStatus { exit_status } => status = Some(exit_status),
                ChannelMsg::Close => break,
                _ => {}
            }
        }
        Ok(status)
    };
    match tokio::time::timeout(KILL_TIMEOUT, fut).await {
        Ok(r) => r,
        Err(_) => Err(format!("timed out after {KILL_TIMEOUT:?}")),
    }
}

/// How long a command waits for a free channel on a server that limits channels per
/// connection before giving up.
const CHANNEL_WAIT: Duration = Duration::from_secs(600);

/// Opens a session channel for a command. A server that limits channels per connection
/// (OpenSSH's `MaxSessions`, 10 by default; it answers "connect failed") refuses the
/// channel beyond its limit: then the
/// command waits until another command's channel closes, instead of failing.
async fn open_channel(
    session: &Arc<Session>,
) -> Result<(russh::Channel<russh::client::Msg>, OpenCommand), String> {
    let deadline = tokio::time::Instant::now() + CHANNEL_WAIT;
    let mut warned = false;
    loop {
        let closed = session.command_closed.notified();
        let running = session.open_commands.load(Ordering::SeqCst);
        let limit = session.channel_limit.load(Ordering::SeqCst);
        let full = limit > 0 && running > 0 && running + 1 >= limit;
        if tokio::time::Instant::now() >= deadline {
            return Err(format!(
                "no free channel after {CHANNEL_WAIT:?}: the server allows {limit} per connection (MaxSessions)"
            ));
        }
        if full {
            let _ = tokio::time::timeout(Duration::from_secs(1), closed).await;
            continue;
        }
        let res = session.handle.channel_open_session().await;
        let running = session.open_commands.load(Ordering::SeqCst);
        match res {
            Ok(ch) => return Ok((ch, OpenCommand::new(session.clone()))),
            Err(russh::Error::ChannelOpenFailure(
                russh::ChannelOpenFailure::AdministrativelyProhibited
                | russh::ChannelOpenFailure::ResourceShortage
                | russh::ChannelOpenFailure::ConnectFailed,
            )) if running > 0 => {
                // Learn the limit; commands keep one slot free for kill requests.
                let _ = session.channel_limit.compare_exchange(
                    0,
                    running,
                    Ordering::SeqCst,
                    Ordering::SeqCst,
                );
                if !warned {
                    warned = true;
                    tracing::info!(target_host = %session.target, running,
                        "the server refused another channel (MaxSessions?); waiting for a running command to end");
                }
                let _ = tokio::time::timeout(Duration::from_secs(1), closed).await;
            }
            Err(russh::Error::ChannelOpenFailure(reason)) => {
                return Err(format!(
                    "the server refused the channel ({reason:?}; OpenSSH's MaxSessions limits channels per connection)"
                ));
            }
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// Counts a command's channel as open until dropped.
struct OpenCommand(Arc<Session>);

impl OpenCommand {
    fn new(session: Arc<Session>) -> Self {
        session.open_commands.fetch_add(1, Ordering::SeqCst);
        Self(session)
    }
}

impl Drop for OpenCommand {
    fn drop(&mut self) {
        self.0.open_commands.fetch_sub(1, Ordering::SeqCst);
        self.0.command_closed.notify_waiters();
    }
}

/// Signals the remote process group `pgid` (SIGCONT first, so a stopped group can act).
async fn signal_group(session: &Session, pgid: i32, signal: &str) -> Result<(), String> {
    // `kill -s SIG -- -PGID` is understood by dash, bash and busybox alike (dash rejects
    // `kill -SIG -- -PGID`).
    let line = format!(
        "kill -s CONT -- -{pgid} 2>/dev/null; kill -s {signal} -- -{pgid} 2>/dev/null; exit 0"
    );
    run_quiet(session, &line).await.map(|_| ())
}

fn signal_number(sig: &Sig) -> i32 {
    use nix::sys::signal::Signal;
    let s = match sig {
        Sig::ABRT => Signal::SIGABRT,
        Sig::ALRM => Signal::SIGALRM,
        Sig::FPE => Signal::SIGFPE,
        Sig::HUP => Signal::SIGHUP,
        Sig::ILL => Signal::SIGILL,
        Sig::INT => Signal::SIGINT,
        Sig::KILL => Signal::SIGKILL,
        Sig::PIPE => Signal::SIGPIPE,
        Sig::QUIT => Signal::SIGQUIT,
        Sig::SEGV => Signal::SIGSEGV,
        Sig::TERM => Signal::SIGTERM,
        Sig::USR1 => Signal::SIGUSR1,
        Sig::Custom(name) => {
            let name = name.trim_start_matches("SIG");
            match format!("SIG{name}").parse::<Signal>() {
                Ok(s) => s,
                Err(_) => return 0,
            }
        }
    };
    s as i32
}

/// A reader over chunks pushed by a draining task. The queue is unbounded on purpose: the
/// draining task must never wait for a slow reader, or every channel of the connection
/// would stall behind it. A reader that falls behind costs memory, not progress.
struct ChunkReader {
    rx: mpsc::UnboundedReceiver<Bytes>,
    current: Bytes,
}

impl AsyncRead for ChunkReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        loop {
            if !self.current.is_empty() {
                let n = self.current.len().min(buf.remaining());
                let chunk = self.current.split_to(n);
                buf.put_slice(&chunk);
                return Poll::Ready(Ok(()));
            }
            match self.rx.poll_recv(cx) {
                Poll::Ready(Some(chunk)) => self.current = chunk,
                Poll::Ready(None) => return Poll::Ready(Ok(())),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

/// Where one stream of a command goes.
enum Sink {
    Discard,
    Pipe(mpsc::UnboundedSender<Bytes>),
    /// A pipe whose reader was dropped: the rest is discarded.
    Abandoned,
    File(tokio::fs::File),
}

/// Resolves once nobody reads `sink` any more (the reader of its pipe was dropped).
/// The next message of a channel's read half (`None`: the channel is gone). A free function
/// so that the drain loop can borrow the read half and its sinks separately.
async fn next_msg(read: &mut Option<russh::ChannelReadHalf>) -> Option<ChannelMsg> {
    match read.as_mut() {
        Some(read) => read.wait().await,
        None => None,
    }
}

async fn abandoned(sink: &Sink) {
    match sink {
        Sink::Pipe(tx) => tx.closed().await,
        Sink::Abandoned => {}
        Sink::Discard | Sink::File(_) => std::future::pending().await,
    }
}

impl Sink {
    async fn put(&mut self, data: Bytes, what: &str) {
        match self {
            Sink::Discard | Sink::Abandoned => {}
            Sink::Pipe(tx) => {
                // A dropped reader means nobody wants the rest: keep draining, discard.
                if tx.send(data).is_err() {
                    *self = Sink::Abandoned;
                }
            }
            Sink::File(f) => {
                if let Err(e) = f.write_all(&data).await {
                    tracing::warn!(error = %e, stream = what, "writing command output to a file failed; discarding the rest");
                    *self = Sink::Discard;
                }
            }
        }
    }

    async fn finish(&mut self) {
        if let Sink::File(f) = self {
            let _ = f.flush().await;
        }
        *self = Sink::Discard;
    }
}

fn sink_pair(kind: SinkKind) -> (Sink, Option<BoxReader>) {
    match kind {
        SinkKind::Discard => (Sink::Discard, None),
        SinkKind::Pipe => {
            let (tx, rx) = mpsc::unbounded_channel();
            (
                Sink::Pipe(tx),
                Some(Box::pin(ChunkReader {
                    rx,
                    current: Bytes::new(),
                }) as BoxReader),
            )
        }
        SinkKind::File(f) => (Sink::File(tokio::fs::File::from_std(f)), None),
    }
}

enum SinkKind {
    Discard,
    Pipe,
    File(std::fs::File),
}

/// State shared by the draining task, the process control and the cleanup guard.
struct Shared {
    /// Set once the command ended on its own (exit status seen): nothing left to kill.
    finished: AtomicBool,
}

/// How the command's stdin is fed.
enum StdinMode {
    Null,
    Piped,
    Bytes(Vec<u8>),
}

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
pub(crate) async fn spawn(
    session: Arc<Session>,
    cmd: CommandSpec,
    scope: &Scope,
) -> Result<Process, ConnectionError> {
    let described = cmd.display();
    let target = session.target.clone();
    let line = remote_command_line(&cmd).map_err(|m| ConnectionError::Spawn {
        command: described.clone(),
        target: format!("ssh {target}"),
        source: std::io::Error::new(std::io::ErrorKind::InvalidInput, m),
    })?;
    let (channel, open) = match scope.run(open_channel(&session)).await {
        None => return Err(ConnectionError::Cancelled),
        Some(Ok(opened)) => opened,
        Some(Err(e)) => {
            if session.is_closed() {
                return Err(ConnectionError::Disconnected {
                    target: format!("ssh {target}"),
                    message: session.end_reason(),
                });
            }
            return Err(ConnectionError::Spawn {
                command: described.clone(),
                target: format!("ssh {target}"),
                source: std::io::Error::other(format!("opening a channel: {e}")),
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

    let drain = Drain {
        read: None,
        write_close: None,
        stdout: out_sink,
        stderr: err_sink,
        header: Vec::new(),
        header_done: false,
        pgid: pgid_tx,
        session: session.clone(),
        shared,
        force: scope.force_token().clone(),
        described: described.clone(),
    };
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
            return Err(ConnectionError::Disconnected {
                target: format!("ssh {target}"),
                message: format!("while starting `{described}`: the exec task ended early"),
            });
        }
    };

    let control = SshControl {
        session,
        described,
        result: result_rx,
        done: None,
        pgid: pgid_rx,
        guard: Some(guard),
    };
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
            let known = match tokio::time::timeout(KILL_TIMEOUT, pgid.wait_for(Option::is_some))
                .await
            {
                Ok(Ok(p)) => *p,
                Ok(Err(_)) => None,
                Err(_) => {
                    return Err(format!(
                        "the command did not report its process group within {KILL_TIMEOUT:?}; it may still run on {target}"
                    ));
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
                return Err(format!(
                    "the connection is gone; process group {pgid} may still run on {target}"
                ));
            }
            signal_group(&session, pgid, "KILL").await
        },
    )
}

/// What the exec task hands back to `spawn`: stdin and the bytes to feed it.
type Started = (Option<BoxWriter>, Option<Vec<u8>>);

struct Drain {
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
    async fn start(
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
                source: std::io::Error::other(format!("exec request: {e}")),
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
                        leaked = run_quiet(&self.session, &line).await == Ok(Some(0));
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
                source: std::io::Error::other("the server refused the exec request"),
            }),
            None => {
                // Give the session a moment to record why it ended.
                for _ in 0..20 {
                    if self.session.is_closed() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                let message = if self.session.is_closed() {
                    self.session.end_reason()
                } else if closed_early {
                    "its stdout was closed before it ended; exit status unknown".into()
                } else {
                    "the channel closed without an exit status".into()
                };
                Err(ConnectionError::Disconnected {
                    target: format!("ssh {}", self.session.target),
                    message: format!("while running `{}`: {message}", self.described),
                })
            }
        }
    }
}

/// [`ProcessControl`] of a remote command.
struct SshControl {
    session: Arc<Session>,
    described: String,
    result: oneshot::Receiver<Result<ExitInfo, ConnectionError>>,
    done: Option<Result<ExitInfo, String>>,
    pgid: watch::Receiver<Option<i32>>,
    guard: Option<CleanupGuard>,
}

impl std::fmt::Debug for SshControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SshControl")
            .field("target", &self.session.target)
            .field("command", &self.described)
            .field("pgid", &*self.pgid.borrow())
            .field("done", &self.done)
            .finish()
    }
}

impl SshControl {
    fn disconnected(&self, message: String) -> ConnectionError {
        ConnectionError::Disconnected {
            target: format!("ssh {}", self.session.target),
            message,
        }
    }

    fn cached(&self) -> Option<Result<ExitInfo, ConnectionError>> {
        self.done.as_ref().map(|d| match d {
            Ok(info) => Ok(*info),
            Err(m) => Err(self.disconnected(m.clone())),
        })
    }
}

#[async_trait]
impl ProcessControl for SshControl {
    fn forget(&mut self) {
        if let Some(g) = self.guard.take() {
            g.disarm();
        }
    }

    async fn wait(&mut self) -> Result<ExitInfo, ConnectionError> {
        if let Some(r) = self.cached() {
            return r;
        }
        let res = match (&mut self.result).await {
            Ok(r) => r,
            Err(_) => Err(self.disconnected("the output-draining task ended early".into())),
        };
        match &res {
            Ok(info) => {
                self.done = Some(Ok(*info));
                if let Some(g) = self.guard.take() {
                    g.disarm();
                }
            }
            Err(ConnectionError::Cancelled) => {}
            Err(e) => self.done = Some(Err(e.to_string())),
        }
        res
    }

    async fn terminate(
        &mut self,
        grace: Duration,
        force: &CancellationToken,
    ) -> Result<ExitInfo, ConnectionError> {
        if let Some(r) = self.cached() {
            return r;
        }
        // The group id arrives with the first output; a command cancelled right after the
        // start may not have reported it yet.
        let mut pgid_rx = self.pgid.clone();
        let pgid = tokio::select! {
            r = pgid_rx.wait_for(Option::is_some) => r.ok().and_then(|p| *p),
            _ = tokio::time::sleep(grace) => None,
            _ = force.cancelled() => None,
        };
        let pgid = pgid.or(*self.pgid.borrow());
        let Some(pgid) = pgid else {
            tracing::warn!(command = %self.described, target_host = %self.session.target,
                "no remote process group known; closing the channel");
            return match tokio::time::timeout(AFTER_KILL_TIMEOUT, self.wait()).await {
                Ok(r) => r,
                Err(_) => Err(ConnectionError::Timeout {
                    what: format!(
                        "terminating `{}` on {}",
                        self.described, self.session.target
                    ),
                    after: AFTER_KILL_TIMEOUT,
                }),
            };
        };
        if !force.is_cancelled() {
            if let Err(e) = signal_group(&self.session, pgid, "TERM").await {
                tracing::warn!(error = %e, pgid, "sending SIGTERM to the remote group failed");
            }
            tokio::select! {
                r = self.wait() => if !matches!(r, Err(ConnectionError::Cancelled)) { return r },
                _ = tokio::time::sleep(grace) => {}
                _ = force.cancelled() => {}
            }
        }
        if let Err(e) = signal_group(&self.session, pgid, "KILL").await {
            tracing::warn!(error = %e, pgid, "sending SIGKILL to the remote group failed");
        }
        match tokio::time::timeout(AFTER_KILL_TIMEOUT, self.wait()).await {
            Ok(r) => r,
            Err(_) => Err(ConnectionError::Timeout {
                what: format!("killing `{}` on {}", self.described, self.session.target),
                after: AFTER_KILL_TIMEOUT,
            }),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn command_line_quotes_and_redirects() {
        let cmd = CommandSpec::new(["echo", "a b", "it's"])
            .env("X", "1 2")
            .cwd("/tmp/d d")
            .stderr(ErrOutput::ToStdout);
        let line = remote_command_line(&cmd).unwrap();
        assert!(
            line.contains(
                "cd '/tmp/d d' && exec env 'X=1 2' echo 'a b' 'it'\\''s' </dev/null 2>&1"
            ),
            "{line}"
        );
        assert!(remote_command_line(&CommandSpec::new(Vec::<String>::new())).is_err());
        assert!(remote_command_line(&CommandSpec::new(["true"]).env("A=B", "c")).is_err());
    }

    #[test]
    fn command_line_runs_locally() {
        // The wrapper works in a plain POSIX shell that is not a group leader (setsid path).
        let cmd = CommandSpec::new(["sh", "-c", "echo \"$X:$PWD\""])
            .env("X", "v")
            .cwd("/");
        let line = remote_command_line(&cmd).unwrap();
        let out = std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(&line)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let mut lines = text.lines();
        assert!(lines.next().unwrap().starts_with("ATEX-PGID "));
        assert_eq!(lines.next(), Some("v:/"));
    }
}
