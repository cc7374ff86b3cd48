//! `pg check`: the archived WAL chain of a cell, with every gap.

use std::fmt::Write as _;
use std::process::ExitCode;

use anyhow::Result;
use clap::Subcommand;

use lifeboat_postgres::chain;

use crate::context::{open_repo, Global, RepoArg};
use crate::output::emit;

#[derive(Debug, Subcommand)]
pub enum PgCommand {
    /// Check the archived WAL chain: per timeline the range and every gap; exits 1 on a gap.
    Check {
        #[command(flatten)]
        repo: RepoArg,
        #[arg(long, env = "LIFEBOAT_CELL")]
        cell: String,
    },
}

pub async fn run(global: &Global, cmd: PgCommand) -> Result<ExitCode> {
    match cmd {
        PgCommand::Check { repo, cell } => {
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
    }
}
