//! WAL archiving: `wal-push` (Postgres' `archive_command`) and `wal-fetch`
//! (its `restore_command`).
//!
//! Rules, because Postgres trusts the exit code completely:
//! - push returns success only once the file is durable in the repository:
//!   a batch of segments is written, then one durability barrier (`syncfs`
//!   on `file://`; S3 and Azure are durable per 200), then success. Pushing a file that is archived with the same content is a
//!   no-op; with different content it is an error, loudly, and the new
//!   content is kept under `wal/<cell>/conflicts/` for inspection. An
//!   archived object that fails verification is replaced by the good bytes.
//! - a backlog of `.ready` files is pushed ahead by the spooler
//!   ([`crate::spool`]), which marks a file only once it is durable.
//! - fetch hands Postgres only verified bytes (seal and, for encrypted
//!   repositories, the AEAD tag), written to a temporary file and renamed.
//!   A missing file is [`FetchOutcome::Missing`] (Postgres probes for files
//!   that do not exist); any other failure is an error, which the CLI maps
//!   to an exit code that stops recovery instead of ending it early.

use std::path::Path;

use bytes::Bytes;
use sha2::{Digest, Sha256};

use lifeboat_repository::{format, RepoError, Repository};
use lifeboat_storage::{ObjectPath, PutMode, StoreError};

use crate::walname::WalFile;

pub const WAL_PREFIX: &str = "wal/";
/// Directory under `pg_wal` holding the spooler's markers and lock.
pub const MARKER_DIR: &str = "lifeboat_archived";

