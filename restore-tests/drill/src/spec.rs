//! The drill a coordinator asks an agent for: the target instant, where to
//! restore from, and the smoke checks from the plan.

use serde::{Deserialize, Serialize};

/// One drill. Locations are the agent's names for them (`None`: the
/// primary repository).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
}

fn yes() -> bool {
    true
}

fn default_database() -> String {
    "postgres".into()
}

/// The instant the drill recovers to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub enum DrillTarget {
    /// RFC 3339.
    Time(String),
    /// A random instant within the last `within` (e.g. "24h") that both
    /// Postgres and Kafka can recover to.
    RandomRecent { within: String },
}

/// A smoke check, from the plan's `[[cell.smoke]]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
    PaymentsHaveEvents { name: String, sql: String, topic: String, grace: String },
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
        assert_eq!(spec.checks.len(), 2);
        assert!(spec.checks[1].needs_kafka());
        assert!(serde_json::from_str::<DrillSpec>(r#"{"target":{"time":"2026-01-01T00:00:00Z"},"extra":1}"#).is_err());
    }
}
