//! Re-protecting a takeover: a failover's new primary, kept at the
//! recovery site in `<restore-root>/takeover-<port>`, starts archiving its
//! WAL into one of the cell's locations and gets a base backup there.
//!
//! A takeover (and the standby it may have been promoted from) is started
//! with `archive_mode = on` and an empty `archive_command`, so Postgres
//! keeps every WAL file of its new timeline until this sets the command:
//! the location then gets the whole timeline from its first segment (a
//! reload, no restart). One started with `archive_mode = off` (an older
//! takeover) is restarted once (`pg_ctl stop -m fast`: its clients
//! reconnect). Nothing is done unless the fence in force in that location
//! admits the takeover's timeline: the failover raised it, and a server
//! below it is not the cell's primary.

use std::path::{Path, PathBuf};
use std::time::Duration;

use lifeboat_api::reprotect::{ReprotectSpec, Reprotected};
use lifeboat_postgres::archiving::{self, Change};
use lifeboat_postgres::backup::{self, connect, BackupRequest};
use lifeboat_postgres::server::{self, Launch};
use lifeboat_repository::Repository;

/// What the agent provides.
pub struct ReprotectEnv {
    /// The location to archive and back up into: its plan name and repository.
    pub repo: Repository,
    /// Postgres' `archive_command` for it (a `wal-push` invocation).
    pub archive_command: String,
    pub restore_root: PathBuf,
    pub pg_bindir: PathBuf,
    /// The server's whole environment, should it be restarted.
    pub server_env: Vec<(String, String)>,
    /// How long archiving a segment, and the backup's WAL, may take.
    pub wal_timeout: Duration,
}

/// Re-protect the takeover `spec` names (see the module's documentation).
pub async fn reprotect(env: &ReprotectEnv, spec: &ReprotectSpec) -> Result<Reprotected, String> {
    let dir = crate::standby::dir(&env.restore_root, spec.port);
    check_marker(&dir, &spec.takeover)?;
    let data = dir.join("pgdata");
    if !server::running(&data) {
        return Err(format!(
            "the takeover's server on {} is not running; start it (pg_ctl -D {} start, as the postgres user) and run this again",
            data.display(),
            data.display()
        ));
    }
    let launch = Launch {
        bindir: env.pg_bindir.clone(),
        listen: crate::standby::listen(&dir, spec.port),
        env: Some(env.server_env.clone()),
        timeout: env.wal_timeout,
    };
    let admin = launch.listen.conninfo("postgres", "postgres");
    let client = connect(&admin).await.map_err(|e| e.to_string())?;
    let now = archiving::read(&client).await.map_err(|e| e.to_string())?;
    if now.in_recovery {
        return Err(format!("the server on {} is still in recovery: a standby, not a promoted takeover", data.display()));
    }
    let fence_epoch = check_fence(&env.repo, &spec.cell, now.timeline).await?;
    let change = archiving::set_command(&client, &now, &env.archive_command).await.map_err(|e| e.to_string())?;
    let client = match change {
        Change::NeedsRestart => {
            drop(client);
            tracing::warn!(cell = %spec.cell, "archive_mode was off: restarting the takeover's server");
            server::restart(&data, &launch).await.map_err(|e| format!("restarting with archive_mode = on: {e}"))?;
            connect(&admin).await.map_err(|e| e.to_string())?
        }
        Change::None | Change::Reloaded => client,
    };
    let archived = archiving::switch_and_wait(&client, env.wal_timeout).await.map_err(|e| e.to_string())?;
    let req =
        BackupRequest { cell: spec.cell.clone(), conninfo: admin, pgdata: Some(data), wal_timeout: env.wal_timeout, incremental: false };
    let manifest = backup::backup(&env.repo, &req).await.map_err(|e| format!("the base backup: {e}"))?;
    Ok(Reprotected {
        cell: spec.cell.clone(),
        takeover: spec.takeover.clone(),
        location: spec.location.clone(),
        timeline: now.timeline,
        fence_epoch,
        archiving_change: match change {
            Change::None => "none",
            Change::Reloaded => "reloaded",
            Change::NeedsRestart => "restarted",
        }
        .into(),
        archived_through: archived.switched,
        backup: backup::done(&manifest).ok_or("the backup's manifest has no Postgres details")?,
    })
}

/// `dir` must hold the takeover named `takeover`.
fn check_marker(dir: &Path, takeover: &str) -> Result<(), String> {
    match std::fs::read_to_string(dir.join("takeover.name")) {
        Ok(found) if found.trim() == takeover => Ok(()),
        Ok(found) => Err(format!("{} holds takeover {:?}, not {takeover:?}", dir.display(), found.trim())),
        Err(_) => Err(format!("{} holds no takeover (no takeover.name): nothing to re-protect", dir.display())),
    }
}

/// The epoch of the fence that admits `timeline`, or why there is none.
async fn check_fence(repo: &Repository, cell: &str, timeline: u32) -> Result<u64, String> {
    let fence = lifeboat_postgres::fence::in_force(repo, cell).await.map_err(|e| format!("reading the fence: {e}"))?;
    let Some(f) = fence else {
        return Err(format!(
            "{} holds no fence for cell {cell}: the old primary could still archive there; raise it first (lifeboat-agent fence raise)",
            repo.location()
        ));
    };
    match f.postgres_timeline {
        Some(first) if timeline < first => Err(format!(
            "the fence in {} ({}) admits timeline {first} or later, and this server writes timeline {timeline}: it is not the cell's primary",
            repo.location(),
            f.describe()
        )),
        _ => Ok(f.epoch),
    }
}
