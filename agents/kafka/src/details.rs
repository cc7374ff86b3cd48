//! What a snapshot manifest records besides its chunks (the manifest's
//! `details`): per-partition offset ranges, record counts, first and last
//! timestamps and content hashes, topic configs, consumer-group offsets and
//! the gaps retention left between this snapshot and its parent.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use lifeboat_repository::Manifest;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotDetails {
    /// Brokers as given (for people).
    pub brokers: String,
    /// The topic regex (matched against whole names).
    pub topics_regex: String,
    /// The snapshot this one continues (`None`: a full snapshot).
    pub parent: Option<String>,
    pub topics: Vec<TopicSnapshot>,
    /// Committed offsets of every consumer group on these topics, at the snapshot's start.
    pub groups: Vec<GroupOffsets>,
    /// Records lost to retention between the parent's end and this snapshot.
    pub gaps: Vec<Gap>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicSnapshot {
    pub name: String,
    pub partitions: Vec<PartitionSnapshot>,
    pub replication_factor: i32,
    /// Every config the admin API returned.
    pub configs: BTreeMap<String, TopicConfig>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicConfig {
    pub value: Option<String>,
    /// Set on the topic itself (not inherited from the broker): what a
    /// restore re-applies.
    pub topic_override: bool,
    pub default: bool,
    pub read_only: bool,
    pub sensitive: bool,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartitionSnapshot {
    pub partition: i32,
    /// The partition's log start offset at the snapshot's start.
    pub log_start: i64,
    /// First offset this snapshot covers (the parent's end, or the log start).
    pub start: i64,
    /// End (exclusive): the high watermark (last stable offset for
    /// transactional topics) at the snapshot's start.
    pub end: i64,
    pub records: u64,
    /// Encoded bytes stored.
    pub bytes: u64,
    pub first_offset: Option<i64>,
    pub last_offset: Option<i64>,
    pub first_timestamp: Option<i64>,
    pub last_timestamp: Option<i64>,
    /// Content hash of the records in order (see [`crate::record::ContentHash`]).
    pub records_sha256: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupOffsets {
    pub group: String,
    pub offsets: Vec<GroupOffset>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupOffset {
    pub topic: String,
    pub partition: i32,
    /// The next offset the group would consume.
    pub offset: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Gap {
    pub topic: String,
    pub partition: i32,
    /// Offsets `from .. to` (exclusive) were deleted before this snapshot could read them.
    pub from: i64,
    pub to: i64,
}

impl SnapshotDetails {
    pub fn of(manifest: &Manifest) -> Option<SnapshotDetails> {
        manifest.details.as_ref().and_then(|d| serde_json::from_value(d.clone()).ok())
    }

    pub fn topic(&self, name: &str) -> Option<&TopicSnapshot> {
        self.topics.iter().find(|t| t.name == name)
    }

    pub fn records(&self) -> u64 {
        self.topics.iter().flat_map(|t| &t.partitions).map(|p| p.records).sum()
    }
}

impl TopicSnapshot {
    pub fn partition(&self, p: i32) -> Option<&PartitionSnapshot> {
        self.partitions.iter().find(|x| x.partition == p)
    }
}
