//! `kafka snapshot`: every matching topic's records since the previous
//! snapshot (or the log start) up to the high watermark read at the start,
//! with topic configs and consumer-group offsets, through the repository's
//! chunking, hashing, compression and encryption, several partitions at
//! once. The manifest is written last; a snapshot that cannot read all its
//! records commits nothing.
//!
//! A seal ([`seal`], the continuous mode of [`crate::follow`]) reads the
//! same way but its manifest lists only the segments it read; the next
//! regular snapshot after seals folds them and compacts what they left
//! small ([`crate::compact`]).
//!
//! Reading uses `read_committed`: aborted transactional records and control
//! batches are not stored (their offsets are simply absent), and the end of
//! a transactional partition is its last stable offset. Compacted topics
//! keep their offset gaps; restores keep the order, not the offsets.

use std::collections::BTreeMap;
use std::io::Read;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};

use futures::{StreamExt, TryStreamExt};
use rdkafka::admin::{AdminOptions, ConfigSource, ResourceSpecifier};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use time::OffsetDateTime;

use lifeboat_repository::files::{new_manifest, StoredTree};
use lifeboat_repository::lock::{LockGuard, LockKind};
use lifeboat_repository::manifest::{ChunkRef, Entry, EntryKind, Extent, Totals};
use lifeboat_repository::pipeline::{self, KnownChunks, StreamStats};
use lifeboat_repository::{format, Manifest, Repository};

use crate::client::Brokers;
use crate::details::{Gap, GroupOffset, GroupOffsets, PartitionSnapshot, SnapshotDetails, TopicConfig, TopicSnapshot};
use crate::record::ContentHash;
use crate::stored::{self, segment_path, Snapshot};
use crate::{broker, KafkaError, Result, KIND_FULL, KIND_INCREMENTAL, KIND_SEAL};

#[derive(Debug, Clone)]
pub struct SnapshotRequest {
    pub cell: String,
    pub brokers: Brokers,
    /// Matched against whole topic names; internal topics (`__*`) never match.
    pub topics: String,
}

/// A partition to read: `[start, end)`.
#[derive(Debug, Clone)]
struct Range {
    topic: String,
    partition: i32,
    log_start: i64,
    start: i64,
    end: i64,
    /// Continues the previous snapshot's records (false: new, or recreated).
    continues: bool,
}

/// A committed snapshot, as its job reports it.
pub fn done(m: &lifeboat_repository::Manifest, d: &SnapshotDetails) -> lifeboat_api::results::SnapshotDone {
    lifeboat_api::results::SnapshotDone {
        snapshot_id: m.id.clone(),
        kind: m.kind.clone(),
        parent: d.parent.clone(),
        records: d.records(),
        stored_bytes: m.totals.new_stored_bytes,
        seconds: (m.finished - m.started).as_seconds_f64(),
        gaps: d
            .gaps
            .iter()
            .map(|g| lifeboat_api::results::RecordGap { topic: g.topic.clone(), partition: g.partition, from: g.from, to: g.to })
            .collect(),
    }
}

/// A regular snapshot: self-contained, continuing the newest snapshot or seal.
pub async fn snapshot(repo: &Repository, req: &SnapshotRequest) -> Result<(Manifest, SnapshotDetails)> {
    let regex = topics_regex(req)?;
    let started = OffsetDateTime::now_utc();
    let lock = LockGuard::acquire(repo, LockKind::Shared, &format!("kafka snapshot of cell {}", req.cell)).await?;
    let result = async {
        let previous = stored::list(repo, &req.cell).await?.pop();
        let taken = take(repo, req, &regex, started, previous.as_ref(), Mode::Regular).await?;
        let s = taken.expect("a regular snapshot is always taken");
        Ok((s.manifest, s.details))
    }
    .await;
    lock.release_after(result).await
}

