//! `wal-push` and `wal-fetch`: the commands Postgres runs as its
//! `archive_command` and `restore_command`. Their exit codes are their API:
//! - wal-push: 0 only when the file is durable in the repository; 1 otherwise
//!   (Postgres keeps the file and retries).
//! - wal-fetch: 0 with verified bytes at the destination; 1, quietly, when
//!   the file is not archived (Postgres probes for such files); 255 for any
//!   other failure (corrupt object, unreachable store), which Postgres treats
//!   like a crash of the command and stops recovery instead of ending it
//!   early at the wrong point.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;

use lifeboat_postgres::archive::{self, FetchOutcome};

use crate::context::{open_repo, Global, RepoArg};

#[derive(Debug, Args)]
pub struct PushArgs {
    /// The WAL file (Postgres' %p, relative to the data directory).
    pub path: PathBuf,
    #[command(flatten)]
    pub repo: RepoArg,
    #[arg(long, env = "LIFEBOAT_CELL")]
    pub cell: String,
    /// Files pushed at once: this one plus other `.ready` files, ahead of Postgres asking.
    #[arg(long, default_value_t = 4, env = "LIFEBOAT_WAL_PARALLEL")]
    pub parallel: usize,
}

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
}

pub async fn push(global: &Global, args: PushArgs) -> Result<ExitCode> {
    let repo = open_repo(global, &args.repo.url).await?;
    let report = archive::push_with_readahead(&repo, &args.cell, &args.path, args.parallel.max(1)).await?;
    tracing::info!(file = %report.name, already_archived = report.already_archived, pushed_ahead = report.pushed_ahead.len(), "archived");
    Ok(ExitCode::SUCCESS)
}

pub async fn fetch(global: &Global, args: FetchArgs) -> Result<ExitCode> {
    let outcome = async {
        let repo = open_repo(global, &args.repo.url).await?;
        Ok::<_, anyhow::Error>(archive::fetch(&repo, &args.cell, &args.name, &args.dest).await?)
    }
    .await;
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
