//! Drawing a run for humans: one [`Renderer`] fed by the run's [events](super::events),
//! in one of several [`Mode`]s, and the final [`SummaryTable`].
//!
//! * [`Mode::Live`] (feature `progress`): a progress bar on stderr (indicatif) with the
//!   tests running now, test results and problems printed above it. For a terminal.
//! * [`Mode::Lines`]: one line per event, for logs and pipes; optionally a statistics
//!   line every so often ([`Renderer::stats_every`]).
//! * [`Mode::Silent`]: nothing; the renderer still follows the statistics.
//!
//! The renderer never counts anything itself: every event carries the run's
//! [`RunStats`], kept by the orchestrator. It consumes the stream in its own task, so
//! it never slows the scheduler (which publishes with `try_send`), and it redraws the bar
//! at most every 100 ms. The library never picks a mode by itself; a program does (the
//! `atex` program: `Live` when stderr is a terminal, `Lines` otherwise, `Silent` with
//! `--quiet`):
//!
//! ```no_run
//! # use atex::orchestrator::AdHocOrchestrator;
//! use atex::orchestrator::render::{Mode, Renderer, SummaryTable};
//! # async fn example(mut orch: AdHocOrchestrator, scope: atex::scope::Scope) -> Result<(), Box<dyn std::error::Error>> {
//! let mode = Mode::Lines;
//! let renderer = Renderer::new(mode).stats_every(Some(std::time::Duration::from_secs(60)));
//! let display = scope.spawn("render", renderer.drive(orch.subscribe(4096)));
//! let started = std::time::Instant::now();
//! let summary = orch.run(&scope).await?;
//! let stats = display.await?;
//! assert_eq!(stats, summary.stats);
//! print!("{}", SummaryTable::new(&summary, started.elapsed()));
//! # Ok(()) }
//! ```
//!
//! Files: `line.rs` formats one event as one line, `table.rs` the summary table, `sink.rs`
//! is where output goes, `live.rs` drives the indicatif bar.

mod line;
#[cfg(feature = "progress")]
mod live;
mod sink;
mod table;

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write;
use std::time::Duration;

pub use table::SummaryTable;

use super::events::{Event, EventKind, EventStream};
use super::stats::RunStats;
use line::{Importance, event_line};
use sink::{NullSink, Sink, Status, WriterSink};

/// How a [`Renderer`] shows a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Mode {
    /// A live progress bar on stderr (indicatif), hidden when stderr is not a terminal;
    /// test results and problems are printed above it.
    #[cfg(feature = "progress")]
    Live,
    /// One line per event.
    Lines,
    /// Nothing.
    Silent,
}

/// How often the bar is redrawn at most.
#[cfg(feature = "progress")]
const REDRAW: Duration = Duration::from_millis(100);
/// How many running tests the bar names.
const RUNNING_SHOWN: usize = 3;

/// A test running now, by remote.
#[derive(Debug, Clone)]
struct Running {
    test: String,
    since: Duration,
}

/// Draws a run from its [events](super::events): see the [module docs](self).
///
/// Feed it with [`drive`](Self::drive) (which also keeps time), or event by event with
/// [`handle`](Self::handle) and [`tick`](Self::tick) (deterministic: time is what the
/// caller says, for replaying recorded runs).
pub struct Renderer {
    mode: Mode,
    sink: Box<dyn Sink>,
    stats: RunStats,
    running: BTreeMap<String, Running>,
    /// The latest time seen (event or tick), on the events' clock.
    now: Duration,
    stats_every: Option<Duration>,
    next_stats_line: Duration,
    /// The bar shows an older state.
    dirty: bool,
    events_dropped: u64,
}

impl fmt::Debug for Renderer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Renderer")
            .field("mode", &self.mode)
            .field("stats", &self.stats)
            .field("running", &self.running.len())
            .field("stats_every", &self.stats_every)
            .finish()
    }
}

impl Renderer {
    /// A renderer drawing on stderr in `mode`.
    pub fn new(mode: Mode) -> Self {
        let sink: Box<dyn Sink> = match mode {
            #[cfg(feature = "progress")]
            Mode::Live => Box::new(live::BarSink::stderr()),
            Mode::Lines => Box::new(WriterSink(std::io::stderr())),
            Mode::Silent => Box::new(NullSink),
        };
        Self::with_sink(mode, sink)
    }

    /// A renderer writing the lines of [`Mode::Lines`] to `out` (for logs to a file, and
    /// for tests). With any other mode, `out` is not used and this is [`new`](Self::new).
    pub fn with_writer(mode: Mode, out: impl Write + Send + 'static) -> Self {
        match mode {
            Mode::Lines => Self::with_sink(mode, Box::new(WriterSink(out))),
            _ => Self::new(mode),
        }
    }

    fn with_sink(mode: Mode, sink: Box<dyn Sink>) -> Self {
        Self {
            mode,
            sink,
            stats: RunStats::default(),
            running: BTreeMap::new(),
            now: Duration::ZERO,
            stats_every: None,
            next_stats_line: Duration::ZERO,
            dirty: false,
            events_dropped: 0,
        }
    }

