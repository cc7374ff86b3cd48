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
