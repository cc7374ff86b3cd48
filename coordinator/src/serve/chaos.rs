//! Chaos drills: the platform's monthly forced failover. A scenario's
//! `chaos` schedule (scope `cell`; none unless the plan gives one) has the
//! served coordinator, for each listed cell in turn and unattended:
//!
//! 1. check that the cell's standby at its site is streaming and that the
//!    failover could be carried out now; otherwise the drill is journaled
//!    failed without touching anything;
//! 2. crash the cell's primary through its own agent (job `crash`, signed
//!    with the plan key: `pg_ctl stop -m immediate`);
//! 3. fail it over (a journaled failover like an operator's, initiator
//!    `chaos drill (lifeboat serve)`, every gate approved by that
//!    initiator): fence, promote the standby, smoke checks, route, verify,
//!    the signed failover report;
//! 4. commit it (the new primary re-protected) and fail it back home
//!    (`failover failback`: no loss).
//!
//! A drill that stops half-way leaves its failover where it stopped (the
//! cell served from its site, or not at all if the promotion failed):
//! `failover status` says what, and `lifeboat_chaos_drill_passed` is 0.
//! Drills wait while a failover is unfinished; one drill per pass. An
//! occurrence is due when it falls after the newest drill of that
//! scenario and cell (or, for none, after the state database was made).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use time::OffsetDateTime;

use lifeboat_api::failback::CrashSpec;
use lifeboat_api::{JobResult, JobSpec};

use super::exercises::{carry_out, due_after, forever, Act};
use super::Coordinator;
use crate::commands::failover_run::{assessed, new_failover};
use crate::failover::journal::{Failover, FailoverState, Journal};
use crate::plan::ScenarioDef;

/// Who a chaos drill's failover is journaled as run and approved by.
pub const INITIATOR: &str = "chaos drill (lifeboat serve)";

/// Run due chaos drills, forever.
pub async fn run(c: Arc<Coordinator>, state: PathBuf) {
    let scheduled = c.plan.scenarios.iter().any(|s| s.chaos_schedule.is_some());
    forever(&c, "chaos drills", scheduled, || run_due(&c, &state)).await
}

fn is_drill(f: &Failover) -> bool {
    !f.test && f.initiator == INITIATOR
}

/// Whether `scenario`'s chaos drill of `cell` is due at `now`.
fn due(s: &ScenarioDef, cell: &str, journal: &[Failover], since: OffsetDateTime, now: OffsetDateTime) -> bool {
    let last = journal.iter().filter(|f| is_drill(f) && f.scenario == s.name && f.failed == cell).map(|f| f.created).max();
    due_after(s.chaos_schedule.as_deref(), last, since, now)
}

/// The newest ended drill of each scenario and cell, into the metrics.
fn export(c: &Coordinator, journal: &[Failover]) {
    for f in journal.iter().rev().filter(|f| is_drill(f) && !f.unfinished()) {
        if let Some(finished) = f.finished {
            c.metrics.exercise(true, &f.scenario, &f.failed, finished, f.state == FailoverState::FailedBack);
        }
    }
}

async fn run_due(c: &Arc<Coordinator>, state: &Path) -> Result<()> {
    let (journal, since) = c.blocking(|c| anyhow::Ok((Journal(&c.store).list()?, c.store.created()?))).await?;
    export(c, &journal);
    if journal.iter().any(Failover::unfinished) {
        return Ok(());
    }
    for s in &c.plan.scenarios {
        for cell in &s.chaos_cells {
            if due(s, cell, &journal, since, crate::clock::now()) {
                let f = drill(c, state, s, cell).await?;
                tracing::info!(failover = %f.id, scenario = %s.name, cell, state = f.state.as_str(), "chaos drill");
                export(c, std::slice::from_ref(&f));
                return Ok(());
            }
        }
    }
    Ok(())
}

