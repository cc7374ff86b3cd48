//! `kafka restore`: a snapshot back into topics, each record to its
//! original partition in its original order with its key, headers and
//! timestamp, through an idempotent producer; optionally only up to a point
//! in time; then every consumer group's offsets translated and committed.
//!
//! Resumable without duplicates: before producing, the restore records in
//! the repository a journal with each target partition's end offset (its
//! base). A rerun of the same restore finds the journal, counts the records
//! already in each target partition past its base, checks the last of them
//! is the record it expects, and continues after it. This assumes nothing
//! else writes to the target topics during a restore (documented).
//!
//! The offset map (source offset -> restored offset, as runs) is written to
//! the repository under `kafka/<cell>/restores/<restore key>/offset-map`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use futures::{StreamExt, TryStreamExt};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer as _, ProducerContext, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use lifeboat_repository::{format, RepoError, Repository};
use lifeboat_storage::{PutMode, StoreError};

use crate::client::Brokers;
use crate::details::TopicSnapshot;
use crate::record::{ContentHash, Record, TS_NONE};
use crate::stored::{self, PartitionReader, Snapshot};
use crate::{broker, KafkaError, Result};

#[derive(Debug, Clone)]
pub struct RestoreRequest {
    pub cell: String,
    pub brokers: Brokers,
    /// `None`: the newest snapshot.
    pub snapshot: Option<String>,
    /// Restore, per partition, the records up to the first one stamped after this.
    pub until: Option<OffsetDateTime>,
    /// Explicit renames, `from -> to`; they win over the prefix.
    pub topic_map: Vec<(String, String)>,
    pub topic_prefix: String,
    /// Prefix for restored consumer groups (default: the topic prefix), so a
    /// scratch restore never moves a production group.
    pub group_prefix: Option<String>,
    /// An `until` before the snapshot's first record restores the topics
    /// with no record (a failover's cut: the cell's topics must exist)
    /// instead of being refused.
    pub empty_ok: bool,
}

pub use lifeboat_api::results::{
    GroupRestored as GroupReport, KafkaRestoreReport as RestoreReport, OffsetTranslation as GroupTranslation,
    PartitionRestored as PartitionReport, TopicRestored as TopicReport,
};

/// Written before the first record is produced; found again by a rerun.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Journal {
    snapshot: String,
    until: Option<String>,
    mapping: BTreeMap<String, String>,
    /// `topic/partition` (target) -> base offset.
    bases: BTreeMap<String, i64>,
}

impl RestoreRequest {
    pub fn target_topic(&self, source: &str) -> String {
        self.topic_map
            .iter()
            .find(|(from, _)| from == source)
            .map(|(_, to)| to.clone())
            .unwrap_or_else(|| format!("{}{source}", self.topic_prefix))
    }

    fn group_name(&self, source: &str) -> String {
        format!("{}{source}", self.group_prefix.as_deref().unwrap_or(&self.topic_prefix))
    }
}

fn until_ms(t: &Option<OffsetDateTime>) -> Option<i64> {
    t.map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
}

pub async fn restore(repo: &Repository, req: &RestoreRequest) -> Result<RestoreReport> {
    let started = Instant::now();
    format::validate_cell(&req.cell)?;
    let last = stored::find(repo, &req.cell, req.snapshot.as_deref()).await?;
    let until = until_ms(&req.until);
    check_request(repo, req, &last, until).await?;
    let topics = last.details.topics.clone();
    let mapping: BTreeMap<String, String> = topics.iter().map(|t| (t.name.clone(), req.target_topic(&t.name))).collect();
    // One client answers every metadata and watermark query of the restore.
    let querier = Arc::new(req.brokers.querier()?);
    let created = prepare_topics(&req.brokers, &querier, &topics, &mapping).await?;
    tracing::debug!(seconds = started.elapsed().as_secs_f64(), "topics ready");
    let key = restore_key_for(&last.manifest.id, &req.until, &mapping);
    let (journal, resumed) = open_journal(repo, req, &last, &key, until, &mapping, &querier).await?;
    let done = produce(repo, req, &last, &journal, &key, until, &querier).await?;
    tracing::debug!(seconds = started.elapsed().as_secs_f64(), "records produced and flushed");
    let (reports, produced) = {
        let (brokers, querier, mapping, topics) = (req.brokers.clone(), querier.clone(), mapping.clone(), topics.clone());
        crate::client::blocking(move || check_ends(&brokers, &querier, &topics, &mapping, &created, done)).await?
    };
    let groups = translate_groups(req, &last, &reports)?;
    let report = RestoreReport {
        snapshot: last.manifest.id.clone(),
        until: until.and_then(|ms| OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok()),
        restore_key: key.clone(),
        resumed,
        offset_map: format!("kafka/{}/restores/{key}/offset-map", req.cell),
        topics: reports,
        groups,
        records_produced: produced,
        seconds: started.elapsed().as_secs_f64(),
    };
    let map_path = format::path(&report.offset_map);
    let bytes = serde_json::to_vec_pretty(&report).expect("report serialises");
    repo.put_sealed(&map_path, &bytes, PutMode::Overwrite).await?;
    Ok(report)
}

