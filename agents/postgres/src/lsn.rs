//! [`Lsn`]: a WAL position, `X/Y` in Postgres' text form. No I/O.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::walname::segment_name;

/// WAL segment size this build supports (Postgres' default).
pub const SEGMENT_SIZE: u64 = 16 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct Lsn(pub u64);

impl Lsn {
    /// The segment holding the byte just before this position (where a
    /// record ending here lives).
    pub fn segno_before(self) -> u64 {
        self.0.saturating_sub(1) / SEGMENT_SIZE
    }

    pub fn segno(self) -> u64 {
        self.0 / SEGMENT_SIZE
    }

    pub fn segment_name(self, timeline: u32) -> String {
        segment_name(timeline, self.segno())
    }
}

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xffff_ffff)
    }
}

impl FromStr for Lsn {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?} is not an LSN (expected X/Y in hex, e.g. 0/3000060)");
        let (hi, lo) = s.trim().split_once('/').ok_or_else(bad)?;
        let hi = u32::from_str_radix(hi, 16).map_err(|_| bad())?;
        let lo = u32::from_str_radix(lo, 16).map_err(|_| bad())?;
        Ok(Lsn(((hi as u64) << 32) | lo as u64))
    }
}

impl From<Lsn> for String {
    fn from(l: Lsn) -> String {
        l.to_string()
    }
}

impl TryFrom<String> for Lsn {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_prints_and_maps_to_segments() {
        let l: Lsn = "1/2000028".parse().unwrap();
        assert_eq!(l.to_string(), "1/2000028");
        assert_eq!(l.segment_name(1), "000000010000000100000002");
        let boundary: Lsn = "0/3000000".parse().unwrap();
        assert_eq!(boundary.segno_before(), 2, "a record ending at a boundary lives in the previous segment");
        assert!("x/1".parse::<Lsn>().is_err());
    }
}
