//! Standbys a recovery site keeps for its guest cells: what the
//! coordinator asks for ([`StandbySpec`], job kind `standby`) and what the
//! agent reports ([`StandbyStatus`], also in a guest's `GET
//! /v1/guests/{cell}/recovery`). A standby lives where the cell's takeover
//! would, `<restore-root>/takeover-<port>`, so that a failover promotes it
//! in place.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::drill::ChecksSignature;
use crate::schema::Timestamp;

/// How a standby follows its primary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum StandbyMode {
    /// Hot: streams WAL from the primary while it lives, and replays the
    /// archive when streaming breaks.
    Stream,
    /// Warm: replays archived WAL from the location only.
    Archive,
}

impl StandbyMode {
    pub fn as_str(self) -> &'static str {
        match self {
            StandbyMode::Stream => "stream",
            StandbyMode::Archive => "archive",
        }
    }
}

/// Keep a standby of guest `cell` at `port`: bootstrap it from the
/// location's newest base backup when there is none, start it when it is
/// stopped, report it when it runs. Signed by the plan key like a takeover:
/// a standby is what a failover promotes into production.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StandbySpec {
    pub cell: String,
    /// The guest location (plan name) it restores and replays from.
    pub location: String,
    pub port: u16,
    pub mode: StandbyMode,
    /// `stream`: how to reach the primary (libpq; no password: a
    /// `passfile` on the site's host gives it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary_conninfo: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<ChecksSignature>,
}

impl StandbySpec {
    /// What the coordinator signs: a domain tag and the spec without its signature.
    pub fn signed_message(&self) -> Vec<u8> {
        let unsigned = StandbySpec { signature: None, ..self.clone() };
        let mut message = b"lifeboat standby v1\n".to_vec();
        message.extend(serde_json::to_vec(&unsigned).expect("standby specs serialise"));
        message
    }
}

/// A standby as the agent found or left it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct StandbyStatus {
    pub cell: String,
    pub mode: StandbyMode,
    pub location: String,
    pub port: u16,
    pub directory: String,
    /// The base backup it was bootstrapped from.
    pub backup: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schemars(with = "Timestamp")]
    pub bootstrapped_at: OffsetDateTime,
    /// What this call did: `bootstrapped`, `started` or `running` (nothing).
    pub action: String,
    pub state: StandbyState,
}

/// How far a standby has come, read from the server itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct StandbyState {
    #[serde(with = "time::serde::rfc3339")]
    #[schemars(with = "Timestamp")]
    pub checked_at: OffsetDateTime,
    /// The server runs and answers.
    pub running: bool,
    /// Still a standby (false once promoted).
    pub in_recovery: bool,
    /// Its WAL receiver streams from the primary now.
    pub streaming: bool,
    pub receive_lsn: Option<String>,
    pub replay_lsn: Option<String>,
    /// Commit time of the last transaction replayed.
    pub last_replayed_transaction: Option<String>,
    /// Behind the primary, in seconds: 0 when everything received is
    /// replayed while streaming; None when not streaming (what it lacks is
    /// then unknown from here: the archive's point counts instead).
    pub replay_lag_seconds: Option<f64>,
    /// Why the state is incomplete (the server is down, a query failed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}