/// Refuse a restore that names a topic the snapshot lacks, or that stops
/// before the snapshot's first record (it would restore nothing) unless
/// it may restore nothing.
async fn check_request(repo: &Repository, req: &RestoreRequest, last: &stored::Snapshot, until: Option<i64>) -> Result<()> {
    let topics = &last.details.topics;
    for (from, _) in &req.topic_map {
        if !topics.iter().any(|t| &t.name == from) {
            return Err(KafkaError::Invalid(format!(
                "--topic-map {from}=...: snapshot {} has no topic {from}; it has {}",
                last.manifest.id,
                topics.iter().map(|t| t.name.as_str()).collect::<Vec<_>>().join(", ")
            )));
        }
    }
    let Some(u) = until.filter(|_| !req.empty_ok) else { return Ok(()) };
    match first_timestamp(repo, last).await?.filter(|e| u < *e) {
        Some(earliest) => Err(KafkaError::Invalid(format!(
            "--until {} is before the first record of snapshot {} (at {}); nothing would be restored; choose a later time or an older snapshot",
            fmt_ms(u),
            last.manifest.id,
            fmt_ms(earliest)
        ))),
        None => Ok(()),
    }
}

/// The restore's journal: found (a rerun), or written with every target
/// partition's base offset before anything is produced.
async fn open_journal(
    repo: &Repository,
    req: &RestoreRequest,
    last: &stored::Snapshot,
    key: &str,
    until: Option<i64>,
    mapping: &BTreeMap<String, String>,
    querier: &Arc<BaseConsumer>,
) -> Result<(Journal, bool)> {
    let journal_path = format::path(&format!("kafka/{}/restores/{key}/journal", req.cell));
    match repo.read_object(&journal_path).await {
        Ok(bytes) => return Ok((serde_json::from_slice(&bytes).map_err(|e| KafkaError::Failed(format!("{journal_path}: {e}")))?, true)),
        Err(RepoError::Store(StoreError::NotFound { .. })) => {}
        Err(e) => return Err(e.into()),
    }
    let bases = {
        let partitions: Vec<(String, i32)> =
            last.details.topics.iter().flat_map(|t| t.partitions.iter().map(|p| (mapping[&t.name].clone(), p.partition))).collect();
        let (brokers, querier) = (req.brokers.clone(), querier.clone());
        crate::client::blocking(move || -> Result<BTreeMap<String, i64>> {
            partitions
                .into_iter()
                .map(|(target, p)| Ok((format!("{target}/{p}"), wait_for_partition(&brokers, &querier, &target, p)?.1)))
                .collect()
        })
        .await?
    };
    let journal = Journal { snapshot: last.manifest.id.clone(), until: until.map(fmt_ms), mapping: mapping.clone(), bases };
    let bytes = serde_json::to_vec_pretty(&journal).expect("journal serialises");
    match repo.put_sealed(&journal_path, &bytes, PutMode::Create).await {
        Ok(()) => Ok((journal, false)),
        Err(RepoError::Store(StoreError::AlreadyExists { .. })) => {
            Err(KafkaError::Failed("another run of this restore started at the same moment; let it finish".into()))
        }
        Err(e) => Err(e.into()),
    }
}

