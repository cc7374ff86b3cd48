//! `reprotect`: make a failover's new primary, a takeover kept at this
//! recovery site, archive its WAL and take a base backup into one of the
//! cell's locations (the work is in `lifeboat_drill::reprotect`). Run by
//! the agent service for `lifeboat failover commit`, or by hand.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use clap::Args;

use lifeboat_api::reprotect::{ReprotectSpec, Reprotected};
use lifeboat_drill::reprotect::{self, ReprotectEnv};
use lifeboat_drill::standby;

use crate::commands::pg::{archive_command, pg_bindir_or_default};
use crate::context::{open_repo, Global, RepoArg};
use crate::output::emit;

#[derive(Debug, Args)]
pub struct ReprotectArgs {
    /// The cell's repository to archive and back up into.
    #[command(flatten)]
    repo: RepoArg,
    /// That repository's location name (as the plan names it).
    #[arg(long, default_value = "primary")]
    source_name: String,
    #[command(flatten)]
    takeover: TakeoverArgs,
}

/// A guest cell's takeover kept at this recovery site.
#[derive(Debug, Args)]
pub struct TakeoverArgs {
    #[arg(long, env = "LIFEBOAT_CELL")]
    pub cell: String,
    #[arg(long)]
    pub restore_root: PathBuf,
    /// The takeover's port (its directory is <restore-root>/takeover-<port>).
    #[arg(long)]
    pub port: u16,
    /// The takeover's name, as its directory's takeover.name holds it.
    #[arg(long)]
    pub takeover: String,
    /// Postgres server binaries (default: `pg_config --bindir`).
    #[arg(long)]
    pub pg_bindir: Option<PathBuf>,
    /// How long archiving a segment (and a backup's WAL) may take.
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    pub wal_timeout: Duration,
}

pub async fn run(global: &Global, args: ReprotectArgs) -> Result<ExitCode> {
    let t = args.takeover;
    let spec = ReprotectSpec { cell: t.cell.clone(), takeover: t.takeover, port: t.port, location: args.source_name };
    let env = ReprotectEnv {
        repo: open_repo(global, &args.repo.url).await?,
        archive_command: archive_command(global, &args.repo.url, &t.cell)?,
        restore_root: t.restore_root,
        pg_bindir: pg_bindir_or_default(t.pg_bindir)?,
        server_env: lifeboat_drill::confine::server_env(&[args.repo.url.as_str()], std::env::vars()),
        wal_timeout: t.wal_timeout,
    };
    // Never beside a standby job or a takeover in the same directory.
    let _lock = standby::lock(&env.restore_root, spec.port).map_err(anyhow::Error::msg)?;
    let done = reprotect::reprotect(&env, &spec).await.map_err(anyhow::Error::msg)?;
    emit(global, &done, render);
    Ok(ExitCode::SUCCESS)
}

fn render(r: &Reprotected) -> String {
    format!(
        "takeover {} of cell {} re-protected into {}: timeline {} (fence epoch {}), archiving {}, archived through {}\n  base backup {} ({} .. {})",
        r.takeover,
        r.cell,
        r.location,
        r.timeline,
        r.fence_epoch,
        r.archiving_change,
        r.archived_through,
        r.backup.backup_id,
        r.backup.start_lsn,
        r.backup.stop_lsn
    )
}
