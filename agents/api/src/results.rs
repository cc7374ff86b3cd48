//! What a finished job reports: one type per job kind, gathered in
//! [`JobResult`]. The agent's CLI commands that jobs run print exactly
//! these types under `--output json` (some with extra detail for people
//! and scripts), so the command line and the API cannot drift apart.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::drill::DrillOutcome;
use crate::jobs::{JobKind, PgTarget};
use crate::schema::Timestamp;

/// A job's result, named by `job_kind` (the kind of the job's spec).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "job_kind", rename_all = "kebab-case")]
pub enum JobResult {
    PgBackup(BackupDone),
    KafkaSnapshot(SnapshotDone),
    Copy(CopyReport),
    Verify(VerifyReport),
    Retention(RetentionReport),
    PgRestore(PgRestoreReport),
    KafkaRestore(KafkaRestoreReport),
    Drill(Box<DrillOutcome>),
    Fence(FenceDone),
    Standby(Box<crate::standby::StandbyStatus>),
    Reprotect(Box<crate::reprotect::Reprotected>),
    Rebuild(Box<crate::failback::Rebuilt>),
    Handback(crate::failback::HandedBack),
    HomePromote(crate::failback::HomePromoted),
    Crash(crate::failback::Crashed),
}

impl JobResult {
    pub fn kind(&self) -> JobKind {
        match self {
            JobResult::PgBackup(_) => JobKind::PgBackup,
            JobResult::KafkaSnapshot(_) => JobKind::KafkaSnapshot,
            JobResult::Copy(_) => JobKind::Copy,
            JobResult::Verify(_) => JobKind::Verify,
            JobResult::Retention(_) => JobKind::Retention,
            JobResult::PgRestore(_) => JobKind::PgRestore,
            JobResult::KafkaRestore(_) => JobKind::KafkaRestore,
            JobResult::Drill(_) => JobKind::Drill,
            JobResult::Fence(_) => JobKind::Fence,
            JobResult::Standby(_) => JobKind::Standby,
            JobResult::Reprotect(_) => JobKind::Reprotect,
            JobResult::Rebuild(_) => JobKind::Rebuild,
            JobResult::Handback(_) => JobKind::Handback,
            JobResult::HomePromote(_) => JobKind::HomePromote,
            JobResult::Crash(_) => JobKind::Crash,
        }
    }

    /// A job command's `--output json` as the result of a job of `kind`.
    pub fn from_output(kind: JobKind, json: &[u8]) -> Result<JobResult, serde_json::Error> {
        Ok(match kind {
            JobKind::PgBackup => JobResult::PgBackup(serde_json::from_slice(json)?),
            JobKind::KafkaSnapshot => JobResult::KafkaSnapshot(serde_json::from_slice(json)?),
            JobKind::Copy => JobResult::Copy(serde_json::from_slice(json)?),
            JobKind::Verify => JobResult::Verify(serde_json::from_slice(json)?),
            JobKind::Retention => JobResult::Retention(serde_json::from_slice(json)?),
            JobKind::PgRestore => JobResult::PgRestore(serde_json::from_slice(json)?),
            JobKind::KafkaRestore => JobResult::KafkaRestore(serde_json::from_slice(json)?),
            JobKind::Drill => JobResult::Drill(Box::new(serde_json::from_slice(json)?)),
            JobKind::Fence => JobResult::Fence(serde_json::from_slice(json)?),
            JobKind::Standby => JobResult::Standby(serde_json::from_slice(json)?),
            JobKind::Reprotect => JobResult::Reprotect(serde_json::from_slice(json)?),
            JobKind::Rebuild => JobResult::Rebuild(serde_json::from_slice(json)?),
            JobKind::Handback => JobResult::Handback(serde_json::from_slice(json)?),
            JobKind::HomePromote => JobResult::HomePromote(serde_json::from_slice(json)?),
            JobKind::Crash => JobResult::Crash(serde_json::from_slice(json)?),
        })
    }
}

