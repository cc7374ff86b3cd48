//! `failback rebuild | handback | promote`: the agents' steps of failing a
//! cell back home after a failover (the work is in
//! `lifeboat_drill::failback` and `lifeboat_postgres::standby`). Run by
//! the agent service for `lifeboat failover failback`, or by hand.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};

use lifeboat_api::failback::{Crashed, HandbackSpec, HandedBack, HomePromoted, RebuildSpec, Rebuilt};
use lifeboat_drill::failback::{self, HandbackEnv, RebuildEnv};
use lifeboat_drill::run::Source;

use crate::commands::pg::{archive_command, pg_bindir_or_default, restore_command};
use crate::commands::reprotect::TakeoverArgs;
use crate::context::{open_repo, Global, RepoArg};
use crate::output::emit;

#[derive(Debug, Subcommand)]
pub enum FailbackCommand {
    /// Home: set the cell's data directory aside and rebuild it from --repo's newest base backup as
    /// a standby streaming from the new primary; it archives into --archive-repo once promoted.
    Rebuild(RebuildArgs),
    /// Recovery site: stop the cell's takeover once its WAL is archived and a standby streams it,
    /// and report its last WAL (shutdown checkpoint).
    Handback(HandbackArgs),
    /// Home: promote the rebuilt standby once it replayed past --after-lsn (never before).
    Promote(PromoteArgs),
    /// Home, a chaos drill's first step: stop the cell's Postgres as a crash would
    /// (pg_ctl stop -m immediate), so that it fails over to its standby.
    Crash(CrashArgs),
}

#[derive(Debug, Args)]
pub struct CrashArgs {
    #[arg(long, env = "LIFEBOAT_CELL")]
    cell: String,
    #[arg(long)]
    pgdata: PathBuf,
    /// Why, for the log.
    #[arg(long)]
    reason: String,
    #[arg(long)]
    pg_bindir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct RebuildArgs {
    /// The location to rebuild from (where the new primary archives).
    #[command(flatten)]
    repo: RepoArg,
    #[arg(long, default_value = "primary")]
    source_name: String,
    /// The home's own repository, its archive_command's (default: --repo).
    #[arg(long)]
    archive_repo: Option<String>,
    #[arg(long, env = "LIFEBOAT_CELL")]
    cell: String,
    /// The cell's data directory on this host.
    #[arg(long)]
    pgdata: PathBuf,
    /// How to reach the cell's server here (its port is the one it is started on).
    #[arg(long, env = "LIFEBOAT_PG_CONN")]
    conn: String,
    /// The new primary to stream from (libpq; no password: use a passfile).
    #[arg(long, env = "LIFEBOAT_PRIMARY_CONNINFO")]
    primary_conninfo: String,
    #[arg(long)]
    pg_bindir: Option<PathBuf>,
    /// How long the restore's replay and the start of streaming may take.
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    timeout: Duration,
}

#[derive(Debug, Args)]
pub struct HandbackArgs {
    #[command(flatten)]
    takeover: TakeoverArgs,
}

#[derive(Debug, Args)]
pub struct PromoteArgs {
    #[arg(long, env = "LIFEBOAT_CELL")]
    cell: String,
    #[arg(long, env = "LIFEBOAT_PG_CONN")]
    conn: String,
    /// The old primary's last WAL (failback handback's final_lsn).
    #[arg(long)]
    after_lsn: String,
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    timeout: Duration,
}

pub async fn run(global: &Global, cmd: FailbackCommand) -> Result<ExitCode> {
    match cmd {
        FailbackCommand::Rebuild(a) => rebuild(global, a).await,
        FailbackCommand::Handback(HandbackArgs { takeover: a }) => {
            let spec = HandbackSpec { cell: a.cell, takeover: a.takeover, port: a.port };
            let env =
                HandbackEnv { restore_root: a.restore_root, pg_bindir: pg_bindir_or_default(a.pg_bindir)?, wal_timeout: a.wal_timeout };
            let done = failback::handback(&env, &spec).await.map_err(anyhow::Error::msg)?;
            emit(global, &done, render_handback);
            Ok(ExitCode::SUCCESS)
        }
        FailbackCommand::Crash(a) => {
            let pid = lifeboat_postgres::server::postmaster(&a.pgdata);
            tracing::warn!(cell = %a.cell, reason = %a.reason, ?pid, "stopping the cell's Postgres as a crash would");
            lifeboat_drill::scratch::stop_server(&a.pgdata, &pg_bindir_or_default(a.pg_bindir)?).map_err(anyhow::Error::msg)?;
            let done = Crashed { data_directory: a.pgdata.display().to_string(), pid };
            emit(global, &done, |d| format!("{}: stopped as a crash would (postmaster {:?})", d.data_directory, d.pid));
            Ok(ExitCode::SUCCESS)
        }
        FailbackCommand::Promote(a) => {
            let (replayed_lsn, reached) = lifeboat_postgres::standby::promote_after(&a.conn, &a.after_lsn, a.timeout)
                .await
                .with_context(|| format!("promoting cell {}", a.cell))?;
            let done = HomePromoted { replayed_lsn, reached };
            emit(global, &done, |d| {
                format!("promoted after replaying {}: now timeline {} at {}", d.replayed_lsn, d.reached.timeline, d.reached.lsn)
            });
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn rebuild(global: &Global, a: RebuildArgs) -> Result<ExitCode> {
    let port = lifeboat_postgres::conninfo::parse(&a.conn)?.get_ports().first().copied().unwrap_or(5432);
    let archive_repo = a.archive_repo.clone().unwrap_or_else(|| a.repo.url.clone());
    let env = RebuildEnv {
        source: Source {
            name: a.source_name.clone(),
            repo: open_repo(global, &a.repo.url).await?,
            restore_command: restore_command(global, &a.repo.url, &a.cell, None)?,
        },
        pgdata: a.pgdata,
        port,
        conninfo: a.conn,
        archive_command: archive_command(global, &archive_repo, &a.cell)?,
        pg_bindir: pg_bindir_or_default(a.pg_bindir)?,
        server_env: lifeboat_drill::confine::server_env(&[a.repo.url.as_str(), archive_repo.as_str()], std::env::vars()),
        timeout: a.timeout,
    };
    let spec = RebuildSpec { cell: a.cell, location: a.source_name, primary_conninfo: a.primary_conninfo, signature: None };
    let done = failback::rebuild(&env, &spec).await.map_err(anyhow::Error::msg)?;
    emit(global, &done, render_rebuilt);
    Ok(ExitCode::SUCCESS)
}

fn render_rebuilt(r: &Rebuilt) -> String {
    format!(
        "{} {} as a standby from backup {} (streaming {}, replayed {}){}",
        r.data_directory,
        r.action,
        r.backup,
        r.state.streaming,
        r.state.replay_lsn.as_deref().unwrap_or("-"),
        r.set_aside.as_ref().map(|s| format!("; the old data directory is kept in {s}")).unwrap_or_default()
    )
}

fn render_handback(h: &HandedBack) -> String {
    format!(
        "takeover {} stopped: archived through {}, last WAL {} on timeline {}, streamed to {}; kept in {}",
        h.takeover,
        h.archived_through,
        h.final_lsn,
        h.timeline,
        h.streaming_to.join(", "),
        h.kept_in
    )
}
