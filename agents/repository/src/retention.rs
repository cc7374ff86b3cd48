//! Retention: compute a deletion plan, show it, then execute it.
//!
//! A backup is kept when it is among the newest `keep_last` of its cell and
//! kind (or series), finished within `keep_within`, or under a legal hold. Chunks are
//! deleted only when no kept manifest (of any cell) references them; this
//! also sweeps chunks left by interrupted runs. Execution holds the exclusive
//! repository lock, recomputes the plan under it, deletes manifests first and
//! chunks after, so no surviving manifest ever points at a deleted chunk.
//! On `file://` it also removes the temporary files of interrupted writes
//! that nothing has touched for [`LEFTOVER_IDLE`].

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use lifeboat_storage::{ObjectPath, PutMode};

use crate::error::{RepoError, Result};
use crate::format;
use crate::lock::{LockGuard, LockKind};
use crate::repo::{BackupRef, Repository};

/// What a retention run keeps: per kind (or series), the newest
/// `keep_last`, and everything younger than `keep_within` (or its kind's
/// own age in `keep_within_kind`).
#[derive(Debug, Clone)]
pub struct Policy {
    pub keep_last: usize,
    pub keep_within: Duration,
    /// Kinds kept for another age than `keep_within` (e.g. hourly
    /// incrementals 7 days beside daily fulls 35 days).
    pub keep_within_kind: BTreeMap<String, Duration>,
    /// Only backups whose kind starts with this (e.g. `pg-`); others are kept.
    pub kind_prefix: Option<String>,
    /// Count `keep_last` over all kinds the prefix selects together (Kafka
    /// snapshots, full or incremental, are one series), not per kind.
    pub one_series: bool,
    /// A kind whose backups are deltas a later backup of the series folds
    /// in (Kafka seals): one goes once a backup of another kind started
    /// after it finished and it is older than its kind's `keep_within`
    /// (a restore that started from it may still read it); never before it
    /// is folded, and none counts for `keep_last`.
    pub folded_kind: Option<String>,
}

impl Default for Policy {
    /// The platform default for daily fulls: 35 days, and never fewer than 3.
    fn default() -> Self {
        Policy {
            keep_last: 3,
            keep_within: Duration::from_secs(35 * 86400),
            keep_within_kind: BTreeMap::new(),
            kind_prefix: None,
            one_series: false,
            folded_kind: None,
        }
    }
}

impl Policy {
    /// How long backups of `kind` are kept.
    pub fn keep_within(&self, kind: &str) -> Duration {
        self.keep_within_kind.get(kind).copied().unwrap_or(self.keep_within)
    }
}

pub use lifeboat_api::results::{RetentionDecision as Decision, RetentionPlan as Plan};

/// A temporary file nothing has written to for this long is a leftover of
/// an interrupted write (a write in progress keeps touching its file) and
/// goes with the garbage. A day leaves room for any write that merely
/// stalls.
pub const LEFTOVER_IDLE: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Hold {
    pub reason: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created: OffsetDateTime,
}

/// Put a backup under legal hold: retention will keep it until the hold is
/// removed. Where the store enforces legal holds (S3 Object Lock), the hold
/// object, the manifest and every chunk it needs get one too, so neither
/// deleting the hold object nor deleting the backup's objects directly
/// works for a credential that may not change legal holds.
pub async fn add_hold(repo: &Repository, cell: &str, id: &str, reason: &str) -> Result<()> {
    let manifest = repo.read_manifest(cell, id).await?; // the backup must exist
    let hold = Hold { reason: reason.into(), created: OffsetDateTime::now_utc() };
    let raw = serde_json::to_vec(&hold).expect("hold serialises");
    let hold_path = format::hold_path(cell, id);
    repo.put_sealed(&hold_path, &raw, PutMode::Overwrite).await?;
    let mut objects = vec![hold_path];
    objects.extend(backup_objects(cell, id, &manifest));
    let enforced = set_legal_holds(repo, &objects).await?;
    if enforced > 0 {
        tracing::info!(backup = %format!("{cell}/{id}"), objects = enforced, "legal hold set on the backup's objects in the store");
    }
    Ok(())
}

/// The objects a backup needs: its manifest and every chunk it names.
pub fn backup_objects(cell: &str, id: &str, manifest: &crate::manifest::Manifest) -> Vec<ObjectPath> {
    let mut objects = vec![format::manifest_path(cell, id)];
    objects.extend(manifest.chunk_ids().map(format::chunk_path));
    objects
}