/// A seal continuing `previous` (the newest snapshot or seal, as listed):
/// the records since it, group offsets and configs, in a manifest of kind
/// `kafka-seal` listing only the new segments. Returns what it restores,
/// or `None` when nothing changed and `previous` is younger than `idle`.
pub async fn seal(repo: &Repository, req: &SnapshotRequest, previous: &Snapshot, idle: std::time::Duration) -> Result<Option<Snapshot>> {
    let regex = topics_regex(req)?;
    let started = OffsetDateTime::now_utc();
    let lock = LockGuard::acquire(repo, LockKind::Shared, &format!("kafka seal of cell {}", req.cell)).await?;
    let result = take(repo, req, &regex, started, Some(previous), Mode::Seal { idle }).await;
    lock.release_after(result).await
}

fn topics_regex(req: &SnapshotRequest) -> Result<regex::Regex> {
    format::validate_cell(&req.cell)?;
    topic_pattern(&req.topics, "--topics")
}

/// The topics a snapshot takes: `topics` as a regular expression matching
/// whole topic names; a bad one is refused naming `flag`.
pub fn topic_pattern(topics: &str, flag: &str) -> Result<regex::Regex> {
    regex::Regex::new(&format!("^(?:{topics})$"))
        .map_err(|e| KafkaError::Invalid(format!("{flag} {topics:?} is not a valid regular expression: {e}")))
}

#[derive(Debug, Clone, Copy)]
enum Mode {
    Regular,
    /// Skip the seal when nothing changed and the previous one is younger than `idle`.
    Seal {
        idle: std::time::Duration,
    },
}

async fn take(
    repo: &Repository,
    req: &SnapshotRequest,
    regex: &regex::Regex,
    started: OffsetDateTime,
    previous: Option<&Snapshot>,
    mode: Mode,
) -> Result<Option<Snapshot>> {
    let Planned { ranges, mut topics, gaps, groups } = {
        let (brokers, regex, topics) = (req.brokers.clone(), regex.clone(), req.topics.clone());
        let before = previous.map(|p| p.details.clone());
        crate::client::blocking(move || plan(&brokers, &regex, &topics, before.as_ref())).await?
    };
    if let (Mode::Seal { idle }, Some(p)) = (mode, previous) {
        let unchanged = ranges.iter().all(|r| r.start == r.end && r.continues) && gaps.is_empty() && groups == p.details.groups;
        if unchanged && started - p.manifest.started < idle {
            return Ok(None);
        }
    }
    for gap in &gaps {
        tracing::warn!(topic = %gap.topic, partition = gap.partition, from = gap.from, to = gap.to, "records were deleted by retention before this snapshot could read them");
    }
    read_configs(&req.brokers, &mut topics).await?;

    // Records: each partition its own stream through the chunk pipeline,
    // PARALLEL_PARTITIONS at once with a consumer each (the brokers serve
    // several fetches at a time); a partition's new segment is an extent
    // over its own chunks. A seal stores only new chunks (put unless
    // present, under the shared lock that keeps retention out), so it
    // neither lists the repository's chunks first nor checks them after.
    let known = match mode {
        Mode::Regular => KnownChunks::load(repo).await?,
        Mode::Seal { .. } => KnownChunks::default(),
    };
    let mut read: Vec<(PartitionStats, Vec<ChunkRef>, StreamStats)> = futures::stream::iter(ranges.iter().cloned())
        .map(|range| snapshot_partition(repo, &known, &req.brokers, range))
        .buffered(PARALLEL_PARTITIONS)
        .try_collect()
        .await?;
    let (mut kept, new) = segments(&ranges, &read, previous, &mut topics);
    if matches!(mode, Mode::Regular) && previous.is_some_and(Snapshot::is_seal) {
        let (compacted, stats) = crate::compact::compact(repo, &known, kept).await?;
        kept = compacted;
        read.push((PartitionStats::default(), Vec::new(), stats));
    }
    // A regular snapshot after seals carries their gaps (their manifests
    // are hidden once it folds them); a seal's manifest keeps its own only.
    let gaps = match (mode, previous) {
        (Mode::Regular, Some(p)) => p.gaps_since_regular(gaps),
        _ => gaps,
    };
    let details = SnapshotDetails {
        brokers: req.brokers.list.clone(),
        topics_regex: req.topics.clone(),
        parent: previous.map(|p| p.manifest.id.clone()),
        topics,
        groups,
        gaps,
    };
    let (kind, reused, mut entries) = match (mode, previous) {
        (Mode::Seal { .. }, _) => (KIND_SEAL, 0, new.clone()),
        (Mode::Regular, Some(_)) => (KIND_INCREMENTAL, kept.len() as u64, [kept.clone(), new.clone()].concat()),
        (Mode::Regular, None) => (KIND_FULL, 0, new.clone()),
    };
    if matches!(mode, Mode::Regular) {
        pipeline::ensure_present(repo, entries.iter().filter_map(|e| e.extent.as_ref()).flat_map(|x| x.chunks.iter())).await?;
    }
    let totals = Totals {
        files: entries.len() as u64,
        bytes: entries.iter().map(|e| e.size).sum(),
        reused_files: reused,
        chunks: read.iter().map(|(_, _, st)| st.chunks).sum(),
        new_chunks: read.iter().map(|(_, _, st)| st.new_chunks).sum(),
        new_stored_bytes: read.iter().map(|(_, _, st)| st.new_stored_bytes).sum(),
        ..Default::default()
    };
    // No stream of its own: every segment is an extent.
    let source = format!("kafka {} topics /{}/", req.brokers.list, req.topics);
    let tree = StoredTree { source, entries: std::mem::take(&mut entries), chunks: Vec::new(), totals };
    let mut manifest = new_manifest(repo, &req.cell, kind, started, tree);
    manifest.details = Some(serde_json::to_value(&details).expect("details serialise"));
    repo.write_manifest(&manifest).await?;
    match (mode, previous) {
        // What it restores, as `stored::list` shows it.
        (Mode::Seal { .. }, Some(p)) => Ok(Some(Snapshot::sealed_onto(p, manifest, details))),
        _ => Ok(Some(Snapshot { manifest, details })),
    }
}

