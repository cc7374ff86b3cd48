//! Geo-redundant copy: make a destination hold everything the source holds.
//!
//! Only objects the destination lacks move (chunks, WAL and every other
//! sealed object). Each is verified at the source
//! (its seal: the AEAD tag or SHA-256 over the stored bytes and the object's
//! name) before it is sent, and read back from the destination and
//! compared by SHA-256 after. Data goes first, manifests last, and a manifest
//! is copied only when every chunk it needs is verified at the destination,
//! so an interrupted copy leaves no manifest pointing at missing data and a
//! rerun finishes the job.

use std::collections::HashSet;

use futures::StreamExt;
use serde::Serialize;
use sha2::{Digest, Sha256};

use lifeboat_storage::{DynStore, ObjectPath, PutMode, StoreError};

use crate::error::{RepoError, Result};
use crate::format;
use crate::lock::{LockGuard, LockKind};
use crate::repo::Repository;

#[derive(Debug, Clone, Default, Serialize)]
pub struct CopyReport {
    pub source: String,
    pub destination: String,
    pub objects_copied: u64,
    pub bytes_copied: u64,
    pub objects_already_present: u64,
    pub manifests_copied: u64,
    /// Objects that could not be copied (corrupt at the source, or failed).
    pub failures: Vec<String>,
}

/// Copy one object, verifying at both ends. Returns bytes copied.
async fn copy_object(src: &Repository, dst: &DynStore, path: &ObjectPath) -> Result<u64> {
    let raw = src.store().get(path).await?;
    let check = {
        let (src, raw, path) = (src.clone(), raw.clone(), path.clone());
        tokio::task::spawn_blocking(move || src.check_seal(&path, &raw))
    };
    check.await.expect("unseal does not panic")?;
    match dst.put(path, raw.clone(), PutMode::Create).await {
        Ok(()) => {}
        // A racing or earlier interrupted copy stored it; verify it below all the same.
        Err(StoreError::AlreadyExists { .. }) => {}
        Err(e) => return Err(e.into()),
    }
    let back = dst.get(path).await?;
    if Sha256::digest(&back) != Sha256::digest(&raw) {
        return Err(RepoError::Corrupt {
            key: format!("{} at {}", path, dst.describe()),
            reason: "differs from the source after copying".into(),
        });
    }
    Ok(raw.len() as u64)
}

pub async fn copy(src: &Repository, dst: DynStore, workers: usize) -> Result<CopyReport> {
    let mut report = CopyReport { source: src.location(), destination: dst.describe(), ..Default::default() };
    dst.prepare().await?;
    match Repository::read_config(&dst).await? {
        None => Repository::write_config(&dst, src.config()).await?,
        Some(existing) if existing.id != src.config().id => {
            return Err(RepoError::Invalid(format!(
                "{} holds a different repository (id {}, source id {}); copy only into an empty location or a copy of the same repository",
                dst.describe(),
                existing.id,
                src.config().id
            )))
        }
        Some(_) => {}
    }
    let dst_repo = Repository::open(dst.clone(), src.key().cloned()).await?;
    let lock = LockGuard::acquire(&dst_repo, LockKind::Shared, "geo-copy").await?;
    let result = copy_objects(src, &dst, workers, &mut report).await;
    lock.release().await?;
    result.map(|()| report)
}

async fn copy_objects(src: &Repository, dst: &DynStore, workers: usize, report: &mut CopyReport) -> Result<()> {
    let src_objects = src.store().list("").await?;
    let mut present: HashSet<String> = dst.list("").await?.into_iter().map(|m| m.path.to_string()).collect();
    let (todo, already): (Vec<ObjectPath>, Vec<ObjectPath>) = src_objects
        .iter()
        .filter(|m| format::is_sealed_data(m.path.as_str()))
        .map(|m| m.path.clone())
        .partition(|p| !present.contains(p.as_str()));
    report.objects_already_present += already.len() as u64;
    let mut copies = futures::stream::iter(todo)
        .map(|path| async move {
            let result = copy_object(src, dst, &path).await;
            (path, result)
        })
        .buffer_unordered(workers);
    while let Some((path, result)) = copies.next().await {
        match result {
            Ok(n) => {
                report.objects_copied += 1;
                report.bytes_copied += n;
                present.insert(path.to_string());
            }
            Err(RepoError::Store(e)) if !e.is_permanent() => return Err(e.into()),
            Err(e) => {
                tracing::error!(object = %path, error = %e, "not copied");
                report.failures.push(format!("{path}: {e}"));
            }
        }
    }
    drop(copies);

    // Manifests last, each only when all its chunks are at the destination
    // and durable there.
    dst.sync().await?;
    for backup in src.list_backups(None).await? {
        let path = format::manifest_path(&backup.cell, &backup.id);
        if present.contains(path.as_str()) {
            report.objects_already_present += 1;
            continue;
        }
        let manifest = match src.read_manifest(&backup.cell, &backup.id).await {
            Ok(m) => m,
            Err(e) => {
                report.failures.push(format!("{path}: {e}"));
                continue;
            }
        };
        if let Some(missing) = manifest.chunk_ids().find(|id| !present.contains(format::chunk_path(id).as_str())) {
            report.failures.push(format!("{path}: not copied because chunk {missing} is not at the destination"));
            continue;
        }
        let n = copy_object(src, dst, &path).await?;
        report.objects_copied += 1;
        report.manifests_copied += 1;
        report.bytes_copied += n;
    }
    dst.sync().await?;
    // Legal holds travel with their backups.
    for meta in src_objects.iter().filter(|m| m.path.as_str().starts_with(format::HOLDS)) {
        if !present.contains(meta.path.as_str()) {
            let raw = src.store().get(&meta.path).await?;
            match dst.put(&meta.path, raw, PutMode::Create).await {
                Ok(()) | Err(StoreError::AlreadyExists { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    dst.sync().await?;
    Ok(())
}
