//! The local filesystem backend (`file://`), Lifeboat's embedded default.
//!
//! Durability: every object is written to a hidden temporary file beside
//! its final name (`.<name>.tmp-<random>`, in the same directory, so that
//! concurrent writers do not contend for one directory), fsynced unless the
//! write is deferred, then published with `renameat2(RENAME_NOREPLACE)`
//! (create-if-absent, atomic; `link(2)` + `unlink(2)` on filesystems
//! without it) or `rename(2)` (overwrite). A crash leaves at most a hidden
//! orphan, which listings skip, never a partial object; retention removes
//! orphans nothing has written to for a day ([`FileStore::leftovers`]).
//!
//! New names (and deferred contents) are made durable by
//! [`ObjectStore::sync`], which callers run before a commit point, rather
//! than by a directory fsync per object: a name lost in a crash before the
//! sync belongs to an object no manifest references yet. The store
//! remembers what it wrote since its last sync; a sync fsyncs just those
//! files and directories when they are few ([`FSYNC_LIMIT`]), and
//! otherwise runs one `syncfs(2)` over the repository's filesystem. So a
//! WAL segment's or an offset map's barrier does not wait for the gigabytes
//! a database or a broker has dirty on the same filesystem, and a backup of
//! thousands of objects pays for one filesystem flush. Syncs run one at a
//! time: a sync returns only after everything written before it is durable,
//! including what a concurrent sync took.

use std::collections::BTreeSet;
use std::convert::Infallible;
use std::io::{ErrorKind, Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use tokio::io::AsyncWriteExt;

use crate::{ByteStream, ObjectMeta, ObjectPath, ObjectStore, PutMode, StoreError};

#[derive(Debug, Clone)]
pub struct FileStore {
    root: PathBuf,
    unsynced: Arc<Unsynced>,
}

/// A temporary file that a write left behind (see [`FileStore::leftovers`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leftover {
    /// Relative to the store's root.
    pub path: String,
    pub size: u64,
    pub modified: Option<time::OffsetDateTime>,
}

/// The last part of `key`.
fn file_name(key: &str) -> &str {
    key.rsplit('/').next().unwrap_or(key)
}

/// Whether the last part of `key` is hidden: never an object, and a
/// hidden directory is not walked.
fn is_hidden(key: &str) -> bool {
    file_name(key).starts_with('.')
}

