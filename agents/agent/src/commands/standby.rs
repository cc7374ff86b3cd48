//! `standby ensure | show`: keep a standby of a cell at a recovery site
//! (the work is in `lifeboat_drill::standby`), and report one. The
//! standby's server runs on after the command ends, like any Postgres
//! started with `pg_ctl`; `ensure` again starts it when it is down.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Subcommand, ValueEnum};

use lifeboat_api::standby::{StandbyMode, StandbySpec, StandbyStatus};
use lifeboat_drill::run::Source;
use lifeboat_drill::standby::{self, StandbyEnv};

use crate::commands::pg::{pg_bindir_or_default, restore_command};
use crate::context::{open_repo, Global, RepoArg};
use crate::output::emit;

#[derive(Debug, Subcommand)]
pub enum StandbyCommand {
    /// Bootstrap the cell's standby from --repo's newest base backup (or
    /// start it, or find it running) in <restore-root>/takeover-<port>.
    Ensure(EnsureArgs),
    /// The standby kept at --port: its mode, backup, receive and replay
    /// positions, lag. Exit 1 when none is kept there.
    Show {
        #[arg(long)]
        restore_root: PathBuf,
        #[arg(long)]
        port: u16,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Mode {
    /// Stream from the primary (--primary-conninfo), replay the archive when streaming breaks.
    Stream,
    /// Replay the archive only.
    Archive,
}

#[derive(Debug, Args)]
pub struct EnsureArgs {
    /// The repository to bootstrap and replay from.
    #[command(flatten)]
    repo: RepoArg,
    /// That repository's location name (as the plan names it).
    #[arg(long, default_value = "primary")]
    source_name: String,
    #[arg(long, env = "LIFEBOAT_CELL")]
    cell: String,
    #[arg(long)]
    restore_root: PathBuf,
    /// The port it (and, once promoted, the cell's new primary) listens on.
    #[arg(long)]
    port: u16,
    #[arg(long, value_enum)]
    mode: Mode,
    /// `stream`: the primary to stream from (libpq; no password: use a passfile).
    #[arg(long, env = "LIFEBOAT_PRIMARY_CONNINFO")]
    primary_conninfo: Option<String>,
    /// Postgres server binaries (default: `pg_config --bindir`).
    #[arg(long)]
    pg_bindir: Option<PathBuf>,
    /// Give up on the bootstrap's replay after this long.
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    timeout: Duration,
}

pub async fn run(global: &Global, cmd: StandbyCommand) -> Result<ExitCode> {
    match cmd {
        StandbyCommand::Ensure(args) => ensure(global, args).await,
        StandbyCommand::Show { restore_root, port } => {
            let dir = standby::dir(&restore_root, port);
            let record = standby::record(&dir).with_context(|| format!("no standby is kept in {}", dir.display()))?;
            let status = standby::status(&dir, &record, "shown").await;
            emit(global, &status, render);
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn ensure(global: &Global, args: EnsureArgs) -> Result<ExitCode> {
    let mode = match args.mode {
        Mode::Stream => StandbyMode::Stream,
        Mode::Archive => StandbyMode::Archive,
    };
    let spec = StandbySpec {
        cell: args.cell.clone(),
        location: args.source_name.clone(),
        port: args.port,
        mode,
        primary_conninfo: args.primary_conninfo.clone(),
        signature: None,
    };
    let env = StandbyEnv {
        cell: args.cell.clone(),
        source: Source {
            name: args.source_name.clone(),
            repo: open_repo(global, &args.repo.url).await?,
            restore_command: restore_command(global, &args.repo.url, &args.cell, None)?,
        },
        restore_root: args.restore_root.clone(),
        pg_bindir: pg_bindir_or_default(args.pg_bindir)?,
        server_env: lifeboat_drill::confine::server_env(&[args.repo.url.as_str()], std::env::vars()),
        timeout: args.timeout,
    };
    let _lock = standby::lock(&env.restore_root, spec.port).map_err(anyhow::Error::msg)?;
    let status = standby::ensure(&env, &spec).await.map_err(anyhow::Error::msg)?;
    emit(global, &status, render);
    Ok(ExitCode::SUCCESS)
}

fn render(s: &StandbyStatus) -> String {
    let st = &s.state;
    let lag = st.replay_lag_seconds.map_or_else(|| "unknown (not streaming)".to_string(), |l| format!("{l:.1}s"));
    let mut out = format!(
        "standby of cell {} ({}) on port {}: {}\n  bootstrapped {} from backup {} in {}\n  running {}, in recovery {}, streaming {}\n  received {}, replayed {} (last transaction {}), lag {lag}",
        s.cell,
        s.mode.as_str(),
        s.port,
        s.action,
        s.bootstrapped_at,
        s.backup,
        s.location,
        st.running,
        st.in_recovery,
        st.streaming,
        st.receive_lsn.as_deref().unwrap_or("-"),
        st.replay_lsn.as_deref().unwrap_or("-"),
        st.last_replayed_transaction.as_deref().unwrap_or("-"),
    );
    if let Some(p) = &st.problem {
        out.push_str(&format!("\n  problem: {p}"));
    }
    out
}
