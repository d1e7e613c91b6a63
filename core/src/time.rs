//! Times for people and the unit of integer times: one ISO 8601 formatter for every message
//! and report, and the check that an integer time column is in the unit it is read in.
//!
//! ```
//! use arrow::datatypes::{DataType, TimeUnit};
//! use probe_core::time::{format_time, IntUnit};
//!
//! let utc = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
//! assert_eq!(format_time(1_700_000_000_123_456, &utc, None), "2023-11-14T22:13:20.123456Z");
//! assert_eq!(format_time(19_000, &DataType::Date32, None), "2022-01-08");
//! // An integer time is shown in its --time-unit, with the raw value, or raw when no unit applies.
//! assert_eq!(format_time(1_700_000_000, &DataType::Int64, Some(IntUnit::Second)), "1700000000 (2023-11-14T22:13:20Z)");
//! assert_eq!(format_time(42, &DataType::Int64, None), "42");
//! ```
//!
//! Timezones: a timestamp with a zone is shown as the instant in UTC (`Z`) when the zone is
//! UTC or named (`Europe/Paris`: arrow-rs is built without the timezone database), and in its
//! own offset when the zone is a fixed offset (`+02:00`). Either is the same instant.

use arrow::datatypes::{DataType, TimeUnit};
use chrono::{DateTime, FixedOffset, NaiveDateTime, NaiveTime, Utc};

use crate::error::{Error, Result};

/// The unit of an integer time column (`--time-unit`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntUnit {
    /// Seconds.
    Second,
    /// Milliseconds.
    Millisecond,
    /// Microseconds.
    Microsecond,
    /// Nanoseconds.
    Nanosecond,
}

impl IntUnit {
    /// Every unit, coarsest first.
    pub const ALL: [IntUnit; 4] = [IntUnit::Second, IntUnit::Millisecond, IntUnit::Microsecond, IntUnit::Nanosecond];

    /// Nanoseconds in one tick of this unit.
    pub fn nanos(self) -> i128 {
        match self {
            IntUnit::Second => 1_000_000_000,
            IntUnit::Millisecond => 1_000_000,
            IntUnit::Microsecond => 1_000,
            IntUnit::Nanosecond => 1,
        }
    }

    /// The `--time-unit` spelling.
    pub fn name(self) -> &'static str {
        match self {
            IntUnit::Second => "s",
            IntUnit::Millisecond => "ms",
            IntUnit::Microsecond => "us",
            IntUnit::Nanosecond => "ns",
        }
    }

    /// Parse `s`, `ms`, `us` (or `µs`), `ns`.
    pub fn parse(s: &str) -> std::result::Result<IntUnit, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "s" => Ok(IntUnit::Second),
            "ms" => Ok(IntUnit::Millisecond),
            "us" | "µs" => Ok(IntUnit::Microsecond),
            "ns" => Ok(IntUnit::Nanosecond),
            _ => Err(format!("`{s}` is not a time unit; use s, ms, us or ns")),
        }
    }

    fn arrow(self) -> TimeUnit {
        match self {
            IntUnit::Second => TimeUnit::Second,
            IntUnit::Millisecond => TimeUnit::Millisecond,
            IntUnit::Microsecond => TimeUnit::Microsecond,
            IntUnit::Nanosecond => TimeUnit::Nanosecond,
        }
    }
}

/// Whether a time column of this type is a plain integer, whose unit the user must say.
pub fn is_integer_time(data_type: &DataType) -> bool {
    data_type.is_integer()
}

/// Epoch seconds of 5000-01-01T00:00:00Z: an integer time beyond it (either side of 1970) is
/// taken as a sign of the wrong unit, not as a real date.
pub const PLAUSIBLE_EPOCH_SECONDS: i64 = 95_617_584_000;

