//! Where a background helper (the archive spooler, the WAL prefetcher) of a
//! `pg_wal` keeps its files, and the lock that keeps one helper per
//! directory: an exclusive `flock` on a file, held for the helper's life and
//! released by the kernel when it dies, however it dies.

use std::fs::{File, TryLockError};
use std::path::{Path, PathBuf};

/// One helper's directory for one `pg_wal` and destination:
/// `pg_wal/<base>/<destination key>/`, holding its lock file and its files.
#[derive(Debug, Clone)]
pub struct HelperDir {
    /// The `pg_wal` it serves.
    pub wal_dir: PathBuf,
    /// Its own directory.
    pub dir: PathBuf,
    lock_file: &'static str,
}

impl HelperDir {
    pub fn new(wal_dir: &Path, base: &str, lock_file: &'static str, repo_url: &str, cell: &str) -> HelperDir {
        let dir = wal_dir.join(base).join(destination_key(repo_url, cell));
        HelperDir { wal_dir: wal_dir.to_path_buf(), dir, lock_file }
    }

    /// Does a helper run here?
    pub fn running(&self) -> bool {
        held(&self.dir.join(self.lock_file))
    }

    /// Create the directory, only under an existing `pg_wal`: never recreate
    /// a data directory that was deleted.
    pub fn create(&self) -> std::io::Result<()> {
        if !self.wal_dir.is_dir() {
            return Err(std::io::Error::new(std::io::ErrorKind::NotFound, format!("{} is gone", self.wal_dir.display())));
        }
        std::fs::create_dir_all(&self.dir)
    }

    /// Create the directory and take its lock; `None` when a helper holds
    /// it. Keep the returned file open for as long as the helper runs.
    pub fn lock(&self) -> std::io::Result<Option<File>> {
        self.create()?;
        acquire(&self.dir.join(self.lock_file))
    }
}

/// Does a live process hold the lock at `path`?
pub fn held(path: &Path) -> bool {
    let Ok(file) = File::open(path) else { return false };
    matches!(file.try_lock_shared(), Err(TryLockError::WouldBlock))
}

/// Take the lock at `path` (creating the file); `None` when another process
/// holds it. Keep the returned file open for as long as the lock is needed.
/// [`held`] probes with a shared lock for an instant: a few retries keep
/// such a probe from turning a starting helper away.
pub fn acquire(path: &Path) -> std::io::Result<Option<File>> {
    let file = File::options().create(true).truncate(false).write(true).open(path)?;
    for attempt in 0..5 {
        match file.try_lock() {
            Ok(()) => return Ok(Some(file)),
            Err(TryLockError::WouldBlock) if attempt < 4 => std::thread::sleep(std::time::Duration::from_millis(2)),
            Err(TryLockError::WouldBlock) => return Ok(None),
            Err(TryLockError::Error(e)) => return Err(e),
        }
    }
    Ok(None)
}

/// A short name for a destination (repository URL and cell), under which a
/// helper keeps its lock and files: helpers for different repositories or
/// cells never share them.
pub fn destination_key(repo_url: &str, cell: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::new().chain_update(repo_url.as_bytes()).chain_update([0u8]).chain_update(cell.as_bytes()).finalize();
    hex::encode(&digest[..8])
}
