//! Geo-redundant copy: make a destination hold everything the source holds.
//!
//! Only objects the destination lacks move (chunks, WAL and every other
//! sealed object). An object the destination lists is taken as held only
//! when its content is known to be the source's, never by its size: S3
//! lists the same content hash at both ends (an ETag S3 computed; Azure's
//! Content-MD5 is not used, since a writer can set it unchecked), or an
//! earlier pass of the same copier found the pair identical and neither
//! end has rewritten it since ([`Checked`]), or its bytes are read at both
//! ends and are equal, the destination's sealed. Anything else is copied
//! again, so neither a lost write of a crashed copy, nor a same-size object
//! planted at the destination, nor an older version of an object the source
//! rewrote is trusted. Data objects are written without an fsync each and
//! made durable by one barrier before the first manifest. Every object is
//! verified by its seal (the AEAD tag, or SHA-256 over the stored bytes and
//! the object's name) and by what the destination holds after the copy: between two `file://` repositories the kernel
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
use lifeboat_storage::{DynStore, ObjectMeta, ObjectPath, PutMode, StoreError};

use crate::copy_marker::{self, CellCopied, CopyMarker};
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

/// Copy everything `src` holds that `dst` lacks (a one-shot copy: every
/// object the destination already holds is checked, see [`copy_checked`]).
pub async fn copy(src: &Repository, dst: DynStore, workers: usize) -> Result<CopyReport> {
    copy_checked(src, dst, workers, &mut Checked::default()).await
}

