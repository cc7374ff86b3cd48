//! Base backups: `pg_backup_start` / `pg_backup_stop` over a held
//! connection (non-exclusive, so a standby works too), the data directory
//! streamed from disk through the repository's chunk pipeline (no local
//! copy), and a manifest written only once every WAL segment from the
//! backup's start to its stop is archived in the repository.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tokio_postgres::Client;

use lifeboat_repository::files::{self, Filter};
use lifeboat_repository::lock::{LockGuard, LockKind};
use lifeboat_repository::{format, Manifest, RepoError, Repository};

use crate::archive::WAL_PREFIX;
use crate::lsn::Lsn;
use crate::walname::segment_name;

pub const KIND_FULL: &str = "pg-full";
pub const KIND_INCREMENTAL: &str = "pg-incr";

#[derive(Debug, thiserror::Error)]
pub enum PgError {
    #[error(transparent)]
    Repo(#[from] RepoError),
    /// `conninfo` is the shown form (no password); `refused`: the server
    /// refused the login (SQLSTATE class 28), which no retry changes.
    #[error("cannot connect to Postgres ({conninfo}): {message}; check host, port, user and that the server runs")]
    Connect { conninfo: String, message: String, refused: bool },
    #[error("{0}")]
    Config(String),
    #[error("Postgres: {context}: {}", describe(source))]
    Query { context: String, source: tokio_postgres::Error },
    #[error("{0}")]
    Wal(String),
    /// The cell failed over and this cluster is not its primary any more.
    #[error("{0}")]
    Fenced(String),
}

/// A Postgres error as people need it: the server's own words (severity,
/// message, detail, hint) for an error the server sent, otherwise the
/// client's error and what caused it. (`tokio_postgres::Error` shows
/// only "db error" for the former.)
pub fn describe(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        let mut text = format!("{}: {}", db.severity(), db.message());
        for (label, part) in [("DETAIL", db.detail()), ("HINT", db.hint())] {
            if let Some(part) = part {
                text.push_str(&format!(" ({label}: {part})"));
            }
        }
        return text;
    }
    let mut text = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        text.push_str(&format!(": {c}"));
        cause = c.source();
    }
    text
}

/// What a Postgres backup records, in its manifest's `details`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PgDetails {
    pub start_lsn: Lsn,
    pub stop_lsn: Lsn,
    pub timeline: u32,
    /// First and last WAL segment the backup needs.
    pub start_wal: String,
    pub stop_wal: String,
    pub system_identifier: String,
    pub pg_version: u32,
    pub from_standby: bool,
    /// Contents Postgres returned from `pg_backup_stop`, restored verbatim.
    pub backup_label: String,
    pub tablespace_map: Option<String>,
    /// For an incremental: the backup whose unchanged files it reuses.
    #[serde(default)]
    pub parent: Option<String>,
}

impl PgDetails {
    pub fn of(manifest: &Manifest) -> Option<PgDetails> {
        manifest.details.clone().and_then(|d| serde_json::from_value(d).ok())
    }
}

/// Postgres backups of `cell` with their details, oldest first.
pub async fn list_backups(repo: &Repository, cell: &str) -> Result<Vec<(Manifest, PgDetails)>, PgError> {
    let mut out = Vec::new();
    for b in repo.list_backups(Some(cell)).await? {
        if !b.id.contains("-pg-") {
            continue;
        }
        let m = repo.read_manifest(cell, &b.id).await?;
        if let Some(d) = PgDetails::of(&m) {
            out.push((m, d));
        }
    }
    Ok(out)
}

/// A committed Postgres backup, as its job reports it (None: not a Postgres backup).
pub fn done(m: &Manifest) -> Option<lifeboat_api::results::BackupDone> {
    use lifeboat_api::results::{BackupDone, PgBackupKind};
    let d = PgDetails::of(m)?;
    Some(BackupDone {
        backup_id: m.id.clone(),
        kind: if m.kind == KIND_FULL { PgBackupKind::Full } else { PgBackupKind::Incremental },
        parent: d.parent,
        start_lsn: d.start_lsn.to_string(),
        stop_lsn: d.stop_lsn.to_string(),
        timeline: d.timeline,
        totals: m.totals.to_wire(),
        seconds: (m.finished - m.started).as_seconds_f64(),
    })
}

#[derive(Debug, Clone)]
pub struct BackupRequest {
    pub cell: String,
    /// libpq-style conninfo, e.g. `host=127.0.0.1 port=5432 user=postgres`.
    pub conninfo: String,
    /// The data directory as seen by this agent (default: the server's `data_directory`).
    pub pgdata: Option<PathBuf>,
    /// How long to wait for the backup's WAL to reach the repository.
    pub wal_timeout: Duration,
    /// Reuse files unchanged since the newest backup of the same cluster
    /// (falls back to a full backup when there is none).
    pub incremental: bool,
}

