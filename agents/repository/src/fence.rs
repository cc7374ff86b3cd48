//! Fences: after a failover, which writers a cell's repository still takes.
//!
//! A fence is a sealed object `fences/<cell>/<epoch>` (epochs count up from
//! 1), written create-only: two failovers racing for the same epoch cannot
//! both win, and a rerun of the same failover finds its own fence and
//! changes nothing. The newest fence that verifies under the repository key
//! is in force; one that does not verify is ignored with a warning (a
//! forged fence must not stop a healthy primary's archiving). What a fence
//! refuses is decided by the writers: Postgres' archiving and backups
//! refuse a cluster on a timeline older than `postgres_timeline`
//! (`lifeboat_postgres::fence`). Fences are sealed data, so geo-copies carry
//! them to every location.

use lifeboat_storage::{ObjectPath, PutMode, StoreError};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::error::{RepoError, Result};
use crate::format;
use crate::repo::Repository;

pub const FENCES: &str = "fences/";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fence {
    pub epoch: u64,
    /// Postgres writers on an older timeline are refused (the new
    /// primary's timeline: the highest archived one plus one).
    pub postgres_timeline: Option<u32>,
    pub reason: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created: OffsetDateTime,
    /// Who raised it (user, host, process).
    pub by: String,
}

impl Fence {
    /// For people: epoch, when, why, by whom.
    pub fn describe(&self) -> String {
        let at = self.created.format(&time::format_description::well_known::Rfc3339).unwrap_or_default();
        format!("fence epoch {} raised {at} by {} ({})", self.epoch, self.by, self.reason)
    }

    /// The same failover's fence: same epoch, timeline and reason.
    fn same_as(&self, other: &Fence) -> bool {
        (self.epoch, self.postgres_timeline, &self.reason) == (other.epoch, other.postgres_timeline, &other.reason)
    }
}

pub fn path(cell: &str, epoch: u64) -> ObjectPath {
    format::path(&format!("{FENCES}{cell}/{epoch:010}"))
}

/// The fence in force for `cell` (None: never fenced). A fence that does
/// not verify, is too large or cannot be parsed is ignored, never an
/// error: a planted object must not stop a healthy primary's archiving.
/// (In an unencrypted repository the seal is a plain hash: anyone who can
/// write there can forge a fence; encrypt repositories.)
pub async fn newest(repo: &Repository, cell: &str) -> Result<Option<Fence>> {
    let mut newest: Option<Fence> = None;
    for meta in repo.store().list(&format!("{FENCES}{cell}/")).await? {
        match existing(repo, &meta.path).await {
            Ok(Some(f)) if path(cell, f.epoch) == meta.path => {
                if newest.as_ref().is_none_or(|n| f.epoch > n.epoch) {
                    newest = Some(f);
                }
            }
            Ok(None) => {} // deleted meanwhile
            Ok(Some(_)) | Err(_) => tracing::warn!(fence = %meta.path, "a fence that does not verify under the repository key: ignored"),
        }
    }
    Ok(newest)
}

/// The fence of `epoch` in `repo`, if one was raised there.
pub async fn at_epoch(repo: &Repository, cell: &str, epoch: u64) -> Result<Option<Fence>> {
    existing(repo, &path(cell, epoch)).await
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Raised {
    Raised,
    /// This fence was raised before (a rerun): nothing changed.
    AlreadyRaised,
}

/// Raise `fence` for `cell`: create-only, above every fence in force.
pub async fn raise(repo: &Repository, cell: &str, fence: &Fence) -> Result<Raised> {
    format::validate_cell(cell)?;
    let at = path(cell, fence.epoch);
    if let Some(existing) = existing(repo, &at).await? {
        return match existing.same_as(fence) {
            true => Ok(Raised::AlreadyRaised),
            false => Err(taken(cell, &existing)),
        };
    }
    if let Some(n) = newest(repo, cell).await?.filter(|n| n.epoch >= fence.epoch) {
        return Err(RepoError::Invalid(format!(
            "cell {cell} is already fenced at epoch {} ({}); a new fence needs a higher epoch",
            n.epoch,
            n.describe()
        )));
    }
    let raw = serde_json::to_vec(fence).expect("fences serialise");
    match repo.put_sealed(&at, &raw, PutMode::Create).await {
        Ok(()) => Ok(Raised::Raised),
        // Lost a race: whoever won decides.
        Err(RepoError::Store(StoreError::AlreadyExists { .. })) => match existing(repo, &at).await? {
            Some(e) if e.same_as(fence) => Ok(Raised::AlreadyRaised),
            Some(e) => Err(taken(cell, &e)),
            None => Err(RepoError::Invalid(format!("{at} was created by another writer and is gone again; rerun"))),
        },
        Err(e) => Err(e),
    }
}

/// The fence stored at `at`: None when there is none; an error when it
/// cannot be read or does not verify.
async fn existing(repo: &Repository, at: &ObjectPath) -> Result<Option<Fence>> {
    match repo.read_object(at).await {
        Ok(plain) => serde_json::from_slice(&plain)
            .map(Some)
            .map_err(|e| RepoError::Corrupt { key: at.to_string(), reason: format!("not a fence: {e}") }),
        Err(RepoError::Store(e)) if e.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
}

fn taken(cell: &str, existing: &Fence) -> RepoError {
    RepoError::Invalid(format!(
        "epoch {} of cell {cell} is already raised by another failover ({}); do not fail over twice: check that failover, or raise a higher epoch",
        existing.epoch,
        existing.describe()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::InitOptions;

    fn fence(epoch: u64, reason: &str) -> Fence {
        Fence { epoch, postgres_timeline: Some(2), reason: reason.into(), created: OffsetDateTime::now_utc(), by: "test".into() }
    }

    /// Create-only epochs: a rerun is a no-op, another failover at the
    /// same epoch is refused, a lower epoch is refused, the newest wins, a
    /// forged fence is ignored.
    #[tokio::test]
    async fn epochs_are_raised_once_and_the_newest_is_in_force() {
        let dir = tempfile::tempdir().unwrap();
        let store: lifeboat_storage::DynStore = std::sync::Arc::new(lifeboat_storage::fs::FileStore::new(dir.path()));
        let repo = Repository::init(store.clone(), Some(crate::Key::from_bytes(&[7; 32])), InitOptions::default()).await.unwrap();
        assert_eq!(newest(&repo, "c1").await.unwrap(), None);
        assert_eq!(raise(&repo, "c1", &fence(1, "region lost")).await.unwrap(), Raised::Raised);
        assert_eq!(raise(&repo, "c1", &fence(1, "region lost")).await.unwrap(), Raised::AlreadyRaised);
        let e = raise(&repo, "c1", &fence(1, "another")).await.unwrap_err().to_string();
        assert!(e.contains("already raised by another failover"), "{e}");
        assert_eq!(raise(&repo, "c1", &fence(2, "failback")).await.unwrap(), Raised::Raised);
        let e = raise(&repo, "c1", &fence(1, "late")).await.unwrap_err().to_string();
        assert!(e.contains("already raised") || e.contains("higher epoch"), "{e}");
        store.put(&path("c1", 9), bytes::Bytes::from_static(b"{\"epoch\": 9}"), PutMode::Create).await.unwrap();
        assert_eq!(newest(&repo, "c1").await.unwrap().map(|f| f.epoch), Some(2), "the forged epoch 9 is ignored");
        assert_eq!(newest(&repo, "c2").await.unwrap(), None, "fences are per cell");
    }
}