/// What `fence raise` did, per location.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct FenceDone {
    pub cell: String,
    pub epoch: u64,
    /// Postgres writers on an older timeline are refused.
    pub postgres_timeline: Option<u32>,
    pub reason: String,
    pub dry_run: bool,
    pub locations: Vec<FencedLocation>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct FencedLocation {
    pub location: String,
    /// `raised`, or `already-raised` (a rerun: nothing changed); none when it failed.
    pub outcome: Option<String>,
    pub error: Option<String>,
}

/// The kind of a Postgres base backup, as its manifest records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum PgBackupKind {
    #[serde(rename = "pg-full")]
    Full,
    /// Reuses unchanged files of its parent unread; restores standalone.
    #[serde(rename = "pg-incr")]
    Incremental,
}

/// `pg-backup`: a committed base backup.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct BackupDone {
    pub backup_id: String,
    pub kind: PgBackupKind,
    /// The backup an incremental reused files from.
    pub parent: Option<String>,
    pub start_lsn: String,
    pub stop_lsn: String,
    pub timeline: u32,
    pub totals: BackupTotals,
    pub seconds: f64,
}

/// What a backup read and stored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct BackupTotals {
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    /// Content bytes (sum of file sizes).
    pub bytes: u64,
    pub chunks: u64,
    /// Chunks this backup uploaded (the rest already existed).
    pub new_chunks: u64,
    /// Stored (compressed, encrypted) bytes this backup uploaded.
    pub new_stored_bytes: u64,
    /// Entries skipped (sockets, devices, fifos).
    #[serde(default)]
    pub skipped: u64,
    /// Files reused unread from the parent backup (incrementals).
    #[serde(default)]
    pub reused_files: u64,
}

/// `kafka-snapshot`: a committed snapshot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SnapshotDone {
    pub snapshot_id: String,
    /// `kafka-full` or `kafka-incr` (continues `parent`).
    pub kind: String,
    pub parent: Option<String>,
    pub records: u64,
    pub stored_bytes: u64,
    pub seconds: f64,
    /// Records lost to the topic's retention before any snapshot read them.
    #[serde(default)]
    pub gaps: Vec<RecordGap>,
}

/// Offsets `from .. to` (exclusive) of a partition that no snapshot holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RecordGap {
    pub topic: String,
    pub partition: i32,
    pub from: i64,
    pub to: i64,
}

/// `copy`: one geo-copy pass.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CopyReport {
    pub source: String,
    pub destination: String,
    pub objects_copied: u64,
    pub bytes_copied: u64,
    pub objects_already_present: u64,
    pub manifests_copied: u64,
    /// Destination objects found damaged (lost writes of an interrupted copy) and copied again.
    #[serde(default)]
    pub repaired: u64,
    /// Same-size destination objects read and checked because no content
    /// hash or earlier check vouched for them.
    #[serde(default)]
    pub checked_at_destination: u64,
    /// Objects that could not be copied (corrupt at the source, or failed).
    pub failures: Vec<String>,
}

/// `verify`: every object of a repository read and checked.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct VerifyReport {
    pub location: String,
    pub manifests: u64,
    pub chunks_checked: u64,
    /// Sealed objects outside chunks and manifests (WAL, ...).
    pub other_objects_checked: u64,
    pub bytes_checked: u64,
    /// Chunks no manifest references (left by interrupted runs; retention sweeps them).
    pub unreferenced_chunks: u64,
    /// Temporary files of interrupted writes (`file://`) that retention removes.
    #[serde(default)]
    pub leftover_temporaries: u64,
    pub problems: Vec<VerifyProblem>,
    /// A sampled pass: only the newest this many objects were read (every
    /// manifest's references were still checked against the listing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sampled: Option<u64>,
    /// The other locations verified in the same pass (the copies).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub also: Vec<VerifyReport>,
}

impl VerifyReport {
    /// No problem here nor in any location verified with it.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty() && self.also.iter().all(VerifyReport::is_ok)
    }

    /// This location's report, then each other one's.
    pub fn each(&self) -> impl Iterator<Item = &VerifyReport> {
        std::iter::once(self).chain(&self.also)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct VerifyProblem {
    pub kind: ProblemKind,
    pub object: String,
    pub detail: String,
    /// Backups (cell/id) that cannot be restored because of it.
    pub breaks: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ProblemKind {
    Missing,
    Corrupt,
}

impl ProblemKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ProblemKind::Missing => "missing",
            ProblemKind::Corrupt => "corrupt",
        }
    }
}

