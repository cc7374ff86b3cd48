//! Configuration backups: a directory tree (GitOps checkouts, config dirs)
//! into the repository and back, preserving content, mode bits, mtimes and
//! symlinks.
//!
//! Backup walks the tree in sorted order, records every entry, and streams
//! the regular files' contents, concatenated, through the chunk pipeline.
//! Every file's BLAKE3 hash is recorded, for delta restores. Restoring is
//! [`crate::tree_restore`]'s (re-exported here).

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use time::OffsetDateTime;

use crate::error::{RepoError, Result};
use crate::lock::{LockGuard, LockKind};
use crate::manifest::{self, Entry, EntryKind, Manifest, Totals};
use crate::pipeline::{self, KnownChunks};
use crate::repo::Repository;
pub use crate::tree_restore::{restore_delta, restore_delta_with, restore_dir, restore_dir_with, RestoreOptions, RestoreSummary};

pub const KIND: &str = "files";

/// What a tree backup does with an entry, by its relative path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filter {
    Include,
    /// Leave the entry (and, for a directory, everything below it) out.
    Exclude,
    /// Keep the directory itself, empty (e.g. Postgres' `pg_wal`).
    EmptyDir,
    /// A symlink to a directory stored as that directory, with its contents
    /// (Postgres' `pg_tblspc/<oid>`: tablespaces outside the data directory).
    Follow,
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
            let name = name
                .to_str()
                .ok_or_else(|| RepoError::Invalid(format!("{}: file name is not UTF-8; rename it to back it up", item.path().display())))?;
            let path = if rel.is_empty() { name.to_string() } else { format!("{rel}/{name}") };
            let decision = filter(&path);
            if decision == Filter::Exclude {
                continue;
            }
            let meta = match fs::symlink_metadata(item.path()) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue, // vanished while walking
                other => other,
            };
            let mut meta = meta.map_err(RepoError::io(format!("reading {}", item.path().display())))?;
            if decision == Filter::Follow && meta.file_type().is_symlink() {
                meta = fs::metadata(item.path()).map_err(RepoError::io(format!("following {}", item.path().display())))?;
                if !meta.is_dir() {
                    return Err(RepoError::Invalid(format!("{} does not lead to a directory", item.path().display())));
                }
            }
            let mode = meta.permissions().mode() & 0o7777;
            let ft = meta.file_type();
            if ft.is_dir() {
                entries.push(Entry {
                    path: path.clone(),
                    kind: EntryKind::Dir,
                    mode,
                    size: 0,
                    mtime: meta.mtime(),
                    target: None,
                    extent: None,
                    blake3: None,
                });
                if decision != Filter::EmptyDir {
                    subdirs.push((item.path(), path));
                }
            } else if ft.is_file() {
                entries.push(Entry {
                    path,
                    kind: EntryKind::File,
                    mode,
                    size: meta.len(),
                    mtime: meta.mtime(),
                    target: None,
                    extent: None,
                    blake3: None,
                });
                files.push(item.path());
            } else if ft.is_symlink() {
                let target = fs::read_link(item.path()).map_err(RepoError::io(format!("reading link {}", item.path().display())))?;
                let target =
                    target.to_str().ok_or_else(|| RepoError::Invalid(format!("{}: symlink target is not UTF-8", item.path().display())))?;
                entries.push(Entry {
                    path,
                    kind: EntryKind::Symlink,
                    mode,
                    size: 0,
                    mtime: meta.mtime(),
                    target: Some(target.into()),
                    extent: None,
                    blake3: None,
                });
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

/// What the backup read of one regular file.
#[derive(Debug, Clone)]
struct FileRead {
    size: u64,
    blake3: String,
}

/// Reads the regular files one after the other as one stream, remembering
/// how many bytes each contributed and their BLAKE3 hash (a file that changes
/// size mid-backup is recorded as read, so restore splits the stream
/// correctly). A file that vanished between the walk and the read
/// contributes nothing and is marked `None` (Postgres drops relation files
/// all the time; replay recreates whatever is needed).
struct Concat {
    progress: Arc<crate::progress::Progress>,
    files: std::vec::IntoIter<PathBuf>,
    current: Option<(File, u64, blake3::Hasher)>,
    reads: Arc<Mutex<Vec<Option<FileRead>>>>,
}

impl Read for Concat {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.current.is_none() {
                let Some(next) = self.files.next() else { return Ok(0) };
                match File::open(&next) {
                    Ok(file) => self.current = Some((file, 0, blake3::Hasher::new())),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {
                        tracing::warn!(file = %next.display(), "vanished during the backup; left out");
                        self.reads.lock().unwrap().push(None);
                        continue;
                    }
                    Err(e) => return Err(io::Error::new(e.kind(), format!("opening {}: {e}", next.display()))),
                }
            }
            let (file, size, hasher) = self.current.as_mut().unwrap();
            let n = file.read(buf)?;
            if n == 0 {
                let (_, size, hasher) = self.current.take().unwrap();
                self.reads.lock().unwrap().push(Some(FileRead { size, blake3: hasher.finalize().to_hex().to_string() }));
                continue;
            }
            *size += n as u64;
            hasher.update(&buf[..n]);
            self.progress.add(n as u64);
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
pub async fn store_tree(repo: &Repository, dir: &Path, filter: fn(&str) -> Filter, parent: Option<&Manifest>) -> Result<StoredTree> {
    let dir = dir.canonicalize().map_err(RepoError::io(format!("backup source {}", dir.display())))?;
    if !dir.is_dir() {
        return Err(RepoError::Invalid(format!("backup source {} is not a directory", dir.display())));
    }
    let walk_dir = dir.clone();
    let (mut entries, files, skipped) = tokio::task::spawn_blocking(move || walk(&walk_dir, filter)).await.expect("walk does not panic")?;
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
            let same = by_path
                .get(entry.path.as_str())
                .is_some_and(|p| p.size == entry.size && p.mtime == entry.mtime && p.mtime < parent_started - 1);
            match extents.get(entry.path.as_str()).filter(|_| same) {
                Some(extent) => {
                    entry.extent = Some(extent.clone());
                    entry.blake3 = by_path[entry.path.as_str()].blake3.clone();
                    reused += 1;
                }
                None => to_read.push(abs),
            }
        }
    } else {
        to_read = files;
    }
    let known = KnownChunks::load(repo).await?;
    let reads = Arc::new(Mutex::new(Vec::new()));
    let expected: u64 = entries.iter().filter(|e| e.kind == EntryKind::File && e.extent.is_none()).map(|e| e.size).sum();
    repo.progress().start(expected);
    let reader = Concat { progress: repo.progress().clone(), files: to_read.into_iter(), current: None, reads: reads.clone() };
    let (chunks, stats) = pipeline::store_stream(repo, &known, reader, pipeline::default_workers()).await?;
    let reads = std::mem::take(&mut *reads.lock().unwrap());
    let mut file_reads = reads.into_iter();
    let mut vanished = HashSet::new();
    for (i, entry) in entries.iter_mut().enumerate().filter(|(_, e)| e.kind == EntryKind::File && e.extent.is_none()) {
        match file_reads.next().flatten() {
            Some(read) => {
                entry.size = read.size;
                entry.blake3 = Some(read.blake3);
            }
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
    let reused_chunks = entries.iter().filter_map(|e| e.extent.as_ref()).flat_map(|x| x.chunks.iter());
    pipeline::ensure_present(repo, chunks.iter().chain(reused_chunks)).await?;
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
    lock.release_after(result).await
}