/// What a snapshot reads, decided from the brokers before any record is.
struct Planned {
    ranges: Vec<Range>,
    topics: Vec<TopicSnapshot>,
    gaps: Vec<Gap>,
    groups: Vec<GroupOffsets>,
}

/// The topics `regex` matches, each partition's range from where the
/// previous snapshot (`before`) ended (or the log start) to the high
/// watermark now, the records retention took in between, and every
/// consumer group's offsets. rdkafka's calls block: run it on a blocking thread.
fn plan(brokers: &Brokers, regex: &regex::Regex, topics_arg: &str, before: Option<&SnapshotDetails>) -> Result<Planned> {
    let consumer = brokers.querier()?;
    let metadata = brokers.metadata(&consumer)?;
    let mut names: Vec<&str> = metadata.topics().iter().map(|t| t.name()).filter(|n| !n.starts_with("__") && regex.is_match(n)).collect();
    names.sort();
    if names.is_empty() {
        let mut all: Vec<&str> = metadata.topics().iter().map(|t| t.name()).filter(|n| !n.starts_with("__")).collect();
        all.sort();
        return Err(KafkaError::Invalid(format!(
            "no topic on {} matches --topics {topics_arg:?} (matched against whole names); topics there: {}",
            brokers.list,
            if all.is_empty() { "none".to_string() } else { all.join(", ") }
        )));
    }
    let mut planned = Planned { ranges: Vec::new(), topics: Vec::new(), gaps: Vec::new(), groups: Vec::new() };
    for name in names {
        let t = metadata.topics().iter().find(|t| t.name() == name).expect("listed above");
        if let Some(e) = t.error() {
            return Err(KafkaError::Failed(format!("the brokers report topic {name} unusable ({e:?}); retry when it is healthy")));
        }
        let mut parts: Vec<i32> = t.partitions().iter().map(|p| p.id()).collect();
        parts.sort();
        let replication_factor = t.partitions().first().map(|p| p.replicas().len() as i32).unwrap_or(1);
        let previous = before.and_then(|b| b.topic(name));
        let mut partitions = Vec::new();
        for p in parts {
            let (low, high) = brokers.watermarks(&consumer, name, p)?;
            let range = range(name, p, (low, high), previous.and_then(|t| t.partition(p)), &mut planned.gaps);
            partitions.push(PartitionSnapshot { partition: p, log_start: low, start: range.start, end: high, ..Default::default() });
            planned.ranges.push(range);
        }
        planned.topics.push(TopicSnapshot { name: name.to_string(), partitions, replication_factor, configs: BTreeMap::new() });
    }
    planned.groups = group_offsets(brokers, &consumer, &planned.ranges)?;
    Ok(planned)
}

