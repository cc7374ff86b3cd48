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

/// The body of every 4xx and 5xx answer: what went wrong and what to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ErrorBody {
    pub error: String,
}
