//! Configuration backups: a directory tree (GitOps checkouts, config dirs)
//! into the repository and back, preserving content, mode bits, mtimes and
//! symlinks.
//!
//! Backup walks the tree in sorted order, records every entry, and streams
//! the regular files' contents, concatenated, through the chunk pipeline.
//! Restore writes into a hidden staging directory next to the target and
//! renames it into place only when every chunk was verified, so a failed
//! restore leaves nothing behind, and no entry can land outside the target.

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use futures::StreamExt;
use time::OffsetDateTime;

use crate::error::{RepoError, Result};
use crate::lock::{LockGuard, LockKind};
use crate::manifest::{self, Entry, EntryKind, Manifest, Totals};
use crate::pipeline::{self, KnownChunks};
use crate::repo::Repository;

pub const KIND: &str = "files";

/// What a tree backup does with an entry, by its relative path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filter {
    Include,
    /// Leave the entry (and, for a directory, everything below it) out.
    Exclude,
    /// Keep the directory itself, empty (e.g. Postgres' `pg_wal`).
    EmptyDir,
}

/// A filter that includes everything.
pub fn include_all(_: &str) -> Filter {
    Filter::Include
}

/// Walk `root` in sorted order. Returns entries and the absolute paths of
/// the regular files (in entry order), plus the number of skipped entries.
fn walk(root: &Path, filter: fn(&str) -> Filter) -> Result<(Vec<Entry>, Vec<PathBuf>, u64)> {
    let mut entries = Vec::new();
    let mut files = Vec::new();
    let mut skipped = 0;
    let mut stack = vec![(root.to_path_buf(), String::new())];
    while let Some((dir, rel)) = stack.pop() {
        let mut names: Vec<_> = fs::read_dir(&dir)
            .map_err(RepoError::io(format!("listing {}", dir.display())))?
            .collect::<io::Result<Vec<_>>>()
            .map_err(RepoError::io(format!("listing {}", dir.display())))?;
        names.sort_by_key(|e| e.file_name());
        let mut subdirs = Vec::new();
        for item in names {
            let name = item.file_name();
            let name = name.to_str().ok_or_else(|| {
                RepoError::Invalid(format!("{}: file name is not UTF-8; rename it to back it up", item.path().display()))
            })?;
            let path = if rel.is_empty() { name.to_string() } else { format!("{rel}/{name}") };
            let decision = filter(&path);
            if decision == Filter::Exclude {
                continue;
            }
            let meta = match fs::symlink_metadata(item.path()) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue, // vanished while walking
                other => other,
            };
            let meta = meta.map_err(RepoError::io(format!("reading {}", item.path().display())))?;
            let mode = meta.permissions().mode() & 0o7777;
            let ft = meta.file_type();
            if ft.is_dir() {
                entries.push(Entry { path: path.clone(), kind: EntryKind::Dir, mode, size: 0, mtime: meta.mtime(), target: None, extent: None });
                if decision != Filter::EmptyDir {
                    subdirs.push((item.path(), path));
                }
            } else if ft.is_file() {
                entries.push(Entry { path, kind: EntryKind::File, mode, size: meta.len(), mtime: meta.mtime(), target: None, extent: None });
                files.push(item.path());
            } else if ft.is_symlink() {
                let target = fs::read_link(item.path()).map_err(RepoError::io(format!("reading link {}", item.path().display())))?;
                let target = target.to_str().ok_or_else(|| {
                    RepoError::Invalid(format!("{}: symlink target is not UTF-8", item.path().display()))
                })?;
                entries.push(Entry { path, kind: EntryKind::Symlink, mode, size: 0, mtime: meta.mtime(), target: Some(target.into()), extent: None });
            } else {
                tracing::warn!(path = %item.path().display(), "skipping a socket, fifo or device file");
                skipped += 1;
            }
        }
        // Depth-first in sorted order: push in reverse so the smallest name is next.
        stack.extend(subdirs.into_iter().rev());
    }
    Ok((entries, files, skipped))
}

