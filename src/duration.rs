//! The tmt duration grammar and the test-control deadline arithmetic.
//!
//! # Grammar
//!
//! A duration spec is one or more whitespace-separated *parts*:
//!
//! - a time part: a number (`5`, `1.5`) optionally followed by a unit `s`, `m`, `h` or `d`
//!   (seconds when absent); whitespace between number and unit is allowed (`5 m`), and time
//!   parts may also be written back to back (`1h30m`) as tmt accepts them;
//! - a multiplier: `*` followed by a number (`*2`, `* 1.5`), which may not carry a unit.
//!
//! All time parts are summed, the product of all multipliers is applied to the sum, and the
//! result is rounded *up* to whole seconds, as tmt does (`5m *2` = 600 s, `1h 30m` = 5400 s,
//! `1.5h` = 5400 s). A spec made of multipliers only multiplies zero, unless a default is
//! injected with [`parse_duration_or`] (tmt's `duration: "*2"` = twice the default).
//!
//! # Deadline control
//!
//! [`Deadline`] implements the `duration` control word of the test-control protocol
//! (`SPEC`, `+SPEC`, `-SPEC`, `save`, `restore`) on the monotonic clock of
//! [`tokio::time::Instant`], so tests can drive it with `tokio::time::pause`.

use std::time::Duration;
use tokio::time::Instant;

/// The largest duration accepted, in seconds (about 31 700 years); anything above it is
/// rejected rather than overflowing the clock.
pub const MAX_SECONDS: f64 = 1.0e12;

/// A duration spec or a `duration` control argument that does not follow the grammar.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid duration '{spec}': {reason} (expected parts like '30', '5m', '1.5h', '1h 30m', '5m *2'; units s, m, h, d)"
)]
pub struct DurationError {
    /// The spec as given.
    pub spec: String,
    /// What is wrong with it.
    pub reason: String,
}

impl DurationError {
    fn new(spec: &str, reason: impl Into<String>) -> Self {
        Self {
            spec: spec.to_owned(),
            reason: reason.into(),
        }
    }
}

/// Parses a tmt duration spec (see the [module docs](self)).
///
/// ```
/// use atex::duration::parse_duration;
/// use std::time::Duration;
/// assert_eq!(parse_duration("90").unwrap(), Duration::from_secs(90));
/// assert_eq!(parse_duration("1h 30m").unwrap(), Duration::from_secs(5400));
/// assert_eq!(parse_duration("1.5h").unwrap(), Duration::from_secs(5400));
/// assert_eq!(parse_duration("5m *2").unwrap(), Duration::from_secs(600));
/// assert!(parse_duration("5x").is_err());
/// ```
pub fn parse_duration(spec: &str) -> Result<Duration, DurationError> {
    let parsed = parse_parts(spec)?;
    to_duration(spec, parsed.seconds * parsed.multiplier)
}

/// Like [`parse_duration`], but a spec that has multipliers and no time part multiplies
/// `default` instead of zero (tmt's "injected default": `*2` means twice the default).
///
/// ```
/// use atex::duration::parse_duration_or;
/// use std::time::Duration;
/// let five = Duration::from_secs(300);
/// assert_eq!(parse_duration_or("*2", five).unwrap(), Duration::from_secs(600));
/// assert_eq!(parse_duration_or("1m *2", five).unwrap(), Duration::from_secs(120));
/// ```
pub fn parse_duration_or(spec: &str, default: Duration) -> Result<Duration, DurationError> {
    let parsed = parse_parts(spec)?;
    let base = if parsed.has_time {
        parsed.seconds
    } else {
        default.as_secs_f64()
    };
    to_duration(spec, base * parsed.multiplier)
}

struct Parsed {
    seconds: f64,
    multiplier: f64,
    has_time: bool,
}

fn to_duration(spec: &str, seconds: f64) -> Result<Duration, DurationError> {
    let rounded = seconds.ceil();
    if !rounded.is_finite() || rounded > MAX_SECONDS {
        return Err(DurationError::new(spec, "duration is too large"));
    }
    // `rounded` is a finite, non-negative whole number below 1e12, exact in u64.
    Ok(Duration::from_secs(rounded.max(0.0) as u64))
}

