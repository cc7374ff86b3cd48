//! What a drill reports: every step and check with its outcome, timing and
//! evidence, the recovery point it reached, and the measured phases. The
//! coordinator turns this into a signed report.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One step or check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    pub name: String,
    /// `passed`, `failed`, `warning` or `skipped`.
    pub outcome: String,
    pub seconds: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Row counts, offset ranges, manifest hashes: whatever proves the outcome.
    #[serde(default)]
    pub evidence: Value,
}

pub const PASSED: &str = "passed";
pub const FAILED: &str = "failed";
pub const WARNING: &str = "warning";
pub const SKIPPED: &str = "skipped";

impl Step {
    pub fn new(name: &str, outcome: &str, seconds: f64, message: Option<String>, evidence: Value) -> Step {
        Step { name: name.into(), outcome: outcome.into(), seconds, message, evidence }
    }

    pub fn failed(&self) -> bool {
        self.outcome == FAILED
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DrillOutcome {
    pub drill_id: String,
    /// The instant recovered to (RFC 3339).
    pub target: String,
    /// The agent's name for the location restored from.
    pub source_location: String,
    /// Set when the drill fell back from `source_location`'s failure.
    #[serde(default)]
    pub fell_back_to: Option<String>,
    /// Scratch data directory, port and topic prefix (all removed).
    pub scratch: Value,
    /// Backup and snapshot used, points reached.
    pub recovery_point: Value,
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
