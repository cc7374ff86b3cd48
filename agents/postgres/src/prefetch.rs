//! WAL prefetch for recovery: a background fetcher that keeps the next
//! segments, verified, in `pg_wal/lifeboat_prefetch/` so that Postgres'
//! `restore_command` calls find them there instead of waiting for the
//! repository (as pgBackRest's asynchronous `archive-get`).
//!
//! Postgres runs `restore_command` once per segment and replays it before it
//! asks for the next. `wal-fetch` of segment N starts one prefetcher for the
//! `pg_wal` directory (if none runs) and records N as the segment recovery
//! wants; the prefetcher fetches N+1 .. N+depth on N's timeline, `parallel`
//! at once, verifying each (seal, AEAD tag) before it writes it, whole, under
//! its name. The next call moves its file into place with one rename.
//!
//! Rules:
//! - only verified bytes are written, and only whole (temporary file, then
//!   rename), so a file found in the directory is safe to hand to Postgres;
//!   files are taken only while a prefetcher runs, and each run first deletes
//!   what an earlier (killed) one left;
//! - a segment the repository lacks is retried (the archive may still be
//!   growing) but never invented; an error stops prefetching, and the call
//!   for that segment then fetches it itself and reports the error;
//! - the window follows what recovery asks for: files it has passed or of
//!   another timeline are deleted; the directory holds at most `depth`
//!   segments (16 MiB each);
//! - the prefetcher stops when the server's `postmaster.pid` is gone or
//!   recovery has asked for nothing new for `idle`, and deletes what it
//!   fetched that was not used.

use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, Instant};

use lifeboat_repository::Repository;
use tokio::task::JoinSet;

use crate::archive::{self, io, WalError};
use crate::helper_lock::{self, HelperDir};
use crate::walname::{segment_name, WalFile};

pub const PREFETCH_DIR: &str = "lifeboat_prefetch";
const LOCK_FILE: &str = "prefetch.lock";
/// The segment recovery asked for last, written by each `wal-fetch`.
const WANT_FILE: &str = "want";

/// The prefetch directory for a `restore_command` destination (`%p`, which
/// Postgres puts in `pg_wal`), when `name` is a segment: one per
/// destination (repository and cell), `pg_wal/lifeboat_prefetch/<key>/`, so
/// a prefetcher started for another repository is never taken from.
pub fn dir_for(dest: &Path, name: &str, repo_url: &str, cell: &str) -> Option<HelperDir> {
    let wal_dir = dest.parent()?;
    let is_segment = matches!(WalFile::parse(name), Some(WalFile::Segment { .. }));
    (is_segment && wal_dir.file_name()? == "pg_wal").then(|| HelperDir::new(wal_dir, PREFETCH_DIR, LOCK_FILE, repo_url, cell))
}

/// Move the prefetched `name` to `dest`; its size, or `None` when it has not
/// been prefetched. Only a running prefetcher's files are taken: each run
/// starts by deleting whatever an earlier one left.
pub fn take(dir: &HelperDir, name: &str, dest: &Path) -> Result<Option<u64>, WalError> {
    if !dir.running() {
        return Ok(None);
    }
    let from = dir.dir.join(name);
    match std::fs::rename(&from, dest) {
        Ok(()) => Ok(Some(std::fs::metadata(dest).map_err(io(format!("reading {}", dest.display())))?.len())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io(format!("moving {} to {}", from.display(), dest.display()))(e)),
    }
}

