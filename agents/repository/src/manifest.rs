//! Backup manifests: what a backup contains and the chunks that hold it.
//!
//! A manifest is written last; a backup exists exactly when its manifest
//! does. The data of a backup is one logical byte stream (the concatenation
//! of its regular files in entry order) cut into content-defined chunks, so
//! small files share chunks and unchanged regions dedup across backups.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

pub const MANIFEST_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub version: u32,
    pub id: String,
    pub cell: String,
    /// `files` for configuration backups (Postgres and Kafka kinds come later).
    pub kind: String,
    #[serde(with = "time::serde::rfc3339")]
    pub started: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub finished: OffsetDateTime,
    pub tool_version: String,
    /// Repository key id at the time of the backup (`None`: unencrypted).
    pub key_id: Option<String>,
    /// What was backed up, for people (e.g. host:path).
    pub source: String,
    pub entries: Vec<Entry>,
    pub chunks: Vec<ChunkRef>,
    pub totals: Totals,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Kind-specific details (Postgres LSNs and timeline, Kafka offsets),
    /// defined by the crate that owns the kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// Relative, '/'-separated, no '.' or '..' components.
    pub path: String,
    #[serde(rename = "type")]
    pub kind: EntryKind,
    /// Permission bits (including setuid/setgid/sticky).
    pub mode: u32,
    /// Bytes of content in the stream (regular files only).
    #[serde(default)]
    pub size: u64,
    /// Modification time, seconds since the epoch (regular files).
    #[serde(default)]
    pub mtime: i64,
    /// Symlink target, stored as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// For a file reused from an earlier backup (incrementals): where its
    /// bytes are. Such files are not part of this backup's own stream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extent: Option<Extent>,
    /// Hex BLAKE3 of the file's content as read (regular files; absent in
    /// older manifests). A delta restore keeps an existing file only when
    /// its content hashes to this. (BLAKE3, not SHA-256: hashed on the
    /// backup's reading thread, SHA-256 cost a quarter of ingest speed.)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blake3: Option<String>,
}

/// A file's bytes inside chunks stored by an earlier backup: they start
/// `skip` bytes into the first chunk and run for the entry's `size`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Extent {
    pub skip: u32,
    pub chunks: Vec<ChunkRef>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryKind {
    File,
    Dir,
    Symlink,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChunkRef {
    /// Hex chunk id (SHA-256, or HMAC-SHA-256 in encrypted repositories).
    pub id: String,
    /// Plaintext length.
    pub size: u32,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Totals {
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    /// Content bytes (sum of file sizes).
    pub bytes: u64,
    pub chunks: u64,
    /// Chunks this backup uploaded (the rest already existed).
    pub new_chunks: u64,
    /// Stored (compressed, encrypted) bytes this backup uploaded.
    pub new_stored_bytes: u64,
    /// Entries skipped (sockets, devices, fifos), with a warning at backup time.
    #[serde(default)]
    pub skipped: u64,
    /// Files reused unread from the parent backup (incrementals).
    #[serde(default)]
    pub reused_files: u64,
}

impl Totals {
    /// As a job's result reports them.
    pub fn to_wire(&self) -> lifeboat_api::results::BackupTotals {
        let Totals { files, dirs, symlinks, bytes, chunks, new_chunks, new_stored_bytes, skipped, reused_files } = *self;
        lifeboat_api::results::BackupTotals { files, dirs, symlinks, bytes, chunks, new_chunks, new_stored_bytes, skipped, reused_files }
    }
}

impl Manifest {
    /// Every chunk this backup needs: its stream and its files' extents.
    pub fn chunk_ids(&self) -> impl Iterator<Item = &str> {
        self.chunks.iter().chain(self.entries.iter().filter_map(|e| e.extent.as_ref()).flat_map(|x| x.chunks.iter())).map(|c| c.id.as_str())
    }

    /// Where each regular file's bytes are, as an extent over chunks: its own
    /// stream's chunks, or the extent it reused. Used to build incrementals.
    pub fn file_extents(&self) -> std::collections::HashMap<&str, Extent> {
        let mut starts = Vec::with_capacity(self.chunks.len());
        let mut at = 0u64;
        for c in &self.chunks {
            starts.push(at);
            at += c.size as u64;
        }
        let mut out = std::collections::HashMap::new();
        let mut offset = 0u64;
        for e in self.entries.iter().filter(|e| e.kind == EntryKind::File) {
            if let Some(x) = &e.extent {
                out.insert(e.path.as_str(), x.clone());
                continue;
            }
            let first = starts.partition_point(|&s| s <= offset).saturating_sub(1);
            let end = offset + e.size;
            let mut chunks = Vec::new();
            let mut i = first;
            while i < self.chunks.len() && (starts[i] < end || chunks.is_empty()) {
                chunks.push(self.chunks[i].clone());
                i += 1;
            }
            let skip = offset.saturating_sub(*starts.get(first).unwrap_or(&0)) as u32;
            out.insert(e.path.as_str(), Extent { skip, chunks });
            offset = end;
        }
        out
    }
}

/// A new backup id: sortable by time (to the millisecond), unique by a random suffix.
pub fn new_backup_id(kind: &str, at: OffsetDateTime) -> String {
    let fmt = time::macros::format_description!("[year][month][day]T[hour][minute][second].[subsecond digits:3]Z");
    let stamp = at.to_offset(time::UtcOffset::UTC).format(&fmt).expect("formatting a UTC time cannot fail");
    format!("{stamp}-{kind}-{:06x}", rand::random::<u32>() & 0xff_ffff)
}

/// Check that an entry path cannot escape the directory it is restored into.
pub fn validate_entry_path(path: &str) -> Result<(), String> {
    if path.is_empty() || path.starts_with('/') || path.contains('\0') {
        return Err(format!("entry path {path:?} is empty, absolute or contains NUL"));
    }
    for part in path.split('/') {
        if part.is_empty() || part == "." || part == ".." {
            return Err(format!("entry path {path:?} has an empty, '.' or '..' component"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_sort_by_time() {
        let a = new_backup_id("files", time::macros::datetime!(2026-01-02 03:04:05.998 UTC));
        let b = new_backup_id("files", time::macros::datetime!(2026-01-02 03:04:05.999 UTC));
        assert!(a.starts_with("20260102T030405.998Z-files-"), "{a}");
        assert!(a < b);
    }

    #[test]
    fn escaping_paths_are_refused() {
        for bad in ["", "/etc/passwd", "a/../../b", "./a", "a//b", "a/"] {
            assert!(validate_entry_path(bad).is_err(), "{bad:?}");
        }
        assert!(validate_entry_path("etc/app/config.toml").is_ok());
    }
}
