//! One module per subcommand group.

pub mod drill;
pub mod files;
pub mod kafka;
pub mod key;
pub mod locks;
pub mod pg;
pub mod repo;
pub mod wal;
