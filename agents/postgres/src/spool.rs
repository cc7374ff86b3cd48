//! The archive spool: a background pusher that keeps archiving a backlog of
//! `.ready` WAL files while Postgres' archiver works through them one
//! `archive_command` call at a time (as pgBackRest's `archive-async`).
//!
//! Postgres calls `archive_command` once per file, in order, and waits for
//! each. With a backlog, a `wal-push` call starts one spooler process for the
//! `pg_wal` directory (if none runs) and waits for it to archive the file it
//! was asked for; the spooler meanwhile pushes the following files, `parallel`
//! at once, so their compression overlaps the archiver's calls instead of
//! waiting for them.
//!
//! Safety rules:
//! - the spooler marks a file in `pg_wal/lifeboat_archived/` only after it is
//!   durable (the store's barrier ran after its write); a call reports
//!   success for a marked file only after checking the object exists;
//! - no queue: the spooler reads the `.ready` files Postgres keeps, so
//!   nothing is dropped when it is slow, stopped or killed;
//! - the spooler stops at its first failure; the waiting call then pushes the
//!   file itself, so Postgres sees the real error and retries;
//! - one spooler per `pg_wal` and destination (an exclusive file lock,
//!   released by the kernel when the process dies), which exits after `idle`
//!   with nothing to push; markers are kept per destination, so a second
//!   archive command into another repository has its own.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use lifeboat_repository::{RepoError, Repository};
use tokio::task::JoinSet;

use crate::archive::{self, io, WalError, MARKER_DIR};
use crate::helper_lock::HelperDir;
use crate::walname::WalFile;

const LOCK_FILE: &str = "spool.lock";

/// How a spooler run ended.
#[derive(Debug, Default, serde::Serialize)]
pub struct SpoolReport {
    /// False when another spooler already held the lock (nothing done).
    pub ran: bool,
    /// Files archived and marked.
    pub archived: usize,
}

/// The spool of one `pg_wal` for one destination (repository and cell):
/// `pg_wal/lifeboat_archived/<destination key>/` holds its lock and
/// markers, so that two archive commands into two repositories (`wal-push
/// --repo A && wal-push --repo B`) never take each other's markers or wait
/// for each other's spooler.
#[derive(Debug, Clone)]
pub struct Spool(HelperDir);

impl Spool {
    pub fn new(wal_dir: &Path, repo_url: &str, cell: &str) -> Spool {
        Spool(HelperDir::new(wal_dir, MARKER_DIR, LOCK_FILE, repo_url, cell))
    }

    /// Is a spooler running for this `pg_wal` and destination?
    pub fn running(&self) -> bool {
        self.0.running()
    }

