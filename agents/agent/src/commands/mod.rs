//! One module per subcommand group.

pub mod check;
pub mod drill;
pub mod failback;
pub mod fence;
pub mod files;
pub mod kafka;
pub mod key;
pub mod pg;
pub mod repo;
pub mod repo_access;
pub mod reprotect;
pub mod standby;
pub mod wal;
