//! Where a renderer's output goes: lines, and the live bar's status.

use std::io::Write;

/// What the live bar shows at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Status {
    /// Tests finished.
    pub(super) position: u64,
    /// Tests in the run.
    pub(super) length: u64,
    /// The text next to the bar.
    pub(super) message: String,
}

/// Where a renderer's output goes.
pub(super) trait Sink: Send {
    /// A line that stays (above the bar when there is one).
    fn line(&mut self, line: &str);
    /// Redraws the bar.
    fn status(&mut self, _status: &Status) {}
    /// The run is over: remove the bar.
    fn finish(&mut self) {}
}

/// Lines to a writer.
pub(super) struct WriterSink<W>(pub(super) W);

impl<W: Write + Send> Sink for WriterSink<W> {
    fn line(&mut self, line: &str) {
        // A closed stderr is no reason to disturb the run.
        let _ = writeln!(self.0, "{line}");
    }

    fn finish(&mut self) {
        let _ = self.0.flush();
    }
}

/// Discards everything.
pub(super) struct NullSink;

impl Sink for NullSink {
    fn line(&mut self, _line: &str) {}
}
