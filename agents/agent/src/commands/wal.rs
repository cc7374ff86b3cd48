//! `wal-push` and `wal-fetch`: the commands Postgres runs as its
//! `archive_command` and `restore_command`. Their exit codes are their API:
//! - wal-push: 0 only when the file is durable in the repository; 1 otherwise
//!   (Postgres keeps the file and retries). With a backlog it starts the
//!   spooler ([`lifeboat_postgres::spool`]) and waits for it to archive the
//!   file, pushing the file itself if the spooler does not.
//! - wal-fetch: 0 with verified bytes at the destination (from the
//!   prefetcher, [`lifeboat_postgres::prefetch`], when it has the segment
//!   ready, else from the repository); 1, quietly, when
//!   the file is not archived (Postgres probes for such files); 255 for any
//!   other failure (corrupt object, unreachable store), which Postgres treats
//!   like a crash of the command and stops recovery instead of ending it
//!   early at the wrong point.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use clap::Args;

use lifeboat_postgres::archive::{self, FetchOutcome};
use lifeboat_postgres::prefetch;
use lifeboat_postgres::spool::Spool;

use crate::context::{open_repo, Global, RepoArg};

#[derive(Debug, Args)]
pub struct PushArgs {
    /// The WAL file (Postgres' %p, relative to the data directory).
    pub path: PathBuf,
    #[command(flatten)]
    pub repo: RepoArg,
    #[arg(long, env = "LIFEBOAT_CELL")]
    pub cell: String,
    /// With a backlog of `.ready` files, a background spooler archives them
    /// this many at once, ahead of Postgres asking; 1 turns the spooler off
    /// (each call pushes its own file).
    #[arg(long, default_value_t = 3, env = "LIFEBOAT_WAL_PARALLEL")]
    pub parallel: usize,
    /// How long a call waits for the spooler to archive its file before
    /// pushing it itself.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration, env = "LIFEBOAT_WAL_SPOOL_WAIT")]
    pub spool_wait: Duration,
    /// Run as the spooler of the file's `pg_wal` (wal-push starts it itself).
    #[arg(long, hide = true)]
    pub spooler: bool,
}

/// The spooler stops after this long with nothing ready.
const SPOOLER_IDLE: Duration = Duration::from_secs(2);

#[derive(Debug, Args)]
pub struct FetchArgs {
    /// WAL file name (Postgres' %f).
    pub name: String,
    /// Where to write it (Postgres' %p).
    pub dest: PathBuf,
    #[command(flatten)]
    pub repo: RepoArg,
    #[arg(long, env = "LIFEBOAT_CELL")]
    pub cell: String,
    /// Segments a background prefetcher keeps verified in
    /// `pg_wal/lifeboat_prefetch/` ahead of recovery (16 MiB each); 0 turns
    /// it off.
    #[arg(long, default_value_t = 8, env = "LIFEBOAT_WAL_PREFETCH")]
    pub prefetch: usize,
    /// Run as the prefetcher of the destination's `pg_wal` (wal-fetch starts it itself).
    #[arg(long, hide = true)]
    pub prefetcher: bool,
}

/// The prefetcher stops after recovery asked for nothing new this long.
const PREFETCHER_IDLE: Duration = Duration::from_secs(10);
/// Segments the prefetcher fetches at once.
const PREFETCH_PARALLEL: usize = 2;

