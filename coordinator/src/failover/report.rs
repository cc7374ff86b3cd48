//! A cell's failover report: what the journal shows of the cell's
//! failover, in the report format of drills (`docs/report-format.md`,
//! operation `failover` or `failover-test`), judged against the tier's
//! targets, signed and chained after the newest report in the location the
//! cell was restored from (through the recovery site's agent, which keeps
//! the guest's chain there), so an auditor verifies it with the cell's
//! drill reports.
//!
//! - steps: every journal step of the cell (hooks with their answers,
//!   approvals with who and when, the fence with its epoch), then the
//!   restore's own steps;
//! - checks: the cell's smoke checks as the restore ran them, then RTO and
//!   RPO against the tier;
//! - demonstrated RTO: from the failover's start to its last step before
//!   the report, gates included; RPO: from the last transaction the new
//!   primary replayed (Kafka: the snapshot restored) to the failure instant.

use serde_json::{json, Value};
use time::OffsetDateTime;

use lifeboat_api::drill::pg_time;
use lifeboat_api::{DrillOutcome, Outcome};

use super::journal::{Approval, Failover, FailoverState, StepRecord, StepState};
use crate::clock;
use crate::plan::{CellPlan, Plan};
use crate::report::{ChainLink, Demonstrated, Item, Report, Targets, Verdict, SCHEMA};

/// What the report is made from.
pub struct Inputs<'a> {
    pub plan: &'a Plan,
    pub cell: &'a CellPlan,
    pub failover: &'a Failover,
    /// The cell's journal steps and the failover-wide ones (cell "").
    pub steps: &'a [StepRecord],
    pub approvals: &'a [Approval],
    pub location: &'a str,
    pub environment: String,
}

/// The report id of `cell`'s report of failover `id`: one per cell and
/// failover, so a resumed report step finds the one it stored.
pub fn report_id(failover: &str, cell: &str) -> String {
    format!("{failover}-{cell}")
}

/// The unsigned report.
pub fn build(i: &Inputs<'_>) -> Report {
    let f = i.failover;
    let tier = i.plan.tier_of(i.cell);
    let mine: Vec<&StepRecord> = i.steps.iter().filter(|s| s.cell == i.cell.name || s.cell.is_empty()).collect();
    let restore = mine.iter().find(|s| s.step == "restore").and_then(|s| serde_json::from_value::<DrillOutcome>(s.detail.clone()).ok());
    let finished = mine.iter().filter_map(|s| s.finished).max().unwrap_or(f.created);
    let mut report = Report {
        schema: SCHEMA.into(),
        report_id: report_id(&f.id, &i.cell.name),
        tool_version: env!("CARGO_PKG_VERSION").into(),
        plan: i.plan.name.clone(),
        cell: i.cell.name.clone(),
        tenants: i.cell.tenants.clone(),
        operation: if f.test { "failover-test" } else { "failover" }.into(),
        initiator: f.initiator.clone(),
        source_location: i.location.to_string(),
        target_environment: i.environment.clone(),
        started: clock::ts(f.created),
        finished: clock::ts(finished),
        duration_seconds: clock::seconds_between(f.created, finished),
        recovery_point: json!({}),
        targets: Targets {
            rpo_seconds: tier.rpo.as_secs_f64(),
            rto_seconds: tier.rto.as_secs_f64(),
            kafka_rpo_seconds: i.cell.kafka_topics.as_ref().map(|_| tier.kafka_rpo.as_secs_f64()),
        },
        demonstrated: Demonstrated {
            rto_seconds: Some(clock::seconds_between(f.created, finished)),
            rpo_seconds: None,
            kafka_rpo_seconds: None,
        },
        verdict: Verdict::Failed,
        errors: 0,
        warnings: 0,
        steps: journal_items(&mine, i.approvals),
        checks: Vec::new(),
        controls: i.plan.controls_for(if f.test { "failover-test" } else { "failover" }),
        chain: ChainLink { sequence: 0, previous: None },
        signature: None,
    };
    if let Some(o) = &restore {
        apply_restore(&mut report, o, f.failed_at, i.location);
    }
    if f.state == FailoverState::Aborted {
        let evidence = json!({ "error": f.error, "finished": f.finished.map(clock::ts) });
        report.steps.push(Item::new("the failover was aborted", Outcome::Failed, 0.0, f.error.clone(), evidence));
    }
    crate::drill::judge(&mut report, i.cell.postgres);
    report
}

