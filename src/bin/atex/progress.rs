//! Progress of `atex run`: a live display on a terminal, one line per event otherwise.

use std::collections::BTreeMap;
use std::io::IsTerminal as _;
use std::time::{Duration, Instant};

use atex::orchestrator::RetiredRemote;
use atex::orchestrator::events::{Event, EventKind, EventStream};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Consumes the orchestrator's events until the stream ends.
pub async fn follow(mut events: EventStream, total: usize, quiet: bool) {
    let live = !quiet && std::io::stderr().is_terminal();
    let mut view = View::new(total, live);
    while let Some(event) = events.recv().await {
        view.handle(&event, quiet);
    }
    view.finish();
}

struct View {
    bar: Option<ProgressBar>,
    done: usize,
    failed: usize,
    running: BTreeMap<String, (String, Instant)>,
}

impl View {
    fn new(total: usize, live: bool) -> Self {
        let bar = live.then(|| {
            let bar =
                ProgressBar::with_draw_target(Some(total as u64), ProgressDrawTarget::stderr());
            let style = ProgressStyle::with_template(
                "{elapsed_precise} [{bar:30}] {pos}/{len} tests, {msg} (ETA {eta})",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
            bar.set_style(style);
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        Self {
            bar,
            done: 0,
            failed: 0,
            running: BTreeMap::new(),
        }
    }

    fn println(&self, line: String) {
        match &self.bar {
            Some(bar) => bar.println(line),
            None => eprintln!("{line}"),
        }
    }

    fn refresh(&self) {
        if let Some(bar) = &self.bar {
            bar.set_position(self.done as u64);
            let running: Vec<String> = self
                .running
                .iter()
                .map(|(remote, (test, since))| {
                    format!("{remote}: {test} {}s", since.elapsed().as_secs())
                })
                .collect();
            bar.set_message(format!(
                "{} failed, {} running{}",
                self.failed,
                running.len(),
                if running.is_empty() {
                    String::new()
                } else {
                    format!(" [{}]", running.join("; "))
                }
            ));
        }
    }

    fn handle(&mut self, event: &Event, quiet: bool) {
        let t = event.elapsed.as_secs_f64();
        let line = match &event.kind {
            EventKind::RunStarted { tests, .. } => {
                Some(format!("[{t:8.2}] run started: {tests} tests"))
            }
            EventKind::RemoteAcquired {
                remote,
                provisioner,
            } => Some(format!(
                "[{t:8.2}] remote {remote} acquired from {provisioner}"
            )),
            EventKind::SetupFailed { remote, error } => {
                Some(format!("[{t:8.2}] setup of {remote} failed: {error}"))
            }
            EventKind::RemoteLost {
                remote,
                test,
                error,
            } => Some(format!(
                "[{t:8.2}] remote {remote} lost during {test}: {error}"
            )),
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
                Some(format!("[{t:8.2}] {retired}"))
            }
            EventKind::RemoteReleased { remote, reason } => {
                Some(format!("[{t:8.2}] remote {remote} released ({reason})"))
            }
            EventKind::TestStarted {
                test,
                remote,
                attempt,
            } => {
                self.running
                    .insert(remote.clone(), (test.clone(), Instant::now()));
                (self.bar.is_none()).then(|| {
                    let again = if *attempt > 0 {
                        format!(" (rerun {attempt})")
                    } else {
                        String::new()
                    };
                    format!("[{t:8.2}] start  {test} on {remote}{again}")
                })
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
                self.running.remove(remote);
                if !rerun {
                    self.done += 1;
                    if !verdict.passed() {
                        self.failed += 1;
                    }
                }
                let why = match (error, exit_code) {
                    (Some(e), _) => format!(" ({e})"),
                    (None, Some(code)) if *code != 0 => format!(" (exit code {code})"),
                    _ => String::new(),
                };
                let rerun = if *rerun { ", will be rerun" } else { "" };
                Some(format!(
                    "[{t:8.2}] {verdict:<6} {test} on {remote} in {:.2}s{why}{rerun}",
                    duration.as_secs_f64()
                ))
            }
            EventKind::TestIngested {
                test,
                error: Some(error),
                ..
            } => Some(format!("[{t:8.2}] results of {test} not recorded: {error}")),
            EventKind::CancelBegun => Some(format!("[{t:8.2}] cancelling: stopping running tests")),
            _ => None,
        };
        if let Some(line) = line
            && !quiet
        {
            self.println(line);
        }
        self.refresh();
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
