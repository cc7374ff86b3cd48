//! WAL file names, as Postgres writes them into `pg_wal` and hands them to
//! `archive_command` / `restore_command`. Pure functions, no I/O.
//!
//! Segment numbers assume the default 16 MiB `wal_segment_size` (256
//! segments per "log" id); clusters initialised with another size are not
//! supported yet and are refused by name length checks elsewhere.

use std::fmt;

/// Segments per 4 GiB "log" id with 16 MiB segments.
pub const SEGMENTS_PER_LOG: u64 = 0x1_0000_0000 / (16 << 20);

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum WalFile {
    /// A complete segment: `TTTTTTTTLLLLLLLLSSSSSSSS`.
    Segment { timeline: u32, segno: u64 },
    /// The last, incomplete segment of a timeline that was left at promotion.
    Partial { timeline: u32, segno: u64 },
    /// `TTTTTTTT.history`: the timeline's ancestry.
    History { timeline: u32 },
    /// `…SSSSSSSS.XXXXXXXX.backup`: a backup history file.
    BackupLabel { timeline: u32, segno: u64, offset: u32 },
}

fn hex_u32(s: &str) -> Option<u32> {
    (s.len() == 8 && s.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_lowercase())).then(|| u32::from_str_radix(s, 16).ok()).flatten()
}

fn segment_parts(s: &str) -> Option<(u32, u64)> {
    if s.len() != 24 {
        return None;
    }
    let timeline = hex_u32(&s[0..8])?;
    let log = hex_u32(&s[8..16])? as u64;
    let seg = hex_u32(&s[16..24])? as u64;
    if seg >= SEGMENTS_PER_LOG {
        return None;
    }
    Some((timeline, log * SEGMENTS_PER_LOG + seg))
}

impl WalFile {
    /// Parse a file name; `None` for anything Postgres would not archive.
    pub fn parse(name: &str) -> Option<WalFile> {
        if let Some(base) = name.strip_suffix(".partial") {
            let (timeline, segno) = segment_parts(base)?;
            return Some(WalFile::Partial { timeline, segno });
        }
        if let Some(tli) = name.strip_suffix(".history") {
            return Some(WalFile::History { timeline: hex_u32(tli)? });
        }
        if let Some(rest) = name.strip_suffix(".backup") {
            let (seg, offset) = rest.split_once('.')?;
            let (timeline, segno) = segment_parts(seg)?;
            return Some(WalFile::BackupLabel { timeline, segno, offset: hex_u32(offset)? });
        }
        let (timeline, segno) = segment_parts(name)?;
        Some(WalFile::Segment { timeline, segno })
    }

    pub fn timeline(&self) -> u32 {
        match *self {
            WalFile::Segment { timeline, .. }
            | WalFile::Partial { timeline, .. }
            | WalFile::History { timeline }
            | WalFile::BackupLabel { timeline, .. } => timeline,
        }
    }
}

/// The file name of segment `segno` on `timeline`.
pub fn segment_name(timeline: u32, segno: u64) -> String {
    format!("{timeline:08X}{:08X}{:08X}", segno / SEGMENTS_PER_LOG, segno % SEGMENTS_PER_LOG)
}

impl fmt::Display for WalFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            WalFile::Segment { timeline, segno } => f.write_str(&segment_name(timeline, segno)),
            WalFile::Partial { timeline, segno } => write!(f, "{}.partial", segment_name(timeline, segno)),
            WalFile::History { timeline } => write!(f, "{timeline:08X}.history"),
            WalFile::BackupLabel { timeline, segno, offset } => {
                write!(f, "{}.{offset:08X}.backup", segment_name(timeline, segno))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_every_kind() {
        for name in [
            "000000010000000000000001",
            "0000000100000001000000FF",
            "000000020000000A00000003.partial",
            "00000002.history",
            "000000010000000000000002.00000028.backup",
        ] {
            let parsed = WalFile::parse(name).unwrap_or_else(|| panic!("{name}"));
            assert_eq!(parsed.to_string(), name);
        }
        assert_eq!(WalFile::parse("0000000100000001000000FF"), Some(WalFile::Segment { timeline: 1, segno: 256 + 255 }));
    }

    #[test]
    fn refuses_what_postgres_would_not_archive() {
        for name in ["", "RECOVERYXLOG", "00000001000000000000001", "000000010000000000000100", "0000000100000000000000ab", "x.history"] {
            assert_eq!(WalFile::parse(name), None, "{name}");
        }
    }
}
