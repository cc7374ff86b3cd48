//! Snapshots in the repository, and reading a partition's records back.
//!
//! Every snapshot manifest is self-contained: for each partition it lists
//! segments `topics/<topic>/<partition>/<first offset, 20 digits>`, the
//! newest holding the records this snapshot read, the older ones pointing
//! (as extents) at chunks earlier snapshots stored. Segments wholly below
//! the partition's log start at the snapshot are left out, so a snapshot
//! restores what the topic held then, and deleting an older snapshot's
//! manifest never takes data a newer one needs (chunks go only when no
//! manifest references them).
//!
//! A seal (kind `kafka-seal`, written by [`crate::follow`]) lists only the
//! segments it read; it is listed here as the snapshot it restores: its
//! parent's segments each partition keeps, then its own. Seals older than
//! the newest regular snapshot were folded into it and are not listed.

use futures::StreamExt;

use lifeboat_repository::manifest::{Entry, EntryKind, Extent};
use lifeboat_repository::{pipeline, Manifest, Repository};

use crate::details::SnapshotDetails;
use crate::record::{Decoder, Record, Span};
use crate::{KafkaError, Result, KIND_SEAL};

/// One snapshot: its manifest and details.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub manifest: Manifest,
    pub details: SnapshotDetails,
}

/// `topics/<topic>/<partition>/<first offset>`.
pub fn segment_path(topic: &str, partition: i32, first: i64) -> String {
    format!("{}{first:020}", partition_prefix(topic, partition))
}

pub fn partition_prefix(topic: &str, partition: i32) -> String {
    format!("topics/{topic}/{partition}/")
}

/// First offset of a segment entry.
pub fn segment_start(path: &str) -> Option<i64> {
    path.rsplit('/').next()?.parse().ok()
}

impl Snapshot {
    /// A partition's segment entries, oldest first.
    pub fn segments(&self, topic: &str, partition: i32) -> Vec<&Entry> {
        let prefix = partition_prefix(topic, partition);
        let mut out: Vec<&Entry> =
            self.manifest.entries.iter().filter(|e| e.kind == EntryKind::File && e.path.starts_with(&prefix)).collect();
        out.sort_by(|a, b| a.path.cmp(&b.path));
        out
    }

    /// The segments of a partition that a snapshot continuing this one
    /// keeps: those not wholly below `log_start` (each ends where the next
    /// starts, the last at `end`), with their extents.
    pub fn kept_segments(&self, topic: &str, partition: i32, log_start: i64, end: i64) -> Vec<Entry> {
        let extents = self.manifest.file_extents();
        let segments = self.segments(topic, partition);
        let ends = segments.iter().skip(1).map(|n| segment_start(&n.path).unwrap_or(end)).chain([end]);
        segments
            .iter()
            .zip(ends)
            .filter(|(_, seg_end)| *seg_end > log_start)
            .map(|(seg, _)| Entry { extent: extents.get(seg.path.as_str()).cloned(), ..(*seg).clone() })
            .collect()
    }

    /// Whether this is a seal (listed as what it restores).
    pub fn is_seal(&self) -> bool {
        self.manifest.kind == KIND_SEAL
    }

    /// `own` gaps after those the seals up to this one found (none when
    /// this is a regular snapshot: it reported its own).
    pub fn gaps_since_regular(&self, own: Vec<crate::details::Gap>) -> Vec<crate::details::Gap> {
        match self.is_seal() {
            true => self.details.gaps.iter().cloned().chain(own).collect(),
            false => own,
        }
    }

    /// What a seal restores: for each partition continuing `parent` (it
    /// starts where the parent ended), the parent's segments still above
    /// the log start, then the seal's own. The gaps of the seals since the
    /// last regular snapshot come along, so the fold that hides them keeps
    /// them too.
    pub fn sealed_onto(parent: &Snapshot, manifest: Manifest, mut details: SnapshotDetails) -> Snapshot {
        details.gaps = parent.gaps_since_regular(std::mem::take(&mut details.gaps));
        let mut entries = Vec::new();
        for t in &details.topics {
            for p in &t.partitions {
                let before = parent.details.topic(&t.name).and_then(|pt| pt.partition(p.partition));
                if before.is_some_and(|b| b.end == p.start) {
                    entries.extend(parent.kept_segments(&t.name, p.partition, p.log_start, p.start));
                }
            }
        }
        entries.extend(manifest.entries.iter().cloned());
        Snapshot { manifest: Manifest { entries, ..manifest }, details }
    }
}

