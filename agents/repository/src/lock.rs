//! Repository locks: writers (backups, copies) hold shared locks, retention
//! holds an exclusive one, so retention never deletes a chunk that a running
//! backup is about to reference.
//!
//! A lock is an object under `locks/`, refreshed every [`REFRESH`] while its
//! holder lives; one not refreshed for [`STALE_AFTER`] (a killed process) is
//! ignored. Both kinds write their lock first and then look for conflicting
//! ones, so two racing holders cannot both miss each other. Assumes the
//! clocks of the machines sharing a repository agree to within a minute.

use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

use lifeboat_storage::{ObjectPath, PutMode};

use crate::error::{RepoError, Result};
use crate::format;
use crate::repo::Repository;

pub const REFRESH: Duration = Duration::from_secs(60);
pub const STALE_AFTER: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LockKind {
    Shared,
    Exclusive,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LockInfo {
    pub kind: LockKind,
    pub operation: String,
    pub holder: String,
    #[serde(with = "time::serde::rfc3339")]
    pub refreshed: OffsetDateTime,
}

impl LockInfo {
    pub fn is_live(&self, now: OffsetDateTime) -> bool {
        now - self.refreshed < STALE_AFTER
    }
}

/// A held lock; released on [`LockGuard::release`] (or, if dropped, left to go stale).
#[derive(Debug)]
pub struct LockGuard {
    repo: Repository,
    path: ObjectPath,
    stop: CancellationToken,
}

fn holder() -> String {
    let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
    format!("{} pid {}", host.trim(), std::process::id())
}

async fn write(repo: &Repository, path: &ObjectPath, info: &LockInfo) -> Result<()> {
    let raw = serde_json::to_vec(info).expect("lock serialises");
    repo.store().put(path, Bytes::from(raw), PutMode::Overwrite).await?;
    Ok(())
}

/// Every lock other than `except`, live or stale, with its key.
pub async fn all_locks(repo: &Repository, except: Option<&ObjectPath>) -> Result<Vec<(ObjectPath, LockInfo)>> {
    let mut out = Vec::new();
    for meta in repo.store().list(format::LOCKS).await? {
        if Some(&meta.path) == except {
            continue;
        }
        let raw = match repo.store().get(&meta.path).await {
            Ok(raw) => raw,
            Err(e) if e.is_not_found() => continue, // released meanwhile
            Err(e) => return Err(e.into()),
        };
        if let Ok(info) = serde_json::from_slice::<LockInfo>(&raw) {
            out.push((meta.path, info));
        }
    }
    Ok(out)
}

/// Live locks other than `except`.
async fn live_locks(repo: &Repository, except: &ObjectPath) -> Result<Vec<LockInfo>> {
    let now = OffsetDateTime::now_utc();
    Ok(all_locks(repo, Some(except)).await?.into_iter().map(|(_, i)| i).filter(|i| i.is_live(now)).collect())
}

impl LockGuard {
    pub async fn acquire(repo: &Repository, kind: LockKind, operation: &str) -> Result<Self> {
        let path = format::path(&format!("{}{:032x}", format::LOCKS, rand::random::<u128>()));
        let mut info = LockInfo { kind, operation: operation.into(), holder: holder(), refreshed: OffsetDateTime::now_utc() };
        write(repo, &path, &info).await?;
        // Durable, so that a copy interrupted by a crash is known as such after it.
        repo.store().sync().await?;
        let conflicts: Vec<LockInfo> = live_locks(repo, &path)
            .await?
            .into_iter()
            .filter(|other| kind == LockKind::Exclusive || other.kind == LockKind::Exclusive)
            .collect();
        if let Some(other) = conflicts.first() {
            let _ = repo.store().delete(&path).await;
            return Err(RepoError::Locked(format!(
                "repository {} is locked by {} ({}, refreshed {}); try again when it finishes (locks of dead processes expire after {} s)",
                repo.location(),
                other.holder,
                other.operation,
                other.refreshed,
                STALE_AFTER.as_secs()
            )));
        }
        let stop = CancellationToken::new();
        let (refresh_repo, refresh_path, refresh_stop) = (repo.clone(), path.clone(), stop.clone());
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = refresh_stop.cancelled() => break,
                    _ = tokio::time::sleep(REFRESH) => {
                        info.refreshed = OffsetDateTime::now_utc();
                        if let Err(e) = write(&refresh_repo, &refresh_path, &info).await {
                            tracing::warn!(error = %e, "could not refresh repository lock");
                        }
                    }
                }
            }
        });
        Ok(LockGuard { repo: repo.clone(), path, stop })
    }

    pub async fn release(self) -> Result<()> {
        self.stop.cancel();
        self.repo.store().delete(&self.path).await?;
        Ok(())
    }

    /// Release the lock after the work it guarded, and hand back that
    /// work's `result`. The work's own error wins over a failed release
    /// (which is logged: the lock left behind goes stale once its refresh
    /// has stopped, see [`STALE_AFTER`]); after work that succeeded, a
    /// failed release is the error.
    pub async fn release_after<T, E: From<RepoError>>(self, result: std::result::Result<T, E>) -> std::result::Result<T, E> {
        let path = self.path.clone();
        match (result, self.release().await) {
            (Ok(value), Ok(())) => Ok(value),
            (Ok(_), Err(release)) => Err(release.into()),
            (Err(e), released) => {
                if let Err(release) = released {
                    tracing::warn!(lock = %path, error = %release, "the lock was not released after the failure; it goes stale by itself");
                }
                Err(e)
            }
        }
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use lifeboat_storage::faults::{Fault, FaultyStore, Op};
    use lifeboat_storage::fs::FileStore;

    use super::*;
    use crate::repo::InitOptions;

    /// The guarded work's error is reported even when the release fails
    /// too; after work that succeeded, the failed release is the error.
    #[tokio::test]
    async fn release_after_keeps_the_work_error_first() {
        let dir = tempfile::tempdir().unwrap();
        let faulty = Arc::new(FaultyStore::new(Arc::new(FileStore::new(dir.path()))));
        let repo = Repository::init(faulty.clone(), None, InitOptions::default()).await.unwrap();

        let lock = LockGuard::acquire(&repo, LockKind::Shared, "test").await.unwrap();
        faulty.fail(Op::Delete, Some("locks/"), Fault::Permanent, 1);
        let work: Result<()> = Err(RepoError::Invalid("the work failed".into()));
        let e = lock.release_after(work).await.unwrap_err();
        assert_eq!(e.to_string(), "the work failed");

        let lock = LockGuard::acquire(&repo, LockKind::Shared, "test").await.unwrap();
        faulty.fail(Op::Delete, Some("locks/"), Fault::Permanent, 1);
        let e = lock.release_after(Ok::<_, RepoError>(())).await.unwrap_err();
        assert!(e.to_string().contains("injected"), "{e}");

        let lock = LockGuard::acquire(&repo, LockKind::Shared, "test").await.unwrap();
        assert_eq!(lock.release_after(Ok::<_, RepoError>(7)).await.unwrap(), 7);
        assert_eq!(faulty.injected(), 2);
    }
}