/// Put each of `objects` under the store's legal hold; how many the store
/// enforces one on (0 where it has none).
pub async fn set_legal_holds(repo: &Repository, objects: &[ObjectPath]) -> Result<usize> {
    let mut enforced = 0;
    for path in objects {
        enforced += repo.store().set_legal_hold(path, true).await? as usize;
    }
    Ok(enforced)
}

/// Every hold by `<cell>/<backup-id>`: `Some` when it verifies under the
/// repository key, `None` when it does not (forged, damaged, or written
/// before holds were sealed). Either way the backup is kept.
async fn holds(repo: &Repository) -> Result<HashMap<String, Option<Hold>>> {
    let mut out = HashMap::new();
    for (meta, hold) in repo.list_sealed::<Hold>(format::HOLDS).await? {
        let Some(name) = meta.path.as_str().strip_prefix(format::HOLDS) else { continue };
        if hold.is_none() {
            tracing::warn!(hold = %meta.path, "a hold that does not verify under the repository key: its backup is kept; re-add the hold with `repo hold` or remove it");
        }
        out.insert(name.to_string(), hold);
    }
    Ok(out)
}

/// Remove a hold, lifting the store's legal holds it set, except on chunks
/// another held backup still needs.
pub async fn remove_hold(repo: &Repository, cell: &str, id: &str) -> Result<()> {
    let hold_path = format::hold_path(cell, id);
    let mut lift = vec![hold_path.clone(), format::manifest_path(cell, id)];
    if let Ok(manifest) = repo.read_manifest(cell, id).await {
        let mut still_held = HashSet::new();
        for other in holds(repo).await?.into_keys().filter(|name| *name != format!("{cell}/{id}")) {
            let Some((c, i)) = other.split_once('/') else { continue };
            if let Ok(m) = repo.read_manifest(c, i).await {
                still_held.extend(m.chunk_ids().map(String::from));
            }
        }
        lift.extend(manifest.chunk_ids().filter(|c| !still_held.contains(*c)).map(format::chunk_path));
    }
    for path in &lift {
        match repo.store().set_legal_hold(path, false).await {
            Ok(_) => {}
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e.into()),
        }
    }
    repo.store().delete(&hold_path).await?;
    Ok(())
}

/// Compute what `policy` deletes for `cell` (or every cell).
pub async fn plan(repo: &Repository, cell: Option<&str>, policy: &Policy, now: OffsetDateTime) -> Result<Plan> {
    let holds = holds(repo).await?;
    let mut plan = Plan::default();
    let mut groups: BTreeMap<(String, String), Vec<(BackupRef, crate::manifest::Manifest)>> = BTreeMap::new();
    let mut referenced = HashSet::new();
    for backup in repo.list_backups(None).await? {
        let manifest = repo.read_manifest(&backup.cell, &backup.id).await.map_err(|e| {
            RepoError::Invalid(format!("retention stopped: cannot read manifest {}/{}: {e}; run `repo verify`", backup.cell, backup.id))
        })?;
        let other_kind = policy.kind_prefix.as_deref().is_some_and(|k| !manifest.kind.starts_with(k));
        if cell.is_some_and(|c| c != backup.cell) || other_kind {
            referenced.extend(manifest.chunk_ids().map(String::from));
            continue;
        }
        let series = match (&policy.kind_prefix, policy.one_series) {
            (Some(prefix), true) => prefix.clone(),
            _ => manifest.kind.clone(),
        };
        groups.entry((backup.cell.clone(), series)).or_default().push((backup, manifest));
    }
    for ((_, _), mut backups) in groups {
        backups.sort_by_key(|b| std::cmp::Reverse(b.1.finished)); // newest first
        let folded = |m: &crate::manifest::Manifest| policy.folded_kind.as_deref() == Some(m.kind.as_str());
        let newest_folding = backups.iter().filter(|b| !folded(&b.1)).map(|b| b.1.started).max();
        let mut rank = 0;
        for (backup, manifest) in backups {
            let age = now - manifest.finished;
            let delta = folded(&manifest);
            let reason = if let Some(hold) = holds.get(&format!("{}/{}", backup.cell, backup.id)) {
                Some(match hold {
                    Some(_) => "legal hold".to_string(),
                    None => format!(
                        "a hold object ({}) that does not verify under the key; kept, re-add the hold",
                        format::hold_path(&backup.cell, &backup.id)
                    ),
                })
            } else if delta {
                let keep = policy.keep_within(&manifest.kind);
                match newest_folding {
                    Some(at) if at >= manifest.finished && age >= keep => None,
                    Some(at) if at >= manifest.finished => {
                        Some(format!("folded into a later backup, kept until {} old", lifeboat_api::duration::format(keep)))
                    }
                    _ => Some("not folded into a later backup yet".to_string()),
                }
            } else if rank < policy.keep_last {
                Some(format!("one of the newest {}", policy.keep_last))
            } else if age < policy.keep_within(&manifest.kind) {
                Some(format!("younger than {}", lifeboat_api::duration::format(policy.keep_within(&manifest.kind))))
            } else {
                None
            };
            let decision = |reason: String| Decision {
                cell: backup.cell.clone(),
                id: backup.id.clone(),
                kind: manifest.kind.clone(),
                finished: manifest.finished,
                reason,
            };
            match reason {
                Some(r) => {
                    referenced.extend(manifest.chunk_ids().map(String::from));
                    plan.keep.push(decision(r));
                }
                None if delta => plan.delete.push(decision("folded into a later backup".to_string())),
                None => plan.delete.push(decision(format!(
                    "older than {} and not among the newest {}",
                    lifeboat_api::duration::format(policy.keep_within(&manifest.kind)),
                    policy.keep_last
                ))),
            }
            rank += usize::from(!delta);
        }
    }
    plan.keep.sort_by(|a, b| (&a.cell, &a.id).cmp(&(&b.cell, &b.id)));
    plan.delete.sort_by(|a, b| (&a.cell, &a.id).cmp(&(&b.cell, &b.id)));
    for (id, size) in repo.list_chunks().await? {
        if !referenced.contains(&id) {
            plan.freed_bytes += size;
            plan.delete_chunks.push(id);
        }
    }
    plan.delete_chunks.sort();
    if let Some(files) = repo.store().as_file_store() {
        for leftover in files.leftovers(LEFTOVER_IDLE).await? {
            plan.freed_bytes += leftover.size;
            plan.delete_temporaries.push(leftover.path);
        }
    }
    Ok(plan)
}

