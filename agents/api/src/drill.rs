//! Restore drills on the wire: what the coordinator asks an agent for
//! ([`DrillSpec`]: the target instant, where to restore from, the smoke
//! checks of the plan) and what the agent reports back ([`DrillOutcome`]:
//! every step and check timed, the recovery point reached, the measured
//! RPO and RTO). The coordinator turns an outcome into a signed report.

use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::schema::{HumanDuration, Timestamp};

/// One drill. Locations are the agent's names for them (`None`: its own
/// repository).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DrillSpec {
    pub target: DrillTarget,
    #[serde(default)]
    pub location: Option<String>,
    /// Restore from this location instead when the first one's backup is
    /// unusable (a corrupt chunk, a missing object). Only when asked: a
    /// drill that falls back says so, and still fails a check of the first
    /// location.
    #[serde(default)]
    pub fallback_location: Option<String>,
    /// The database the SQL checks run in.
    #[serde(default = "default_database")]
    pub database: String,
    /// Restore Postgres (cells without Postgres drill Kafka alone).
    #[serde(default = "yes")]
    pub postgres: bool,
    /// Restore Kafka too (the agent must have brokers and topics).
    #[serde(default)]
    pub kafka: bool,
    #[serde(default)]
    pub checks: Vec<Check>,
    /// The coordinator's signature over the checks, required by an agent
    /// before it runs any SQL a spec carries (see [`DrillSpec::signed_message`]):
    /// a bearer of the agent's token alone cannot make it run SQL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checks_signature: Option<ChecksSignature>,
    /// Restore a guest cell (one the agent was started with `--guest`
    /// for, a recovery site's), not the agent's own cell.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cell: Option<String>,
    /// A failover: keep what was restored as the cell's new home instead
    /// of removing it (same steps and checks as a drill).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub takeover: Option<Takeover>,
}

/// Where a failover's restore stays: `<restore-root>/takeover-<port>`
/// (marked with `name`: a second takeover of the port is refused), its server
/// listening on `port` (loopback TCP under the restored `pg_hba.conf`;
/// archiving off until the cell is re-protected), its topics and consumer
/// groups restored under `topic_prefix` (empty: the cell's own names, in
/// the site's Kafka).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Takeover {
    pub name: String,
    pub port: u16,
    #[serde(default)]
    pub topic_prefix: String,
    /// Promote the cell's standby kept at this port when there is one
    /// (its WAL streamed up to the failure); restore from the repository
    /// when there is none or it cannot be promoted.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub promote_standby: bool,
}

/// An Ed25519 signature by the coordinator's plan key (the report-signing
/// key whose public half the plan publishes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ChecksSignature {
    /// The first 16 hex digits of the public key's SHA-256.
    pub key_id: String,
    /// The signature, hex.
    pub signature: String,
}

impl DrillSpec {
    /// Whether any check runs SQL on the restored database.
    pub fn runs_sql(&self) -> bool {
        self.checks.iter().any(|c| matches!(c, Check::Sql { .. } | Check::PaymentsHaveEvents { .. }))
    }

    /// What the coordinator signs for `cell`: a domain tag, the cell, the
    /// database and the checks as JSON. The cell and the database are in it
    /// so a signed spec cannot be replayed against another cell or database.
    ///
    /// A takeover's place (its name, port and topic prefix) is signed too:
    /// a takeover runs only as the coordinator asked for it.
    pub fn signed_message(&self, cell: &str) -> Vec<u8> {
        let mut message = format!("lifeboat drill checks v1\n{cell}\n{}\n", self.database).into_bytes();
        message.extend(serde_json::to_vec(&self.checks).expect("checks serialise"));
        if let Some(t) = &self.takeover {
            message.extend(b"\ntakeover ");
            message.extend(serde_json::to_vec(t).expect("takeovers serialise"));
        }
        message
    }
}

fn yes() -> bool {
    true
}

fn default_database() -> String {
    "postgres".into()
}

/// The instant the drill recovers to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub enum DrillTarget {
    Time(
        #[serde(with = "time::serde::rfc3339")]
        #[schemars(with = "Timestamp")]
        OffsetDateTime,
    ),
    /// A random instant within the last `within` that both Postgres and
    /// Kafka can recover to.
    RandomRecent {
        #[serde(with = "crate::duration::serde")]
        #[schemars(with = "HumanDuration")]
        within: Duration,
    },
    /// The newest consistent cut: Postgres to the end of its archived WAL,
    /// Kafka up to the last transaction Postgres replayed (never past it).
    Latest,
}

/// A smoke check, from the plan's `[[cell.smoke]]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Check {
    /// `sql` returns one value, compared as text with `expect`.
    Sql { name: String, sql: String, expect: String },
    /// Every restored partition equals the snapshot (count, hash, first and
    /// last timestamps) up to the target.
    RecordsMatchSnapshot { name: String },
    /// Every consumer group of the snapshot was translated onto the scratch
    /// topics, at the offsets the offset map gives.
    GroupsTranslated { name: String },
    /// `sql` returns (key text, committed timestamptz) for each payment;
    /// every payment committed by the target, except the last `grace` before
    /// it (events are published after the commit), has a record with that
    /// key in `topic`, and no record names a payment the database lacks.
    PaymentsHaveEvents {
        name: String,
        sql: String,
        topic: String,
        #[serde(with = "crate::duration::serde")]
        #[schemars(with = "HumanDuration")]
        grace: Duration,
    },
}

impl Check {
    pub fn name(&self) -> &str {
        match self {
            Check::Sql { name, .. }
            | Check::RecordsMatchSnapshot { name }
            | Check::GroupsTranslated { name }
            | Check::PaymentsHaveEvents { name, .. } => name,
        }
    }

