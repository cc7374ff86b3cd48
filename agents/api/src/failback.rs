//! Failing a cell back home after a failover (`lifeboat failover
//! failback`), planned and without loss, in three jobs:
//!
//! 1. [`RebuildSpec`] (job `rebuild`, the cell's own agent): its Postgres
//!    data directory is set aside and rebuilt from a location's newest
//!    base backup as a standby streaming from the new primary. Signed by
//!    the plan key (it replaces the home's data and names the primary to follow).
//! 2. [`HandbackSpec`] (job `handback`, the recovery site): the takeover's
//!    WAL is seen archived, its server stopped cleanly (its last WAL
//!    streamed to the home standby) and its directory set aside;
//!    [`HandedBack::final_lsn`] is its shutdown checkpoint.
//! 3. [`HomePromoteSpec`] (job `home-promote`, the cell's own agent): the home
//!    standby is promoted once it has replayed past that checkpoint, never
//!    before (what it lacked would be lost).
//!
//! A chaos drill starts with [`CrashSpec`] (job `crash`): the cell's
//! primary stopped as a crash would, before the failover and the failback.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::drill::ChecksSignature;
use crate::results::PgReached;
use crate::standby::StandbyState;

/// Rebuild the agent's own cell as a standby of `primary_conninfo`, from
/// `location` (the agent's name for it: `primary` or a copy's name).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RebuildSpec {
    pub cell: String,
    pub location: String,
    /// The new primary (libpq; no password: a passfile on the home host gives it).
    pub primary_conninfo: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<ChecksSignature>,
}

impl RebuildSpec {
    /// What the coordinator signs: a domain tag and the spec without its signature.
    pub fn signed_message(&self) -> Vec<u8> {
        let unsigned = RebuildSpec { signature: None, ..self.clone() };
        let mut message = b"lifeboat rebuild v1\n".to_vec();
        message.extend(serde_json::to_vec(&unsigned).expect("rebuild specs serialise"));
        message
    }
}

/// The home rebuilt (or found rebuilt) as a standby.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Rebuilt {
    pub data_directory: String,
    /// Where the data directory it replaced was moved (none: it was empty or missing).
    pub set_aside: Option<String>,
    /// The base backup it was rebuilt from.
    pub backup: String,
    /// `rebuilt`, or `running` (a standby of that primary already ran there).
    pub action: String,
    pub state: StandbyState,
}

/// Hand the cell back from the takeover `takeover` at `port`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HandbackSpec {
    pub cell: String,
    pub takeover: String,
    pub port: u16,
}

/// The takeover stopped and set aside.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct HandedBack {
    pub takeover: String,
    /// The last WAL segment seen archived before the stop.
    pub archived_through: String,
    /// Its shutdown checkpoint: the home must replay past it before it is promoted.
    pub final_lsn: String,
    pub timeline: u32,
    /// The standbys that streamed from it when it stopped (`application_name`s).
    pub streaming_to: Vec<String>,
    /// Where its directory was kept.
    pub kept_in: String,
}

/// Promote the agent's own cell's standby once it has replayed past `after_lsn`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HomePromoteSpec {
    pub cell: String,
    pub after_lsn: String,
}

/// A chaos drill's first step (job `crash`, the cell's own agent): stop the
/// cell's Postgres as a crash would (`pg_ctl stop -m immediate`: no
/// shutdown checkpoint, clients cut off). Signed by the plan key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CrashSpec {
    pub cell: String,
    /// Why (the chaos drill), for the agent's log.
    pub reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<ChecksSignature>,
}

impl CrashSpec {
    /// What the coordinator signs: a domain tag and the spec without its signature.
    pub fn signed_message(&self) -> Vec<u8> {
        let unsigned = CrashSpec { signature: None, ..self.clone() };
        let mut message = b"lifeboat crash v1\n".to_vec();
        message.extend(serde_json::to_vec(&unsigned).expect("crash specs serialise"));
        message
    }
}

/// The cell's server stopped as a crash would.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Crashed {
    pub data_directory: String,
    /// Its postmaster's pid (none: it was not running).
    pub pid: Option<i32>,
}

/// The home promoted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct HomePromoted {
    /// What the standby had replayed when it was promoted.
    pub replayed_lsn: String,
    pub reached: PgReached,
}
