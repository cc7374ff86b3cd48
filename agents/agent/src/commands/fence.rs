//! `fence raise` and `fence show`: the fencing step of a failover, by hand
//! or from the coordinator. A fence is raised in every location given (a
//! region outage leaves some unreachable: those are reported, the rest
//! fenced, and a rerun with the same `--epoch` finishes the job without
//! changing what is already fenced). The plan is shown first; `--dry-run`
//! stops there.

use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Subcommand;

use lifeboat_api::results::{FenceDone, FencedLocation};

use lifeboat_postgres::fence::next_timeline;
use lifeboat_repository::fence::{self, Fence, Raised};

use crate::context::{open_repo, Global, RepoArg};
use crate::output::emit;

#[derive(Debug, Subcommand)]
pub enum FenceCommand {
    /// Fence a cell's old primary out of its repositories: from now on they refuse WAL and base
    /// backups of a cluster on a timeline older than the new primary's.
    Raise {
        /// Every location of the cell (repeat), as URL or NAME=URL (the
        /// report names it NAME); unreachable ones are reported.
        #[arg(long = "repo", required = true, value_name = "[NAME=]URL")]
        repos: Vec<String>,
        #[arg(long, env = "LIFEBOAT_CELL")]
        cell: String,
        /// The fence's epoch (default: one above the newest found). Give it to rerun a fence.
        #[arg(long)]
        epoch: Option<u64>,
        /// The new primary's timeline (default: one past the highest archived).
        #[arg(long)]
        timeline: Option<u32>,
        /// Why (the failover, the incident), recorded in the fence.
        #[arg(long)]
        reason: String,
        /// Show the plan only.
        #[arg(long)]
        dry_run: bool,
    },
    /// The fence in force for a cell.
    Show {
        #[command(flatten)]
        repo: RepoArg,
        #[arg(long, env = "LIFEBOAT_CELL")]
        cell: String,
    },
}