/// Reads the regular files one after the other as one stream, remembering
/// how many bytes each contributed (a file that changes size mid-backup is
/// recorded as read, so restore splits the stream correctly). A file that
/// vanished between the walk and the read contributes nothing and is marked
/// `None` (Postgres drops relation files all the time; replay recreates
/// whatever is needed).
struct Concat {
    files: std::vec::IntoIter<PathBuf>,
    current: Option<File>,
    sizes: Arc<Mutex<Vec<Option<u64>>>>,
}

impl Read for Concat {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.current.is_none() {
                let Some(next) = self.files.next() else { return Ok(0) };
                match File::open(&next) {
                    Ok(file) => {
                        self.current = Some(file);
                        self.sizes.lock().unwrap().push(Some(0));
                    }
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {
                        tracing::warn!(file = %next.display(), "vanished during the backup; left out");
                        self.sizes.lock().unwrap().push(None);
                        continue;
                    }
                    Err(e) => return Err(io::Error::new(e.kind(), format!("opening {}: {e}", next.display()))),
                }
            }
            let n = self.current.as_mut().unwrap().read(buf)?;
            if n == 0 {
                self.current = None;
                continue;
            }
            if let Some(Some(size)) = self.sizes.lock().unwrap().last_mut() {
                *size += n as u64;
            }
            return Ok(n);
        }
    }
}

/// A tree stored in the repository, not yet committed by a manifest.
#[derive(Debug, Clone)]
pub struct StoredTree {
    pub source: String,
    pub entries: Vec<Entry>,
    pub chunks: Vec<crate::manifest::ChunkRef>,
    pub totals: Totals,
}

/// Store the tree under `dir` (entries passing `filter`) in the repository:
/// its chunks only; the caller commits it with a manifest. Checks that every
/// referenced chunk is present before returning.
///
/// With a `parent` (incrementals), a file whose size and mtime match the
/// parent's, and whose mtime is older than the parent's start (so the parent
/// read its final content), is not read again: its entry points at the
/// parent's chunks.
pub async fn store_tree(
    repo: &Repository,
    dir: &Path,
    filter: fn(&str) -> Filter,
    parent: Option<&Manifest>,
) -> Result<StoredTree> {
    let dir = dir.canonicalize().map_err(RepoError::io(format!("backup source {}", dir.display())))?;
    if !dir.is_dir() {
        return Err(RepoError::Invalid(format!("backup source {} is not a directory", dir.display())));
    }
    let walk_dir = dir.clone();
    let (mut entries, files, skipped) =
        tokio::task::spawn_blocking(move || walk(&walk_dir, filter)).await.expect("walk does not panic")?;
    // Reuse what the parent read, where it provably read the final content.
    let mut reused = 0u64;
    let mut to_read = Vec::with_capacity(files.len());
    if let Some(parent) = parent {
        let extents = parent.file_extents();
        let parent_started = parent.started.unix_timestamp();
        let by_path: std::collections::HashMap<&str, &Entry> =
            parent.entries.iter().filter(|e| e.kind == EntryKind::File).map(|e| (e.path.as_str(), e)).collect();
        let mut file_paths = files.into_iter();
        for entry in entries.iter_mut().filter(|e| e.kind == EntryKind::File) {
            let abs = file_paths.next().expect("one path per file entry");
            let same = by_path.get(entry.path.as_str()).is_some_and(|p| {
                p.size == entry.size && p.mtime == entry.mtime && p.mtime < parent_started - 1
            });
            match extents.get(entry.path.as_str()).filter(|_| same) {
                Some(extent) => {
                    entry.extent = Some(extent.clone());
                    reused += 1;
                }
                None => to_read.push(abs),
            }
        }
    } else {
        to_read = files;
    }
    let known = KnownChunks::load(repo).await?;
    let sizes = Arc::new(Mutex::new(Vec::new()));
    let reader = Concat { files: to_read.into_iter(), current: None, sizes: sizes.clone() };
    let (chunks, stats) = pipeline::store_stream(repo, &known, reader, pipeline::default_workers()).await?;
    let sizes = sizes.lock().unwrap().clone();
    let mut file_sizes = sizes.into_iter();
    let mut vanished = HashSet::new();
    for (i, entry) in entries.iter_mut().enumerate().filter(|(_, e)| e.kind == EntryKind::File && e.extent.is_none()) {
        match file_sizes.next().flatten() {
            Some(size) => entry.size = size,
            None => {
                vanished.insert(i);
            }
        }
    }
    let mut i = 0;
    entries.retain(|_| {
        i += 1;
        !vanished.contains(&(i - 1))
    });
    // Every referenced chunk must be present before the commit point.
    let present = repo.list_chunks().await?;
    let reused_chunks = entries.iter().filter_map(|e| e.extent.as_ref()).flat_map(|x| x.chunks.iter());
    if let Some(missing) = chunks.iter().chain(reused_chunks).find(|c| !present.contains_key(&c.id)) {
        return Err(RepoError::Invalid(format!(
            "chunk {} vanished from {} during the backup; the backup was not committed, run it again",
            missing.id,
            repo.location()
        )));
    }
    let count = |k: EntryKind| entries.iter().filter(|e| e.kind == k).count() as u64;
    let totals = Totals {
        files: count(EntryKind::File),
        dirs: count(EntryKind::Dir),
        symlinks: count(EntryKind::Symlink),
        bytes: entries.iter().filter(|e| e.kind == EntryKind::File).map(|e| e.size).sum(),
        chunks: stats.chunks,
        new_chunks: stats.new_chunks,
        new_stored_bytes: stats.new_stored_bytes,
        skipped,
        reused_files: reused,
    };
    Ok(StoredTree { source: dir.display().to_string(), entries, chunks, totals })
}

