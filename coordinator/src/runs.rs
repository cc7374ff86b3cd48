//! Runs: the coordinator's units of work for one cell. A run has a kind
//! (what the plan schedules or an operator asks for), a trigger, a state,
//! and, once finished, a result. Each kind but the drill is one agent job
//! ([`job_spec`]); a drill is a job plus a signed report.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use lifeboat_api::{JobResult, JobSpec, RetentionOf};

use crate::plan::{CellPlan, Plan};
use crate::report::keys::Signer;
use crate::report::Report;

/// What a run does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunKind {
    PgFull,
    PgIncremental,
    KafkaSnapshot,
    PgRetention,
    KafkaRetention,
    Drill,
    /// `repo verify` of the cell's primary location and its copies: every object read.
    Verify,
    /// The daily sampled pass: the newest objects of every location read.
    VerifySample,
}

impl RunKind {
    pub const ALL: [RunKind; 8] = [
        RunKind::PgFull,
        RunKind::PgIncremental,
        RunKind::KafkaSnapshot,
        RunKind::PgRetention,
        RunKind::KafkaRetention,
        RunKind::Drill,
        RunKind::Verify,
        RunKind::VerifySample,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RunKind::PgFull => "pg-full",
            RunKind::PgIncremental => "pg-incremental",
            RunKind::KafkaSnapshot => "kafka-snapshot",
            RunKind::PgRetention => "pg-retention",
            RunKind::KafkaRetention => "kafka-retention",
            RunKind::Drill => "drill",
            RunKind::Verify => "verify",
            RunKind::VerifySample => "verify-sample",
        }
    }

    pub fn parse(s: &str) -> Option<RunKind> {
        RunKind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Every kind's name, for messages.
    pub fn names() -> String {
        RunKind::ALL.map(RunKind::as_str).join(", ")
    }
}

impl std::fmt::Display for RunKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// Where a run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunState {
    /// Waiting to be submitted (or for a retry).
    Pending,
    /// The agent has the job.
    Submitted,
    Succeeded,
    Failed,
}

impl RunState {
    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Pending => "pending",
            RunState::Submitted => "submitted",
            RunState::Succeeded => "succeeded",
            RunState::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<RunState> {
        [RunState::Pending, RunState::Submitted, RunState::Succeeded, RunState::Failed].into_iter().find(|k| k.as_str() == s)
    }

    pub fn is_final(self) -> bool {
        matches!(self, RunState::Succeeded | RunState::Failed)
    }
}

/// Who asked for a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Trigger {
    Schedule,
    Operator,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Schedule => "schedule",
            Trigger::Operator => "operator",
        }
    }

    pub fn parse(s: &str) -> Option<Trigger> {
        [Trigger::Schedule, Trigger::Operator].into_iter().find(|k| k.as_str() == s)
    }
}

/// What a finished run left.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum RunResult {
    /// A drill: its signed report, and where the coordinator mirrored it.
    Drill { report: Box<Report>, json: Option<PathBuf>, html: Option<PathBuf> },
    /// What the agent's job reported.
    Job(JobResult),
}

impl RunResult {
    /// The backup or snapshot a run made, for people.
    pub fn made(&self) -> Option<&str> {
        match self {
            RunResult::Job(JobResult::PgBackup(b)) => Some(&b.backup_id),
            RunResult::Job(JobResult::KafkaSnapshot(s)) => Some(&s.snapshot_id),
            _ => None,
        }
    }
}

/// `POST /v1/runs` (with the operator token): a run now.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunRequest {
    pub cell: String,
    pub kind: RunKind,
}

/// How many of the newest objects per location the daily sampled verify reads.
pub const VERIFY_SAMPLE: u32 = 256;

/// The agent job that does a run of `kind` for `cell` (a drill's is
/// [`crate::drill::job_spec`], signed by `signer`).
pub fn job_spec(plan: &Plan, kind: RunKind, cell: &CellPlan, signer: Option<&Signer>) -> anyhow::Result<JobSpec> {
    Ok(match kind {
        RunKind::PgFull => JobSpec::PgBackup { incremental: false },
        RunKind::PgIncremental => JobSpec::PgBackup { incremental: true },
        RunKind::KafkaSnapshot => JobSpec::KafkaSnapshot {},
        RunKind::PgRetention => JobSpec::Retention {
            of: RetentionOf::Pg,
            dry_run: false,
            keep_within: Some(cell.retention.pg_full),
            keep_incremental_within: Some(cell.retention.pg_incremental),
        },
        RunKind::KafkaRetention => JobSpec::Retention {
            of: RetentionOf::Kafka,
            dry_run: false,
            keep_within: Some(cell.retention.kafka),
            keep_incremental_within: None,
        },
        RunKind::Verify => JobSpec::Verify { location: None, every_location: true, sample: None },
        RunKind::VerifySample => JobSpec::Verify { location: None, every_location: true, sample: Some(VERIFY_SAMPLE) },
        RunKind::Drill => {
            let signer = signer.ok_or_else(|| anyhow::anyhow!("a drill needs the signing key: its checks and its report are signed"))?;
            crate::drill::job_spec(plan, cell, &crate::drill::DrillRequest::scheduled("schedule"), signer)?
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The plan's incremental retention reaches the agent's job (it used to
    /// be parsed and dropped: incrementals were kept as long as fulls).
    #[test]
    fn postgres_retention_carries_both_ages() {
        let plan = crate::plan::tests::demo_plan();
        let cell = &plan.cells[0];
        let spec = job_spec(&plan, RunKind::PgRetention, cell, None).unwrap();
        let JobSpec::Retention { keep_within, keep_incremental_within, .. } = spec else { panic!("{spec:?}") };
        assert_eq!(keep_within, Some(cell.retention.pg_full));
        assert_eq!(keep_incremental_within, Some(cell.retention.pg_incremental));
        assert_ne!(cell.retention.pg_full, cell.retention.pg_incremental, "the demo plan keeps them apart");
    }

    #[test]
    fn names_round_trip() {
        for k in RunKind::ALL {
            assert_eq!(RunKind::parse(k.as_str()), Some(k));
            assert_eq!(serde_json::to_value(k).unwrap(), k.as_str());
        }
    }
}
