//! Repository locks: writers (backups, copies) hold shared locks, retention
//! holds an exclusive one, so retention never deletes a chunk that a running
//! backup is about to reference.
//!
//! A lock is an object under `locks/`, sealed like data (so one written
//! without the repository key does not verify) and rewritten every
//! [`REFRESH`] while its holder lives. Its age is judged by the **store's
//! clock**: the time the store last saw it written, against the time the
//! store recorded for the caller's own lock a moment ago. So holders whose
//! clocks disagree (by ten minutes or a day) still see each other's locks
//! live for exactly [`STALE_AFTER`] after their last refresh, and a lock
//! claiming a refresh in the future cannot block a repository past its
//! lease. Both kinds write their lock first and then look for conflicting
//! ones, so two racing holders cannot both miss each other. A lock that
//! does not verify blocks like a live one while it is fresh and is named in
//! the error; `repo unlock ID --force` removes a lock by hand (logged).
//! A lock whose holder is provably gone (a process on this host that was
//! killed, see [`crate::holder`]) does not block: it is removed, logged.

use std::time::Duration;

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

impl LockKind {
    pub fn as_str(self) -> &'static str {
        match self {
            LockKind::Shared => "shared",
            LockKind::Exclusive => "exclusive",
        }
    }
}

/// What a lock says about itself (the holder's clock, for people).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LockInfo {
    pub kind: LockKind,
    pub operation: String,
    pub holder: String,
    #[serde(with = "time::serde::rfc3339")]
    pub refreshed: OffsetDateTime,
    /// Released by a holder whose credential may not delete (a write-only
    /// agent): the object stays, as a tombstone, until retention removes it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub released: bool,
    /// The holding process, exactly enough to tell on its host that it died.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process: Option<crate::holder::Process>,
}

/// A lock object as found in the store.
#[derive(Debug, Clone, Serialize)]
pub struct FoundLock {
    /// The lock's id: its name under `locks/`.
    pub id: String,
    #[serde(skip)]
    pub path: ObjectPath,
    /// `None`: the object does not verify under the repository key (forged,
    /// damaged, or from a Lifeboat that wrote plain locks).
    pub info: Option<LockInfo>,
    /// When the store last saw it written, by the store's clock.
    #[serde(with = "time::serde::rfc3339::option")]
    pub written: Option<OffsetDateTime>,
}

impl FoundLock {
    /// Whether its holder refreshed it within [`STALE_AFTER`] of `now`
    /// (the store's clock, see [`store_now`]). Without a store time, the
    /// holder's own claim counts, but never one from the future.
    pub fn is_live(&self, now: OffsetDateTime) -> bool {
        if self.info.as_ref().is_some_and(|i| i.released) || self.holder_gone() {
            return false;
        }
        match (self.written, &self.info) {
            (Some(written), _) => now - written < STALE_AFTER,
            (None, Some(info)) => info.refreshed <= now && now - info.refreshed < STALE_AFTER,
            (None, None) => false,
        }
    }

    /// Whether this host can prove the holding process is no longer running.
    pub fn holder_gone(&self) -> bool {
        self.info.as_ref().and_then(|i| i.process.as_ref()).is_some_and(|p| p.is_gone())
    }

    /// For people: what the lock is, who holds it, how old it is.
    pub fn describe(&self, now: OffsetDateTime) -> String {
        let mut age = self.written.map(|w| format!("written {} s ago by the store's clock", (now - w).whole_seconds())).unwrap_or_default();
        if self.holder_gone() {
            age.push_str(", its process is gone");
        }
        match &self.info {
            Some(i) => format!("lock {} ({} {} by {}, {age})", self.id, i.kind.as_str(), i.operation, i.holder),
            None => format!("lock {} that does not verify under the repository key ({age})", self.id),
        }
    }
}

/// A held lock; released on [`LockGuard::release`] (or, if dropped, left to go stale).
#[derive(Debug)]
pub struct LockGuard {
    repo: Repository,
    path: ObjectPath,
    stop: CancellationToken,
    info: LockInfo,
}

async fn write(repo: &Repository, path: &ObjectPath, info: &LockInfo) -> Result<()> {
    let raw = serde_json::to_vec(info).expect("lock serialises");
    repo.put_sealed(path, &raw, PutMode::Overwrite).await
}

/// Every lock in the repository, live or stale.
pub async fn all_locks(repo: &Repository) -> Result<Vec<FoundLock>> {
    let found = repo.list_sealed::<LockInfo>(format::LOCKS).await?;
    Ok(found
        .into_iter()
        .map(|(meta, info)| {
            let id = meta.path.as_str().strip_prefix(format::LOCKS).unwrap_or(meta.path.as_str()).to_string();
            FoundLock { id, path: meta.path, info, written: meta.modified }
        })
        .collect())
}

/// The lock `id`, or an error saying how to list them.
pub async fn find(repo: &Repository, id: &str) -> Result<FoundLock> {
    all_locks(repo)
        .await?
        .into_iter()
        .find(|l| l.id == id)
        .ok_or_else(|| RepoError::Invalid(format!("no lock {id} in {}; `lifeboat-agent repo locks` lists them", repo.location())))
}

