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
    let scheduled = c.plan.scenarios.iter().any(|s| s.test_schedule.is_some());
    forever(&c, "scheduled failover tests", scheduled, || run_due(&c, &state)).await
}

/// Run `pass` every 30 s, forever, when the plan `scheduled` any
/// (`what`) and the coordinator has the signing key they need.
pub(super) async fn forever<F: std::future::Future<Output = Result<()>>>(
    c: &Coordinator,
    what: &str,
    scheduled: bool,
    pass: impl Fn() -> F,
) {
    if !scheduled {
        return std::future::pending().await;
    }
    if c.cfg.signer.is_none() {
        tracing::warn!("no --signing-key: the scenarios' {what} do not run (their jobs and reports are signed)");
        return std::future::pending().await;
    }
    loop {
        c.leader.wait_leading().await;
        if let Err(e) = pass().await {
            tracing::error!("{what}: {e:#}");
        }
        tokio::time::sleep(EVERY).await;
    }
}

/// Whether an occurrence of `cron` falls after `last` (the newest such
/// exercise; none: `since`, when the state database was made) by `now`.
pub(super) fn due_after(cron: Option<&str>, last: Option<OffsetDateTime>, since: OffsetDateTime, now: OffsetDateTime) -> bool {
    let Some(cron) = cron.and_then(|e| schedule::parse(e).ok()) else { return false };
    schedule::next_after(&cron, last.unwrap_or(since).max(since)).is_some_and(|next| next <= now)
}

/// Whether `scenario`'s test of `failed` is due at `now`.
fn due(s: &ScenarioDef, failed: &str, journal: &[Failover], since: OffsetDateTime, now: OffsetDateTime) -> bool {
    let last = journal.iter().filter(|f| f.test && f.scenario == s.name && f.failed == failed).map(|f| f.created).max();
    due_after(s.test_schedule.as_deref(), last, since, now)
}

/// The newest finished test of each scenario and failure, into the metrics.
fn export(c: &Coordinator, journal: &[Failover]) {
    for f in journal.iter().rev().filter(|f| f.test && f.state.is_final()) {
        if let Some(finished) = f.finished {
            c.metrics.exercise(false, &f.scenario, &f.failed, finished, f.state == FailoverState::Done);
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
    carry_out(c, state, &id, vec![Act::Drive]).await
}

/// What [`carry_out`] has the engine do.
#[derive(Debug, Clone)]
pub enum Act {
    Drive,
    Commit,
    /// Every cell, or the one named.
    Failback(Option<String>),
    /// The reports an aborted failover's cells lack.
    Report,
}

/// Carry failover `id` through `acts`, each only once the one before
/// ended as the next needs (driven: done; committed), on a thread of its
/// own (the engine reads and writes the journal as it goes, off the
/// server's runtime) under the same per-failover lock as the CLI. A
/// failover the engine could not carry out ends failed, never left
/// running. Returns it as journaled after.
pub(super) async fn carry_out(c: &Arc<Coordinator>, state: &Path, id: &str, acts: Vec<Act>) -> Result<Failover> {
    let held = lock(&c.store, state, id)?;
    carry_out_locked(c, held, id, acts).await
}

/// [`carry_out`] under a lock the caller took (`held`, released after).
pub(super) async fn carry_out_locked(c: &Arc<Coordinator>, held: crate::store::FailoverLock, id: &str, acts: Vec<Act>) -> Result<Failover> {
    let (c2, id2) = (c.clone(), id.to_string());
    let driven = tokio::task::spawn_blocking(move || -> Result<()> {
        let _lock = held;
        let signer = c2.cfg.signer.as_ref().context("scheduled exercises need --signing-key (their reports and jobs are signed)")?;
        let engine =
            Engine { plan: &c2.plan, store: &c2.store, signer, http: crate::failover::hooks::client(), export: c2.cfg.reports.as_deref() };
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        runtime.block_on(async {
            for act in acts {
                let (f, next) = match act {
                    Act::Drive => (engine.drive(&id2).await?, FailoverState::Done),
                    Act::Commit => (engine.commit(&id2).await?, FailoverState::Committed),
                    Act::Failback(cell) => (engine.failback(&id2, cell.as_deref()).await?, FailoverState::FailedBack),
                    Act::Report => {
                        engine.report_unreported(&id2).await?;
                        break;
                    }
                };
                if f.state != next {
                    break;
                }
            }
            anyhow::Ok(())
        })
    })
    .await
    .context("the engine's thread")
    .and_then(|r| r);
    let id = id.to_string();
    c.blocking(move |c| {
        if let Err(e) = &driven {
            let f = Journal(&c.store).get(&id)?;
            let state = if matches!(f.state, FailoverState::Running | FailoverState::Waiting) { FailoverState::Failed } else { f.state };
            Journal(&c.store).set_state(&id, state, Some(&format!("{e:#}")))?;
        }
        Journal(&c.store).get(&id)
    })
    .await
}

#[cfg(test)]
pub(super) mod tests {
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

    pub(in crate::serve) fn empty_assessment(scenario: &str, failed: &str) -> crate::failover::assess::Assessment {
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