/// The manifest that commits a stored tree.
pub fn new_manifest(repo: &Repository, cell: &str, kind: &str, started: OffsetDateTime, tree: StoredTree) -> Manifest {
    Manifest {
        version: manifest::MANIFEST_VERSION,
        id: manifest::new_backup_id(kind, started),
        cell: cell.into(),
        kind: kind.into(),
        started,
        finished: OffsetDateTime::now_utc(),
        tool_version: env!("CARGO_PKG_VERSION").into(),
        key_id: repo.key().map(|k| k.id().to_string()),
        source: tree.source,
        entries: tree.entries,
        chunks: tree.chunks,
        totals: tree.totals,
        labels: Default::default(),
        details: None,
    }
}

/// Back up the directory `dir` for `cell`. The manifest is the commit point.
pub async fn backup_dir(repo: &Repository, cell: &str, dir: &Path) -> Result<Manifest> {
    crate::format::validate_cell(cell)?;
    let started = OffsetDateTime::now_utc();
    let lock = LockGuard::acquire(repo, LockKind::Shared, &format!("files backup of cell {cell}")).await?;
    let result = async {
        let tree = store_tree(repo, dir, include_all, None).await?;
        let manifest = new_manifest(repo, cell, KIND, started, tree);
        repo.write_manifest(&manifest).await?;
        Ok(manifest)
    }
    .await;
    lock.release().await?;
    result
}

/// Check every entry path, and that no entry lies below a symlink entry.
fn check_entries(manifest: &Manifest) -> Result<()> {
    let links: HashSet<&str> =
        manifest.entries.iter().filter(|e| e.kind == EntryKind::Symlink).map(|e| e.path.as_str()).collect();
    let mut seen = HashSet::new();
    for entry in &manifest.entries {
        manifest::validate_entry_path(&entry.path).map_err(|e| RepoError::Corrupt {
            key: format!("manifest {}", manifest.id),
            reason: e,
        })?;
        if !seen.insert(entry.path.as_str()) {
            return Err(RepoError::Corrupt { key: format!("manifest {}", manifest.id), reason: format!("duplicate entry {}", entry.path) });
        }
        let mut parent = entry.path.as_str();
        while let Some((up, _)) = parent.rsplit_once('/') {
            if links.contains(up) {
                return Err(RepoError::Corrupt {
                    key: format!("manifest {}", manifest.id),
                    reason: format!("entry {} lies below the symlink {up}", entry.path),
                });
            }
            parent = up;
        }
    }
    let stream_len: u64 = manifest.chunks.iter().map(|c| c.size as u64).sum();
    let files_len: u64 =
        manifest.entries.iter().filter(|e| e.kind == EntryKind::File && e.extent.is_none()).map(|e| e.size).sum();
    if stream_len != files_len {
        return Err(RepoError::Corrupt {
            key: format!("manifest {}", manifest.id),
            reason: format!("chunks hold {stream_len} bytes but files need {files_len}"),
        });
    }
    Ok(())
}

