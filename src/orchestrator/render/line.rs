//! One event as one line of text.

use std::time::Duration;

use crate::orchestrator::RetiredRemote;
use crate::orchestrator::events::{Event, EventKind};

/// How much a line matters: the live bar shows `Result` and above above itself, the
/// line mode shows everything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Importance {
    /// What the scheduler did (a test started, a remote arrived or left).
    Detail,
    /// A test attempt's result.
    Result,
    /// Something went wrong, or the run is being cancelled.
    Notice,
}

/// `[   12.34] text`: the time since the run started, then the text.
pub(super) fn stamped(elapsed: Duration, text: &str) -> String {
    format!("[{:8.2}] {text}", elapsed.as_secs_f64())
}

/// The line of `event`, if it has one.
pub(super) fn event_line(event: &Event) -> Option<(Importance, String)> {
    use Importance::{Detail, Notice, Result};
    let line = match &event.kind {
        EventKind::RunStarted {
            tests,
            provisioners,
            max_remotes,
        } => {
            let limit = max_remotes.map_or_else(String::new, |m| format!(", at most {m} remotes"));
            (
                Detail,
                format!("run started: {tests} tests, {provisioners} provisioners{limit}"),
            )
        }
        EventKind::RemoteRequested { provisioner, count } => (
            Detail,
            format!("requested {count} remotes from {provisioner}"),
        ),
        EventKind::RemoteAcquired {
            remote,
            provisioner,
        } => (
            Detail,
            format!("remote {remote} acquired from {provisioner}"),
        ),
        EventKind::RemoteReady { remote } => (Detail, format!("remote {remote} ready")),
        EventKind::SetupFailed { remote, error } => {
            (Notice, format!("setup of {remote} failed: {error}"))
        }
        EventKind::RemoteReleased { remote, reason } => {
            (Detail, format!("remote {remote} released ({reason})"))
        }
        EventKind::RemoteRetired {
            remote,
            test,
            reason,
        } => {
            let retired = RetiredRemote {
                remote: remote.clone(),
                test: test.clone(),
                reason: *reason,
            };
            (Notice, retired.to_string())
        }
        EventKind::RemoteLost {
            remote,
            test,
            error,
        } => (
            Notice,
            format!("remote {remote} lost during {test}: {error}"),
        ),
        EventKind::TestStarted {
            test,
            remote,
            attempt,
        } => {
            let again = if *attempt > 0 {
                format!(" (rerun {attempt})")
            } else {
                String::new()
            };
            (Detail, format!("start  {test} on {remote}{again}"))
        }
        EventKind::TestFinished {
            test,
            remote,
            verdict,
            exit_code,
            error,
            duration,
            rerun,
        } => {
            let why = match (error, exit_code) {
                (Some(e), _) => format!(" ({e})"),
                (None, Some(code)) if *code != 0 => format!(" (exit code {code})"),
                _ => String::new(),
            };
            let rerun = if *rerun { ", will be rerun" } else { "" };
            (
                Result,
                format!(
                    "{verdict:<6} {test} on {remote} in {:.2}s{why}{rerun}",
                    duration.as_secs_f64()
                ),
            )
        }
        EventKind::RerunScheduled { .. } => return None,
        EventKind::TestIngested {
            test,
            error: Some(error),
            ..
        } => (Notice, format!("results of {test} not recorded: {error}")),
        EventKind::TestIngested { error: None, .. } => return None,
        EventKind::CancelBegun { reason } => (
            Notice,
            format!("cancelling ({reason}): {}", reason.describe()),
        ),
        EventKind::RunFinished { events_dropped } => {
            let dropped = if *events_dropped > 0 {
                format!(" ({events_dropped} events dropped)")
            } else {
                String::new()
            };
            (Detail, format!("run finished: {}{dropped}", event.stats))
        }
    };
    Some(line)
}
