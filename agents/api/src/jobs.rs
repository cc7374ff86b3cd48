//! Jobs: what a caller may ask an agent to do ([`JobSpec`], one variant per
//! kind) and the record the agent keeps and shows of each job ([`Job`]).
//! Only what the agent's own configuration allows can be asked for:
//! locations are names the agent was started with, restore directories
//! are relative to its restore root.

use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::drill::DrillSpec;
use crate::results::JobResult;
use crate::schema::{HumanDuration, Timestamp};
use crate::standby::StandbySpec;

/// One unit of work, as posted to `POST /v1/jobs`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum JobSpec {
    /// A Postgres base backup (full unless `incremental`).
    PgBackup {
        #[serde(default)]
        incremental: bool,
    },
    /// A Kafka snapshot of the configured topics.
    KafkaSnapshot {},
    /// Copy the repository to a configured geo-copy location.
    Copy { location: String },
    /// Verify every object of the repository (or of a copy location).
    Verify {
        #[serde(default)]
        location: Option<String>,
        /// The repository and every copy location this agent has (`location` unset).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        every_location: bool,
        /// Read only the newest this many objects (every manifest's
        /// references are still checked): the daily sampled pass.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sample: Option<u32>,
    },
    /// Apply retention to Postgres backups or Kafka snapshots.
    Retention {
        of: RetentionOf,
        #[serde(default)]
        dry_run: bool,
        /// Keep everything younger than this (the command's default otherwise).
        #[serde(default, with = "crate::duration::serde::option")]
        #[schemars(with = "Option<HumanDuration>")]
        keep_within: Option<Duration>,
        /// Postgres: keep incremental backups younger than this (default: `keep_within`).
        #[serde(default, with = "crate::duration::serde::option", skip_serializing_if = "Option::is_none")]
        #[schemars(with = "Option<HumanDuration>")]
        keep_incremental_within: Option<Duration>,
    },
    /// Point-in-time restore into `<restore-root>/<to>`.
    PgRestore {
        to: String,
        target: PgTarget,
        #[serde(default)]
        delta: bool,
    },
    /// Restore Kafka topics (renamed with `topic_prefix`) from a snapshot.
    KafkaRestore {
        topic_prefix: String,
        #[serde(default)]
        snapshot: Option<String>,
        #[serde(default, with = "time::serde::rfc3339::option")]
        #[schemars(with = "Option<Timestamp>")]
        until: Option<OffsetDateTime>,
        #[serde(default)]
        group_prefix: Option<String>,
    },
    /// A restore drill into a scratch environment under the restore root
    /// (or, with `takeover`, a failover's restore that stays).
    Drill(DrillSpec),
    /// Fence a cell's old primary out of every location this agent has
    /// for it (`lifeboat-agent fence raise`): its own cell, or a guest.
    Fence {
        #[serde(default)]
        cell: Option<String>,
        reason: String,
        /// Default: one above the newest fence found.
        #[serde(default)]
        epoch: Option<u64>,
    },
    /// Keep a standby of a guest cell (bootstrap, start or report it).
    Standby(StandbySpec),
    /// Make a guest's takeover (its primary since a failover) archive and
    /// back up into one of its locations (`lifeboat failover commit`).
    Reprotect(crate::reprotect::ReprotectSpec),
    /// Failback, home: rebuild the agent's own cell as a standby of its new primary.
    Rebuild(crate::failback::RebuildSpec),
    /// Failback, recovery site: stop a guest's takeover once its WAL is archived and streamed.
    Handback(crate::failback::HandbackSpec),
    /// Failback, home: promote the rebuilt standby once it replayed the takeover's last WAL.
    HomePromote(crate::failback::HomePromoteSpec),
    /// Chaos drill, home: stop the agent's own cell's Postgres as a crash would.
    Crash(crate::failback::CrashSpec),
}

/// The kind of a job: its spec's tag, the metrics label, the per-kind lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum JobKind {
    PgBackup,
    KafkaSnapshot,
    Copy,
    Verify,
    Retention,
    PgRestore,
    KafkaRestore,
    Drill,
    Fence,
    Standby,
    Reprotect,
    Rebuild,
    Handback,
    HomePromote,
    Crash,
}