fn is_seal_id(id: &str) -> bool {
    id.contains(&format!("-{KIND_SEAL}-"))
}

/// Ids of `cell`'s Kafka snapshots and seals, oldest first.
pub async fn ids(repo: &Repository, cell: &str) -> Result<Vec<String>> {
    Ok(repo.list_backups(Some(cell)).await?.into_iter().filter(|b| b.id.contains("-kafka-")).map(|b| b.id).collect())
}

/// The newest regular (not seal) snapshot id among `ids`.
pub fn newest_regular(ids: &[String]) -> Option<&String> {
    ids.iter().rev().find(|id| !is_seal_id(id))
}

/// Kafka snapshots of `cell`, oldest first; seals as what they restore.
pub async fn list(repo: &Repository, cell: &str) -> Result<Vec<Snapshot>> {
    let ids = ids(repo, cell).await?;
    let folded_before = newest_regular(&ids).cloned();
    let mut out: Vec<Snapshot> = Vec::new();
    for id in &ids {
        if is_seal_id(id) && folded_before.as_ref().is_some_and(|r| id < r) {
            continue; // folded into a later regular snapshot; retention deletes it
        }
        let manifest = repo.read_manifest(cell, id).await?;
        let Some(details) = SnapshotDetails::of(&manifest) else { continue };
        if manifest.kind != KIND_SEAL {
            out.push(Snapshot { manifest, details });
            continue;
        }
        match out.last().filter(|p| details.parent.as_ref() == Some(&p.manifest.id)) {
            Some(parent) => {
                let view = Snapshot::sealed_onto(parent, manifest, details);
                out.push(view);
            }
            None => tracing::warn!(
                seal = %id,
                parent = ?details.parent,
                "a Kafka seal that does not continue the snapshot listed before it (two writers at once?) is skipped; the next seal or snapshot reads its records again"
            ),
        }
    }
    Ok(out)
}

/// Snapshot `id` of `cell` (`None`: the newest). A seal folded since (not
/// listed any more) is rebuilt from its chain while its manifests last.
pub async fn find(repo: &Repository, cell: &str, id: Option<&str>) -> Result<Snapshot> {
    let mut all = list(repo, cell).await?;
    match id {
        Some(id) => match all.into_iter().find(|s| s.manifest.id == id) {
            Some(s) => Ok(s),
            None if is_seal_id(id) => folded_seal(repo, cell, id).await,
            None => Err(KafkaError::Invalid(format!("Kafka snapshot {id} of cell {cell} not found; `lifeboat-agent kafka ls` lists them"))),
        },
        None => all.pop().ok_or_else(|| {
            KafkaError::Invalid(format!("cell {cell} has no Kafka snapshot in this repository; run `lifeboat-agent kafka snapshot` first"))
        }),
    }
}

/// A segment's chunks, fetched and verified by a task of their own (so
/// decryption overlaps with whatever the caller does with the records).
type Pieces = tokio::sync::mpsc::Receiver<lifeboat_repository::Result<Vec<u8>>>;

/// Chunks a partition reader fetches and checks ahead of its decoder, and
/// as many more waiting for it (a restore reads several partitions at once).
const CHUNKS_AHEAD: usize = 2;

/// The records of one partition in a snapshot, in offset order from the
/// partition's log start at the snapshot, read and verified chunk by chunk.
pub struct PartitionReader {
    repo: Repository,
    /// (extent, bytes) of each segment, in order.
    segments: std::vec::IntoIter<(Extent, u64)>,
    current: Option<(Pieces, usize, u64)>,
    decoder: Decoder,
    from: i64,
    path: String,
}

impl PartitionReader {
    pub fn new(repo: &Repository, snapshot: &Snapshot, topic: &str, partition: i32) -> PartitionReader {
        let extents = snapshot.manifest.file_extents();
        let segments: Vec<(Extent, u64)> = snapshot
            .segments(topic, partition)
            .into_iter()
            .filter(|e| e.size > 0)
            .filter_map(|e| extents.get(e.path.as_str()).map(|x| (x.clone(), e.size)))
            .collect();
        let from = snapshot.details.topic(topic).and_then(|t| t.partition(partition)).map(|p| p.log_start).unwrap_or(0);
        PartitionReader {
            repo: repo.clone(),
            segments: segments.into_iter(),
            current: None,
            decoder: Decoder::default(),
            from,
            path: partition_prefix(topic, partition),
        }
    }