    pub fn needs_kafka(&self) -> bool {
        !matches!(self, Check::Sql { .. })
    }
}

/// How a step or check ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Passed,
    Failed,
    Warning,
    Skipped,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Passed => "passed",
            Outcome::Failed => "failed",
            Outcome::Warning => "warning",
            Outcome::Skipped => "skipped",
        }
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// One step or check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Step {
    pub name: String,
    pub outcome: Outcome,
    pub seconds: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Row counts, offset ranges, manifest hashes: whatever proves the
    /// outcome, for the auditor. Free-form on purpose: the coordinator
    /// copies it into the signed report and never interprets it.
    #[serde(default)]
    pub evidence: serde_json::Value,
}

impl Step {
    pub fn new(name: &str, outcome: Outcome, seconds: f64, message: Option<String>, evidence: serde_json::Value) -> Step {
        Step { name: name.into(), outcome, seconds, message, evidence }
    }

    pub fn failed(&self) -> bool {
        self.outcome == Outcome::Failed
    }

    /// One line for a terminal: outcome, seconds, name, message.
    pub fn line(&self) -> String {
        let message = self.message.as_ref().map(|m| format!(": {m}")).unwrap_or_default();
        format!("  {:8} {:7.1}s  {}{message}\n", self.outcome, self.seconds, self.name)
    }
}

/// Where a drill restored to: its scratch server and topics (all removed
/// after, unless `kept`: a failover's takeover).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Scratch {
    pub id: String,
    pub directory: String,
    pub port: u16,
    pub topic_prefix: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub kept: bool,
}

/// The backup and snapshot a drill used and the points it reached.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RecoveryPoint {
    #[serde(with = "time::serde::rfc3339::option", default)]
    #[schemars(with = "Option<Timestamp>")]
    pub target: Option<OffsetDateTime>,
    /// The agent's name for the location restored from.
    pub location: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postgres: Option<PgPoint>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kafka: Option<KafkaPoint>,
}

/// An instant as Postgres prints it (`2026-11-27 10:15:00.123456+00`,
/// as in [`PgPoint::last_transaction`]).
pub fn pg_time(text: &str) -> Option<OffsetDateTime> {
    let fixed = text.replacen(' ', "T", 1);
    let fixed = if fixed.ends_with("+00") { format!("{fixed}:00") } else { fixed };
    OffsetDateTime::parse(&fixed, &time::format_description::well_known::Rfc3339).ok()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PgPoint {
    pub backup: String,
    pub backup_stop_lsn: String,
    pub latest_archived_wal: String,
    pub reached_lsn: Option<String>,
    pub last_transaction: Option<String>,
    pub timeline: Option<u32>,
    /// Replay stopped at the target instant (false: the archived WAL ended before it).
    pub stopped_at_target: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct KafkaPoint {
    pub snapshot: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schemars(with = "Timestamp")]
    pub snapshot_start: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option", default)]
    #[schemars(with = "Option<Timestamp>")]
    pub until: Option<OffsetDateTime>,
    pub records: u64,
    pub offset_map: String,
}

/// What a drill reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DrillOutcome {
    pub drill_id: String,
    /// The instant recovered to (None: none could be chosen).
    #[serde(with = "time::serde::rfc3339::option", default)]
    #[schemars(with = "Option<Timestamp>")]
    pub target: Option<OffsetDateTime>,
    /// The agent's name for the location restored from.
    pub source_location: String,
    /// Set when the drill fell back from `source_location`'s failure.
    #[serde(default)]
    pub fell_back_to: Option<String>,
    pub scratch: Scratch,
    pub recovery_point: RecoveryPoint,
    /// Postgres: target minus the point recovered (None: not restored).
    pub pg_rpo_seconds: Option<f64>,
    /// Kafka: target minus the newest record time the snapshots cover.
    pub kafka_rpo_seconds: Option<f64>,
    /// From the first step to the end of the checks.
    pub rto_seconds: f64,
    /// Of which Postgres replaying WAL (the rest is Lifeboat's own work).
    pub replay_seconds: f64,
    pub steps: Vec<Step>,
    pub checks: Vec<Step>,
    /// True when every scratch resource was removed.
    pub cleaned_up: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_strictly() {
        let spec: DrillSpec = serde_json::from_str(
            r#"{"target":{"random-recent":{"within":"24h"}},"kafka":true,
               "checks":[{"kind":"sql","name":"n","sql":"select 1","expect":"1"},{"kind":"groups-translated","name":"g"}]}"#,
        )
        .unwrap();
        assert_eq!(spec.database, "postgres");
        assert_eq!(spec.target, DrillTarget::RandomRecent { within: Duration::from_secs(86400) });
        assert_eq!(spec.checks.len(), 2);
        assert!(spec.checks[1].needs_kafka());
        assert!(serde_json::from_str::<DrillSpec>(r#"{"target":{"time":"2026-01-01T00:00:00Z"},"extra":1}"#).is_err());
        assert!(serde_json::from_str::<DrillSpec>(r#"{"target":{"time":"yesterday"}}"#).is_err());
    }

    #[test]
    fn postgres_times_parse() {
        let t = pg_time("2026-12-06 05:58:48.085973+00").unwrap();
        assert_eq!(t.unix_timestamp(), 1796536728);
        assert!(pg_time("yesterday").is_none());
    }

    #[test]
    fn outcomes_are_one_of_four_words() {
        assert_eq!(serde_json::to_string(&Outcome::Warning).unwrap(), r#""warning""#);
        let e = serde_json::from_str::<Outcome>(r#""PASSED""#).unwrap_err();
        assert!(e.to_string().contains("unknown variant `PASSED`"), "{e}");
    }
}
