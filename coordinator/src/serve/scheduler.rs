//! The scheduler and agent driver. Each tick:
//! Scheduling (fire, dispatch) and monitoring (poll, recovery, compliance,
//! alerts) run as two loops, so no agent's slowness delays a schedule; each
//! talks to all agents at once.
//! - **fire**: for every cell and duty (Postgres full/incremental, Kafka
//!   snapshot, retention), the newest occurrence of its cron schedule since
//!   the last one fired becomes one run. After downtime, missed occurrences
//!   are caught up once (the newest), not one run each. A new coordinator
//!   starts from now. An hourly incremental falling on the full's instant is
//!   skipped (the full covers it).
//! - **dispatch**: pending runs whose time has come are submitted to their
//!   cell's agent under the key `lifeboat-<db instance>-<run>-<attempt>`,
//!   at most `--cell-concurrency` per cell. An unreachable agent postpones
//!   the run without using an attempt; retrying the same key is safe.
//! - **poll**: submitted runs are read back from the agent; a failed job is
//!   retried with exponential backoff up to `--max-attempts`; a run past its
//!   deadline (the schedule's next occurrence) is reported overdue.
//! - **recovery**: every cell's recovery points are read from its agent.

use std::collections::HashMap;

use anyhow::Result;
use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use super::Coordinator;
use crate::agent_client::{JobLookup, Submitted};
use crate::plan::{schedule, CellPlan, Plan};
use crate::store::{parse_ts, NewRun, Run, Store};

/// The kinds of work a cell's plan asks for, with their schedules.
pub fn duties(cell: &CellPlan) -> Vec<(&'static str, &str)> {
    let s = &cell.schedules;
    let mut out = Vec::new();
    if cell.postgres {
        out.extend([
            ("pg-full", s.pg_full.as_str()),
            ("pg-incremental", s.pg_incremental.as_str()),
            ("pg-retention", s.retention.as_str()),
        ]);
    }
    if cell.kafka_topics.is_some() {
        out.extend([("kafka-snapshot", s.kafka_snapshot.as_str()), ("kafka-retention", s.retention.as_str())]);
    }
    out.push(("drill", s.drill.as_str()));
    out
}

/// Run kinds an operator may start.
pub const OPERATOR_KINDS: [&str; 6] = ["pg-full", "pg-incremental", "kafka-snapshot", "pg-retention", "kafka-retention", "drill"];

/// Scheduled (and coordinator-run) drills: a random instant of the last day, from the primary.
fn drill_request(trigger: &str) -> crate::drill::DrillRequest {
    crate::drill::DrillRequest {
        target: lifeboat_drill::spec::DrillTarget::RandomRecent { within: "24h".into() },
        from_location: None,
        fallback_location: None,
        initiator: format!("coordinator ({trigger})"),
    }
}

/// The agent job that does a run of `kind` for `cell`.
pub fn job_spec(plan: &Plan, kind: &str, cell: &CellPlan) -> Option<Value> {
    if kind == "drill" {
        return crate::drill::job_body(plan, cell, &drill_request("schedule")).ok();
    }
    let days = |d: std::time::Duration| format!("{}s", d.as_secs());
    Some(match kind {
        "pg-full" => json!({ "kind": "pg-backup" }),
        "pg-incremental" => json!({ "kind": "pg-backup", "incremental": true }),
        "kafka-snapshot" => json!({ "kind": "kafka-snapshot" }),
        "pg-retention" => json!({ "kind": "retention", "of": "pg", "keep_within": days(cell.retention.pg_full) }),
        "kafka-retention" => json!({ "kind": "retention", "of": "kafka", "keep_within": days(cell.retention.kafka) }),
        _ => return None,
    })
}