/// The store's clock now: when it recorded `own` (just written), else this machine's.
pub fn store_now(locks: &[FoundLock], own: &ObjectPath) -> OffsetDateTime {
    locks.iter().find(|l| &l.path == own).and_then(|l| l.written).unwrap_or_else(OffsetDateTime::now_utc)
}

/// Delete the tombstones of locks released by holders that may not delete
/// (retention does this, with its deleting credential); how many.
pub async fn remove_released(repo: &Repository) -> Result<usize> {
    let released: Vec<FoundLock> = all_locks(repo).await?.into_iter().filter(|l| l.info.as_ref().is_some_and(|i| i.released)).collect();
    for l in &released {
        repo.store().delete(&l.path).await?;
    }
    Ok(released.len())
}

/// Delete a lock this process wrote; a credential that may not delete
/// rewrites it as released instead (a tombstone retention removes).
async fn remove(repo: &Repository, path: &ObjectPath, info: &LockInfo) -> Result<()> {
    match repo.store().delete(path).await {
        Ok(()) => Ok(()),
        Err(lifeboat_storage::StoreError::AccessDenied { .. }) => {
            tracing::info!(lock = %path, "this credential may not delete: the lock is marked released, retention removes it");
            write(repo, path, &LockInfo { released: true, refreshed: OffsetDateTime::now_utc(), ..info.clone() }).await
        }
        Err(e) => Err(e.into()),
    }
}

/// Every other lock, and the store's clock now to judge them by (`true`)
/// or, when this credential may not write, this machine's (`false`). The
/// store's time is read off a probe lock written, listed and removed.
pub async fn survey(repo: &Repository) -> Result<(Vec<FoundLock>, OffsetDateTime, bool)> {
    let (probe, info) = LockInfo::new_lock(LockKind::Shared, "lock survey (repo locks)");
    let wrote = write(repo, &probe, &info).await.is_ok();
    let mut locks = all_locks(repo).await?;
    let store_time = locks.iter().find(|l| l.path == probe).and_then(|l| l.written);
    locks.retain(|l| l.path != probe);
    if wrote {
        remove(repo, &probe, &info).await?;
    }
    Ok((locks, store_time.unwrap_or_else(OffsetDateTime::now_utc), store_time.is_some()))
}

impl LockInfo {
    /// A new lock of `kind` for `operation`, held by this process, and the
    /// fresh path it goes under.
    fn new_lock(kind: LockKind, operation: &str) -> (ObjectPath, LockInfo) {
        let path = format::path(&format!("{}{:032x}", format::LOCKS, rand::random::<u128>()));
        let info = LockInfo {
            kind,
            operation: operation.into(),
            holder: crate::holder::describe(),
            refreshed: OffsetDateTime::now_utc(),
            released: false,
            process: crate::holder::Process::current(),
        };
        (path, info)
    }
}

/// Remove the locks of holders this host knows are dead (killed mid job);
/// a credential that may not delete leaves them, and they do not block.
async fn remove_orphans(repo: &Repository, locks: &[FoundLock], now: OffsetDateTime) {
    for orphan in locks.iter().filter(|l| l.holder_gone() && !l.info.as_ref().is_some_and(|i| i.released)) {
        tracing::warn!(lock = %orphan.describe(now), repository = %repo.location(), "a lock left by a process that died on this host: ignored, and removed");
        if let Err(e) = repo.store().delete(&orphan.path).await {
            tracing::debug!(lock = %orphan.id, error = %e, "the orphaned lock stays; it blocks nothing");
        }
    }
}

/// Remove the lock `id` by hand (its holder is known dead, or it does not
/// verify). Logged with what the lock said.
pub async fn force_unlock(repo: &Repository, id: &str) -> Result<FoundLock> {
    let found = find(repo, id).await?;
    repo.store().delete(&found.path).await?;
    tracing::warn!(lock = %found.describe(OffsetDateTime::now_utc()), repository = %repo.location(), "removed a lock by hand (repo unlock --force)");
    Ok(found)
}

impl LockGuard {
    pub async fn acquire(repo: &Repository, kind: LockKind, operation: &str) -> Result<Self> {
        let (path, mut info) = LockInfo::new_lock(kind, operation);
        write(repo, &path, &info).await?;
        // Durable, so that a copy interrupted by a crash is known as such after it.
        repo.store().sync().await?;
        let locks = all_locks(repo).await?;
        let now = store_now(&locks, &path);
        remove_orphans(repo, &locks, now).await;
        let conflict = locks.iter().filter(|l| l.path != path && l.is_live(now)).find(|other| match &other.info {
            Some(o) => kind == LockKind::Exclusive || o.kind == LockKind::Exclusive,
            None => true,
        });
        if let Some(other) = conflict {
            let _ = repo.store().delete(&path).await;
            return Err(RepoError::Locked(format!(
                "repository {} is locked: {}; try again when it finishes (a lock its holder stops refreshing expires {} s after its last refresh), \
                 or, if its holder is dead or the lock is not Lifeboat's, remove it: lifeboat-agent repo unlock {} --force",
                repo.location(),
                other.describe(now),
                STALE_AFTER.as_secs(),
                other.id
            )));
        }
        let stop = CancellationToken::new();
        let info_for_release = info.clone();
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
        Ok(LockGuard { repo: repo.clone(), path, stop, info: info_for_release })
    }