impl JobKind {
    pub const ALL: [JobKind; 15] = [
        JobKind::PgBackup,
        JobKind::KafkaSnapshot,
        JobKind::Copy,
        JobKind::Verify,
        JobKind::Retention,
        JobKind::PgRestore,
        JobKind::KafkaRestore,
        JobKind::Drill,
        JobKind::Fence,
        JobKind::Standby,
        JobKind::Reprotect,
        JobKind::Rebuild,
        JobKind::Handback,
        JobKind::HomePromote,
        JobKind::Crash,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::PgBackup => "pg-backup",
            JobKind::KafkaSnapshot => "kafka-snapshot",
            JobKind::Copy => "copy",
            JobKind::Verify => "verify",
            JobKind::Retention => "retention",
            JobKind::PgRestore => "pg-restore",
            JobKind::KafkaRestore => "kafka-restore",
            JobKind::Drill => "drill",
            JobKind::Fence => "fence",
            JobKind::Standby => "standby",
            JobKind::Reprotect => "reprotect",
            JobKind::Rebuild => "rebuild",
            JobKind::Handback => "handback",
            JobKind::HomePromote => "home-promote",
            JobKind::Crash => "crash",
        }
    }
}

impl std::fmt::Display for JobKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl JobSpec {
    pub fn kind(&self) -> JobKind {
        match self {
            JobSpec::PgBackup { .. } => JobKind::PgBackup,
            JobSpec::KafkaSnapshot {} => JobKind::KafkaSnapshot,
            JobSpec::Copy { .. } => JobKind::Copy,
            JobSpec::Verify { .. } => JobKind::Verify,
            JobSpec::Retention { .. } => JobKind::Retention,
            JobSpec::PgRestore { .. } => JobKind::PgRestore,
            JobSpec::KafkaRestore { .. } => JobKind::KafkaRestore,
            JobSpec::Drill(_) => JobKind::Drill,
            JobSpec::Fence { .. } => JobKind::Fence,
            JobSpec::Standby(_) => JobKind::Standby,
            JobSpec::Reprotect(_) => JobKind::Reprotect,
            JobSpec::Rebuild(_) => JobKind::Rebuild,
            JobSpec::Handback(_) => JobKind::Handback,
            JobSpec::HomePromote(_) => JobKind::HomePromote,
            JobSpec::Crash(_) => JobKind::Crash,
        }
    }

