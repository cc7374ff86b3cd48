//! Reports for auditors: what a drill (or a failover) did and showed, as a
//! versioned JSON document (`docs/report-format.md`), signed with Ed25519
//! and hash-chained per cell so that editing, reordering or deleting a
//! report is detectable offline with the public key alone.
//!
//! - [`keys`]: the signing key pair (files), signatures
//! - [`chain`]: sealing a report onto a cell's chain, and verifying a chain
//! - [`html`]: the self-contained page people read and print

pub mod chain;
pub mod html;
pub mod keys;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The schema this build writes (and the only one it reads so far).
pub const SCHEMA: &str = "lifeboat.report/1";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Targets {
    pub rpo_seconds: f64,
    pub rto_seconds: f64,
    /// The tier's Kafka RPO, when the cell has Kafka.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kafka_rpo_seconds: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Demonstrated {
    /// Total time to a usable restored environment.
    pub rto_seconds: Option<f64>,
    /// Target minus the point actually recovered (Postgres).
    pub rpo_seconds: Option<f64>,
    /// Target minus the newest instant the Kafka snapshots cover.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kafka_rpo_seconds: Option<f64>,
}

/// One step or check, with its outcome, timing and evidence: the drill's
/// own record, so agent and report cannot disagree on its shape.
pub use lifeboat_api::Step as Item;

/// A report's overall result: passed only with no failed step or check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Passed,
    Failed,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Passed => "passed",
            Verdict::Failed => "failed",
        }
    }

    /// Passed unless something failed.
    pub fn of(errors: u32) -> Verdict {
        if errors == 0 {
            Verdict::Passed
        } else {
            Verdict::Failed
        }
    }
}

/// Where the report sits in its cell's chain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChainLink {
    /// 1 for a cell's first report, then +1 each.
    pub sequence: u64,
    /// SHA-256 (hex) of the previous report's signed bytes; None for the first.
    pub previous: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Signature {
    pub algorithm: String,
    /// The first 16 hex digits of SHA-256 over the public key.
    pub key_id: String,
    /// Hex of the Ed25519 signature over the report's canonical bytes.
    pub value: String,
}

/// A compliance control the report evidences, from the plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Control {
    pub id: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub title: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Report {
    pub schema: String,
    pub report_id: String,
    pub tool_version: String,
    pub plan: String,
    pub cell: String,
    pub tenants: Vec<String>,
    /// `drill` or `failover`.
    pub operation: String,
    pub initiator: String,
    pub source_location: String,
    pub target_environment: String,
    pub started: String,
    pub finished: String,
    pub duration_seconds: f64,
    /// Backup and snapshot ids used, the target instant, the point reached.
    pub recovery_point: Value,
    pub targets: Targets,
    pub demonstrated: Demonstrated,
    pub verdict: Verdict,
    pub errors: u32,
    pub warnings: u32,
    pub steps: Vec<Item>,
    pub checks: Vec<Item>,
    /// The plan's controls for this operation (absent when it lists none:
    /// reports written before controls existed verify unchanged).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub controls: Vec<Control>,
    pub chain: ChainLink,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<Signature>,
}

/// Round every fraction in `v` to milliseconds (3 decimals). A verifier
/// re-encodes the report it parsed; numbers with few digits come back from
/// any correct JSON parser as exactly the same double, so the canonical
/// bytes do too (a full-precision double need not, with a fast parser).
fn round_fractions(v: &mut Value) {
    match v {
        Value::Number(n) if n.is_f64() => {
            if let Some(r) = n.as_f64().map(|f| (f * 1000.0).round() / 1000.0).and_then(serde_json::Number::from_f64) {
                *n = r;
            }
        }
        Value::Array(items) => items.iter_mut().for_each(round_fractions),
        Value::Object(map) => map.values_mut().for_each(round_fractions),
        _ => {}
    }
}

impl Report {
    /// Round every fraction (timings, evidence) to milliseconds; sealing does this first.
    pub fn round_fractions(&mut self) {
        let mut value = serde_json::to_value(&*self).expect("reports serialise");
        round_fractions(&mut value);
        *self = serde_json::from_value(value).expect("a rounded report is a report");
    }

    /// The bytes the signature covers: the report without its signature,
    /// as JSON with keys in sorted order and no whitespace.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let mut unsigned = self.clone();
        unsigned.signature = None;
        // serde_json's Value keeps object keys sorted (no preserve_order), so
        // going through a Value makes the encoding canonical.
        let value = serde_json::to_value(&unsigned).expect("reports serialise");
        serde_json::to_vec(&value).expect("values serialise")
    }

    /// The hash the next report in the chain names: over the signed report.
    pub fn link_hash(&self) -> String {
        use sha2::Digest as _;
        let value = serde_json::to_value(self).expect("reports serialise");
        hex::encode(sha2::Sha256::digest(serde_json::to_vec(&value).expect("values serialise")))
    }

    /// The file name a report is stored under: sequence first, so a
    /// directory listing is the chain's order.
    pub fn file_name(&self) -> String {
        format!("{:06}-{}.json", self.chain.sequence, self.report_id)
    }

    /// The name of its HTML page, stored beside it.
    pub fn page_name(&self) -> String {
        format!("{:06}-{}.html", self.chain.sequence, self.report_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A verdict is one of two words, never free text: a report saying
    /// `PASSED` (or anything else) is refused when read, rather than counted
    /// as failed by a string comparison.
    #[test]
    fn verdicts_are_one_of_two_words() {
        let report = chain::tests::report("c", 1);
        let mut value = serde_json::to_value(&report).unwrap();
        assert_eq!(value["verdict"], "passed");
        value["verdict"] = "PASSED".into();
        let e = serde_json::from_value::<Report>(value.clone()).unwrap_err();
        assert!(e.to_string().contains("unknown variant `PASSED`"), "{e}");
        value["steps"][0]["outcome"] = "ok".into();
        value["verdict"] = "passed".into();
        assert!(serde_json::from_value::<Report>(value).is_err(), "step outcomes are one of four words");
    }
}
