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

/// Forget that `dir` holds a standby (its data directory is being replaced).
pub fn forget(dir: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(dir.join(RECORD)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// How the standby's server listens: where the takeover will (every
/// address, under the cell's own `pg_hba.conf`), and a private socket.
pub fn listen(dir: &Path, port: u16) -> Listen {
    Listen::Takeover { port, dir: dir.join("socket") }
}

/// The standby of `cell` under `root`, wherever its port is.
pub fn find(root: &Path, cell: &str) -> Option<(PathBuf, Record)> {
    let entries = std::fs::read_dir(root).ok()?;
    entries.flatten().map(|e| e.path()).filter(|p| !p.join("takeover.name").exists()).find_map(|p| {
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

/// Keep the standby `spec` asks for (see the module's doc).
pub async fn ensure(env: &StandbyEnv, spec: &StandbySpec) -> Result<StandbyStatus, String> {
    if spec.cell != env.cell {
        return Err(format!("the spec is for cell {}, this standby command for cell {}", spec.cell, env.cell));
    }
    match (spec.mode, &spec.primary_conninfo) {
        (StandbyMode::Stream, None) => return Err("a stream standby needs the primary's conninfo".into()),
        (StandbyMode::Archive, Some(_)) => return Err("an archive standby replays the archive only; give no primary conninfo".into()),
        _ => {}
    }
    let dir = dir(&env.restore_root, spec.port);
    let launch =
        Launch { bindir: env.pg_bindir.clone(), listen: listen(&dir, spec.port), env: Some(env.server_env.clone()), timeout: env.timeout };
    let data = dir.join("pgdata");
    if dir.exists() {
        if let Ok(name) = std::fs::read_to_string(dir.join("takeover.name")) {
            return Err(format!(
                "{} holds takeover {:?}: the cell's primary since a failover, not a standby; re-protect it instead",
                dir.display(),
                name.trim()
            ));
        }
        match (marked_cell(&dir), record(&dir)) {
            (Some(c), _) if c != spec.cell => {
                return Err(format!("{} holds the standby of cell {c}; give cell {} another port", dir.display(), spec.cell))
            }
            (None, _) => {
                return Err(format!("{} exists and is not a standby's; remove it or give cell {} another port", dir.display(), spec.cell))
            }
            (Some(_), Some(r)) if r.same_settings(spec) => {
                if server::running(&data) {
                    return Ok(status(&dir, &r, "running").await);
                }
                server::start(&data, &launch).map_err(|e| e.to_string())?;
                lifeboat_postgres::standby::wait_ready(&data, &launch).await.map_err(|e| e.to_string())?;
                return Ok(status(&dir, &r, "started").await);
            }
            // Cut off while bootstrapping, or kept with other settings: start over.
            (Some(_), _) => {
                crate::scratch::stop_server(&data, &env.pg_bindir)?;
                lifeboat_postgres::prefetch::wait_stopped(&data, Duration::from_secs(30));
                std::fs::remove_dir_all(&dir).map_err(|e| format!("removing {}: {e}", dir.display()))?;
            }
        }
    }
    bootstrap(env, spec, &dir, &launch).await
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
        preserve_archiving: false,
        delta: false,
        tablespace_map: Vec::new(),
        tablespaces_under: Some(dir.join("tablespaces")),
    };
    let restore =
        pg::restore(&env.source.repo, &req).await.map_err(|e| format!("restoring the base backup from {}: {e}", env.source.name))?;
    lifeboat_postgres::standby::convert(&data, spec.primary_conninfo.as_deref()).map_err(|e| e.to_string())?;
    server::start(&data, launch).map_err(|e| e.to_string())?;
    lifeboat_postgres::standby::wait_ready(&data, launch).await.map_err(|e| e.to_string())?;
    let record = Record {
        cell: spec.cell.clone(),
        mode: spec.mode,
        location: spec.location.clone(),
        port: spec.port,
        primary_conninfo: spec.primary_conninfo.clone(),
        bootstrapped_at: OffsetDateTime::now_utc(),
        restore,
    };
    let tmp = dir.join(format!("{RECORD}.tmp"));
    std::fs::write(&tmp, serde_json::to_vec_pretty(&record).expect("a standby record serialises")).map_err(|e| io("writing", e))?;
    std::fs::rename(&tmp, dir.join(RECORD)).map_err(|e| io("writing", e))?;
    tracing::info!(cell = %spec.cell, port = spec.port, backup = %record.restore.backup_id, "standby bootstrapped");
    Ok(status(dir, &record, "bootstrapped").await)
}
