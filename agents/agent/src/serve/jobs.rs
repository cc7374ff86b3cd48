//! The journal that keeps the agent's jobs across restarts: one JSON file
//! per job (the wire type `lifeboat_api::Job`) under `<state-dir>/jobs/`,
//! replaced atomically on every change, plus an index of idempotency keys.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use time::OffsetDateTime;

pub use lifeboat_api::jobs::{check_idempotency_key, Job, JobKind, JobSpec, JobState as State, Progress};

/// A job id: creation time (sorts like it) and 32 random bits.
pub fn new_id(now: OffsetDateTime) -> String {
    let f = time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");
    format!("j-{}-{:08x}", now.format(f).expect("formatting a UTC time"), rand::random::<u32>())
}

/// A new job, waiting to run.
pub fn queued(key: &str, spec: JobSpec, now: OffsetDateTime) -> Job {
    Job::queued(new_id(now), key, spec, now)
}

/// A recorded job. A result in an older shape (before results named their
/// `job_kind`) is dropped with a warning rather than stopping the agent:
/// the job's state and error still tell what happened.
fn read_record(bytes: &[u8]) -> Result<Job> {
    let error = match serde_json::from_slice(bytes) {
        Ok(job) => return Ok(job),
        Err(e) => e,
    };
    let mut record: serde_json::Value = serde_json::from_slice(bytes)?;
    let old_result = record.as_object_mut().and_then(|r| r.remove("result"));
    match serde_json::from_value::<Job>(record) {
        Ok(job) if old_result.is_some() => {
            tracing::warn!(job = %job.id, "the job's recorded result has an older shape; it is no longer shown ({error})");
            Ok(job)
        }
        _ => Err(error.into()),
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
                let job = read_record(&text).with_context(|| format!("{} is not a job record; move it away to start", path.display()))?;
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
        let bytes = serde_json::to_vec_pretty(&job).expect("jobs serialise");
        lifeboat_process::write_durably(&path, &bytes).with_context(|| format!("writing {}", path.display()))?;
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
    fn journal_survives_reopen_and_indexes_keys() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::open(dir.path()).unwrap();
        let now = OffsetDateTime::now_utc();
        let job = queued("k1", JobSpec::KafkaSnapshot {}, now);
        j.put(job.clone()).unwrap();
        j.update(&job.id, |j| j.state = State::Running).unwrap();
        let j2 = Journal::open(dir.path()).unwrap();
        assert_eq!(j2.by_key("k1").unwrap().state, State::Running);
        assert!(check_idempotency_key("backup:cell-1/2026-11-27T02:00Z").is_ok());
        assert!(check_idempotency_key("has space").is_err());
        assert!(check_idempotency_key("").is_err());
    }

    #[test]
    fn a_result_in_an_older_shape_is_dropped_not_fatal() {
        let old = r#"{"id":"j-1","idempotency_key":"k","spec":{"kind":"pg-backup"},"state":"succeeded",
            "created":"2026-11-27T02:00:00Z","result":{"backup_id":"b","kind":"pg-full"}}"#;
        let job = read_record(old.as_bytes()).unwrap();
        assert_eq!((job.state, job.result), (State::Succeeded, None));
        let broken = r#"{"id":"j-1","spec":{"kind":"pg-backup"}}"#;
        assert!(read_record(broken.as_bytes()).is_err());
    }
}
