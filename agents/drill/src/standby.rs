//! A guest cell's standby, kept at a recovery site where the cell's
//! takeover would go (`<restore-root>/takeover-<port>`), so that a
//! failover promotes it in place ([`crate::run`], `promote_standby`).
//!
//! [`ensure`] is idempotent: a running standby is only reported; a
//! stopped one is started; none (or an interrupted bootstrap, or one kept
//! with other settings) is bootstrapped from the location's newest base
//! backup, made a standby ([`lifeboat_postgres::standby::convert`]) and
//! started. `standby.cell` marks the directory before anything is written;
//! `standby.json` (the settings and the bootstrap's restore) is written
//! last, so a directory without it is a bootstrap that was cut off.
//! A directory holding a takeover (`takeover.name`: the cell's primary since
//! a failover) or another cell's standby is never touched.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use lifeboat_api::standby::{StandbyMode, StandbySpec, StandbyStatus};
use lifeboat_postgres::restore::{self as pg, RestoreReport, RestoreRequest, Target};
use lifeboat_postgres::server::{self, Launch, Listen};

use crate::run::Source;

/// What the agent provides.
pub struct StandbyEnv {
    pub cell: String,
    pub source: Source,
    pub restore_root: PathBuf,
    pub pg_bindir: PathBuf,
    /// The server's whole environment (see [`crate::confine::server_env`]).
    pub server_env: Vec<(String, String)>,
    /// Give up on the bootstrap's replay after this long.
    pub timeout: Duration,
}

/// `standby.json`: how the standby was made.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    pub cell: String,
    pub mode: StandbyMode,
    pub location: String,
    pub port: u16,
    pub primary_conninfo: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub bootstrapped_at: OffsetDateTime,
    pub restore: RestoreReport,
}

impl Record {
    fn same_settings(&self, spec: &StandbySpec) -> bool {
        self.cell == spec.cell
            && self.mode == spec.mode
            && self.location == spec.location
            && self.port == spec.port
            && self.primary_conninfo == spec.primary_conninfo
    }
}

/// The directory of the standby (and the takeover) at `port`.
pub fn dir(root: &Path, port: u16) -> PathBuf {
    root.join(format!("takeover-{port}"))
}

/// The lock a standby job and a takeover hold while they work in
/// `takeover-<port>` (beside it: the directory itself may be replaced), so
/// that neither clears what the other is building or starts a server on
/// the other's data. Held until the returned file is dropped.
pub fn lock(root: &Path, port: u16) -> Result<std::fs::File, String> {
    std::fs::create_dir_all(root).map_err(|e| format!("creating {}: {e}", root.display()))?;
    let path = root.join(format!("takeover-{port}.lock"));
    match lifeboat_process::try_lock_file(&path) {
        Ok(Some(file)) => Ok(file),
        Ok(None) => Err(format!(
            "another job works in {} (a standby being bootstrapped or started, or a takeover); wait for it to end (the agent's GET /v1/jobs), then try again",
            dir(root, port).display()
        )),
        Err(e) => Err(format!("locking {}: {e}", path.display())),
    }
}

const CELL_MARKER: &str = "standby.cell";
const RECORD: &str = "standby.json";

/// The standby kept in `dir`, if a finished bootstrap left one there.
pub fn record(dir: &Path) -> Option<Record> {
    serde_json::from_slice(&std::fs::read(dir.join(RECORD)).ok()?).ok()
}

/// The cell whose standby `dir` holds or was bootstrapping.
pub fn marked_cell(dir: &Path) -> Option<String> {
    std::fs::read_to_string(dir.join(CELL_MARKER)).ok().map(|s| s.trim().to_string())
}