/// Whether the last part of `key` is a temporary name ([`FileStore::tmp_beside`]).
fn is_temporary(key: &str) -> bool {
    file_name(key)
        .strip_prefix('.')
        .and_then(|rest| rest.rsplit_once(".tmp-"))
        .is_some_and(|(object, random)| !object.is_empty() && random.len() == 16 && random.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Above this many files and directories to flush, a sync flushes the
/// whole filesystem instead.
pub const FSYNC_LIMIT: usize = 64;

/// What this store (and its clones) wrote since the last sync.
#[derive(Debug, Default)]
struct Unsynced {
    pending: Mutex<Pending>,
    /// Held for a whole sync, so syncs run one at a time.
    turn: tokio::sync::Mutex<()>,
}

#[derive(Debug, Default)]
struct Pending {
    /// Deferred writes: contents not fsynced yet.
    files: BTreeSet<PathBuf>,
    /// Directories whose entries changed.
    dirs: BTreeSet<PathBuf>,
}

impl Pending {
    fn len(&self) -> usize {
        self.files.len() + self.dirs.len()
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn merge(&mut self, other: Pending) {
        self.files.extend(other.files);
        self.dirs.extend(other.dirs);
    }
}

impl FileStore {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        FileStore { root: root.into(), unsynced: Arc::default() }
    }

    /// Remember that `dest` was written (its contents not yet fsynced
    /// unless `durable`); `new_dirs`: directories were created on the way.
    fn written(&self, dest: &Path, durable: bool, new_dirs: bool) {
        let mut pending = self.unsynced.pending.lock().unwrap();
        if !durable {
            pending.files.insert(dest.to_path_buf());
        }
        self.changed_dir(&mut pending, dest, new_dirs);
    }

    /// The directory holding `path` changed; with `new_dirs`, its
    /// ancestors up to the repository's parent did too.
    fn changed_dir(&self, pending: &mut Pending, path: &Path, new_dirs: bool) {
        let Some(dir) = path.parent() else { return };
        if !new_dirs {
            pending.dirs.insert(dir.to_path_buf());
            return;
        }
        let top = self.root.parent().unwrap_or(&self.root);
        for d in dir.ancestors().take_while(|d| d.starts_with(top)) {
            pending.dirs.insert(d.to_path_buf());
        }
    }

    /// Make `batch` durable: fsync each file and directory, or flush the
    /// whole filesystem when there are many.
    fn flush(&self, batch: &Pending) -> std::io::Result<()> {
        use std::os::fd::AsRawFd;
        if batch.len() > FSYNC_LIMIT {
            let root = std::fs::File::open(&self.root)?;
            // SAFETY: syncfs only reads the descriptor, which `root` keeps open.
            if unsafe { libc::syncfs(root.as_raw_fd()) } != 0 {
                return Err(std::io::Error::last_os_error());
            }
            return Ok(());
        }
        for path in batch.files.iter().chain(&batch.dirs) {
            match std::fs::File::open(path) {
                Ok(f) => f.sync_all()?,
                // Deleted since: nothing of it to keep.
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    fn full(&self, path: &ObjectPath) -> PathBuf {
        self.root.join(path.as_str())
    }

    /// A temporary name beside `dest`, hidden from listings:
    /// `.<name>.tmp-<16 hex digits>`.
    fn tmp_beside(dest: &Path) -> PathBuf {
        let name = dest.file_name().and_then(|n| n.to_str()).unwrap_or("object");
        dest.with_file_name(format!(".{name}.tmp-{:016x}", rand::random::<u64>()))
    }

    /// Create the file at `tmp` (open for reading too), and its directory
    /// if missing (then `true`).
    fn create_beside(tmp: &Path) -> std::io::Result<(std::fs::File, bool)> {
        let create = || std::fs::OpenOptions::new().read(true).write(true).create_new(true).open(tmp);
        match create() {
            Err(e) if e.kind() == ErrorKind::NotFound => {
                std::fs::create_dir_all(tmp.parent().expect("object paths have a parent"))?;
                Ok((create()?, true))
            }
            other => Ok((other?, false)),
        }
    }

    fn err(&self, op: &'static str, path: &str, e: std::io::Error) -> StoreError {
        let store = self.describe();
        match e.kind() {
            ErrorKind::NotFound => StoreError::NotFound { store, path: path.into() },
            ErrorKind::AlreadyExists => StoreError::AlreadyExists { store, path: path.into() },
            ErrorKind::PermissionDenied => StoreError::AccessDenied { store, message: format!("{op} {path}: {e}") },
            ErrorKind::Interrupted | ErrorKind::TimedOut | ErrorKind::WouldBlock => {
                StoreError::Transient { store, op, message: format!("{path}: {e}") }
            }
            _ => StoreError::Permanent { store, op, message: format!("{path}: {e}") },
        }
    }

    /// Move a finished temporary file (beside `path`) into place and
    /// remember it for the next sync.
    fn publish(&self, tmp: &Path, path: &ObjectPath, mode: PutMode, (durable, new_dirs): (bool, bool)) -> Result<(), StoreError> {
        let dest = self.full(path);
        let result = match mode {
            PutMode::Create => rename_noreplace(tmp, &dest),
            PutMode::Overwrite => std::fs::rename(tmp, &dest),
        };
        if let Err(e) = result {
            let _ = std::fs::remove_file(tmp);
            return Err(self.err("put", path.as_str(), e));
        }
        self.written(&dest, durable, new_dirs);
        Ok(())
    }

    /// Write `data` to a temporary file (fsynced when `durable`) and publish it.
    async fn write_object(&self, path: &ObjectPath, data: Bytes, mode: PutMode, durable: bool) -> Result<(), StoreError> {
        self.check_absent(path, mode)?;
        let this = self.clone();
        let path = path.clone();
        let written =
            tokio::task::spawn_blocking(move || this.write_beside(&path, mode, durable, |f| f.write_all(&data).map(Ok::<(), Infallible>)));
        written.await.map_err(blocking_err)?.map(|verdict| verdict.unwrap_or_else(|never| match never {}))
    }

    /// Copy `path` from another local store into this one: the bytes move
    /// inside the kernel (`copy_file_range(2)` where the filesystems allow,
    /// through `std::io::copy`), then the new file is read back into
    /// `scratch` (reused across calls) and given to `check` before it
    /// appears under its name. A copy `check` rejects is removed and the
    /// rejection returned as the inner error. Durable after the next sync,
    /// as with `put_deferred`. Blocking: call it from a blocking thread.
    /// Returns the bytes copied.
    pub fn copy_from<E>(
        &self,
        from: &FileStore,
        path: &ObjectPath,
        mode: PutMode,
        scratch: &mut Vec<u8>,
        check: impl FnOnce(&[u8]) -> Result<(), E>,
    ) -> Result<Result<u64, E>, StoreError> {
        let mut source = std::fs::File::open(from.full(path)).map_err(|e| from.err("get", path.as_str(), e))?;
        let mut copied = 0;
        let verdict = self.write_beside(path, mode, false, |f| {
            copied = std::io::copy(&mut source, f)?;
            f.rewind()?;
            scratch.clear();
            f.read_to_end(scratch)?;
            Ok(check(scratch))
        })?;
        Ok(verdict.map(|()| copied))
    }

    /// Create a temporary file beside `path`, let `fill` write it (and
    /// reject it: the inner error), fsync it when `durable` (else start its
    /// writeback) and publish it. Nothing is left behind on failure or
    /// rejection.
    fn write_beside<E>(
        &self,
        path: &ObjectPath,
        mode: PutMode,
        durable: bool,
        fill: impl FnOnce(&mut std::fs::File) -> std::io::Result<Result<(), E>>,
    ) -> Result<Result<(), E>, StoreError> {
        let tmp = Self::tmp_beside(&self.full(path));
        let written = (|| {
            let (mut f, new_dirs) = Self::create_beside(&tmp)?;
            if let Err(rejected) = fill(&mut f)? {
                return Ok(Err(rejected));
            }
            match durable {
                true => f.sync_all()?,
                false => start_writeback(&f),
            }
            Ok(Ok(new_dirs))
        })();
        match written {
            Ok(Ok(new_dirs)) => self.publish(&tmp, path, mode, (durable, new_dirs)).map(Ok),
            Ok(Err(rejected)) => {
                let _ = std::fs::remove_file(&tmp);
                Ok(Err(rejected))
            }
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                Err(self.err("put", path.as_str(), e))
            }
        }
    }

    /// Visit every file under `start` (outside hidden directories) with
    /// its key relative to the root; `what` names the walk in errors.
    fn walk(
        &self,
        start: &Path,
        what: &str,
        mut visit: impl FnMut(&std::fs::DirEntry, &str) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let mut stack = vec![start.to_path_buf()];
        while let Some(dir) = stack.pop() {
            let entries = match std::fs::read_dir(&dir) {
                Ok(entries) => entries,
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(e) => return Err(self.err("list", what, e)),
            };
            for entry in entries {
                let entry = entry.map_err(|e| self.err("list", what, e))?;
                let file_type = entry.file_type().map_err(|e| self.err("list", what, e))?;
                let path = entry.path();
                let Some(key) = path.strip_prefix(&self.root).expect("walk stays under root").to_str() else { continue };
                if file_type.is_dir() {
                    if !is_hidden(key) {
                        stack.push(path.clone());
                    }
                } else if file_type.is_file() {
                    visit(&entry, key)?;
                }
            }
        }
        Ok(())
    }

    /// On a blocking thread: what `pick` makes of each file under `start`
    /// (see [`FileStore::walk`]), in the order of `key`.
    async fn collect_files<T: Send + 'static>(
        &self,
        start: PathBuf,
        key: fn(&T) -> &str,
        mut pick: impl FnMut(&FileStore, &std::fs::DirEntry, &str) -> Result<Option<T>, StoreError> + Send + 'static,
    ) -> Result<Vec<T>, StoreError> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            this.walk(&start, &start.display().to_string(), |entry, key| {
                out.extend(pick(&this, entry, key)?);
                Ok(())
            })?;
            out.sort_by(|a, b| key(a).cmp(key(b)));
            Ok(out)
        })
        .await
        .map_err(blocking_err)?
    }

    /// Temporary files of writes that never published them (a killed
    /// process, a crash) and that nothing has written to for `idle`: a
    /// write in progress keeps its file's modification time fresh.
    pub async fn leftovers(&self, idle: std::time::Duration) -> Result<Vec<Leftover>, StoreError> {
        let now = std::time::SystemTime::now();
        self.collect_files(
            self.root.clone(),
            |l: &Leftover| &l.path,
            move |this, entry, key| {
                if !is_temporary(key) {
                    return Ok(None);
                }
                let meta = match entry.metadata() {
                    Ok(meta) => meta,
                    Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None), // published or removed meanwhile
                    Err(e) => return Err(this.err("list", key, e)),
                };
                let modified = meta.modified().ok();
                if modified.is_none_or(|m| now.duration_since(m).unwrap_or_default() < idle) {
                    return Ok(None);
                }
                Ok(Some(Leftover { path: key.to_string(), size: meta.len(), modified: modified.map(Into::into) }))
            },
        )
        .await
    }

    /// Remove a temporary file [`FileStore::leftovers`] found (refusing
    /// any other name). Removing one that is gone is not an error.
    pub async fn remove_leftover(&self, path: &str) -> Result<(), StoreError> {
        if !is_temporary(path) || path.split('/').any(|part| part == ".." || part.is_empty()) {
            return Err(StoreError::InvalidPath { path: path.into(), reason: "not a temporary file of this store".into() });
        }
        self.remove(path).await
    }

    /// Remove the file at `key` (relative to the root) and remember its
    /// directory for the next sync. A missing file is not an error.
    async fn remove(&self, key: &str) -> Result<(), StoreError> {
        let full = self.root.join(key);
        match tokio::fs::remove_file(&full).await {
            Ok(()) => {
                self.changed_dir(&mut self.unsynced.pending.lock().unwrap(), &full, false);
                Ok(())
            }
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(self.err("delete", key, e)),
        }
    }

    /// Why the repository's directory could not be created, in words an
    /// operator can act on (a dangling symbolic link or a file in the way
    /// would otherwise read as an object that "already exists").
    fn unusable_root(&self, e: std::io::Error) -> StoreError {
        let root = self.root.display();
        let message = match std::fs::symlink_metadata(&self.root) {
            Ok(m) if m.file_type().is_symlink() => {
                let target =
                    std::fs::read_link(&self.root).map(|t| t.display().to_string()).unwrap_or_else(|_| "an unreadable target".into());
                format!("{root} is a symbolic link to {target}, which does not exist or is not a directory; create that directory or use another path")
            }
            Ok(m) if !m.is_dir() => format!("{root} exists and is not a directory; use a directory for the repository"),
            _ if matches!(e.kind(), ErrorKind::AlreadyExists | ErrorKind::NotADirectory) => {
                format!("a part of {root} exists and is not a directory ({e}); use a path made of directories")
            }
            _ => return self.err("prepare", &root.to_string(), e),
        };
        StoreError::Permanent { store: self.describe(), op: "prepare", message }
    }

    fn check_absent(&self, path: &ObjectPath, mode: PutMode) -> Result<(), StoreError> {
        if mode == PutMode::Create && self.full(path).exists() {
            return Err(StoreError::AlreadyExists { store: self.describe(), path: path.to_string() });
        }
        Ok(())
    }
}