/// Turn due schedule occurrences into runs.
pub fn fire(plan: &Plan, store: &Store, now: DateTime<Utc>) -> Result<()> {
    for cell in &plan.cells {
        let full = schedule::parse(&cell.schedules.pg_full).ok();
        for (kind, expr) in duties(cell) {
            let Ok(cron) = schedule::parse(expr) else { continue };
            let Some(last) = store.last_fired(&cell.name, kind)? else {
                store.set_last_fired(&cell.name, kind, now)?;
                continue;
            };
            let mut latest = None;
            let mut missed = 0u64;
            let mut next = schedule::next_after(&cron, last);
            while let Some(t) = next.filter(|t| *t <= now) {
                latest = Some(t);
                missed += 1;
                next = schedule::next_after(&cron, t);
            }
            let Some(at) = latest else { continue };
            let covered = kind == "pg-incremental"
                && full.as_ref().and_then(|f| schedule::next_after(f, at - chrono::Duration::seconds(1))) == Some(at);
            if !covered {
                let run = NewRun { cell: &cell.name, kind, trigger: "schedule", scheduled_for: Some(at), deadline: next };
                if let Some(id) = store.insert_run(&run, now)? {
                    if missed > 1 {
                        tracing::warn!(cell = %cell.name, kind, missed, run = id, "missed {missed} occurrences while down; running the newest once");
                    }
                    tracing::info!(cell = %cell.name, kind, run = id, scheduled_for = %at, "scheduled run");
                }
            }
            store.set_last_fired(&cell.name, kind, at)?;
        }
    }
    Ok(())
}

fn key(c: &Coordinator, run: &Run) -> String {
    format!("lifeboat-{}-{}-{}", c.store.instance, run.id, run.attempt)
}

/// Submit pending runs that are due, within each cell's concurrency, all
/// agents at once (a slow or unreachable agent delays no other cell).
pub async fn dispatch(c: &Coordinator, now: DateTime<Utc>) -> Result<()> {
    let open = c.store.open_runs()?;
    let mut in_flight: HashMap<&str, usize> = HashMap::new();
    for r in open.iter().filter(|r| r.state == "submitted") {
        *in_flight.entry(&r.cell).or_default() += 1;
    }
    let mut batch = Vec::new();
    for run in open.iter().filter(|r| r.state == "pending") {
        if parse_ts(&run.next_attempt_at)? > now || in_flight.get(run.cell.as_str()).copied().unwrap_or(0) >= c.cfg.cell_concurrency {
            continue;
        }
        let (Some(cell), Some(agent)) = (c.plan.cells.iter().find(|x| x.name == run.cell), c.agents.get(&run.cell)) else {
            c.store.finish(run.id, "failed", Some("the cell is no longer in the plan"), None, now)?;
            continue;
        };
        if run.kind == "drill" && c.cfg.signer.is_none() {
            c.store.finish(
                run.id,
                "failed",
                Some("this coordinator has no --signing-key, so a drill could not sign its report; start it with one"),
                None,
                now,
            )?;
            c.metrics.finished(&run.kind, "failed", None);
            continue;
        }
        let Some(spec) = job_spec(&c.plan, &run.kind, cell) else {
            c.store.finish(run.id, "failed", Some(&format!("unknown run kind {}", run.kind)), None, now)?;
            continue;
        };
        *in_flight.entry(&run.cell).or_default() += 1;
        batch.push((run, agent, spec));
    }
    let answers = futures::future::join_all(batch.iter().map(|(run, agent, spec)| agent.submit_at(key(c, run), spec))).await;
    for ((run, _, _), (answer, at)) in batch.into_iter().zip(answers) {
        match answer {
            Ok(Submitted::Job(job)) => {
                let id = job["id"].as_str().unwrap_or_default();
                c.store.mark_submitted(run.id, id, at)?;
                if let (Some(due), 1) = (&run.scheduled_for, run.attempt) {
                    c.metrics.scheduling_latency((at - parse_ts(due)?).num_milliseconds() as f64 / 1000.0);
                }
                tracing::info!(cell = %run.cell, kind = %run.kind, run = run.id, job = id, attempt = run.attempt, "submitted");
            }
            Ok(Submitted::Refused(reason)) => {
                tracing::error!(cell = %run.cell, kind = %run.kind, run = run.id, "agent refused the job: {reason}");
                c.store.finish(run.id, "failed", Some(&format!("the agent refused the job: {reason}")), None, at)?;
                c.metrics.finished(&run.kind, "failed", None);
            }
            Err(e) => {
                tracing::warn!(cell = %run.cell, run = run.id, "{e:#}");
                c.store.postpone(run.id, &format!("{e:#}"), at + c.cfg.poll)?;
            }
        }
    }
    Ok(())
}

