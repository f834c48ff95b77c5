//! UTC timestamps: ISO 8601 as the Testing Farm API writes them (no zone suffix), for
//! ReportPortal with a `+00:00` suffix ([`Timestamp::to_rfc3339`]), and HTTP dates.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A point in time, UTC, with microsecond precision.
///
/// [`Display`](fmt::Display) gives the API's naive form `YYYY-MM-DDTHH:MM:SS.ffffff`;
/// [`parse`](Self::parse) accepts `YYYY-MM-DD`, `YYYY-MM-DDTHH:MM[:SS[.f…]]` (a space may
/// replace the `T`), optionally followed by `Z` or a `±HH:MM` offset (converted to UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp {
    micros: i64,
}

/// Why a timestamp could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid timestamp '{input}': expected YYYY-MM-DD[THH:MM[:SS[.ffffff]]] (UTC)")]
pub struct TimestampError {
    /// The text that was given.
    pub input: String,
}

const MICROS_PER_SEC: i64 = 1_000_000;
const SECS_PER_DAY: i64 = 86_400;

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day count since 1970-01-01.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        _ => 28,
    }
}

impl Timestamp {
    /// The current time.
    pub fn now() -> Self {
        Self::from_system(SystemTime::now())
    }

    /// Converts a [`SystemTime`].
    pub fn from_system(t: SystemTime) -> Self {
        let micros = match t.duration_since(UNIX_EPOCH) {
            Ok(d) => i64::try_from(d.as_micros()).unwrap_or(i64::MAX),
            Err(e) => -i64::try_from(e.duration().as_micros()).unwrap_or(i64::MAX),
        };
        Self { micros }
    }

    /// Microseconds since the Unix epoch.
    pub fn as_micros(&self) -> i64 {
        self.micros
    }

    /// The timestamp `micros` microseconds after the Unix epoch.
    pub fn from_micros(micros: i64) -> Self {
        Self { micros }
    }

    /// This timestamp moved `d` later (saturating).
    pub fn plus(&self, d: Duration) -> Self {
        let d = i64::try_from(d.as_micros()).unwrap_or(i64::MAX);
        Self {
            micros: self.micros.saturating_add(d),
        }
    }

    /// This timestamp moved `d` earlier (saturating).
    pub fn minus(&self, d: Duration) -> Self {
        let d = i64::try_from(d.as_micros()).unwrap_or(i64::MAX);
        Self {
            micros: self.micros.saturating_sub(d),
        }
    }

    /// Parses the forms listed on the type.
    pub fn parse(input: &str) -> Result<Self, TimestampError> {
        Self::parse_inner(input.trim()).ok_or_else(|| TimestampError {
            input: input.to_string(),
        })
    }

    fn parse_inner(s: &str) -> Option<Self> {
        let num = |t: &str| -> Option<u32> {
            if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            t.parse().ok()
        };
        let (date, rest) = match s.find(['T', 't', ' ']) {
            Some(i) => (&s[..i], Some(&s[i + 1..])),
            None => (s, None),
        };
        let mut dp = date.split('-');
        let (y, m, d) = (dp.next()?, dp.next()?, dp.next()?);
        if dp.next().is_some() || y.len() != 4 || m.len() != 2 || d.len() != 2 {
            return None;
        }
        let (y, m, d) = (i64::from(num(y)?), num(m)?, num(d)?);
        if !(1..=12).contains(&m) || d == 0 || d > days_in_month(y, m) {
            return None;
        }
        let mut micros = days_from_civil(y, m, d) * SECS_PER_DAY * MICROS_PER_SEC;
        let Some(rest) = rest else {
            return Some(Self { micros });
        };
        // Split off a zone suffix.
        let (time, offset_secs) = if let Some(t) = rest.strip_suffix(['Z', 'z']) {
            (t, 0i64)
        } else if let Some(i) = rest.rfind(['+', '-']) {
            let (t, z) = rest.split_at(i);
            let sign = if z.starts_with('-') { -1 } else { 1 };
            let (hh, mm) = z[1..].split_once(':').unwrap_or((&z[1..], "00"));
            if hh.len() != 2 || mm.len() != 2 {
                return None;
            }
            let (hh, mm) = (num(hh)?, num(mm)?);
            if hh > 23 || mm > 59 {
                return None;
            }
            (t, sign * (i64::from(hh) * 3600 + i64::from(mm) * 60))
        } else {
            (rest, 0)
        };
        let (hms, frac) = match time.split_once('.') {
            Some((a, b)) => (a, Some(b)),
            None => (time, None),
        };
        let mut tp = hms.split(':');
        let hh = tp.next()?;
        let mm = tp.next()?;
        let ss = tp.next();
        if tp.next().is_some() || hh.len() != 2 || mm.len() != 2 {
            return None;
        }
        let (hh, mm) = (num(hh)?, num(mm)?);
        let ss = match ss {
            Some(x) if x.len() == 2 => num(x)?,
            Some(_) => return None,
            None if frac.is_some() => return None,
            None => 0,
        };
        if hh > 23 || mm > 59 || ss > 60 {
            return None;
        }
        let frac_micros = match frac {
            None => 0,
            Some(f) if (1..=9).contains(&f.len()) => {
                let digits: String = f.chars().chain(std::iter::repeat('0')).take(6).collect();
                i64::from(num(&digits)?)
            }
            Some(_) => return None,
        };
        micros += (i64::from(hh) * 3600 + i64::from(mm) * 60 + i64::from(ss) - offset_secs)
            * MICROS_PER_SEC
            + frac_micros;
        Some(Self { micros })
    }