/// Refuse integer times that cannot be epoch times in `unit`: a value whose magnitude in that
/// unit is past the year 5000 means the column is in a finer unit. The error names `what` (a
/// column and file) and the value, and suggests the `--time-unit` that fits (`ms`, `us`, `ns`).
pub fn check_unit(min: i64, max: i64, unit: IntUnit, what: &str) -> Result<()> {
    let fits = |u: IntUnit, v: i64| {
        let secs = v as i128 * u.nanos() / 1_000_000_000;
        secs.abs() <= PLAUSIBLE_EPOCH_SECONDS as i128
    };
    let worst = if (min as i128).abs() > (max as i128).abs() { min } else { max };
    if fits(unit, worst) {
        return Ok(());
    }
    let advice = match IntUnit::ALL.iter().find(|u| u.nanos() < unit.nanos() && fits(**u, worst)) {
        Some(u) => format!("if the column holds epoch {}, pass --time-unit {}", long_name(*u), u.name()),
        None => "it is not an epoch time in s, ms, us or ns; check --time".to_string(),
    };
    Err(Error::data(format!(
        "{what}: integer time {worst} read in --time-unit {} is past the year 5000, so the column is not in {}; {advice}",
        unit.name(),
        long_name(unit),
    )))
}

fn long_name(u: IntUnit) -> &'static str {
    match u {
        IntUnit::Second => "seconds",
        IntUnit::Millisecond => "milliseconds",
        IntUnit::Microsecond => "microseconds",
        IntUnit::Nanosecond => "nanoseconds",
    }
}

/// A time value (as the i64 that [`crate::columns::time_as_i64`] reads) for people, in ISO
/// 8601 by its column type: timestamps as date and time (with `Z` or an offset when the type
/// has a timezone), dates as dates, times of day as times, durations as `PT...S`. An integer
/// is shown raw, followed by its ISO time when `int_unit` says what it counts.
pub fn format_time(v: i64, data_type: &DataType, int_unit: Option<IntUnit>) -> String {
    match data_type {
        DataType::Timestamp(unit, tz) => match instant(v, *unit) {
            Some(t) => with_zone(t, tz.as_deref()),
            None => v.to_string(),
        },
        DataType::Date32 => instant(v.saturating_mul(86_400), TimeUnit::Second)
            .map(|t| t.format("%Y-%m-%d").to_string())
            .unwrap_or_else(|| v.to_string()),
        DataType::Date64 => match instant(v, TimeUnit::Millisecond) {
            Some(t) if v % 86_400_000 == 0 => t.format("%Y-%m-%d").to_string(),
            Some(t) => iso(t),
            None => v.to_string(),
        },
        DataType::Time32(unit) | DataType::Time64(unit) => time_of_day(v, *unit).unwrap_or_else(|| v.to_string()),
        DataType::Duration(unit) => duration(v as i128, *unit),
        _ => match int_unit.and_then(|u| instant(v, u.arrow())) {
            Some(t) => format!("{v} ({}Z)", iso(t)),
            None => v.to_string(),
        },
    }
}

fn nanos_per(unit: TimeUnit) -> i128 {
    match unit {
        TimeUnit::Second => 1_000_000_000,
        TimeUnit::Millisecond => 1_000_000,
        TimeUnit::Microsecond => 1_000,
        TimeUnit::Nanosecond => 1,
    }
}

fn instant(v: i64, unit: TimeUnit) -> Option<NaiveDateTime> {
    let nanos = v as i128 * nanos_per(unit);
    let secs = i64::try_from(nanos.div_euclid(1_000_000_000)).ok()?;
    let sub = nanos.rem_euclid(1_000_000_000) as u32;
    DateTime::<Utc>::from_timestamp(secs, sub).map(|t| t.naive_utc())
}

/// `2024-01-01T00:00:00`, with as many fraction digits as needed (3, 6 or 9, or none).
fn iso(t: NaiveDateTime) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.f").to_string()
}

fn with_zone(t: NaiveDateTime, tz: Option<&str>) -> String {
    let Some(tz) = tz else {
        return iso(t);
    };
    match fixed_offset(tz) {
        Some(off) if off.local_minus_utc() != 0 => {
            let local = t + off;
            format!("{}{off}", iso(local))
        }
        _ => format!("{}Z", iso(t)),
    }
}

/// `+HH:MM`, `+HHMM`, `+HH` (and `-`), as arrow writes fixed offsets.
fn fixed_offset(tz: &str) -> Option<FixedOffset> {
    let (sign, rest) = match tz.as_bytes().first()? {
        b'+' => (1, &tz[1..]),
        b'-' => (-1, &tz[1..]),
        _ => return None,
    };
    let digits: String = rest.chars().filter(|c| *c != ':').collect();
    let (h, m) = match digits.len() {
        2 => (digits.parse::<i32>().ok()?, 0),
        4 => (digits[..2].parse::<i32>().ok()?, digits[2..].parse::<i32>().ok()?),
        _ => return None,
    };
    FixedOffset::east_opt(sign * (h * 3600 + m * 60))
}