/// What a retention policy keeps and deletes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RetentionPlan {
    pub keep: Vec<RetentionDecision>,
    pub delete: Vec<RetentionDecision>,
    pub delete_chunks: Vec<String>,
    /// Temporary files of interrupted writes (`file://` only), relative to the repository.
    #[serde(default)]
    pub delete_temporaries: Vec<String>,
    pub freed_bytes: u64,
    /// Backups the policy let go but the store kept: under S3 Object Lock
    /// until their retain-until date (reported, never counted as deleted).
    #[serde(default)]
    pub retained: Vec<RetentionDecision>,
    /// Other objects (chunks, WAL) the store refused to delete for the same reason.
    #[serde(default)]
    pub retained_objects: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RetentionDecision {
    pub cell: String,
    pub id: String,
    pub kind: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schemars(with = "Timestamp")]
    pub finished: OffsetDateTime,
    /// Why it is kept, or why it goes.
    pub reason: String,
}

/// `retention`: the plan carried out (or only shown, for a dry run), and
/// for Postgres the WAL no retained backup needs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RetentionReport {
    #[serde(flatten)]
    pub backups: RetentionPlan,
    /// Postgres: the oldest WAL file kept (the start of the oldest retained backup).
    #[serde(default)]
    pub keep_wal_from: Option<String>,
    /// Postgres: WAL files deleted.
    #[serde(default)]
    pub delete_wal: Vec<String>,
}

/// `pg-restore`: a data directory ready to start (or started).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PgRestoreReport {
    pub backup_id: String,
    pub backup_stop_lsn: String,
    /// When the base backup began: the database holds nothing committed
    /// after it unless the restore replayed a transaction (a point for
    /// Kafka's cut when `reached` names none; absent from older reports).
    #[serde(default, with = "time::serde::rfc3339::option", skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<Timestamp>")]
    pub backup_started: Option<OffsetDateTime>,
    pub target: PgTarget,
    pub data_directory: String,
    /// Latest archived WAL segment the restore can replay to.
    pub latest_archived_wal: String,
    /// Files written, and (delta restores) files kept because they matched.
    pub files_written: u64,
    pub files_reused: u64,
    pub bytes_reused: u64,
    /// The point reached, when the restore started the server.
    pub reached: Option<PgReached>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PgReached {
    pub lsn: String,
    /// As Postgres reports it (e.g. `2026-11-27 10:15:00.123456+00`).
    pub last_transaction_time: Option<String>,
    pub timeline: u32,
    pub seconds_to_promote: f64,
}

/// `kafka-restore`: topics restored from a snapshot, with the offset map.
/// The same document is the offset map stored in the repository
/// (`kafka/<cell>/restores/<key>/offset-map`): change it only compatibly.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct KafkaRestoreReport {
    pub snapshot: String,
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[schemars(with = "Option<Timestamp>")]
    pub until: Option<OffsetDateTime>,
    pub restore_key: String,
    /// It continued an interrupted run of the same restore.
    pub resumed: bool,
    pub topics: Vec<TopicRestored>,
    pub groups: Vec<GroupRestored>,
    /// The repository object holding the source-to-target offset map.
    pub offset_map: String,
    pub records_produced: u64,
    pub seconds: f64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TopicRestored {
    pub source: String,
    pub target: String,
    pub created: bool,
    pub partitions: Vec<PartitionRestored>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PartitionRestored {
    pub partition: i32,
    /// The target partition's end offset when this restore first started.
    pub base: i64,
    pub records: u64,
    /// Records a previous, interrupted run of this restore had already produced.
    pub already_present: u64,
    pub produced: u64,
    /// `[source offset, target offset, count]` runs of consecutive offsets.
    pub runs: Vec<[i64; 3]>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct GroupRestored {
    pub source_group: String,
    pub target_group: String,
    pub offsets: Vec<OffsetTranslation>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct OffsetTranslation {
    pub topic: String,
    pub partition: i32,
    pub source_offset: i64,
    pub target_offset: i64,
}