/// Copy, trusting what `checked` says an earlier pass checked at `dst` and
/// leaving in it what this pass found there.
pub async fn copy_checked(src: &Repository, dst: DynStore, workers: usize, checked: &mut Checked) -> Result<CopyReport> {
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
    // Locks of earlier copies that never released theirs (removed once this one finishes).
    let earlier: Vec<FoundLock> =
        all_locks(&dst_repo).await?.into_iter().filter(|l| l.info.as_ref().is_some_and(|i| i.operation == COPY_LOCK)).collect();
    let started = time::OffsetDateTime::now_utc();
    let lock = LockGuard::acquire(&dst_repo, LockKind::Shared, COPY_LOCK).await?;
    let result = async {
        let cells = copy_objects(src, &dst_repo, workers, checked, &mut report).await?;
        if report.failures.is_empty() {
            let marker = CopyMarker {
                source: report.source.clone(),
                started,
                finished: time::OffsetDateTime::now_utc(),
                objects_copied: report.objects_copied,
                bytes_copied: report.bytes_copied,
                cells,
            };
            copy_marker::write(&dst_repo, &marker).await?;
        }
        Ok::<_, RepoError>(())
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

/// The cell an object belongs to, for objects that carry one in their key
/// (WAL, manifests, holds, Kafka state, reports, failover journals, plans);
/// chunks and fences do not count (chunks are inert without manifests;
/// fences must travel).
fn cell_of(key: &str) -> Option<&str> {
    let rest = ["wal/", format::MANIFESTS, format::HOLDS, "kafka/", "reports/", "failovers/", "plans/"]
        .iter()
        .find_map(|p| key.strip_prefix(p))?;
    rest.split_once('/').map(|(cell, _)| cell)
}

/// Cells fenced at a higher epoch at the destination than at the source:
/// the source is the old side of a failover (say, its region came back
/// before it learned of the fence), and what it holds of such a cell must
/// not mix into the history the new primary writes. Cell -> why.
async fn fenced_out(src: &Repository, dst: &Repository) -> Result<std::collections::BTreeMap<String, String>> {
    let mut out = std::collections::BTreeMap::new();
    let listed = dst.store().list(crate::fence::FENCES).await?;
    let cells: HashSet<&str> =
        listed.iter().filter_map(|m| m.path.as_str()[crate::fence::FENCES.len()..].split_once('/')).map(|(c, _)| c).collect();
    for cell in cells {
        let Some(there) = crate::fence::newest(dst, cell).await? else { continue };
        let here = crate::fence::newest(src, cell).await?.map_or(0, |f| f.epoch);
        if there.epoch > here {
            let why = format!(
                "not copied: the destination is fenced at epoch {} ({}) and the source only at epoch {here}: the source is the old side of a failover",
                there.epoch,
                there.describe()
            );
            out.insert(cell.to_string(), why);
        }
    }
    Ok(out)
}

/// Holds travel with their backups: a hold the destination lacks is copied,
/// after the store's legal hold (where it enforces one: S3 Object Lock) is
/// set on the backup's manifest and chunks there, and then on the hold
/// itself; a copy cut short before the hold lands does it all again.
/// Releasing a hold is done per location (`repo hold --release`).
async fn copy_holds(src: &Repository, dst: &Repository, src_objects: &[ObjectMeta], listed: &HashMap<String, ObjectMeta>) -> Result<()> {
    for meta in src_objects.iter().filter(|m| m.path.as_str().starts_with(format::HOLDS)) {
        if listed.contains_key(meta.path.as_str()) {
            continue;
        }
        let name = &meta.path.as_str()[format::HOLDS.len()..];
        let Some((cell, id)) = name.split_once('/') else { continue };
        // The hold goes with its backup: not before the manifest is there
        // (a later pass copies it), and only once the backup's legal holds are set.
        let manifest = match dst.read_manifest(cell, id).await {
            Ok(m) => m,
            Err(RepoError::Store(e)) if e.is_not_found() => continue,
            Err(e) => return Err(e),
        };
        crate::retention::set_legal_holds(dst, &crate::retention::backup_objects(cell, id, &manifest)).await?;
        let raw = src.get_stored(&meta.path).await?;
        match dst.store().put(&meta.path, raw, PutMode::Create).await {
            Ok(()) | Err(StoreError::AlreadyExists { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        crate::retention::set_legal_holds(dst, std::slice::from_ref(&meta.path)).await?;
    }
    Ok(())
}

/// Objects a copier has found identical at both ends, each with how the
/// source and the destination listed it then (size, time written, content
/// hash). A pair listed exactly so again has not been rewritten at either
/// end since, and is not read again. The continuous geo-copy keeps one per
/// location across passes; a one-shot copy starts empty.
#[derive(Debug, Default)]
pub struct Checked(HashMap<String, (ObjectMeta, ObjectMeta)>);

impl Checked {
    fn vouches_for(&self, want: &ObjectMeta, have: &ObjectMeta) -> bool {
        let dated = want.modified.is_some() && have.modified.is_some();
        dated && matches!(self.0.get(have.path.as_str()), Some((w, h)) if w == want && h == have)
    }
}

/// Whether the destination's object (`have`) holds the source's (`want`),
/// as far as the listings tell.
enum Found {
    Same,
    Differs(&'static str),
    /// Same size, and nothing listed proves more: compare the bytes.
    Unknown,
}

fn compare(want: &ObjectMeta, have: &ObjectMeta, checked: &Checked) -> Found {
    if want.size != have.size {
        return Found::Differs("its size differs from the source's");
    }
    match (want.md5, have.md5) {
        // Computed by the store from what it received: equal hashes are
        // proof; unequal ones are not (an encrypted bucket's ETags differ).
        (Some(a), Some(b)) if a == b => Found::Same,
        _ if checked.vouches_for(want, have) => Found::Same,
        _ => Found::Unknown,
    }
}

/// What the destination must receive of some source objects, and what it
/// already holds.
#[derive(Default)]
struct Sorted {
    present: HashSet<String>,
    todo: Vec<(ObjectPath, PutMode)>,
}

/// Read an object at both ends: None when the destination holds the
/// source's bytes, else why it must be copied again.
async fn same_bytes(src: &Repository, dst: &Repository, path: &ObjectPath) -> Result<Option<&'static str>> {
    let there = dst.get_stored(path).await?;
    if dst.check_seal(path, &there).is_err() {
        return Ok(Some("it fails its seal check (a lost write or a rewrite)"));
    }
    match src.get_stored(path).await {
        Ok(here) if here == there => Ok(None),
        Ok(_) => Ok(Some("its content differs from the source's")),
        // The copy reports the source's own trouble.
        Err(_) => Ok(Some("the source could not be read to compare")),
    }
}

/// Sort `objects` of the source into those the destination already holds
/// and those to copy (with the mode to write each in). An object counts as
/// held only when its content is known to be the source's: S3 lists the
/// same content hash at both ends, `before` vouches for the pair, or its
/// bytes are read at both ends and are equal (and sealed). Sizes alone
/// never do. What was found held goes into `now`.
async fn sort_out<'a>(
    src: &Repository,
    dst: &Repository,
    objects: impl Iterator<Item = &'a ObjectMeta>,
    listed: &HashMap<String, ObjectMeta>,
    workers: usize,
    (before, now): (&Checked, &mut Checked),
    report: &mut CopyReport,
) -> Result<Sorted> {
    let mut out = Sorted::default();
    let mut unknown = Vec::new();
    for want in objects {
        let Some(have) = listed.get(want.path.as_str()) else {
            out.todo.push((want.path.clone(), PutMode::Create));
            continue;
        };
        match compare(want, have, before) {
            Found::Same => out.hold(want, have, now, report),
            Found::Differs(why) => out.replace(have, why, report),
            Found::Unknown => unknown.push((want.clone(), have.clone())),
        }
    }
    report.checked_at_destination += unknown.len() as u64;
    let mut checks = futures::stream::iter(unknown)
        .map(|(want, have): (ObjectMeta, ObjectMeta)| async move {
            let result = same_bytes(src, dst, &have.path).await;
            (want, have, result)
        })
        .buffer_unordered(workers);
    while let Some((want, have, result)) = checks.next().await {
        match result {
            Ok(None) => out.hold(&want, &have, now, report),
            Ok(Some(why)) => out.replace(&have, why, report),
            Err(RepoError::Store(e)) if e.is_not_found() => out.todo.push((have.path.clone(), PutMode::Create)),
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

impl Sorted {
    fn hold(&mut self, want: &ObjectMeta, have: &ObjectMeta, now: &mut Checked, report: &mut CopyReport) {
        report.objects_already_present += 1;
        self.present.insert(have.path.to_string());
        now.0.insert(have.path.to_string(), (want.clone(), have.clone()));
    }

    fn replace(&mut self, have: &ObjectMeta, why: &str, report: &mut CopyReport) {
        tracing::warn!(object = %have.path, "at the destination {why}: copying it again");
        report.repaired += 1;
        self.todo.push((have.path.clone(), PutMode::Overwrite));
    }
}

/// Copy what the destination lacks; per cell, the newest of what the
/// source held (and the destination now holds, unless a failure says not).
async fn copy_objects(
    src: &Repository,
    dst_repo: &Repository,
    workers: usize,
    checked: &mut Checked,
    report: &mut CopyReport,
) -> Result<std::collections::BTreeMap<String, CellCopied>> {
    let dst = dst_repo.store();
    let mut src_objects = src.store().list("").await?;
    let fenced = fenced_out(src, dst_repo).await?;
    for (cell, why) in &fenced {
        tracing::error!(%cell, "{why}");
        report.failures.push(format!("cell {cell}: {why}"));
    }
    src_objects.retain(|m| cell_of(m.path.as_str()).is_none_or(|c| !fenced.contains_key(c)));
    let listed: HashMap<String, ObjectMeta> = dst.list("").await?.into_iter().map(|m| (m.path.to_string(), m)).collect();
    let before = std::mem::take(checked);
    // The source's own marker describes a pass into it, not this one.
    let data = src_objects.iter().filter(|m| format::is_sealed_data(m.path.as_str()) && m.path.as_str() != copy_marker::KEY);
    let Sorted { mut present, mut todo } = sort_out(src, dst_repo, data, &listed, workers, (&before, checked), report).await?;
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
    let manifests = src_objects.iter().filter(|m| m.path.as_str().starts_with(format::MANIFESTS));
    let to_write: HashMap<String, PutMode> = sort_out(src, dst_repo, manifests, &listed, workers, (&before, checked), report)
        .await?
        .todo
        .into_iter()
        .map(|(p, m)| (p.to_string(), m))
        .collect();
    for backup in src.list_backups(None).await? {
        let path = format::manifest_path(&backup.cell, &backup.id);
        let Some(&mode) = to_write.get(path.as_str()) else { continue };
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
    copy_holds(src, dst_repo, &src_objects, &listed).await?;
    dst.sync().await?;
    Ok(copy_marker::newest_per_cell(&src_objects))
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