/// A partition's range: from the previous snapshot's end when the log
/// still holds it, else from the log start (noting a gap when retention
/// took records no snapshot read).
fn range(topic: &str, partition: i32, (low, high): (i64, i64), previous: Option<&PartitionSnapshot>, gaps: &mut Vec<Gap>) -> Range {
    let mut range = Range { topic: topic.to_string(), partition, log_start: low, start: low, end: high, continues: false };
    let Some(prev) = previous else { return range };
    if high < prev.end {
        tracing::warn!(
            topic,
            partition,
            previous_end = prev.end,
            high,
            "the partition is behind the previous snapshot's end (recreated?); reading it from its log start"
        );
    } else if low > prev.end {
        gaps.push(Gap { topic: topic.to_string(), partition, from: prev.end, to: low });
    } else {
        range.start = prev.end;
        range.continues = true;
    }
    range
}

/// The snapshot's entries: per partition, the older segments still above
/// the log start (the earlier snapshots' chunks), and the new one; fills
/// in each partition's figures. Returns `(kept, new)`.
fn segments(
    ranges: &[Range],
    read: &[(PartitionStats, Vec<ChunkRef>, StreamStats)],
    previous: Option<&Snapshot>,
    topics: &mut [TopicSnapshot],
) -> (Vec<Entry>, Vec<Entry>) {
    let (mut kept, mut new) = (Vec::new(), Vec::new());
    let now = OffsetDateTime::now_utc().unix_timestamp();
    for (range, (stat, chunks, _)) in ranges.iter().zip(read) {
        let topic = topics.iter_mut().find(|t| t.name == range.topic).expect("topic of range");
        let p = topic.partitions.iter_mut().find(|p| p.partition == range.partition).expect("partition of range");
        p.records = stat.records;
        p.bytes = stat.bytes;
        p.first_offset = stat.first_offset;
        p.last_offset = stat.last_offset;
        p.first_timestamp = stat.first_timestamp;
        p.last_timestamp = stat.last_timestamp;
        p.records_sha256 = stat.hash.hex();
        if let Some(prev) = previous.filter(|_| range.continues) {
            kept.extend(prev.kept_segments(&range.topic, range.partition, range.log_start, range.start));
        }
        if stat.bytes > 0 {
            new.push(Entry {
                path: segment_path(&range.topic, range.partition, stat.first_offset.unwrap_or(range.start)),
                kind: EntryKind::File,
                mode: 0o600,
                size: stat.bytes,
                mtime: now,
                target: None,
                extent: Some(Extent { skip: 0, chunks: chunks.clone() }),
                // Segments are never delta-restored; the chunks carry the hashes.
                blake3: None,
            });
        }
    }
    (kept, new)
}