/// One idempotent producer; partitions restored concurrently (order
/// matters only within a partition), then one flush. Returns each target
/// partition's report, by target topic.
async fn produce(
    repo: &Repository,
    req: &RestoreRequest,
    last: &stored::Snapshot,
    journal: &Journal,
    key: &str,
    until: Option<i64>,
    querier: &Arc<BaseConsumer>,
) -> Result<Vec<(String, PartitionReport)>> {
    let brokers = &req.brokers;
    let producer: Arc<Producer> = Arc::new(
        brokers
            .producer_config()
            .create_with_context(Deliveries { first_error: Mutex::new(None) })
            .map_err(broker("creating an idempotent producer"))?,
    );
    let mut jobs = Vec::new();
    for t in &last.details.topics {
        let target = &journal.mapping[&t.name];
        for p in &t.partitions {
            let base = *journal
                .bases
                .get(&format!("{target}/{}", p.partition))
                .ok_or_else(|| KafkaError::Failed(format!("the journal of restore {key} has no base for {target}/{}", p.partition)))?;
            jobs.push(PartitionJob {
                repo: repo.clone(),
                snapshot: last.clone(),
                brokers: brokers.clone(),
                producer: producer.clone(),
                querier: querier.clone(),
                source: t.name.clone(),
                target: target.clone(),
                partition: p.partition,
                base,
                until,
            });
        }
    }
    let done: Vec<(String, PartitionReport)> = futures::stream::iter(jobs)
        .map(|job| async move {
            let target = job.target.clone();
            let report = crate::client::blocking(move || job.run()).await?;
            Ok::<_, KafkaError>((target, report))
        })
        .buffer_unordered(PARALLEL_PARTITIONS)
        .try_collect()
        .await?;
    let flushed = {
        let (producer, timeout) = (producer.clone(), brokers.timeout);
        crate::client::blocking(move || producer.flush(timeout)).await
    };
    flushed.map_err(broker("flushing the restored records"))?;
    if let Some(e) = producer.context().first_error.lock().unwrap().take() {
        return Err(KafkaError::Failed(e));
    }
    Ok(done)
}

/// Every target partition must end exactly where this restore's records
/// end (otherwise something else writes to it). Returns the per-topic
/// reports and how many records this run produced.
fn check_ends(
    brokers: &Brokers,
    querier: &BaseConsumer,
    topics: &[crate::details::TopicSnapshot],
    mapping: &BTreeMap<String, String>,
    created: &[String],
    done: Vec<(String, PartitionReport)>,
) -> Result<(Vec<TopicReport>, u64)> {
    let mut reports = Vec::new();
    let mut produced = 0;
    for t in topics {
        let target = mapping[&t.name].clone();
        let mut partitions: Vec<PartitionReport> = done.iter().filter(|(n, _)| n == &target).map(|(_, r)| r.clone()).collect();
        partitions.sort_by_key(|p| p.partition);
        for p in &partitions {
            let (_, end) = brokers.watermarks(querier, &target, p.partition)?;
            if end != p.base + p.records as i64 {
                return Err(KafkaError::Failed(format!(
                    "{target}/{} ends at {end} but the restore wrote up to {}: something else writes to the target topic",
                    p.partition,
                    p.base + p.records as i64
                )));
            }
            produced += p.produced;
        }
        reports.push(TopicReport { source: t.name.clone(), created: created.contains(&target), target, partitions });
    }
    Ok((reports, produced))
}

/// The earliest timestamp a restore of `snapshot` would produce: the first
/// record of each partition (older segments hold records older than any
/// this snapshot read itself).
async fn first_timestamp(repo: &Repository, snapshot: &Snapshot) -> Result<Option<i64>> {
    let mut earliest: Option<i64> = None;
    for t in &snapshot.details.topics {
        for p in &t.partitions {
            if let Some(r) = PartitionReader::new(repo, snapshot, &t.name, p.partition).next().await? {
                earliest = Some(earliest.map_or(r.timestamp, |e| e.min(r.timestamp)));
            }
        }
    }
    Ok(earliest)
}

/// The key of a restore: the same snapshot, cut-off and mapping give the same key.
pub fn restore_key_for(snapshot: &str, until: &Option<OffsetDateTime>, mapping: &BTreeMap<String, String>) -> String {
    let mut h = Sha256::new();
    h.update(snapshot.as_bytes());
    h.update(format!("{:?}", until_ms(until)).as_bytes());
    for (from, to) in mapping {
        h.update(format!("\n{from}={to}").as_bytes());
    }
    hex::encode(h.finalize())[..16].to_string()
}