/// Which files of a data directory a base backup leaves out (as pg_basebackup does).
pub fn pgdata_filter(rel: &str) -> Filter {
    const EMPTY_DIRS: [&str; 8] =
        ["pg_wal", "pg_replslot", "pg_dynshmem", "pg_notify", "pg_serial", "pg_snapshots", "pg_stat_tmp", "pg_subtrans"];
    const EXCLUDED: [&str; 8] = [
        "postmaster.pid",
        "postmaster.opts",
        "backup_label",
        "backup_label.old",
        "tablespace_map",
        "recovery.signal",
        "standby.signal",
        "current_logfiles",
    ];
    let name = rel.rsplit('/').next().unwrap_or(rel);
    let tablespace = rel.strip_prefix("pg_tblspc/").is_some_and(|oid| !oid.is_empty() && oid.bytes().all(|b| b.is_ascii_digit()));
    if tablespace {
        // A tablespace outside the data directory: its contents, not the link.
        Filter::Follow
    } else if EMPTY_DIRS.contains(&rel) {
        Filter::EmptyDir
    } else if EXCLUDED.contains(&rel) || name.starts_with("pgsql_tmp") || name == "pg_internal.init" {
        Filter::Exclude
    } else {
        Filter::Include
    }
}

/// Connect to the cluster behind `conninfo` (the password, if not in it,
/// from `PGPASSWORD` or the pgpass file: [`crate::conninfo`]).
pub async fn connect(conninfo: &str) -> Result<Client, PgError> {
    crate::conninfo::Server::new(conninfo).connect().await
}

fn q(context: &str) -> impl FnOnce(tokio_postgres::Error) -> PgError + '_ {
    move |source| PgError::Query { context: context.into(), source }
}

/// Take a base backup of the cluster behind `req.conninfo`.
pub async fn backup(repo: &Repository, req: &BackupRequest) -> Result<Manifest, PgError> {
    format::validate_cell(&req.cell)?;
    let client = connect(&req.conninfo).await?;
    let row = client
        .query_one(
            "select current_setting('archive_mode'), current_setting('wal_level'), current_setting('data_directory'),
                    current_setting('server_version_num')::int, current_setting('wal_segment_size'),
                    (select system_identifier::text from pg_control_system()), pg_is_in_recovery()",
            &[],
        )
        .await
        .map_err(q("reading settings (the backup role needs superuser or pg_read_all_settings)"))?;
    let (archive_mode, wal_level, data_directory): (String, String, String) = (row.get(0), row.get(1), row.get(2));
    let (pg_version, segment_size, system_identifier, from_standby): (i32, String, String, bool) =
        (row.get(3), row.get(4), row.get(5), row.get(6));
    if wal_level == "minimal" {
        return Err(PgError::Config(
            "wal_level is minimal, which cannot support point-in-time recovery; set wal_level = replica and restart Postgres".into(),
        ));
    }
    if archive_mode == "off" {
        return Err(PgError::Config(format!(
            "archive_mode is off, so WAL is not archived and a backup could never be restored to a point in time; set archive_mode = on and archive_command = 'lifeboat-agent wal-push %p --repo ... --cell {}' and restart Postgres",
            req.cell
        )));
    }
    if pg_version < 150000 {
        return Err(PgError::Config(format!("Postgres {pg_version} is not supported; Lifeboat needs 15 or newer")));
    }
    if segment_size != "16MB" {
        return Err(PgError::Config(format!("wal_segment_size is {segment_size}; only 16MB is supported")));
    }
    let pgdata = req.pgdata.clone().unwrap_or_else(|| PathBuf::from(&data_directory));
    if !pgdata.join("PG_VERSION").exists() {
        return Err(PgError::Config(format!(
            "data directory {} is not readable here; run the agent on the database host or pass --pgdata",
            pgdata.display()
        )));
    }

    let parent = if req.incremental {
        let newest = list_backups(repo, &req.cell).await?.into_iter().rfind(|(_, d)| d.system_identifier == system_identifier);
        if newest.is_none() {
            tracing::warn!(cell = %req.cell, "no earlier backup of this cluster: taking a full backup instead of an incremental");
        }
        newest.map(|(m, _)| m)
    } else {
        None
    };
    let kind = if parent.is_some() { KIND_INCREMENTAL } else { KIND_FULL };
    let lock = LockGuard::acquire(repo, LockKind::Shared, &format!("postgres backup of cell {}", req.cell)).await?;
    let result = async {
        let started = OffsetDateTime::now_utc();
        let label = format!("lifeboat {} {}", req.cell, started);
        let start_lsn: String =
            client.query_one("select pg_backup_start($1, true)::text", &[&label]).await.map_err(q("pg_backup_start"))?.get(0);
        tracing::info!(cell = %req.cell, %start_lsn, "backup started");
        let stored = files::store_tree(repo, &pgdata, pgdata_filter, parent.as_ref()).await;
        let stop = client
            .query_one("select lsn::text, labelfile, spcmapfile from pg_backup_stop(false)", &[])
            .await
            .map_err(q("pg_backup_stop"))?;
        let tree = stored?;
        let stop_lsn: Lsn = stop.get::<_, String>(0).parse().map_err(PgError::Wal)?;
        let backup_label: String = stop.get(1);
        let spcmap: Option<String> = stop.get(2);
        let (timeline, start_wal) = parse_label(&backup_label)?;
        // The old primary of a cell that failed over: nothing of it is committed.
        let fence = crate::fence::in_force(repo, &req.cell).await?;
        if let Some(refused) = crate::fence::refusal(fence.as_ref(), &req.cell, timeline, "a base backup") {
            return Err(PgError::Fenced(refused));
        }
        let start_lsn: Lsn = start_lsn.parse().map_err(PgError::Wal)?;
        let stop_wal = segment_name(timeline, stop_lsn.segno_before());
        wait_for_wal(repo, &req.cell, timeline, start_lsn.segno(), stop_lsn.segno_before(), req.wal_timeout).await?;
        let details = PgDetails {
            start_lsn,
            stop_lsn,
            timeline,
            start_wal,
            stop_wal,
            system_identifier,
            pg_version: pg_version as u32,
            from_standby,
            backup_label,
            tablespace_map: spcmap.filter(|s| !s.is_empty()),
            parent: parent.as_ref().map(|m| m.id.clone()),
        };
        let mut manifest = files::new_manifest(repo, &req.cell, kind, started, tree);
        manifest.details = Some(serde_json::to_value(&details).expect("details serialise"));
        repo.write_manifest(&manifest).await?;
        Ok(manifest)
    }
    .await;
    lock.release_after(result).await
}