#[derive(Debug, thiserror::Error)]
pub enum WalError {
    #[error(transparent)]
    Repo(#[from] RepoError),
    #[error("{name:?} is not a WAL file name (segment, .partial, .history or .backup)")]
    BadName { name: String },
    #[error("WAL file {name} of cell {cell} is already archived with different content (archived sha256 {archived}, new sha256 {new}); the new content is kept as {kept}; check that only one cluster archives as cell {cell}")]
    Conflict { cell: String, name: String, archived: String, new: String, kept: String },
    #[error("{context}: {source}")]
    Io { context: String, source: std::io::Error },
    /// The cell failed over and this cluster is not its primary any more.
    #[error("{0}")]
    Fenced(String),
}

pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> WalError {
    let context = context.into();
    move |source| WalError::Io { context, source }
}

/// `wal/<cell>/<name>`, for a valid cell and WAL file name.
pub fn object_path(cell: &str, name: &str) -> Result<ObjectPath, WalError> {
    format::validate_cell(cell)?;
    if WalFile::parse(name).is_none() {
        return Err(WalError::BadName { name: name.into() });
    }
    Ok(format::path(&format!("{WAL_PREFIX}{cell}/{name}")))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushOutcome {
    /// Newly stored: plaintext bytes.
    Stored(u64),
    /// Already archived with the same content.
    AlreadyArchived,
}

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Store `data` as WAL file `name` of `cell`, durable only after the
/// store's next `sync()` (one barrier for a whole batch of segments).
async fn store_bytes(repo: &Repository, cell: &str, name: &str, data: Vec<u8>) -> Result<PushOutcome, WalError> {
    let path = object_path(cell, name)?;
    let data = Bytes::from(data);
    let sealed = {
        let (repo, path, data) = (repo.clone(), path.clone(), data.clone());
        tokio::task::spawn_blocking(move || repo.seal(&path, &data)).await.expect("sealing does not panic")
    };
    match repo.store().put_deferred(&path, Bytes::from(sealed.clone()), PutMode::Create).await {
        Ok(()) => return Ok(PushOutcome::Stored(data.len() as u64)),
        Err(StoreError::AlreadyExists { .. }) => {}
        Err(e) => return Err(RepoError::from(e).into()),
    }
    match repo.read_object(&path).await {
        // Another push may have stored it moments ago: the caller's barrier
        // makes it durable either way.
        Ok(existing) if existing[..] == data[..] => Ok(PushOutcome::AlreadyArchived),
        Ok(existing) => {
            let new = sha256_hex(&data);
            let kept = format::path(&format!("{WAL_PREFIX}{cell}/conflicts/{name}.{}", &new[..16]));
            let sealed_conflict = repo.seal(&kept, &data);
            match repo.store().put(&kept, Bytes::from(sealed_conflict), PutMode::Create).await {
                Ok(()) | Err(StoreError::AlreadyExists { .. }) => {}
                Err(e) => return Err(RepoError::from(e).into()),
            }
            Err(WalError::Conflict { cell: cell.into(), name: name.into(), archived: sha256_hex(&existing), new, kept: kept.to_string() })
        }
        Err(RepoError::Corrupt { reason, .. }) => {
            tracing::error!(%path, %reason, "archived WAL object is corrupt; replacing it with the verified bytes Postgres just handed over");
            repo.store().put_deferred(&path, Bytes::from(sealed), PutMode::Overwrite).await.map_err(RepoError::from)?;
            Ok(PushOutcome::Stored(data.len() as u64))
        }
        Err(e) => Err(e.into()),
    }
}

/// Store the file at `path` (its name is the WAL file name); durable after
/// the store's next `sync()`.
pub(crate) async fn store_file(repo: &Repository, cell: &str, path: &Path) -> Result<PushOutcome, WalError> {
    let name = file_name(path)?;
    let data = tokio::fs::read(path).await.map_err(io(format!("reading {}", path.display())))?;
    store_bytes(repo, cell, &name, data).await
}

pub fn file_name(path: &Path) -> Result<String, WalError> {
    path.file_name().and_then(|n| n.to_str()).map(String::from).ok_or_else(|| WalError::BadName { name: path.display().to_string() })
}

/// `archive_command` for one file: store it and run the durability barrier.
pub async fn push(repo: &Repository, cell: &str, path: &Path) -> Result<PushOutcome, WalError> {
    let fence = crate::fence::in_force(repo, cell).await?;
    crate::fence::check_wal(fence.as_ref(), cell, &file_name(path)?)?;
    let outcome = store_file(repo, cell, path).await?;
    repo.store().sync().await.map_err(RepoError::from)?;
    Ok(outcome)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchOutcome {
    Restored(u64),
    Missing,
}

/// `restore_command`: write verified WAL file `name` to `dest`.
pub async fn fetch(repo: &Repository, cell: &str, name: &str, dest: &Path) -> Result<FetchOutcome, WalError> {
    match read(repo, cell, name).await? {
        Some(data) => {
            let len = data.len() as u64;
            write_whole(dest, data).await?;
            Ok(FetchOutcome::Restored(len))
        }
        None => Ok(FetchOutcome::Missing),
    }
}

/// The verified content of archived WAL file `name`; `None` if not archived.
pub(crate) async fn read(repo: &Repository, cell: &str, name: &str) -> Result<Option<Vec<u8>>, WalError> {
    match repo.read_object(&object_path(cell, name)?).await {
        Ok(data) => Ok(Some(data)),
        Err(RepoError::Store(StoreError::NotFound { .. })) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Write `data` to a new temporary file beside `dest` (never one another
/// writer has open), then rename it: `dest` never holds part of the data.
pub(crate) async fn write_whole(dest: &Path, data: Vec<u8>) -> Result<(), WalError> {
    let tmp = dest.with_file_name(format!(
        ".{}.lifeboat-{:016x}",
        dest.file_name().and_then(|n| n.to_str()).unwrap_or("wal"),
        rand::random::<u64>()
    ));
    let (tmp_w, dest_w) = (tmp.clone(), dest.to_path_buf());
    // Moved, not copied, into the blocking write.
    let write = tokio::task::spawn_blocking(move || {
        use std::io::Write as _;
        std::fs::File::options().write(true).create_new(true).open(&tmp_w)?.write_all(&data)?;
        std::fs::rename(&tmp_w, &dest_w)
    });
    if let Err(e) = write.await.expect("writing does not panic") {
        let _ = tokio::fs::remove_file(&tmp).await;
        return Err(WalError::Io { context: format!("writing {}", dest.display()), source: e });
    }
    Ok(())
}
