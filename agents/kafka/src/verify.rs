//! `kafka verify`: restored topics against the snapshot they came from, per partition: record count, content hash, first and last
//! timestamps. The expected side is read (and every chunk verified) from
//! the repository; the actual side is read back from the brokers, from the
//! restore's base offset (from its offset map) or the log start.

use serde::Serialize;

use lifeboat_repository::{format, RepoError, Repository};
use lifeboat_storage::StoreError;

use crate::record::{ContentHash, Record};
use crate::restore::RestoreRequest;
use crate::stored::{self, PartitionReader};
use crate::{KafkaError, Result};

/// Count, content hash and first/last timestamps of a run of records.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Summary {
    pub records: u64,
    pub sha256: String,
    pub first_timestamp: Option<i64>,
    pub last_timestamp: Option<i64>,
}

#[derive(Default)]
struct Summing {
    records: u64,
    hash: ContentHash,
    first: Option<i64>,
    last: Option<i64>,
}

impl Summing {
    fn add(&mut self, r: &Record<'_>) {
        self.records += 1;
        self.hash.add(r);
        self.first.get_or_insert(r.timestamp);
        self.last = Some(r.timestamp);
    }

    fn done(self) -> Summary {
        Summary { records: self.records, sha256: self.hash.hex(), first_timestamp: self.first, last_timestamp: self.last }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct PartitionCheck {
    pub source: String,
    pub target: String,
    pub partition: i32,
    pub from_offset: i64,
    pub expected: Summary,
    pub actual: Summary,
    pub ok: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    pub snapshot: String,
    pub partitions: Vec<PartitionCheck>,
    pub problems: Vec<String>,
}

/// Compare the restored topics `req` names with the snapshot it restores:
/// the expected side read from the repository here, the restored side read
/// back from the brokers on a blocking thread (rdkafka's calls block).
pub async fn verify(repo: &Repository, req: &RestoreRequest) -> Result<VerifyReport> {
    let last = stored::find(repo, &req.cell, req.snapshot.as_deref()).await?;
    let until = req.until.map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64);
    let bases = restore_bases(repo, req, &last).await?;
    let mut expected = Vec::new();
    for t in &last.details.topics {
        for p in &t.partitions {
            expected.push((
                t.name.clone(),
                req.target_topic(&t.name),
                p.partition,
                expected_summary(repo, &last, &t.name, p.partition, until).await?,
            ));
        }
    }
    let brokers = req.brokers.clone();
    let (partitions, problems) = crate::client::blocking(move || compare(&brokers, expected, &bases)).await?;
    Ok(VerifyReport { snapshot: last.manifest.id.clone(), partitions, problems })
}

/// The restore's own base offsets (target topic, partition, base), when
/// this exact restore ran (its offset map is in the repository).
async fn restore_bases(repo: &Repository, req: &RestoreRequest, last: &stored::Snapshot) -> Result<Vec<(String, i32, i64)>> {
    let mapping = last.details.topics.iter().map(|t| (t.name.clone(), req.target_topic(&t.name))).collect();
    let key = crate::restore::restore_key_for(&last.manifest.id, &req.until, &mapping);
    let map_path = format::path(&format!("kafka/{}/restores/{key}/offset-map", req.cell));
    match repo.read_object(&map_path).await {
        Ok(bytes) => {
            let done: crate::restore::RestoreReport =
                serde_json::from_slice(&bytes).map_err(|e| KafkaError::Failed(format!("{map_path}: {e}")))?;
            Ok(done.topics.iter().flat_map(|t| t.partitions.iter().map(|p| (t.target.clone(), p.partition, p.base))).collect())
        }
        Err(RepoError::Store(StoreError::NotFound { .. })) => Ok(Vec::new()),
        Err(e) => Err(e.into()),
    }
}

/// What the snapshot holds of one partition, up to `until` (milliseconds).
async fn expected_summary(repo: &Repository, last: &stored::Snapshot, topic: &str, partition: i32, until: Option<i64>) -> Result<Summary> {
    let mut expected = Summing::default();
    let mut reader = PartitionReader::new(repo, last, topic, partition);
    while let Some(r) = reader.next().await? {
        if until.is_some_and(|u| r.timestamp > u) {
            break;
        }
        expected.add(&r);
    }
    Ok(expected.done())
}

/// Read every restored partition back and compare it with what was expected
/// of it ((source topic, target topic, partition, summary)).
fn compare(
    brokers: &crate::client::Brokers,
    expected: Vec<(String, String, i32, Summary)>,
    bases: &[(String, i32, i64)],
) -> Result<(Vec<PartitionCheck>, Vec<String>)> {
    let consumer = brokers.reader()?;
    let metadata = brokers.metadata(&consumer)?;
    let (mut partitions, mut problems) = (Vec::new(), Vec::new());
    for (source, target, partition, expected) in expected {
        if !metadata.topics().iter().any(|m| m.name() == target && m.error().is_none()) {
            let missing = format!("topic {target} (restored from {source}) does not exist");
            if !problems.contains(&missing) {
                problems.push(missing);
            }
            continue;
        }
        let (low, high) = brokers.watermarks(&consumer, &target, partition)?;
        let from = bases.iter().find(|(n, q, _)| n == &target && *q == partition).map(|b| b.2).unwrap_or(low);
        let actual = read_back(brokers, &consumer, &target, partition, from, high)?;
        let ok = actual == expected;
        if !ok {
            problems.push(format!(
                "{target}/{partition}: {} records (sha256 {}) where the snapshot has {} (sha256 {})",
                actual.records,
                &actual.sha256[..16],
                expected.records,
                &expected.sha256[..16]
            ));
        }
        partitions.push(PartitionCheck { source, target, partition, from_offset: from, expected, actual, ok });
    }
    Ok((partitions, problems))
}

fn read_back(
    brokers: &crate::client::Brokers,
    consumer: &rdkafka::consumer::BaseConsumer,
    topic: &str,
    partition: i32,
    from: i64,
    end: i64,
) -> Result<Summary> {
    let mut sum = Summing::default();
    brokers.read_range(consumer, (topic, partition), (from, end), "rerun the verification", |r| {
        sum.add(&r);
        Ok(())
    })?;
    Ok(sum.done())
}
