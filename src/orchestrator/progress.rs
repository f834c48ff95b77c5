//! A terminal progress bar driven by run [events](super::events) (feature `progress`).
//!
//! The library never prints by itself; this renderer is opt-in. It draws on stderr and
//! hides itself when stderr is not a terminal.
//!
//! ```no_run
//! # use atex::orchestrator::AdHocOrchestrator;
//! # use atex::orchestrator::progress::ProgressRenderer;
//! # async fn example(mut orch: AdHocOrchestrator, scope: atex::scope::Scope) -> Result<(), Box<dyn std::error::Error>> {
//! let events = orch.subscribe(4096);
//! let progress = tokio::spawn(ProgressRenderer::new().drive(events));
//! let summary = orch.run(&scope).await?;
//! let tally = progress.await?;
//! eprintln!("{}", tally.line());
//! # Ok(()) }
//! ```

use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::events::{Event, EventKind, EventStream, RunTally};

/// Draws a progress bar from a run's events.
#[derive(Debug)]
pub struct ProgressRenderer {
    bar: ProgressBar,
    tally: RunTally,
}

impl Default for ProgressRenderer {
    fn default() -> Self {
        Self::new()
    }
}

impl ProgressRenderer {
    /// A renderer drawing on stderr (hidden when stderr is not a terminal).
    pub fn new() -> Self {
        Self::with_target(ProgressDrawTarget::stderr())
    }

    /// A renderer that draws nothing but still keeps the tally.
    pub fn hidden() -> Self {
        Self::with_target(ProgressDrawTarget::hidden())
    }

    fn with_target(target: ProgressDrawTarget) -> Self {
        let bar = ProgressBar::with_draw_target(Some(0), target);
        let style = ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} {msg}")
            .map(|s| s.progress_chars("=> "))
            .unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style);
        Self {
            bar,
            tally: RunTally::default(),
        }
    }

    /// The totals so far.
    pub fn tally(&self) -> &RunTally {
        &self.tally
    }

    /// Updates the bar with one event. Tests that did not pass and retired remotes are
    /// printed above the bar.
    pub fn handle(&mut self, event: &Event) {
        self.tally.apply(&event.kind);
        match &event.kind {
            EventKind::RunStarted { tests, .. } => {
                self.bar.set_length(*tests as u64);
                self.bar.enable_steady_tick(Duration::from_millis(200));
            }
            EventKind::TestFinished {
                test,
                verdict,
                rerun: false,
                ..
            } if !verdict.passed() => {
                self.bar.println(format!("{verdict}: {test}"));
            }
            EventKind::RemoteRetired {
                remote,
                test,
                reason,
            } => {
                let retired = super::RetiredRemote {
                    remote: remote.clone(),
                    test: test.clone(),
                    reason: *reason,
                };
                self.bar.println(retired.to_string());
            }
            EventKind::RunFinished { .. } => self.bar.finish(),
            _ => {}
        }
        self.bar.set_position(self.tally.done() as u64);
        self.bar.set_message(format!(
            "{} failed, {} errors, {} running on {} remotes{}",
            self.tally.failed,
            self.tally.errors,
            self.tally.running,
            self.tally.remotes,
            if self.tally.cancelling {
                ", cancelling"
            } else {
                ""
            }
        ));
    }

    /// Consumes the stream until the run finished; returns the final tally.
    pub async fn drive(mut self, mut events: EventStream) -> RunTally {
        while let Some(event) = events.recv().await {
            self.handle(&event);
        }
        self.bar.finish();
        self.tally
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::orchestrator::events::event_channel;
    use crate::verdict::Verdict;

    #[tokio::test]
    async fn hidden_renderer_tallies() {
        let (tx, rx) = event_channel(16);
        tx.emit(EventKind::RunStarted {
            tests: 1,
            provisioners: 1,
            max_remotes: None,
        });
        tx.emit(EventKind::TestFinished {
            test: "/a".into(),
            remote: "r".into(),
            verdict: Verdict::Fail,
            exit_code: Some(0),
            error: None,
            duration: Duration::ZERO,
            rerun: false,
        });
        drop(tx);
        let tally = ProgressRenderer::hidden().drive(rx).await;
        assert_eq!((tally.failed, tally.total), (1, 1));
    }
}