/// Read submitted runs back from their agents (all at once).
pub async fn poll(c: &Coordinator, now: DateTime<Utc>) -> Result<()> {
    let mut submitted = Vec::new();
    for run in c.store.open_runs()?.into_iter().filter(|r| r.state == "submitted") {
        let (Some(agent), Some(job_id)) = (c.agents.get(&run.cell), run.agent_job.clone()) else { continue };
        if let Some(deadline) = &run.deadline {
            if parse_ts(deadline)? < now && c.store.mark_overdue(run.id)? {
                tracing::warn!(cell = %run.cell, kind = %run.kind, run = run.id, "run still going past its window (due by {deadline})");
                c.metrics.overdue(&run.kind);
            }
        }
        submitted.push((run, agent, job_id));
    }
    let answers = futures::future::join_all(submitted.iter().map(|(_, agent, job_id)| agent.job(job_id))).await;
    for ((run, _, job_id), answer) in submitted.into_iter().zip(answers) {
        let now = Utc::now();
        let took = run.submitted_at.as_deref().and_then(|s| parse_ts(s).ok()).map(|s| (now - s).num_milliseconds() as f64 / 1000.0);
        let outcome = match answer {
            Ok(JobLookup::Found(job)) if job["state"] == "succeeded" || job["state"] == "failed" => {
                // A drill that ran (passed or failed) ends in a signed report, never a retry.
                if run.kind == "drill" && !job["result"].is_null() {
                    conclude_drill(c, &run, &job, took).await?;
                    continue;
                }
                if job["state"] == "succeeded" {
                    Ok(job)
                } else {
                    Err(job["error"].as_str().unwrap_or("the job failed without a message").to_string())
                }
            }
            Ok(JobLookup::Found(_)) => continue,
            Ok(JobLookup::Unknown) => Err(format!("the agent no longer knows job {job_id} (its journal was lost)")),
            Err(e) => {
                tracing::debug!(cell = %run.cell, run = run.id, "{e:#}");
                continue;
            }
        };
        match outcome {
            Ok(job) => {
                c.store.finish(run.id, "succeeded", None, Some(&job["result"]), now)?;
                c.metrics.finished(&run.kind, "succeeded", took);
                c.metrics.last_success(&run.cell, &run.kind, now);
                tracing::info!(cell = %run.cell, kind = %run.kind, run = run.id, "run succeeded");
            }
            Err(error) if (run.attempt as u32) < c.cfg.max_attempts => {
                let backoff = c.cfg.retry_base * 2u32.saturating_pow(run.attempt as u32 - 1);
                let jitter = backoff.mul_f64(rand::random::<f64>() * 0.2);
                let at = now + chrono::Duration::from_std(backoff + jitter).unwrap_or_default();
                tracing::warn!(cell = %run.cell, kind = %run.kind, run = run.id, attempt = run.attempt, retry_at = %at, "run failed, will retry: {error}");
                c.store.retry(run.id, &error, at)?;
                c.metrics.finished(&run.kind, "retried", took);
            }
            Err(error) => {
                tracing::error!(cell = %run.cell, kind = %run.kind, run = run.id, attempts = run.attempt, "run failed: {error}");
                c.store.finish(run.id, "failed", Some(&error), None, now)?;
                c.metrics.finished(&run.kind, "failed", took);
            }
        }
    }
    Ok(())
}

