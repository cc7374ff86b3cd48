//! The failover engine: carries out a journaled failover as far as it can
//! go. Cells go in the assessment's waves (tier order, `parallelism` at a
//! time); each cell's steps go in order, each written to the journal
//! ([`super::journal`]) before its side effect and closed after it:
//!
//! 1. `fence`: the recovery site's agent raises a fencing epoch in every
//!    location of the cell it has (create-only; the old primary's WAL and
//!    base backups are refused from then on), then the scenario's `fence`
//!    hook (`hook:fence`) stops the old primary's host;
//! 2. `restore`: the site's agent promotes the cell's standby kept there
//!    (its WAL streamed up to the failure), or, without one, restores the
//!    newest consistent cut (Postgres to the end of its WAL in the chosen
//!    location); then Kafka up to Postgres' last transaction, groups
//!    translated; it stays running as the cell's new home (a takeover: the
//!    drill code path, kept). A scenario's `promote` gate holds it when a
//!    standby is promoted, its `restore` gate otherwise;
//! 3. `smoke`: the cell's smoke checks, run by that restore, all passed;
//! 4. `hook:route`: the tenants are sent to the new place (the body names
//!    the new Postgres and Kafka); `hook:verify`: the platform's probes;
//! 5. `report`: the cell's failover report, signed onto its chain in the
//!    location it was restored from ([`super::report`]).
//!
//! A gate (the scenario's `approve`) stops the failover in state `waiting`
//! before its step until `failover approve`. A failed step stops the
//! failover (`failed`); `failover resume` tries the failed steps again
//! under their keys. A `--test` failover restores into throw-away names
//! (a drill, removed after), and neither fences nor routes.

use std::time::Duration;

use anyhow::{Context, Result};
use futures::future::join_all;
use serde_json::{json, Value};

use lifeboat_api::drill::Takeover;
use lifeboat_api::{DrillOutcome, DrillTarget, JobResult, JobSpec};
use lifeboat_client::Submitted;

use super::assess::CellAssessment;
use super::hooks::{self, HookCall};
use super::journal::{Failover, FailoverState, Journal, StepState};
use crate::plan::{CellPlan, Plan, SiteDef, Step};
use crate::report::keys::Signer;
use crate::report::Report;
use crate::store::Store;

/// What the engine needs: the plan, the journal's database, the key that
/// signs the smoke checks it sends.
pub struct Engine<'a> {
    pub plan: &'a Plan,
    pub store: &'a Store,
    pub signer: &'a Signer,
    pub http: reqwest::Client,
    /// Also keep each cell's chain of reports under `<dir>/<cell>/`.
    pub export: Option<&'a std::path::Path>,
}

/// How a cell's steps ended this time.
#[derive(Debug, PartialEq)]
enum CellEnd {
    Done,
    Waiting(String),
    Failed(String),
    Aborted,
}

/// The steps of a cell, in order.
fn steps(test: bool) -> &'static [&'static str] {
    match test {
        true => &["restore", "smoke", "report"],
        false => &["fence", "hook:fence", "restore", "smoke", "hook:route", "hook:verify", "report"],
    }
}

/// The scenario step a journal step of cell `c` belongs to (for gates).
fn scenario_step(step: &str, c: &CellAssessment) -> Step {
    match step {
        "fence" | "hook:fence" => Step::Fence,
        "restore" if c.standby_state.is_some() => Step::Promote,
        "restore" => Step::Restore,
        "smoke" => Step::Smoke,
        "hook:route" => Step::Route,
        "report" => Step::Report,
        _ => Step::Verify,
    }
}

/// The idempotency key of a step: what an agent and a hook receiver see.
pub fn key(failover: &str, cell: &str, step: &str) -> String {
    let cell = if cell.is_empty() { "all" } else { cell };
    format!("lifeboat-{failover}-{cell}-{}", step.replace(':', "-"))
}

