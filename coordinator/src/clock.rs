//! Instants in the coordinator: `time::OffsetDateTime` in UTC, written as
//! RFC 3339 with milliseconds (`2026-11-27T05:00:00.000Z`), the format of
//! the state database and of every JSON answer.

use anyhow::{Context, Result};
use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};

pub fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

/// `t` in UTC, to the millisecond.
pub fn ts(t: OffsetDateTime) -> String {
    let format = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
    t.to_offset(UtcOffset::UTC).format(&format).expect("formatting a UTC instant")
}

pub fn parse_ts(s: &str) -> Result<OffsetDateTime> {
    parse(s).with_context(|| format!("bad timestamp {s:?} in the state database"))
}

/// An RFC 3339 instant, in UTC.
pub fn parse(s: &str) -> Result<OffsetDateTime, time::error::Parse> {
    Ok(OffsetDateTime::parse(s, &Rfc3339)?.to_offset(UtcOffset::UTC))
}

/// Seconds from `earlier` to `later` (negative when it is not earlier).
pub fn seconds_between(earlier: OffsetDateTime, later: OffsetDateTime) -> f64 {
    (later - earlier).as_seconds_f64()
}

/// `#[serde(with = "crate::clock::ms")]`: an instant as [`ts`] writes it.
pub mod ms {
    use serde::{Deserialize, Deserializer, Serializer};
    use time::OffsetDateTime;

    pub fn serialize<S: Serializer>(t: &OffsetDateTime, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::ts(*t))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<OffsetDateTime, D::Error> {
        super::parse(&String::deserialize(d)?).map_err(serde::de::Error::custom)
    }

    /// The same for `Option<OffsetDateTime>`.
    pub mod option {
        use serde::{Deserialize, Deserializer, Serializer};
        use time::OffsetDateTime;

        pub fn serialize<S: Serializer>(t: &Option<OffsetDateTime>, s: S) -> Result<S::Ok, S::Error> {
            match t {
                Some(t) => s.serialize_str(&super::super::ts(*t)),
                None => s.serialize_none(),
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<OffsetDateTime>, D::Error> {
            Option::<String>::deserialize(d)?.map(|t| super::super::parse(&t).map_err(serde::de::Error::custom)).transpose()
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn milliseconds_in_utc() {
        let t = super::parse("2026-11-27T06:00:00.123456+01:00").unwrap();
        assert_eq!(super::ts(t), "2026-11-27T05:00:00.123Z");
        assert_eq!(super::parse_ts(&super::ts(t)).unwrap(), t.replace_nanosecond(123_000_000).unwrap());
    }
}