/// Rename `from` to `to` unless `to` exists (then `AlreadyExists`), atomically.
fn rename_noreplace(from: &Path, to: &Path) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let cstr = |p: &Path| std::ffi::CString::new(p.as_os_str().as_bytes()).map_err(|_| std::io::Error::from(ErrorKind::InvalidInput));
    let (from_c, to_c) = (cstr(from)?, cstr(to)?);
    // SAFETY: both are valid NUL-terminated paths that outlive the call.
    let rc = unsafe { libc::renameat2(libc::AT_FDCWD, from_c.as_ptr(), libc::AT_FDCWD, to_c.as_ptr(), libc::RENAME_NOREPLACE) };
    if rc == 0 {
        return Ok(());
    }
    let e = std::io::Error::last_os_error();
    match e.raw_os_error() {
        // Filesystems without RENAME_NOREPLACE: link(2) refuses an existing name too.
        Some(libc::EINVAL) | Some(libc::ENOSYS) | Some(libc::EOPNOTSUPP) => {
            std::fs::hard_link(from, to).and_then(|()| std::fs::remove_file(from))
        }
        _ => Err(e),
    }
}

/// Start writing `f`'s pages to disk without waiting (`sync_file_range(2)`
/// with `SYNC_FILE_RANGE_WRITE`), so the next sync finds them mostly
/// written: a deferred write's disk time overlaps the work that follows it.
/// Only a hint; durability still comes from [`ObjectStore::sync`].
fn start_writeback(f: &std::fs::File) {
    use std::os::fd::AsRawFd;
    // SAFETY: the descriptor is open for the duration of the call.
    unsafe { libc::sync_file_range(f.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE) };
}