/// Reads a decimal number (`\d+(\.\d+)?`) at the start of `s`; returns it and the rest.
fn take_number<'a>(spec: &str, s: &'a str) -> Result<(f64, &'a str), DurationError> {
    let int_len = s.bytes().take_while(u8::is_ascii_digit).count();
    if int_len == 0 {
        let shown: String = s.chars().take(16).collect();
        return Err(DurationError::new(
            spec,
            format!("expected a number at '{shown}'"),
        ));
    }
    let mut len = int_len;
    let rest = &s[int_len..];
    if let Some(frac) = rest.strip_prefix('.') {
        let frac_len = frac.bytes().take_while(u8::is_ascii_digit).count();
        if frac_len == 0 {
            return Err(DurationError::new(
                spec,
                format!("missing digits after '.' in '{}'", &s[..=int_len]),
            ));
        }
        len += 1 + frac_len;
    }
    let text = &s[..len];
    let value: f64 = text
        .parse()
        .map_err(|_| DurationError::new(spec, format!("'{text}' is not a number")))?;
    Ok((value, &s[len..]))
}

fn parse_parts(spec: &str) -> Result<Parsed, DurationError> {
    let mut parsed = Parsed {
        seconds: 0.0,
        multiplier: 1.0,
        has_time: false,
    };
    let mut any = false;
    let mut rest = spec.trim_start();
    while !rest.is_empty() {
        any = true;
        if let Some(after) = rest.strip_prefix('*') {
            let (factor, after) = take_number(spec, after.trim_start())?;
            if after.starts_with(|c: char| c.is_ascii_alphabetic()) {
                return Err(DurationError::new(
                    spec,
                    "a multiplier ('*N') cannot have a unit",
                ));
            }
            parsed.multiplier *= factor;
            rest = after;
        } else {
            let (value, after) = take_number(spec, rest)?;
            let after = after.trim_start();
            let word_len = after
                .find(|c: char| !c.is_alphabetic())
                .unwrap_or(after.len());
            let unit = match &after[..word_len] {
                "" | "s" => 1.0,
                "m" => 60.0,
                "h" => 3600.0,
                "d" => 86400.0,
                other => {
                    return Err(DurationError::new(
                        spec,
                        format!("unknown unit '{other}' (use s, m, h or d)"),
                    ));
                }
            };
            let after = &after[word_len..];
            parsed.seconds += value * unit;
            parsed.has_time = true;
            rest = after;
        }
        if let Some(c) = rest.chars().next()
            && !c.is_whitespace()
            && !c.is_ascii_digit()
            && c != '*'
        {
            return Err(DurationError::new(spec, format!("unexpected '{c}'")));
        }
        rest = rest.trim_start();
    }
    if !any {
        return Err(DurationError::new(spec, "empty duration"));
    }
    Ok(parsed)
}

/// One parsed argument of the `duration` control word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DurationControl {
    /// `SPEC`: the deadline becomes now + SPEC (a fresh budget from this moment).
    Set(Duration),
    /// `+SPEC`: the deadline moves SPEC later.
    Extend(Duration),
    /// `-SPEC`: the deadline moves SPEC earlier.
    Shorten(Duration),
    /// `save`: remember the remaining time (outermost save only).
    Save,
    /// `restore`: restore the remembered remaining time (outermost restore only).
    Restore,
}

impl DurationControl {
    /// Parses the argument of a `duration` control line.
    ///
    /// ```
    /// use atex::duration::DurationControl;
    /// use std::time::Duration;
    /// assert_eq!(DurationControl::parse("+1m").unwrap(), DurationControl::Extend(Duration::from_secs(60)));
    /// assert_eq!(DurationControl::parse("save").unwrap(), DurationControl::Save);
    /// ```
    pub fn parse(arg: &str) -> Result<Self, DurationError> {
        match arg {
            "save" => Ok(Self::Save),
            "restore" => Ok(Self::Restore),
            _ => {
                if let Some(spec) = arg.strip_prefix('+') {
                    parse_duration(spec)
                        .map(Self::Extend)
                        .map_err(|e| DurationError::new(arg, e.reason))
                } else if let Some(spec) = arg.strip_prefix('-') {
                    parse_duration(spec)
                        .map(Self::Shorten)
                        .map_err(|e| DurationError::new(arg, e.reason))
                } else {
                    parse_duration(arg).map(Self::Set)
                }
            }
        }
    }
}

