//! The local filesystem backend (`file://`), Lifeboat's embedded default.
//!
//! Durability: every object is written to a hidden temporary file beside
//! its final name (`.<name>.tmp-<random>`, in the same directory, so that
//! concurrent writers do not contend for one directory), fsynced unless the
//! write is deferred, then published with `renameat2(RENAME_NOREPLACE)`
//! (create-if-absent, atomic; `link(2)` + `unlink(2)` on filesystems
//! without it) or `rename(2)` (overwrite). A crash leaves at most a hidden
//! orphan, which listings skip, never a partial object. The new names are made durable by
//! [`ObjectStore::sync`] (`syncfs(2)` over the repository's filesystem),
//! which callers run before a commit point, rather than by a directory fsync
//! per object: a name lost in a crash before the sync belongs to an object
//! no manifest references yet.

use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use tokio::io::AsyncWriteExt;

use crate::{ByteStream, ObjectMeta, ObjectPath, ObjectStore, PutMode, StoreError};


#[derive(Debug, Clone)]
pub struct FileStore {
    root: PathBuf,
}

impl FileStore {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        FileStore { root: root.into() }
    }

    fn full(&self, path: &ObjectPath) -> PathBuf {
        self.root.join(path.as_str())
    }

    /// A temporary name beside `dest`, hidden from listings.
    fn tmp_beside(dest: &Path) -> PathBuf {
        let name = dest.file_name().and_then(|n| n.to_str()).unwrap_or("object");
        dest.with_file_name(format!(".{name}.tmp-{:016x}", rand::random::<u64>()))
    }

    /// Create the file at `tmp`, and its directory if missing.
    fn create_beside(tmp: &Path) -> std::io::Result<std::fs::File> {
        match std::fs::File::create(tmp) {
            Err(e) if e.kind() == ErrorKind::NotFound => {
                std::fs::create_dir_all(tmp.parent().expect("object paths have a parent"))?;
                std::fs::File::create(tmp)
            }
            other => other,
        }
    }

    fn err(&self, op: &'static str, path: &str, e: std::io::Error) -> StoreError {
        let store = self.describe();
        match e.kind() {
            ErrorKind::NotFound => StoreError::NotFound { store, path: path.into() },
            ErrorKind::AlreadyExists => StoreError::AlreadyExists { store, path: path.into() },
            ErrorKind::PermissionDenied => StoreError::AccessDenied {
                store,
                message: format!("{op} {path}: {e}"),
            },
            ErrorKind::Interrupted | ErrorKind::TimedOut | ErrorKind::WouldBlock => {
                StoreError::Transient { store, op, message: format!("{path}: {e}") }
            }
            _ => StoreError::Permanent { store, op, message: format!("{path}: {e}") },
        }
    }

    /// Move a finished temporary file (beside `path`) into place.
    fn publish(&self, tmp: &Path, path: &ObjectPath, mode: PutMode) -> Result<(), StoreError> {
        let dest = self.full(path);
        let result = match mode {
            PutMode::Create => rename_noreplace(tmp, &dest),
            PutMode::Overwrite => std::fs::rename(tmp, &dest),
        };
        if let Err(e) = result {
            let _ = std::fs::remove_file(tmp);
            return Err(self.err("put", path.as_str(), e));
        }
        Ok(())
    }

    /// Write `data` to a temporary file (fsynced when `durable`) and publish it.
    async fn write_object(&self, path: &ObjectPath, data: Bytes, mode: PutMode, durable: bool) -> Result<(), StoreError> {
        self.check_absent(path, mode)?;
        let this = self.clone();
        let path = path.clone();
        tokio::task::spawn_blocking(move || {
            let tmp = Self::tmp_beside(&this.full(&path));
            let write = || -> std::io::Result<()> {
                let mut f = Self::create_beside(&tmp)?;
                f.write_all(&data)?;
                if durable {
                    f.sync_all()?;
                }
                Ok(())
            };
            if let Err(e) = write() {
                let _ = std::fs::remove_file(&tmp);
                return Err(this.err("put", path.as_str(), e));
            }
            this.publish(&tmp, &path, mode)
        })
        .await
        .map_err(blocking_err)?
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
        Some(libc::EINVAL) | Some(libc::ENOSYS) | Some(libc::EOPNOTSUPP) => std::fs::hard_link(from, to).and_then(|()| std::fs::remove_file(from)),
        _ => Err(e),
    }
}

fn blocking_err(e: tokio::task::JoinError) -> StoreError {
    StoreError::Permanent { store: "file".into(), op: "io", message: format!("worker thread failed: {e}") }
}

