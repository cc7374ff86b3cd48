//! The repository error type.

use lifeboat_storage::StoreError;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum RepoError {
    #[error(transparent)]
    Store(#[from] StoreError),

    #[error("no Lifeboat repository at {location}: run `lifeboat-agent repo init --repo {location}` first")]
    NotARepository { location: String },

    #[error("a Lifeboat repository already exists at {location}")]
    AlreadyInitialised { location: String },

    #[error("repository at {location} has format version {found}, newer than this Lifeboat understands ({supported}); upgrade lifeboat")]
    NewerFormat { location: String, found: u32, supported: u32 },

    #[error("repository at {location} is encrypted (key id {key_id}): pass --key-file or set LIFEBOAT_KEY_FILE / LIFEBOAT_KEY")]
    KeyRequired { location: String, key_id: String },

    #[error("wrong encryption key for {location}: the repository needs key id {expected}, the key given has id {given} (a key file's current key first, then its retired ones)")]
    WrongKey { location: String, expected: String, given: String },

    #[error("repository at {location} is not encrypted; drop the key or create a new encrypted repository")]
    NotEncrypted { location: String },

    #[error("invalid encryption key: {0}")]
    BadKey(String),

    #[error("object {key} is corrupt: {reason}")]
    Corrupt { key: String, reason: String },

    #[error("backup {id} not found in {location}")]
    BackupNotFound { id: String, location: String },

    #[error("{0}")]
    Invalid(String),

    #[error("{context}: {source}")]
    Io { context: String, source: std::io::Error },

    #[error("{0}")]
    Locked(String),
}

impl RepoError {
    pub fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> RepoError {
        let context = context.into();
        move |source| RepoError::Io { context, source }
    }
}

pub type Result<T, E = RepoError> = std::result::Result<T, E>;