fn blocking_err(e: tokio::task::JoinError) -> StoreError {
    StoreError::Permanent { store: "file".into(), op: "io", message: format!("worker thread failed: {e}") }
}

#[async_trait]
impl ObjectStore for FileStore {
    fn describe(&self) -> String {
        format!("file://{}", self.root.display())
    }

    fn as_file_store(&self) -> Option<&FileStore> {
        Some(self)
    }

    async fn prepare(&self) -> Result<(), StoreError> {
        tokio::fs::create_dir_all(&self.root).await.map_err(|e| self.unusable_root(e))?;
        let mut pending = self.unsynced.pending.lock().unwrap();
        pending.dirs.insert(self.root.clone());
        if let Some(parent) = self.root.parent() {
            pending.dirs.insert(parent.to_path_buf());
        }
        Ok(())
    }

    async fn put(&self, path: &ObjectPath, data: Bytes, mode: PutMode) -> Result<(), StoreError> {
        self.write_object(path, data, mode, true).await
    }

    async fn put_deferred(&self, path: &ObjectPath, data: Bytes, mode: PutMode) -> Result<(), StoreError> {
        self.write_object(path, data, mode, false).await
    }

    async fn put_stream(&self, path: &ObjectPath, mut data: ByteStream, mode: PutMode) -> Result<u64, StoreError> {
        self.check_absent(path, mode)?;
        let tmp = Self::tmp_beside(&self.full(path));
        let result: Result<(u64, bool), StoreError> = async {
            let io = |e| self.err("put", path.as_str(), e);
            let created = tokio::task::spawn_blocking({
                let tmp = tmp.clone();
                move || Self::create_beside(&tmp)
            });
            let (f, new_dirs) = created.await.map_err(blocking_err)?.map_err(io)?;
            let mut f = tokio::fs::File::from_std(f);
            let mut total = 0u64;
            while let Some(piece) = data.next().await {
                let piece = piece?;
                total += piece.len() as u64;
                f.write_all(&piece).await.map_err(io)?;
            }
            f.sync_all().await.map_err(io)?;
            Ok((total, new_dirs))
        }
        .await;
        match result {
            Ok((total, new_dirs)) => {
                let this = self.clone();
                let path = path.clone();
                tokio::task::spawn_blocking(move || this.publish(&tmp, &path, mode, (true, new_dirs))).await.map_err(blocking_err)??;
                Ok(total)
            }
            Err(e) => {
                let _ = tokio::fs::remove_file(&tmp).await;
                Err(e)
            }
        }
    }

