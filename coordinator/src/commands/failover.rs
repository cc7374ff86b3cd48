//! `lifeboat failover ...`: the operator's failover commands. `plan` shows
//! what a scenario would do for what failed (from a coordinator, or from
//! the plan and the agents directly) and changes nothing; `check-hooks`
//! proves a scenario's hooks answer.

use anyhow::{Context, Result};

use super::remote::Remote;
use super::{Done, Target};
use crate::clock;
use crate::compliance::Status;
use crate::failover::assess::{self, Assessment};
use crate::failover::hooks::{self, HookCall, HookOutcome};
use crate::plan::failover::{affected, place};
use crate::plan::Plan;
use crate::serve::load_plan;

/// `failover plan --scenario S --failed X`; exit 1 when it lists problems.
pub async fn plan(target: &Target, scenario: &str, failed: &str) -> Result<Done<Assessment>> {
    let assessment = match &target.coordinator {
        Some(base) => {
            let query = [("scenario", scenario.to_string()), ("failed", failed.to_string())];
            Remote::new(base, &target.credentials)?.get("/v1/failover/plan", &query).await?
        }
        None => {
            let plans = target.plans.as_ref().context("give --coordinator URL, or --plans DIR to ask the agents directly")?;
            let plan = load_plan(plans)?;
            let status = status_for(&plan, scenario, failed).await?;
            let standbys = standbys_for(&plan, scenario, failed).await;
            assess::assess(&plan, &status, &standbys, scenario, failed, clock::now())?
        }
    };
    let text = assess::render(&assessment);
    let ok = assessment.problems.is_empty();
    Ok(Done { value: assessment, text, ok })
}

/// The status a failover is assessed from, asking the agents directly:
/// a lost cell whose own agent does not answer (it went down with the
/// cell) is read by the agent of the recovery site it would go to, from
/// the cell's repositories that site has (`--guest`).
pub async fn status_for(plan: &Plan, scenario: &str, failed: &str) -> Result<Status> {
    let mut answers = super::status::answers(plan).await?;
    if let Some(s) = plan.scenarios.iter().find(|s| s.name == scenario) {
        let cells = affected(plan, s, failed);
        let (placements, _) = place(plan, s.scope, &cells);
        for p in placements {
            if answers.get(&p.cell).is_some_and(|a| a.is_ok()) {
                continue;
            }
            let Some(site) = plan.site(&p.site) else { continue };
            let asked = async { anyhow::Ok(crate::serve::site_client(site)?.guest_recovery(&p.cell).await?) };
            match asked.await {
                Ok(mut r) => {
                    // A site names locations as the plan does; the cell's own agent calls its primary `primary`.
                    for l in &mut r.locations {
                        l.location = plan.agent_location_name(&l.location).to_string();
                    }
                    answers.insert(p.cell.clone(), Ok(r));
                }
                Err(e) => tracing::warn!(cell = %p.cell, site = %site.name, "the recovery site could not read the cell's points: {e:#}"),
            }
        }
    }
    // The standbys are assessed on their own (see `standbys_for`).
    super::status::from_answers(plan, answers, std::collections::HashMap::new())
}

/// The standbys kept for the cells a failover would move, as their
/// recovery sites report them (a site that does not answer is logged: the
/// assessment then plans a restore from the repository).
pub async fn standbys_for(plan: &Plan, scenario: &str, failed: &str) -> assess::Standbys {
    let mut out = assess::Standbys::new();
    let Some(s) = plan.scenarios.iter().find(|s| s.name == scenario) else { return out };
    let cells = affected(plan, s, failed);
    let (placements, _) = place(plan, s.scope, &cells);
    for p in placements {
        let keeps = cells.iter().any(|c| c.name == p.cell && c.failover.standby != crate::plan::Standby::None);
        let Some(site) = plan.site(&p.site).filter(|_| keeps) else { continue };
        let asked = async { anyhow::Ok(crate::serve::site_client(site)?.guest_recovery(&p.cell).await?) };
        match asked.await {
            Ok(r) => out.extend(r.standby.map(|st| (p.cell.clone(), st))),
            Err(e) => tracing::warn!(cell = %p.cell, site = %site.name, "the recovery site did not report the cell's standby: {e:#}"),
        }
    }
    out
}

/// `failover check-hooks --scenario S`: call each of the scenario's hooks
/// with step `check` (a receiver answers it without acting) to prove,
/// before an incident, that every hook is reachable, authorised and
/// answers in time. Exit 1 unless every hook succeeded.
pub async fn check_hooks(plans: &std::path::Path, scenario: &str) -> Result<Done<Vec<HookOutcome>>> {
    let plan = load_plan(plans)?;
    let s =
        plan.scenarios.iter().find(|s| s.name == scenario).with_context(|| format!("no scenario {scenario:?} in {}", plans.display()))?;
    let http = hooks::client();
    let stamp = clock::now().unix_timestamp();
    let mut outcomes = Vec::new();
    for (step, name) in &s.hooks {
        let about = HookCall {
            failover: format!("check-{stamp}"),
            scenario: s.name.clone(),
            cell: String::new(),
            step: "check".into(),
            idempotency_key: format!("check-{stamp}-{}-{step}", s.name),
            detail: serde_json::Value::Null,
        };
        outcomes.push(hooks::call_named(&plan, name, &about, &http).await?);
    }
    let text = outcomes
        .iter()
        .map(|o| {
            format!(
                "{} {}: {} after {} attempt(s), {} ms: {}",
                if o.succeeded { "ok  " } else { "FAIL" },
                o.hook,
                if o.succeeded { "answered" } else { "failed" },
                o.attempts,
                o.millis,
                o.answer
            )
        })
        .collect::<Vec<_>>()
        .join("\n");
    let ok = outcomes.iter().all(|o| o.succeeded);
    Ok(Done { value: outcomes, text, ok })
}
