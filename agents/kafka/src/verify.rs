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

/// Compare the restored topics `req` names with the snapshot it restores.
pub async fn verify(repo: &Repository, req: &RestoreRequest) -> Result<VerifyReport> {
    let last = stored::find(repo, &req.cell, req.snapshot.as_deref()).await?;
    let until = req.until.map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64);
    // The restore's own base offsets, when this exact restore ran.
    let mapping = last.details.topics.iter().map(|t| (t.name.clone(), req.target_topic(&t.name))).collect();
    let key = crate::restore::restore_key_for(&last.manifest.id, &req.until, &mapping);
    let map_path = format::path(&format!("kafka/{}/restores/{key}/offset-map", req.cell));
    let bases: Vec<(String, i32, i64)> = match repo.read_object(&map_path).await {
        Ok(bytes) => {
            let done: crate::restore::RestoreReport =
                serde_json::from_slice(&bytes).map_err(|e| KafkaError::Failed(format!("{map_path}: {e}")))?;
            done.topics.iter().flat_map(|t| t.partitions.iter().map(|p| (t.target.clone(), p.partition, p.base))).collect()
        }
        Err(RepoError::Store(StoreError::NotFound { .. })) => Vec::new(),
        Err(e) => return Err(e.into()),
    };

    let consumer = req.brokers.reader()?;
    let metadata = req.brokers.metadata(&consumer)?;
    let mut report = VerifyReport { snapshot: last.manifest.id.clone(), partitions: Vec::new(), problems: Vec::new() };
    for t in &last.details.topics {
        let target = req.target_topic(&t.name);
        if !metadata.topics().iter().any(|m| m.name() == target && m.error().is_none()) {
            report.problems.push(format!("topic {target} (restored from {}) does not exist", t.name));
            continue;
        }
        for p in &t.partitions {
            let mut expected = Summing::default();
            let mut reader = PartitionReader::new(repo, &last, &t.name, p.partition);
            while let Some(r) = reader.next().await? {
                if until.is_some_and(|u| r.timestamp > u) {
                    break;
                }
                expected.add(&r);
            }
            let expected = expected.done();
            let (low, high) = req.brokers.watermarks(&consumer, &target, p.partition)?;
            let from = bases.iter().find(|(n, q, _)| n == &target && *q == p.partition).map(|b| b.2).unwrap_or(low);
            let actual = read_back(&req.brokers, &consumer, &target, p.partition, from, high)?;
            let ok = actual == expected;
            if !ok {
                report.problems.push(format!(
                    "{target}/{}: {} records (sha256 {}) where the snapshot has {} (sha256 {})",
                    p.partition,
                    actual.records,
                    &actual.sha256[..16],
                    expected.records,
                    &expected.sha256[..16]
                ));
            }
            report.partitions.push(PartitionCheck {
                source: t.name.clone(),
                target: target.clone(),
                partition: p.partition,
                from_offset: from,
                expected,
                actual,
                ok,
            });
        }
    }
    Ok(report)
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
