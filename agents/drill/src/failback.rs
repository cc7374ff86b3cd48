//! Failing a cell back home, the agents' side (the coordinator's is
//! `lifeboat failover failback`): [`rebuild`] at home, [`handback`] at the
//! recovery site. The home's promotion is
//! [`lifeboat_postgres::standby::promote_after`].
//!
//! - **rebuild**: the home's data directory is set aside (moved to
//!   `<pgdata>.set-aside-<time>`, never deleted: it is the old primary's,
//!   fenced, and may hold WAL no archive has), a server still running on it
//!   is stopped first; the location's newest base backup (the commit's, on
//!   the new primary's timeline) is restored in its place as a standby
//!   streaming from the new primary, with the home's own `archive_command`
//!   (it archives again once promoted), and started on the cell's port.
//!   `<pgdata>.lifeboat-rebuild.json` beside it records the primary it
//!   follows, so a rebuild run again finds it running and does nothing.
//! - **handback**: the takeover's WAL is seen archived (a WAL switch), at
//!   least one standby must stream from it (its last WAL, the shutdown
//!   checkpoint included, reaches only a connected standby), it is stopped
//!   with `pg_ctl stop -m fast`, and its shutdown checkpoint is read with
//!   `pg_controldata`: the home is promoted only past it. The directory is
//!   then moved to `takeover-<port>.handed-back-<time>` (kept; the port is
//!   free for a new standby) with `handback.json` in it, which a handback
//!   run again returns.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use lifeboat_api::failback::{HandbackSpec, HandedBack, RebuildSpec, Rebuilt};
use lifeboat_postgres::restore::{self as pg, Archiving, RestoreRequest, Target};
use lifeboat_postgres::server::{self, Launch, Listen};

use crate::run::Source;

/// What the home agent provides.
pub struct RebuildEnv {
    pub source: Source,
    /// The cell's data directory on this host.
    pub pgdata: PathBuf,
    /// The cell's port, and how the agent reaches its server.
    pub port: u16,
    pub conninfo: String,
    /// The home's own `archive_command` (into its repository).
    pub archive_command: String,
    pub pg_bindir: PathBuf,
    pub server_env: Vec<(String, String)>,
    /// How long the standby may take to start streaming.
    pub timeout: Duration,
}

/// Beside the data directory: the primary the rebuilt standby follows.
#[derive(Debug, Serialize, Deserialize)]
struct Record {
    primary_conninfo: String,
    backup: String,
    set_aside: Option<String>,
}

fn record_path(pgdata: &Path) -> PathBuf {
    pgdata.with_file_name(format!("{}.lifeboat-rebuild.json", pgdata.file_name().and_then(|n| n.to_str()).unwrap_or("pgdata")))
}