/// One chaos drill of `cell`: journaled from its first step on.
async fn drill(c: &Arc<Coordinator>, state: &Path, s: &ScenarioDef, cell: &str) -> Result<Failover> {
    let (before, blocking) = assessed(&c.plan, &s.name, cell, crate::clock::now()).await?;
    let streaming = before.cells.iter().any(|a| a.standby_state.as_ref().is_some_and(|st| st.state.streaming));
    let refused = match (blocking.is_empty(), streaming) {
        (false, _) => Some(format!("the failover could not be carried out: {}", blocking.join("; "))),
        (true, false) => Some("the cell's standby at its site is not streaming: the crash would lose what it lacks".to_string()),
        (true, true) => crash(c, s, cell).await.err().map(|e| format!("{e:#}")),
    };
    let failed_at = crate::clock::now();
    let assessment = match refused {
        Some(_) => before,
        None => assessed(&c.plan, &s.name, cell, failed_at).await?.0,
    };
    let mut f = new_failover(assessment, false, INITIATOR.into(), failed_at);
    f.failed_at = failed_at;
    let id = f.id.clone();
    let gates: Vec<String> = f.assessment.steps.iter().filter(|st| st.gated).map(|st| st.step.as_str().to_string()).collect();
    let stopped = refused.clone().map(|why| format!("chaos drill not started, nothing was crashed: {why}"));
    c.blocking(move |c| -> Result<()> {
        let j = Journal(&c.store);
        j.create(&f)?;
        match stopped {
            Some(why) => j.set_state(&f.id, FailoverState::Failed, Some(&why)),
            None => gates.iter().try_for_each(|g| j.approve(&f.id, g, INITIATOR).map(|_| ())),
        }
    })
    .await?;
    if refused.is_some() {
        return c.blocking(move |c| Journal(&c.store).get(&id)).await;
    }
    carry_out(c, state, &id, vec![Act::Drive, Act::Commit, Act::Failback(None)]).await
}

/// Crash the cell's primary through its own agent.
async fn crash(c: &Coordinator, s: &ScenarioDef, cell: &str) -> Result<()> {
    let signer = c.cfg.signer.as_ref().context("chaos drills need --signing-key")?;
    let agent =
        super::cell_client(c.plan.cells.iter().find(|p| p.name == cell).with_context(|| format!("cell {cell} is not in the plan"))?)?;
    let mut spec = CrashSpec { cell: cell.to_string(), reason: format!("chaos drill of scenario {}", s.name), signature: None };
    spec.signature = Some(signer.spec_signature(&spec.signed_message()));
    let key = format!("lifeboat-chaos-{cell}-{}", crate::clock::now().unix_timestamp());
    let job = crate::failover::engine::agent_job(&agent, &format!("cell {cell}"), &key, &JobSpec::Crash(spec)).await?;
    match job.result {
        Some(JobResult::Crash(_)) => Ok(()),
        _ => anyhow::bail!("crashing the primary failed: {}", job.error.unwrap_or_default()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_drill_is_due_once_per_occurrence_and_only_drills_count() {
        let plan = crate::plan::tests::demo_plan();
        let mut s = plan.scenarios[0].clone();
        s.chaos_schedule = Some("0 3 15 * *".into());
        let at = |t: &str| crate::clock::parse(t).unwrap();
        let since = at("2026-12-01T00:00:00Z");
        assert!(!due(&s, "demo-a", &[], since, at("2026-12-14T00:00:00Z")));
        assert!(due(&s, "demo-a", &[], since, at("2026-12-15T03:00:01Z")));
        let assessment = |failed: &str| crate::serve::exercises::tests::empty_assessment(&s.name, failed);
        let operator = new_failover(assessment("demo-a"), false, "operator alice".into(), at("2026-12-15T03:00:30Z"));
        assert!(
            due(&s, "demo-a", std::slice::from_ref(&operator), since, at("2026-12-15T04:00:00Z")),
            "an operator's failover is no drill"
        );
        let drilled = new_failover(assessment("demo-a"), false, INITIATOR.into(), at("2026-12-15T03:00:30Z"));
        assert!(!due(&s, "demo-a", std::slice::from_ref(&drilled), since, at("2026-12-15T04:00:00Z")), "this month's drill ran");
        assert!(due(&s, "demo-a", &[drilled], since, at("2027-01-15T03:00:01Z")), "next month's is due");
    }
}
