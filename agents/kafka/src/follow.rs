//! The continuous snapshot mode: a long-running tail that seals what it
//! read every few seconds, so a Tier-1 cell's Kafka is recoverable to
//! seconds ago rather than to its last scheduled snapshot.
//!
//! Each seal ([`crate::snapshot::seal`]) is a small manifest of kind
//! `kafka-seal` holding only the records since the snapshot or seal before
//! it, with the group offsets and configs of that instant. It is resumable
//! by construction: a seal starts where the newest one listed ended, so a
//! follower killed at any point and started again (here or on another
//! host) goes on with no gap and no duplicate; a seal cut off before its
//! manifest was written commits nothing. When nothing changed, a seal is
//! written only once the previous one is older than the idle interval, so
//! an idle cell stays current without a manifest every few seconds.
//!
//! The plan's scheduled snapshot (a regular one) folds the seals into a
//! self-contained manifest ([`crate::compact`]); retention deletes folded
//! seals. Only one writer should follow a cell: a second one's seals are
//! skipped by readers and it restarts from the newest listed point.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use lifeboat_repository::Repository;

use crate::snapshot::{self, SnapshotRequest};
use crate::stored::{self, Snapshot};
use crate::Result;

/// A failed seal is retried after this, doubling up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// One cell's follower: where its next seal continues from.
pub struct Follower {
    repo: Repository,
    req: SnapshotRequest,
    /// Write a seal when nothing changed once the previous one is this old.
    idle: Duration,
    previous: Option<Snapshot>,
    /// The newest regular snapshot when `previous` was listed.
    base: Option<String>,
    /// The seals `previous` stands on since `base` (all must still be listed).
    chain: Vec<String>,
    /// Held through each tick: shared with what must not write the cell's
    /// Kafka snapshots at the same time (the agent's snapshot jobs).
    writers: Arc<tokio::sync::Mutex<()>>,
}

impl Follower {
    pub fn new(repo: Repository, req: SnapshotRequest, idle: Duration) -> Follower {
        Follower { repo, req, idle, previous: None, base: None, chain: Vec::new(), writers: Arc::default() }
    }

    /// Hold `writers` through each tick.
    pub fn sharing(self, writers: Arc<tokio::sync::Mutex<()>>) -> Follower {
        Follower { writers, ..self }
    }

    /// Seal once. The first tick (and any tick after another writer added a
    /// snapshot or seal, or a seal it stands on went) lists the repository
    /// to find where to continue; a cell with no snapshot yet gets a
    /// regular full one. `None`: nothing changed and the previous seal is recent.
    pub async fn tick(&mut self) -> Result<Option<Snapshot>> {
        let writers = self.writers.clone();
        let _held = writers.lock().await;
        let ids = stored::ids(&self.repo, &self.req.cell).await?;
        let base = stored::newest_regular(&ids).cloned();
        let ours = self.previous.as_ref().map(|p| &p.manifest.id);
        let lost = self.chain.iter().any(|seal| !ids.contains(seal));
        if ours.is_none() || ours != ids.last() || base != self.base || lost {
            let listed = stored::list(&self.repo, &self.req.cell).await?;
            self.chain = listed.iter().filter(|s| s.is_seal()).map(|s| s.manifest.id.clone()).collect();
            self.previous = listed.into_iter().last();
            self.base = base;
        }
        let sealed = match &self.previous {
            Some(previous) => snapshot::seal(&self.repo, &self.req, previous, self.idle).await?,
            None => {
                let (manifest, details) = snapshot::snapshot(&self.repo, &self.req).await?;
                self.base = Some(manifest.id.clone());
                Some(Snapshot { manifest, details })
            }
        };
        if let Some(s) = &sealed {
            if s.is_seal() {
                self.chain.push(s.manifest.id.clone());
            }
            self.previous = Some(s.clone());
        }
        Ok(sealed)
    }
}

/// Seal every `every` until `stop` resolves, telling `report` what each
/// tick did. A failed tick is retried after a backoff (1 s doubling up to a
/// minute); the follower never gives up on its own.
pub async fn follow(
    mut follower: Follower,
    every: Duration,
    mut report: impl FnMut(&Result<Option<Snapshot>>),
    stop: impl Future<Output = ()>,
) {
    tokio::pin!(stop);
    let mut wait = Duration::ZERO;
    let mut backoff = FIRST_BACKOFF;
    loop {
        tokio::select! {
            _ = &mut stop => return,
            _ = tokio::time::sleep(wait) => {}
        }
        let started = tokio::time::Instant::now();
        let result = follower.tick().await;
        report(&result);
        wait = match result {
            Ok(_) => {
                backoff = FIRST_BACKOFF;
                every.saturating_sub(started.elapsed())
            }
            Err(_) => {
                let w = backoff;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                w
            }
        };
    }
}