    /// In [`Mode::Lines`], also prints the run's statistics every `period` (`None`, the
    /// default: never), so that a long quiet stretch in a log still shows progress. The
    /// first line comes one `period` after the run started. Other modes ignore it.
    pub fn stats_every(mut self, period: Option<Duration>) -> Self {
        self.stats_every = period.filter(|p| !p.is_zero());
        self.next_stats_line = self.stats_every.unwrap_or_default();
        self
    }

    /// The mode.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The run's statistics as of the last event handled.
    pub fn stats(&self) -> &RunStats {
        &self.stats
    }

    /// Takes in one event: prints its line if the mode shows it, and remembers the state
    /// for the bar (drawn at the next [`tick`](Self::tick)).
    pub fn handle(&mut self, event: &Event) {
        self.stats = event.stats;
        self.now = self.now.max(event.elapsed);
        self.dirty = true;
        match &event.kind {
            EventKind::TestStarted { test, remote, .. } => {
                let running = Running {
                    test: test.clone(),
                    since: event.elapsed,
                };
                self.running.insert(remote.clone(), running);
            }
            EventKind::TestFinished { remote, .. } => {
                self.running.remove(remote);
            }
            EventKind::RunFinished { events_dropped } => self.events_dropped = *events_dropped,
            _ => {}
        }
        if let Some((importance, text)) = event_line(event)
            && self.shows(importance)
        {
            self.sink.line(&line::stamped(event.elapsed, &text));
        }
    }

    fn has_bar(&self) -> bool {
        match self.mode {
            #[cfg(feature = "progress")]
            Mode::Live => true,
            _ => false,
        }
    }

    fn shows(&self, importance: Importance) -> bool {
        let least = match self.mode {
            #[cfg(feature = "progress")]
            Mode::Live => Some(Importance::Result),
            Mode::Lines => Some(Importance::Detail),
            Mode::Silent => None,
        };
        least.is_some_and(|least| importance >= least)
    }

    /// Lets time pass until `now` (on the events' clock: since the run started): prints
    /// the periodic statistics line when one is due and redraws the bar.
    pub fn tick(&mut self, now: Duration) {
        self.now = self.now.max(now);
        if self.mode == Mode::Lines
            && let Some(period) = self.stats_every
            && self.now >= self.next_stats_line
        {
            let text = format!("stats: {}", self.stats);
            self.sink.line(&line::stamped(self.now, &text));
            while self.next_stats_line <= self.now {
                self.next_stats_line += period;
            }
        }
        // Running tests' clocks move even when nothing happens.
        if self.has_bar() && (self.dirty || !self.running.is_empty()) {
            self.dirty = false;
            let status = self.status();
            self.sink.status(&status);
        }
    }

    /// What the bar shows now.
    fn status(&self) -> Status {
        let s = &self.stats;
        let mut message = format!("{} not passed, {} running", s.not_passed(), s.running);
        if let Some(reason) = s.cancel {
            message.push_str(&format!(", cancelling ({reason})"));
        }
        if !self.running.is_empty() {
            let mut longest: Vec<(&String, &Running)> = self.running.iter().collect();
            longest.sort_by_key(|(_, r)| r.since);
            let shown: Vec<String> = longest
                .iter()
                .take(RUNNING_SHOWN)
                .map(|(remote, r)| {
                    let secs = self.now.saturating_sub(r.since).as_secs();
                    format!("{remote}: {} {secs}s", r.test)
                })
                .collect();
            message.push_str(&format!(" [{}", shown.join("; ")));
            if longest.len() > RUNNING_SHOWN {
                message.push_str(&format!("; +{} more", longest.len() - RUNNING_SHOWN));
            }
            message.push(']');
        }
        Status {
            position: s.finished() as u64,
            length: s.tests as u64,
            message,
        }
    }

    /// Ends the display (removes the bar, flushes the lines).
    pub fn finish(&mut self) {
        self.sink.finish();
    }

    /// Consumes the stream until the run finished, keeping time for the bar and the
    /// statistics line; returns the final statistics.
    pub async fn drive(mut self, mut events: EventStream) -> RunStats {
        let period = match self.mode {
            #[cfg(feature = "progress")]
            Mode::Live => Some(REDRAW),
            Mode::Lines => self.stats_every.map(|p| p.min(Duration::from_millis(250))),
            Mode::Silent => None,
        };
        let mut ticker = period.map(|p| {
            let mut t = tokio::time::interval(p);
            t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            t
        });
        loop {
            tokio::select! {
                event = events.recv() => match event {
                    Some(event) => self.handle(&event),
                    None => break,
                },
                () = next_tick(&mut ticker) => self.tick(events.elapsed()),
            }
        }
        self.finish();
        self.stats
    }
}

/// The next tick of `ticker`; never, without one.
async fn next_tick(ticker: &mut Option<tokio::time::Interval>) {
    match ticker {
        Some(t) => {
            t.tick().await;
        }
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests;