impl Engine<'_> {
    pub(super) fn journal(&self) -> Journal<'_> {
        Journal(self.store)
    }

    /// Carry `id` out as far as it goes now: to the end, a gate, a failed
    /// step or an abort. Returns the failover as journaled after (and mirrored).
    pub async fn drive(&self, id: &str) -> Result<Failover> {
        let driven = self.drive_steps(id).await;
        self.mirror(id).await;
        driven
    }

    async fn drive_steps(&self, id: &str) -> Result<Failover> {
        let f = self.journal().get(id)?;
        if f.state.is_final() {
            return Ok(f);
        }
        self.journal().set_state(id, FailoverState::Running, None)?;
        self.hook_once(&f, "", "notify", json!({ "state": "started", "test": f.test })).await?;
        let mut waves: Vec<Vec<&CellAssessment>> = Vec::new();
        for c in &f.assessment.cells {
            let w = c.wave as usize;
            waves.resize_with(waves.len().max(w + 1), Vec::new);
            waves[w].push(c);
        }
        for wave in waves {
            let ends = join_all(wave.iter().map(|c| self.drive_cell(&f, c))).await;
            let problems: Vec<String> = ends
                .iter()
                .zip(&wave)
                .filter_map(|(e, c)| match e {
                    Ok(CellEnd::Failed(m)) => Some(format!("cell {}: {m}", c.cell)),
                    Err(e) => Some(format!("cell {}: {e:#}", c.cell)),
                    _ => None,
                })
                .collect();
            if !problems.is_empty() {
                self.journal().set_state(id, FailoverState::Failed, Some(&problems.join("; ")))?;
                return self.journal().get(id);
            }
            if ends.iter().any(|e| matches!(e, Ok(CellEnd::Aborted))) {
                return self.journal().get(id);
            }
            if let Some(Ok(CellEnd::Waiting(step))) = ends.iter().find(|e| matches!(e, Ok(CellEnd::Waiting(_)))) {
                tracing::info!(failover = id, step, "waiting for approval");
                self.journal().set_state(id, FailoverState::Waiting, None)?;
                return self.journal().get(id);
            }
        }
        self.hook_once(&f, "", "notify-done", json!({ "state": "done", "test": f.test })).await?;
        self.journal().set_state(id, FailoverState::Done, None)?;
        self.journal().get(id)
    }

    async fn drive_cell(&self, f: &Failover, c: &CellAssessment) -> Result<CellEnd> {
        let approvals = self.journal().approvals(&f.id)?;
        for step in steps(f.test) {
            match self.journal().step(&f.id, &c.cell, step)?.map(|s| s.state) {
                Some(StepState::Done | StepState::Skipped) => continue,
                Some(StepState::Failed) => return Ok(CellEnd::Failed(format!("step {step} failed; failover resume tries it again"))),
                Some(StepState::Intent) | None => {}
            }
            if self.journal().get(&f.id)?.state == FailoverState::Aborted {
                return Ok(CellEnd::Aborted);
            }
            // A test has no gate: it changes nothing in production.
            let gate = scenario_step(step, c);
            let gated = !f.test && f.assessment.steps.iter().any(|s| s.step == gate && s.gated);
            if gated && !approvals.iter().any(|a| a.step == gate.as_str()) {
                return Ok(CellEnd::Waiting(gate.as_str().to_string()));
            }
            let (state, error) = self.journaled(f, &c.cell, step, |key| async move { self.carry_out(f, c, step, &key).await }).await?;
            if let Some(e) = error {
                tracing::error!(failover = %f.id, cell = %c.cell, step, error = %e, "failover step failed");
                return Ok(CellEnd::Failed(format!("step {step}: {e}")));
            }
            tracing::info!(failover = %f.id, cell = %c.cell, step, state = ?state, "failover step closed");
        }
        Ok(CellEnd::Done)
    }

    /// Journal step `step` of `cell` with its key (the first, or a retry's
    /// once reopened) before running `act` with that key, then close it
    /// with what `act` returned: the step's state and, failed, why.
    pub(super) async fn journaled<F>(
        &self,
        f: &Failover,
        cell: &str,
        step: &str,
        act: impl FnOnce(String) -> F,
    ) -> Result<(StepState, Option<String>)>
    where
        F: std::future::Future<Output = Result<Option<Value>>>,
    {
        self.journal().intent(&f.id, cell, step, &key(&f.id, cell, step))?;
        self.mirror(&f.id).await;
        let key = self.journal().step(&f.id, cell, step)?.context("the step was just journaled")?.idempotency_key;
        let (state, detail, error) = closing(act(key).await);
        self.journal().close(&f.id, cell, step, state, &detail, error.as_deref())?;
        self.mirror(&f.id).await;
        Ok((state, error))
    }

    /// The port of the cell's takeover, as its restore journaled it.
    pub(super) fn takeover_port(&self, f: &Failover, c: &CellAssessment) -> Result<u16> {
        let restored = self.journal().step(&f.id, &c.cell, "restore")?.context("the restore step is not journaled")?.detail;
        restored["scratch"]["port"].as_u64().and_then(|p| u16::try_from(p).ok()).context("the restore journaled no port")
    }

    /// One step's side effect; its evidence, or None when it does not apply.
    async fn carry_out(&self, f: &Failover, c: &CellAssessment, step: &str, key: &str) -> Result<Option<Value>> {
        let (cell, site) = self.placed(c)?;
        match step {
            "fence" => self.fence(f, c, cell, site, key).await.map(Some),
            "restore" => self.restore(f, c, cell, site, key).await.map(Some),
            "report" => self.report(f, c, cell, site).await.map(Some),
            "smoke" => smoke(&self.journal().step(&f.id, &c.cell, "restore")?.context("the restore step is journaled")?.detail).map(Some),
            hook => {
                let name = hook.trim_start_matches("hook:");
                let detail = if name == "route" { self.new_home(f, c, site)? } else { Value::Null };
                self.hook(f, &c.cell, name, key, detail).await
            }
        }
    }

    pub(super) fn placed(&self, c: &CellAssessment) -> Result<(&CellPlan, &SiteDef)> {
        let cell =
            self.plan.cells.iter().find(|p| p.name == c.cell).with_context(|| format!("cell {} is no longer in the plan", c.cell))?;
        let site = c.site.as_deref().with_context(|| format!("cell {} has no recovery site (failover plan says why)", c.cell))?;
        let site = self.plan.site(site).with_context(|| format!("recovery site {site} is no longer in the plan"))?;
        Ok((cell, site))
    }

    async fn job(&self, site: &SiteDef, key: &str, spec: &JobSpec) -> Result<lifeboat_api::Job> {
        site_job(site, key, spec).await
    }

    async fn fence(&self, f: &Failover, c: &CellAssessment, cell: &CellPlan, site: &SiteDef, key: &str) -> Result<Value> {
        let reason = format!("failover {}: scenario {}, {} failed", f.id, f.scenario, f.failed);
        let spec = JobSpec::Fence { cell: Some(cell.name.clone()), reason, epoch: None };
        let job = self.job(site, key, &spec).await?;
        let Some(JobResult::Fence(done)) = job.result else {
            anyhow::bail!("fencing failed on {}: {}", site.name, job.error.unwrap_or_default());
        };
        // The location the cell is restored from must hold the fence: the
        // old primary must not go on archiving into the history the new one continues.
        let from = c.location.as_deref().unwrap_or_default();
        let fenced_there = done.locations.iter().any(|l| l.location == from && l.outcome.is_some());
        anyhow::ensure!(
            fenced_there,
            "location {from} of cell {}, which it is restored from, could not be fenced (the site's agent reported {:?}); the old primary could still archive there",
            cell.name,
            done.locations
        );
        Ok(serde_json::to_value(&done)?)
    }

    async fn restore(&self, f: &Failover, c: &CellAssessment, cell: &CellPlan, site: &SiteDef, key: &str) -> Result<Value> {
        let mut spec = crate::drill::signed_spec(cell, DrillTarget::Latest, self.signer);
        spec.cell = Some(cell.name.clone());
        spec.location = c.location.clone();
        spec.kafka = spec.kafka && site.kafka_brokers.is_some();
        if !f.test {
            let (name, port) = (takeover_name(&f.id, &cell.name), self.port(cell, site)?);
            // As assessed (and gated): the standby its site reported running.
            let promote_standby = c.standby_state.is_some();
            spec.takeover = Some(Takeover { name, port, topic_prefix: takeover_prefix(site, cell), promote_standby });
            crate::drill::sign(&mut spec, &cell.name, self.signer);
        }
        let job = self.job(site, key, &JobSpec::Drill(spec)).await?;
        let Some(JobResult::Drill(outcome)) = job.result else {
            anyhow::bail!("the restore on {} reported nothing: {}", site.name, job.error.unwrap_or_default());
        };
        let failed: Vec<String> =
            outcome.steps.iter().filter(|s| s.failed()).map(|s| format!("{}: {}", s.name, s.message.clone().unwrap_or_default())).collect();
        anyhow::ensure!(failed.is_empty(), "the restore on {} failed: {}", site.name, failed.join("; "));
        Ok(serde_json::to_value(&*outcome)?)
    }

    /// Reports for the cells of an aborted failover that have none (verdict
    /// failed: what was done and what was not), journaled as their `report` step.
    pub async fn report_unreported(&self, id: &str) -> Result<()> {
        let f = self.journal().get(id)?;
        for c in &f.assessment.cells {
            if self.journal().step(id, &c.cell, "report")?.is_some_and(|s| s.state == StepState::Done) {
                continue;
            }
            let Ok((cell, site)) = self.placed(c) else { continue };
            self.journal().intent(id, &c.cell, "report", &key(id, &c.cell, "report"))?;
            let (state, detail, error) = closing(self.report(&f, c, cell, site).await.map(Some));
            self.journal().close(id, &c.cell, "report", state, &detail, error.as_deref())?;
        }
        Ok(())
    }

    /// Sign and store the cell's failover report (or find the one a
    /// crashed attempt stored: one report per failover and cell).
    async fn report(&self, f: &Failover, c: &CellAssessment, cell: &CellPlan, site: &SiteDef) -> Result<Value> {
        let location = c.location.as_deref().with_context(|| format!("cell {} has no location to report into", c.cell))?;
        let agent = crate::serve::site_client(site)?.guest_reports(&cell.name, location);
        let id = super::report::report_id(&f.id, &cell.name);
        let stored = agent.reports().await?.into_iter().find(|n| n.ends_with(&format!("-{id}.json")));
        let report: Report = match stored {
            Some(name) => {
                serde_json::from_slice(&agent.report(&name).await?).with_context(|| format!("reading the stored report {name}"))?
            }
            None => {
                let (steps, approvals) = (self.journal().steps(&f.id)?, self.journal().approvals(&f.id)?);
                let environment = match f.test {
                    true => format!("a scratch environment at recovery site {} (removed after)", site.name),
                    false => format!("recovery site {}: {}", site.name, self.new_home(f, c, site)?),
                };
                let inputs = super::report::Inputs {
                    plan: self.plan,
                    cell,
                    failover: f,
                    steps: &steps,
                    approvals: &approvals,
                    location,
                    environment,
                };
                let mut report = super::report::build(&inputs);
                crate::drill::store(&agent, &mut report, self.signer).await?;
                report
            }
        };
        if let Some(dir) = self.export {
            crate::drill::mirror(&agent, &report, &dir.join(&cell.name)).await?;
        }
        Ok(json!({ "report_id": report.report_id, "sequence": report.chain.sequence, "verdict": report.verdict, "errors": report.errors,
                   "demonstrated": report.demonstrated }))
    }

    /// The port of `cell`'s server at `site` ([`Plan::guest_port`]).
    fn port(&self, cell: &CellPlan, site: &SiteDef) -> Result<u16> {
        self.plan.guest_port(site, &cell.name).with_context(|| format!("cell {} does not list recovery site {}", cell.name, site.name))
    }

    /// Where the cell lives now, for the route hook.
    /// Where the cell lives now, for the route hook: the port and prefix
    /// the restore journaled (not the plan as it reads now).
    fn new_home(&self, f: &Failover, c: &CellAssessment, site: &SiteDef) -> Result<Value> {
        let host = reqwest::Url::parse(&site.agent_url).ok().and_then(|u| u.host_str().map(str::to_string)).unwrap_or_default();
        let cell = self.placed(c)?.0;
        let restored = self.journal().step(&f.id, &c.cell, "restore")?.map(|s| s.detail).unwrap_or_default();
        let (port, prefix) = (&restored["scratch"]["port"], &restored["scratch"]["topic_prefix"]);
        Ok(json!({
            "site": site.name,
            "postgres": cell.postgres.then(|| json!({ "host": host, "port": port, "database": cell.database })),
            "kafka": site.kafka_brokers.as_ref().filter(|_| cell.kafka_topics.is_some()).map(|b| json!({ "brokers": b, "topic_prefix": prefix })),
        }))
    }

    /// Call the scenario's hook for `step`; None when it has none.
    pub(super) async fn hook(&self, f: &Failover, cell: &str, step: &str, key: &str, detail: Value) -> Result<Option<Value>> {
        let scenario = self.plan.scenarios.iter().find(|s| s.name == f.scenario).context("the scenario is no longer in the plan")?;
        // `notify-done` is the notify hook's; `failback-route` the route hook's.
        let Some(name) = scenario.hooks.get(step.trim_start_matches("failback-").trim_end_matches("-done")) else { return Ok(None) };
        let call = HookCall {
            failover: f.id.clone(),
            scenario: f.scenario.clone(),
            cell: cell.to_string(),
            step: step.to_string(),
            idempotency_key: key.to_string(),
            detail,
        };
        let outcome = hooks::call_named(self.plan, name, &call, &self.http).await?;
        anyhow::ensure!(outcome.succeeded, "hook {name} failed after {} attempt(s): {}", outcome.attempts, outcome.answer);
        Ok(Some(serde_json::to_value(&outcome)?))
    }

    /// A failover-wide hook (notify), journaled like a step; its failure
    /// is recorded but stops nothing.
    async fn hook_once(&self, f: &Failover, cell: &str, step: &str, detail: Value) -> Result<()> {
        let name = format!("hook:{step}");
        if self.journal().step(&f.id, cell, &name)?.is_some_and(|s| s.state != StepState::Intent) {
            return Ok(());
        }
        let key = key(&f.id, cell, &name);
        self.journal().intent(&f.id, cell, &name, &key)?;
        let (state, detail, error) = closing(self.hook(f, cell, step, &key, detail).await);
        self.journal().close(&f.id, cell, &name, state, &detail, error.as_deref())
    }
}

