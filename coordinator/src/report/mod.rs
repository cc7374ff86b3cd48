//! Reports for auditors: what a drill (or a failover) did and showed, as a
//! versioned JSON document (`docs/report-format.md`), signed with Ed25519
//! and hash-chained per cell so that editing, reordering or deleting a
//! report is detectable offline with the public key alone.
//!
//! - [`keys`]: the signing key pair (files), signatures
//! - [`chain`]: sealing a report onto a cell's chain, and verifying a chain

pub mod chain;
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
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Demonstrated {
    /// Total time to a usable restored environment.
    pub rto_seconds: Option<f64>,
    /// Target minus the point actually recovered.
    pub rpo_seconds: Option<f64>,
}

/// One step or check, with its outcome, timing and evidence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Item {
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
    /// `passed` or `failed`.
    pub verdict: String,
    pub errors: u32,
    pub warnings: u32,
    pub steps: Vec<Item>,
    pub checks: Vec<Item>,
    pub chain: ChainLink,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<Signature>,
}

impl Report {
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
}
