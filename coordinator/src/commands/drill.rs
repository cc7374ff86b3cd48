//! `drill run`: a restore drill of one cell now, through a coordinator
//! (which records and signs it), or straight through the cell's agent
//! with the signing key (`--plans`, `--signing-key`). Exit 1 unless it passed.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use serde::Serialize;

use lifeboat_api::DrillTarget;

use super::{Done, Target};
use crate::drill::{self as engine, DrillRequest, Drilled};
use crate::report::{Report, Verdict};
use crate::runs::{RunKind, RunResult};
use crate::serve::{agent_clients, load_plan};

#[derive(Debug, Args)]
pub struct DrillArgs {
    #[arg(long)]
    cell: String,
    /// Recover to this instant (RFC 3339); default: a random recent instant.
    #[arg(long, conflicts_with = "random_recent")]
    target_time: Option<String>,
    /// Recover to a random instant within the last --within that Postgres and Kafka both cover (the default).
    #[arg(long)]
    random_recent: bool,
    #[arg(long, default_value = "24h", value_parser = lifeboat_api::duration::parse)]
    within: Duration,
    /// Restore from this location of the cell: a name, or primary, secondary, cross-cloud.
    #[arg(long)]
    from_location: Option<String>,
    /// When restoring from the first location fails, restore from this one (the report says so).
    #[arg(long)]
    fallback_location: Option<String>,
    #[command(flatten)]
    target: Target,
    /// Without a coordinator: the report signing key (report-signing.key from `report keygen`).
    #[arg(long, env = "LIFEBOAT_REPORT_SIGNING_KEY")]
    signing_key: Option<PathBuf>,
    /// Without a coordinator: also keep the cell's chain of reports (JSON and HTML) under DIR/<cell>/.
    #[arg(long)]
    reports: Option<PathBuf>,
    /// Who started the drill (default: operator $USER).
    #[arg(long)]
    initiator: Option<String>,
}

/// What `drill run --output json` prints.
#[derive(Serialize)]
pub struct DrillDone {
    report: Report,
    json: Option<PathBuf>,
    html: Option<PathBuf>,
}

pub async fn run(args: DrillArgs) -> Result<Done<DrillDone>> {
    let drilled = match &args.target.coordinator {
        Some(base) => through_coordinator(base, &args).await?,
        None => direct(args).await?,
    };
    let text = engine::render(&drilled);
    let ok = drilled.report.verdict == Verdict::Passed;
    let Drilled { report, json_path, html_path } = drilled;
    Ok(Done { value: DrillDone { report, json: json_path, html: html_path }, text, ok })
}

async fn through_coordinator(base: &str, args: &DrillArgs) -> Result<Drilled> {
    let default_window = args.within == Duration::from_secs(24 * 3600);
    if args.target_time.is_some() || args.from_location.is_some() || args.fallback_location.is_some() || !default_window {
        bail!("through a coordinator a drill restores a random instant of the last 24h from the primary; for another target or location drill with --plans and --signing-key");
    }
    let run = super::runs::on_coordinator(base, &args.target, &args.cell, RunKind::Drill, true).await?;
    match run.result {
        Some(RunResult::Drill { report, json, html }) => Ok(Drilled { report: *report, json_path: json, html_path: html }),
        _ => bail!("the drill produced no report: {}", run.error.as_deref().unwrap_or("no reason given")),
    }
}

async fn direct(args: DrillArgs) -> Result<Drilled> {
    let plans =
        args.target.plans.as_ref().context("give --coordinator URL, or --plans DIR and --signing-key to drill through the cell's agent")?;
    let signing_key = args.signing_key.context("--signing-key (or LIFEBOAT_REPORT_SIGNING_KEY) is needed to sign the report")?;
    let plan = load_plan(plans)?;
    let cell = plan.cells.iter().find(|c| c.name == args.cell).with_context(|| format!("no cell {} in plan {}", args.cell, plan.name))?;
    let agents = agent_clients(&plan)?;
    let signer = crate::report::keys::Signer::from_file(&signing_key)?;
    crate::report::keys::check_published(plan.report_public_key.as_deref(), &plan.name, &signer)?;
    let target = match &args.target_time {
        Some(t) => DrillTarget::Time(crate::clock::parse(t).with_context(|| format!("--target-time {t:?} is not an RFC 3339 instant"))?),
        None => DrillTarget::RandomRecent { within: args.within },
    };
    let initiator = args.initiator.unwrap_or_else(|| format!("operator {}", std::env::var("USER").unwrap_or_else(|_| "(unknown)".into())));
    let req = DrillRequest { target, from_location: args.from_location, fallback_location: args.fallback_location, initiator };
    engine::run(&plan, cell, &agents[&args.cell], &req, &signer, args.reports.as_deref()).await
}
