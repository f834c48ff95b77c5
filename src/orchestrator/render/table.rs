//! [`SummaryTable`]: the table printed when a run is over.

use std::fmt;
use std::time::Duration;

use crate::orchestrator::RunSummary;

/// Width of the test-name column.
const NAME: usize = 60;

/// The final table of a run: one row per test (final attempts, then tests not run), the
/// totals from the run's [`RunStats`](crate::orchestrator::RunStats), then why tests did
/// not run to the end, retired remotes, failed setups and results not recorded.
///
/// ```
/// use std::time::Duration;
/// use atex::orchestrator::render::SummaryTable;
/// use atex::orchestrator::{RunSummary, TestReport};
/// use atex::verdict::Verdict;
///
/// let mut summary = RunSummary::default();
/// summary.tests.push(TestReport {
///     name: "/a".into(), verdict: Verdict::Pass, exit_code: Some(0), error: None,
///     duration: Duration::from_millis(1500), ingested: true,
/// });
/// summary.stats.tests = 1;
/// summary.stats.verdicts.add(Verdict::Pass);
/// let table = SummaryTable::new(&summary, Duration::from_secs(2)).to_string();
/// assert!(table.contains("1 tests in 2.00s: 1 passed, 0 not passed, 0 not run, 0 reruns"));
/// ```
#[derive(Debug, Clone, Copy)]
pub struct SummaryTable<'a> {
    summary: &'a RunSummary,
    elapsed: Duration,
}

impl<'a> SummaryTable<'a> {
    /// The table of `summary`, for a run that took `elapsed`.
    pub fn new(summary: &'a RunSummary, elapsed: Duration) -> Self {
        Self { summary, elapsed }
    }
}

impl fmt::Display for SummaryTable<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.summary;
        let stats = &s.stats;
        writeln!(f)?;
        writeln!(
            f,
            "{:<NAME$} {:>8} {:>5} {:>9}",
            "test", "result", "exit", "duration"
        )?;
        for t in &s.tests {
            let exit = t
                .exit_code
                .map_or_else(|| "-".to_string(), |c| c.to_string());
            writeln!(
                f,
                "{:<NAME$} {:>8} {:>5} {:>8.2}s",
                t.name,
                t.verdict,
                exit,
                t.duration.as_secs_f64()
            )?;
        }
        for name in &s.not_run {
            writeln!(f, "{:<NAME$} {:>8} {:>5} {:>9}", name, "not run", "-", "-")?;
        }
        writeln!(
            f,
            "\n{} tests in {:.2}s: {} passed, {} not passed, {} not run, {} reruns",
            stats.tests,
            self.elapsed.as_secs_f64(),
            stats.passed(),
            stats.not_passed(),
            stats.not_run,
            stats.reruns
        )?;
        if stats.finished() > 0 {
            writeln!(f, "verdicts: {}", stats.verdicts)?;
        }
        let r = &stats.remotes;
        if r.retired > 0 || stats.setup_failures > 0 {
            writeln!(
                f,
                "remotes: {} acquired, {} retired ({} lost), {} failed setups",
                r.acquired, r.retired, r.lost, stats.setup_failures
            )?;
        }
        if let Some(reason) = stats.cancel {
            writeln!(f, "cancelled ({reason})")?;
        }
        for t in &s.tests {
            if let Some(e) = &t.error {
                writeln!(f, "  {}: {e}", t.name)?;
            }
        }
        for r in &s.retired {
            writeln!(f, "{r}")?;
        }
        for e in s.setup_errors.iter().chain(&s.ingest_errors) {
            writeln!(f, "  {e}")?;
        }
        if s.events_dropped > 0 {
            writeln!(
                f,
                "{} progress events dropped (the display was too slow)",
                s.events_dropped
            )?;
        }
        Ok(())
    }
}