/// Stop the standby in `dir` and move its data directory (and
/// tablespaces) aside to `pgdata.set-aside-<unix time>`, forgetting it: a
/// restore takes its place, and what it streamed stays for an operator.
/// Returns where it was kept.
pub fn set_aside(dir: &Path, bindir: &Path) -> Result<PathBuf, String> {
    crate::scratch::stop_server(&dir.join("pgdata"), bindir)?;
    lifeboat_postgres::prefetch::wait_stopped(&dir.join("pgdata"), Duration::from_secs(30));
    let stamp = OffsetDateTime::now_utc().unix_timestamp();
    let kept = dir.join(format!("pgdata.set-aside-{stamp}"));
    for (from, to) in [("pgdata", kept.clone()), ("tablespaces", dir.join(format!("tablespaces.set-aside-{stamp}")))] {
        if dir.join(from).exists() {
            std::fs::rename(dir.join(from), &to).map_err(|e| format!("moving {} aside: {e}", dir.join(from).display()))?;
        }
    }
    match std::fs::remove_file(dir.join(RECORD)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(format!("forgetting the standby in {}: {e}", dir.display())),
        _ => Ok(kept),
    }
}

/// How the standby's server listens: where the takeover will (every
/// address, under the cell's own `pg_hba.conf`), and a private socket.
pub fn listen(dir: &Path, port: u16) -> Listen {
    Listen::Takeover { port, dir: dir.join("socket") }
}

/// The standby of `cell` under `root`, wherever its port is.
pub fn find(root: &Path, cell: &str) -> Option<(PathBuf, Record)> {
    kept(root, cell).next()
}

/// Every standby of `cell` under `root` (directories a takeover holds are not standbys).
fn kept<'a>(root: &Path, cell: &'a str) -> impl Iterator<Item = (PathBuf, Record)> + 'a {
    let entries = std::fs::read_dir(root).into_iter().flatten().flatten();
    entries.map(|e| e.path()).filter(|p| !p.join("takeover.name").exists()).filter_map(move |p| {
        let r = record(&p).filter(|r| r.cell == cell)?;
        Some((p, r))
    })
}

/// The standby as it is now.
pub async fn status(dir: &Path, record: &Record, action: &str) -> StandbyStatus {
    let conninfo = listen(dir, record.port).conninfo("postgres", "postgres");
    StandbyStatus {
        cell: record.cell.clone(),
        mode: record.mode,
        location: record.location.clone(),
        port: record.port,
        directory: dir.display().to_string(),
        backup: record.restore.backup_id.clone(),
        bootstrapped_at: record.bootstrapped_at,
        action: action.to_string(),
        state: lifeboat_postgres::standby::state(&conninfo).await,
    }
}

/// What to say when a port is taken: a guest's port at a site comes from the plan.
const MOVE_PORT: &str =
    "a cell's port at a site is the site's postgres.port plus its place among the cells that list the site: change one in the plan";

/// Keep the standby `spec` asks for (see the module's doc).
pub async fn ensure(env: &StandbyEnv, spec: &StandbySpec) -> Result<StandbyStatus, String> {
    check_spec(env, spec)?;
    let dir = dir(&env.restore_root, spec.port);
    let launch =
        Launch { bindir: env.pg_bindir.clone(), listen: listen(&dir, spec.port), env: Some(env.server_env.clone()), timeout: env.timeout };
    let data = dir.join("pgdata");
    retire_elsewhere(&env.restore_root, spec, &env.pg_bindir)?;
    if dir.exists() {
        if let Ok(name) = std::fs::read_to_string(dir.join("takeover.name")) {
            return Err(format!(
                "{} holds takeover {:?}: the cell's primary since a failover, not a standby; it stays until the cell fails back",
                dir.display(),
                name.trim()
            ));
        }
        match (marked_cell(&dir), record(&dir)) {
            (Some(c), _) if c != spec.cell => return Err(format!("{} holds the standby of cell {c}; {MOVE_PORT}", dir.display())),
            (None, _) => return Err(format!("{} exists and is not a standby's; remove it, or {MOVE_PORT}", dir.display())),
            (Some(_), Some(r)) if r.same_settings(spec) => {
                if server::running(&data) {
                    return Ok(status(&dir, &r, "running").await);
                }
                server::start(&data, &launch).map_err(|e| e.to_string())?;
                lifeboat_postgres::server::wait_answering(&data, &launch).await.map_err(|e| e.to_string())?;
                return Ok(status(&dir, &r, "started").await);
            }
            // Cut off before it started, or kept with other settings: start over.
            (Some(_), _) => crate::scratch::clear(&dir, &env.pg_bindir)?,
        }
    }
    bootstrap(env, spec, &dir, &launch).await
}

