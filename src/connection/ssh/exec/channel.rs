//! Channel plumbing on one session: opening a command's channel under the server's
//! channel limit, one-shot commands on a fresh channel, and signalling a remote process
//! group.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use russh::{ChannelMsg, Sig};

use crate::connection::ssh::session::Session;

/// How long a kill command over a second channel may take.
pub(super) const KILL_TIMEOUT: Duration = Duration::from_secs(10);

/// What went wrong with a channel of the session: the source of the
/// [`ConnectionError`](crate::connection::ConnectionError)s of commands and transfers.
#[derive(Debug, thiserror::Error)]
pub(in crate::connection::ssh) enum ChannelError {
    /// Opening the channel failed.
    #[error("opening a channel")]
    Open(#[source] russh::Error),
    /// The server refused the channel.
    #[error(
        "the server refused the channel ({0:?}; OpenSSH's MaxSessions limits channels per connection)"
    )]
    Refused(russh::ChannelOpenFailure),
    /// No channel became free in time on a server that limits them.
    #[error(
        "no free channel after {after:?}: the server allows {limit} per connection (MaxSessions)"
    )]
    NoFreeChannel {
        /// How long the command waited.
        after: Duration,
        /// The limit learned from the server.
        limit: usize,
    },
    /// Sending the exec request failed.
    #[error("sending the exec request")]
    Exec(#[source] russh::Error),
    /// The server refused the exec request.
    #[error("the server refused the exec request")]
    ExecRefused,
    /// A helper command (a kill, a probe) did not end in time.
    #[error("no answer within {0:?}")]
    TimedOut(Duration),
    /// The command cannot be sent (see [`CommandSpec::invalid`](crate::connection::CommandSpec::invalid)).
    #[error("invalid command: {0}")]
    InvalidCommand(String),
    /// The task draining the channel ended before it reported.
    #[error("the exec task ended early")]
    TaskEnded,
    /// Nobody read the command's stdout, so its channel was closed before the exit status.
    #[error("its stdout was closed before it ended; exit status unknown")]
    StdoutClosed,
    /// The channel closed without an exit status.
    #[error("the channel closed without an exit status")]
    NoExitStatus,
    /// Waiting again for a command whose first wait failed (with another error).
    #[error("the command failed before (the first wait returned why)")]
    FailedBefore,
    /// A killed command's process group id never arrived.
    #[error(
        "the command did not report its process group within {after:?}; it may still run on {target}"
    )]
    NoGroupId {
        /// How long the kill waited for the id.
        after: Duration,
        /// The session's target.
        target: String,
    },
    /// The session went away before a process group could be killed.
    #[error("the connection is gone; process group {pgid} may still run on {target}")]
    GoneBeforeKill {
        /// The group that may still run.
        pgid: i32,
        /// The session's target.
        target: String,
    },
}

/// Runs `line` on a fresh channel and returns its exit status (a helper for kills).
pub(in crate::connection::ssh) async fn run_quiet(
    session: &Session,
    line: &str,
) -> Result<Option<u32>, ChannelError> {
    let fut = async {
        let mut ch = session
            .handle
            .channel_open_session()
            .await
            .map_err(ChannelError::Open)?;
        ch.exec(true, line).await.map_err(ChannelError::Exec)?;
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
        Err(_) => Err(ChannelError::TimedOut(KILL_TIMEOUT)),
    }
}

/// How long a command waits for a free channel on a server that limits channels per
/// connection before giving up.
const CHANNEL_WAIT: Duration = Duration::from_secs(600);

/// Opens a session channel for a command. A server that limits channels per connection
/// (OpenSSH's `MaxSessions`, 10 by default; it answers "connect failed") refuses the
/// channel beyond its limit: then the
/// command waits until another command's channel closes, instead of failing.
pub(super) async fn open_channel(
    session: &Arc<Session>,
) -> Result<(russh::Channel<russh::client::Msg>, OpenCommand), ChannelError> {
    let deadline = tokio::time::Instant::now() + CHANNEL_WAIT;
    let mut warned = false;
    loop {
        let closed = session.command_closed.notified();
        let running = session.open_commands.load(Ordering::SeqCst);
        let limit = session.channel_limit.load(Ordering::SeqCst);
        let full = limit > 0 && running > 0 && running + 1 >= limit;
        if tokio::time::Instant::now() >= deadline {
            return Err(ChannelError::NoFreeChannel {
                after: CHANNEL_WAIT,
                limit,
            });
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
                return Err(ChannelError::Refused(reason));
            }
            Err(e) => return Err(ChannelError::Open(e)),
        }
    }
}

/// Counts a command's channel as open until dropped.
pub(super) struct OpenCommand(Arc<Session>);

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
pub(super) async fn signal_group(
    session: &Session,
    pgid: i32,
    signal: &str,
) -> Result<(), ChannelError> {
    // `kill -s SIG -- -PGID` is understood by dash, bash and busybox alike (dash rejects
    // `kill -SIG -- -PGID`).
    let line = format!(
        "kill -s CONT -- -{pgid} 2>/dev/null; kill -s {signal} -- -{pgid} 2>/dev/null; exit 0"
    );
    run_quiet(session, &line).await.map(|_| ())
}

/// The number of a signal named in an `exit-signal` message (0 when unknown).
pub(super) fn signal_number(sig: &Sig) -> i32 {
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