fn time_of_day(v: i64, unit: TimeUnit) -> Option<String> {
    let nanos = v as i128 * nanos_per(unit);
    let secs = u32::try_from(nanos.div_euclid(1_000_000_000)).ok()?;
    let sub = nanos.rem_euclid(1_000_000_000) as u32;
    NaiveTime::from_num_seconds_from_midnight_opt(secs, sub).map(|t| t.format("%H:%M:%S%.f").to_string())
}

fn duration(v: i128, unit: TimeUnit) -> String {
    let nanos = v * nanos_per(unit);
    let secs = nanos / 1_000_000_000;
    let frac = (nanos % 1_000_000_000).abs();
    let sign = if nanos < 0 && secs == 0 { "-" } else { "" };
    if frac == 0 {
        format!("PT{sign}{secs}S")
    } else {
        let digits = format!("{frac:09}");
        format!("PT{sign}{secs}.{}S", digits.trim_end_matches('0'))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a panic is the failure report
mod tests {
    use super::*;

    #[test]
    fn timestamps_in_iso_8601_with_their_zone() {
        let ts = |u, tz: Option<&str>| DataType::Timestamp(u, tz.map(Into::into));
        assert_eq!(format_time(1_700_000_000, &ts(TimeUnit::Second, None), None), "2023-11-14T22:13:20");
        assert_eq!(
            format_time(1_700_000_000_500, &ts(TimeUnit::Millisecond, Some("UTC")), None),
            "2023-11-14T22:13:20.500Z"
        );
        assert_eq!(
            format_time(1_700_000_000, &ts(TimeUnit::Second, Some("+02:00")), None),
            "2023-11-15T00:13:20+02:00"
        );
        assert_eq!(
            format_time(1_700_000_000, &ts(TimeUnit::Second, Some("Europe/Paris")), None),
            "2023-11-14T22:13:20Z"
        );
        assert_eq!(format_time(-1, &ts(TimeUnit::Nanosecond, None), None), "1969-12-31T23:59:59.999999999");
        assert_eq!(format_time(i64::MAX, &ts(TimeUnit::Second, None), None), i64::MAX.to_string());
    }

    #[test]
    fn dates_times_durations_and_integers() {
        assert_eq!(format_time(0, &DataType::Date32, None), "1970-01-01");
        assert_eq!(format_time(86_400_000, &DataType::Date64, None), "1970-01-02");
        assert_eq!(format_time(3_723_000, &DataType::Time32(TimeUnit::Millisecond), None), "01:02:03");
        assert_eq!(format_time(1_500, &DataType::Duration(TimeUnit::Millisecond), None), "PT1.5S");
        assert_eq!(
            format_time(1_700_000_000_000, &DataType::UInt64, Some(IntUnit::Millisecond)),
            "1700000000000 (2023-11-14T22:13:20Z)"
        );
        assert_eq!(format_time(7, &DataType::Int8, None), "7");
    }

    #[test]
    fn integer_times_past_the_year_5000_suggest_a_unit() {
        assert!(check_unit(0, 1_700_000_000, IntUnit::Second, "c").is_ok());
        let e = check_unit(1_700_000_000_000, 1_700_000_000_001, IntUnit::Second, "c").unwrap_err().to_string();
        assert!(e.contains("--time-unit ms"), "{e}");
        let e = check_unit(0, 1_700_000_000_000_000_000, IntUnit::Millisecond, "c").unwrap_err().to_string();
        assert!(e.contains("--time-unit ns"), "{e}");
        let e = check_unit(i64::MIN, 0, IntUnit::Nanosecond, "c");
        assert!(e.is_ok(), "nanoseconds cover every i64 (years 1677 to 2262)");
        let e = check_unit(-1_700_000_000_000, 0, IntUnit::Second, "c").unwrap_err().to_string();
        assert!(e.contains("--time-unit ms"), "{e}");
    }
}