/// Committed offsets of every consumer group on the snapshot's partitions.
fn group_offsets(brokers: &Brokers, consumer: &BaseConsumer, ranges: &[Range]) -> Result<Vec<GroupOffsets>> {
    let list = brokers.with_coordinator(|| consumer.fetch_group_list(None, brokers.timeout)).map_err(broker("listing consumer groups"))?;
    let mut names: Vec<String> = list.groups().iter().map(|g| g.name().to_string()).filter(|n| !n.starts_with("lifeboat-")).collect();
    names.sort();
    let mut tpl = TopicPartitionList::new();
    for r in ranges {
        tpl.add_partition(&r.topic, r.partition);
    }
    // One consumer (and one OffsetFetch) per group: done GROUP_FETCHERS at a
    // time, since a cluster may have hundreds of groups, each consumer closed
    // in the background (a close takes 0.1 s).
    let fetch = |name: &String| -> Result<Option<GroupOffsets>> {
        let group = brokers.group(name)?;
        let committed = brokers.with_coordinator(|| group.committed_offsets(tpl.clone(), brokers.timeout));
        // It never joined its group nor committed: nothing waits for its close.
        Brokers::close_in_background(group);
        let committed = committed.map_err(broker(format!("reading the committed offsets of group {name}")))?;
        let offsets: Vec<GroupOffset> = committed
            .elements()
            .iter()
            .filter_map(|e| match e.offset() {
                Offset::Offset(o) => Some(GroupOffset { topic: e.topic().to_string(), partition: e.partition(), offset: o }),
                _ => None,
            })
            .collect();
        Ok((!offsets.is_empty()).then(|| GroupOffsets { group: name.clone(), offsets }))
    };
    let mut out = Vec::new();
    for batch in names.chunks(names.len().div_ceil(GROUP_FETCHERS).max(1)).collect::<Vec<_>>().chunks(GROUP_FETCHERS) {
        let results: Vec<Result<Vec<GroupOffsets>>> = std::thread::scope(|scope| {
            let handles: Vec<_> = batch
                .iter()
                .map(|names| scope.spawn(|| names.iter().filter_map(|n| fetch(n).transpose()).collect::<Result<Vec<_>>>()))
                .collect();
            handles.into_iter().map(|h| h.join().expect("a group fetcher does not panic")).collect()
        });
        for r in results {
            out.extend(r?);
        }
    }
    out.sort_by(|a, b| a.group.cmp(&b.group));
    Ok(out)
}

/// Threads reading consumer-group offsets at once.
const GROUP_FETCHERS: usize = 8;

async fn read_configs(brokers: &Brokers, topics: &mut [TopicSnapshot]) -> Result<()> {
    let admin = brokers.admin()?;
    let specs: Vec<ResourceSpecifier<'_>> = topics.iter().map(|t| ResourceSpecifier::Topic(&t.name)).collect();
    let results = admin
        .describe_configs(specs.iter(), &AdminOptions::new().request_timeout(Some(brokers.timeout)))
        .await
        .map_err(broker("describing topic configs"))?;
    for (topic, result) in topics.iter_mut().zip(results) {
        let resource =
            result.map_err(|e| KafkaError::Failed(format!("the brokers refused to describe the configs of {}: {e:?}", topic.name)))?;
        for c in resource.entries {
            topic.configs.insert(
                c.name.clone(),
                TopicConfig {
                    value: c.value,
                    topic_override: c.source == ConfigSource::DynamicTopic,
                    default: c.is_default,
                    read_only: c.is_read_only,
                    sensitive: c.is_sensitive,
                },
            );
        }
    }
    Ok(())
}

/// What reading one partition produced.
#[derive(Default)]
struct PartitionStats {
    records: u64,
    bytes: u64,
    first_offset: Option<i64>,
    last_offset: Option<i64>,
    first_timestamp: Option<i64>,
    last_timestamp: Option<i64>,
    hash: ContentHash,
}

/// Records travel from a reader to its chunker in blocks of this size,
/// BLOCKS_QUEUED of them at most waiting.
const BLOCK: usize = 1 << 20;
const BLOCKS_QUEUED: usize = 4;
/// Partitions read at once, each with its own consumer and chunk pipeline
/// (whose sealing workers share the cores between them).
const PARALLEL_PARTITIONS: usize = 2;
/// Records each of those consumers prefetches (KiB): enough to keep the
/// chunk pipeline fed (the brokers answer a fetch within milliseconds).
const PREFETCH_KIB: usize = 8 << 10;

