//! [`RunStats`]: the one set of run statistics, kept by the orchestrator (the only
//! publisher) and carried by every [event](super::events::Event) and by the
//! [summary](super::RunSummary), so that no consumer ever recounts.

use std::fmt;

use serde::Serialize;
use serde::ser::SerializeMap;

use super::reasons::CancelReason;
use crate::verdict::Verdict;

/// Final attempts per [`Verdict`]. Serialised as a map from status to count, every
/// verdict present, best first.
///
/// ```
/// use atex::orchestrator::VerdictCounts;
/// use atex::verdict::Verdict;
///
/// let mut counts = VerdictCounts::default();
/// counts.add(Verdict::Pass);
/// counts.add(Verdict::Fail);
/// counts.add(Verdict::Skip);
/// assert_eq!((counts.total(), counts.passed(), counts.not_passed()), (3, 2, 1));
/// assert_eq!(counts.get(Verdict::Fail), 1);
/// assert_eq!(counts.to_string(), "1 skip, 1 pass, 1 fail");
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct VerdictCounts([usize; Verdict::ALL.len()]);

impl VerdictCounts {
    /// Counts one more attempt with `verdict`.
    pub fn add(&mut self, verdict: Verdict) {
        self.0[verdict as usize] += 1;
    }

    /// How many attempts had `verdict`.
    pub fn get(&self, verdict: Verdict) -> usize {
        self.0[verdict as usize]
    }

    /// Every verdict with its count, best first.
    pub fn iter(&self) -> impl Iterator<Item = (Verdict, usize)> + '_ {
        Verdict::ALL.into_iter().map(|v| (v, self.get(v)))
    }

    /// All attempts counted.
    pub fn total(&self) -> usize {
        self.0.iter().sum()
    }

    /// Attempts that passed ([`Verdict::passed`]: `pass`, `info`, `skip`).
    pub fn passed(&self) -> usize {
        self.iter()
            .filter(|(v, _)| v.passed())
            .map(|(_, n)| n)
            .sum()
    }

    /// Attempts that did not pass (`warn`, `fail`, `error`, `infra`).
    pub fn not_passed(&self) -> usize {
        self.total() - self.passed()
    }
}

impl Serialize for VerdictCounts {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(Verdict::ALL.len()))?;
        for (v, n) in self.iter() {
            map.serialize_entry(v.as_str(), &n)?;
        }
        map.end()
    }
}

impl fmt::Display for VerdictCounts {
    /// The non-zero counts, best first: `3 pass, 1 fail` (`none` when empty).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for (v, n) in self.iter().filter(|(_, n)| *n > 0) {
            if !first {
                f.write_str(", ")?;
            }
            first = false;
            write!(f, "{n} {v}")?;
        }
        if first {
            f.write_str("none")?;
        }
        Ok(())
    }
}

/// What happened to the remotes of a run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize)]
#[non_exhaustive]
pub struct RemoteStats {
    /// Remotes received from provisioners so far.
    pub acquired: usize,
    /// Remotes held now (acquired and not yet released).
    pub active: usize,
    /// Remotes marked destroyed before their release, for any
    /// [`RetireReason`](super::RetireReason) (lost ones included).
    pub retired: usize,
    /// Remotes whose connection was lost during a test.
    pub lost: usize,
}

/// Statistics of a run, as of one moment.
///
/// The orchestrator updates them before it publishes each [event](super::events::Event),
/// which carries a copy ([`Event::stats`](super::events::Event::stats)): the latest event
/// a consumer read tells the state of the run, even when events were dropped before it.
/// [`RunSummary::stats`](super::RunSummary::stats) holds the final ones.
///
/// Between events, every test is in exactly one place:
/// `tests == finished() + running + queued + not_run`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize)]
#[non_exhaustive]
pub struct RunStats {
    /// Tests in the run (after de-duplication).
    pub tests: usize,
    /// The verdicts of final attempts (those not rerun).
    pub verdicts: VerdictCounts,
    /// Attempts running now.
    pub running: usize,
    /// Tests waiting for a remote (first attempts and reruns).
    pub queued: usize,
    /// Attempts that finished and were rerun (their results went to the old-results
    /// aggregator, if any).
    pub reruns: usize,
    /// Tests that will never run: the run was cancelled or aborted first.
    pub not_run: usize,
    /// Remotes acquired, held, retired, lost.
    pub remotes: RemoteStats,
    /// Remote setups (executor starts) that failed.
    pub setup_failures: usize,
    /// Ingests that failed (results that could not be recorded).
    pub ingest_errors: usize,
    /// Why the run is being cancelled, once it is (it only escalates).
    pub cancel: Option<CancelReason>,
}

