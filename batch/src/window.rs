//! Cutting one key's measurement times into sessions and windows: the rules, with no Arrow.
//!
//! ```
//! use probe_batch::window::{cut, Rules};
//! // Seconds; a gap over 1800 s starts a session; windows of at most 2, keeping windows of 2.
//! let rules = Rules { min_len: 2, max_gap_ticks: Some(1800), max_len: Some(2), stride: None };
//! let times = [0, 10, 20, 5000, 5010];
//! let (mut windows, mut short) = (Vec::new(), 0);
//! let sessions = cut(&times, &rules, |start, len| windows.push((start, len)), || short += 1);
//! assert_eq!(sessions, 2);
//! assert_eq!(windows, [(0, 2), (3, 2)]); // (start, length); the lone 20 is too short
//! assert_eq!(short, 1);
//! ```
//!
//! Times are integers in the time field's own unit (ticks); the gap limit is converted to ticks
//! once, so the per-measurement work is one subtraction and one comparison.

use std::time::Duration;

use arrow::datatypes::{DataType, TimeUnit};

pub use probe_core::time::IntUnit;

fn unit_nanos(u: &TimeUnit) -> i128 {
    match u {
        TimeUnit::Second => 1_000_000_000,
        TimeUnit::Millisecond => 1_000_000,
        TimeUnit::Microsecond => 1_000,
        TimeUnit::Nanosecond => 1,
    }
}

/// Nanoseconds in one tick of a time field of this type, and whether the type is a plain
/// integer (whose unit comes from `--time-unit`). `None` for types that are not times.
pub fn nanos_per_tick(data_type: &DataType, int_unit: Option<IntUnit>) -> Option<(i128, bool)> {
    let int = int_unit.unwrap_or(IntUnit::Second).nanos();
    match data_type {
        DataType::Timestamp(u, _) | DataType::Time32(u) | DataType::Time64(u) | DataType::Duration(u) => {
            Some((unit_nanos(u), false))
        }
        DataType::Date32 => Some((86_400 * 1_000_000_000, false)),
        DataType::Date64 => Some((1_000_000, false)),
        t if t.is_integer() => Some((int, true)),
        _ => None,
    }
}

/// The largest gap in ticks that stays within a session: gap * nanos_per_tick <= max_gap
/// holds exactly when gap <= floor(max_gap / nanos_per_tick), for integer gaps.
pub fn gap_ticks(max_gap: Duration, nanos_per_tick: i128) -> i128 {
    let nanos = i128::try_from(max_gap.as_nanos()).unwrap_or(i128::MAX);
    nanos / nanos_per_tick.max(1)
}

/// How one key is cut.
#[derive(Debug, Clone, Copy)]
pub struct Rules {
    /// Keys and windows shorter than this are dropped.
    pub min_len: usize,
    /// A gap above this many ticks starts a new session.
    pub max_gap_ticks: Option<i128>,
    /// Longest window; `None` = the whole session.
    pub max_len: Option<usize>,
    /// Distance between window starts; `None` = `max_len`.
    pub stride: Option<usize>,
}

/// Cut one key's times (ascending, none null) into windows.
///
/// Calls `window(start, len)` for each kept window and `short()` for each window dropped by
/// `min_len`, in order; returns the number of sessions. The caller drops short keys first.
pub fn cut(times: &[i64], rules: &Rules, mut window: impl FnMut(usize, usize), mut short: impl FnMut()) -> u64 {
    let mut sessions = 0;
    let mut session_start = 0;
    let n = times.len();
    for i in 1..=n {
        let ends = i == n
            || match rules.max_gap_ticks {
                Some(g) => times[i] as i128 - times[i - 1] as i128 > g,
                None => false,
            };
        if !ends {
            continue;
        }
        sessions += 1;
        let len = i - session_start;
        let max_len = rules.max_len.unwrap_or(len).max(1);
        let stride = rules.stride.unwrap_or(max_len).clamp(1, max_len);
        let mut start = 0;
        loop {
            let end = (start + max_len).min(len);
            if end - start >= rules.min_len {
                window(session_start + start, end - start);
            } else {
                short();
            }
            if end == len {
                break;
            }
            start += stride;
        }
        session_start = i;
    }
    sessions
}

#[cfg(test)]
mod tests {
    use super::*;

    fn windows(times: &[i64], rules: Rules) -> (Vec<(usize, usize)>, u64, u64) {
        let mut out = Vec::new();
        let mut short = 0;
        let s = cut(times, &rules, |a, b| out.push((a, b)), || short += 1);
        (out, s, short)
    }

    #[test]
    fn stride_overlap_ends_at_the_first_window_reaching_the_end() {
        let t: Vec<i64> = (0..10).collect();
        let r = Rules { min_len: 1, max_gap_ticks: None, max_len: Some(8), stride: Some(4) };
        assert_eq!(windows(&t, r), (vec![(0, 8), (4, 6)], 1, 0));
        let r = Rules { min_len: 1, max_gap_ticks: None, max_len: Some(4), stride: None };
        assert_eq!(windows(&t, r), (vec![(0, 4), (4, 4), (8, 2)], 1, 0));
        let r = Rules { min_len: 3, max_gap_ticks: None, max_len: Some(4), stride: None };
        assert_eq!(windows(&t, r), (vec![(0, 4), (4, 4)], 1, 1));
    }

    #[test]
    fn gaps_cut_sessions() {
        let t = [0, 10, 20, 31, 40, 100];
        let r = Rules { min_len: 1, max_gap_ticks: Some(10), max_len: None, stride: None };
        assert_eq!(windows(&t, r), (vec![(0, 3), (3, 2), (5, 1)], 3, 0));
    }

    #[test]
    fn gap_limit_in_ticks() {
        assert_eq!(gap_ticks(Duration::from_secs(90), 1_000_000_000), 90);
        assert_eq!(gap_ticks(Duration::from_secs(90), 1_000), 90_000_000);
        assert_eq!(gap_ticks(Duration::from_secs(90), 86_400 * 1_000_000_000), 0);
        assert_eq!(gap_ticks(Duration::from_millis(1500), 1_000_000_000), 1);
    }
}