/// Store one partition's new records; `(stats, chunks, stream stats)`.
async fn snapshot_partition(
    repo: &Repository,
    known: &KnownChunks,
    brokers: &Brokers,
    range: Range,
) -> Result<(PartitionStats, Vec<ChunkRef>, StreamStats)> {
    let (tx, rx) = sync_channel::<Vec<u8>>(BLOCKS_QUEUED);
    let reader_brokers = brokers.clone();
    let reading = std::thread::Builder::new()
        .name("kafka-read".into())
        .spawn(move || read_partition(&reader_brokers, &range, tx))
        .map_err(|e| KafkaError::Failed(format!("starting a reader thread: {e}")))?;
    let workers = (pipeline::default_workers() / PARALLEL_PARTITIONS).max(2);
    let stored = pipeline::store_stream(repo, known, ChannelReader::new(rx), workers).await;
    match (reading.join().expect("the reader thread does not panic"), stored) {
        (Ok(stats), Ok((chunks, stream_stats))) => Ok((stats, chunks, stream_stats)),
        // The repository failed and so stopped the reader: its error is the cause.
        (Ok(_) | Err(KafkaError::Stopped), Err(e)) => Err(e.into()),
        // A broker failure explains a short stream best.
        (Err(e), _) => Err(e),
    }
}

/// Read one range, sending encoded records in blocks.
fn read_partition(brokers: &Brokers, r: &Range, tx: SyncSender<Vec<u8>>) -> Result<PartitionStats> {
    let mut block = Vec::with_capacity(BLOCK);
    let send = |block: &mut Vec<u8>| -> Result<()> {
        tx.send(std::mem::replace(block, Vec::with_capacity(BLOCK))).map_err(|_| KafkaError::Stopped)
    };
    let mut stats = PartitionStats {
        records: 0,
        bytes: 0,
        first_offset: None,
        last_offset: None,
        first_timestamp: None,
        last_timestamp: None,
        hash: ContentHash::default(),
    };
    if r.start < r.end {
        let consumer = brokers.reader_with_prefetch(PREFETCH_KIB)?;
        let hint = "nothing was committed, rerun the snapshot";
        brokers.read_range(&consumer, (&r.topic, r.partition), (r.start, r.end), hint, |record| {
            // A block is sent before it would outgrow BLOCK (growing it
            // would double its allocation and copy it).
            if !block.is_empty() && block.len() + record.encoded_len() > BLOCK {
                send(&mut block)?;
            }
            let before = block.len();
            record.encode(&mut block);
            stats.hash.add(&record);
            stats.records += 1;
            stats.bytes += (block.len() - before) as u64;
            stats.first_offset.get_or_insert(record.offset);
            stats.first_timestamp.get_or_insert(record.timestamp);
            stats.last_offset = Some(record.offset);
            stats.last_timestamp = Some(record.timestamp);
            Ok(())
        })?;
        Brokers::close_in_background(consumer);
    }
    if !block.is_empty() {
        send(&mut block)?;
    }
    Ok(stats)
}

/// A blocking `Read` over blocks arriving on a channel.
struct ChannelReader {
    rx: Receiver<Vec<u8>>,
    block: Vec<u8>,
    pos: usize,
}

impl ChannelReader {
    fn new(rx: Receiver<Vec<u8>>) -> ChannelReader {
        ChannelReader { rx, block: Vec::new(), pos: 0 }
    }
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.pos == self.block.len() {
            match self.rx.recv() {
                Ok(block) => {
                    self.block = block;
                    self.pos = 0;
                }
                Err(_) => return Ok(0), // sender done (or failed: its error is reported)
            }
        }
        let n = buf.len().min(self.block.len() - self.pos);
        buf[..n].copy_from_slice(&self.block[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}
