//! `files backup | restore`: configuration directories.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Subcommand;

use lifeboat_repository::files;

use crate::context::{open_repo, Global, RepoArg};
use crate::output::{bytes, emit, with_progress};

#[derive(Debug, Subcommand)]
pub enum FilesCommand {
    /// Back up a directory tree (content, mode bits, mtimes, symlinks).
    Backup {
        /// Directory to back up.
        dir: PathBuf,
        #[command(flatten)]
        repo: RepoArg,
        #[arg(long, env = "LIFEBOAT_CELL")]
        cell: String,
    },
    /// Restore a backup into a new (or empty) directory.
    Restore {
        /// Backup id, or `latest`.
        backup: String,
        /// Target directory; must not exist or be empty, unless --delta.
        dir: PathBuf,
        #[command(flatten)]
        repo: RepoArg,
        #[arg(long, env = "LIFEBOAT_CELL")]
        cell: String,
        /// Restore over an existing directory: keep files whose BLAKE3 hash matches
        /// the backup, rewrite the rest, remove entries the backup lacks.
        #[arg(long)]
        delta: bool,
        /// Keep setuid/setgid bits as backed up (by default they are cleared).
        #[arg(long)]
        preserve_special_bits: bool,
    },
}

pub async fn run(global: &Global, cmd: FilesCommand) -> Result<ExitCode> {
    match cmd {
        FilesCommand::Backup { dir, repo, cell } => {
            let r = open_repo(global, &repo.url).await?;
            let m = with_progress(&r, "backing up", files::backup_dir(&r, &cell, &dir)).await?;
            #[derive(serde::Serialize)]
            struct Out<'a> {
                backup_id: &'a str,
                cell: &'a str,
                totals: &'a lifeboat_repository::manifest::Totals,
                seconds: f64,
            }
            let seconds = (m.finished - m.started).as_seconds_f64();
            emit(global, &Out { backup_id: &m.id, cell: &m.cell, totals: &m.totals, seconds }, |o| {
                format!(
                    "backup {} of cell {}: {} files, {} dirs, {} symlinks, {} in {} chunks; uploaded {} new chunks ({}) in {:.1}s",
                    o.backup_id,
                    o.cell,
                    o.totals.files,
                    o.totals.dirs,
                    o.totals.symlinks,
                    bytes(o.totals.bytes),
                    o.totals.chunks,
                    o.totals.new_chunks,
                    bytes(o.totals.new_stored_bytes),
                    o.seconds
                )
            });
        }
        FilesCommand::Restore { backup, dir, repo, cell, delta, preserve_special_bits } => {
            let r = open_repo(global, &repo.url).await?;
            let m = r.resolve_backup(&cell, &backup).await?;
            let options = files::RestoreOptions { preserve_special_bits };
            let summary = with_progress(&r, "restoring", async {
                if delta {
                    files::restore_delta_with(&r, &m, &dir, &[], options).await
                } else {
                    files::restore_dir_with(&r, &m, &dir, options).await
                }
            })
            .await?;
            emit(global, &summary, |s| {
                let mut line = format!("restored backup {} into {}: {} files, {}", s.backup_id, s.target, s.files, bytes(s.bytes));
                if delta {
                    line.push_str(&format!(
                        "; kept {} matching files ({}), removed {} entries the backup lacks",
                        s.reused_files,
                        bytes(s.reused_bytes),
                        s.removed
                    ));
                }
                line
            });
        }
    }
    Ok(ExitCode::SUCCESS)
}