/// Recompute the plan under the exclusive lock and carry it out.
pub async fn execute(repo: &Repository, cell: Option<&str>, policy: &Policy, now: OffsetDateTime) -> Result<Plan> {
    let lock = LockGuard::acquire(repo, LockKind::Exclusive, "retention").await?;
    let result = async {
        let mut plan = plan(repo, cell, policy, now).await?;
        apply(repo, &mut plan).await?;
        Ok(plan)
    }
    .await;
    lock.release_after(result).await
}

/// Delete `path`; false when the store keeps it under Object Lock.
pub async fn delete_unless_retained(repo: &Repository, path: &lifeboat_storage::ObjectPath) -> Result<bool> {
    match repo.store().delete(path).await {
        Ok(()) => {
            tracing::debug!(object = %path, "deleted");
            Ok(true)
        }
        Err(lifeboat_storage::StoreError::Retained { .. }) => {
            tracing::warn!(object = %path, "kept under Object Lock: retention reports it and tries again after its retain-until date");
            Ok(false)
        }
        Err(e) => Err(e.into()),
    }
}

/// Carry out a plan: manifests first, then chunks, then temporary files,
/// then the locks write-only holders marked released. The caller holds the
/// exclusive lock and computed the plan under it. A backup the store keeps
/// under Object Lock moves from `delete` to `retained`, and then no chunk
/// is deleted this time (the kept backup may need any of them).
pub async fn apply(repo: &Repository, plan: &mut Plan) -> Result<()> {
    let mut deleted = Vec::new();
    for d in std::mem::take(&mut plan.delete) {
        match delete_unless_retained(repo, &format::manifest_path(&d.cell, &d.id)).await? {
            true => deleted.push(d),
            false => plan.retained.push(d),
        }
    }
    plan.delete = deleted;
    if !plan.retained.is_empty() {
        plan.freed_bytes = 0;
        plan.retained_objects += plan.delete_chunks.len() as u64;
        plan.delete_chunks.clear();
    }
    for id in &plan.delete_chunks {
        if !delete_unless_retained(repo, &format::chunk_path(id)).await? {
            plan.retained_objects += 1;
        }
    }
    if let Some(files) = repo.store().as_file_store() {
        for path in &plan.delete_temporaries {
            files.remove_leftover(path).await?;
        }
    }
    crate::lock::remove_released(repo).await?;
    Ok(())
}
