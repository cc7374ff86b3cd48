//! Postgres point-in-time recovery on the Lifeboat repository.
//!
//! - [`walname`]: WAL file names (segments, `.partial`, `.history`,
//!   `.backup`) and segment arithmetic, with no I/O
//! - [`archive`]: `wal-push` (Postgres' `archive_command`) and `wal-fetch`
//!   (its `restore_command`)
//! - [`spool`]: the background pusher that archives a backlog of `.ready`
//!   files ahead of Postgres' archiver
//! - [`prefetch`]: the background fetcher that has the next WAL segments
//!   verified on local disk before recovery asks for them
//! - [`helper_lock`]: one background helper (spooler, prefetcher) per directory
//! - [`chain`]: the archived WAL chain of a cell: timelines, ranges, gaps
//! - [`lsn`]: WAL positions
//! - [`conninfo`]: connection strings in either form, shown without passwords
//! - [`fence`]: refusing the old primary's WAL and backups after a failover
//! - [`backup`]: base backups (`pg backup`)
//! - [`restore`]: point-in-time restore (`pg restore`)
//! - [`server`]: starting a restored cluster, how it listens, waiting for promotion
//! - [`standby`]: a restore made a standby, and how far a standby has come
//! - [`recoverable`]: how far a repository can recover a cell (compliance)
//! - [`retention`]: backups and the WAL they need, as a plan then an execution

pub mod archive;
pub mod archiving;
pub mod backup;
pub mod chain;
pub mod conninfo;
pub mod fence;
pub mod helper_lock;
pub mod lsn;
pub mod prefetch;
pub mod recoverable;
pub mod restore;
pub mod retention;
pub mod server;
pub mod spool;
pub mod standby;
pub mod walname;