/// What a restore did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RestoreSummary {
    pub backup_id: String,
    pub target: String,
    pub files: u64,
    pub bytes: u64,
}

/// Restore a backup into `target`, which must not exist (or be an empty directory).
pub async fn restore_dir(repo: &Repository, manifest: &Manifest, target: &Path) -> Result<RestoreSummary> {
    check_entries(manifest)?;
    if let Ok(mut existing) = fs::read_dir(target) {
        if existing.next().is_some() {
            return Err(RepoError::Invalid(format!(
                "restore target {} exists and is not empty; choose a new directory",
                target.display()
            )));
        }
    } else if target.exists() {
        return Err(RepoError::Invalid(format!("restore target {} exists and is not a directory", target.display())));
    }
    let name = target
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| RepoError::Invalid(format!("restore target {} has no usable name", target.display())))?;
    let parent = target.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    fs::create_dir_all(parent).map_err(RepoError::io(format!("creating {}", parent.display())))?;
    let staging = parent.join(format!(".{name}.lifeboat-restore-{:08x}", rand::random::<u32>()));
    fs::create_dir(&staging).map_err(RepoError::io(format!("creating {}", staging.display())))?;

    let result = match write_tree(repo, manifest, &staging).await {
        Ok(()) => sync_filesystem(&staging),
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => {
            if target.exists() {
                fs::remove_dir(target).map_err(RepoError::io(format!("replacing empty {}", target.display())))?;
            }
            fs::rename(&staging, target).map_err(RepoError::io(format!("moving restore into {}", target.display())))?;
            File::open(parent).and_then(|d| d.sync_all()).map_err(RepoError::io(format!("syncing {}", parent.display())))?;
            Ok(RestoreSummary {
                backup_id: manifest.id.clone(),
                target: target.display().to_string(),
                files: manifest.totals.files,
                bytes: manifest.totals.bytes,
            })
        }
        Err(e) => {
            let _ = make_writable_and_remove(&staging);
            Err(e)
        }
    }
}

/// Flush everything written under `dir` to disk with one `syncfs(2)`: far
/// cheaper than an fsync per file for thousands of files.
fn sync_filesystem(dir: &Path) -> Result<()> {
    use std::os::fd::AsRawFd;
    let handle = File::open(dir).map_err(RepoError::io(format!("opening {}", dir.display())))?;
    // SAFETY: syncfs only reads the descriptor, which `handle` keeps open.
    if unsafe { libc::syncfs(handle.as_raw_fd()) } != 0 {
        return Err(RepoError::Io { context: format!("syncing {}", dir.display()), source: io::Error::last_os_error() });
    }
    Ok(())
}

fn make_writable_and_remove(dir: &Path) -> io::Result<()> {
    for entry in fs::read_dir(dir)?.flatten() {
        let meta = fs::symlink_metadata(entry.path())?;
        if meta.is_dir() {
            let _ = fs::set_permissions(entry.path(), fs::Permissions::from_mode(0o700));
            make_writable_and_remove(&entry.path())?;
        }
    }
    fs::remove_dir_all(dir)
}

/// Give a written file its recorded mode and mtime. (Durability comes from
/// one `syncfs` over the whole restore before it is moved into place.)
fn finish_file(out: File, path: &Path, entry: &Entry) -> Result<()> {
    out.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(entry.mtime.max(0) as u64))
        .map_err(RepoError::io(format!("setting mtime of {}", entry.path)))?;
    drop(out);
    fs::set_permissions(path, fs::Permissions::from_mode(entry.mode))
        .map_err(RepoError::io(format!("setting mode of {}", entry.path)))
}

