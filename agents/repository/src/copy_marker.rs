//! The marker a complete geo-copy pass leaves in its destination: when the
//! pass started and finished, where it copied from, and per cell the newest
//! WAL segment, base backup and Kafka snapshot it brought over. It lives in
//! the destination (`copy-marker.json`, sealed like every object, replaced
//! by the next complete pass; never copied on), so how current a copy is
//! can be read from the copy alone: by an agent that restarted (its own
//! record of passes is in memory), by a recovery site reading a lost
//! cell's copy, by a coordinator that lost its own state. A pass that left
//! any object behind writes none: the marker vouches for everything the
//! source held when the pass started.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use lifeboat_storage::{ObjectMeta, PutMode, StoreError};

use crate::error::{RepoError, Result};
use crate::format;
use crate::repo::Repository;

/// The marker's key in the destination.
pub const KEY: &str = "copy-marker.json";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CopyMarker {
    /// The source, as the copier describes it (no credentials).
    pub source: String,
    #[serde(with = "time::serde::rfc3339")]
    pub started: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub finished: OffsetDateTime,
    pub objects_copied: u64,
    pub bytes_copied: u64,
    /// Per cell, what the destination held of it once the pass ended.
    pub cells: BTreeMap<String, CellCopied>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CellCopied {
    /// The newest WAL segment (24 hex digits; timeline first, so newest is greatest).
    pub newest_wal: Option<String>,
    /// The newest Postgres base backup's id.
    pub newest_pg_backup: Option<String>,
    /// The newest Kafka snapshot's (or seal's) id.
    pub newest_kafka: Option<String>,
}

/// Per cell, the newest WAL segment, base backup and Kafka snapshot among `objects`.
pub fn newest_per_cell<'a>(objects: impl IntoIterator<Item = &'a ObjectMeta>) -> BTreeMap<String, CellCopied> {
    let mut cells: BTreeMap<String, CellCopied> = BTreeMap::new();
    let newest = |slot: &mut Option<String>, name: &str| {
        if slot.as_deref().is_none_or(|s| s < name) {
            *slot = Some(name.to_string());
        }
    };
    for m in objects {
        let key = m.path.as_str();
        if let Some((cell, name)) = key.strip_prefix("wal/").and_then(|r| r.split_once('/')) {
            if name.len() == 24 && name.bytes().all(|b| b.is_ascii_hexdigit()) {
                newest(&mut cells.entry(cell.to_string()).or_default().newest_wal, name);
            }
        } else if let Some((cell, id)) = key.strip_prefix(format::MANIFESTS).and_then(|r| r.split_once('/')) {
            let c = cells.entry(cell.to_string()).or_default();
            if id.contains("-kafka-") {
                newest(&mut c.newest_kafka, id);
            } else if id.contains("-pg-") {
                newest(&mut c.newest_pg_backup, id);
            }
        }
    }
    cells
}

/// Leave `marker` in `dst` (replacing the previous pass's).
pub async fn write(dst: &Repository, marker: &CopyMarker) -> Result<()> {
    let raw = serde_json::to_vec(marker).expect("a copy marker serialises");
    dst.put_sealed(&format::path(KEY), &raw, PutMode::Overwrite).await
}

/// The marker of the newest complete pass into `repo` (`None`: no pass
/// completed, or `repo` is a primary).
pub async fn read(repo: &Repository) -> Result<Option<CopyMarker>> {
    let path = format::path(KEY);
    match repo.read_object(&path).await {
        Ok(raw) => serde_json::from_slice(&raw).map(Some).map_err(|e| RepoError::Corrupt { key: KEY.into(), reason: e.to_string() }),
        Err(RepoError::Store(StoreError::NotFound { .. })) => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(key: &str) -> ObjectMeta {
        ObjectMeta { path: format::path(key), size: 1, modified: None, md5: None }
    }

    #[test]
    fn the_newest_of_each_kind_per_cell() {
        let objects: Vec<ObjectMeta> = [
            "wal/a/000000010000000000000003",
            "wal/a/000000020000000000000001",
            "wal/a/00000002.history",
            "wal/a/000000010000000000000002.partial",
            "manifests/a/20261201T000000.000Z-pg-full-aaaaaa",
            "manifests/a/20261202T000000.000Z-pg-incr-bbbbbb",
            "manifests/a/20261203T000000.000Z-kafka-seal-cccccc",
            "manifests/a/20261204T000000.000Z-files-dddddd",
            "manifests/b/20261201T000000.000Z-kafka-full-eeeeee",
            "chunks/ab/abcdef",
            "reports/a/000001-x.json",
        ]
        .iter()
        .map(|k| meta(k))
        .collect();
        let cells = newest_per_cell(&objects);
        assert_eq!(cells.len(), 2);
        assert_eq!(cells["a"].newest_wal.as_deref(), Some("000000020000000000000001"), "a newer timeline is newer");
        assert_eq!(cells["a"].newest_pg_backup.as_deref(), Some("20261202T000000.000Z-pg-incr-bbbbbb"));
        assert_eq!(cells["a"].newest_kafka.as_deref(), Some("20261203T000000.000Z-kafka-seal-cccccc"));
        assert_eq!(cells["b"], CellCopied { newest_kafka: Some("20261201T000000.000Z-kafka-full-eeeeee".into()), ..Default::default() });
    }
}
