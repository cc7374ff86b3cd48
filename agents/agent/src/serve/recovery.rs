//! `GET /v1/recovery`: how far this cell can be recovered from each of its
//! locations (the primary repository and every geo-copy), read from the
//! repositories themselves: Postgres (newest backups, newest gap-free WAL
//! and when it was archived) and Kafka (newest snapshot and the instant its
//! high watermarks were read). When Postgres has written nothing beyond a
//! location's newest segment, that location holds everything up to the
//! moment Postgres was asked (an idle cell is not exposed). A copy location is dated by the primary's
//! archive times and by the start of its last complete copy pass, so it is
//! never credited with more than was verified there.

use std::collections::HashMap;

use time::OffsetDateTime;

use lifeboat_api::recovery::{KafkaRecoverable, LocationPoint, LocationRole, Recovery, PRIMARY};
use lifeboat_postgres::lsn::Lsn;
use lifeboat_postgres::recoverable::{credit_written, recoverable, wal_times, written_through};
use lifeboat_repository::Repository;

use super::Agent;

async fn kafka_point(repo: &Repository, cell: &str) -> anyhow::Result<KafkaRecoverable> {
    let snapshots = lifeboat_kafka::stored::list(repo, cell).await?;
    let newest = snapshots.last();
    Ok(KafkaRecoverable {
        snapshots: snapshots.len() as u64,
        last_snapshot: newest.map(|s| s.manifest.id.clone()),
        recoverable_to: newest.map(|s| s.manifest.started),
    })
}

/// The earlier of two optional instants (None when either is missing).
fn cap(point: Option<OffsetDateTime>, limit: Option<OffsetDateTime>) -> Option<OffsetDateTime> {
    Some(point?.min(limit?))
}

/// How far Postgres had written WAL, and when it said so (None: no
/// Postgres configured, or it did not answer within 5 s).
async fn written(agent: &Agent) -> Option<(Lsn, OffsetDateTime)> {
    let server = agent.pg.as_ref()?;
    let checked = OffsetDateTime::now_utc();
    match tokio::time::timeout(std::time::Duration::from_secs(5), written_through(server)).await {
        Ok(Ok(lsn)) => Some((lsn, checked)),
        Ok(Err(e)) => {
            tracing::debug!("reading Postgres' WAL position: {e}");
            None
        }
        Err(_) => None,
    }
}

/// Fill in what `repo` (at `point`'s location) can recover. `here` is the
/// location's WAL listing; `dating`, for a copy, the primary's, whose
/// archive times date its segments; a copy is also capped at its last
/// complete pass.
async fn fill(
    point: &mut LocationPoint,
    repo: &Repository,
    cell: &str,
    here: Result<&HashMap<String, OffsetDateTime>, &String>,
    dating: Option<&HashMap<String, OffsetDateTime>>,
    written: Option<(Lsn, OffsetDateTime)>,
) {
    let copy = point.role == LocationRole::Copy;
    let pg = match here {
        Ok(here) => recoverable(repo, cell, here, dating).await.map_err(|e| format!("{e:#}")),
        Err(e) => Err(e.clone()),
    };
    match pg {
        Ok(mut p) => {
            if let Some((lsn, at)) = written {
                credit_written(&mut p, lsn, at);
            }
            if copy {
                p.recoverable_to = cap(p.recoverable_to, point.copied_through);
            }
            point.postgres = Some(p);
        }
        Err(e) => point.error = Some(e),
    }
    match kafka_point(repo, cell).await {
        Ok(mut k) => {
            if copy {
                k.recoverable_to = cap(k.recoverable_to, point.copied_through);
            }
            point.kafka = Some(k);
        }
        Err(e) => point.error = Some(format!("{e:#}")),
    }
}

/// The start of the newest complete copy pass into `repo`, by its marker.
async fn marked(repo: &Repository) -> Option<OffsetDateTime> {
    match lifeboat_repository::copy_marker::read(repo).await {
        Ok(m) => m.map(|m| m.started),
        Err(e) => {
            tracing::warn!("reading the copy marker of {}: {e}", repo.location());
            None
        }
    }
}

/// Guest `cell`'s repository at `url`, under its key (`--guest-key-file`, else the agent's).
pub async fn open_guest(agent: &Agent, cell: &str, url: &str) -> anyhow::Result<Repository> {
    let key = match agent.config.guest_key(cell) {
        Some(path) => Some(lifeboat_repository::Key::from_file(path)?),
        None => agent.repo.key().cloned(),
    };
    Ok(Repository::open(crate::context::store(url).await?, key).await?)
}

/// A guest cell's points, per `--guest` location (plan names). Each
/// location is dated by its own archive times and is not capped by a copy
/// pass (this agent does not copy the guest): what the repository holds.
/// A copy location's marker says when its last complete pass started
/// (`copied_through`).
pub async fn compute_guest(agent: &Agent, cell: &str) -> Option<Recovery> {
    let guests = agent.config.guest_locations(cell);
    if guests.is_empty() {
        return None;
    }
    let computed_at = OffsetDateTime::now_utc();
    let mut locations = Vec::new();
    for g in guests {
        let mut point = LocationPoint::new(&g.location, LocationRole::Primary);
        match open_guest(agent, cell, &g.url).await {
            Ok(repo) => {
                point.copied_through = marked(&repo).await;
                let here = wal_times(&repo, cell).await.map_err(|e| format!("{e:#}"));
                fill(&mut point, &repo, cell, here.as_ref(), None, None).await;
            }
            Err(e) => point.error = Some(format!("{e:#}")),
        }
        locations.push(point);
    }
    let standby = super::standbys::of(agent, cell).await;
    Some(Recovery { cell: cell.to_string(), computed_at, locations, standby })
}

pub async fn compute(agent: &Agent) -> Recovery {
    let cell = agent.config.cell.as_str();
    let computed_at = OffsetDateTime::now_utc();
    let written = written(agent).await;
    let primary_times = wal_times(&agent.repo, cell).await.map_err(|e| format!("{e:#}"));
    let mut primary = LocationPoint::new(PRIMARY, LocationRole::Primary);
    fill(&mut primary, &agent.repo, cell, primary_times.as_ref(), None, written).await;
    let mut locations = vec![primary];
    for (name, url) in &agent.config.copy_to {
        let copied_through = agent.geo_copy.synced(name);
        let mut point = LocationPoint { copied_through, ..LocationPoint::new(name, LocationRole::Copy) };
        let opened = async {
            let store = crate::context::store(url).await?;
            anyhow::Ok(Repository::open(store, agent.repo.key().cloned()).await?)
        };
        match opened.await {
            Ok(repo) => {
                if point.copied_through.is_none() {
                    // Restarted since: the copy's own marker says how far its last complete pass got.
                    point.copied_through = marked(&repo).await;
                }
                let here = wal_times(&repo, cell).await.map_err(|e| format!("{e:#}"));
                fill(&mut point, &repo, cell, here.as_ref(), primary_times.as_ref().ok(), written).await;
            }
            Err(e) => point.error = Some(format!("{e:#}")),
        }
        locations.push(point);
    }
    Recovery { cell: cell.to_string(), computed_at, locations, standby: None }
}