/// Rebuild the home as a standby of `spec.primary_conninfo` (see the module's documentation).
pub async fn rebuild(env: &RebuildEnv, spec: &RebuildSpec) -> Result<Rebuilt, String> {
    lifeboat_postgres::standby::check_conninfo(&spec.primary_conninfo).map_err(|e| e.to_string())?;
    let launch = Launch {
        bindir: env.pg_bindir.clone(),
        listen: Listen::Own { port: env.port, conninfo: env.conninfo.clone() },
        env: Some(env.server_env.clone()),
        timeout: env.timeout,
    };
    let recorded: Option<Record> = std::fs::read(record_path(&env.pgdata)).ok().and_then(|b| serde_json::from_slice(&b).ok());
    if let Some(r) = recorded.filter(|r| r.primary_conninfo == spec.primary_conninfo) {
        if server::running(&env.pgdata) {
            let state = lifeboat_postgres::standby::state(&env.conninfo).await;
            if state.in_recovery {
                return Ok(rebuilt(env, r.backup, r.set_aside, "running", state));
            }
        }
    }
    // Whatever runs there now is the old primary (fenced) or an earlier attempt.
    server::stop_fast(&env.pgdata, &env.pg_bindir).map_err(|e| format!("stopping the server on {}: {e}", env.pgdata.display()))?;
    let set_aside = set_aside(&env.pgdata)?;
    let req = RestoreRequest {
        cell: spec.cell.clone(),
        to: env.pgdata.clone(),
        target: Target::Latest,
        backup: None,
        restore_command: env.source.restore_command.clone(),
        archiving: Archiving::Keep,
        delta: false,
        tablespace_map: Vec::new(),
        tablespaces_under: None,
    };
    let restored = pg::restore(&env.source.repo, &req).await.map_err(|e| format!("restoring from {}: {e}", env.source.name))?;
    let home = format!(
        "# ---- the home's own archiving, set by lifeboat-agent failback rebuild ----\narchive_mode = 'on'\narchive_command = '{}'\n",
        env.archive_command.replace('\'', "''")
    );
    pg::append_settings(&env.pgdata, &home).map_err(|e| e.to_string())?;
    lifeboat_postgres::standby::convert(&env.pgdata, Some(&spec.primary_conninfo)).map_err(|e| e.to_string())?;
    let record =
        Record { primary_conninfo: spec.primary_conninfo.clone(), backup: restored.backup_id.clone(), set_aside: set_aside.clone() };
    std::fs::write(record_path(&env.pgdata), serde_json::to_vec_pretty(&record).expect("a record serialises"))
        .map_err(|e| format!("writing {}: {e}", record_path(&env.pgdata).display()))?;
    server::start(&env.pgdata, &launch).map_err(|e| e.to_string())?;
    server::wait_answering(&env.pgdata, &launch).await.map_err(|e| e.to_string())?;
    let state = wait_streaming(&env.conninfo, env.timeout).await?;
    Ok(rebuilt(env, restored.backup_id, set_aside, "rebuilt", state))
}

fn rebuilt(
    env: &RebuildEnv,
    backup: String,
    set_aside: Option<String>,
    action: &str,
    state: lifeboat_api::standby::StandbyState,
) -> Rebuilt {
    Rebuilt { data_directory: env.pgdata.display().to_string(), set_aside, backup, action: action.into(), state }
}

/// Move a non-empty `pgdata` to `<pgdata>.set-aside-<unix time>`.
fn set_aside(pgdata: &Path) -> Result<Option<String>, String> {
    let empty = std::fs::read_dir(pgdata).map(|mut d| d.next().is_none()).unwrap_or(true);
    if empty {
        let _ = std::fs::remove_dir(pgdata);
        return Ok(None);
    }
    let name = pgdata.file_name().and_then(|n| n.to_str()).unwrap_or("pgdata");
    let kept = pgdata.with_file_name(format!("{name}.set-aside-{}", OffsetDateTime::now_utc().unix_timestamp()));
    std::fs::rename(pgdata, &kept).map_err(|e| format!("moving {} aside: {e}", pgdata.display()))?;
    Ok(Some(kept.display().to_string()))
}

