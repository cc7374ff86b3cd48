//! The lock that keeps one background helper (the archive spooler, the WAL
//! prefetcher) per directory: an exclusive `flock` on a file, held for the
//! helper's life and released by the kernel when it dies, however it dies.

use std::fs::{File, TryLockError};
use std::path::Path;

/// Does a live process hold the lock at `path`?
pub fn held(path: &Path) -> bool {
    let Ok(file) = File::open(path) else { return false };
    matches!(file.try_lock_shared(), Err(TryLockError::WouldBlock))
}

/// Take the lock at `path` (creating the file); `None` when another process
/// holds it. Keep the returned file open for as long as the lock is needed.
pub fn acquire(path: &Path) -> std::io::Result<Option<File>> {
    let file = File::options().create(true).truncate(false).write(true).open(path)?;
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(TryLockError::WouldBlock) => Ok(None),
        Err(TryLockError::Error(e)) => Err(e),
    }
}