pub async fn push(global: &Global, args: PushArgs) -> Result<ExitCode> {
    let repo = open_repo(global, &args.repo.url).await?;
    let wal_dir = args.path.parent().map(Path::to_path_buf).unwrap_or_default();
    let spool = Spool::new(&wal_dir, &args.repo.url, &args.cell);
    if args.spooler {
        let report = spool.run(&repo, &args.cell, args.parallel.max(1), SPOOLER_IDLE).await?;
        tracing::debug!(ran = report.ran, archived = report.archived, "spooler done");
        return Ok(ExitCode::SUCCESS);
    }
    let name = archive::file_name(&args.path)?;
    let mut by_spooler = spool.take_marker(&repo, &args.cell, &name).await?;
    if !by_spooler && args.parallel > 1 {
        let mut started = None;
        if !spool.running() && !spool.backlog(&BTreeSet::from([name.clone()])).is_empty() {
            started = start_helper("--spooler").map_err(|e| tracing::warn!(error = %e, "cannot start the WAL spooler; pushing alone")).ok();
        }
        if started.is_some() || spool.running() {
            spool.wait_for(&name, started.as_mut(), args.spool_wait).await;
            by_spooler = spool.take_marker(&repo, &args.cell, &name).await?;
        }
    }
    let outcome = match by_spooler {
        true => None,
        false => Some(archive::push(&repo, &args.cell, &args.path).await?),
    };
    tracing::info!(file = %name, by_spooler, already_archived = outcome == Some(archive::PushOutcome::AlreadyArchived), "archived");
    Ok(ExitCode::SUCCESS)
}

/// Start this same command as a background helper (`--spooler`,
/// `--prefetcher`) of its `pg_wal`: same arguments and environment, its own
/// process group (signals meant for Postgres' archiver or startup process do
/// not reach it), no stdin/stdout; its log goes to the same stderr.
fn start_helper(flag: &str) -> std::io::Result<std::process::Child> {
    use std::os::unix::process::CommandExt;
    std::process::Command::new(std::env::current_exe()?)
        .args(std::env::args_os().skip(1))
        .arg(flag)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .process_group(0)
        .spawn()
}

pub async fn fetch(global: &Global, args: FetchArgs) -> Result<ExitCode> {
    let prefetch_dir = (args.prefetch > 0).then(|| prefetch::dir_for(&args.dest, &args.name, &args.repo.url, &args.cell)).flatten();
    if args.prefetcher {
        let Some(dir) = prefetch_dir else { return Ok(ExitCode::SUCCESS) };
        let repo = open_repo(global, &args.repo.url).await?;
        let report = prefetch::run(&repo, &args.cell, &dir, args.prefetch, PREFETCH_PARALLEL, PREFETCHER_IDLE).await?;
        tracing::debug!(ran = report.ran, fetched = report.fetched, unused = report.unused, "prefetcher done");
        return Ok(ExitCode::SUCCESS);
    }
    let outcome = async {
        // Prefetching is an optimisation: its trouble never fails the fetch.
        match prefetch_dir.as_ref().map(|dir| prefetch::take(dir, &args.name, &args.dest)) {
            Some(Ok(Some(len))) => return Ok(FetchOutcome::Restored(len)),
            Some(Err(e)) => tracing::warn!(error = %e, "cannot take the prefetched segment; fetching it from the repository"),
            Some(Ok(None)) | None => {}
        }
        let repo = open_repo(global, &args.repo.url).await?;
        Ok::<_, anyhow::Error>(archive::fetch(&repo, &args.cell, &args.name, &args.dest).await?)
    }
    .await;
    if let (Some(dir), Ok(FetchOutcome::Restored(_))) = (&prefetch_dir, &outcome) {
        let started = prefetch::record_want(dir, &args.name).map_err(anyhow::Error::from).and_then(|()| {
            if dir.running() {
                Ok(())
            } else {
                start_helper("--prefetcher").map(drop).map_err(Into::into)
            }
        });
        if let Err(e) = started {
            tracing::warn!(error = %e, "WAL prefetch unavailable; fetching one segment at a time");
        }
    }
    match outcome {
        Ok(FetchOutcome::Restored(bytes)) => {
            tracing::info!(file = %args.name, bytes, "restored");
            Ok(ExitCode::SUCCESS)
        }
        Ok(FetchOutcome::Missing) => {
            tracing::debug!(file = %args.name, "not archived");
            Ok(ExitCode::from(1))
        }
        Err(e) => {
            eprintln!("error: {e:#}; stopping recovery rather than ending it early");
            Ok(ExitCode::from(255))
        }
    }
}