/// Wait (at most `limit`) for the prefetcher of data directory `data_dir`
/// to finish, as it does once the server is stopped; before deleting the
/// directory it writes into.
pub fn wait_stopped(data_dir: &Path, limit: Duration) {
    let Ok(entries) = std::fs::read_dir(data_dir.join("pg_wal").join(PREFETCH_DIR)) else { return };
    let deadline = Instant::now() + limit;
    for dir in entries.flatten().map(|e| e.path()) {
        while helper_lock::held(&dir.join(LOCK_FILE)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Record `name` as the segment recovery wants now (creating the directory).
pub fn record_want(helper: &HelperDir, name: &str) -> Result<(), WalError> {
    let dir = &helper.dir;
    helper.create().map_err(io(format!("creating {}", dir.display())))?;
    let tmp = dir.join(format!(".{WANT_FILE}.{}", std::process::id()));
    std::fs::write(&tmp, name).and_then(|()| std::fs::rename(&tmp, dir.join(WANT_FILE))).map_err(io(format!("writing {}", tmp.display())))
}

fn read_want(dir: &Path) -> Option<(u32, u64)> {
    match WalFile::parse(std::fs::read_to_string(dir.join(WANT_FILE)).ok()?.trim())? {
        WalFile::Segment { timeline, segno } => Some((timeline, segno)),
        _ => None,
    }
}

/// How a prefetcher run ended.
#[derive(Debug, Default, serde::Serialize)]
pub struct PrefetchReport {
    /// False when another prefetcher already held the lock (nothing done).
    pub ran: bool,
    /// Segments fetched and written.
    pub fetched: usize,
    /// Of those, deleted unused at the end.
    pub unused: usize,
}

/// Run the prefetcher in `helper` (see the module docs).
pub async fn run(
    repo: &Repository,
    cell: &str,
    helper: &HelperDir,
    depth: usize,
    parallel: usize,
    idle: Duration,
) -> Result<PrefetchReport, WalError> {
    let dir = helper.dir.as_path();
    let Some(_lock) = helper.lock().map_err(io(format!("locking {}", dir.display())))? else {
        return Ok(PrefetchReport::default());
    };
    // Files left by a prefetcher that was killed are not trusted.
    drop_passed(dir, None);
    let postmaster_pid = helper.wal_dir.parent().unwrap_or(Path::new("")).join("postmaster.pid");
    let mut report = PrefetchReport { ran: true, ..Default::default() };
    let mut want = read_want(dir);
    let mut next = want.map(|(_, segno)| segno + 1).unwrap_or(0);
    let mut last_change = Instant::now();
    let mut retry_at = Instant::now();
    let mut stopped = false;
    let mut in_flight: JoinSet<(String, Result<bool, WalError>)> = JoinSet::new();
    let mut fetching: HashSet<String> = HashSet::new();
    loop {
        if !postmaster_pid.exists() || last_change.elapsed() >= idle {
            break;
        }
        let now_wanted = read_want(dir);
        if now_wanted != want {
            last_change = Instant::now();
            if let Some((timeline, segno)) = now_wanted {
                // Recovery moved on, jumped, or changed timeline: restart the window there.
                let same_timeline = want.is_some_and(|(t, _)| t == timeline);
                if !same_timeline || next <= segno || next > segno + depth as u64 + 1 {
                    next = segno + 1;
                }
                retry_at = Instant::now();
            }
            want = now_wanted;
            drop_passed(dir, want);
        }
        let Some((timeline, segno)) = want else { break };
        while !stopped && in_flight.len() < parallel && next <= segno + depth as u64 && Instant::now() >= retry_at {
            let name = segment_name(timeline, next);
            next += 1;
            // A window restart can come back to a segment still being fetched.
            if !fetching.insert(name.clone()) {
                continue;
            }
            let (repo, cell, dir) = (repo.clone(), cell.to_string(), dir.to_path_buf());
            in_flight.spawn(async move {
                let result = fetch_into(&repo, &cell, &dir, &name).await;
                (name, result)
            });
        }
        let finished = tokio::select! {
            Some(done) = in_flight.join_next() => Some(done.expect("a fetch task does not panic")),
            _ = tokio::time::sleep(Duration::from_millis(5)) => None,
        };
        if let Some((name, _)) = &finished {
            fetching.remove(name);
        }
        match finished {
            Some((_, Ok(true))) => report.fetched += 1,
            // Not archived (yet): fetch from there again shortly.
            Some((name, Ok(false))) => {
                if let Some(WalFile::Segment { timeline: t, segno: n }) = WalFile::parse(&name) {
                    if t == timeline {
                        next = next.min(n);
                    }
                }
                retry_at = Instant::now() + Duration::from_millis(250);
            }
            Some((name, Err(e))) => {
                tracing::warn!(file = %name, error = %e, "prefetch stops; the restore_command call for this file fetches it itself");
                stopped = true;
            }
            None => {}
        }
    }
    // Let the fetches under way finish (a blocking write cannot be
    // cancelled), then delete what recovery did not take, including what a
    // killed prefetcher left: it is of no use to anyone now.
    while in_flight.join_next().await.is_some() {}
    report.unused = drop_passed(dir, None);
    Ok(report)
}

/// Fetch segment `name` into `dir`; false when it is not archived.
async fn fetch_into(repo: &Repository, cell: &str, dir: &Path, name: &str) -> Result<bool, WalError> {
    let dest = dir.join(name);
    if dest.exists() {
        return Ok(true);
    }
    match archive::read(repo, cell, name).await? {
        Some(data) => archive::write_whole(&dest, data).await.map(|()| true),
        None => Ok(false),
    }
}

/// Delete prefetched segments recovery has taken or passed, or will not
/// ask for (another timeline); with `want` None, all of them and any
/// temporary files. Returns how many segments were deleted.
fn drop_passed(dir: &Path, want: Option<(u32, u64)>) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    let mut dropped = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let passed = match WalFile::parse(name) {
            Some(WalFile::Segment { timeline, segno }) => want.is_none_or(|(t, s)| timeline != t || segno <= s),
            _ => want.is_none() && name.starts_with('.') && name.contains(".lifeboat-"),
        };
        if passed && std::fs::remove_file(entry.path()).is_ok() {
            dropped += usize::from(!name.starts_with('.'));
        }
    }
    dropped
}