    /// A failover's step (a fence, a takeover, a failback or chaos step): run at
    /// once, beside any other job.
    pub fn is_failover(&self) -> bool {
        match self {
            JobSpec::Fence { .. }
            | JobSpec::Reprotect(_)
            | JobSpec::Rebuild(_)
            | JobSpec::Handback(_)
            | JobSpec::HomePromote(_)
            | JobSpec::Crash(_) => true,
            JobSpec::Drill(d) => d.takeover.is_some(),
            _ => false,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum RetentionOf {
    Pg,
    Kafka,
}

/// Where a point-in-time restore stops.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub enum PgTarget {
    /// Everything archived.
    Latest,
    Time(
        #[serde(with = "time::serde::rfc3339")]
        #[schemars(with = "Timestamp")]
        OffsetDateTime,
    ),
    /// A WAL position, e.g. `0/3000028`.
    Lsn(String),
    Xid(u64),
    /// A restore point made with `pg_create_restore_point`.
    Name(String),
}

impl std::fmt::Display for PgTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PgTarget::Latest => f.write_str("latest"),
            PgTarget::Time(t) => write!(f, "time {t}"),
            PgTarget::Lsn(l) => write!(f, "LSN {l}"),
            PgTarget::Xid(x) => write!(f, "xid {x}"),
            PgTarget::Name(n) => write!(f, "restore point {n:?}"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum JobState {
    Queued,
    Running,
    Succeeded,
    Failed,
}

impl JobState {
    pub fn is_final(self) -> bool {
        matches!(self, JobState::Succeeded | JobState::Failed)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Progress {
    pub done_bytes: u64,
    pub total_bytes: u64,
}

/// A job as the agent records and shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Job {
    pub id: String,
    pub idempotency_key: String,
    pub spec: JobSpec,
    pub state: JobState,
    #[serde(with = "time::serde::rfc3339")]
    #[schemars(with = "Timestamp")]
    pub created: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option", default)]
    #[schemars(with = "Option<Timestamp>")]
    pub started: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option", default)]
    #[schemars(with = "Option<Timestamp>")]
    pub finished: Option<OffsetDateTime>,
    /// The child process running the job, while it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<Progress>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// What the job reported (`job_kind` names its shape, the spec's kind).
    /// A drill that ran and failed reports its outcome too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<JobResult>,
    /// Why it failed: the command's last error lines, or the interruption.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Job {
    /// A new job, waiting to run.
    pub fn queued(id: String, idempotency_key: &str, spec: JobSpec, now: OffsetDateTime) -> Job {
        Job {
            id,
            idempotency_key: idempotency_key.to_string(),
            spec,
            state: JobState::Queued,
            created: now,
            started: None,
            finished: None,
            pid: None,
            progress: None,
            exit_code: None,
            result: None,
            error: None,
        }
    }

    pub fn duration_seconds(&self) -> Option<f64> {
        Some((self.finished? - self.started?).as_seconds_f64())
    }
}

/// Idempotency keys are chosen by callers; keep them printable and bounded.
pub fn check_idempotency_key(key: &str) -> Result<(), String> {
    let ok = !key.is_empty() && key.len() <= 128 && key.bytes().all(|b| b.is_ascii_alphanumeric() || b"._:-/".contains(&b));
    if ok {
        Ok(())
    } else {
        Err("the Idempotency-Key header must be 1-128 characters of A-Z a-z 0-9 . _ : - /".into())
    }
}

/// `GET /v1/jobs`: newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct JobList {
    pub jobs: Vec<Job>,
}

/// The query of `GET /v1/jobs`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JobQuery {
    pub state: Option<JobState>,
    pub kind: Option<JobKind>,
    /// At most this many (default 100).
    pub limit: Option<usize>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_strictly() {
        let s: JobSpec = serde_json::from_str(r#"{"kind":"pg-backup","incremental":true}"#).unwrap();
        assert_eq!(s, JobSpec::PgBackup { incremental: true });
        let s: JobSpec = serde_json::from_str(r#"{"kind":"pg-restore","to":"x","target":{"time":"2026-01-01T00:00:00Z"}}"#).unwrap();
        assert!(matches!(s, JobSpec::PgRestore { target: PgTarget::Time(_), .. }));
        let s: JobSpec = serde_json::from_str(r#"{"kind":"pg-restore","to":"x","target":"latest"}"#).unwrap();
        assert!(matches!(s, JobSpec::PgRestore { target: PgTarget::Latest, .. }));
        let e = serde_json::from_str::<JobSpec>(r#"{"kind":"pg-backup","incremntal":true}"#).unwrap_err();
        assert!(e.to_string().contains("unknown field `incremntal`"), "{e}");
        let e = serde_json::from_str::<JobSpec>(r#"{"kind":"pg-backpu"}"#).unwrap_err();
        assert!(e.to_string().contains("unknown variant `pg-backpu`"), "{e}");
    }

    #[test]
    fn retention_ages_are_durations() {
        let s: JobSpec =
            serde_json::from_str(r#"{"kind":"retention","of":"pg","keep_within":"35days","keep_incremental_within":"7d"}"#).unwrap();
        let JobSpec::Retention { keep_within, keep_incremental_within, .. } = &s else { panic!("{s:?}") };
        assert_eq!((*keep_within, *keep_incremental_within), (Some(Duration::from_secs(35 * 86400)), Some(Duration::from_secs(7 * 86400))));
        let e = serde_json::from_str::<JobSpec>(r#"{"kind":"retention","of":"pg","keep_within":"35"}"#).unwrap_err();
        assert!(e.to_string().contains("\"35\" is not a duration"), "{e}");
        // Written back the way people write durations.
        let json = serde_json::to_string(&s).unwrap();
        assert!(json.contains(r#""keep_within":"35d""#), "{json}");
    }

    #[test]
    fn every_kind_is_listed_once() {
        let names: std::collections::BTreeSet<&str> = JobKind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(names.len(), JobKind::ALL.len());
        for k in JobKind::ALL {
            assert_eq!(serde_json::to_value(k).unwrap(), k.as_str());
        }
    }
}