/// How a step's side effect closes its journal entry: done with its
/// evidence, skipped (it did not apply), or failed with why.
fn closing(result: Result<Option<Value>>) -> (StepState, Value, Option<String>) {
    match result {
        Ok(Some(detail)) => (StepState::Done, detail, None),
        Ok(None) => (StepState::Skipped, Value::Null, None),
        Err(e) => (StepState::Failed, Value::Null, Some(format!("{e:#}"))),
    }
}

/// Submit (or find, after a crash) the job `key` on the site's agent and wait for it.
pub async fn site_job(site: &SiteDef, key: &str, spec: &JobSpec) -> Result<lifeboat_api::Job> {
    agent_job(&crate::serve::site_client(site)?, &format!("recovery site {}", site.name), key, spec).await
}

/// Submit (or find, after a crash) the job `key` on `agent` (`who`, for errors) and wait for it.
pub async fn agent_job(agent: &lifeboat_client::AgentClient, who: &str, key: &str, spec: &JobSpec) -> Result<lifeboat_api::Job> {
    let job = match agent.submit(key, spec).await? {
        Submitted::Job(job) => job,
        Submitted::Refused(why) => anyhow::bail!("{who}'s agent refused the {} job: {why}", spec.kind()),
    };
    Ok(agent.wait(&job.id, Duration::from_secs(1)).await?)
}

