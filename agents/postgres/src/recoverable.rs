//! How far a cell's Postgres can be recovered from one repository: the
//! newest base backup, and the newest WAL segment reachable from its start
//! without a gap, with the time that segment was archived. Compliance
//! measures RPO exposure from that time.
//!
//! In a copy of the repository, objects carry the time they were copied,
//! which is later than when Postgres handed them over; callers pass the
//! source's archive times (`wal_times` of the primary) so that a copy is
//! never credited with a fresher point than its content has.

use std::collections::{BTreeMap, HashMap};

use time::OffsetDateTime;

use lifeboat_repository::Repository;

use crate::archive::WAL_PREFIX;
use crate::backup::PgError;
use crate::backup::KIND_FULL;
use crate::lsn::{Lsn, SEGMENT_SIZE};
use crate::walname::WalFile;

pub use lifeboat_api::recovery::{BackupPoint, PgRecoverable};

/// Postgres had written WAL up to `written` at `checked`: if the location's
/// newest segment covers it, the location holds everything up to `checked`.
pub fn credit_written(point: &mut PgRecoverable, written: Lsn, checked: OffsetDateTime) {
    let Some(Some(WalFile::Segment { segno, .. })) = point.last_segment.as_deref().map(WalFile::parse) else { return };
    if written.0 <= (segno + 1) * SEGMENT_SIZE {
        point.caught_up = true;
        point.recoverable_to = point.recoverable_to.max(Some(checked));
    }
}

/// How far Postgres has written WAL: the insert position on a primary, what
/// it received on a standby.
pub async fn written_through(server: &crate::conninfo::Server) -> Result<Lsn, PgError> {
    let client = server.connect().await?;
    let sql = "select (case when pg_is_in_recovery() then pg_last_wal_receive_lsn() else pg_current_wal_insert_lsn() end)::text";
    let row = client.query_one(sql, &[]).await.map_err(|source| PgError::Query { context: "reading the WAL position".into(), source })?;
    let text: Option<String> = row.get(0);
    text.as_deref()
        .and_then(|t| t.parse().ok())
        .ok_or_else(|| PgError::Config("Postgres reported no WAL position (a standby that has received nothing?)".into()))
}

/// Archive time of every WAL segment of `cell`, by file name.
pub async fn wal_times(repo: &Repository, cell: &str) -> Result<HashMap<String, OffsetDateTime>, PgError> {
    let prefix = format!("{WAL_PREFIX}{cell}/");
    let mut out = HashMap::new();
    for meta in repo.store().list(&prefix).await.map_err(lifeboat_repository::RepoError::from)? {
        let name = &meta.path.as_str()[prefix.len()..];
        if let (Some(WalFile::Segment { .. }), Some(t)) = (WalFile::parse(name), meta.modified) {
            out.insert(name.to_string(), t);
        }
    }
    Ok(out)
}

/// What `repo` can recover of `cell`, given `here`, the `wal_times` of
/// `repo`. `source_times` (the primary's `wal_times`) date segments found
/// here; without it, this store's own modification times are used.
pub async fn recoverable(
    repo: &Repository,
    cell: &str,
    here: &HashMap<String, OffsetDateTime>,
    source_times: Option<&HashMap<String, OffsetDateTime>>,
) -> Result<PgRecoverable, PgError> {
    let backups = crate::backup::list_backups(repo, cell).await?;
    let point = |m: &lifeboat_repository::manifest::Manifest| BackupPoint { id: m.id.clone(), finished: m.finished };
    let last_full = backups.iter().rev().find(|(m, _)| m.kind == KIND_FULL).map(|(m, _)| point(m));
    let last_incremental = backups.iter().rev().find(|(m, _)| m.kind != KIND_FULL).map(|(m, _)| point(m));
    let mut result = PgRecoverable {
        backups: backups.len() as u64,
        last_full,
        last_incremental,
        last_segment: None,
        recoverable_to: None,
        caught_up: false,
    };
    let Some((_, newest)) = backups.last() else { return Ok(result) };

    // Segment number -> (name, archive time), over every timeline: after a
    // promotion the chain continues on the next timeline at the same number.
    let mut by_segno: BTreeMap<u64, (String, OffsetDateTime)> = BTreeMap::new();
    for (name, local_time) in here {
        let Some(WalFile::Segment { segno, .. }) = WalFile::parse(name) else { continue };
        let t = source_times.and_then(|s| s.get(name)).copied().unwrap_or(*local_time);
        let slot = by_segno.entry(segno).or_insert_with(|| (name.clone(), t));
        if name > &slot.0 {
            *slot = (name.clone(), t);
        }
    }
    let mut segno = newest.start_lsn.segno();
    let mut last = None;
    while let Some((name, t)) = by_segno.get(&segno) {
        last = Some((name.clone(), *t));
        segno += 1;
    }
    // Restorable only once the WAL up to the backup's stop is here.
    if let Some((name, t)) = last {
        if segno > newest.stop_lsn.segno() {
            result.last_segment = Some(name);
            result.recoverable_to = Some(t);
        }
    }
    Ok(result)
}
