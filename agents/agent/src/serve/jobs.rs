//! Jobs: what a caller may ask the agent to do (`JobSpec`), the record of
//! each job (`Job`), and the journal that keeps them across restarts
//! (`Journal`: one JSON file per job under `<state-dir>/jobs/`, replaced
//! atomically on every change, plus an index of idempotency keys).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// One unit of work, as posted to `POST /v1/jobs`. Only what the agent's own
/// configuration allows: locations are names the agent was started with,
/// restore directories are relative to its restore root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
    },
    /// Apply retention to Postgres backups or Kafka snapshots.
    Retention {
        of: RetentionOf,
        #[serde(default)]
        dry_run: bool,
        /// Keep everything younger than this (e.g. "35d"); the command's default otherwise.
        #[serde(default)]
        keep_within: Option<String>,
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
        #[serde(default)]
        until: Option<String>,
        #[serde(default)]
        group_prefix: Option<String>,
    },
    /// A restore drill into a scratch environment under the restore root.
    Drill(lifeboat_drill::DrillSpec),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RetentionOf {
    Pg,
    Kafka,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub enum PgTarget {
    Latest,
    Time(String),
    Lsn(String),
    Xid(u64),
    Name(String),
}

impl JobSpec {
    /// The job kind, as used in metrics labels and the per-kind lock.
    pub fn kind(&self) -> &'static str {
        match self {
            JobSpec::PgBackup { .. } => "pg-backup",
            JobSpec::KafkaSnapshot {} => "kafka-snapshot",
            JobSpec::Copy { .. } => "copy",
            JobSpec::Verify { .. } => "verify",
            JobSpec::Retention { .. } => "retention",
            JobSpec::PgRestore { .. } => "pg-restore",
            JobSpec::KafkaRestore { .. } => "kafka-restore",
            JobSpec::Drill(_) => "drill",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum State {
    Queued,
    Running,
    Succeeded,
    Failed,
}

impl State {
    pub fn is_final(self) -> bool {
        matches!(self, State::Succeeded | State::Failed)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    pub done_bytes: u64,
    pub total_bytes: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Job {
    pub id: String,
    pub idempotency_key: String,
    pub spec: JobSpec,
    pub state: State,
    #[serde(with = "time::serde::rfc3339")]
    pub created: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option", default)]
    pub started: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option", default)]
    pub finished: Option<OffsetDateTime>,
    /// The child process running the job, while it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<Progress>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// What the command printed with `--output json`, on success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<serde_json::Value>,
    /// Why it failed: the command's last error lines, or the interruption.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Job {
    /// A new job, waiting to run.
    pub fn queued(idempotency_key: &str, spec: JobSpec, now: OffsetDateTime) -> Job {
        Job {
            id: new_id(now),
            idempotency_key: idempotency_key.to_string(),
            spec,
            state: State::Queued,
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

/// A job id: creation time (sorts like it) and 32 random bits.
pub fn new_id(now: OffsetDateTime) -> String {
    let f = time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");
    format!("j-{}-{:08x}", now.format(f).expect("formatting a UTC time"), rand::random::<u32>())
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

/// The jobs of this agent, in memory and on disk.
pub struct Journal {
    dir: PathBuf,
    jobs: BTreeMap<String, Job>,
    by_key: HashMap<String, String>,
}

/// How many finished jobs the journal keeps (older ones are forgotten at start).
const KEEP_FINISHED: usize = 2000;

impl Journal {
    /// Load every job recorded under `state_dir/jobs`.
    pub fn open(state_dir: &Path) -> Result<Journal> {
        let dir = state_dir.join("jobs");
        std::fs::create_dir_all(&dir).with_context(|| format!("creating the job journal {}", dir.display()))?;
        let mut jobs = BTreeMap::new();
        for entry in std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "json") {
                let text = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
                let job: Job = serde_json::from_slice(&text)
                    .with_context(|| format!("{} is not a job record; move it away to start", path.display()))?;
                jobs.insert(job.id.clone(), job);
            }
        }
        let mut journal = Journal { dir, jobs, by_key: HashMap::new() };
        journal.forget_old()?;
        journal.by_key = journal.jobs.values().map(|j| (j.idempotency_key.clone(), j.id.clone())).collect();
        Ok(journal)
    }

    fn forget_old(&mut self) -> Result<()> {
        let finished: Vec<String> = self.jobs.values().filter(|j| j.state.is_final()).map(|j| j.id.clone()).collect();
        for id in finished.iter().take(finished.len().saturating_sub(KEEP_FINISHED)) {
            self.jobs.remove(id);
            for ext in ["json", "log", "progress"] {
                let _ = std::fs::remove_file(self.dir.join(format!("{id}.{ext}")));
            }
        }
        Ok(())
    }

    pub fn get(&self, id: &str) -> Option<&Job> {
        self.jobs.get(id)
    }

    pub fn by_key(&self, key: &str) -> Option<&Job> {
        self.by_key.get(key).and_then(|id| self.jobs.get(id))
    }

    pub fn all(&self) -> impl DoubleEndedIterator<Item = &Job> {
        self.jobs.values()
    }

    /// Record `job` (new or changed) durably: write a temporary file, sync,
    /// rename over the old record.
    pub fn put(&mut self, job: Job) -> Result<()> {
        let path = self.dir.join(format!("{}.json", job.id));
        let tmp = self.dir.join(format!(".{}.json.tmp", job.id));
        let bytes = serde_json::to_vec_pretty(&job).expect("jobs serialise");
        {
            use std::io::Write as _;
            let mut f = std::fs::File::create(&tmp).with_context(|| format!("writing {}", tmp.display()))?;
            f.write_all(&bytes)?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, &path).with_context(|| format!("replacing {}", path.display()))?;
        self.by_key.insert(job.idempotency_key.clone(), job.id.clone());
        self.jobs.insert(job.id.clone(), job);
        Ok(())
    }

    /// Change a recorded job and write it back.
    pub fn update(&mut self, id: &str, change: impl FnOnce(&mut Job)) -> Result<Job> {
        let mut job = self.jobs.get(id).cloned().with_context(|| format!("job {id} is not in the journal"))?;
        change(&mut job);
        self.put(job.clone())?;
        Ok(job)
    }

    pub fn log_path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.log"))
    }

    pub fn progress_path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.progress"))
    }
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
    fn journal_survives_reopen_and_indexes_keys() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::open(dir.path()).unwrap();
        let now = OffsetDateTime::now_utc();
        let job = Job::queued("k1", JobSpec::KafkaSnapshot {}, now);
        j.put(job.clone()).unwrap();
        j.update(&job.id, |j| j.state = State::Running).unwrap();
        let j2 = Journal::open(dir.path()).unwrap();
        assert_eq!(j2.by_key("k1").unwrap().state, State::Running);
        assert!(check_idempotency_key("backup:cell-1/2026-11-27T02:00Z").is_ok());
        assert!(check_idempotency_key("has space").is_err());
        assert!(check_idempotency_key("").is_err());
    }
}
