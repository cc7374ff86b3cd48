//! `lifeboat status`: every cell's recoverable points, RPO exposure and
//! verdict per location, from a coordinator or straight from the agents.

use std::collections::HashMap;

use anyhow::{Context, Result};

use super::remote::Remote;
use super::{Done, Target};
use crate::clock;
use crate::compliance::{self, CellInput, Status};
use crate::failover::standby::StandbyView;
use crate::plan::{Plan, Standby};
use crate::serve::{agent_clients, load_plan};
use lifeboat_api::Recovery;

pub async fn run(target: &Target) -> Result<Done<Status>> {
    let status = status(target).await?;
    let text = compliance::render(&status);
    Ok(Done::ok(status, text))
}

/// The verdict `status --fail-on` fails at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FailOn {
    Breached,
    AtRisk,
}

/// `lifeboat status [--fail-on LEVEL]`: printed as ever; with `--fail-on`
/// the exit code says the worst verdict at or over LEVEL (3 breached, 4
/// at risk; [`super::exit`]).
pub fn main(output: super::Output, target: &Target, fail_on: Option<FailOn>) -> std::process::ExitCode {
    let result = super::block_on(run(target));
    let code = result.as_ref().ok().and_then(|done| failing(done.value.verdict, fail_on?));
    let printed = super::finish(output, result);
    code.map_or(printed, std::process::ExitCode::from)
}

fn failing(verdict: compliance::Verdict, fail_on: FailOn) -> Option<u8> {
    match (verdict, fail_on) {
        (compliance::Verdict::Breached, _) => Some(super::exit::BREACHED),
        (compliance::Verdict::AtRisk, FailOn::AtRisk) => Some(super::exit::AT_RISK),
        _ => None,
    }
}

pub async fn status(target: &Target) -> Result<Status> {
    if let Some(base) = &target.coordinator {
        return Remote::new(base, &target.credentials)?.get("/v1/status", &[]).await;
    }
    let plans = target.plans.as_ref().context("give --coordinator URL, or --plans DIR to ask the agents directly")?;
    let plan = load_plan(plans)?;
    let standbys = standbys(&plan).await;
    from_answers(&plan, answers(&plan).await?, standbys)
}

/// The standby of every cell whose plan keeps one, as its site reports it.
pub async fn standbys(plan: &Plan) -> HashMap<String, StandbyView> {
    let mut out = HashMap::new();
    for cell in plan.cells.iter().filter(|c| c.failover.standby != Standby::None) {
        let answer = crate::failover::standby::reported(plan, cell).await.map(|r| r.standby).map_err(|e| format!("{e:#}"));
        out.insert(cell.name.clone(), StandbyView::of(plan, cell, answer));
    }
    out
}

/// Every cell's agent's answer: its recovery points, or why not.
pub async fn answers(plan: &Plan) -> Result<HashMap<String, Result<Recovery, String>>> {
    let agents = agent_clients(plan)?;
    Ok(lifeboat_client::recovery_of_all(agents.values()).await.into_iter().map(|(c, r)| (c, r.map_err(|e| e.to_string()))).collect())
}

/// The status of every cell from its agent's answer.
pub fn from_answers(
    plan: &Plan,
    mut answers: HashMap<String, Result<Recovery, String>>,
    mut standbys: HashMap<String, StandbyView>,
) -> Result<Status> {
    let now = clock::now();
    compliance::status(plan, now, |cell| {
        let standby = standbys.remove(&cell.name);
        Ok(match answers.remove(&cell.name).unwrap_or_else(|| Err("not asked".into())) {
            Ok(recovery) => CellInput { recovery: Some((now, recovery)), problem: None, drills: None, verify: None, standby, lost: vec![] },
            Err(e) => CellInput { recovery: None, problem: Some(e), drills: None, verify: None, standby, lost: vec![] },
        })
    })
}
