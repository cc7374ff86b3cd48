//! Restoring a backed-up tree: into a new directory (atomically, through a
//! staging directory renamed into place) or, as a delta, over an existing
//! directory, keeping the files whose content already hashes to what the
//! manifest records.
//!
//! Both paths share one writer: every file to write is an extent (a run of
//! chunks plus an offset into the first), the chunks of all extents are
//! fetched in parallel in one ordered stream, and a blocking thread cuts
//! that stream into files. No entry can land outside the target: paths are
//! checked before anything is written, and nothing lies below a symlink.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use futures::StreamExt;

use crate::error::{RepoError, Result};
use crate::manifest::{self, ChunkRef, Entry, EntryKind, Extent, Manifest};
use crate::pipeline;
use crate::repo::Repository;

/// Left in the target while a delta restore runs: a directory holding it is
/// a mix of old and new content. Rerun the delta restore to finish it.
pub const DELTA_MARKER: &str = ".lifeboat-delta-restore-incomplete";

/// What a restore did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RestoreSummary {
    pub backup_id: String,
    pub target: String,
    pub files: u64,
    pub bytes: u64,
    /// Delta restores: files kept because their content already matched.
    pub reused_files: u64,
    pub reused_bytes: u64,
    /// Delta restores: entries removed because the backup does not hold them.
    pub removed: u64,
}

/// How restored entries get their modes.
#[derive(Debug, Clone, Copy, Default)]
pub struct RestoreOptions {
    /// Keep setuid and setgid bits as backed up. Off (the default), they
    /// are cleared: a restored configuration never plants a program that
    /// runs as its owner.
    pub preserve_special_bits: bool,
}

const SPECIAL_BITS: u32 = 0o6000;

impl RestoreOptions {
    /// `manifest` with the modes this restore gives its entries.
    fn modes(self, manifest: &Manifest) -> Manifest {
        let mut m = manifest.clone();
        if self.preserve_special_bits {
            return m;
        }
        let mut cleared = 0;
        for e in m.entries.iter_mut().filter(|e| e.mode & SPECIAL_BITS != 0) {
            e.mode &= !SPECIAL_BITS;
            cleared += 1;
        }
        if cleared > 0 {
            tracing::warn!(entries = cleared, backup = %m.id, "cleared setuid/setgid bits; restore with --preserve-special-bits to keep them");
        }
        m
    }
}

/// Restore a backup into `target`, which must not exist (or be an empty
/// directory), clearing setuid/setgid bits.
pub async fn restore_dir(repo: &Repository, manifest: &Manifest, target: &Path) -> Result<RestoreSummary> {
    restore_dir_with(repo, manifest, target, RestoreOptions::default()).await
}

