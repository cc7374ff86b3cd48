//! Geo-redundant copy: make a destination hold everything the source holds.
//!
//! Only objects the destination lacks move (chunks, WAL and every other
//! sealed object). Data objects are written without an fsync each and made
//! durable by one barrier before the first manifest; so that a crash cannot
//! leave a lost write that a rerun would trust, a destination object whose
//! size differs from the source is copied again, and when an earlier copy
//! into the destination did not finish (its `geo-copy` lock is still there)
//! every destination object no manifest references yet has its seal checked
//! first. Every object is verified by its seal (the AEAD tag, or SHA-256
//! over the stored bytes and the object's name) and by what the destination
//! holds after the copy: between two `file://` repositories the kernel
//! copies the file and the copy is read back and its seal checked before it
//! appears under its name; between any other two stores the object is
//! checked at the source, sent, read back and compared byte for byte. Data
//! goes first, manifests last, and a manifest is copied only when every
//! chunk it needs is verified at the destination, so an interrupted copy
//! leaves no manifest pointing at missing data and a rerun finishes the job.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use futures::stream::BoxStream;
use futures::StreamExt;

use lifeboat_storage::fs::FileStore;
use lifeboat_storage::{DynStore, ObjectPath, PutMode, StoreError};

use crate::error::{RepoError, Result};
use crate::format;
use crate::lock::{all_locks, FoundLock, LockGuard, LockKind};
use crate::repo::Repository;

pub use lifeboat_api::results::CopyReport;

/// Copy one object between any two stores, verifying at both ends: read
/// it, check its seal, write it, read it back and compare with the source
/// byte for byte. Returns bytes copied. `durable`: its content is on disk
/// before it appears under its name (manifests); otherwise the barrier
/// before the manifests makes it so.
async fn copy_object(src: &Repository, dst: &DynStore, path: &ObjectPath, mode: PutMode, durable: bool) -> Result<u64> {
    let raw = read_checked(src, path).await?;
    let put = match durable {
        true => dst.put(path, raw.clone(), mode).await,
        false => dst.put_deferred(path, raw.clone(), mode).await,
    };
    match put {
        Ok(()) => {}
        // A racing or earlier interrupted copy stored it; verify it below all the same.
        Err(StoreError::AlreadyExists { .. }) => {}
        Err(e) => return Err(e.into()),
    }
    // Read back and compare with the source byte for byte (what a hash
    // comparison would establish, without hashing both sides).
    let back = dst.get_bounded(path, raw.len() as u64).await?;
    if back != raw {
        return Err(RepoError::Corrupt {
            key: format!("{} at {}", path, dst.describe()),
            reason: "differs from the source after copying".into(),
        });
    }
    Ok(raw.len() as u64)
}

/// Read a stored object and check its seal.
async fn read_checked(src: &Repository, path: &ObjectPath) -> Result<bytes::Bytes> {
    let raw = src.get_stored(path).await?;
    // Inline: a Poly1305 tag or SHA-256 pass (about 1 ms per MiB) costs less
    // than handing the bytes to a blocking thread and back.
    src.check_seal(path, &raw)?;
    Ok(raw)
}

/// The copies of `todo`'s data objects, as they finish.
fn data_copies<'a>(
    src: &'a Repository,
    dst: &'a DynStore,
    todo: Vec<(ObjectPath, PutMode)>,
    workers: usize,
) -> BoxStream<'a, (ObjectPath, Result<u64>)> {
    if let (Some(from), Some(to)) = (src.store().as_file_store(), dst.as_file_store()) {
        return local_copies(src, dst, from.clone(), to.clone(), todo, workers);
    }
    futures::stream::iter(todo)
        .map(move |(path, mode)| async move {
            let result = copy_object(src, dst, &path, mode, false).await;
            (path, result)
        })
        .buffer_unordered(workers)
        .boxed()
}