/// Timeline and start WAL file from a backup label.
fn parse_label(label: &str) -> Result<(u32, String), PgError> {
    let bad = || PgError::Wal(format!("unexpected backup label from Postgres:\n{label}"));
    let mut timeline = None;
    let mut start_wal = None;
    for line in label.lines() {
        if let Some(v) = line.strip_prefix("START TIMELINE: ") {
            timeline = v.trim().parse().ok();
        }
        if let Some(v) = line.strip_prefix("START WAL LOCATION: ") {
            start_wal = v.split("(file ").nth(1).map(|f| f.trim_end_matches(')').to_string());
        }
    }
    Ok((timeline.ok_or_else(bad)?, start_wal.ok_or_else(bad)?))
}

/// Wait until segments `first..=last` of `timeline` are in the repository.
async fn wait_for_wal(repo: &Repository, cell: &str, timeline: u32, first: u64, last: u64, timeout: Duration) -> Result<(), PgError> {
    let deadline = Instant::now() + timeout;
    let prefix = format!("{WAL_PREFIX}{cell}/");
    loop {
        let have: std::collections::HashSet<String> = repo
            .store()
            .list(&prefix)
            .await
            .map_err(RepoError::from)?
            .into_iter()
            .map(|m| m.path.as_str()[prefix.len()..].to_string())
            .collect();
        let missing = (first..=last).map(|s| segment_name(timeline, s)).find(|name| !have.contains(name));
        match missing {
            None => return Ok(()),
            Some(name) if Instant::now() >= deadline => {
                return Err(PgError::Wal(format!(
                    "WAL segment {name} needed by this backup is not archived in {} after {}s; check archive_command (it must run `lifeboat-agent wal-push %p --cell {cell}` into this repository) and pg_stat_archiver; the backup was not committed",
                    repo.location(),
                    timeout.as_secs()
                )))
            }
            Some(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_matches_pg_basebackup() {
        assert_eq!(pgdata_filter("pg_wal"), Filter::EmptyDir);
        assert_eq!(pgdata_filter("postmaster.pid"), Filter::Exclude);
        assert_eq!(pgdata_filter("base/5/pgsql_tmp123"), Filter::Exclude);
        assert_eq!(pgdata_filter("global/pg_internal.init"), Filter::Exclude);
        assert_eq!(pgdata_filter("base/5/16384"), Filter::Include);
        assert_eq!(pgdata_filter("postgresql.auto.conf"), Filter::Include);
    }

    #[test]
    fn label_parsing() {
        let label = "START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\nCHECKPOINT LOCATION: 0/2000060\nSTART TIMELINE: 1\n";
        assert_eq!(parse_label(label).unwrap(), (1, "000000010000000000000002".into()));
    }
}