pub(crate) fn fmt_ms(ms: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_else(|| format!("{ms} ms"))
}

/// Create missing target topics with the saved partition count and topic
/// configs; refuse existing ones whose partition count differs. Returns
/// the topics created.
async fn prepare_topics(
    brokers: &Brokers,
    querier: &BaseConsumer,
    topics: &[TopicSnapshot],
    mapping: &BTreeMap<String, String>,
) -> Result<Vec<String>> {
    let metadata = brokers.metadata(querier)?;
    let broker_count = metadata.brokers().len().max(1) as i32;
    let mut to_create = Vec::new();
    for t in topics {
        let target = &mapping[&t.name];
        let want = t.partitions.len();
        match metadata.topics().iter().find(|m| m.name() == target && m.error().is_none()) {
            Some(existing) if existing.partitions().len() != want => {
                return Err(KafkaError::Invalid(format!(
                    "topic {target} exists with {} partitions but the snapshot of {} has {want}; records keep their partitions, so restore into another topic (--topic-map {}={target}-restored or --topic-prefix)",
                    existing.partitions().len(),
                    t.name,
                    t.name
                )));
            }
            Some(_) => {}
            None => to_create.push(t),
        }
    }
    if to_create.is_empty() {
        return Ok(Vec::new());
    }
    let mut configs: Vec<Vec<(String, String)>> = Vec::new();
    for t in &to_create {
        let mut set = Vec::new();
        for (name, c) in &t.configs {
            let Some(value) = &c.value else { continue };
            if !c.topic_override || c.read_only || c.sensitive {
                continue;
            }
            if name == "message.timestamp.type" && value == "LogAppendTime" {
                tracing::warn!(topic = %t.name, "the source topic stamps records on append; the restored topic keeps the original timestamps (CreateTime)");
                continue;
            }
            set.push((name.clone(), value.clone()));
        }
        configs.push(set);
    }
    let new_topics: Vec<NewTopic<'_>> = to_create
        .iter()
        .zip(&configs)
        .map(|(t, set)| {
            let rf = t.replication_factor.clamp(1, broker_count);
            let mut nt = NewTopic::new(&mapping[&t.name], t.partitions.len() as i32, TopicReplication::Fixed(rf));
            for (k, v) in set {
                nt = nt.set(k, v);
            }
            nt
        })
        .collect();
    let admin = brokers.admin()?;
    let results = admin
        .create_topics(new_topics.iter(), &AdminOptions::new().operation_timeout(Some(brokers.timeout)))
        .await
        .map_err(broker("creating topics"))?;
    let mut created = Vec::new();
    for r in results {
        match r {
            Ok(name) => created.push(name),
            Err((name, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists)) => tracing::info!(topic = %name, "created meanwhile"),
            Err((name, code)) => return Err(KafkaError::Failed(format!("the brokers refused to create topic {name}: {code:?}"))),
        }
    }
    Ok(created)
}