    async fn get(&self, path: &ObjectPath) -> Result<Bytes, StoreError> {
        tokio::fs::read(self.full(path)).await.map(Bytes::from).map_err(|e| self.err("get", path.as_str(), e))
    }

    async fn get_bounded(&self, path: &ObjectPath, limit: u64) -> Result<Bytes, StoreError> {
        use tokio::io::AsyncReadExt as _;
        let mut file = tokio::fs::File::open(self.full(path)).await.map_err(|e| self.err("get", path.as_str(), e))?;
        let size = file.metadata().await.map_err(|e| self.err("get", path.as_str(), e))?.len();
        if size > limit {
            return Err(StoreError::TooLarge { store: self.describe(), path: path.to_string(), limit });
        }
        let mut out = Vec::with_capacity(size as usize);
        // At most one byte past the limit, in case the file grew meanwhile.
        (&mut file).take(limit + 1).read_to_end(&mut out).await.map_err(|e| self.err("get", path.as_str(), e))?;
        if out.len() as u64 > limit {
            return Err(StoreError::TooLarge { store: self.describe(), path: path.to_string(), limit });
        }
        Ok(Bytes::from(out))
    }

    async fn get_stream(&self, path: &ObjectPath) -> Result<ByteStream, StoreError> {
        let file = tokio::fs::File::open(self.full(path)).await.map_err(|e| self.err("get", path.as_str(), e))?;
        let this = self.clone();
        let key = path.to_string();
        let stream = tokio_util::io::ReaderStream::with_capacity(file, 1 << 20).map(move |r| r.map_err(|e| this.err("get", &key, e)));
        Ok(stream.boxed())
    }