    /// The next record, borrowed until the next call.
    pub async fn next(&mut self) -> Result<Option<Record<'_>>> {
        loop {
            if let Some(span) = self.ready()? {
                return Ok(Some(self.record(span)));
            }
            if !self.fill().await? {
                return Ok(None);
            }
        }
    }

    /// The next record already read (view it with [`PartitionReader::record`]),
    /// or `None` when [`PartitionReader::fill`] must read more. A caller on a
    /// blocking thread enters the runtime only for `fill`, not per record.
    pub fn ready(&mut self) -> Result<Option<Span>> {
        while let Some(span) = self.decoder.next_span().map_err(|e| self.corrupt(e))? {
            if span.offset >= self.from {
                return Ok(Some(span));
            } // else deleted by the brokers before this snapshot
        }
        Ok(None)
    }

    pub fn record(&self, span: Span) -> Record<'_> {
        self.decoder.record(span)
    }

    /// Read the next piece of the partition's records; `false` at the end.
    pub async fn fill(&mut self) -> Result<bool> {
        loop {
            if self.current.is_none() {
                let Some((extent, size)) = self.segments.next() else {
                    if self.decoder.pending() > 0 {
                        return Err(self.corrupt(format!("{} bytes of a truncated record at the end", self.decoder.pending())));
                    }
                    return Ok(false);
                };
                let (tx, rx) = tokio::sync::mpsc::channel(CHUNKS_AHEAD);
                let mut stream = Box::pin(pipeline::read_stream(&self.repo, extent.chunks.clone(), CHUNKS_AHEAD));
                tokio::spawn(async move {
                    while let Some(piece) = stream.next().await {
                        if tx.send(piece).await.is_err() {
                            break; // the reader was dropped
                        }
                    }
                });
                self.current = Some((rx, extent.skip as usize, size));
            }
            let (stream, skip, left) = self.current.as_mut().unwrap();
            if *left == 0 {
                self.current = None;
                continue;
            }
            match stream.recv().await {
                Some(piece) => {
                    let piece = piece?;
                    let from = (*skip).min(piece.len());
                    *skip -= from;
                    let n = ((piece.len() - from) as u64).min(*left) as usize;
                    self.decoder.feed(&piece[from..from + n]);
                    *left -= n as u64;
                    return Ok(true);
                }
                None => {
                    let left = *left;
                    return Err(self.corrupt(format!("the chunks end {left} bytes early")));
                }
            }
        }
    }

    fn corrupt(&self, reason: String) -> KafkaError {
        KafkaError::Failed(format!("the stored records of {} are unreadable: {reason}", self.path))
    }
}

/// Seal `id` as it restores, rebuilt by following its parents back to a
/// regular snapshot (a seal a later snapshot folded, which `list` hides: a
/// restore or verify that started from it goes on).
async fn folded_seal(repo: &Repository, cell: &str, id: &str) -> Result<Snapshot> {
    let missing =
        |what: String| KafkaError::Invalid(format!("Kafka seal {id} of cell {cell} cannot be rebuilt: {what}; restore a newer snapshot"));
    let mut chain = Vec::new();
    let mut next = Some(id.to_string());
    while let Some(at) = next {
        let manifest = repo.read_manifest(cell, &at).await.map_err(|e| missing(format!("{at}: {e}")))?;
        let details = SnapshotDetails::of(&manifest).ok_or_else(|| missing(format!("{at} has no Kafka details")))?;
        next = (manifest.kind == KIND_SEAL).then(|| details.parent.clone()).flatten();
        if manifest.kind == KIND_SEAL && next.is_none() {
            return Err(missing(format!("{at} names no parent")));
        }
        chain.push(Snapshot { manifest, details });
    }
    let mut view = chain.pop().expect("the chain holds at least the seal");
    while let Some(seal) = chain.pop() {
        view = Snapshot::sealed_onto(&view, seal.manifest, seal.details);
    }
    Ok(view)
}
