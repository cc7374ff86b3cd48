//! Cron schedules (5 fields, or 6 with seconds first; UTC): parsing, the next runs, and the longest
//! gap between runs (what a schedule can promise as a recovery point).
//! The cron library speaks `chrono`; this module is the only place that
//! does, converting at its edge.

use std::time::Duration;

use croner::Cron;
use time::OffsetDateTime;

/// A parsed cron expression: 5 fields, or 6 with seconds first (for
/// schedules finer than a minute, e.g. a test's `*/5 * * * * *`).
pub fn parse(expr: &str) -> Result<Cron, String> {
    if !matches!(expr.split_whitespace().count(), 5 | 6) {
        return Err(format!(
            "{expr:?} is not a cron expression of 5 fields (minute hour day-of-month month day-of-week, e.g. \"0 2 * * *\") or 6 (seconds first)"
        ));
    }
    Cron::new(expr).with_seconds_optional().parse().map_err(|e| format!("{expr:?} is not a valid cron expression: {e}"))
}

fn to_chrono(t: OffsetDateTime) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::from_timestamp(t.unix_timestamp(), t.nanosecond())
}

fn from_chrono(t: chrono::DateTime<chrono::Utc>) -> Option<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(t.timestamp()) * 1_000_000_000 + i128::from(t.timestamp_subsec_nanos())).ok()
}

/// The next run strictly after `from`.
pub fn next_after(cron: &Cron, from: OffsetDateTime) -> Option<OffsetDateTime> {
    cron.find_next_occurrence(&to_chrono(from)?, false).ok().and_then(from_chrono)
}

/// The longest time between two consecutive runs over the next 62 days
/// (enough for monthly schedules), starting from `from`.
pub fn longest_gap(cron: &Cron, from: OffsetDateTime) -> Option<Duration> {
    let horizon = from + time::Duration::days(62);
    let mut prev = next_after(cron, from)?;
    let mut longest = Duration::ZERO;
    for _ in 0..20_000 {
        let Some(next) = next_after(cron, prev) else { break };
        if next > horizon {
            break;
        }
        longest = longest.max((next - prev).try_into().unwrap_or_default());
        prev = next;
    }
    (longest > Duration::ZERO).then_some(longest)
}

/// [`longest_gap`] of the expression `expr` (None when it does not parse),
/// remembered for an hour: status reads the same few schedules for every
/// cell and location, and a minute schedule is 20 000 steps to walk.
/// Within an hour the 62-day horizon moves too little to change a gap.
pub fn longest_gap_of(expr: &str, now: OffsetDateTime) -> Option<Duration> {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};
    type Gaps = HashMap<String, (OffsetDateTime, Option<Duration>)>;
    static GAPS: OnceLock<Mutex<Gaps>> = OnceLock::new();
    let gaps = GAPS.get_or_init(Default::default);
    let fresh = |at: OffsetDateTime| (now - at).unsigned_abs() < Duration::from_secs(3600);
    if let Some((at, gap)) = gaps.lock().unwrap_or_else(|e| e.into_inner()).get(expr) {
        if fresh(*at) {
            return *gap;
        }
    }
    let gap = parse(expr).ok().and_then(|c| longest_gap(&c, now));
    gaps.lock().unwrap_or_else(|e| e.into_inner()).insert(expr.to_string(), (now, gap));
    gap
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> OffsetDateTime {
        crate::clock::parse(s).unwrap()
    }

    #[test]
    fn gaps_of_common_schedules() {
        let from = at("2026-11-27T00:00:00Z");
        assert_eq!(longest_gap(&parse("0 * * * *").unwrap(), from), Some(Duration::from_secs(3600)));
        assert_eq!(longest_gap(&parse("*/5 * * * *").unwrap(), from), Some(Duration::from_secs(300)));
        assert_eq!(longest_gap(&parse("0 2 * * *").unwrap(), from), Some(Duration::from_secs(86400)));
        // Monthly: the longest month in the window.
        assert_eq!(longest_gap(&parse("0 3 1 * *").unwrap(), from), Some(Duration::from_secs(31 * 86400)));
        assert_eq!(next_after(&parse("0 2 * * *").unwrap(), from), Some(at("2026-11-27T02:00:00Z")));
    }

    #[test]
    fn remembered_gaps_are_the_gaps() {
        let from = at("2026-11-27T00:00:00Z");
        for expr in ["* * * * *", "0 3 1 * *", "*/5 * * * *"] {
            let walked = longest_gap(&parse(expr).unwrap(), from);
            assert_eq!(longest_gap_of(expr, from), walked, "{expr}");
            assert_eq!(longest_gap_of(expr, from + time::Duration::minutes(5)), walked, "{expr}, remembered");
        }
        assert_eq!(longest_gap_of("not cron", from), None);
    }

    #[test]
    fn bad_expressions() {
        assert!(parse("0 2 * *").unwrap_err().contains("5 fields"));
        assert!(parse("*/5 * * * * *").is_ok(), "seconds first");
        assert!(parse("61 * * * *").is_err());
        assert!(parse("0 0 * * * * *").is_err(), "7 fields");
    }
}
