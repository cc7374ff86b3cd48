//! `GET /v1/recovery`: how far the cell can be recovered from each of its
//! locations (the agent's repository and every geo-copy), as read from the
//! repositories themselves. Compliance measures RPO exposure from these
//! points.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::schema::Timestamp;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Recovery {
    pub cell: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schemars(with = "Timestamp")]
    pub computed_at: OffsetDateTime,
    pub locations: Vec<LocationPoint>,
    /// A guest's standby kept by this agent (guests only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub standby: Option<crate::standby::StandbyStatus>,
}

impl Recovery {
    /// The location the agent calls `name` (`primary` for its own repository).
    pub fn location(&self, name: &str) -> Option<&LocationPoint> {
        self.locations.iter().find(|l| l.location == name)
    }
}

/// The agent's name for its own repository in [`LocationPoint::location`].
pub const PRIMARY: &str = "primary";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum LocationRole {
    /// The agent's own repository.
    Primary,
    /// A geo-copy of it.
    Copy,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct LocationPoint {
    pub location: String,
    pub role: LocationRole,
    pub postgres: Option<PgRecoverable>,
    pub kafka: Option<KafkaRecoverable>,
    /// For a copy: the start of its newest complete, verified copy pass.
    #[serde(with = "time::serde::rfc3339::option", default)]
    #[schemars(with = "Option<Timestamp>")]
    pub copied_through: Option<OffsetDateTime>,
    /// Why this location could not be read (it counts as nothing recoverable).
    pub error: Option<String>,
}

impl LocationPoint {
    pub fn new(location: &str, role: LocationRole) -> LocationPoint {
        LocationPoint { location: location.into(), role, postgres: None, kafka: None, copied_through: None, error: None }
    }
}

/// A base backup, as compliance reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct BackupPoint {
    pub id: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schemars(with = "Timestamp")]
    pub finished: OffsetDateTime,
}

/// How far Postgres can be recovered from one location.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PgRecoverable {
    pub backups: u64,
    pub last_full: Option<BackupPoint>,
    pub last_incremental: Option<BackupPoint>,
    /// The newest segment reachable without a gap from the newest backup's start.
    pub last_segment: Option<String>,
    /// When that segment was archived: the point this location can recover to
    /// (what Postgres wrote after it is not here yet). None: nothing restorable.
    #[serde(with = "time::serde::rfc3339::option", default)]
    #[schemars(with = "Option<Timestamp>")]
    pub recoverable_to: Option<OffsetDateTime>,
    /// Everything Postgres had written when last asked is here (an idle
    /// database is not "exposed" just because no new segment was needed).
    pub caught_up: bool,
}

/// How far Kafka can be recovered from one location.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct KafkaRecoverable {
    pub snapshots: u64,
    pub last_snapshot: Option<String>,
    /// When the newest snapshot read its high watermarks: what it holds.
    #[serde(with = "time::serde::rfc3339::option", default)]
    #[schemars(with = "Option<Timestamp>")]
    pub recoverable_to: Option<OffsetDateTime>,
}