pub async fn run(global: &Global, cmd: FenceCommand) -> Result<ExitCode> {
    match cmd {
        FenceCommand::Raise { repos, cell, epoch, timeline, reason, dry_run } => {
            raise(global, &repos, &cell, (epoch, timeline), reason, dry_run).await
        }
        FenceCommand::Show { repo, cell } => {
            let repo = open_repo(global, &repo.url).await?;
            let newest = fence::newest(&repo, &cell).await?;
            emit(global, &newest, |f| match f {
                Some(f) => format!("cell {cell}: {}; Postgres writers before timeline {} are refused", f.describe(), timeline_of(f)),
                None => format!("cell {cell} is not fenced"),
            });
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn raise(
    global: &Global,
    urls: &[String],
    cell: &str,
    given: (Option<u64>, Option<u32>),
    reason: String,
    dry_run: bool,
) -> Result<ExitCode> {
    let mut opened = Vec::new();
    let mut names = Vec::new();
    let mut locations = Vec::new();
    for arg in urls {
        let (name, url) = named(arg);
        match open_repo(global, url).await {
            Ok(repo) => {
                names.push(name.map_or_else(|| repo.location(), str::to_string));
                opened.push(repo);
            }
            Err(e) => {
                let location = name.unwrap_or(url).to_string();
                locations.push(FencedLocation { location, outcome: None, error: Some(format!("{e:#}")) })
            }
        }
    }
    anyhow::ensure!(!opened.is_empty(), "no location of cell {cell} could be opened: {}", errors(&locations));
    let fence = match rerun_of(&opened, cell, given.0).await? {
        // A rerun finishes that fence as it was raised: the new primary may
        // have archived its timeline since, which must not move the fence.
        Some(first) => {
            anyhow::ensure!(
                first.reason == reason && given.1.is_none_or(|t| first.postgres_timeline == Some(t)),
                "epoch {} of cell {cell} was raised as {:?} (timeline {:?}); rerun it with that --reason, or raise a higher epoch",
                first.epoch,
                first.reason,
                first.postgres_timeline
            );
            first
        }
        None => new_fence(&opened, cell, given, reason).await?,
    };
    eprintln!(
        "plan: fence cell {cell} at epoch {} in {}: WAL and base backups of a cluster before timeline {} are refused from then on \
         (to finish it where it did not land, rerun with --epoch {} --reason {:?})",
        fence.epoch,
        opened.iter().map(|r| r.location()).collect::<Vec<_>>().join(", "),
        timeline_of(&fence),
        fence.epoch,
        fence.reason
    );
    if !dry_run {
        for (repo, name) in opened.iter().zip(&names) {
            let raised = fence::raise(repo, cell, &fence).await;
            let (outcome, error) = match raised {
                Ok(Raised::Raised) => (Some("raised".to_string()), None),
                Ok(Raised::AlreadyRaised) => (Some("already-raised".to_string()), None),
                Err(e) => {
                    eprintln!("error: {}: {e}", repo.location());
                    (None, Some(e.to_string()))
                }
            };
            locations.push(FencedLocation { location: name.clone(), outcome, error });
        }
    }
    let ok = locations.iter().all(|l| l.error.is_none());
    let report = FenceDone {
        cell: cell.to_string(),
        epoch: fence.epoch,
        postgres_timeline: fence.postgres_timeline,
        reason: fence.reason.clone(),
        dry_run,
        locations,
    };
    tracing::info!(cell, fence = %fence.describe(), "fence");
    emit(global, &report, render);
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// `NAME=URL` as (NAME, URL); a plain URL (its scheme's `:` comes before
/// any `=`, which a query may hold) as (None, URL).
fn named(arg: &str) -> (Option<&str>, &str) {
    match arg.split_once('=') {
        Some((name, url)) if !name.is_empty() && !name.contains([':', '/']) => (Some(name), url),
        _ => (None, arg),
    }
}

/// The fence already raised at `epoch` in one of the locations (a rerun).
async fn rerun_of(opened: &[lifeboat_repository::Repository], cell: &str, epoch: Option<u64>) -> Result<Option<Fence>> {
    let Some(epoch) = epoch else { return Ok(None) };
    for repo in opened {
        if let Ok(Some(f)) = fence::at_epoch(repo, cell, epoch).await {
            return Ok(Some(f));
        }
    }
    Ok(None)
}

/// A new fence: one epoch above the newest found, the timeline one past the highest archived.
async fn new_fence(
    opened: &[lifeboat_repository::Repository],
    cell: &str,
    given: (Option<u64>, Option<u32>),
    reason: String,
) -> Result<Fence> {
    let (mut epoch, mut timeline) = (0, 2);
    for repo in opened {
        let newest = fence::newest(repo, cell).await.with_context(|| format!("reading the fences in {}", repo.location()))?;
        epoch = epoch.max(newest.map_or(0, |f| f.epoch) + 1);
        timeline = timeline.max(next_timeline(repo, cell).await?);
    }
    Ok(Fence {
        epoch: given.0.unwrap_or(epoch),
        postgres_timeline: Some(given.1.unwrap_or(timeline)),
        reason,
        created: time::OffsetDateTime::now_utc(),
        by: lifeboat_repository::holder::describe(),
    })
}

fn timeline_of(f: &Fence) -> u32 {
    f.postgres_timeline.unwrap_or_default()
}

fn errors(locations: &[FencedLocation]) -> String {
    locations.iter().filter_map(|l| l.error.as_ref().map(|e| format!("{}: {e}", l.location))).collect::<Vec<_>>().join("; ")
}

fn render(r: &FenceDone) -> String {
    if r.dry_run {
        return "dry run: nothing changed".into();
    }
    let mut out = String::new();
    for l in &r.locations {
        let what = match (l.outcome.as_deref(), &l.error) {
            (Some("raised"), _) => "fenced".to_string(),
            (Some(_), _) => "already fenced (nothing changed)".to_string(),
            (None, Some(e)) => format!("NOT fenced: {e}"),
            (None, None) => "not tried".to_string(),
        };
        out.push_str(&format!("{}: {what}\n", l.location));
    }
    out.push_str(&format!(
        "cell {}: fenced at epoch {} ({:?}); Postgres writers before timeline {} are refused",
        r.cell,
        r.epoch,
        r.reason,
        r.postgres_timeline.unwrap_or_default()
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::named;

    #[test]
    fn a_location_may_be_named() {
        assert_eq!(named("main=file:///srv/repo"), (Some("main"), "file:///srv/repo"));
        assert_eq!(named("file:///srv/repo"), (None, "file:///srv/repo"));
        // A query's '=' is not a name.
        assert_eq!(named("s3://b/p?object_lock=governance&retain_days=7"), (None, "s3://b/p?object_lock=governance&retain_days=7"));
        assert_eq!(named("copy=s3://b/p?retain_days=7"), (Some("copy"), "s3://b/p?retain_days=7"));
    }
}
