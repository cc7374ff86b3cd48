//! The data path: cutting a byte stream into content-defined chunks and
//! storing them in parallel, and reading chunks back in order.
//!
//! Memory is bounded whatever the size of the stream: at most
//! `2 * workers` chunks wait between the chunker and the workers, and at
//! most `workers` are being sealed or uploaded (each at most the chunker's
//! max size, 4 MiB by default).

use std::collections::HashSet;
use std::io::Read;
use std::sync::{Arc, Mutex};

use fastcdc::v2020::{Normalization, StreamCDC};
use futures::{Stream, StreamExt};
use tokio_stream::wrappers::ReceiverStream;

use crate::error::{RepoError, Result};
use crate::format;
use crate::manifest::ChunkRef;
use crate::repo::Repository;

/// How many chunks are sealed and uploaded at once.
pub fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get()).clamp(2, 16) * 2
}

/// Chunk ids known to exist in the repository (listed at start, plus what
/// this run stored), so each is uploaded at most once.
#[derive(Debug, Default, Clone)]
pub struct KnownChunks(Arc<Mutex<HashSet<String>>>);

impl KnownChunks {
    pub async fn load(repo: &Repository) -> Result<Self> {
        let ids = repo.list_chunks().await?.into_keys().collect();
        Ok(KnownChunks(Arc::new(Mutex::new(ids))))
    }

    pub fn contains(&self, id: &str) -> bool {
        self.0.lock().unwrap().contains(id)
    }

    fn insert(&self, id: String) {
        self.0.lock().unwrap().insert(id);
    }
}

/// What storing a stream produced.
#[derive(Debug, Default, Clone)]
pub struct StreamStats {
    pub bytes: u64,
    pub chunks: u64,
    pub new_chunks: u64,
    pub new_stored_bytes: u64,
}

/// Every chunk a new manifest references must be present before the
/// commit point (a concurrent prune may have removed one it found).
pub async fn ensure_present<'a>(repo: &Repository, chunks: impl Iterator<Item = &'a ChunkRef>) -> Result<()> {
    let present = repo.list_chunks().await?;
    let mut chunks = chunks;
    if let Some(missing) = chunks.find(|c| !present.contains_key(&c.id)) {
        return Err(RepoError::Invalid(format!(
            "chunk {} vanished from {} during the backup; the backup was not committed, run it again",
            missing.id,
            repo.location()
        )));
    }
    Ok(())
}

/// Cut `reader` into chunks and store the new ones. Returns the ordered chunk
/// list. The reader runs on a blocking thread; its I/O errors end the run.
pub async fn store_stream<R: Read + Send + 'static>(
    repo: &Repository,
    known: &KnownChunks,
    reader: R,
    workers: usize,
) -> Result<(Vec<ChunkRef>, StreamStats)> {
    let c = &repo.config().chunking;
    let (min, avg, max) = (c.min_size, c.avg_size, c.max_size);
    let seed = repo.chunker_seed();
    let (tx, rx) = tokio::sync::mpsc::channel::<Vec<u8>>(workers * 2);
    let chunker = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
        let cdc = StreamCDC::with_level_and_seed(reader, min, avg, max, Normalization::Level1, seed);
        for chunk in cdc {
            let chunk = chunk.map_err(std::io::Error::from)?;
            if tx.blocking_send(chunk.data).is_err() {
                break; // the consumer failed and hung up; its error wins
            }
        }
        Ok(())
    });

    // Boxed, not pinned on the stack: dropping it below must really drop
    // the receiver, or a chunker with more to send waits forever.
    let mut stored = Box::pin(
        ReceiverStream::new(rx)
            .map(|data| {
                let repo = repo.clone();
                let known = known.clone();
                async move {
                    let size = data.len() as u32;
                    let sealing = {
                        let repo = repo.clone();
                        let known = known.clone();
                        tokio::task::spawn_blocking(move || {
                            let id = repo.chunk_id(&data);
                            if known.contains(&id) {
                                return (id, None);
                            }
                            let sealed = repo.seal(&format::chunk_path(&id), &data);
                            (id, Some(sealed))
                        })
                    };
                    let (id, sealed) = sealing.await.expect("sealing does not panic");
                    let mut uploaded = 0u64;
                    if let Some(sealed) = sealed {
                        let len = sealed.len() as u64;
                        if repo.put_sealed_chunk(&id, sealed).await? {
                            uploaded = len;
                        }
                        known.insert(id.clone());
                    }
                    Ok::<_, RepoError>((ChunkRef { id, size }, uploaded))
                }
            })
            .buffered(workers),
    );

    let mut refs = Vec::new();
    let mut stats = StreamStats::default();
    let mut failure = None;
    while let Some(result) = stored.next().await {
        match result {
            Ok((chunk, uploaded)) => {
                stats.bytes += chunk.size as u64;
                stats.chunks += 1;
                if uploaded > 0 {
                    stats.new_chunks += 1;
                    stats.new_stored_bytes += uploaded;
                }
                refs.push(chunk);
            }
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    drop(stored); // hang up so the chunker stops
    let read_result = chunker.await.expect("chunker does not panic");
    if let Some(e) = failure {
        return Err(e);
    }
    read_result.map_err(RepoError::io("reading backup source"))?;
    Ok((refs, stats))
}

/// Fetch and verify chunks in order, `workers` at a time.
pub fn read_stream(repo: &Repository, chunks: Vec<ChunkRef>, workers: usize) -> impl Stream<Item = Result<Vec<u8>>> + Send + 'static {
    let repo = repo.clone();
    futures::stream::iter(chunks)
        .map(move |chunk| {
            let repo = repo.clone();
            async move {
                let data = repo.read_chunk(&chunk.id).await?;
                if data.len() != chunk.size as usize {
                    return Err(RepoError::Corrupt {
                        key: format::chunk_path(&chunk.id).to_string(),
                        reason: format!("{} bytes where the manifest says {}", data.len(), chunk.size),
                    });
                }
                Ok(data)
            }
        })
        .buffered(workers)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use lifeboat_storage::faults::FaultyStore;
    use lifeboat_storage::fs::FileStore;

    use super::*;
    use crate::format::Chunking;
    use crate::repo::InitOptions;

    /// Incompressible, repeatable bytes (xorshift).
    fn noise(len: usize) -> Vec<u8> {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    /// A store that fails mid-stream ends the stream with its error, even
    /// when the source still holds far more chunks than the pipeline has
    /// room for (the chunker must be let go, not left waiting to send).
    #[tokio::test]
    async fn a_store_failing_mid_stream_ends_it_with_the_error() {
        let dir = tempfile::tempdir().unwrap();
        let faulty = Arc::new(FaultyStore::new(Arc::new(FileStore::new(dir.path()))));
        let chunking = Chunking { algorithm: "fastcdc-2020".into(), min_size: 1 << 10, avg_size: 4 << 10, max_size: 16 << 10 };
        let repo = Repository::init(faulty.clone(), None, InitOptions { chunking, ..Default::default() }).await.unwrap();
        faulty.crash_after_puts(3);
        let source = std::io::Cursor::new(noise(4 << 20)); // about 1000 chunks
        let stored = tokio::time::timeout(Duration::from_secs(60), store_stream(&repo, &KnownChunks::default(), source, 2))
            .await
            .expect("the stream ends instead of waiting forever");
        let e = stored.expect_err("the store failed");
        assert!(faulty.injected() > 0);
        assert!(e.to_string().contains("injected crash"), "{e}");
    }
}