/// The watermarks of a partition, waiting for a new topic to appear.
fn wait_for_partition(brokers: &Brokers, querier: &BaseConsumer, topic: &str, partition: i32) -> Result<(i64, i64)> {
    let deadline = Instant::now() + brokers.timeout;
    loop {
        match brokers.watermarks(querier, topic, partition) {
            Ok(w) => return Ok(w),
            Err(e) if Instant::now() > deadline => return Err(e),
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

/// Delivery reports: every record must land at exactly the offset expected.
struct Deliveries {
    first_error: Mutex<Option<String>>,
}

type Producer = ThreadedProducer<Deliveries>;

/// Partitions restored at once. Two keep a restore under 150 MiB; four
/// were no faster at 1 or 2 GiB (librdkafka's one broker thread, lz4 and
/// requests, is the bottleneck) and peaked at 176 to 200 MiB.
const PARALLEL_PARTITIONS: usize = 2;

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    /// The offset the record must get (offsets are never negative).
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, expected: usize) {
        let problem = match result {
            Ok(m) if m.offset() as usize == expected => None,
            Ok(m) => Some(format!(
                "a record landed at offset {} of {}/{} instead of {}: something else writes to the target topic",
                m.offset(),
                m.topic(),
                m.partition(),
                expected
            )),
            Err((e, m)) => Some(format!("producing to {}/{}: {e}", m.topic(), m.partition())),
        };
        if let Some(p) = problem {
            let mut first = self.first_error.lock().unwrap();
            if first.is_none() {
                *first = Some(p);
            }
        }
    }
}

struct PartitionJob {
    repo: Repository,
    snapshot: Snapshot,
    brokers: Brokers,
    producer: Arc<Producer>,
    querier: Arc<BaseConsumer>,
    source: String,
    target: String,
    partition: i32,
    base: i64,
    until: Option<i64>,
}

impl PartitionJob {
    /// Runs on a blocking thread: reads the repository through the runtime, produces synchronously.
    fn run(self) -> Result<PartitionReport> {
        let rt = tokio::runtime::Handle::current();
        let (_, high) = wait_for_partition(&self.brokers, &self.querier, &self.target, self.partition)?;
        let already = high - self.base;
        if already < 0 {
            return Err(KafkaError::Failed(format!(
                "{}/{} ends at offset {high}, before this restore's base {}: the topic was recreated or truncated; delete the restore's journal or restore into a new topic",
                self.target, self.partition, self.base
            )));
        }
        let mut reader = PartitionReader::new(&self.repo, &self.snapshot, &self.source, self.partition);
        let mut report = PartitionReport {
            partition: self.partition,
            base: self.base,
            records: 0,
            already_present: already as u64,
            produced: 0,
            runs: Vec::new(),
        };
        // On a rerun: the content hash of the last record already restored.
        let mut last_skipped: Option<String> = None;
        loop {
            let Some(span) = reader.ready()? else {
                match rt.block_on(reader.fill())? {
                    true => continue,
                    false => break,
                }
            };
            let record = reader.record(span);
            if self.until.is_some_and(|u| record.timestamp > u) {
                break;
            }
            let index = report.records as i64;
            let target_offset = self.base + index;
            push_run(&mut report.runs, record.offset, target_offset);
            report.records += 1;
            if index < already {
                if index == already - 1 {
                    last_skipped = Some(hash_of(&record));
                }
                continue;
            }
            if let Some(expected) = last_skipped.take() {
                self.check_resume_point(high - 1, &expected)?;
            }
            self.produce(&record, target_offset)?;
            report.produced += 1;
        }
        if let Some(expected) = last_skipped.take() {
            self.check_resume_point(high - 1, &expected)?;
        }
        if (report.records as i64) < already {
            return Err(KafkaError::Failed(format!(
                "{}/{} holds {already} records past this restore's base but the snapshot has only {} to restore: something else wrote to it",
                self.target, self.partition, report.records
            )));
        }
        Ok(report)
    }

    fn produce(&self, r: &Record<'_>, expected: i64) -> Result<()> {
        let producer = &self.producer;
        let mut deadline = None;
        loop {
            let mut rec: BaseRecord<'_, [u8], [u8], usize> =
                BaseRecord::with_opaque_to(&self.target, expected as usize).partition(self.partition);
            if let Some(k) = r.key {
                rec = rec.key(k);
            }
            if let Some(v) = r.value {
                rec = rec.payload(v);
            }
            if r.timestamp_type != TS_NONE {
                rec = rec.timestamp(r.timestamp);
            }
            if !r.headers.is_empty() {
                let mut h = OwnedHeaders::new_with_capacity(r.headers.len());
                for (key, value) in &r.headers {
                    h = h.insert(Header { key, value: *value });
                }
                rec = rec.headers(h);
            }
            match producer.send(rec) {
                Ok(()) => return Ok(()),
                Err((rdkafka::error::KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::QueueFull), _)) => {
                    if Instant::now() > *deadline.get_or_insert_with(|| Instant::now() + self.brokers.timeout) {
                        return Err(KafkaError::Failed(format!(
                            "the brokers {} took no records for {}s; rerun the restore to continue where it stopped",
                            self.brokers.list,
                            self.brokers.timeout.as_secs()
                        )));
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err((e, _)) => return Err(broker(format!("producing to {}/{}", self.target, self.partition))(e)),
            }
            if let Some(e) = producer.context().first_error.lock().unwrap().take() {
                return Err(KafkaError::Failed(e));
            }
        }
    }

    /// On a rerun: the last record already in the target must be the one
    /// the restore would have written there.
    fn check_resume_point(&self, offset: i64, expected: &str) -> Result<()> {
        let consumer = self.brokers.reader()?;
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&self.target, self.partition, Offset::Offset(offset)).map_err(broker("choosing offsets"))?;
        consumer.assign(&tpl).map_err(broker("reading the resume point"))?;
        let deadline = Instant::now() + self.brokers.timeout;
        while Instant::now() < deadline {
            match consumer.poll(Duration::from_millis(500)) {
                Some(Ok(m)) if m.offset() == offset => {
                    if hash_of(&Record::of(&m)) != expected {
                        return Err(KafkaError::Failed(format!(
                            "{}/{} at offset {offset} holds a record this restore did not write; restore into an empty topic",
                            self.target, self.partition
                        )));
                    }
                    return Ok(());
                }
                _ => {}
            }
        }
        Err(KafkaError::Failed(format!("could not read {}/{} at offset {offset} to resume", self.target, self.partition)))
    }
}

fn hash_of(r: &Record<'_>) -> String {
    let mut h = ContentHash::default();
    h.add(r);
    h.hex()
}

fn push_run(runs: &mut Vec<[i64; 3]>, source: i64, target: i64) {
    if let Some(last) = runs.last_mut() {
        if last[0] + last[2] == source && last[1] + last[2] == target {
            last[2] += 1;
            return;
        }
    }
    runs.push([source, target, 1]);
}

/// Where a consumer that committed `source` (the next offset it would
/// read) resumes in the restored partition: at the first restored record
/// at or after it, or at the end.
pub fn translate(p: &PartitionReport, source: i64) -> i64 {
    for [s, t, n] in &p.runs {
        if source <= *s {
            return *t;
        }
        if source < s + n {
            return t + (source - s);
        }
    }
    p.base + p.records as i64
}

fn translate_groups(req: &RestoreRequest, snapshot: &Snapshot, topics: &[TopicReport]) -> Result<Vec<GroupReport>> {
    let mut out = Vec::new();
    let mut done = Vec::new();
    for g in &snapshot.details.groups {
        let target_group = req.group_name(&g.group);
        let mut tpl = TopicPartitionList::new();
        let mut offsets = Vec::new();
        for o in &g.offsets {
            let Some(t) = topics.iter().find(|t| t.source == o.topic) else { continue };
            let Some(p) = t.partitions.iter().find(|p| p.partition == o.partition) else { continue };
            let target_offset = translate(p, o.offset);
            tpl.add_partition_offset(&t.target, o.partition, Offset::Offset(target_offset)).map_err(broker("choosing offsets"))?;
            offsets.push(GroupTranslation { topic: t.target.clone(), partition: o.partition, source_offset: o.offset, target_offset });
        }
        if offsets.is_empty() {
            continue;
        }
        let consumer = req.brokers.group(&target_group)?;
        req.brokers.with_coordinator(|| consumer.commit(&tpl, CommitMode::Sync)).map_err(|e| {
            KafkaError::Failed(format!(
                "committing translated offsets for group {target_group}: {e}; a group with active members cannot be moved, stop its consumers and rerun"
            ))
        })?;
        out.push(GroupReport { source_group: g.group.clone(), target_group, offsets });
        done.push(consumer);
    }
    // Closing a group's consumer takes about 0.1 s (rdkafka polls the close
    // in 100 ms steps): close them all at once rather than one after another.
    std::thread::scope(|s| {
        for consumer in done {
            s.spawn(move || drop(consumer));
        }
    });
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_and_translation() {
        let mut runs = Vec::new();
        for (s, t) in [(10, 0), (11, 1), (12, 2), (20, 3), (21, 4)] {
            push_run(&mut runs, s, t);
        }
        assert_eq!(runs, vec![[10, 0, 3], [20, 3, 2]]);
        let p = PartitionReport { partition: 0, base: 0, records: 5, already_present: 0, produced: 5, runs };
        assert_eq!(translate(&p, 0), 0, "before the first record");
        assert_eq!(translate(&p, 11), 1);
        assert_eq!(translate(&p, 13), 3, "inside a gap: the next restored record");
        assert_eq!(translate(&p, 21), 4);
        assert_eq!(translate(&p, 22), 5, "past the end: the end");
    }
}