    /// `YYYY-MM-DDTHH:MM:SS.ffffff+00:00`, as Python's `datetime.now(UTC).isoformat()`.
    pub fn to_rfc3339(&self) -> String {
        format!("{self}+00:00")
    }

    /// `YYYY-MM-DDTHH:MM:SS` (no fraction), for display.
    pub fn to_seconds_string(&self) -> String {
        let full = self.to_string();
        match full.split_once('.') {
            Some((a, _)) => a.to_string(),
            None => full,
        }
    }

    /// Parses an RFC 7231 IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`), as used by the
    /// `Retry-After` header.
    pub fn parse_http_date(s: &str) -> Option<Self> {
        let mut it = s.split_whitespace();
        let _weekday = it.next()?;
        let day: u32 = it.next()?.parse().ok()?;
        let month = match it.next()? {
            "Jan" => 1,
            "Feb" => 2,
            "Mar" => 3,
            "Apr" => 4,
            "May" => 5,
            "Jun" => 6,
            "Jul" => 7,
            "Aug" => 8,
            "Sep" => 9,
            "Oct" => 10,
            "Nov" => 11,
            "Dec" => 12,
            _ => return None,
        };
        let year = it.next()?;
        let time = it.next()?;
        if it.next()? != "GMT" || it.next().is_some() {
            return None;
        }
        Self::parse_inner(&format!("{year}-{month:02}-{day:02}T{time}"))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.micros.div_euclid(MICROS_PER_SEC);
        let frac = self.micros.rem_euclid(MICROS_PER_SEC);
        let days = secs.div_euclid(SECS_PER_DAY);
        let sod = secs.rem_euclid(SECS_PER_DAY);
        let (y, m, d) = civil_from_days(days);
        write!(
            f,
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{frac:06}",
            sod / 3600,
            (sod / 60) % 60,
            sod % 60
        )
    }
}

impl std::str::FromStr for Timestamp {
    type Err = TimestampError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_naive_utc_with_micros() {
        assert_eq!(
            Timestamp::from_micros(0).to_string(),
            "1970-01-01T00:00:00.000000"
        );
        let t = Timestamp::parse("2026-06-30T10:00:00.123456").unwrap();
        assert_eq!(t.to_string(), "2026-06-30T10:00:00.123456");
        assert_eq!(t.to_seconds_string(), "2026-06-30T10:00:00");
        assert_eq!(t.to_rfc3339(), "2026-06-30T10:00:00.123456+00:00");
    }

    #[test]
    fn parses_every_accepted_form() {
        let base = Timestamp::parse("2024-02-29T00:00:00").unwrap();
        assert_eq!(Timestamp::parse("2024-02-29").unwrap(), base);
        assert_eq!(Timestamp::parse("2024-02-29 00:00").unwrap(), base);
        assert_eq!(Timestamp::parse("2024-02-29T00:00:00Z").unwrap(), base);
        assert_eq!(Timestamp::parse("2024-02-29T02:00:00+02:00").unwrap(), base);
        assert_eq!(Timestamp::parse("2024-02-28T23:30:00-00:30").unwrap(), base);
        assert_eq!(
            Timestamp::parse("2024-02-29T00:00:00.5")
                .unwrap()
                .as_micros()
                - base.as_micros(),
            500_000
        );
        for bad in [
            "",
            "2023-02-29",
            "2024-13-01",
            "24-01-01",
            "2024-01-01T25:00",
            "2024-01-01T10",
            "2024-01-01T10:00:00.",
            "2024-01-01T10:00:00+5",
            "now",
        ] {
            assert!(Timestamp::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn round_trips_over_centuries() {
        for micros in [
            -86_400_000_001i64,
            0,
            951_782_400_000_000,
            4_102_444_799_999_999,
            1_782_813_600_123_456,
        ] {
            let t = Timestamp::from_micros(micros);
            assert_eq!(Timestamp::parse(&t.to_string()).unwrap(), t, "{t}");
        }
    }

    #[test]
    fn parses_http_dates() {
        assert_eq!(
            Timestamp::parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(Timestamp::parse("1994-11-06T08:49:37").unwrap())
        );
        assert_eq!(Timestamp::parse_http_date("06 Nov 1994"), None);
    }
}
