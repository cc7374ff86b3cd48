//! The Lifeboat backup repository: the contract between agents, the
//! coordinator and auditors (see `docs/repository-format.md`).
//!
//! - [`format`]: the layout and the self-describing config object
//! - [`crypto`] and [`envelope`]: keys, encryption, compression and seals
//! - [`repo`]: opening and creating repositories, verified reads and writes
//! - [`pipeline`]: content-defined chunking and the parallel data path
//! - [`manifest`]: what a backup contains; written last, the commit point
//! - [`files`]: configuration-directory backups
//! - [`tree_restore`]: restoring a backed-up tree, fresh or as a delta
//! - [`verify`], [`copy`], [`retention`], [`stats`]: whole-repository operations
//! - [`lock`]: shared and exclusive repository locks
//! - [`fence`]: after a failover, which writers a cell's repository still takes
//! - [`progress`]: bytes done of the running data path, for a progress bar

pub mod copy;
pub mod copy_marker;
pub mod crypto;
pub mod envelope;
mod error;
pub mod fence;
pub mod files;
pub mod format;
pub mod holder;
pub mod lock;
pub mod manifest;
pub mod pipeline;
pub mod progress;
pub mod repo;
pub mod retention;
pub mod stats;
pub mod tree_restore;
pub mod verify;

pub use crypto::Key;
pub use error::{RepoError, Result};
pub use manifest::Manifest;
pub use repo::{BackupRef, InitOptions, Repository};
