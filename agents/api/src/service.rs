//! The agent's small answers: health, version, the stored report names,
//! and the error body every failed request carries.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::jobs::JobKind;

/// `GET /v1/health`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Health {
    /// Always `ok` when the agent answers.
    pub status: String,
    pub cell: String,
    pub jobs_running: u32,
    pub jobs_queued: u32,
}

/// `GET /v1/version`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Version {
    pub version: String,
    pub cell: String,
    /// The job kinds this agent runs.
    pub job_kinds: Vec<JobKind>,
    /// Its geo-copy locations, by name.
    pub locations: Vec<String>,
}

/// `GET /v1/reports`: the cell's stored report names, in chain order
/// (`NNNNNN-<id>.json` and `.html`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ReportList {
    pub reports: Vec<String>,
}

/// Whose reports a report request is about (query parameters): the
/// agent's own cell (both unset), or a guest cell's chain in one of its
/// locations on a recovery site (`cell`, and `location`, by default the
/// first the agent was given).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReportScope {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cell: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
}

/// `GET /v1/failover-journals`: the failovers whose journal is mirrored
/// into the scope's repository, by id (sorted).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct FailoverJournalList {
    pub failovers: Vec<String>,
}

/// A plan as a coordinator stores it with each cell's repository
/// (`PUT /v1/plans/{sha256}`, under `plans/<cell>/`; geo-copy carries it):
/// the plan directory's files, signed with the plan key, so a coordinator
/// that takes over elsewhere can tell which plan was in force.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct StoredPlan {
    /// The plan's name (`[plan] name`).
    pub plan: String,
    /// `lifeboat_secrets::signing::plan_digest` of `files`: its name.
    pub sha256: String,
    /// File name (relative to the plan directory) to content.
    pub files: std::collections::BTreeMap<String, String>,
    #[serde(with = "time::serde::rfc3339")]
    #[schemars(with = "crate::schema::Timestamp")]
    pub signed_at: time::OffsetDateTime,
    /// The plan key's signature of `plan_message(sha256, plan, signed_at)`.
    pub signature: crate::drill::ChecksSignature,
}

/// `GET /v1/plans`: the plans stored in the scope's repository.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PlanList {
    pub plans: Vec<PlanEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PlanEntry {
    pub plan: String,
    pub sha256: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schemars(with = "crate::schema::Timestamp")]
    pub signed_at: time::OffsetDateTime,
}

/// Whether `s` is a plan digest: 64 lowercase hex digits.
pub fn is_plan_digest(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Whether `name` is a stored report's name: `NNNNNN-<id>.json` or
/// `.html`, the id lowercase letters, digits and `-`. Anything else
/// (a path, an encoded separator, another extension) is refused before it
/// reaches a repository.
pub fn is_report_name(name: &str) -> bool {
    let Some(stem) = name.strip_suffix(".json").or_else(|| name.strip_suffix(".html")) else { return false };
    let (Some(seq), Some(id)) = (stem.get(..6), stem.get(6..)) else { return false };
    seq.bytes().all(|b| b.is_ascii_digit())
        && id.len() > 1
        && id.starts_with('-')
        && id[1..].bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// Whether `id` is a failover's id (`fo-` then lowercase letters, digits
/// and `-`, at most 64 characters): what names a mirrored journal.
pub fn is_failover_id(id: &str) -> bool {
    id.len() <= 64 && id.starts_with("fo-") && id.len() > 3 && id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

#[cfg(test)]
mod tests {
    #[test]
    fn failover_ids() {
        use super::is_failover_id as ok;
        assert!(ok("fo-20261206t101500-1a2b"));
        for bad in ["fo-", "x-1", "fo-../x", "fo-A", "fo-a/b", &format!("fo-{}", "a".repeat(62))] {
            assert!(!ok(bad), "{bad}");
        }
    }

    #[test]
    fn report_names() {
        use super::is_report_name as ok;
        assert!(ok("000001-drill-abc.json") && ok("000012-x.html"));
        for bad in
            ["1-x.json", "000001-../x.json", "000001-x.txt", "000001.json", "00000\u{e9}-x.json", "000001-x", "../../v1/jobs", "..%2F.json"]
        {
            assert!(!ok(bad), "{bad}");
        }
    }
}

/// The header a coordinator that shares its state with others (and leads
/// them through a lease) puts on every request: its lease's epoch. An
/// agent remembers the highest it has seen and answers a lower one with
/// 409 and this header holding the highest, so a coordinator that lost
/// its lease cannot act after it wakes from a pause. Requests without it
/// (a single coordinator, the operator CLI) are not judged.
pub const COORDINATOR_EPOCH_HEADER: &str = "lifeboat-coordinator-epoch";

/// The body of every 4xx and 5xx answer: what went wrong and what to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ErrorBody {
    pub error: String,
}