    async fn head(&self, path: &ObjectPath) -> Result<Option<ObjectMeta>, StoreError> {
        match tokio::fs::metadata(self.full(path)).await {
            Ok(m) if m.is_file() => {
                Ok(Some(ObjectMeta { path: path.clone(), size: m.len(), modified: m.modified().ok().map(Into::into), md5: None }))
            }
            Ok(_) => Ok(None),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.err("head", path.as_str(), e)),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StoreError> {
        // Walk the deepest directory the prefix names, filter by the rest.
        let dir_part = prefix.rfind('/').map(|i| &prefix[..i]).unwrap_or("");
        let prefix = prefix.to_string();
        self.collect_files(
            self.root.join(dir_part),
            |m: &ObjectMeta| m.path.as_str(),
            move |this, entry, key| {
                if is_hidden(key) || !key.starts_with(&prefix) {
                    return Ok(None); // temporary files and anything else hidden are not objects
                }
                let Ok(path) = ObjectPath::parse(key) else { return Ok(None) };
                let meta = entry.metadata().map_err(|e| this.err("list", &prefix, e))?;
                Ok(Some(ObjectMeta { path, size: meta.len(), modified: meta.modified().ok().map(Into::into), md5: None }))
            },
        )
        .await
    }

    async fn sync(&self) -> Result<(), StoreError> {
        let _turn = self.unsynced.turn.lock().await;
        let batch = std::mem::take(&mut *self.unsynced.pending.lock().unwrap());
        if batch.is_empty() {
            return Ok(());
        }
        let this = self.clone();
        tokio::task::spawn_blocking(move || match this.flush(&batch) {
            Ok(()) => Ok(()),
            Err(e) => {
                // Still not durable: the next sync tries again.
                this.unsynced.pending.lock().unwrap().merge(batch);
                Err(this.err("sync", "", e))
            }
        })
        .await
        .map_err(blocking_err)?
    }

    async fn delete(&self, path: &ObjectPath) -> Result<(), StoreError> {
        self.remove(path.as_str()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(store: &FileStore) -> (usize, usize) {
        let p = store.unsynced.pending.lock().unwrap();
        (p.files.len(), p.dirs.len())
    }

    /// A sync covers what the store wrote since the last one: deferred
    /// contents and changed directories (new ones up to the repository),
    /// also after one of them was deleted meanwhile; many at once take the
    /// whole-filesystem path.
    #[tokio::test]
    async fn sync_flushes_what_was_written() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::new(dir.path().join("repo"));
        store.prepare().await.unwrap();
        store.sync().await.unwrap();
        assert_eq!(pending(&store), (0, 0));
        let p = |s: &str| ObjectPath::parse(s).unwrap();
        store.put_deferred(&p("a/b/one"), Bytes::from_static(b"1"), PutMode::Create).await.unwrap();
        store.put(&p("a/b/two"), Bytes::from_static(b"2"), PutMode::Create).await.unwrap();
        // one deferred file; a/b, a, the repository and its parent
        assert_eq!(pending(&store), (1, 4));
        store.delete(&p("a/b/one")).await.unwrap();
        store.clone().sync().await.unwrap();
        assert_eq!(pending(&store), (0, 0), "clones share what is pending");
        for i in 0..FSYNC_LIMIT + 1 {
            store.put_deferred(&p(&format!("c/{i}")), Bytes::from_static(b"x"), PutMode::Create).await.unwrap();
        }
        store.sync().await.unwrap();
        assert_eq!(pending(&store), (0, 0));
        assert_eq!(store.get(&p("c/0")).await.unwrap(), Bytes::from_static(b"x"));
    }

    /// A local copy publishes what its check accepts and nothing else: a
    /// rejected copy leaves neither the object nor a temporary file, an
    /// existing object is not replaced in create mode, and a missing source
    /// is named as missing from the source.
    #[tokio::test]
    async fn copy_from_publishes_only_checked_copies() {
        let dir = tempfile::tempdir().unwrap();
        let (from, to) = (FileStore::new(dir.path().join("from")), FileStore::new(dir.path().join("to")));
        let p = |s: &str| ObjectPath::parse(s).unwrap();
        let data = Bytes::from(vec![7u8; 300_000]);
        from.put(&p("a/b/big"), data.clone(), PutMode::Create).await.unwrap();
        from.put(&p("a/small"), Bytes::from_static(b"small"), PutMode::Create).await.unwrap();
        let mut scratch = Vec::new();

        let seen = to.copy_from(&from, &p("a/b/big"), PutMode::Create, &mut scratch, |b| match b == &data[..] {
            true => Ok(()),
            false => Err("differs"),
        });
        assert_eq!(seen.unwrap(), Ok(300_000));
        assert_eq!(to.get(&p("a/b/big")).await.unwrap(), data);
        assert_eq!(pending(&to).0, 1, "durable after the next sync, like put_deferred");

        let rejected = to.copy_from(&from, &p("a/small"), PutMode::Create, &mut scratch, |_| Err("bad seal")).unwrap();
        assert_eq!(rejected, Err("bad seal"));
        assert!(to.head(&p("a/small")).await.unwrap().is_none(), "a rejected copy is not published");
        let mut names: Vec<_> = std::fs::read_dir(dir.path().join("to/a")).unwrap().map(|e| e.unwrap().file_name()).collect();
        names.sort();
        assert_eq!(names, ["b"], "no temporary file is left behind");

        let again = to.copy_from(&from, &p("a/b/big"), PutMode::Create, &mut scratch, |_| Ok::<(), ()>(()));
        assert!(matches!(again, Err(StoreError::AlreadyExists { .. })), "{again:?}");
        let missing = to.copy_from(&from, &p("a/none"), PutMode::Create, &mut scratch, |_| Ok::<(), ()>(()));
        match missing {
            Err(StoreError::NotFound { store, .. }) => assert_eq!(store, from.describe()),
            other => panic!("expected NotFound at the source, got {other:?}"),
        }
    }

    /// Temporary files nobody touched for the idle time are leftovers;
    /// fresh ones (a write in progress), other hidden files and objects are
    /// not, and only a temporary name can be removed.
    #[tokio::test]
    async fn leftovers_are_idle_temporary_files_only() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::new(dir.path().join("repo"));
        let p = |s: &str| ObjectPath::parse(s).unwrap();
        store.put(&p("chunks/ab/abcd"), Bytes::from_static(b"object"), PutMode::Create).await.unwrap();
        let chunks = dir.path().join("repo/chunks/ab");
        let stale = FileStore::tmp_beside(&chunks.join("abce"));
        let fresh = FileStore::tmp_beside(&chunks.join("abcf"));
        std::fs::write(&stale, b"half an object").unwrap();
        std::fs::write(&fresh, b"being written").unwrap();
        std::fs::write(chunks.join(".keep"), b"").unwrap();
        let two_days = std::time::Duration::from_secs(2 * 86400);
        std::fs::File::options().write(true).open(&stale).unwrap().set_modified(std::time::SystemTime::now() - two_days).unwrap();

        let found = store.leftovers(std::time::Duration::from_secs(86400)).await.unwrap();
        let stale_key = format!("chunks/ab/{}", stale.file_name().unwrap().to_str().unwrap());
        assert_eq!(found.iter().map(|l| l.path.as_str()).collect::<Vec<_>>(), [stale_key.as_str()]);
        assert_eq!(found[0].size, 14);
        assert_eq!(store.leftovers(std::time::Duration::ZERO).await.unwrap().len(), 2, "both temporary files, nothing else");

        for refused in ["chunks/ab/abcd", "chunks/ab/.keep", "../outside/.x.tmp-0123456789abcdef"] {
            assert!(store.remove_leftover(refused).await.is_err(), "{refused}");
        }
        assert!(dir.path().join("repo/chunks/ab/abcd").exists());
        store.remove_leftover(&stale_key).await.unwrap();
        assert!(!stale.exists() && fresh.exists());
        assert_eq!(store.list("").await.unwrap().len(), 1, "listings never show temporary files");
    }
}