/// [`restore_dir`] with `options`.
pub async fn restore_dir_with(repo: &Repository, manifest: &Manifest, target: &Path, options: RestoreOptions) -> Result<RestoreSummary> {
    check_entries(manifest)?;
    let manifest = &options.modes(manifest);
    if let Ok(mut existing) = fs::read_dir(target) {
        if existing.next().is_some() {
            return Err(RepoError::Invalid(format!(
                "restore target {} exists and is not empty; choose a new directory (or restore with --delta to reuse its matching files)",
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

    let result = match write_tree(repo, manifest, &staging, &HashSet::new()).await {
        Ok(()) => sync_filesystem(&staging),
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => {
            if target.exists() {
                fs::remove_dir(target).map_err(RepoError::io(format!("replacing empty {}", target.display())))?;
            }
            fs::rename(&staging, target).map_err(RepoError::io(format!("moving restore into {}", target.display())))?;
            sync_dir(parent)?;
            Ok(summary(manifest, target, 0, 0, 0))
        }
        Err(e) => {
            let _ = make_writable_and_remove(&staging);
            Err(e)
        }
    }
}

/// Restore a backup over an existing directory: files whose size and
/// BLAKE3 match the manifest are kept (only their mode and mtime are set),
/// the rest are written, and entries the backup does not hold are removed.
///
/// `write_last` names files that are removed first and written only once
/// everything else is durable, so an interrupted delta never leaves them
/// next to mixed content (Postgres: `global/pg_control`, without which the
/// server refuses to start). [`DELTA_MARKER`] stays in the target until the
/// restore is complete. A missing or empty target is restored normally.
pub async fn restore_delta(repo: &Repository, manifest: &Manifest, target: &Path, write_last: &[&str]) -> Result<RestoreSummary> {
    restore_delta_with(repo, manifest, target, write_last, RestoreOptions::default()).await
}

/// [`restore_delta`] with `options`.
pub async fn restore_delta_with(
    repo: &Repository,
    manifest: &Manifest,
    target: &Path,
    write_last: &[&str],
    options: RestoreOptions,
) -> Result<RestoreSummary> {
    check_entries(manifest)?;
    let manifest = &options.modes(manifest);
    let meta = match fs::symlink_metadata(target) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return restore_dir_with(repo, manifest, target, options).await,
        other => other.map_err(RepoError::io(format!("reading {}", target.display())))?,
    };
    if !meta.is_dir() {
        return Err(RepoError::Invalid(format!("restore target {} exists and is not a directory", target.display())));
    }
    if fs::read_dir(target).map_err(RepoError::io(format!("listing {}", target.display())))?.next().is_none() {
        return restore_dir_with(repo, manifest, target, options).await;
    }
    let last: HashSet<String> = write_last.iter().map(|s| s.to_string()).collect();
    fs::write(target.join(DELTA_MARKER), &manifest.id).map_err(RepoError::io(format!("marking {}", target.display())))?;
    for path in &last {
        match fs::remove_file(target.join(path)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                return Err(RepoError::Io { context: format!("removing {path} before the delta restore"), source: e })
            }
            _ => {}
        }
    }
    sync_filesystem(target)?;

    let (root, m, keep_last) = (target.to_path_buf(), manifest.clone(), last.clone());
    let plan = tokio::task::spawn_blocking(move || plan_delta(&root, &m, &keep_last)).await.expect("delta planning does not panic")?;
    let skip: HashSet<String> = last.iter().chain(plan.reused.iter()).cloned().collect();
    write_tree(repo, manifest, target, &skip).await?;
    sync_filesystem(target)?;
    if !last.is_empty() {
        write_files(repo, manifest, target, &last, false).await?;
        sync_filesystem(target)?;
    }
    fs::remove_file(target.join(DELTA_MARKER)).map_err(RepoError::io(format!("unmarking {}", target.display())))?;
    sync_dir(target)?;
    Ok(summary(manifest, target, plan.reused.len() as u64, plan.reused_bytes, plan.removed))
}

fn summary(manifest: &Manifest, target: &Path, reused_files: u64, reused_bytes: u64, removed: u64) -> RestoreSummary {
    RestoreSummary {
        backup_id: manifest.id.clone(),
        target: target.display().to_string(),
        files: manifest.totals.files,
        bytes: manifest.totals.bytes,
        reused_files,
        reused_bytes,
        removed,
    }
}

struct DeltaPlan {
    /// Files whose content already matches (their mode and mtime are fixed).
    reused: Vec<String>,
    reused_bytes: u64,
    removed: u64,
}

/// Remove what the backup does not hold (or holds as another type), open
/// up directories for writing, and find the files that can stay.
fn plan_delta(root: &Path, manifest: &Manifest, write_last: &HashSet<String>) -> Result<DeltaPlan> {
    let wanted: HashMap<&str, &Entry> = manifest.entries.iter().map(|e| (e.path.as_str(), e)).collect();
    let mut plan = DeltaPlan { reused: Vec::new(), reused_bytes: 0, removed: 0 };
    let mut stack = vec![(root.to_path_buf(), String::new())];
    while let Some((dir, rel)) = stack.pop() {
        let _ = fs::set_permissions(&dir, fs::Permissions::from_mode(0o700));
        for item in fs::read_dir(&dir).map_err(RepoError::io(format!("listing {}", dir.display())))? {
            let item = item.map_err(RepoError::io(format!("listing {}", dir.display())))?;
            let name = item.file_name().to_string_lossy().into_owned();
            let path = if rel.is_empty() { name.clone() } else { format!("{rel}/{name}") };
            if rel.is_empty() && name == DELTA_MARKER {
                continue;
            }
            let abs = item.path();
            let meta = fs::symlink_metadata(&abs).map_err(RepoError::io(format!("reading {}", abs.display())))?;
            let kept = match wanted.get(path.as_str()) {
                Some(e) if meta.is_dir() && e.kind == EntryKind::Dir => {
                    stack.push((abs.clone(), path.clone()));
                    true
                }
                Some(e) if meta.file_type().is_symlink() && e.kind == EntryKind::Symlink => {
                    fs::read_link(&abs).ok().and_then(|t| t.to_str().map(String::from)) == e.target
                }
                Some(e) if meta.is_file() && e.kind == EntryKind::File && !write_last.contains(&path) => {
                    let same = content_matches(&abs, e)?;
                    if same {
                        finish_file(File::open(&abs).map_err(RepoError::io(format!("opening {path}")))?, &abs, e)?;
                        plan.reused.push(path.clone());
                        plan.reused_bytes += e.size;
                    } else {
                        // Removed, not overwritten: it may be read-only or
                        // hard-linked elsewhere.
                        fs::remove_file(&abs).map_err(RepoError::io(format!("removing {}", abs.display())))?;
                    }
                    true
                }
                _ => false,
            };
            if !kept {
                if meta.is_dir() { make_writable_and_remove(&abs) } else { fs::remove_file(&abs) }
                    .map_err(RepoError::io(format!("removing {}", abs.display())))?;
                plan.removed += 1;
            }
        }
    }
    Ok(plan)
}

fn content_matches(path: &Path, entry: &Entry) -> Result<bool> {
    let Some(want) = &entry.blake3 else { return Ok(false) };
    let mut file = File::open(path).map_err(RepoError::io(format!("opening {}", path.display())))?;
    if file.metadata().map(|m| m.len()).unwrap_or(u64::MAX) != entry.size {
        return Ok(false);
    }
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(RepoError::io(format!("reading {}", path.display())))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher.finalize().to_hex().as_str() == want)
}

/// Check every entry path, and that no entry lies below a symlink entry.
fn check_entries(manifest: &Manifest) -> Result<()> {
    let corrupt = |reason: String| RepoError::Corrupt { key: format!("manifest {}", manifest.id), reason };
    let links: HashSet<&str> = manifest.entries.iter().filter(|e| e.kind == EntryKind::Symlink).map(|e| e.path.as_str()).collect();
    let mut seen = HashSet::new();
    for entry in &manifest.entries {
        manifest::validate_entry_path(&entry.path).map_err(corrupt)?;
        if !seen.insert(entry.path.as_str()) {
            return Err(corrupt(format!("duplicate entry {}", entry.path)));
        }
        let mut parent = entry.path.as_str();
        while let Some((up, _)) = parent.rsplit_once('/') {
            if links.contains(up) {
                return Err(corrupt(format!("entry {} lies below the symlink {up}", entry.path)));
            }
            parent = up;
        }
    }
    let stream_len: u64 = manifest.chunks.iter().map(|c| c.size as u64).sum();
    let files_len: u64 = manifest.entries.iter().filter(|e| e.kind == EntryKind::File && e.extent.is_none()).map(|e| e.size).sum();
    if stream_len != files_len {
        return Err(corrupt(format!("chunks hold {stream_len} bytes but files need {files_len}")));
    }
    Ok(())
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

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(RepoError::io(format!("syncing {}", dir.display())))
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
/// one `syncfs` over the whole restore.)
fn finish_file(out: File, path: &Path, entry: &Entry) -> Result<()> {
    if out.metadata().map(|m| m.mtime()).ok() != Some(entry.mtime) {
        out.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(entry.mtime.max(0) as u64))
            .map_err(RepoError::io(format!("setting mtime of {}", entry.path)))?;
    }
    drop(out);
    fs::set_permissions(path, fs::Permissions::from_mode(entry.mode)).map_err(RepoError::io(format!("setting mode of {}", entry.path)))
}

/// Write the manifest's tree under `root`, skipping the files in `skip`:
/// directories first (writable for now), then file contents, then
/// symlinks, then directory modes (deepest first).
async fn write_tree(repo: &Repository, manifest: &Manifest, root: &Path, skip: &HashSet<String>) -> Result<()> {
    for e in manifest.entries.iter().filter(|e| e.kind == EntryKind::Dir) {
        let dir = root.join(&e.path);
        fs::create_dir_all(&dir).map_err(RepoError::io(format!("creating directory {}", e.path)))?;
        let _ = fs::set_permissions(&dir, fs::Permissions::from_mode(0o700));
    }
    write_files(repo, manifest, root, skip, true).await?;
    for e in manifest.entries.iter().filter(|e| e.kind == EntryKind::Symlink) {
        let link = root.join(&e.path);
        if fs::symlink_metadata(&link).is_ok() {
            continue; // a delta restore kept a matching link
        }
        let target = e.target.as_deref().unwrap_or_default();
        std::os::unix::fs::symlink(target, link).map_err(RepoError::io(format!("creating symlink {}", e.path)))?;
    }
    let mut dirs: Vec<&Entry> = manifest.entries.iter().filter(|e| e.kind == EntryKind::Dir).collect();
    dirs.sort_by_key(|e| std::cmp::Reverse(e.path.matches('/').count()));
    for e in dirs {
        fs::set_permissions(root.join(&e.path), fs::Permissions::from_mode(e.mode))
            .map_err(RepoError::io(format!("setting mode of {}", e.path)))?;
    }
    Ok(())
}

/// Write the regular files whose paths are (`exclude` true) not in `set`,
/// or (`exclude` false) in it. Directories must exist and be writable.
async fn write_files(repo: &Repository, manifest: &Manifest, root: &Path, set: &HashSet<String>, exclude: bool) -> Result<()> {
    let extents = manifest.file_extents();
    let jobs: Vec<(Entry, Extent)> = manifest
        .entries
        .iter()
        .filter(|e| e.kind == EntryKind::File && set.contains(&e.path) != exclude)
        .map(|e| (e.clone(), extents.get(e.path.as_str()).cloned().unwrap_or(Extent { skip: 0, chunks: Vec::new() })))
        .collect();
    // One ordered stream of the chunks all extents need; neighbouring files
    // share chunks, so a chunk equal to the previous one is sent only once.
    let mut sequence: Vec<ChunkRef> = Vec::new();
    for (entry, extent) in jobs.iter().filter(|(e, _)| e.size > 0) {
        // The writer takes a chunk while bytes of the file are left: the
        // same rule, counted from the start of the first chunk.
        let mut need = entry.size + extent.skip as u64;
        for c in &extent.chunks {
            if need == 0 {
                break;
            }
            if sequence.last().map(|l| &l.id) != Some(&c.id) {
                sequence.push(c.clone());
            }
            need = need.saturating_sub(c.size as u64);
        }
    }
    let ids: Vec<String> = sequence.iter().map(|c| c.id.clone()).collect();
    let progress = repo.progress().clone();
    progress.start(jobs.iter().map(|(e, _)| e.size).sum());
    let (tx, mut rx) = tokio::sync::mpsc::channel::<(String, Vec<u8>)>(4);
    let root = root.to_path_buf();
    let manifest_id = manifest.id.clone();
    let writer = tokio::task::spawn_blocking(move || -> Result<()> {
        let mut current: (String, Vec<u8>) = (String::new(), Vec::new());
        for (entry, extent) in &jobs {
            let path: PathBuf = root.join(&entry.path);
            let mut out = File::create(&path).map_err(RepoError::io(format!("creating {}", entry.path)))?;
            let mut skip = extent.skip as usize;
            let mut left = entry.size;
            for chunk in &extent.chunks {
                if left == 0 {
                    break;
                }
                if current.0 != chunk.id {
                    current = rx.blocking_recv().ok_or_else(|| RepoError::Invalid("chunk stream ended early".into()))?;
                    if current.0 != chunk.id {
                        return Err(RepoError::Invalid(format!(
                            "restore out of step: chunk {} arrived where {} was expected for {}",
                            current.0, chunk.id, entry.path
                        )));
                    }
                }
                let piece = current.1.get(skip..).unwrap_or_default();
                let n = (left as usize).min(piece.len());
                out.write_all(&piece[..n]).map_err(RepoError::io(format!("writing {}", entry.path)))?;
                progress.add(n as u64);
                left -= n as u64;
                skip = 0;
            }
            if left > 0 {
                return Err(RepoError::Corrupt {
                    key: format!("manifest {manifest_id}"),
                    reason: format!("the chunks of {} are {left} bytes short", entry.path),
                });
            }
            finish_file(out, &path, entry)?;
        }
        Ok(())
    });
    let mut chunks = pipeline::read_stream(repo, sequence, pipeline::default_workers());
    let mut ids = ids.into_iter();
    let mut failure = None;
    while let Some(chunk) = chunks.next().await {
        match chunk {
            Ok(data) => {
                let id = ids.next().expect("one id per chunk");
                if tx.send((id, data)).await.is_err() {
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
    written
}
