//! `pg backup | restore | info | check`: Postgres base backups, point-in-time
//! restores, and the state of a cell's backups and WAL chain.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use serde::Serialize;

use lifeboat_postgres::backup::{self, BackupRequest, PgDetails};
use lifeboat_postgres::chain;
use lifeboat_postgres::lsn::Lsn;
use lifeboat_postgres::restore::{self, RestoreRequest, Target};
use lifeboat_postgres::server;

use crate::context::{open_repo, Global, RepoArg};
use crate::output::{emit, retention_text, with_progress};

/// What a restored cluster does with its `archive_mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ArchiveMode {
    Off,
    Preserve,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BackupKind {
    Full,
    Incremental,
}

/// Exactly one recovery target.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct TargetArgs {
    /// Recover to this time (RFC 3339, e.g. 2026-11-26T10:15:00Z), inclusive.
    #[arg(long)]
    target_time: Option<String>,
    /// Recover to this WAL position (e.g. 0/3000060).
    #[arg(long)]
    target_lsn: Option<String>,
    /// Recover up to and including this transaction id.
    #[arg(long)]
    target_xid: Option<u64>,
    /// Recover to this named restore point (pg_create_restore_point).
    #[arg(long)]
    target_name: Option<String>,
    /// Recover everything archived.
    #[arg(long)]
    latest: bool,
}

impl TargetArgs {
    fn target(&self) -> Result<Target> {
        if let Some(t) = &self.target_time {
            let t = time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
                .with_context(|| format!("--target-time {t:?} is not an RFC 3339 time such as 2026-11-26T10:15:00Z"))?;
            return Ok(Target::Time(t));
        }
        if let Some(l) = &self.target_lsn {
            return Ok(Target::Lsn(l.parse::<Lsn>().map_err(anyhow::Error::msg)?));
        }
        if let Some(x) = self.target_xid {
            return Ok(Target::Xid(x));
        }
        if let Some(n) = &self.target_name {
            return Ok(Target::Name(n.clone()));
        }
        Ok(Target::Latest)
    }
}

#[derive(Debug, Subcommand)]
pub enum PgCommand {
    /// Take a base backup (valid only once the WAL it needs is archived).
    Backup(BackupArgs),
    /// Restore to a point in time into an empty directory, ready for pg_ctl start.
    Restore(RestoreArgs),
    /// Apply retention to a cell's Postgres backups and the WAL they no longer need:
    /// shows the plan, then deletes (unless --dry-run).
    Retention(RetentionArgs),
    /// List Postgres backups with LSNs, sizes and the recoverable window.
    Info(InfoArgs),
    /// Check the archived WAL chain: per timeline the range and every gap; exits 1 on a gap.
    Check(CheckArgs),
}

