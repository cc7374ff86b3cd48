//! Postgres retention: the repository's backup retention plus the WAL no
//! retained backup needs. Shown as a plan, then executed under the
//! exclusive repository lock; WAL from the start of the oldest retained
//! backup onwards is never deleted, and timeline history files are kept.

use time::OffsetDateTime;

use lifeboat_repository::lock::{LockGuard, LockKind};
use lifeboat_repository::retention::{self, Policy};
use lifeboat_repository::{format, RepoError, Repository};

use crate::archive::WAL_PREFIX;
use crate::backup::{PgDetails, PgError};
use crate::walname::WalFile;

/// The backups' plan and the WAL files no retained backup needs.
pub use lifeboat_api::results::RetentionReport as PgPlan;

/// Compute what `policy` deletes for `cell`'s Postgres backups and WAL.
pub async fn plan(repo: &Repository, cell: &str, policy: &Policy, now: OffsetDateTime) -> Result<PgPlan, PgError> {
    let backups = retention::plan(repo, Some(cell), policy, now).await?;
    let mut oldest: Option<(u64, String)> = None;
    for kept in backups.keep.iter().filter(|d| d.cell == cell && d.kind.starts_with("pg-")) {
        let manifest = repo.read_manifest(cell, &kept.id).await?;
        let Some(details) = PgDetails::of(&manifest) else { continue };
        let segno = details.start_lsn.segno();
        if oldest.as_ref().is_none_or(|(s, _)| segno < *s) {
            oldest = Some((segno, details.start_wal));
        }
    }
    let mut delete_wal = Vec::new();
    if let Some((keep_from, _)) = &oldest {
        let prefix = format!("{WAL_PREFIX}{cell}/");
        for meta in repo.store().list(&prefix).await.map_err(RepoError::from)? {
            let name = &meta.path.as_str()[prefix.len()..];
            let old = match WalFile::parse(name) {
                Some(WalFile::Segment { segno, .. } | WalFile::Partial { segno, .. } | WalFile::BackupLabel { segno, .. }) => {
                    segno < *keep_from
                }
                _ => false, // history files and anything unknown stay
            };
            if old {
                delete_wal.push(name.to_string());
            }
        }
    }
    delete_wal.sort();
    Ok(PgPlan { backups, keep_wal_from: oldest.map(|(_, name)| name), delete_wal })
}

/// Recompute the plan under the exclusive lock and carry it out: manifests,
/// then chunks, then WAL.
pub async fn execute(repo: &Repository, cell: &str, policy: &Policy, now: OffsetDateTime) -> Result<PgPlan, PgError> {
    format::validate_cell(cell)?;
    let lock = LockGuard::acquire(repo, LockKind::Exclusive, &format!("postgres retention of cell {cell}")).await?;
    let result = async {
        let mut plan = plan(repo, cell, policy, now).await?;
        retention::apply(repo, &mut plan.backups).await?;
        if !plan.backups.retained.is_empty() {
            // The kept backups need their WAL: none goes this time.
            plan.backups.retained_objects += plan.delete_wal.len() as u64;
            plan.delete_wal.clear();
        }
        let mut deleted = Vec::new();
        for name in std::mem::take(&mut plan.delete_wal) {
            match retention::delete_unless_retained(repo, &format::path(&format!("{WAL_PREFIX}{cell}/{name}"))).await? {
                true => deleted.push(name),
                false => plan.backups.retained_objects += 1,
            }
        }
        plan.delete_wal = deleted;
        Ok(plan)
    }
    .await;
    lock.release_after(result).await
}
