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
use std::sync::Arc;

use anyhow::Result;
use time::OffsetDateTime;

use lifeboat_api::{Job, JobResult, JobState};
use lifeboat_client::{ClientError, JobLookup, Submitted};

use super::Coordinator;
use crate::clock::{self, seconds_between};
use crate::plan::{schedule, CellPlan, Plan};
use crate::runs::{job_spec, RunKind, RunResult, RunState, Trigger};
use crate::store::{Firing, NewRun, Run, Store};

/// The kinds of work a cell's plan asks for, with their schedules.
pub fn duties(cell: &CellPlan) -> Vec<(RunKind, &str)> {
    let s = &cell.schedules;
    let mut out = Vec::new();
    if cell.postgres {
        out.extend([
            (RunKind::PgFull, s.pg_full.as_str()),
            (RunKind::PgIncremental, s.pg_incremental.as_str()),
            (RunKind::PgRetention, s.retention.as_str()),
        ]);
    }
    if cell.kafka_topics.is_some() {
        out.extend([(RunKind::KafkaSnapshot, s.kafka_snapshot.as_str()), (RunKind::KafkaRetention, s.retention.as_str())]);
    }
    out.push((RunKind::Drill, s.drill.as_str()));
    out.push((RunKind::Verify, s.verify.as_str()));
    out.push((RunKind::VerifySample, s.verify_sample.as_str()));
    out
}

/// Turn due schedule occurrences into runs: every schedule's mark read at
/// once, and what this tick decides written in one transaction.
pub fn fire(plan: &Plan, store: &Store, now: OffsetDateTime) -> Result<()> {
    let marks = store.marks()?;
    let mut crons: HashMap<&str, Option<croner::Cron>> = HashMap::new();
    let mut firings = Vec::new();
    for cell in &plan.cells {
        let mut cron = |expr| crons.entry(expr).or_insert_with(|| schedule::parse(expr).ok()).clone();
        let full = cron(cell.schedules.pg_full.as_str());
        for (kind, expr) in duties(cell) {
            let Some(cron) = cron(expr) else { continue };
            let Some(&last) = marks.get(cell.name.as_str()).and_then(|m| m.get(&kind)) else {
                firings.push(Firing { run: None, cell: &cell.name, kind, at: now, missed: 0 });
                continue;
            };
            let (latest, missed, next) = newest_due(&cron, last, now);
            let Some(at) = latest else { continue };
            let covered = kind == RunKind::PgIncremental
                && full.as_ref().and_then(|f| schedule::next_after(f, at - time::Duration::seconds(1))) == Some(at);
            let run = (!covered).then_some(NewRun {
                cell: &cell.name,
                kind,
                trigger: Trigger::Schedule,
                scheduled_for: Some(at),
                deadline: next,
            });
            firings.push(Firing { run, cell: &cell.name, kind, at, missed });
        }
    }
    if firings.is_empty() {
        return Ok(());
    }
    let added = store.fire(&firings, now)?;
    for (f, id) in firings.iter().zip(added) {
        let Some(id) = id else { continue };
        let (cell, kind, missed) = (f.cell, f.kind, f.missed);
        if missed > 1 {
            tracing::warn!(%cell, %kind, missed, run = id, "missed {missed} occurrences while down; running the newest once");
        }
        tracing::info!(%cell, %kind, run = id, scheduled_for = %clock::ts(f.at), "scheduled run");
    }
    Ok(())
}

/// The newest occurrence after `last` that is due by `now`, how many were
/// due, and the occurrence after it.
fn newest_due(cron: &croner::Cron, last: OffsetDateTime, now: OffsetDateTime) -> (Option<OffsetDateTime>, u64, Option<OffsetDateTime>) {
    let mut latest = None;
    let mut missed = 0u64;
    let mut next = schedule::next_after(cron, last);
    while let Some(t) = next.filter(|t| *t <= now) {
        latest = Some(t);
        missed += 1;
        next = schedule::next_after(cron, t);
    }
    (latest, missed, next)
}

fn key(c: &Coordinator, run: &Run) -> String {
    format!("lifeboat-{}-{}-{}", c.store.instance, run.id, run.attempt)
}