    /// Delete the lock; a holder whose credential may not delete (a
    /// write-only agent) rewrites it as released instead.
    pub async fn release(self) -> Result<()> {
        self.stop.cancel();
        remove(&self.repo, &self.path, &self.info).await
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

    async fn encrypted(dir: &std::path::Path) -> Repository {
        let key = crate::Key::from_bytes(&[7; 32]);
        Repository::init(Arc::new(FileStore::new(dir)), Some(key), InitOptions::default()).await.unwrap()
    }

    /// Holders whose clocks are ten minutes off still exclude each other: a
    /// lock the store saw written a moment ago is live whatever time its
    /// holder claims, and one the store last saw written ten minutes ago is
    /// stale even when it claims a refresh in the future.
    #[tokio::test]
    async fn liveness_goes_by_the_stores_clock_not_the_holders() {
        let dir = tempfile::tempdir().unwrap();
        let repo = encrypted(dir.path()).await;
        let path = format::path(&format!("{}skewed", format::LOCKS));
        let ten_minutes_ago = std::time::SystemTime::now() - Duration::from_secs(600);
        for skew in [-600, 600] {
            let refreshed = OffsetDateTime::now_utc() + time::Duration::seconds(skew);
            let info = LockInfo {
                kind: LockKind::Exclusive,
                operation: "skewed".into(),
                holder: "elsewhere".into(),
                refreshed,
                released: false,
                process: None,
            };
            write(&repo, &path, &info).await.unwrap();
            let err = LockGuard::acquire(&repo, LockKind::Shared, "test").await.unwrap_err().to_string();
            assert!(err.contains("exclusive skewed by elsewhere") && err.contains("repo unlock skewed --force"), "{skew}: {err}");
            let file = std::fs::File::options().write(true).open(dir.path().join("locks/skewed")).unwrap();
            file.set_modified(ten_minutes_ago).unwrap();
            LockGuard::acquire(&repo, LockKind::Shared, "test").await.unwrap().release().await.unwrap();
        }
    }

    /// A lock left by a process killed on this host blocks nothing and is
    /// removed by the next holder; one held by a live process still blocks.
    #[tokio::test]
    async fn a_lock_whose_process_died_on_this_host_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let repo = encrypted(dir.path()).await;
        let mut child = std::process::Command::new("sleep").arg("30").spawn().unwrap();
        let me = crate::holder::Process::current().unwrap();
        let start_ticks = crate::holder::start_ticks(child.id()).unwrap();
        let process = Some(crate::holder::Process { pid: child.id(), start_ticks, ..me });
        let info = LockInfo {
            kind: LockKind::Exclusive,
            operation: "retention".into(),
            holder: "here".into(),
            refreshed: OffsetDateTime::now_utc(),
            released: false,
            process,
        };
        let path = format::path(&format!("{}killed", format::LOCKS));
        write(&repo, &path, &info).await.unwrap();
        let err = LockGuard::acquire(&repo, LockKind::Shared, "test").await.unwrap_err().to_string();
        assert!(err.contains("exclusive retention by here"), "a live holder blocks: {err}");
        child.kill().unwrap();
        child.wait().unwrap();
        LockGuard::acquire(&repo, LockKind::Shared, "test").await.unwrap().release().await.unwrap();
        assert!(!dir.path().join("locks/killed").exists(), "the dead holder's lock is removed");
    }

    /// A lock written without the key (forged, or by an older Lifeboat)
    /// blocks while fresh and is named, and `force_unlock` removes it.
    #[tokio::test]
    async fn a_lock_that_does_not_verify_is_named_and_can_be_removed() {
        let dir = tempfile::tempdir().unwrap();
        let repo = encrypted(dir.path()).await;
        let forged = br#"{"kind":"exclusive","operation":"x","holder":"h","refreshed":"2999-01-01T00:00:00Z"}"#;
        std::fs::create_dir_all(dir.path().join("locks")).unwrap();
        std::fs::write(dir.path().join("locks/forged"), forged).unwrap();
        let err = LockGuard::acquire(&repo, LockKind::Exclusive, "retention").await.unwrap_err().to_string();
        assert!(err.contains("lock forged that does not verify") && err.contains("repo unlock forged --force"), "{err}");
        let removed = force_unlock(&repo, "forged").await.unwrap();
        assert!(removed.info.is_none());
        LockGuard::acquire(&repo, LockKind::Exclusive, "retention").await.unwrap().release().await.unwrap();
        assert!(force_unlock(&repo, "forged").await.unwrap_err().to_string().contains("repo locks"));
    }
}