#[derive(Debug, Args)]
pub struct BackupArgs {
    #[command(flatten)]
    pub repo: RepoArg,
    #[arg(long, env = "LIFEBOAT_CELL")]
    pub cell: String,
    /// libpq conninfo of the cluster, e.g. "host=127.0.0.1 port=5432 user=postgres".
    #[arg(long, env = "LIFEBOAT_PG_CONN")]
    pub conn: String,
    /// The data directory as this agent sees it (default: the server's data_directory).
    #[arg(long)]
    pub pgdata: Option<PathBuf>,
    /// How long to wait for the backup's WAL to reach the repository.
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    pub wal_timeout: Duration,
    /// full (daily) reads every file; incremental (hourly) reuses files unchanged since the newest backup.
    #[arg(long, value_enum, default_value = "full")]
    pub kind: BackupKind,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    #[command(flatten)]
    pub repo: RepoArg,
    #[arg(long, env = "LIFEBOAT_CELL")]
    pub cell: String,
    /// Target data directory (must not exist or be empty, unless --delta).
    #[arg(long)]
    pub to: PathBuf,
    /// Restore over an existing (stopped) data directory: keep files whose
    /// BLAKE3 hash matches the backup, rewrite the rest, remove what it lacks.
    #[arg(long)]
    pub delta: bool,
    #[command(flatten)]
    pub target: TargetArgs,
    /// Restore this backup instead of the newest one before the target.
    #[arg(long)]
    pub backup: Option<String>,
    /// The lifeboat-agent that Postgres' restore_command runs (default: this one).
    #[arg(long)]
    pub agent_path: Option<PathBuf>,
    /// off (default): the restored cluster does not archive, so a copy never
    /// pushes WAL into the cell's archive; preserve: keep its archive_mode (a
    /// restore that replaces production).
    #[arg(long, value_enum, default_value = "off")]
    pub archive_mode: ArchiveMode,
    /// Accepted for older scripts: archiving is off unless --archive-mode preserve.
    #[arg(long, hide = true, conflicts_with = "archive_mode")]
    pub no_archive: bool,
    /// Start the restored cluster on --port, wait for promotion, report the point reached.
    #[arg(long, requires = "port")]
    pub start: bool,
    #[arg(long)]
    pub port: Option<u16>,
    /// Postgres server binaries (default: `pg_config --bindir`).
    #[arg(long)]
    pub pg_bindir: Option<PathBuf>,
    /// Restore tablespace OID into DIR instead of its original location (repeatable).
    #[arg(long = "tablespace-map", value_name = "OID=DIR")]
    pub tablespace_map: Vec<String>,
    /// Restore every tablespace into DIR/<oid> (default: its original location, which must be empty).
    #[arg(long)]
    pub tablespaces_under: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct RetentionArgs {
    #[command(flatten)]
    pub repo: RepoArg,
    #[arg(long, env = "LIFEBOAT_CELL")]
    pub cell: String,
    /// Always keep this many newest backups.
    #[arg(long, default_value_t = 2)]
    pub keep_last: usize,
    /// Keep every backup younger than this (the platform keeps daily fulls 35 days).
    #[arg(long, default_value = "35d", value_parser = humantime::parse_duration)]
    pub keep_within: Duration,
    /// Keep incremental backups younger than this instead (the platform keeps hourly incrementals 7 days).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub keep_incremental_within: Option<Duration>,
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct InfoArgs {
    #[command(flatten)]
    pub repo: RepoArg,
    #[arg(long, env = "LIFEBOAT_CELL")]
    pub cell: String,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub repo: RepoArg,
    #[arg(long, env = "LIFEBOAT_CELL")]
    pub cell: String,
}

#[derive(Serialize)]
struct InfoBackup {
    id: String,
    kind: String,
    started: String,
    finished: String,
    bytes: u64,
    stored_new_bytes: u64,
    #[serde(flatten)]
    details: PgDetails,
}

#[derive(Serialize)]
struct Info {
    cell: String,
    backups: Vec<InfoBackup>,
    /// From the end of the oldest backup to the end of the newest archived WAL.
    recoverable_from: Option<String>,
    recoverable_to_wal: Option<String>,
    wal: chain::ChainReport,
}

/// Postgres' `restore_command` for a restore from `repo_url`: this agent's
/// `wal-fetch`, with the key file when the repository is encrypted.
pub fn restore_command(global: &Global, repo_url: &str, cell: &str, agent_path: Option<PathBuf>) -> Result<String> {
    wal_command(global, "wal-fetch %f %p", repo_url, cell, agent_path)
}

/// Postgres' `archive_command` for `repo_url` as `cell`: `wal-push %p` of this agent.
pub fn archive_command(global: &Global, repo_url: &str, cell: &str) -> Result<String> {
    wal_command(global, "wal-push %p", repo_url, cell, None)
}

/// `<agent> <verb> --repo URL --cell CELL [--key-file F]`, shell-quoted.
fn wal_command(global: &Global, verb: &str, repo_url: &str, cell: &str, agent_path: Option<PathBuf>) -> Result<String> {
    let key_file = match &global.key_file {
        Some(k) => Some(std::fs::canonicalize(k).with_context(|| format!("key file {}", k.display()))?),
        None if std::env::var("LIFEBOAT_KEY").is_ok() => {
            bail!("Postgres' {verb} command needs --key-file: it must read the key from a file")
        }
        None => None,
    };
    let agent = match agent_path {
        Some(p) => p,
        None => std::env::current_exe().context("locating this lifeboat-agent")?,
    };
    // Shell-quoted: Postgres runs it through /bin/sh, and URLs carry '?' and '&'.
    let quote = |s: &str| format!("'{}'", s.replace('\'', "'\\''"));
    let mut command = format!("{} {verb} --repo {} --cell {cell}", quote(&agent.display().to_string()), quote(repo_url));
    if let Some(k) = &key_file {
        command.push_str(&format!(" --key-file {}", quote(&k.display().to_string())));
    }
    Ok(command)
}

/// The Postgres server binaries: as given, or where `pg_config --bindir` says.
pub fn pg_bindir_or_default(given: Option<PathBuf>) -> Result<PathBuf> {
    if let Some(b) = given {
        return Ok(b);
    }
    let out =
        std::process::Command::new("pg_config").arg("--bindir").output().context("running pg_config --bindir (or pass --pg-bindir)")?;
    Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

fn rfc(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}

pub async fn run(global: &Global, cmd: PgCommand) -> Result<ExitCode> {
    match cmd {
        PgCommand::Backup(a) => backup(global, a).await,
        PgCommand::Restore(a) => restore(global, a).await,
        PgCommand::Retention(a) => retention(global, a).await,
        PgCommand::Info(a) => info(global, a).await,
        PgCommand::Check(a) => check(global, a).await,
    }
}

async fn backup(global: &Global, a: BackupArgs) -> Result<ExitCode> {
    let BackupArgs { repo, cell, conn, pgdata, wal_timeout, kind } = a;
    let r = open_repo(global, &repo.url).await?;
    let incremental = kind == BackupKind::Incremental;
    let request = BackupRequest { cell, conninfo: conn, pgdata, wal_timeout, incremental };
    let m = with_progress(&r, "backing up", backup::backup(&r, &request)).await?;
    let out = backup::done(&m).expect("a pg backup has details");
    emit(global, &out, |o| {
        format!(
            "{} backup {} of cell {}: LSN {} .. {} on timeline {}, {} files ({} reused unread), {} bytes, {} new chunks stored ({} bytes) in {:.1}s",
            m.kind, o.backup_id, m.cell, o.start_lsn, o.stop_lsn, o.timeline, o.totals.files, o.totals.reused_files, o.totals.bytes, o.totals.new_chunks, o.totals.new_stored_bytes, o.seconds
        )
    });
    Ok(ExitCode::SUCCESS)
}

async fn restore(global: &Global, a: RestoreArgs) -> Result<ExitCode> {
    let RestoreArgs {
        repo,
        cell,
        to,
        delta,
        target,
        backup,
        agent_path,
        archive_mode,
        no_archive: _,
        start,
        port,
        pg_bindir,
        tablespace_map,
        tablespaces_under,
    } = a;
    let mut map = Vec::new();
    for m in &tablespace_map {
        let Some((oid, dir)) = m.split_once('=').filter(|(o, d)| !o.is_empty() && o.bytes().all(|b| b.is_ascii_digit()) && !d.is_empty())
        else {
            bail!("--tablespace-map {m:?}: write OID=DIR, e.g. 16384=/srv/restore/ts1 (`pg info --output json` shows each backup's tablespace_map)");
        };
        map.push((oid.to_string(), PathBuf::from(dir)));
    }
    let restore_command = restore_command(global, &repo.url, &cell, agent_path)?;
    let r = open_repo(global, &repo.url).await?;
    let req = RestoreRequest {
        cell,
        to,
        target: target.target()?,
        backup,
        restore_command,
        archiving: if archive_mode == ArchiveMode::Preserve { restore::Archiving::Keep } else { restore::Archiving::Off },
        delta,
        tablespace_map: map,
        tablespaces_under,
    };
    let mut report = with_progress(&r, "restoring", restore::restore(&r, &req)).await?;
    if start {
        let bindir = pg_bindir_or_default(pg_bindir)?;
        let launch = server::Launch {
            bindir,
            listen: server::Listen::Loopback { port: port.expect("clap requires --port") },
            env: None,
            timeout: Duration::from_secs(3600),
        };
        server::start_and_wait(&mut report, &launch).await?;
    }
    emit(global, &report, |rep| {
        let mut out = format!(
            "restored backup {} (stop LSN {}) into {} for target {}; WAL archived up to {}\n",
            rep.backup_id, rep.backup_stop_lsn, rep.data_directory, rep.target, rep.latest_archived_wal
        );
        if rep.files_reused > 0 {
            let _ = writeln!(
                out,
                "delta: kept {} files ({} bytes) that already matched, wrote {}",
                rep.files_reused, rep.bytes_reused, rep.files_written
            );
        }
        match &rep.reached {
            Some(p) => {
                let _ = writeln!(
                    out,
                    "promoted after {:.1}s: reached LSN {}, last transaction at {}, timeline {}",
                    p.seconds_to_promote,
                    p.lsn,
                    p.last_transaction_time.as_deref().unwrap_or("(none replayed)"),
                    p.timeline
                );
            }
            None => out.push_str("start it with pg_ctl -D <dir> start; it replays to the target and promotes\n"),
        }
        out
    });
    Ok(ExitCode::SUCCESS)
}

async fn retention(global: &Global, a: RetentionArgs) -> Result<ExitCode> {
    let RetentionArgs { repo, cell, keep_last, keep_within, keep_incremental_within, dry_run } = a;
    let r = open_repo(global, &repo.url).await?;
    let policy = lifeboat_repository::retention::Policy {
        keep_last,
        keep_within,
        keep_within_kind: keep_incremental_within.map(|d| (backup::KIND_INCREMENTAL.to_string(), d)).into_iter().collect(),
        kind_prefix: Some("pg-".into()),
        one_series: false,
        folded_kind: None,
    };
    let now = time::OffsetDateTime::now_utc();
    let plan = if dry_run {
        lifeboat_postgres::retention::plan(&r, &cell, &policy, now).await?
    } else {
        lifeboat_postgres::retention::execute(&r, &cell, &policy, now).await?
    };
    emit(global, &plan, |p| {
        let wal = format!(
            "; {} WAL files (WAL from {} on is kept)",
            p.delete_wal.len(),
            p.keep_wal_from.as_deref().unwrap_or("(no retained backup: all WAL kept)")
        );
        retention_text(&p.backups, dry_run, &wal)
    });
    Ok(ExitCode::SUCCESS)
}

async fn info(global: &Global, a: InfoArgs) -> Result<ExitCode> {
    let InfoArgs { repo, cell } = a;
    let r = open_repo(global, &repo.url).await?;
    let backups = backup::list_backups(&r, &cell).await?;
    let wal = chain::check(&r, &cell).await?;
    let info = Info {
        recoverable_from: backups.first().map(|(m, _)| rfc(m.finished)),
        recoverable_to_wal: wal.timelines.last().map(|t| t.last.clone()),
        cell: cell.clone(),
        backups: backups
            .into_iter()
            .map(|(m, d)| InfoBackup {
                id: m.id,
                kind: m.kind,
                started: rfc(m.started),
                finished: rfc(m.finished),
                bytes: m.totals.bytes,
                stored_new_bytes: m.totals.new_stored_bytes,
                details: d,
            })
            .collect(),
        wal,
    };
    emit(global, &info, |i| {
        let mut out = String::new();
        for b in &i.backups {
            let _ = writeln!(
                out,
                "{}  {}  LSN {} .. {}  tl {}  {} bytes ({} new stored)",
                b.id, b.finished, b.details.start_lsn, b.details.stop_lsn, b.details.timeline, b.bytes, b.stored_new_bytes
            );
        }
        let _ = writeln!(
            out,
            "cell {}: recoverable from {} to the end of WAL {}",
            i.cell,
            i.recoverable_from.as_deref().unwrap_or("(no backup)"),
            i.recoverable_to_wal.as_deref().unwrap_or("(no WAL)")
        );
        out
    });
    Ok(ExitCode::SUCCESS)
}

async fn check(global: &Global, a: CheckArgs) -> Result<ExitCode> {
    let CheckArgs { repo, cell } = a;
    let r = open_repo(global, &repo.url).await?;
    let report = chain::check(&r, &cell).await?;
    emit(global, &report, |c| {
        let mut out = String::new();
        if c.timelines.is_empty() {
            let _ = writeln!(out, "cell {}: no WAL archived", c.cell);
        }
        for t in &c.timelines {
            let _ = writeln!(
                out,
                "cell {} timeline {}: {} .. {} ({} segments{}{})",
                c.cell,
                t.timeline,
                t.first,
                t.last,
                t.segments,
                if t.has_history { ", history file present" } else { "" },
                if t.partial.is_empty() { String::new() } else { format!(", partial: {}", t.partial.join(" ")) }
            );
            for g in &t.gaps {
                let _ = writeln!(out, "  GAP: {} .. {} ({} segments missing)", g.from, g.to, g.segments);
            }
        }
        for conflict in &c.conflicts {
            let _ = writeln!(out, "  conflict kept: {conflict}");
        }
        out
    });
    Ok(if report.has_gaps() { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}