/// Where a guest's topics and consumer groups are restored at a site: the
/// site's prefix and the cell's name, so guests sharing a site's Kafka (or
/// a DR twin's own cluster, with the same topic names) never share a topic
/// or a group.
pub fn takeover_prefix(site: &SiteDef, cell: &CellPlan) -> String {
    format!("{}{}.", site.kafka_topic_prefix, cell.name)
}

/// The name a takeover is marked with (its directory is `takeover-<port>`).
pub fn takeover_name(failover: &str, cell: &str) -> String {
    format!("{failover}-{cell}")
}

/// The smoke step: every check the restore ran passed.
fn smoke(restore: &Value) -> Result<Value> {
    let outcome: DrillOutcome = serde_json::from_value(restore.clone()).context("reading the restore's outcome")?;
    let failed: Vec<String> = outcome.checks.iter().filter(|c| c.failed()).map(|c| c.name.clone()).collect();
    anyhow::ensure!(failed.is_empty(), "smoke checks failed: {}", failed.join(", "));
    Ok(json!({ "checks": outcome.checks.iter().map(|c| json!({ "name": c.name, "outcome": c.outcome })).collect::<Vec<_>>() }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_valid_idempotency_keys_and_distinct_per_step() {
        let keys: Vec<String> = steps(false).iter().map(|s| key("fo-20261206t101500-1a2b", "weu-1", s)).collect();
        for k in &keys {
            lifeboat_api::jobs::check_idempotency_key(k).unwrap();
        }
        let unique: std::collections::BTreeSet<&String> = keys.iter().collect();
        assert_eq!(unique.len(), keys.len());
        assert_eq!(key("fo-1", "", "hook:notify"), "lifeboat-fo-1-all-hook-notify");
    }

    #[test]
    fn a_failed_check_fails_the_smoke_step() {
        let outcome = |outcome: &str| {
            json!({ "drill_id": "d", "target": null, "source_location": "primary",
                "scratch": { "id": "d", "directory": "/x", "port": 1, "topic_prefix": "" },
                "recovery_point": { "target": null, "location": "primary" }, "pg_rpo_seconds": null, "kafka_rpo_seconds": null,
                "rto_seconds": 1.0, "replay_seconds": 0.5, "steps": [], "cleaned_up": false,
                "checks": [{ "name": "rows", "outcome": outcome, "seconds": 0.1 }] })
        };
        assert!(smoke(&outcome("passed")).is_ok());
        assert!(smoke(&outcome("failed")).unwrap_err().to_string().contains("rows"));
    }
}