/// Write the files an incremental reused from earlier backups. Neighbouring
/// small files share chunks, so the last few chunks read are kept at hand.
async fn write_extent_files(repo: &Repository, manifest: &Manifest, staging: &Path) -> Result<()> {
    let mut cache: std::collections::VecDeque<(String, Arc<Vec<u8>>)> = std::collections::VecDeque::new();
    for entry in manifest.entries.iter().filter(|e| e.kind == EntryKind::File) {
        let Some(extent) = &entry.extent else { continue };
        let path = staging.join(&entry.path);
        let mut out = File::create(&path).map_err(RepoError::io(format!("creating {}", entry.path)))?;
        let mut skip = extent.skip as usize;
        let mut left = entry.size;
        for chunk in &extent.chunks {
            if left == 0 {
                break;
            }
            let data = match cache.iter().find(|(id, _)| id == &chunk.id) {
                Some((_, data)) => data.clone(),
                None => {
                    let data = Arc::new(repo.read_chunk(&chunk.id).await?);
                    if cache.len() == 8 {
                        cache.pop_front();
                    }
                    cache.push_back((chunk.id.clone(), data.clone()));
                    data
                }
            };
            let piece = data.get(skip..).unwrap_or_default();
            let n = (left as usize).min(piece.len());
            out.write_all(&piece[..n]).map_err(RepoError::io(format!("writing {}", entry.path)))?;
            left -= n as u64;
            skip = 0;
        }
        if left > 0 {
            return Err(RepoError::Corrupt {
                key: format!("manifest {}", manifest.id),
                reason: format!("the extent of {} is {left} bytes short", entry.path),
            });
        }
        finish_file(out, &path, entry)?;
    }
    Ok(())
}

async fn write_tree(repo: &Repository, manifest: &Manifest, staging: &Path) -> Result<()> {
    // Directories first (writable for now), then file contents in stream
    // order, then symlinks, then modes (directories last, deepest first).
    for e in manifest.entries.iter().filter(|e| e.kind == EntryKind::Dir) {
        fs::create_dir_all(staging.join(&e.path)).map_err(RepoError::io(format!("creating directory {}", e.path)))?;
    }
    write_extent_files(repo, manifest, staging).await?;
    let files: Vec<Entry> =
        manifest.entries.iter().filter(|e| e.kind == EntryKind::File && e.extent.is_none()).cloned().collect();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(4);
    let root = staging.to_path_buf();
    let writer = tokio::task::spawn_blocking(move || -> Result<()> {
        let mut chunk: Vec<u8> = Vec::new();
        let mut pos = 0usize;
        for entry in &files {
            let path = root.join(&entry.path);
            let mut out = File::create(&path).map_err(RepoError::io(format!("creating {}", entry.path)))?;
            let mut left = entry.size;
            while left > 0 {
                if pos == chunk.len() {
                    chunk = rx.blocking_recv().ok_or_else(|| RepoError::Invalid("chunk stream ended early".into()))?;
                    pos = 0;
                }
                let n = (left as usize).min(chunk.len() - pos);
                out.write_all(&chunk[pos..pos + n]).map_err(RepoError::io(format!("writing {}", entry.path)))?;
                pos += n;
                left -= n as u64;
            }
            finish_file(out, &path, entry)?;
        }
        Ok(())
    });
    let mut chunks = pipeline::read_stream(repo, manifest.chunks.clone(), pipeline::default_workers());
    let mut failure = None;
    while let Some(chunk) = chunks.next().await {
        match chunk {
            Ok(data) => {
                if tx.send(data).await.is_err() {
                    break; // writer failed; its error is reported below
                }
            }
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    drop(tx);
    let written = writer.await.expect("writer does not panic");
    if let Some(e) = failure {
        return Err(e);
    }
    written?;
    for e in manifest.entries.iter().filter(|e| e.kind == EntryKind::Symlink) {
        let target = e.target.as_deref().unwrap_or_default();
        std::os::unix::fs::symlink(target, staging.join(&e.path)).map_err(RepoError::io(format!("creating symlink {}", e.path)))?;
    }
    let mut dirs: Vec<&Entry> = manifest.entries.iter().filter(|e| e.kind == EntryKind::Dir).collect();
    dirs.sort_by_key(|e| std::cmp::Reverse(e.path.matches('/').count()));
    for e in dirs {
        fs::set_permissions(staging.join(&e.path), fs::Permissions::from_mode(e.mode))
            .map_err(RepoError::io(format!("setting mode of {}", e.path)))?;
    }
    Ok(())
}