/// Submit pending runs that are due, within each cell's concurrency, all
/// agents at once (a slow or unreachable agent delays no other cell).
pub async fn dispatch(c: &Arc<Coordinator>, now: OffsetDateTime) -> Result<()> {
    let batch = c.blocking(move |c| due(c, now)).await?;
    let answers = futures::future::join_all(batch.iter().map(|(run, spec)| async move {
        let answer = c.agents[&run.cell].submit(&key(c, run), spec).await;
        (answer, clock::now())
    }))
    .await;
    c.blocking(move |c| -> Result<()> {
        for ((run, _), (answer, at)) in batch.into_iter().zip(answers) {
            submitted(c, &run, answer, at)?;
        }
        Ok(())
    })
    .await
}

/// The pending runs due now, within each cell's concurrency, with the job each asks for.
fn due(c: &Coordinator, now: OffsetDateTime) -> Result<Vec<(Run, lifeboat_api::JobSpec)>> {
    let open = c.store.open_runs()?;
    let mut in_flight: HashMap<String, usize> = HashMap::new();
    for r in open.iter().filter(|r| r.state == RunState::Submitted) {
        *in_flight.entry(r.cell.clone()).or_default() += 1;
    }
    let mut batch = Vec::new();
    for run in open.into_iter().filter(|r| r.state == RunState::Pending) {
        if run.next_attempt_at > now || in_flight.get(&run.cell).copied().unwrap_or(0) >= c.cfg.cell_concurrency {
            continue;
        }
        let Some(spec) = ready(c, &run, now)? else { continue };
        *in_flight.entry(run.cell.clone()).or_default() += 1;
        batch.push((run, spec));
    }
    Ok(batch)
}

/// The job a pending run asks its agent for, or None after recording why it cannot run.
fn ready(c: &Coordinator, run: &Run, now: OffsetDateTime) -> Result<Option<lifeboat_api::JobSpec>> {
    let refuse = |why: &str| -> Result<Option<lifeboat_api::JobSpec>> {
        c.store.finish(run.id, RunState::Failed, Some(why), None, now)?;
        c.metrics.finished(run.kind, "failed", None);
        Ok(None)
    };
    let Some(cell) = c.plan.cells.iter().find(|x| x.name == run.cell).filter(|_| c.agents.contains_key(&run.cell)) else {
        return refuse("the cell is no longer in the plan");
    };
    if let Some(why) = super::takeover::lost_agent(c, &run.cell) {
        c.store.postpone(run.id, &why, now + c.cfg.poll)?;
        return Ok(None);
    }
    if run.kind == RunKind::Drill && c.cfg.signer.is_none() {
        return refuse("this coordinator has no --signing-key, so a drill could not sign its report; start it with one");
    }
    match job_spec(&c.plan, run.kind, cell, c.cfg.signer.as_ref()) {
        Ok(spec) => Ok(Some(spec)),
        Err(e) => refuse(&format!("{e:#}")),
    }
}

/// Record what the agent answered to a submission.
fn submitted(c: &Coordinator, run: &Run, answer: Result<Submitted, ClientError>, at: OffsetDateTime) -> Result<()> {
    let _span = run_span(run).entered();
    match answer {
        Ok(Submitted::Job(job)) => {
            c.store.mark_submitted(run.id, &job.id, at)?;
            if let (Some(due), 1) = (run.scheduled_for, run.attempt) {
                c.metrics.scheduling_latency(seconds_between(due, at));
            }
            tracing::info!(cell = %run.cell, kind = %run.kind, run = run.id, job = %job.id, attempt = run.attempt, "submitted");
        }
        Ok(Submitted::Refused(reason)) => {
            tracing::error!(cell = %run.cell, kind = %run.kind, run = run.id, "agent refused the job: {reason}");
            c.store.finish(run.id, RunState::Failed, Some(&format!("the agent refused the job: {reason}")), None, at)?;
            c.metrics.finished(run.kind, "failed", None);
        }
        Err(e) => {
            tracing::warn!(cell = %run.cell, run = run.id, "{e}");
            c.store.postpone(run.id, &e.to_string(), at + c.cfg.poll)?;
        }
    }
    Ok(())
}