/// One item per journal step, the approvals where their gates stood.
fn journal_items(steps: &[&StepRecord], approvals: &[Approval]) -> Vec<Item> {
    let mut items: Vec<Item> = approvals
        .iter()
        .map(|a| {
            let name = format!("approval of {} by {}", a.step, a.by);
            Item::new(&name, Outcome::Passed, 0.0, None, json!({ "step": a.step, "by": a.by, "at": clock::ts(a.at) }))
        })
        .collect();
    for s in steps.iter().filter(|s| s.step != "report") {
        let outcome = match s.state {
            StepState::Done => Outcome::Passed,
            StepState::Skipped => Outcome::Skipped,
            StepState::Failed | StepState::Intent => Outcome::Failed,
        };
        let seconds = s.finished.map_or(0.0, |e| clock::seconds_between(s.started, e));
        let evidence =
            json!({ "idempotency_key": s.idempotency_key, "started": clock::ts(s.started), "detail": summary(&s.step, &s.detail) });
        items.push(Item::new(&format!("failover step {}", s.step), outcome, seconds, s.error.clone(), evidence));
    }
    items
}

/// A step's detail for the report: the restore's own steps and checks
/// are items of their own, not repeated here.
fn summary(step: &str, detail: &Value) -> Value {
    match step {
        "restore" => json!({ "recovery_point": detail["recovery_point"], "scratch": detail["scratch"] }),
        _ => detail.clone(),
    }
}

/// The restore's point, steps and checks, and the losses they show.
fn apply_restore(report: &mut Report, o: &DrillOutcome, failed_at: OffsetDateTime, location: &str) {
    let mut point = serde_json::to_value(&o.recovery_point).expect("recovery points serialise");
    point["location"] = json!(location);
    point["failed_at"] = json!(clock::ts(failed_at));
    report.recovery_point = point;
    let lost = |t: Option<OffsetDateTime>| Some(t.map_or(f64::INFINITY, |t| clock::seconds_between(t, failed_at).max(0.0)));
    let last_tx = o.recovery_point.postgres.as_ref().and_then(|p| p.last_transaction.as_deref()).and_then(pg_time);
    report.demonstrated.rpo_seconds = o.recovery_point.postgres.as_ref().and(lost(last_tx));
    report.demonstrated.kafka_rpo_seconds =
        o.recovery_point.kafka.as_ref().and(lost(o.recovery_point.kafka.as_ref().map(|k| k.snapshot_start)));
    report.steps.extend(o.steps.iter().map(|s| Item { name: format!("restore: {}", s.name), ..s.clone() }));
    report.checks = o.checks.clone();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_that_never_closed_fail_the_report() {
        let step = |name: &str, state: StepState| StepRecord {
            cell: "c".into(),
            step: name.into(),
            idempotency_key: format!("k-{name}"),
            state,
            started: clock::now(),
            finished: Some(clock::now()),
            detail: Value::Null,
            error: None,
        };
        let steps = [step("fence", StepState::Done), step("hook:fence", StepState::Skipped), step("restore", StepState::Intent)];
        let refs: Vec<&StepRecord> = steps.iter().collect();
        let approvals = [Approval { step: "fence".into(), by: "alice".into(), at: clock::now() }];
        let items = journal_items(&refs, &approvals);
        let outcomes: Vec<(String, Outcome)> = items.into_iter().map(|i| (i.name, i.outcome)).collect();
        assert_eq!(
            outcomes,
            [
                ("approval of fence by alice".to_string(), Outcome::Passed),
                ("failover step fence".to_string(), Outcome::Passed),
                ("failover step hook:fence".to_string(), Outcome::Skipped),
                ("failover step restore".to_string(), Outcome::Failed),
            ]
        );
    }
}
