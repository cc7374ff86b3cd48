//! Folding seals into a regular snapshot without growing its manifest.
//!
//! A seal stores each partition's few seconds of records as a segment of
//! its own, usually one small chunk. The first regular snapshot after seals
//! keeps those segments (no record is read from the brokers again) but
//! merges each partition's adjacent segments into segments of up to
//! [`MERGE_LIMIT`] bytes, and re-stores every run of [`SMALL_RUN`] or more
//! chunks below the repository's minimum chunk size as chunks of its usual
//! size. A followed cell's snapshots then list about as many segments and
//! chunks as hourly snapshots of the same records would. The records, their
//! order and their bytes are unchanged; the seals' small chunks are left to
//! retention once nothing references them.

use std::io::Cursor;

use futures::TryStreamExt;

use lifeboat_repository::manifest::{ChunkRef, Entry, Extent};
use lifeboat_repository::pipeline::{self, KnownChunks, StreamStats};
use lifeboat_repository::Repository;

use crate::Result;

/// Adjacent segments of a partition are merged while the result stays at
/// or under this many bytes (records below the log start a merged segment
/// keeps stay restorable until all of it is below: at most this much).
pub const MERGE_LIMIT: u64 = 64 << 20;
/// Runs of at least this many small chunks are re-stored.
pub const SMALL_RUN: usize = 8;
/// A re-stored run is read into memory: at most this many bytes at once.
const RUN_BYTES: u64 = 16 << 20;

/// Merge and re-chunk `entries` (one snapshot's kept segments, in
/// partition and offset order). Returns them and what re-storing stored.
pub async fn compact(repo: &Repository, known: &KnownChunks, entries: Vec<Entry>) -> Result<(Vec<Entry>, StreamStats)> {
    let small = repo.config().chunking.min_size;
    let mut stats = StreamStats::default();
    let mut out = merge(entries);
    for entry in &mut out {
        if let Some(extent) = entry.extent.as_mut() {
            let s = rechunk(repo, known, extent, small).await?;
            stats.bytes += s.bytes;
            stats.chunks += s.chunks;
            stats.new_chunks += s.new_chunks;
            stats.new_stored_bytes += s.new_stored_bytes;
        }
    }
    Ok((out, stats))
}

/// The directory part of a segment path (`topics/<topic>/<partition>/`).
fn partition_of(e: &Entry) -> &str {
    e.path.rsplit_once('/').map_or("", |(dir, _)| dir)
}

/// An extent covering exactly the segment's bytes from its first chunk's start.
fn whole(e: &Entry) -> bool {
    e.extent.as_ref().is_some_and(|x| x.skip == 0 && x.chunks.iter().map(|c| u64::from(c.size)).sum::<u64>() == e.size)
}

/// Adjacent segments of one partition, each covered exactly by its extent,
/// merged up to [`MERGE_LIMIT`]: the first one's path, the chunks in order.
pub fn merge(entries: Vec<Entry>) -> Vec<Entry> {
    let mut out: Vec<Entry> = Vec::with_capacity(entries.len());
    for e in entries {
        if let Some(last) = out.last_mut() {
            if partition_of(last) == partition_of(&e) && whole(last) && whole(&e) && last.size + e.size <= MERGE_LIMIT {
                let chunks = e.extent.map(|x| x.chunks).unwrap_or_default();
                last.extent.as_mut().expect("whole has an extent").chunks.extend(chunks);
                last.size += e.size;
                last.mtime = last.mtime.max(e.mtime);
                continue;
            }
        }
        out.push(e);
    }
    out
}

