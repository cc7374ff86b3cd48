//! Scheduled failover tests: each scenario's `test` schedule (quarterly
//! by default) has the served coordinator run a `--test` failover for each
//! cell, region or cloud the test names, one after the other: the same
//! assessment, restores at the recovery sites into throw-away names,
//! smoke checks and signed `failover-test` reports as an operator's
//! `failover run --test`, journaled like one (`GET /v1/failovers`,
//! initiator `scheduled test`). An occurrence is due when it falls after
//! the newest test of that scenario and failure (or, for none, after the
//! state database was made); a test that cannot start (nothing to restore,
//! no site) is journaled as failed, so it is not retried before its next
//! occurrence. While a real failover is unfinished, tests wait.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use time::OffsetDateTime;

use super::Coordinator;
use crate::commands::failover_run::{assessed, lock, new_failover};
use crate::failover::engine::Engine;
use crate::failover::journal::{Failover, FailoverState, Journal};
use crate::plan::{schedule, ScenarioDef};

/// How often due tests are looked for.
const EVERY: Duration = Duration::from_secs(30);

/// Run due tests, forever.
pub async fn run(c: Arc<Coordinator>, state: PathBuf) {
    if c.plan.scenarios.iter().all(|s| s.test_schedule.is_none()) {
        return std::future::pending().await;
    }
    if c.cfg.signer.is_none() {
        tracing::warn!("no --signing-key: the scenarios' scheduled failover tests do not run (their reports are signed)");
        return std::future::pending().await;
    }
    loop {
        if let Err(e) = run_due(&c, &state).await {
            tracing::error!("scheduled failover tests: {e:#}");
        }
        tokio::time::sleep(EVERY).await;
    }
}

/// Whether `scenario`'s test of `failed` is due at `now`.
fn due(s: &ScenarioDef, failed: &str, journal: &[Failover], since: OffsetDateTime, now: OffsetDateTime) -> bool {
    let Some(cron) = s.test_schedule.as_deref().and_then(|e| schedule::parse(e).ok()) else { return false };
    let last = journal.iter().filter(|f| f.test && f.scenario == s.name && f.failed == failed).map(|f| f.created).max();
    schedule::next_after(&cron, last.unwrap_or(since).max(since)).is_some_and(|next| next <= now)
}

/// The newest finished test of each scenario and failure, into the metrics.
fn export(c: &Coordinator, journal: &[Failover]) {
    for f in journal.iter().rev().filter(|f| f.test && f.state.is_final()) {
        if let Some(finished) = f.finished {
            c.metrics.failover_test(&f.scenario, &f.failed, finished, f.state == FailoverState::Done);
        }
    }
}

async fn run_due(c: &Arc<Coordinator>, state: &Path) -> Result<()> {
    let (journal, since) = c.blocking(|c| anyhow::Ok((Journal(&c.store).list()?, c.store.created()?))).await?;
    export(c, &journal);
    if let Some(busy) = journal.iter().find(|f| f.unfinished()) {
        tracing::debug!(failover = %busy.id, "scheduled failover tests wait: a failover is unfinished");
        return Ok(());
    }
    for s in &c.plan.scenarios {
        for failed in &s.test_failed {
            if due(s, failed, &journal, since, crate::clock::now()) {
                match exercise(c, state, s, failed).await {
                    Ok(f) => {
                        tracing::info!(failover = %f.id, scenario = %s.name, failed, state = f.state.as_str(), "scheduled failover test");
                        export(c, std::slice::from_ref(&f));
                    }
                    Err(e) => tracing::error!(scenario = %s.name, failed, "scheduled failover test: {e:#}"),
                }
            }
        }
    }
    Ok(())
}

/// Journal and carry out one test failover; it ends done or failed (a test has no gate).
async fn exercise(c: &Arc<Coordinator>, state: &Path, s: &ScenarioDef, failed: &str) -> Result<Failover> {
    let now = crate::clock::now();
    let (assessment, blocking) = assessed(&c.plan, &s.name, failed, now).await?;
    let f = new_failover(assessment, true, "scheduled test (lifeboat serve)".into(), now);
    let id = f.id.clone();
    let stopped = (!blocking.is_empty()).then(|| format!("this test cannot be carried out: {}", blocking.join("; ")));
    c.blocking(move |c| -> Result<()> {
        Journal(&c.store).create(&f)?;
        match stopped {
            Some(why) => Journal(&c.store).set_state(&f.id, FailoverState::Failed, Some(&why)),
            None => Ok(()),
        }
    })
    .await?;
    let (c2, state, id2) = (c.clone(), state.to_path_buf(), id.clone());
    // The engine reads and writes the journal as it goes: on a thread of its own, off the server's runtime.
    let driven = tokio::task::spawn_blocking(move || -> Result<()> {
        let _lock = lock(&state, &id2)?;
        let signer = c2.cfg.signer.as_ref().context("scheduled failover tests need --signing-key (their reports are signed)")?;
        let engine =
            Engine { plan: &c2.plan, store: &c2.store, signer, http: crate::failover::hooks::client(), export: c2.cfg.reports.as_deref() };
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        runtime.block_on(engine.drive(&id2))?;
        Ok(())
    })
    .await
    .context("the test's thread")
    .and_then(|r| r);
    c.blocking(move |c| {
        // A test the engine could not carry out ends failed, never left running.
        if let Err(e) = &driven {
            Journal(&c.store).set_state(&id, FailoverState::Failed, Some(&format!("{e:#}")))?;
        }
        Journal(&c.store).get(&id)
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_test_is_due_once_per_occurrence() {
        let plan = crate::plan::tests::demo_plan();
        let mut s = plan.scenarios[0].clone();
        s.test_schedule = Some("0 4 1 1,4,7,10 *".into());
        let at = |t: &str| crate::clock::parse(t).unwrap();
        let since = at("2026-12-01T00:00:00Z");
        assert!(!due(&s, "demo-a", &[], since, at("2026-12-31T00:00:00Z")), "the next quarter has not come");
        assert!(due(&s, "demo-a", &[], since, at("2027-01-01T04:00:01Z")));
        let mut done = new_failover(empty_assessment(&s.name, "demo-a"), true, "t".into(), at("2027-01-01T04:00:30Z"));
        assert!(!due(&s, "demo-a", std::slice::from_ref(&done), since, at("2027-01-01T05:00:00Z")), "this quarter's test ran");
        assert!(due(&s, "demo-b", std::slice::from_ref(&done), since, at("2027-01-01T05:00:00Z")), "each failure is tested on its own");
        done.test = false;
        assert!(due(&s, "demo-a", &[done], since, at("2027-01-01T05:00:00Z")), "a real failover is not a test");
        s.test_schedule = None;
        assert!(!due(&s, "demo-a", &[], since, at("2027-01-01T05:00:00Z")), "off");
    }

    fn empty_assessment(scenario: &str, failed: &str) -> crate::failover::assess::Assessment {
        crate::failover::assess::Assessment {
            scenario: scenario.into(),
            scope: crate::plan::Scope::Cell,
            failed: failed.into(),
            computed_at: time::OffsetDateTime::UNIX_EPOCH,
            steps: Vec::new(),
            parallelism: 1,
            rto_target_seconds: 0.0,
            cells: Vec::new(),
            problems: Vec::new(),
        }
    }
}