/// The absolute deadline of a running test, with the `save`/`restore` nesting rules of
/// the test-control protocol.
///
/// Only the outermost `save`/`restore` pair has an effect: `save` at depth 0 remembers the
/// remaining time, deeper saves only count; `restore` at depth 1 sets the deadline to now +
/// the remembered time, deeper restores only count down; `restore` at depth 0 is a no-op.
#[derive(Debug, Clone)]
pub struct Deadline {
    at: Instant,
    saved: Duration,
    depth: u32,
}

impl Deadline {
    /// A deadline `budget` from now.
    pub fn new(budget: Duration) -> Self {
        Self::starting_at(Instant::now(), budget)
    }

    /// A deadline `budget` after `start`.
    pub fn starting_at(start: Instant, budget: Duration) -> Self {
        Self {
            at: add(start, budget),
            saved: Duration::ZERO,
            depth: 0,
        }
    }

    /// The absolute deadline.
    pub fn at(&self) -> Instant {
        self.at
    }

    /// Time left until the deadline (zero once it passed).
    pub fn remaining(&self) -> Duration {
        self.at.saturating_duration_since(Instant::now())
    }

    /// True once the deadline has been reached.
    pub fn is_expired(&self) -> bool {
        Instant::now() >= self.at
    }

    /// The current `save` nesting depth.
    pub fn save_depth(&self) -> u32 {
        self.depth
    }

    /// Applies one `duration` control argument.
    pub fn apply(&mut self, control: DurationControl) {
        let now = Instant::now();
        match control {
            DurationControl::Set(d) => self.at = add(now, d),
            DurationControl::Extend(d) => self.at = add(self.at, d),
            DurationControl::Shorten(d) => {
                self.at = self.at.checked_sub(d).unwrap_or(now.min(self.at));
            }
            DurationControl::Save => {
                if self.depth == 0 {
                    self.saved = self.at.saturating_duration_since(now);
                }
                self.depth = self.depth.saturating_add(1);
            }
            DurationControl::Restore => match self.depth {
                0 => {}
                1 => {
                    self.at = add(now, self.saved);
                    self.depth = 0;
                }
                _ => self.depth -= 1,
            },
        }
    }

    /// Parses and applies one `duration` control argument.
    pub fn apply_str(&mut self, arg: &str) -> Result<(), DurationError> {
        self.apply(DurationControl::parse(arg)?);
        Ok(())
    }
}