/// Wait until the standby streams from its primary.
async fn wait_streaming(conninfo: &str, timeout: Duration) -> Result<lifeboat_api::standby::StandbyState, String> {
    let started = std::time::Instant::now();
    loop {
        let state = lifeboat_postgres::standby::state(conninfo).await;
        if state.streaming {
            return Ok(state);
        }
        if started.elapsed() > timeout {
            return Err(format!(
                "the rebuilt standby does not stream from the new primary after {}s ({}); check primary_conninfo and the new primary's pg_hba.conf",
                timeout.as_secs(),
                state.problem.as_deref().unwrap_or("running, not streaming")
            ));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// What the recovery site provides.
pub struct HandbackEnv {
    pub restore_root: PathBuf,
    pub pg_bindir: PathBuf,
    pub wal_timeout: Duration,
}

const HANDBACK: &str = "handback.json";

/// Stop the takeover `spec` names once its WAL is archived and streamed
/// (see the module's documentation).
pub async fn handback(env: &HandbackEnv, spec: &HandbackSpec) -> Result<HandedBack, String> {
    if let Some(done) = handed_back(&env.restore_root, spec) {
        return Ok(done);
    }
    let dir = crate::standby::dir(&env.restore_root, spec.port);
    let found = std::fs::read_to_string(dir.join("takeover.name")).unwrap_or_default();
    if found.trim() != spec.takeover {
        return Err(format!("{} holds no takeover {:?} (it holds {:?})", dir.display(), spec.takeover, found.trim()));
    }
    let data = dir.join("pgdata");
    let (archived_through, streaming_to) = match partial(&dir) {
        Some(earlier) => (earlier.archived_through, earlier.streaming_to),
        None => drain(&dir, spec.port, env.wal_timeout).await?,
    };
    let mut done = HandedBack {
        takeover: spec.takeover.clone(),
        archived_through,
        final_lsn: String::new(),
        timeline: 0,
        streaming_to,
        kept_in: String::new(),
    };
    // Recorded before the stop: a handback cut off after it goes on from here.
    write(&dir, &done)?;
    server::stop_fast(&data, &env.pg_bindir).map_err(|e| e.to_string())?;
    let control = server::control_data(&env.pg_bindir, &data).map_err(|e| e.to_string())?;
    if control.state != "shut down" {
        return Err(format!(
            "the takeover's server on {} did not shut down cleanly ({}); start it again and run this again",
            data.display(),
            control.state
        ));
    }
    (done.final_lsn, done.timeline) = (control.checkpoint_lsn, control.timeline);
    let kept = env.restore_root.join(format!("takeover-{}.handed-back-{}", spec.port, OffsetDateTime::now_utc().unix_timestamp()));
    done.kept_in = kept.display().to_string();
    write(&dir, &done)?;
    std::fs::rename(&dir, &kept).map_err(|e| format!("moving {} to {}: {e}", dir.display(), kept.display()))?;
    Ok(done)
}

/// Archive what is complete and check a standby streams; what was seen.
async fn drain(dir: &Path, port: u16, timeout: Duration) -> Result<(String, Vec<String>), String> {
    if !server::running(&dir.join("pgdata")) {
        return Err(format!("the takeover's server in {} is not running: start it so that its last WAL reaches the home", dir.display()));
    }
    let admin = crate::standby::listen(dir, port).conninfo("postgres", "postgres");
    let client = lifeboat_postgres::backup::connect(&admin).await.map_err(|e| e.to_string())?;
    let now = lifeboat_postgres::archiving::read(&client).await.map_err(|e| e.to_string())?;
    if now.mode == "off" || now.command.is_empty() {
        return Err(
            "the takeover does not archive: commit the failover first (lifeboat failover commit), so its WAL is in the repository".into()
        );
    }
    let rows = client
        .query("select coalesce(application_name, '') from pg_stat_replication where state = 'streaming'", &[])
        .await
        .map_err(|e| format!("reading pg_stat_replication: {e}"))?;
    let streaming_to: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    if streaming_to.is_empty() {
        return Err("no standby streams from the takeover: its last WAL would reach no one; rebuild the home as its standby first".into());
    }
    let archived = lifeboat_postgres::archiving::switch_and_wait(&client, timeout).await.map_err(|e| e.to_string())?;
    Ok((archived.switched, streaming_to))
}

fn write(dir: &Path, done: &HandedBack) -> Result<(), String> {
    let path = dir.join(HANDBACK);
    std::fs::write(&path, serde_json::to_vec_pretty(done).expect("a handback serialises"))
        .map_err(|e| format!("writing {}: {e}", path.display()))
}

/// A handback of this takeover cut off after its record was written.
fn partial(dir: &Path) -> Option<HandedBack> {
    serde_json::from_slice(&std::fs::read(dir.join(HANDBACK)).ok()?).ok()
}

/// The finished handback of this takeover, kept under the restore root.
fn handed_back(root: &Path, spec: &HandbackSpec) -> Option<HandedBack> {
    let prefix = format!("takeover-{}.handed-back-", spec.port);
    std::fs::read_dir(root)
        .ok()?
        .flatten()
        .filter(|e| e.file_name().to_str().is_some_and(|n| n.starts_with(&prefix)))
        .filter_map(|e| partial(&e.path()))
        .find(|d| d.takeover == spec.takeover && !d.kept_in.is_empty())
}