/// Read submitted runs back from their agents (all at once).
pub async fn poll(c: &Arc<Coordinator>, now: OffsetDateTime) -> Result<()> {
    let submitted = c.blocking(move |c| with_agents(c, now)).await?;
    let answers = futures::future::join_all(submitted.iter().map(|(run, job_id)| c.agents[&run.cell].job(job_id))).await;
    for ((run, job_id), answer) in submitted.into_iter().zip(answers) {
        let job = match answer {
            Ok(JobLookup::Found(job)) if job.state.is_final() => job,
            Ok(JobLookup::Found(_)) => continue,
            Ok(JobLookup::Unknown) => {
                let lost = Err(format!("the agent no longer knows job {job_id} (its journal was lost)"));
                c.blocking(move |c| ended(c, &run, lost)).await?;
                continue;
            }
            Err(e) => {
                tracing::debug!(cell = %run.cell, run = run.id, "{e}");
                continue;
            }
        };
        // A drill that ran (passed or failed) ends in a signed report, never a retry.
        if run.kind == RunKind::Drill && matches!(job.result, Some(JobResult::Drill(_))) {
            use tracing::Instrument as _;
            conclude_drill(c, &run, &job).instrument(run_span(&run)).await?;
            continue;
        }
        // A verify that read everything and found problems is a finding, not a fault: no retry.
        let finding =
            matches!(run.kind, RunKind::Verify | RunKind::VerifySample) && matches!(&job.result, Some(JobResult::Verify(v)) if !v.is_ok());
        let outcome = match (job.state, job.result) {
            (JobState::Succeeded, result) => Ok(result),
            (_, _) => Err(job.error.unwrap_or_else(|| "the job failed without a message".into())),
        };
        c.blocking(move |c| ended_with(c, &run, outcome, !finding)).await?;
    }
    Ok(())
}

/// The runs the agents have, with their job ids; marks those past their deadline overdue.
fn with_agents(c: &Coordinator, now: OffsetDateTime) -> Result<Vec<(Run, String)>> {
    let mut submitted = Vec::new();
    for run in c.store.open_runs()?.into_iter().filter(|r| r.state == RunState::Submitted) {
        let Some(job_id) = run.agent_job.clone().filter(|_| c.agents.contains_key(&run.cell)) else { continue };
        if let Some(deadline) = run.deadline.filter(|d| *d < now) {
            if c.store.mark_overdue(run.id)? {
                tracing::warn!(cell = %run.cell, kind = %run.kind, run = run.id, "run still going past its window (due by {})", clock::ts(deadline));
                c.metrics.overdue(run.kind);
            }
        }
        submitted.push((run, job_id));
    }
    Ok(submitted)
}

/// The span of everything done for one run: its id, cell, kind and attempt.
fn run_span(run: &Run) -> tracing::Span {
    tracing::info_span!("run", run = run.id, cell = %run.cell, kind = %run.kind, attempt = run.attempt)
}

/// How long a run has been with its agent.
fn took(run: &Run, now: OffsetDateTime) -> Option<f64> {
    run.submitted_at.map(|s| seconds_between(s, now))
}

/// A run's job ended (or was lost): record success, retry, or give up.
fn ended(c: &Coordinator, run: &Run, outcome: Result<Option<JobResult>, String>) -> Result<()> {
    ended_with(c, run, outcome, true)
}

/// [`ended`], retrying a failure only when `retryable`.
fn ended_with(c: &Coordinator, run: &Run, outcome: Result<Option<JobResult>, String>, retryable: bool) -> Result<()> {
    let _span = run_span(run).entered();
    let now = clock::now();
    let took = took(run, now);
    match outcome {
        Ok(result) => {
            c.store.finish(run.id, RunState::Succeeded, None, result.map(RunResult::Job).as_ref(), now)?;
            c.metrics.finished(run.kind, "succeeded", took);
            c.metrics.last_success(&run.cell, run.kind, now);
            tracing::info!(cell = %run.cell, kind = %run.kind, run = run.id, "run succeeded");
        }
        Err(error) if retryable && (run.attempt as u32) < c.cfg.max_attempts => {
            let backoff = c.cfg.retry_base * 2u32.saturating_pow(run.attempt as u32 - 1);
            let jitter = backoff.mul_f64(rand::random::<f64>() * 0.2);
            let at = now + (backoff + jitter);
            tracing::warn!(cell = %run.cell, kind = %run.kind, run = run.id, attempt = run.attempt, retry_at = %clock::ts(at), "run failed, will retry: {error}");
            c.store.retry(run.id, &error, at)?;
            c.metrics.finished(run.kind, "retried", took);
        }
        Err(error) => {
            tracing::error!(cell = %run.cell, kind = %run.kind, run = run.id, attempts = run.attempt, "run failed: {error}");
            c.store.finish(run.id, RunState::Failed, Some(&error), None, now)?;
            c.metrics.finished(run.kind, "failed", took);
        }
    }
    Ok(())
}

