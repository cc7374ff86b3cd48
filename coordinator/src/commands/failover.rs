//! `lifeboat failover ...`: the operator's failover commands. `plan` shows
//! what a scenario would do for what failed (from a coordinator, or from
//! the plan and the agents directly) and changes nothing; `check-hooks`
//! proves a scenario's hooks answer; `mirrored` reads a failover's journal
//! back from the cell's recovery sites (`crate::failover::mirror`).

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
                    plan.name_locations(&mut r);
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
/// assessment then plans a restore from the repository). The sites are
/// asked [`SITES_AT_ONCE`] at a time: a region's or a cloud's cells are
/// hundreds of questions.
pub async fn standbys_for(plan: &Plan, scenario: &str, failed: &str) -> assess::Standbys {
    use futures::StreamExt as _;
    let Some(s) = plan.scenarios.iter().find(|s| s.name == scenario) else { return assess::Standbys::new() };
    let cells = affected(plan, s, failed);
    let (placements, _) = place(plan, s.scope, &cells);
    let asked = placements.into_iter().filter_map(|p| {
        let keeps = cells.iter().any(|c| c.name == p.cell && c.failover.standby != crate::plan::Standby::None);
        let site = plan.site(&p.site).filter(|_| keeps)?;
        Some(async move {
            let answer = async { anyhow::Ok(crate::serve::site_client(site)?.guest_recovery(&p.cell).await?) }.await;
            match answer {
                Ok(r) => r.standby.map(|st| (p.cell, st)),
                Err(e) => {
                    tracing::warn!(cell = %p.cell, site = %site.name, "the recovery site did not report the cell's standby: {e:#}");
                    None
                }
            }
        })
    });
    futures::stream::iter(asked).buffer_unordered(SITES_AT_ONCE).filter_map(std::future::ready).collect().await
}

/// How many recovery sites [`standbys_for`] asks at once.
const SITES_AT_ONCE: usize = 32;

/// `failover check-hooks --scenario S`: call each of the scenario's hooks
/// with step `check` (a receiver answers it without acting) to prove,
/// before an incident, that every hook is reachable, authorised and
/// answers in time. Exit 1 unless every hook succeeded.
/// `failover mirrored ID --cell C`: the newest journal of failover `id`
/// each of the cell's recovery sites holds, per location of the cell it
/// hosts, for when the coordinator's state database is lost.
pub async fn mirrored(plans: &std::path::Path, cell: &str, id: &str) -> Result<Done<Vec<serde_json::Value>>> {
    let plan = load_plan(plans)?;
    let c = plan.cells.iter().find(|x| x.name == cell).with_context(|| format!("no cell {cell} in plan {}", plan.name))?;
    let (mut found, mut text) = (Vec::new(), String::new());
    for site in c.failover.sites.iter().filter_map(|s| plan.site(s)) {
        let client = crate::serve::site_client(site)?;
        for location in &c.locations {
            let journal = match client.guest_reports(cell, location).failover_journal(id).await {
                Ok(Some(bytes)) => serde_json::from_slice::<serde_json::Value>(&bytes).context("a mirrored journal that is not JSON")?,
                Ok(None) => continue,
                Err(e) => {
                    text.push_str(&format!("site {} at {location}: {e}\n", site.name));
                    continue;
                }
            };
            text.push_str(&mirror_summary(&site.name, location, &journal));
            found.push(serde_json::json!({ "site": site.name, "location": location, "journal": journal }));
        }
    }
    anyhow::ensure!(
        !found.is_empty(),
        "no recovery site of cell {cell} ({}) holds a journal of failover {id}\n{text}",
        c.failover.sites.join(", ")
    );
    Ok(Done::ok(found, text))
}

/// One mirrored journal in a few lines: its state and every step's.
fn mirror_summary(site: &str, location: &str, j: &serde_json::Value) -> String {
    let f = &j["failover"];
    let mut out = format!(
        "site {site} at {location}: failover {} {} (scenario {}, {} failed), started {}\n",
        f["id"].as_str().unwrap_or("?"),
        f["state"].as_str().unwrap_or("?"),
        f["scenario"].as_str().unwrap_or("?"),
        f["failed"].as_str().unwrap_or("?"),
        f["created"].as_str().unwrap_or("?")
    );
    for s in j["steps"].as_array().into_iter().flatten() {
        let cell = s["cell"].as_str().filter(|c| !c.is_empty()).unwrap_or("-");
        let (step, state, key) =
            (s["step"].as_str().unwrap_or("?"), s["state"].as_str().unwrap_or("?"), s["idempotency_key"].as_str().unwrap_or("?"));
        out.push_str(&format!("  {cell:<16} {step:<20} {state:<8} {key}\n"));
    }
    out
}

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