/// Between two local repositories: `workers` threads each take the next
/// object, have the kernel copy its file, and read the copy back to check
/// its seal before it appears under its name (which verifies the source
/// and the copy at once). A rejected or failed copy is never published;
/// the source is then checked to name which side is at fault. An object that is
/// already at the destination is compared through memory. Once the stream
/// is dropped, each thread stops after the object in its hands.
fn local_copies<'a>(
    src: &'a Repository,
    dst: &'a DynStore,
    from: FileStore,
    to: FileStore,
    todo: Vec<(ObjectPath, PutMode)>,
    workers: usize,
) -> BoxStream<'a, (ObjectPath, Result<u64>)> {
    let (tx, rx) = tokio::sync::mpsc::channel(workers * 2);
    let queue = Arc::new(Mutex::new(todo.into_iter()));
    for _ in 0..workers.max(1) {
        let (repo, from, to, queue, tx) = (src.clone(), from.clone(), to.clone(), queue.clone(), tx.clone());
        tokio::task::spawn_blocking(move || {
            let mut scratch = Vec::new();
            let mut done = Vec::with_capacity(RESULTS_PER_SEND);
            while !tx.is_closed() {
                let next = queue.lock().unwrap().next();
                let last = next.is_none();
                if let Some((path, mode)) = next {
                    let copied = to.copy_from(&from, &path, mode, &mut scratch, |bytes| repo.check_seal(&path, bytes));
                    done.push((path, mode, copied));
                }
                let hand_over = done.len() == RESULTS_PER_SEND || last && !done.is_empty();
                if hand_over && tx.blocking_send(std::mem::take(&mut done)).is_err() || last {
                    break; // the queue is empty, or the copy stopped
                }
            }
        });
    }
    futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|batch| (futures::stream::iter(batch), rx)) })
        .flatten()
        .then(move |(path, mode, copied)| async move {
            let result = match copied {
                Ok(Ok(n)) => Ok(n),
                Ok(Err(rejected)) => Err(source_first(
                    src,
                    &path,
                    RepoError::Corrupt {
                        key: format!("{} at {}", path, dst.describe()),
                        reason: match rejected {
                            RepoError::Corrupt { reason, .. } => format!("the copy of a sound source failed its check: {reason}"),
                            other => other.to_string(),
                        },
                    },
                )
                .await),
                Err(StoreError::AlreadyExists { .. }) => copy_object(src, dst, &path, mode, false).await,
                // The kernel's copy does not say which side failed.
                Err(e) => Err(source_first(src, &path, e.into()).await),
            };
            (path, result)
        })
        .boxed()
}

/// Results a copying thread hands over at once: each hand-over wakes the
/// runtime (on a VM, waking a thread on another core costs an interrupt),
/// which cost 15 % of a local copy's CPU at one result per object.
const RESULTS_PER_SEND: usize = 16;

/// What went wrong with a failed copy of `path`: the source's own damage
/// or read error when it has one (the better error: the copy cannot be
/// mended by trying again), else `copy_error`.
async fn source_first(src: &Repository, path: &ObjectPath, copy_error: RepoError) -> RepoError {
    match read_checked(src, path).await {
        Err(source) => source,
        Ok(_) => copy_error,
    }
}

/// Objects copied at once into `destination` (a URL or a store's
/// description): 16 into S3 or Azure, where request latency limits a copy;
/// 2 per core into `file://`, where more writers only contend for the
/// filesystem's directory and inode-allocation locks (measured on ext4:
/// 16 writers took 4x as long as 4 after a mass deletion).
pub fn default_jobs(destination: &str) -> usize {
    match destination.starts_with("file://") {
        true => crate::pipeline::default_workers(),
        false => 16,
    }
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
    // Locks of earlier copies that never released theirs: they may have lost writes.
    let earlier: Vec<FoundLock> =
        all_locks(&dst_repo).await?.into_iter().filter(|l| l.info.as_ref().is_some_and(|i| i.operation == COPY_LOCK)).collect();
    let lock = LockGuard::acquire(&dst_repo, LockKind::Shared, COPY_LOCK).await?;
    let result = async {
        if !earlier.is_empty() {
            check_unreferenced(&dst_repo, workers, &mut report).await?;
        }
        copy_objects(src, &dst, workers, &mut report).await
    }
    .await;
    lock.release_after(result).await?;
    let now = time::OffsetDateTime::now_utc();
    for l in earlier.iter().filter(|l| !l.is_live(now)) {
        dst.delete(&l.path).await?; // the interrupted copy is finished now
    }
    Ok(report)
}

const COPY_LOCK: &str = "geo-copy";