fn check_spec(env: &StandbyEnv, spec: &StandbySpec) -> Result<(), String> {
    if spec.cell != env.cell {
        return Err(format!("the spec is for cell {}, this standby command for cell {}", spec.cell, env.cell));
    }
    match (spec.mode, &spec.primary_conninfo) {
        (StandbyMode::Stream, None) => Err("a stream standby needs the primary's conninfo".into()),
        (StandbyMode::Archive, Some(_)) => Err("an archive standby replays the archive only; give no primary conninfo".into()),
        (_, Some(c)) => lifeboat_postgres::standby::check_conninfo(c).map_err(|e| e.to_string()),
        (_, None) => Ok(()),
    }
}

/// The cell's standby kept at another port (the plan moved it) is
/// stopped and removed: one standby per cell.
fn retire_elsewhere(root: &Path, spec: &StandbySpec, bindir: &Path) -> Result<(), String> {
    for (other, _) in kept(root, &spec.cell).filter(|(p, _)| *p != dir(root, spec.port)) {
        tracing::warn!(cell = %spec.cell, directory = %other.display(), "removing the cell's standby kept at another port");
        crate::scratch::clear(&other, bindir)?;
    }
    Ok(())
}

async fn bootstrap(env: &StandbyEnv, spec: &StandbySpec, dir: &Path, launch: &Launch) -> Result<StandbyStatus, String> {
    let io = |what: &str, e: std::io::Error| format!("{what} {}: {e}", dir.display());
    std::fs::create_dir_all(dir).map_err(|e| io("creating", e))?;
    std::fs::write(dir.join(CELL_MARKER), &spec.cell).map_err(|e| io("marking", e))?;
    let data = dir.join("pgdata");
    let req = RestoreRequest {
        cell: env.cell.clone(),
        to: data.clone(),
        target: Target::Latest,
        backup: None,
        restore_command: env.source.restore_command.clone(),
        archiving: lifeboat_postgres::restore::Archiving::Held,
        delta: false,
        tablespace_map: Vec::new(),
        tablespaces_under: Some(dir.join("tablespaces")),
    };
    let restore =
        pg::restore(&env.source.repo, &req).await.map_err(|e| format!("restoring the base backup from {}: {e}", env.source.name))?;
    lifeboat_postgres::standby::convert(&data, spec.primary_conninfo.as_deref()).map_err(|e| e.to_string())?;
    server::start(&data, launch).map_err(|e| e.to_string())?;
    let record = Record {
        cell: spec.cell.clone(),
        mode: spec.mode,
        location: spec.location.clone(),
        port: spec.port,
        primary_conninfo: spec.primary_conninfo.clone(),
        bootstrapped_at: OffsetDateTime::now_utc(),
        restore,
    };
    // Recorded once started: a long catch-up cut off by the timeout is waited for again, not restored again.
    write_record(dir, &record)?;
    lifeboat_postgres::server::wait_answering(&data, launch).await.map_err(|e| e.to_string())?;
    tracing::info!(cell = %spec.cell, port = spec.port, backup = %record.restore.backup_id, "standby bootstrapped");
    Ok(status(dir, &record, "bootstrapped").await)
}

fn write_record(dir: &Path, record: &Record) -> Result<(), String> {
    let io = |e: std::io::Error| format!("writing {}: {e}", dir.join(RECORD).display());
    let tmp = dir.join(format!("{RECORD}.tmp"));
    std::fs::write(&tmp, serde_json::to_vec_pretty(record).expect("a standby record serialises")).map_err(io)?;
    std::fs::rename(&tmp, dir.join(RECORD)).map_err(io)
}