/// Re-store each run of small chunks in `extent` as chunks of the usual size.
async fn rechunk(repo: &Repository, known: &KnownChunks, extent: &mut Extent, small: u32) -> Result<StreamStats> {
    let mut stats = StreamStats::default();
    let chunks = std::mem::take(&mut extent.chunks);
    let mut i = 0;
    while i < chunks.len() {
        let end = run_end(&chunks, i, small);
        if end - i < SMALL_RUN {
            extent.chunks.extend_from_slice(&chunks[i..end.max(i + 1)]);
            i = end.max(i + 1);
            continue;
        }
        let bytes: Vec<Vec<u8>> = pipeline::read_stream(repo, chunks[i..end].to_vec(), 4).try_collect().await?;
        let (refs, s) = pipeline::store_stream(repo, known, Cursor::new(bytes.concat()), pipeline::default_workers()).await?;
        extent.chunks.extend(refs);
        stats.bytes += s.bytes;
        stats.chunks += s.chunks;
        stats.new_chunks += s.new_chunks;
        stats.new_stored_bytes += s.new_stored_bytes;
        i = end;
    }
    Ok(stats)
}

/// The end of the run of small chunks starting at `from` (`from` itself
/// when that chunk is not small), at most [`RUN_BYTES`] long.
fn run_end(chunks: &[ChunkRef], from: usize, small: u32) -> usize {
    let mut bytes = 0u64;
    let mut end = from;
    while end < chunks.len() && chunks[end].size < small && bytes + u64::from(chunks[end].size) <= RUN_BYTES {
        bytes += u64::from(chunks[end].size);
        end += 1;
    }
    end
}

#[cfg(test)]
mod tests {
    use super::*;
    use lifeboat_repository::manifest::EntryKind;

    fn seg(path: &str, sizes: &[u32]) -> Entry {
        let chunks: Vec<ChunkRef> = sizes.iter().enumerate().map(|(i, s)| ChunkRef { id: format!("{path}#{i}"), size: *s }).collect();
        Entry {
            path: path.into(),
            kind: EntryKind::File,
            mode: 0o600,
            size: sizes.iter().map(|s| u64::from(*s)).sum(),
            mtime: 0,
            target: None,
            extent: Some(Extent { skip: 0, chunks }),
            blake3: None,
        }
    }

    #[test]
    fn merges_adjacent_segments_of_a_partition_only_up_to_the_limit() {
        let big = (MERGE_LIMIT - 10) as u32;
        let entries = vec![
            seg("topics/t/0/00000000000000000000", &[100, 200]),
            seg("topics/t/0/00000000000000000005", &[50]),
            seg("topics/t/0/00000000000000000009", &[big]),
            seg("topics/t/1/00000000000000000000", &[7]),
            seg("topics/t/1/00000000000000000003", &[8]),
        ];
        let merged = merge(entries);
        let paths: Vec<(&str, u64, usize)> =
            merged.iter().map(|e| (e.path.as_str(), e.size, e.extent.as_ref().unwrap().chunks.len())).collect();
        assert_eq!(
            paths,
            vec![
                ("topics/t/0/00000000000000000000", 350, 3),
                ("topics/t/0/00000000000000000009", u64::from(big), 1),
                ("topics/t/1/00000000000000000000", 15, 2),
            ]
        );
        let ids: Vec<&str> = merged[0].extent.as_ref().unwrap().chunks.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(ids, ["topics/t/0/00000000000000000000#0", "topics/t/0/00000000000000000000#1", "topics/t/0/00000000000000000005#0"]);
    }

    #[test]
    fn a_segment_its_extent_does_not_cover_exactly_is_never_merged() {
        let mut odd = seg("topics/t/0/00000000000000000005", &[50]);
        odd.size = 40; // the extent holds more than the segment
        let merged = merge(vec![seg("topics/t/0/00000000000000000000", &[10]), odd]);
        assert_eq!(merged.len(), 2);
    }

    #[test]
    fn runs_of_small_chunks_end_at_a_usual_chunk_or_the_byte_bound() {
        let c = |size| ChunkRef { id: String::new(), size };
        let chunks = vec![c(10), c(10), c(300), c(10)];
        assert_eq!(run_end(&chunks, 0, 256), 2);
        assert_eq!(run_end(&chunks, 2, 256), 2);
        assert_eq!(run_end(&chunks, 3, 256), 4);
        let many = vec![c(RUN_BYTES as u32 / 2); 4];
        assert_eq!(run_end(&many, 0, u32::MAX), 2);
    }
}
