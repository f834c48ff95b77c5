//! Running one test after its setup, phase by phase: start the wrapper, read its control
//! channel, wait for it to exit, and after a reboot reconnect and start it again
//! (`spec/test-control.md`; the phases are named after its states).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use super::abort::{Abort, AbortCause};
use super::cleanup::{CLEANUP_TIMEOUT, kill_group, kill_guard, kill_test};
use super::control::{ControlError, ControlEvent, ControlParser};
use super::env::test_env;
use super::launch::Launch;
use super::options::FmfOptions;
use super::reporter::Reporter;
use super::test::{FmfPlan, FmfTest};
use super::workdir::wrapper_log;
use crate::connection::{
    BoxReader, CommandSpec, Connection, ConnectionExt, ErrOutput, Input, Output, Process,
};
use crate::duration::Deadline;
use crate::error::chain;
use crate::guard::CleanupGuard;
use crate::process::{ExitInfo, ExitStatus};
use crate::scope::Scope;

/// What one select round produced.
enum Wake<T> {
    Cancelled,
    Expired,
    Done(T),
}

/// What one round of reading the control channel produced: the channel's next step (`None`
/// when the drain time after the test's exit passed), or the exit of a directly started
/// test.
enum Step<C> {
    Control(Option<C>),
    Exited(Result<ExitInfo, crate::connection::ConnectionError>),
}

/// How long the control channel is held open after `disconnect` before it is closed, so
/// that the output the test printed just before it arrives.
const DISCONNECT_OUTPUT_GRACE: Duration = Duration::from_millis(500);

/// Races `fut` against cancellation of `scope` and the deadline.
async fn race<T>(scope: &Scope, deadline: &Deadline, fut: impl Future<Output = T>) -> Wake<T> {
    tokio::select! {
        biased;
        () = scope.cancelled() => Wake::Cancelled,
        () = tokio::time::sleep_until(deadline.at()) => Wake::Expired,
        out = fut => Wake::Done(out),
    }
}

/// One test on one system, as the phases of its run see it.
pub(super) struct TestRun<'a> {
    /// The connection to the system.
    pub(super) conn: &'a Arc<dyn Connection>,
    /// The executor's settings.
    pub(super) options: &'a FmfOptions,
    /// The plan (its environment).
    pub(super) plan: &'a FmfPlan,
    /// The executor's own environment variables.
    pub(super) env: &'a [(String, String)],
    /// The test.
    pub(super) test: &'a FmfTest,
    /// The work directory on the system.
    pub(super) work: &'a str,
    /// Through the wrapper, or directly.
    pub(super) launch: Launch,
}

/// One start of the test's wrapper (a reboot starts another).
struct Attempt {
    /// The wrapper.
    proc: Process,
    /// Kills the test's process group should the attempt end without the wrapper doing it
    /// (none for a test started directly: the connection kills its group).
    guard: Option<CleanupGuard>,
    /// How many times the test was started before (reboots).
    restarts: u32,
    /// A directly started test's exit, once seen.
    exited: Option<ExitInfo>,
}

/// How the control channel ended, when the test was not aborted.
struct ControlEnd {
    /// The wrapper sent `disconnect`: the system is about to go away (a reboot).
    disconnect: bool,
    /// The channel stayed open after `exitcode` until the drain time passed, and was closed.
    drained: bool,
    /// The exit code the wrapper reported.
    exit_code: Option<i32>,
}

/// How one attempt ended, when the test was not aborted.
enum AttemptEnd {
    /// The test finished with this exit code.
    Exited(i32),
    /// The test disconnected and the system went away (a reboot): start it again.
    Rebooted,
}

