//! YAML timestamps (`2024-01-02`, `2024-01-02T10:20:30.5+02:00`, ...), as ruamel reads them.

use crate::fmf::value::{Timestamp, Value};

/// A timestamp whose parts are out of range.
#[derive(Debug, thiserror::Error)]
pub(super) enum TimestampError {
    #[error("invalid time in timestamp '{0}'")]
    Time(String),
    #[error("invalid time zone in timestamp '{0}'")]
    Zone(String),
    #[error("month must be in 1..12, got {0}")]
    Month(u32),
    #[error("year 0 is out of range")]
    YearZero,
    #[error("day is out of range for month: {0}-{1}-{2}")]
    Day(u32, u32, u32),
}

/// Parse the YAML timestamp forms; `Ok(None)` if the text is not a timestamp.
pub(super) fn parse_timestamp(s: &str) -> Result<Option<Value>, TimestampError> {
    let b = s.as_bytes();
    let num = |x: &str| x.parse::<u32>().ok();
    // YYYY-MM-DD exactly
    if b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit())
    {
        let (y, m, d) = (num(&s[..4]), num(&s[5..7]), num(&s[8..10]));
        return match (y, m, d) {
            (Some(y), Some(m), Some(d)) => {
                Ok(Some(Value::Timestamp(make_ts(y, m, d, None, None)?)))
            }
            _ => Ok(None),
        };
    }
    // YYYY-M?M-D?D (T|t|[ \t]+) H?H:MM:SS (.frac)? ([ \t]*(Z|[-+]H?H(:MM)?))?
    let (year, rest) = take_while(s, |c| c.is_ascii_digit());
    if year.len() != 4 {
        return Ok(None);
    }
    let Some(rest) = rest.strip_prefix('-') else {
        return Ok(None);
    };
    let (month, rest) = take_while(rest, |c| c.is_ascii_digit());
    if month.is_empty() || month.len() > 2 {
        return Ok(None);
    }
    let Some(rest) = rest.strip_prefix('-') else {
        return Ok(None);
    };
    let (day, rest) = take_while(rest, |c| c.is_ascii_digit());
    if day.is_empty() || day.len() > 2 {
        return Ok(None);
    }
    let rest = if let Some(r) = rest.strip_prefix(['T', 't']) {
        r
    } else {
        let (ws, r) = take_while(rest, |c| c == b' ' || c == b'\t');
        if ws.is_empty() {
            return Ok(None);
        }
        r
    };
    let (hour, rest) = take_while(rest, |c| c.is_ascii_digit());
    if hour.is_empty() || hour.len() > 2 {
        return Ok(None);
    }
    let Some(rest) = rest.strip_prefix(':') else {
        return Ok(None);
    };
    let (minute, rest) = take_while(rest, |c| c.is_ascii_digit());
    if minute.len() != 2 {
        return Ok(None);
    }
    let Some(rest) = rest.strip_prefix(':') else {
        return Ok(None);
    };
    let (second, mut rest) = take_while(rest, |c| c.is_ascii_digit());
    if second.len() != 2 {
        return Ok(None);
    }
    let mut micro = 0u32;
    if let Some(r) = rest.strip_prefix('.') {
        let (frac, r2) = take_while(r, |c| c.is_ascii_digit());
        let mut f: String = frac.chars().take(6).collect();
        while f.len() < 6 {
            f.push('0');
        }
        micro = f.parse().unwrap_or(0);
        rest = r2;
    }
    let (_, r) = take_while(rest, |c| c == b' ' || c == b'\t');
    let mut tz = None;
    if !r.is_empty() {
        if r == "Z" {
            tz = Some(0);
        } else if let Some(sign) = r.strip_prefix(['-', '+']) {
            let neg = r.starts_with('-');
            let (h, after) = take_while(sign, |c| c.is_ascii_digit());
            if h.is_empty() || h.len() > 2 {
                return Ok(None);
            }
            let mut mins = 0i32;
            if !after.is_empty() {
                let Some(mm) = after.strip_prefix(':') else {
                    return Ok(None);
                };
                if mm.len() != 2 || !mm.bytes().all(|c| c.is_ascii_digit()) {
                    return Ok(None);
                }
                mins = mm.parse().unwrap_or(0);
            }
            let total = h.parse::<i32>().unwrap_or(0) * 60 + mins;
            tz = Some(if neg { -total } else { total });
        } else {
            return Ok(None);
        }
        if rest.len() == r.len() && r != "Z" && !r.starts_with(['-', '+']) {
            return Ok(None);
        }
    } else if rest.len() != r.len() {
        // trailing whitespace only: not matched by the resolver
        return Ok(None);
    }
    let (Some(y), Some(mo), Some(d), Some(h), Some(mi), Some(se)) = (
        num(year),
        num(month),
        num(day),
        num(hour),
        num(minute),
        num(second),
    ) else {
        return Ok(None);
    };
    if h > 23 || mi > 59 || se > 59 {
        return Err(TimestampError::Time(s.to_string()));
    }
    if let Some(t) = tz
        && t.abs() >= 24 * 60
    {
        return Err(TimestampError::Zone(s.to_string()));
    }
    Ok(Some(Value::Timestamp(make_ts(
        y,
        mo,
        d,
        Some((h as u8, mi as u8, se as u8, micro)),
        tz,
    )?)))
}

fn make_ts(
    y: u32,
    m: u32,
    d: u32,
    time: Option<(u8, u8, u8, u32)>,
    tz: Option<i32>,
) -> Result<Timestamp, TimestampError> {
    let leap = (y.is_multiple_of(4) && !y.is_multiple_of(100)) || y.is_multiple_of(400);
    let dim = match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return Err(TimestampError::Month(m)),
    };
    if y == 0 {
        return Err(TimestampError::YearZero);
    }
    if d == 0 || d > dim {
        return Err(TimestampError::Day(y, m, d));
    }
    Ok(Timestamp {
        year: y as i32,
        month: m as u8,
        day: d as u8,
        time,
        tz_minutes: tz,
    })
}

/// Splits `s` after its longest prefix of bytes matching `f` (a lexing helper, shared with
/// the number resolvers).
pub(super) fn take_while(s: &str, f: impl Fn(u8) -> bool) -> (&str, &str) {
    let n = s.bytes().take_while(|c| f(*c)).count();
    (&s[..n], &s[n..])
}