impl RunStats {
    /// Adds `other`'s counts to these (for one view of several runs at once, such as the
    /// platforms of `atex run --run-file`); the cancel reason is kept, or taken from
    /// `other` when there is none.
    pub fn merge(&mut self, other: &RunStats) {
        self.tests += other.tests;
        for (i, n) in other.verdicts.0.iter().enumerate() {
            self.verdicts.0[i] += n;
        }
        self.running += other.running;
        self.queued += other.queued;
        self.reruns += other.reruns;
        self.not_run += other.not_run;
        self.remotes.acquired += other.remotes.acquired;
        self.remotes.active += other.remotes.active;
        self.remotes.retired += other.remotes.retired;
        self.remotes.lost += other.remotes.lost;
        self.setup_failures += other.setup_failures;
        self.ingest_errors += other.ingest_errors;
        self.cancel = self.cancel.or(other.cancel);
    }

    /// Tests whose final attempt finished (the sum of [`verdicts`](Self::verdicts)).
    pub fn finished(&self) -> usize {
        self.verdicts.total()
    }

    /// Tests whose final attempt passed.
    pub fn passed(&self) -> usize {
        self.verdicts.passed()
    }

    /// Tests whose final attempt did not pass.
    pub fn not_passed(&self) -> usize {
        self.verdicts.not_passed()
    }

    /// Whether the run is being (or was) cancelled.
    pub fn cancelled(&self) -> bool {
        self.cancel.is_some()
    }
}

impl fmt::Display for RunStats {
    /// One line for humans:
    /// `3/10 done: 2 passed, 1 not passed (1 fail); 2 running, 5 queued, 1 rerun; 2 remotes`,
    /// with retired/lost remotes, setup failures, ingest errors, tests not run and the
    /// cancel reason added when there are any.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{} done: {} passed, {} not passed",
            self.finished(),
            self.tests,
            self.passed(),
            self.not_passed()
        )?;
        let mut bad = VerdictCounts::default();
        for (v, n) in self.verdicts.iter().filter(|(v, _)| !v.passed()) {
            bad.0[v as usize] = n;
        }
        if bad.total() > 0 {
            write!(f, " ({bad})")?;
        }
        write!(
            f,
            "; {} running, {} queued, {} reruns",
            self.running, self.queued, self.reruns
        )?;
        if self.not_run > 0 {
            write!(f, ", {} not run", self.not_run)?;
        }
        write!(f, "; {} remotes", self.remotes.active)?;
        if self.remotes.retired > 0 {
            write!(f, ", {} retired", self.remotes.retired)?;
            if self.remotes.lost > 0 {
                write!(f, " ({} lost)", self.remotes.lost)?;
            }
        }
        if self.setup_failures > 0 {
            write!(f, ", {} failed setups", self.setup_failures)?;
        }
        if self.ingest_errors > 0 {
            write!(f, "; {} results not recorded", self.ingest_errors)?;
        }
        if let Some(reason) = self.cancel {
            write!(f, "; cancelled ({reason})")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merged_stats_add_every_count() {
        let mut a = RunStats {
            tests: 3,
            running: 1,
            ..RunStats::default()
        };
        a.verdicts.add(Verdict::Pass);
        a.remotes.active = 2;
        let mut b = RunStats {
            tests: 2,
            queued: 1,
            cancel: Some(CancelReason::Interrupt),
            ..RunStats::default()
        };
        b.verdicts.add(Verdict::Fail);
        b.verdicts.add(Verdict::Pass);
        b.remotes.active = 1;
        a.merge(&b);
        assert_eq!((a.tests, a.running, a.queued), (5, 1, 1));
        assert_eq!((a.finished(), a.passed(), a.remotes.active), (3, 2, 3));
        assert_eq!(a.cancel, Some(CancelReason::Interrupt));
    }

    #[test]
    fn verdict_counts_cover_every_verdict() {
        let mut c = VerdictCounts::default();
        for v in Verdict::ALL {
            c.add(v);
        }
        assert_eq!((c.total(), c.passed(), c.not_passed()), (7, 3, 4));
        let json = serde_json::to_string(&c).unwrap_or_default();
        assert_eq!(
            json,
            r#"{"skip":1,"info":1,"pass":1,"warn":1,"fail":1,"error":1,"infra":1}"#
        );
    }

    #[test]
    fn stats_line() {
        let mut s = RunStats {
            tests: 10,
            running: 2,
            queued: 4,
            reruns: 1,
            ..RunStats::default()
        };
        s.verdicts.add(Verdict::Pass);
        s.verdicts.add(Verdict::Pass);
        s.verdicts.add(Verdict::Fail);
        s.verdicts.add(Verdict::Infra);
        s.remotes.active = 2;
        assert_eq!(
            s.to_string(),
            "4/10 done: 2 passed, 2 not passed (1 fail, 1 infra); 2 running, 4 queued, 1 reruns; 2 remotes"
        );
        s.remotes.retired = 2;
        s.remotes.lost = 1;
        s.setup_failures = 3;
        s.ingest_errors = 1;
        s.not_run = 2;
        s.cancel = Some(CancelReason::Interrupt);
        assert_eq!(
            s.to_string(),
            "4/10 done: 2 passed, 2 not passed (1 fail, 1 infra); 2 running, 4 queued, 1 reruns, \
             2 not run; 2 remotes, 2 retired (1 lost), 3 failed setups; 1 results not recorded; \
             cancelled (interrupt)"
        );
    }
}