impl TestRun<'_> {
    /// Runs the test until it finishes (returns its exit code) or is aborted.
    pub(super) async fn execute(
        &self,
        reporter: &mut Reporter,
        budget: Duration,
        scope: &Scope,
    ) -> Result<i32, Abort> {
        let mut deadline = Deadline::new(budget);
        let mut restarts: u32 = 0;
        loop {
            let (attempt, stdout) = self.start(restarts, reporter, &deadline, scope).await?;
            let (attempt, end) = self
                .read_control(attempt, stdout, reporter, &mut deadline, scope)
                .await?;
            match self.wait_for_exit(attempt, end, &deadline, scope).await? {
                AttemptEnd::Exited(exit_code) => return Ok(exit_code),
                AttemptEnd::Rebooted => {}
            }
            self.reconnect(&deadline, scope).await?;
            restarts += 1;
        }
    }

    /// STARTING_TEST: spawns the wrapper, its stdout the control channel and the test's
    /// output going to `testout.temp`, and arms the guard that kills the test's group.
    async fn start(
        &self,
        restarts: u32,
        reporter: &mut Reporter,
        deadline: &Deadline,
        scope: &Scope,
    ) -> Result<(Attempt, BoxReader), Abort> {
        let testout = reporter.open_testout().map_err(Abort::report)?;
        let mut env = test_env(self.plan, self.env, self.test, self.work, restarts);
        let cmd = match self.launch {
            Launch::Wrapper => CommandSpec::new(self.wrapper_argv()),
            Launch::Direct => {
                // The wrapper's own files mean nothing without it.
                env.retain(|(k, _)| k != "ATEX_TEST_PGID_FILE" && k != "ATEX_WRAPPER_LOG");
                // What its `#!/bin/bash` line makes of executing it, without the execve of
                // a file just written: a process forked meanwhile by another thread may
                // still hold it open for writing (ETXTBSY).
                let script = format!("{}/test/test.sh", self.work);
                CommandSpec::new(["/bin/bash".to_owned(), script]).cwd(self.test_cwd())
            }
        };
        let cmd = cmd
            .envs(env)
            .stdin(Input::Null)
            .stdout(Output::Piped)
            .stderr(ErrOutput::File(testout));
        let mut proc = match race(scope, deadline, self.conn.spawn(cmd, scope)).await {
            Wake::Cancelled => return Err(Abort::cancelled()),
            Wake::Expired => return Err(Abort::timeout()),
            Wake::Done(Ok(proc)) => proc,
            Wake::Done(Err(e)) if self.launch == Launch::Direct && !e.is_disconnect() => {
                return Err(Abort::aborted(AbortCause::NotStarted {
                    cwd: self.test_cwd(),
                    source: e,
                }));
            }
            Wake::Done(Err(e)) => return Err(Abort::connection(e)),
        };
        // Should this future be dropped, the reaper still kills the test's group (a
        // directly started test's group goes with its process handle).
        let guard = match self.launch {
            Launch::Wrapper => Some(kill_guard(
                self.conn,
                &self.test.name,
                self.work,
                restarts,
                scope,
            )),
            Launch::Direct => None,
        };
        let Some(stdout) = proc.stdout.take() else {
            kill_test(&mut proc, guard, scope).await;
            return Err(Abort::aborted(AbortCause::NoControlPipe));
        };
        tracing::debug!(test = %self.test.name, restarts, "test started");
        let attempt = Attempt {
            proc,
            guard,
            restarts,
            exited: None,
        };
        Ok((attempt, stdout))
    }

    /// READING_CONTROL: records the results and follows the control words until the
    /// channel ends, the wrapper sends `disconnect`, or the drain time after `exitcode`
    /// passes. An aborted test is killed (unless the system was lost) before returning.
    async fn read_control(
        &self,
        mut attempt: Attempt,
        stdout: BoxReader,
        reporter: &mut Reporter,
        deadline: &mut Deadline,
        scope: &Scope,
    ) -> Result<(Attempt, ControlEnd), Abort> {
        let mut parser = ControlParser::new(stdout);
        let mut disconnect = false;
        let mut exit_code: Option<i32> = None;
        // Once the wrapper reported `exitcode` (its last message), the channel is read
        // until this instant at most: something the test left behind may hold it open.
        let mut drain_until: Option<tokio::time::Instant> = None;
        let mut drained = false;
        let ended: Result<(), Abort> = loop {
            // A directly started test reports no `exitcode`: its exit is watched here.
            let watch_exit = self.launch == Launch::Direct && attempt.exited.is_none();
            let proc = &mut attempt.proc;
            let step = async {
                let next = async {
                    match drain_until {
                        Some(at) => tokio::time::timeout_at(at, parser.next(reporter))
                            .await
                            .ok(),
                        None => Some(parser.next(reporter).await),
                    }
                };
                if !watch_exit {
                    return Step::Control(next.await);
                }
                // Control messages already written come first.
                tokio::select! {
                    biased;
                    read = next => Step::Control(read),
                    exit = proc.wait() => Step::Exited(exit),
                }
            };
            match race(scope, deadline, step).await {
                Wake::Cancelled => break Err(Abort::cancelled()),
                // The test has ended: its deadline no longer matters.
                Wake::Expired | Wake::Done(Step::Control(None)) if drain_until.is_some() => {
                    drained = true;
                    break Ok(());
                }
                Wake::Expired | Wake::Done(Step::Control(None)) => break Err(Abort::timeout()),
                // The test ended and the connection killed what it left in its group: the
                // channel ends once the messages still in it are read (or the drain time
                // passed, should a process that left the group hold it).
                Wake::Done(Step::Exited(Ok(info))) => {
                    attempt.exited = Some(info);
                    if !self.options.no_exitcode {
                        exit_code = Some(info.status.code_or_signal());
                    }
                    drain_until.get_or_insert_with(|| {
                        tokio::time::Instant::now() + self.options.exit_drain
                    });
                }
                Wake::Done(Step::Exited(Err(e))) => break Err(Abort::connection(e)),
                Wake::Done(Step::Control(Some(Ok(Some(event))))) => match event {
                    ControlEvent::Result(result) => {
                        if let Err(e) = reporter.record(result) {
                            break Err(Abort::report(e));
                        }
                    }
                    ControlEvent::ExitCode(code) => {
                        exit_code = Some(code);
                        drain_until.get_or_insert_with(|| {
                            tokio::time::Instant::now() + self.options.exit_drain
                        });
                    }
                    ControlEvent::Duration(d) => deadline.apply(d),
                    ControlEvent::Disconnect => {
                        // The test's output and its control messages travel apart (two
                        // pipes; over SSH two streams of one channel): what it printed just
                        // before `disconnect` may still be on its way, and closing the
                        // channel (which makes its later writes fail, as reboot helpers
                        // expect) would lose it. Hold the channel open briefly first; the
                        // parser reads nothing more after `disconnect`.
                        disconnect = true;
                        let grace = tokio::time::sleep(DISCONNECT_OUTPUT_GRACE);
                        match race(scope, deadline, grace).await {
                            Wake::Cancelled => break Err(Abort::cancelled()),
                            // Past the deadline the wait for the wrapper's exit times out.
                            Wake::Expired | Wake::Done(()) => break Ok(()),
                        }
                    }
                    ControlEvent::Noop => {}
                },
                Wake::Done(Step::Control(Some(Ok(None)))) => break Ok(()),
                // A directly started test that ended mid-message is the test's own doing.
                Wake::Done(Step::Control(Some(Err(e @ ControlError::UnexpectedEof { .. }))))
                    if self.launch == Launch::Direct =>
                {
                    break Err(Abort::control(e));
                }
                Wake::Done(Step::Control(Some(Err(ControlError::UnexpectedEof {
                    message,
                    parser,
                })))) => {
                    // The stream broke mid-payload: if the wrapper died, say so.
                    let abort = match race(scope, deadline, attempt.proc.wait()).await {
                        Wake::Done(Ok(info)) if !info.status.success() => {
                            Abort::aborted(AbortCause::WrapperDiedMidMessage {
                                parser,
                                rc: info.status.code_or_signal(),
                            })
                        }
                        Wake::Done(Err(e)) if e.is_disconnect() => Abort::connection(e),
                        _ => Abort::control(ControlError::UnexpectedEof { message, parser }),
                    };
                    break Err(abort);
                }
                Wake::Done(Step::Control(Some(Err(e)))) => break Err(Abort::control(e)),
            }
        };
        if let Err(abort) = ended {
            if abort.lost {
                // The system cannot be reached: the reaper kills the test's group if it
                // can, and reports it otherwise.
                drop(attempt.guard);
            } else {
                // Killed while the control channel is still open: closing it first
                // would lose the wrapper's exit status over SSH.
                kill_test(&mut attempt.proc, attempt.guard, scope).await;
            }
            return Err(abort);
        }
        // Closing the read end makes further control writes fail with EPIPE (after
        // `disconnect`, and for whatever the test left behind holding the channel).
        drop(parser);
        if drained {
            tracing::warn!(test = %self.test.name, after = ?self.options.exit_drain,
                "the control channel stayed open after the test ended (held by a process it left \
                 behind, such as a daemon that called setsid); closed it. \
                 ATEX_CONTAIN_DAEMONS=1 (FmfOptions::contain_daemons) kills such processes");
        }
        let end = ControlEnd {
            disconnect,
            drained,
            exit_code,
        };
        Ok((attempt, end))
    }

    /// WAITING_FOR_EXIT: waits for the wrapper to exit, cleans up after it, and tells how
    /// the attempt ended: the test finished, or (after `disconnect`) the system went away
    /// and the connection was closed for a reconnect.
    async fn wait_for_exit(
        &self,
        attempt: Attempt,
        end: ControlEnd,
        deadline: &Deadline,
        scope: &Scope,
    ) -> Result<AttemptEnd, Abort> {
        let Attempt {
            mut proc,
            guard,
            restarts,
            exited,
        } = attempt;
        let ControlEnd {
            disconnect,
            drained,
            exit_code,
        } = end;
        // Once the wrapper reported `exitcode`, it is about to exit: the test's deadline no
        // longer applies.
        let wait_deadline = match exit_code {
            Some(_) if deadline.remaining() < self.options.exit_drain => {
                Deadline::new(self.options.exit_drain)
            }
            _ => deadline.clone(),
        };
        let waited = match exited {
            Some(info) => Wake::Done(Ok(info)),
            None => race(scope, &wait_deadline, proc.wait()).await,
        };
        let info = match waited {
            Wake::Cancelled => {
                kill_test(&mut proc, guard, scope).await;
                return Err(Abort::cancelled());
            }
            Wake::Expired => {
                kill_test(&mut proc, guard, scope).await;
                return Err(Abort::timeout());
            }
            Wake::Done(Ok(info)) => Some(info),
            // After `disconnect` the system is expected to go away (a reboot): a
            // connection that breaks now is the reboot, not a failure.
            Wake::Done(Err(e)) if disconnect && e.is_disconnect() => {
                tracing::debug!(error = %crate::error::chain(&e), "connection lost after disconnect");
                // The system went down with the test: nothing to kill there.
                proc.forget();
                None
            }
            // We closed the channel after the wrapper's last message; its exit status
            // may then be lost (SSH). The test did finish.
            Wake::Done(Err(e)) if drained => {
                tracing::debug!(error = %chain(&e), "no exit status after closing the control channel");
                proc.forget();
                if let Some(guard) = guard {
                    guard.disarm();
                }
                return exit_code
                    .map(AttemptEnd::Exited)
                    .ok_or_else(|| Abort::aborted(AbortCause::NoExitcode));
            }
            Wake::Done(Err(e)) if e.is_disconnect() => {
                // A lost remote. The reaper kills what is left of the test if it can.
                drop(guard);
                return Err(Abort::connection(e));
            }
            Wake::Done(Err(e)) => {
                kill_test(&mut proc, guard, scope).await;
                return Err(Abort::connection(e));
            }
        };
        drop(proc);
        // A directly started test that exited: its status is its exit code.
        if self.launch == Launch::Direct
            && !disconnect
            && let Some(info) = info
        {
            let exit_code = match exit_code {
                None if !self.options.no_exitcode => Some(info.status.code_or_signal()),
                reported => reported,
            };
            return exit_code
                .map(AttemptEnd::Exited)
                .ok_or_else(|| Abort::aborted(AbortCause::NoExitcode));
        }
        match info {
            // A wrapper killed by a signal did not clean up after the test (after
            // `disconnect` the test reboots the system: leave it alone).
            Some(i) if matches!(i.status, ExitStatus::Signal(_)) && !disconnect => {
                kill_group(guard).await;
            }
            // The wrapper exited: it cleaned up the test's group itself; or the system
            // went away (reboot), after which the recorded group id means nothing.
            _ => {
                if let Some(guard) = guard {
                    guard.disarm();
                }
            }
        }
        // The wrapper's diagnostics: why it failed, or the warnings of the `pty` and
        // `pidns` modes. Not after `disconnect`: the system may be going down.
        let failed = info.is_some_and(|i| !i.status.success());
        let notes = if !disconnect && (failed || self.test.tty || self.options.contain_daemons) {
            self.wrapper_notes(restarts, scope).await
        } else {
            String::new()
        };
        let wrapper_succeeded = match self.launch {
            Launch::Wrapper => info.is_some_and(|i| i.status.success()),
            // Here only after `disconnect`: the wrapper's `exitcode` would have failed on the
            // closed channel (it then exits 3), unless it was told not to send one.
            Launch::Direct => info.is_some() && self.options.no_exitcode,
        };
        if wrapper_succeeded {
            return exit_code
                .map(AttemptEnd::Exited)
                .ok_or_else(|| Abort::aborted(AbortCause::NoExitcode));
        }
        let rc = info.map_or_else(
            || "a lost connection".to_string(),
            |i| i.status.code_or_signal().to_string(),
        );
        self.conn.disconnect().await;
        if !disconnect {
            return Err(Abort::aborted(AbortCause::WrapperExited { rc, notes }));
        }
        tracing::info!(test = %self.test.name, rc, "test disconnected (reboot); reconnecting");
        Ok(AttemptEnd::Rebooted)
    }

    /// RECONNECTING: reconnects until the deadline, pausing between failed attempts.
    async fn reconnect(&self, deadline: &Deadline, scope: &Scope) -> Result<(), Abort> {
        let mut last = None;
        loop {
            match race(scope, deadline, self.conn.reconnect(scope)).await {
                Wake::Cancelled => return Err(Abort::cancelled()),
                Wake::Expired => return Err(Abort::timeout_reconnecting(last)),
                Wake::Done(Ok(())) => return Ok(()),
                Wake::Done(Err(e)) => {
                    tracing::debug!(error = %chain(&e), "reconnect failed; retrying");
                    last = Some(e);
                    let delay = tokio::time::sleep(self.options.reconnect_delay);
                    match race(scope, deadline, delay).await {
                        Wake::Cancelled => return Err(Abort::cancelled()),
                        Wake::Expired => return Err(Abort::timeout_reconnecting(last)),
                        Wake::Done(()) => {}
                    }
                }
            }
        }
    }

    /// The test's directory in the tests tree: where it runs.
    fn test_cwd(&self) -> String {
        let cwd = format!("{}/tests", self.work);
        let source = crate::artifacts::normalize_name(&self.test.source_dir.to_string_lossy());
        if source.as_os_str().is_empty() {
            cwd
        } else {
            format!("{cwd}/{}", source.display())
        }
    }

    /// The wrapper's command line: the test script, its directory in the tests tree, and
    /// the wrapper's modes.
    fn wrapper_argv(&self) -> Vec<String> {
        let (test, work) = (self.test, self.work);
        let mut argv = vec![
            "bash".to_owned(),
            format!("{work}/test/wrapper.sh"),
            format!("{work}/test/test.sh"),
            self.test_cwd(),
        ];
        if test.tty {
            argv.push("pty".into());
        }
        if self.options.no_exitcode {
            argv.push("noexitcode".into());
        }
        if self.options.contain_daemons {
            argv.push("pidns".into());
        }
        if self.options.no_bg_kill {
            argv.push("nokill".into());
        }
        argv
    }

    /// What the wrapper of attempt `restarts` said about itself (its diagnostics never go
    /// to the test output); each line is logged as a warning. Empty when it said nothing
    /// or the log cannot be read.
    async fn wrapper_notes(&self, restarts: u32, scope: &Scope) -> String {
        let work = self.work;
        let cmd =
            CommandSpec::new(["cat", "--", &wrapper_log(work, restarts)]).stderr(ErrOutput::Null);
        let read = tokio::time::timeout(CLEANUP_TIMEOUT, self.conn.output(cmd, scope));
        let text = match read.await {
            Ok(Ok(out)) if out.status.success() => out.stdout_lossy(),
            Ok(Ok(_)) => return String::new(),
            Ok(Err(e)) => {
                tracing::debug!(error = %chain(&e), "reading the wrapper's log failed");
                return String::new();
            }
            Err(_) => return String::new(),
        };
        let lines: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        for line in &lines {
            tracing::warn!(target: "atex::executor::fmf", "{line}");
        }
        lines.join("; ")
    }
}
