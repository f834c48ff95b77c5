//! Synthetic benchmark workloads: the test lists of the scheduling-overhead benchmarks.
//!
//! Every implementation generates exactly the same tests for the same parameters (test
//! names, nominal durations, shell scripts), so runs are comparable:
//!
//! * test `i` is named `/t` + `i` zero-padded to at least 5 digits;
//! * `noop`: 0 ms, `true`; `sleep-uniform`: 50 ms, `sleep 0.050`;
//! * `sleep-skewed`: one [`SplitMix64`] output `x` per test, `r = x mod 1000`:
//!   50 ms if `r < 900`, 250 ms if `r < 980`, else 2000 ms; the script is `sleep S.mmm`;
//! * `sleep-long` (the scale workload, not in the shared spec): one [`SplitMix64`] output
//!   `x` per test, `500 + x mod 1501` ms, i.e. 0.5–2 s uniformly; the script is `sleep S.mmm`.
//!
//! ```
//! use atex::testing::workload::{Kind, Workload};
//!
//! let w = Workload::generate(Kind::SleepSkewed, 100, 1);
//! assert_eq!(w.tests[77].name, "/t00077");
//! assert_eq!(w.tests[77].duration_ms, 2000);
//! assert_eq!(w.tests[77].script, "sleep 2.000");
//! assert_eq!(w.sum_ms(), 8550);
//! assert_eq!(w.greedy_makespan_ms(4, w.tests.iter()), 3250);
//! ```

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fmt::Write as _;
use std::path::Path;
use std::str::FromStr;

/// The SplitMix64 generator (wrapping 64-bit arithmetic).
#[derive(Debug, Clone)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A generator whose state starts at `seed`.
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// The next output.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// The workload kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Every test is `true` (0 ms).
    Noop,
    /// Every test sleeps 50 ms.
    SleepUniform,
    /// 90 % 50 ms, 8 % 250 ms, 2 % 2000 ms, from a seeded SplitMix64 stream.
    SleepSkewed,
    /// 0.5–2 s uniformly (`500 + x mod 1501` ms), from a seeded SplitMix64 stream.
    SleepLong,
}

impl FromStr for Kind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "noop" => Ok(Kind::Noop),
            "sleep-uniform" => Ok(Kind::SleepUniform),
            "sleep-skewed" => Ok(Kind::SleepSkewed),
            "sleep-long" => Ok(Kind::SleepLong),
            other => Err(format!(
                "unknown workload '{other}' (expected noop, sleep-uniform, sleep-skewed or \
                 sleep-long)"
            )),
        }
    }
}

impl Kind {
    /// The name used on command lines and in reports.
    pub fn as_str(&self) -> &'static str {
        match self {
            Kind::Noop => "noop",
            Kind::SleepUniform => "sleep-uniform",
            Kind::SleepSkewed => "sleep-skewed",
            Kind::SleepLong => "sleep-long",
        }
    }
}

/// One synthetic test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkloadTest {
    /// `/t00000`, `/t00001`, …
    pub name: String,
    /// Nominal duration in milliseconds.
    pub duration_ms: u64,
    /// The shell script (run as `bash -c <script>`; also the FMF `test:` value).
    pub script: String,
}

/// A generated test list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workload {
    /// The kind.
    pub kind: Kind,
    /// The seed (used by `sleep-skewed` and `sleep-long`).
    pub seed: u64,
    /// The tests, in ascending index order.
    pub tests: Vec<WorkloadTest>,
}

/// `sleep S.mmm` for a duration in milliseconds.
fn sleep_script(ms: u64) -> String {
    format!("sleep {}.{:03}", ms / 1000, ms % 1000)
}

impl Workload {
    /// Generates `n` tests of `kind`.
    pub fn generate(kind: Kind, n: usize, seed: u64) -> Self {
        let mut rng = SplitMix64::new(seed);
        let tests = (0..n)
            .map(|i| {
                let duration_ms = match kind {
                    Kind::Noop => 0,
                    Kind::SleepUniform => 50,
                    Kind::SleepSkewed => match rng.next_u64() % 1000 {
                        r if r < 900 => 50,
                        r if r < 980 => 250,
                        _ => 2000,
                    },
                    Kind::SleepLong => 500 + rng.next_u64() % 1501,
                };
                let script = match kind {
                    Kind::Noop => "true".to_string(),
                    _ => sleep_script(duration_ms),
                };
                WorkloadTest {
                    name: format!("/t{i:05}"),
                    duration_ms,
                    script,
                }
            })
            .collect();
        Self { kind, seed, tests }
    }

    /// Sum of the nominal durations, in milliseconds.
    pub fn sum_ms(&self) -> u64 {
        self.tests.iter().map(|t| t.duration_ms).sum()
    }

    /// The longest nominal duration, in milliseconds.
    pub fn max_ms(&self) -> u64 {
        self.tests.iter().map(|t| t.duration_ms).max().unwrap_or(0)
    }

    /// The ideal makespan lower bound `max(sum / M, max)` in seconds.
    pub fn ideal_lower_bound_s(&self, workers: usize) -> f64 {
        let sum = self.sum_ms() as f64 / 1000.0;
        let max = self.max_ms() as f64 / 1000.0;
        (sum / workers.max(1) as f64).max(max)
    }

