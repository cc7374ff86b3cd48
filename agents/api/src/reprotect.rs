//! Re-protecting a failover's new primary: what the coordinator asks a
//! recovery site for ([`ReprotectSpec`], job kind `reprotect`, sent by
//! `lifeboat failover commit`) and what the site reports ([`Reprotected`]).
//! The takeover kept at the site (`<restore-root>/takeover-<port>`)
//! archives its WAL into one of the cell's locations there, on its own
//! timeline under the fence the failover raised, and gets a base backup.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::results::BackupDone;

/// Re-protect the takeover `takeover` of guest `cell` at `port`: archive
/// into `location` (a plan name the site was given for the cell with
/// `--guest`) and take a base backup there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReprotectSpec {
    pub cell: String,
    /// The name the takeover was kept under (its directory's marker).
    pub takeover: String,
    pub port: u16,
    pub location: String,
}

/// What re-protecting did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Reprotected {
    pub cell: String,
    pub takeover: String,
    pub location: String,
    /// The timeline the new primary writes (the fence names the first it may).
    pub timeline: u32,
    /// The fence in force there: its epoch.
    pub fence_epoch: u64,
    /// What was changed: `none` (it archived so already), `reloaded`, or
    /// `restarted` (archive_mode was off).
    pub archiving_change: String,
    /// The WAL segment switched out of and seen archived.
    pub archived_through: String,
    /// The base backup taken on the new timeline.
    pub backup: BackupDone,
}