/// After an interrupted copy: check the seal of every destination object no
/// manifest references yet, deleting the damaged ones so they are copied again.
async fn check_unreferenced(dst: &Repository, workers: usize, report: &mut CopyReport) -> Result<()> {
    let mut referenced = HashSet::new();
    for b in dst.list_backups(None).await? {
        match dst.read_manifest(&b.cell, &b.id).await {
            Ok(m) => referenced.extend(m.chunk_ids().map(|id| format::chunk_path(id).to_string())),
            // A damaged manifest vouches for nothing: its chunks are checked
            // too, and the copy replaces it (its size differs from the source's).
            Err(RepoError::Corrupt { key, reason }) => {
                tracing::warn!(manifest = %key, %reason, "damaged at the destination; copying it again")
            }
            Err(e) => return Err(e),
        }
    }
    let suspects: Vec<ObjectPath> = dst
        .store()
        .list("")
        .await?
        .into_iter()
        .map(|m| m.path)
        .filter(|p| format::is_sealed_data(p.as_str()) && !referenced.contains(p.as_str()))
        .collect();
    tracing::warn!(objects = suspects.len(), "an earlier copy into {} did not finish: checking what it wrote", dst.location());
    let mut checks = futures::stream::iter(suspects)
        .map(|path| async move {
            let result = match dst.get_stored(&path).await {
                Ok(raw) => dst.check_seal(&path, &raw),
                Err(e) => Err(e),
            };
            (path, result)
        })
        .buffer_unordered(workers);
    while let Some((path, result)) = checks.next().await {
        match result {
            Ok(()) => {}
            Err(RepoError::Corrupt { reason, .. }) => {
                tracing::warn!(object = %path, %reason, "damaged by the interrupted copy; copying it again");
                dst.store().delete(&path).await?;
                report.repaired += 1;
            }
            Err(RepoError::Store(e)) if e.is_not_found() => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

async fn copy_objects(src: &Repository, dst: &DynStore, workers: usize, report: &mut CopyReport) -> Result<()> {
    let src_objects = src.store().list("").await?;
    let dst_sizes: HashMap<String, u64> = dst.list("").await?.into_iter().map(|m| (m.path.to_string(), m.size)).collect();
    let mut present: HashSet<String> = HashSet::new();
    let mut todo = Vec::new();
    for m in src_objects.iter().filter(|m| format::is_sealed_data(m.path.as_str())) {
        match dst_sizes.get(m.path.as_str()) {
            Some(&size) if size == m.size => {
                report.objects_already_present += 1;
                present.insert(m.path.to_string());
            }
            // A short or long object at the destination is a lost write: replace it.
            Some(_) => {
                report.repaired += 1;
                todo.push((m.path.clone(), PutMode::Overwrite));
            }
            None => todo.push((m.path.clone(), PutMode::Create)),
        }
    }
    // WAL first: it moves a cell's recoverable point in the copy; chunks
    // only matter once their manifest follows.
    todo.sort_by_key(|(path, _)| !path.as_str().starts_with("wal/"));
    let mut copies = data_copies(src, dst, todo, workers);
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
    // and durable there. Each is written durably (never a short manifest
    // under its name after a crash); one sync at the end makes their names
    // durable, and a name lost before it is copied again by a rerun.
    dst.sync().await?;
    let src_sizes: HashMap<&str, u64> =
        src_objects.iter().filter(|m| m.path.as_str().starts_with(format::MANIFESTS)).map(|m| (m.path.as_str(), m.size)).collect();
    for backup in src.list_backups(None).await? {
        let path = format::manifest_path(&backup.cell, &backup.id);
        let mode = match (dst_sizes.get(path.as_str()), src_sizes.get(path.as_str())) {
            (Some(have), Some(want)) if have == want => {
                report.objects_already_present += 1;
                continue;
            }
            // Cut short by a crash (copies before manifests were written
            // durably could leave that): replace it.
            (Some(_), _) => {
                report.repaired += 1;
                PutMode::Overwrite
            }
            (None, _) => PutMode::Create,
        };
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
        let n = copy_object(src, dst, &path, mode, true).await?;
        report.objects_copied += 1;
        report.manifests_copied += 1;
        report.bytes_copied += n;
    }
    // Legal holds travel with their backups.
    for meta in src_objects.iter().filter(|m| m.path.as_str().starts_with(format::HOLDS)) {
        if !dst_sizes.contains_key(meta.path.as_str()) {
            let raw = src.get_stored(&meta.path).await?;
            match dst.put(&meta.path, raw, PutMode::Create).await {
                Ok(()) | Err(StoreError::AlreadyExists { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    dst.sync().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::InitOptions;

    /// A source object the kernel cannot copy (here a directory where a
    /// file should be) is reported as the source's failure, not as a
    /// failed write at the destination, and nothing is published.
    #[tokio::test]
    async fn a_source_read_error_names_the_source() {
        let dir = tempfile::tempdir().unwrap();
        let (from, to) = (FileStore::new(dir.path().join("src")), FileStore::new(dir.path().join("dst")));
        let src_store: DynStore = Arc::new(from.clone());
        let dst_store: DynStore = Arc::new(to.clone());
        let src = Repository::init(src_store, None, InitOptions::default()).await.unwrap();
        let path = ObjectPath::parse("chunks/ab/ab00").unwrap();
        std::fs::create_dir_all(dir.path().join("src/chunks/ab/ab00")).unwrap();
        let todo = vec![(path.clone(), PutMode::Create)];
        let results: Vec<_> = local_copies(&src, &dst_store, from, to, todo, 2).collect().await;
        let [(failed, Err(e))] = &results[..] else { panic!("one failure expected: {results:?}") };
        assert_eq!(failed, &path);
        let message = e.to_string();
        assert!(message.contains(&format!("file://{}", dir.path().join("src").display())), "{message}");
        assert!(!message.contains("dst"), "{message}");
        assert!(!dir.path().join("dst/chunks/ab/ab00").exists());
        let leftovers = std::fs::read_dir(dir.path().join("dst/chunks/ab")).map(|d| d.count()).unwrap_or(0);
        assert_eq!(leftovers, 0, "no temporary file is left");
    }
}
