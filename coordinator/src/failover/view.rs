//! A failover as operators and the status page see it: the journal's
//! steps and approvals, per cell what it measured so far (RTO, the new
//! Postgres port, the last transaction replayed), and what to type next.

use anyhow::Result;
use serde::Serialize;

use super::assess;
use super::journal::{Approval, Failover, FailoverState, Journal, StepRecord, StepState};
use crate::clock;
use crate::store::Store;

/// A failover as `status` shows it.
#[derive(Debug, Serialize)]
pub struct View {
    pub failover: Failover,
    pub approvals: Vec<Approval>,
    pub steps: Vec<StepRecord>,
    pub cells: Vec<CellMeasure>,
    /// What to type next.
    pub next: Option<String>,
}

/// What the journal shows of one cell so far.
#[derive(Debug, Serialize)]
pub struct CellMeasure {
    pub cell: String,
    pub site: Option<String>,
    /// From the failover's start to the cell's last step (gates included).
    pub rto_seconds: Option<f64>,
    /// The Postgres server a takeover left running (`host:port` on the site).
    pub postgres_port: Option<u16>,
    /// The last transaction the new primary replayed: everything committed
    /// after it on the old primary is lost.
    pub last_transaction: Option<String>,
    pub kafka_records: Option<u64>,
}

/// The gate a waiting failover stops at: the first gated step not approved.
pub fn waiting_for(store: &Store, f: &Failover) -> Result<Option<String>> {
    if f.state != FailoverState::Waiting {
        return Ok(None);
    }
    let approved = Journal(store).approvals(&f.id)?;
    Ok(f.assessment
        .steps
        .iter()
        .find(|s| s.gated && !approved.iter().any(|a| a.step == s.step.as_str()))
        .map(|s| s.step.as_str().to_string()))
}

pub fn view(store: &Store, id: &str) -> Result<View> {
    let j = Journal(store);
    let f = j.get(id)?;
    let steps = j.steps(id)?;
    let cells = f.assessment.cells.iter().map(|c| measure(&f, c, &steps)).collect();
    let next = match f.state {
        FailoverState::Waiting => waiting_for(store, &f)?.map(|s| format!("lifeboat failover approve {id} --step {s}")),
        FailoverState::Failed | FailoverState::Running => Some(format!("lifeboat failover resume {id}")),
        FailoverState::Done if !f.test => Some(format!("lifeboat failover commit {id} (once the new primaries are confirmed)")),
        FailoverState::Committed => Some(format!("lifeboat failover failback {id} (when the cells' homes are back: planned, no loss)")),
        FailoverState::FailingBack => Some(format!("lifeboat failover failback {id} (or --cell C for one of the cells not home yet)")),
        _ => None,
    };
    Ok(View { approvals: j.approvals(id)?, failover: f, steps, cells, next })
}

fn measure(f: &Failover, c: &assess::CellAssessment, steps: &[StepRecord]) -> CellMeasure {
    // Re-protecting and failing back come after the failover: not part of its RTO.
    let after = |s: &StepRecord| s.step == super::commit::STEP || s.step.starts_with("failback:");
    let mine: Vec<&StepRecord> = steps.iter().filter(|s| s.cell == c.cell && !after(s)).collect();
    let all_done = !mine.is_empty() && mine.iter().all(|s| matches!(s.state, StepState::Done | StepState::Skipped));
    let last = mine.iter().filter_map(|s| s.finished).max();
    let restore = mine.iter().find(|s| s.step == "restore").map(|s| &s.detail);
    let point = restore.map(|r| &r["recovery_point"]);
    CellMeasure {
        cell: c.cell.clone(),
        site: c.site.clone(),
        rto_seconds: last.filter(|_| all_done).map(|t| clock::seconds_between(f.created, t)),
        postgres_port: restore
            .and_then(|r| r["scratch"]["kept"].as_bool().filter(|k| *k).and(r["scratch"]["port"].as_u64()))
            .map(|p| p as u16),
        last_transaction: point.and_then(|p| p["postgres"]["last_transaction"].as_str().map(str::to_string)),
        kafka_records: point.and_then(|p| p["kafka"]["records"].as_u64()),
    }
}

pub fn render(v: &View) -> String {
    use std::fmt::Write as _;
    let f = &v.failover;
    let mut out = format!(
        "failover {}: {} — scenario {}{} ({} {} failed), started {} by {}\n",
        f.id,
        f.state.as_str(),
        f.scenario,
        if f.test { " [test]" } else { "" },
        f.assessment.scope.as_str(),
        f.failed,
        clock::ts(f.created),
        f.initiator
    );
    for a in &v.approvals {
        let _ = writeln!(out, "approved {} by {} at {}", a.step, a.by, clock::ts(a.at));
    }
    for s in &v.steps {
        let took = s.finished.map(|e| format!("{:.1}s", clock::seconds_between(s.started, e))).unwrap_or_else(|| "...".into());
        let error = s.error.as_ref().map(|e| format!(": {e}")).unwrap_or_default();
        let cell = if s.cell.is_empty() { "-" } else { &s.cell };
        let _ = writeln!(out, "  {:<10} {:<18} {:<8} {took:>8}{error}", cell, s.step, format!("{:?}", s.state).to_lowercase());
    }
    for c in &v.cells {
        let rto = c.rto_seconds.map_or("-".into(), |r| format!("{r:.1}s"));
        let port = c.postgres_port.map_or("-".into(), |p| p.to_string());
        let _ = writeln!(
            out,
            "cell {}: site {} rto {rto} postgres port {port} last transaction {}",
            c.cell,
            c.site.as_deref().unwrap_or("-"),
            c.last_transaction.as_deref().unwrap_or("-")
        );
    }
    if let Some(e) = &f.error {
        let _ = writeln!(out, "error: {e}");
    }
    if let Some(n) = &v.next {
        let _ = writeln!(out, "next: {n}");
    }
    out
}