#[async_trait]
impl ObjectStore for FileStore {
    fn describe(&self) -> String {
        format!("file://{}", self.root.display())
    }

    async fn prepare(&self) -> Result<(), StoreError> {
        tokio::fs::create_dir_all(&self.root)
            .await
            .map_err(|e| self.err("prepare", &self.root.display().to_string(), e))
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
        let result: Result<u64, StoreError> = async {
            let io = |e| self.err("put", path.as_str(), e);
            let created = tokio::task::spawn_blocking({
                let tmp = tmp.clone();
                move || Self::create_beside(&tmp)
            });
            let mut f = tokio::fs::File::from_std(created.await.map_err(blocking_err)?.map_err(io)?);
            let mut total = 0u64;
            while let Some(piece) = data.next().await {
                let piece = piece?;
                total += piece.len() as u64;
                f.write_all(&piece).await.map_err(io)?;
            }
            f.sync_all().await.map_err(io)?;
            Ok(total)
        }
        .await;
        match result {
            Ok(total) => {
                let this = self.clone();
                let path = path.clone();
                tokio::task::spawn_blocking(move || this.publish(&tmp, &path, mode))
                    .await
                    .map_err(blocking_err)??;
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

    async fn get_stream(&self, path: &ObjectPath) -> Result<ByteStream, StoreError> {
        let file = tokio::fs::File::open(self.full(path)).await.map_err(|e| self.err("get", path.as_str(), e))?;
        let this = self.clone();
        let key = path.to_string();
        let stream = tokio_util::io::ReaderStream::with_capacity(file, 1 << 20)
            .map(move |r| r.map_err(|e| this.err("get", &key, e)));
        Ok(stream.boxed())
    }

    async fn head(&self, path: &ObjectPath) -> Result<Option<ObjectMeta>, StoreError> {
        match tokio::fs::metadata(self.full(path)).await {
            Ok(m) if m.is_file() => Ok(Some(ObjectMeta { path: path.clone(), size: m.len(), modified: m.modified().ok().map(Into::into) })),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.err("head", path.as_str(), e)),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StoreError> {
        let this = self.clone();
        let prefix = prefix.to_string();
        tokio::task::spawn_blocking(move || {
            // Walk the deepest directory the prefix names, filter by the rest.
            let dir_part = prefix.rfind('/').map(|i| &prefix[..i]).unwrap_or("");
            let start = this.root.join(dir_part);
            let mut out = Vec::new();
            let mut stack = vec![start];
            while let Some(dir) = stack.pop() {
                let entries = match std::fs::read_dir(&dir) {
                    Ok(entries) => entries,
                    Err(e) if e.kind() == ErrorKind::NotFound => continue,
                    Err(e) => return Err(this.err("list", &prefix, e)),
                };
                for entry in entries {
                    let entry = entry.map_err(|e| this.err("list", &prefix, e))?;
                    let name = entry.file_name();
                    let Some(name) = name.to_str() else { continue };
                    if name.starts_with('.') {
                        continue; // .tmp and anything else hidden is not an object
                    }
                    let file_type = entry.file_type().map_err(|e| this.err("list", &prefix, e))?;
                    if file_type.is_dir() {
                        stack.push(entry.path());
                    } else if file_type.is_file() {
                        let rel = entry.path();
                        let rel = rel.strip_prefix(&this.root).expect("walk stays under root");
                        let Some(key) = rel.to_str() else { continue };
                        if !key.starts_with(&prefix) {
                            continue;
                        }
                        let Ok(path) = ObjectPath::parse(key) else { continue };
                        let meta = entry.metadata().map_err(|e| this.err("list", &prefix, e))?;
                        out.push(ObjectMeta { path, size: meta.len(), modified: meta.modified().ok().map(Into::into) });
                    }
                }
            }
            out.sort_by(|a, b| a.path.cmp(&b.path));
            Ok(out)
        })
        .await
        .map_err(blocking_err)?
    }

    async fn sync(&self) -> Result<(), StoreError> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            use std::os::fd::AsRawFd;
            let root = std::fs::File::open(&this.root).map_err(|e| this.err("sync", "", e))?;
            // SAFETY: syncfs only reads the descriptor, which `root` keeps open.
            if unsafe { libc::syncfs(root.as_raw_fd()) } != 0 {
                return Err(this.err("sync", "", std::io::Error::last_os_error()));
            }
            Ok(())
        })
        .await
        .map_err(blocking_err)?
    }

    async fn delete(&self, path: &ObjectPath) -> Result<(), StoreError> {
        match tokio::fs::remove_file(self.full(path)).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(self.err("delete", path.as_str(), e)),
        }
    }
}