/// A drill job ended with an outcome: sign and store its report; the run
/// succeeds when the drill passed, fails (without retry) when it did not.
async fn conclude_drill(c: &Coordinator, run: &Run, job: &Value, took: Option<f64>) -> Result<()> {
    let now = Utc::now();
    let (Some(cell), Some(agent), Some(signer)) =
        (c.plan.cells.iter().find(|x| x.name == run.cell), c.agents.get(&run.cell), c.cfg.signer.as_ref())
    else {
        c.store.finish(run.id, "failed", Some("the cell or the signing key is gone"), None, now)?;
        return Ok(());
    };
    let done = crate::drill::Concluding {
        job,
        started: run.submitted_at.clone().unwrap_or_else(|| crate::store::ts(now)),
        source: None,
        initiator: format!("coordinator ({})", run.trigger),
    };
    match crate::drill::conclude(&c.plan, cell, agent, &done, signer, c.cfg.reports.as_deref()).await {
        Ok(d) => {
            let passed = d.report.verdict == "passed";
            let result = json!({ "report": d.report, "json": d.json_path, "html": d.html_path });
            let error = (!passed).then(|| format!("the drill failed: {} errors (report {})", d.report.errors, d.report.file_name()));
            c.store.finish(run.id, if passed { "succeeded" } else { "failed" }, error.as_deref(), Some(&result), now)?;
            c.metrics.finished(&run.kind, if passed { "succeeded" } else { "failed" }, took);
            if passed {
                c.metrics.last_success(&run.cell, &run.kind, now);
            }
            tracing::info!(cell = %run.cell, run = run.id, verdict = %d.report.verdict, report = %d.report.file_name(), "drill reported");
        }
        Err(e) => {
            // The report could not be stored: the run failed; the next drill tries again.
            tracing::error!(cell = %run.cell, run = run.id, "drill report: {e:#}");
            c.store.finish(run.id, "failed", Some(&format!("the drill ran but its report could not be stored: {e:#}")), Some(job), now)?;
            c.metrics.finished(&run.kind, "failed", took);
        }
    }
    Ok(())
}

/// Read every cell's recovery points (all agents at once).
pub async fn refresh_recovery(c: &Coordinator, now: DateTime<Utc>) {
    for (cell, result) in crate::agent_client::recovery_of_all(c.agents.values()).await {
        let problem = match result {
            Ok(body) => match c.store.save_recovery(&cell, &body, now) {
                Ok(()) => None,
                Err(e) => Some(format!("saving recovery points: {e:#}")),
            },
            Err(e) => Some(format!("{e:#}")),
        };
        c.agent_problems.lock().expect("agent problems").insert(cell, problem);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn missed_occurrences_are_caught_up_once_and_never_twice() {
        let plan = crate::plan::tests::demo_plan();
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("state.db")).unwrap();
        // First start: nothing from the past is run.
        fire(&plan, &store, at("2026-11-27T00:30:00Z")).unwrap();
        assert!(store.runs(None, 100).unwrap().is_empty());
        // Down from 00:30 to 05:10: five hourly occurrences and the 02:00 full were missed.
        fire(&plan, &store, at("2026-11-27T05:10:00Z")).unwrap();
        let runs = store.runs(Some("demo-a"), 100).unwrap();
        let kinds: Vec<(&str, &str)> = runs.iter().map(|r| (r.kind.as_str(), r.scheduled_for.as_deref().unwrap())).collect();
        assert!(kinds.contains(&("pg-incremental", "2026-11-27T05:00:00.000Z")), "{kinds:?}");
        assert!(kinds.contains(&("pg-full", "2026-11-27T02:00:00.000Z")), "{kinds:?}");
        assert!(kinds.contains(&("kafka-snapshot", "2026-11-27T05:00:00.000Z")), "{kinds:?}");
        assert_eq!(runs.iter().filter(|r| r.kind == "pg-incremental").count(), 1, "caught up once: {kinds:?}");
        // Firing again (a restart) adds nothing.
        fire(&plan, &store, at("2026-11-27T05:10:30Z")).unwrap();
        assert_eq!(store.runs(Some("demo-a"), 100).unwrap().len(), runs.len());
        // At 02:00 the full covers the hourly incremental.
        fire(&plan, &store, at("2026-11-28T02:00:10Z")).unwrap();
        let new: Vec<String> = store
            .runs(Some("demo-a"), 100)
            .unwrap()
            .iter()
            .filter(|r| r.scheduled_for.as_deref() == Some("2026-11-28T02:00:00.000Z"))
            .map(|r| r.kind.clone())
            .collect();
        assert!(new.contains(&"pg-full".to_string()) && !new.contains(&"pg-incremental".to_string()), "{new:?}");
    }
}