    /// The zero-overhead list-scheduling makespan in milliseconds: `workers` workers, all
    /// free at 0; each test in `order` goes to the worker that is free earliest.
    pub fn greedy_makespan_ms<'a>(
        &self,
        workers: usize,
        order: impl IntoIterator<Item = &'a WorkloadTest>,
    ) -> u64 {
        let mut free: BinaryHeap<Reverse<u64>> = (0..workers.max(1)).map(|_| Reverse(0)).collect();
        let mut end = 0;
        for t in order {
            let Reverse(at) = free.pop().unwrap_or(Reverse(0));
            let done = at + t.duration_ms;
            end = end.max(done);
            free.push(Reverse(done));
        }
        end
    }

    /// The tests longest first (ties in index order).
    pub fn longest_first(&self) -> Vec<&WorkloadTest> {
        let mut v: Vec<&WorkloadTest> = self.tests.iter().collect();
        v.sort_by_key(|t| Reverse(t.duration_ms));
        v
    }

    /// Writes the FMF tree of the workload into `dir`: `.fmf/version` and a `main.fmf` with
    /// one key per test holding its `test` script as a double-quoted string.
    pub fn write_fmf_tree(&self, dir: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(dir.join(".fmf"))?;
        std::fs::write(dir.join(".fmf/version"), "1\n")?;
        let mut main = String::new();
        for t in &self.tests {
            let quoted = serde_json::to_string(&t.script).map_err(std::io::Error::other)?;
            let _ = writeln!(main, "{}:\n    test: {quoted}", t.name);
        }
        std::fs::write(dir.join("main.fmf"), main)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix_reference_values() {
        let mut r = SplitMix64::new(0);
        assert_eq!(
            [r.next_u64(), r.next_u64(), r.next_u64()],
            [0xe220a8397b1dcdaf, 0x6e789e6aa1b965f4, 0x06c45d188009454f]
        );
        let mut r = SplitMix64::new(1);
        assert_eq!(
            [r.next_u64(), r.next_u64(), r.next_u64()],
            [0x910a2dec89025cc1, 0xbeeb8da1658eec67, 0xf893a2eefb32555e]
        );
    }

    fn counts(w: &Workload) -> (usize, usize, usize) {
        let c = |d| w.tests.iter().filter(|t| t.duration_ms == d).count();
        (c(50), c(250), c(2000))
    }

    #[test]
    fn skewed_reference_values() {
        let w = Workload::generate(Kind::SleepSkewed, 5000, 1);
        let first: Vec<u64> = w.tests[..20].iter().map(|t| t.duration_ms).collect();
        let mut expect = vec![50; 20];
        expect[9] = 250;
        assert_eq!(first, expect);
        assert_eq!(w.tests.iter().position(|t| t.duration_ms == 2000), Some(77));
        for (n, c, sum) in [
            (100, (91, 8, 1), 8550),
            (1000, (896, 86, 18), 102_300),
            (5000, (4500, 409, 91), 509_250),
        ] {
            let w = Workload::generate(Kind::SleepSkewed, n, 1);
            assert_eq!(counts(&w), c, "N={n}");
            assert_eq!(w.sum_ms(), sum, "N={n}");
        }
    }

    #[test]
    fn lower_bounds_and_greedy_reference_table() {
        let table = [
            (100, [(8.55, 8.55), (2.1375, 3.25), (2.0, 2.3), (2.0, 2.05)]),
            (
                1000,
                [(102.3, 102.3), (25.575, 26.85), (6.39375, 8.0), (2.0, 3.2)],
            ),
        ];
        for (n, row) in table {
            let w = Workload::generate(Kind::SleepSkewed, n, 1);
            for (m, (lb, g)) in [1, 4, 16, 64].into_iter().zip(row) {
                assert!(
                    (w.ideal_lower_bound_s(m) - lb).abs() < 1e-9,
                    "LB N={n} M={m}"
                );
                let greedy = w.greedy_makespan_ms(m, w.tests.iter()) as f64 / 1000.0;
                assert!((greedy - g).abs() < 1e-9, "G N={n} M={m}: {greedy}");
            }
        }
    }

    #[test]
    fn long_sleeps_are_seeded_and_within_half_a_second_to_two() {
        let w = Workload::generate(Kind::SleepLong, 20_000, 1);
        let first: Vec<u64> = w.tests[..3].iter().map(|t| t.duration_ms).collect();
        assert_eq!(first, [1364, 1686, 1654]);
        assert_eq!(w.tests[0].script, "sleep 1.364");
        assert_eq!(w.sum_ms(), 25_035_660);
        assert!(
            w.tests
                .iter()
                .all(|t| (500..=2000).contains(&t.duration_ms))
        );
        assert_eq!(
            (w.max_ms(), w.tests.iter().map(|t| t.duration_ms).min()),
            (2000, Some(500))
        );
        assert_eq!("sleep-long".parse::<Kind>(), Ok(Kind::SleepLong));
        assert_eq!(Kind::SleepLong.as_str(), "sleep-long");
    }

    #[test]
    fn names_scripts_and_fmf_tree() {
        let w = Workload::generate(Kind::Noop, 2, 1);
        assert_eq!(w.tests[1].name, "/t00001");
        assert_eq!(w.tests[1].script, "true");
        let u = Workload::generate(Kind::SleepUniform, 1, 1);
        assert_eq!(u.tests[0].script, "sleep 0.050");
        assert_eq!(
            Workload::generate(Kind::Noop, 100_001, 1).tests[100_000].name,
            "/t100000"
        );
        let dir = tempfile::tempdir().expect("tmp");
        w.write_fmf_tree(dir.path()).expect("write");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("main.fmf")).expect("read"),
            "/t00000:\n    test: \"true\"\n/t00001:\n    test: \"true\"\n"
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join(".fmf/version")).expect("read"),
            "1\n"
        );
    }
}
