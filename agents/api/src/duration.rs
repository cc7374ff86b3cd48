//! Durations for people and on the wire, one way everywhere: whole units,
//! largest first (`35d`, `7d`, `1h 30m`, `250ms`), which humantime and
//! every Lifeboat flag read back. Approximate figures (an exposure, an
//! age) keep their two largest units (`3h 27m`).

use std::time::Duration;

const UNITS: [(&str, u128); 5] = [("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1_000), ("ms", 1)];

/// Exactly, to the millisecond.
pub fn format(d: Duration) -> String {
    let mut rest = d.as_millis();
    let mut parts = Vec::new();
    for (unit, size) in UNITS {
        let n = rest / size;
        rest %= size;
        if n > 0 {
            parts.push(format!("{n}{unit}"));
        }
    }
    if parts.is_empty() {
        "0s".into()
    } else {
        parts.join(" ")
    }
}

/// Its largest unit and the one right after it, rounded down (`2d 4h`,
/// `17m 3s`, `42s`).
pub fn format_rounded(d: Duration) -> String {
    let ms = d.as_millis();
    let Some(i) = UNITS.iter().position(|(_, size)| ms >= *size) else { return "0s".into() };
    let (unit, size) = UNITS[i];
    let mut out = format!("{}{unit}", ms / size);
    if let Some((next, next_size)) = UNITS.get(i + 1) {
        let n = ms % size / next_size;
        if n > 0 {
            out.push_str(&format!(" {n}{next}"));
        }
    }
    out
}

/// Parse what [`format`] writes, and anything humantime reads.
pub fn parse(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim()).map_err(|e| format!("{text:?} is not a duration ({e}); write e.g. 90s, 15m, 24h or 35d"))
}

/// `#[serde(with = "lifeboat_api::duration::serde")]` for `Duration`.
pub mod serde {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format(*d))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        super::parse(&text).map_err(serde::de::Error::custom)
    }

    /// The same for `Option<Duration>` (`null` or absent: none).
    pub mod option {
        use std::time::Duration;

        use serde::{Deserialize, Deserializer, Serializer};

        pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
            match d {
                Some(d) => s.serialize_str(&super::super::format(*d)),
                None => s.serialize_none(),
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
            Option::<String>::deserialize(d)?.map(|t| super::super::parse(&t).map_err(serde::de::Error::custom)).transpose()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_units_largest_first() {
        let s = Duration::from_secs;
        assert_eq!(format(s(35 * 86400)), "35d");
        assert_eq!(format(s(7 * 86400)), "7d");
        assert_eq!(format(s(5400)), "1h 30m");
        assert_eq!(format(s(86400 + 1)), "1d 1s");
        assert_eq!(format(Duration::from_millis(1500)), "1s 500ms");
        assert_eq!(format(Duration::ZERO), "0s");
        for d in [s(35 * 86400), s(5400), s(86401), Duration::from_millis(250)] {
            assert_eq!(parse(&format(d)).unwrap(), d, "{}", format(d));
        }
    }

    #[test]
    fn rounded_to_two_units() {
        let s = Duration::from_secs;
        assert_eq!(format_rounded(s(3 * 3600 + 27 * 60 + 12)), "3h 27m");
        assert_eq!(format_rounded(s(2 * 86400 + 4 * 3600 + 59)), "2d 4h");
        assert_eq!(format_rounded(s(86400 + 59)), "1d");
        assert_eq!(format_rounded(s(42)), "42s");
        assert_eq!(format_rounded(Duration::from_millis(42_700)), "42s 700ms");
    }

    #[test]
    fn nonsense_is_refused_with_an_example() {
        let e = parse("35").unwrap_err();
        assert!(e.contains("write e.g. 90s"), "{e}");
    }
}