/// `instant + d`, saturating at a far-future instant instead of overflowing.
fn add(instant: Instant, d: Duration) -> Instant {
    instant
        .checked_add(d)
        .or_else(|| instant.checked_add(Duration::from_secs(MAX_SECONDS as u64)))
        .unwrap_or(instant)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(spec: &str) -> u64 {
        match parse_duration(spec) {
            Ok(d) => d.as_secs(),
            Err(e) => panic!("{spec}: {e}"),
        }
    }

    #[test]
    fn plain_and_units() {
        assert_eq!(secs("0"), 0);
        assert_eq!(secs("5"), 5);
        assert_eq!(secs("5s"), 5);
        assert_eq!(secs("5m"), 300);
        assert_eq!(secs("2h"), 7200);
        assert_eq!(secs("1d"), 86400);
        assert_eq!(secs("  7  "), 7);
    }

    #[test]
    fn floats_sums_and_multipliers() {
        assert_eq!(secs("1.5h"), 5400);
        assert_eq!(secs("0.5s"), 1, "rounded up like tmt");
        assert_eq!(secs("1h 30m"), 5400);
        assert_eq!(secs("1h30m"), 5400);
        assert_eq!(secs("1d 2h 3m 4s"), 86400 + 7200 + 180 + 4);
        assert_eq!(secs("5 m"), 300);
        assert_eq!(secs("5m *2"), 600);
        assert_eq!(secs("*2 5m"), 600);
        assert_eq!(secs("1h 30m *2"), 10800);
        assert_eq!(secs("10 *1.5 *2"), 30);
        assert_eq!(secs("10 * 3"), 30);
        assert_eq!(secs("*2"), 0);
        assert_eq!(secs("1m *0.01"), 1);
    }

    #[test]
    fn injected_default() {
        let d = Duration::from_secs(300);
        assert_eq!(parse_duration_or("*3", d), Ok(Duration::from_secs(900)));
        assert_eq!(parse_duration_or("10", d), Ok(Duration::from_secs(10)));
    }

    #[test]
    fn errors_name_the_spec() {
        for bad in [
            "",
            "   ",
            "5x",
            "x",
            "m",
            "1.",
            ".5",
            "-5",
            "+5",
            "5mm",
            "*2m",
            "*",
            "5m,",
            "1e3",
            "5 minutes",
            "1h-30m",
            "\u{0}",
        ] {
            let err = match parse_duration(bad) {
                Ok(d) => panic!("{bad:?} parsed as {d:?}"),
                Err(e) => e,
            };
            assert_eq!(err.spec, bad);
            assert!(err.to_string().contains(&format!("'{bad}'")), "{err}");
        }
        let e = parse_duration("5x").err();
        assert_eq!(
            e.map(|e| e.reason),
            Some("unknown unit 'x' (use s, m, h or d)".to_owned())
        );
        assert!(parse_duration("99999999999999999999d").is_err());
    }

    #[test]
    fn control_parse() {
        use DurationControl::*;
        let m = Duration::from_secs(60);
        assert_eq!(DurationControl::parse("1m"), Ok(Set(m)));
        assert_eq!(DurationControl::parse("+1m"), Ok(Extend(m)));
        assert_eq!(DurationControl::parse("-1m"), Ok(Shorten(m)));
        assert_eq!(DurationControl::parse("restore"), Ok(Restore));
        let e = DurationControl::parse("+5x").err();
        assert_eq!(e.map(|e| e.spec), Some("+5x".to_owned()));
        assert!(DurationControl::parse("Save").is_err());
        assert!(DurationControl::parse("+").is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn deadline_arithmetic() {
        let start = Instant::now();
        let mut d = Deadline::new(Duration::from_secs(300));
        assert_eq!(d.at(), start + Duration::from_secs(300));
        tokio::time::advance(Duration::from_secs(100)).await;
        d.apply_str("+10").ok();
        assert_eq!(d.at(), start + Duration::from_secs(310));
        d.apply_str("-20").ok();
        assert_eq!(d.at(), start + Duration::from_secs(290));
        // absolute: fresh budget from now
        d.apply_str("1m").ok();
        assert_eq!(d.at(), start + Duration::from_secs(160));
        assert_eq!(d.remaining(), Duration::from_secs(60));
        // shortening past now expires
        d.apply_str("-1h").ok();
        assert!(d.is_expired());
        assert_eq!(d.remaining(), Duration::ZERO);
        assert!(d.apply_str("1 fortnight").is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn save_restore_nesting() {
        let start = Instant::now();
        let mut d = Deadline::new(Duration::from_secs(100));
        tokio::time::advance(Duration::from_secs(10)).await;
        d.apply(DurationControl::Save); // remembers 90 s
        d.apply(DurationControl::Save); // nested: counts only
        assert_eq!(d.save_depth(), 2);
        tokio::time::advance(Duration::from_secs(50)).await;
        d.apply(DurationControl::Restore); // inner: no-op
        assert_eq!(d.at(), start + Duration::from_secs(100));
        tokio::time::advance(Duration::from_secs(20)).await;
        d.apply(DurationControl::Restore); // outer: now (80) + 90
        assert_eq!(d.at(), start + Duration::from_secs(170));
        assert_eq!(d.save_depth(), 0);
        d.apply(DurationControl::Restore); // depth 0: no-op
        assert_eq!(d.at(), start + Duration::from_secs(170));
        // a save after the first pair takes a fresh snapshot
        d.apply(DurationControl::Save);
        tokio::time::advance(Duration::from_secs(100)).await; // "reboot" time
        d.apply(DurationControl::Restore);
        assert_eq!(d.at(), start + Duration::from_secs(180 + 90));
    }

    #[tokio::test(start_paused = true)]
    async fn saved_when_already_expired_restores_zero() {
        let mut d = Deadline::new(Duration::from_secs(1));
        tokio::time::advance(Duration::from_secs(5)).await;
        d.apply(DurationControl::Save);
        d.apply(DurationControl::Restore);
        assert!(d.is_expired());
    }
}