/// A drill job ended with an outcome: sign and store its report; the run
/// succeeds when the drill passed, fails (without retry) when it did not.
async fn conclude_drill(c: &Arc<Coordinator>, run: &Run, job: &Job) -> Result<()> {
    let (Some(cell), Some(agent), Some(signer)) =
        (c.plan.cells.iter().find(|x| x.name == run.cell), c.agents.get(&run.cell), c.cfg.signer.as_ref())
    else {
        let id = run.id;
        return c
            .blocking(move |c| c.store.finish(id, RunState::Failed, Some("the cell or the signing key is gone"), None, clock::now()))
            .await;
    };
    let done = crate::drill::Concluding {
        job,
        started: run.submitted_at.unwrap_or_else(clock::now),
        source: None,
        initiator: format!("coordinator ({})", run.trigger.as_str()),
    };
    let (state, error, result) = match crate::drill::conclude(&c.plan, cell, agent, &done, signer, c.cfg.reports.as_deref()).await {
        Ok(d) => {
            let passed = d.report.verdict == crate::report::Verdict::Passed;
            let error = (!passed).then(|| format!("the drill failed: {} errors (report {})", d.report.errors, d.report.file_name()));
            tracing::info!(cell = %run.cell, run = run.id, verdict = d.report.verdict.as_str(), report = %d.report.file_name(), "drill reported");
            let state = if passed { RunState::Succeeded } else { RunState::Failed };
            (state, error, Some(RunResult::Drill { report: Box::new(d.report), json: d.json_path, html: d.html_path }))
        }
        Err(e) => {
            // The report could not be stored: the run failed; the next drill tries again.
            tracing::error!(cell = %run.cell, run = run.id, "drill report: {e:#}");
            let error = format!("the drill ran but its report could not be stored: {e:#}");
            (RunState::Failed, Some(error), job.result.clone().map(RunResult::Job))
        }
    };
    let run = run.clone();
    c.blocking(move |c| -> Result<()> {
        let now = clock::now();
        c.store.finish(run.id, state, error.as_deref(), result.as_ref(), now)?;
        let outcome = if state == RunState::Succeeded { "succeeded" } else { "failed" };
        c.metrics.finished(run.kind, outcome, took(&run, now));
        if state == RunState::Succeeded {
            c.metrics.last_success(&run.cell, run.kind, now);
        }
        Ok(())
    })
    .await
}

/// Read every cell's recovery points (all agents at once).
pub async fn refresh_recovery(c: &Arc<Coordinator>, now: OffsetDateTime) {
    let answers = lifeboat_client::recovery_of_all(c.agents.values()).await;
    c.blocking(move |c| {
        for (cell, result) in answers {
            let problem = match result {
                Ok(body) => c.store.save_recovery(&cell, &body, now).err().map(|e| format!("saving recovery points: {e:#}")),
                Err(e) => Some(e.to_string()),
            };
            c.agent_problems.lock().expect("agent problems").insert(cell, problem);
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> OffsetDateTime {
        clock::parse(s).unwrap()
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
        let kinds: Vec<(RunKind, String)> = runs.iter().map(|r| (r.kind, clock::ts(r.scheduled_for.unwrap()))).collect();
        let has = |k: RunKind, t: &str| kinds.contains(&(k, t.to_string()));
        assert!(has(RunKind::PgIncremental, "2026-11-27T05:00:00.000Z"), "{kinds:?}");
        assert!(has(RunKind::PgFull, "2026-11-27T02:00:00.000Z"), "{kinds:?}");
        assert!(has(RunKind::KafkaSnapshot, "2026-11-27T05:00:00.000Z"), "{kinds:?}");
        assert_eq!(runs.iter().filter(|r| r.kind == RunKind::PgIncremental).count(), 1, "caught up once: {kinds:?}");
        // Firing again (a restart) adds nothing.
        fire(&plan, &store, at("2026-11-27T05:10:30Z")).unwrap();
        assert_eq!(store.runs(Some("demo-a"), 100).unwrap().len(), runs.len());
        // At 02:00 the full covers the hourly incremental.
        fire(&plan, &store, at("2026-11-28T02:00:10Z")).unwrap();
        let new: Vec<RunKind> = store
            .runs(Some("demo-a"), 100)
            .unwrap()
            .iter()
            .filter(|r| r.scheduled_for == Some(at("2026-11-28T02:00:00Z")))
            .map(|r| r.kind)
            .collect();
        assert!(new.contains(&RunKind::PgFull) && !new.contains(&RunKind::PgIncremental), "{new:?}");
    }
}
