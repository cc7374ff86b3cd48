//! A snapshot and the parents it continues, oldest first, and reading a
//! partition's records back out of the repository across the whole chain.

use std::collections::HashMap;
use std::pin::Pin;

use futures::{Stream, StreamExt};

use lifeboat_repository::manifest::Extent;
use lifeboat_repository::{pipeline, Manifest, Repository};

use crate::details::SnapshotDetails;
use crate::record::{Decoder, Record};
use crate::{entry_path, KafkaError, Result};

/// One snapshot: its manifest and details.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub manifest: Manifest,
    pub details: SnapshotDetails,
}

/// Kafka snapshots of `cell`, oldest first.
pub async fn list(repo: &Repository, cell: &str) -> Result<Vec<Snapshot>> {
    let mut out = Vec::new();
    for b in repo.list_backups(Some(cell)).await? {
        if !b.id.contains("-kafka-") {
            continue;
        }
        let manifest = repo.read_manifest(cell, &b.id).await?;
        if let Some(details) = SnapshotDetails::of(&manifest) {
            out.push(Snapshot { manifest, details });
        }
    }
    Ok(out)
}

/// The chain ending at `id` (`None`: the newest snapshot), oldest first.
pub async fn load(repo: &Repository, cell: &str, id: Option<&str>) -> Result<Vec<Snapshot>> {
    let all = list(repo, cell).await?;
    let last = match id {
        Some(id) => all.iter().find(|s| s.manifest.id == id).ok_or_else(|| {
            KafkaError::Invalid(format!("Kafka snapshot {id} of cell {cell} not found; `lifeboat-agent kafka ls` lists them"))
        })?,
        None => all.last().ok_or_else(|| {
            KafkaError::Invalid(format!("cell {cell} has no Kafka snapshot in this repository; run `lifeboat-agent kafka snapshot` first"))
        })?,
    };
    let mut chain = vec![last.clone()];
    while let Some(parent) = chain.last().unwrap().details.parent.clone() {
        let found = all.iter().find(|s| s.manifest.id == parent).ok_or_else(|| {
            KafkaError::Failed(format!(
                "snapshot {} continues snapshot {parent}, which is missing from the repository; restore an earlier complete chain (`kafka ls`)",
                chain.last().unwrap().manifest.id
            ))
        })?;
        chain.push(found.clone());
    }
    chain.reverse();
    Ok(chain)
}

type Pieces = Pin<Box<dyn Stream<Item = lifeboat_repository::Result<Vec<u8>>> + Send>>;

/// The records of one partition across a chain, in offset order, read and
/// verified chunk by chunk.
pub struct PartitionReader {
    repo: Repository,
    /// (extent, bytes) of each snapshot holding the partition, in order.
    segments: std::vec::IntoIter<(Extent, u64)>,
    current: Option<(Pieces, usize, u64)>,
    decoder: Decoder,
    path: String,
}

impl PartitionReader {
    pub fn new(repo: &Repository, chain: &[Snapshot], topic: &str, partition: i32) -> PartitionReader {
        let path = entry_path(topic, partition);
        let mut segments = Vec::new();
        for s in chain {
            let Some(entry) = s.manifest.entries.iter().find(|e| e.path == path) else { continue };
            if entry.size == 0 {
                continue;
            }
            let extents: HashMap<&str, Extent> = s.manifest.file_extents();
            if let Some(x) = extents.get(path.as_str()) {
                segments.push((x.clone(), entry.size));
            }
        }
        PartitionReader { repo: repo.clone(), segments: segments.into_iter(), current: None, decoder: Decoder::default(), path }
    }

    pub async fn next(&mut self) -> Result<Option<Record>> {
        loop {
            if let Some(r) = self.decoder.next_record().map_err(|e| self.corrupt(e))? {
                return Ok(Some(r));
            }
            if self.current.is_none() {
                let Some((extent, size)) = self.segments.next() else {
                    if self.decoder.pending() > 0 {
                        return Err(self.corrupt(format!("{} bytes of a truncated record at the end", self.decoder.pending())));
                    }
                    return Ok(None);
                };
                let stream = pipeline::read_stream(&self.repo, extent.chunks.clone(), 4);
                self.current = Some((Box::pin(stream), extent.skip as usize, size));
            }
            let (stream, skip, left) = self.current.as_mut().unwrap();
            if *left == 0 {
                self.current = None;
                continue;
            }
            match stream.next().await {
                Some(piece) => {
                    let piece = piece?;
                    let from = (*skip).min(piece.len());
                    *skip -= from;
                    let n = ((piece.len() - from) as u64).min(*left) as usize;
                    self.decoder.feed(&piece[from..from + n]);
                    *left -= n as u64;
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
