//! The live bar of [`Mode::Live`](super::Mode::Live): indicatif on stderr.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::sink::{Sink, Status};

/// An indicatif bar; lines go above it.
pub(super) struct BarSink {
    bar: ProgressBar,
}

impl BarSink {
    /// A bar on stderr, hidden when stderr is not a terminal.
    pub(super) fn stderr() -> Self {
        Self::with_target(ProgressDrawTarget::stderr())
    }

    pub(super) fn with_target(target: ProgressDrawTarget) -> Self {
        let bar = ProgressBar::with_draw_target(Some(0), target);
        let style = ProgressStyle::with_template(
            "{elapsed_precise} [{bar:30}] {pos}/{len} tests, {msg} (ETA {eta})",
        )
        .map(|s| s.progress_chars("=> "))
        .unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style);
        bar.set_message("starting");
        // Keeps the clock moving between redraws; indicatif limits its own drawing rate.
        bar.enable_steady_tick(Duration::from_millis(500));
        Self { bar }
    }
}

impl Sink for BarSink {
    fn line(&mut self, line: &str) {
        self.bar.println(line);
    }

    fn status(&mut self, status: &Status) {
        self.bar.set_length(status.length);
        self.bar.set_position(status.position);
        self.bar.set_message(status.message.clone());
    }

    fn finish(&mut self) {
        self.bar.finish_and_clear();
    }
}