    /// `.ready` files other than those in `exclude` and not yet marked,
    /// oldest name first.
    pub fn backlog(&self, exclude: &BTreeSet<String>) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(self.0.wal_dir.join("archive_status")) else { return Vec::new() };
        let mut names: Vec<String> = entries
            .flatten()
            .filter_map(|e| e.file_name().to_str().and_then(|n| n.strip_suffix(".ready")).map(String::from))
            .filter(|n| !exclude.contains(n) && WalFile::parse(n).is_some() && !self.0.dir.join(n).exists())
            .collect();
        names.sort();
        names
    }

    /// If the spooler archived `name`, return true once the object is
    /// confirmed in the repository, consuming the marker. A marker whose
    /// object is gone is removed and ignored (the caller pushes the file);
    /// one that cannot be checked now stays for the retry.
    pub async fn take_marker(&self, repo: &Repository, cell: &str, name: &str) -> Result<bool, WalError> {
        let marker = self.0.dir.join(name);
        if !marker.exists() {
            return Ok(false);
        }
        let stored = repo.store().head(&archive::object_path(cell, name)?).await.map_err(RepoError::from)?.is_some();
        let _ = std::fs::remove_file(&marker);
        Ok(stored)
    }

    /// Wait until `name` is marked, while a spooler may still mark it: one
    /// runs, or `starting` (the spooler this call started) has not exited
    /// yet. Gives up after `limit`. True when the marker is there.
    pub async fn wait_for(&self, name: &str, mut starting: Option<&mut std::process::Child>, limit: Duration) -> bool {
        let marker = self.0.dir.join(name);
        let deadline = Instant::now() + limit;
        loop {
            if marker.exists() {
                return true;
            }
            let child_alive = starting.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None)));
            if !child_alive && !self.running() {
                // It may have marked the file just before letting go.
                return marker.exists();
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// Run the spooler: push every unmarked `.ready` file, `parallel` at
    /// once, oldest first, marking each once durable, until nothing has been
    /// ready for `idle`. Returns at once (ran = false) when another spooler
    /// holds the lock.
    pub async fn run(&self, repo: &Repository, cell: &str, parallel: usize, idle: Duration) -> Result<SpoolReport, WalError> {
        let Some(_lock) = self.0.lock().map_err(io(format!("locking {}", self.0.dir.display())))? else {
            return Ok(SpoolReport::default());
        };
        self.remove_stale_markers();
        let mut report = SpoolReport { ran: true, archived: 0 };
        // Read again before each round of pushes: a fence raised meanwhile stops the next one.
        let mut fence = None;
        // Everything this run pushed: never pushed twice, even in the moment
        // between a call consuming its marker and Postgres marking it done.
        let mut seen = BTreeSet::new();
        let mut in_flight: JoinSet<(String, Result<archive::PushOutcome, WalError>)> = JoinSet::new();
        let mut idle_since = Instant::now();
        let mut failure = None;
        // Start pushes up to `parallel` in flight.
        let refill = |in_flight: &mut JoinSet<_>,
                      seen: &mut BTreeSet<String>,
                      ready: Vec<String>,
                      fence: Option<&lifeboat_repository::fence::Fence>| {
            for name in ready.into_iter().take(parallel.saturating_sub(in_flight.len())) {
                seen.insert(name.clone());
                let (repo, cell, path) = (repo.clone(), cell.to_string(), self.0.wal_dir.join(&name));
                let refused = crate::fence::check_wal(fence, &cell, &name);
                in_flight.spawn(async move {
                    let outcome = match refused {
                        Ok(()) => archive::store_file(&repo, &cell, &path).await,
                        Err(e) => Err(e),
                    };
                    (name, outcome)
                });
            }
        };
        loop {
            let ready = if failure.is_none() { self.backlog(&seen) } else { Vec::new() };
            if !ready.is_empty() {
                fence = crate::fence::in_force(repo, cell).await?;
                refill(&mut in_flight, &mut seen, ready, fence.as_ref());
            }
            let Some(first) = in_flight.join_next().await else {
                if failure.is_some() || idle_since.elapsed() >= idle || !self.0.wal_dir.is_dir() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            };
            // Everything finished by now shares one durability barrier.
            let mut done = vec![first.expect("a push task does not panic")];
            while let Some(more) = in_flight.try_join_next() {
                done.push(more.expect("a push task does not panic"));
            }
            let stored: Vec<String> = done
                .into_iter()
                .filter_map(|(name, outcome)| match outcome {
                    Ok(_) => Some(name),
                    Err(e) => {
                        tracing::warn!(file = %name, error = %e, "spooler stops; the archive_command call for this file pushes it itself");
                        failure.get_or_insert(e);
                        None
                    }
                })
                .collect();
            if !stored.is_empty() {
                // Keep the cores busy while the barrier waits for the disk.
                if failure.is_none() {
                    let ready = self.backlog(&seen);
                    refill(&mut in_flight, &mut seen, ready, fence.as_ref());
                }
                repo.store().sync().await.map_err(RepoError::from)?;
                for name in stored {
                    std::fs::write(self.0.dir.join(&name), b"").map_err(io(format!("marking {name} archived")))?;
                    report.archived += 1;
                }
            }
            idle_since = Instant::now();
        }
        match failure {
            Some(e) => Err(e),
            None => Ok(report),
        }
    }

    /// Markers of files no longer `.ready`: archived, and their marker was
    /// consumed or left by a run that died.
    fn remove_stale_markers(&self) {
        let Ok(entries) = std::fs::read_dir(&self.0.dir) else { return };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if WalFile::parse(name).is_some() && !self.0.wal_dir.join("archive_status").join(format!("{name}.ready")).exists() {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}
