//! Failing a committed failover back home (`lifeboat failover failback
//! ID`): planned, without loss, per cell (at once), each step journaled
//! before its side effect under its idempotency key like the failover's:
//!
//! 1. `failback:rebuild` (the cell's own agent, back up): its data
//!    directory set aside and rebuilt from the location the new primary
//!    archives into, as a standby streaming from the new primary;
//! 2. `failback:handback` (the recovery site): the new primary's WAL seen
//!    archived, a standby seen streaming, its server stopped cleanly (its
//!    last WAL reaches the home), its last WAL read (`final_lsn`);
//! 3. `failback:fence` (the cell's own agent): a fencing epoch for the
//!    home's next timeline in every location it has, so the stopped
//!    takeover can never archive again; the location it archived into must hold it;
//! 4. `failback:promote` (the cell's own agent): the home promoted once it
//!    replayed past `final_lsn`, never before;
//! 5. `failback:route`, `failback:verify`: the scenario's `route` and
//!    `verify` hooks, called with steps `failback-route` and `failback-verify`;
//! 6. `failback:backup`: a full base backup of the home on its new timeline.
//!
//! Until the handback the new primary serves and nothing is lost by
//! stopping (run `failback` again, or leave the cell where it is); from
//! the handback on, the cell takes no writes until the home is promoted.
//! A failed step leaves the failover `failing-back` with why; `failback`
//! again tries it under a new key and goes on. Done: `failed-back`.
//!
//! `--cell C` fails back one cell of the failover (after a cloud outage,
//! the cells go home one at a time, each when its team is ready): the
//! failover stays `failing-back` until every cell is home.

use anyhow::{ensure, Context, Result};
use futures::future::join_all;
use serde_json::{json, Value};

use lifeboat_api::failback::{HandbackSpec, HomePromoteSpec, RebuildSpec};
use lifeboat_api::{JobResult, JobSpec};

use super::assess::CellAssessment;
use super::engine::{site_job, takeover_name, Engine};
use super::journal::{Failover, FailoverState};
use crate::plan::{CellPlan, SiteDef};

/// The steps of a cell's failback, in order.
pub const STEPS: [&str; 7] =
    ["failback:rebuild", "failback:handback", "failback:fence", "failback:promote", "failback:route", "failback:verify", HOME];

/// The last step of a cell's failback: done, the cell is home.
pub const HOME: &str = "failback:backup";

/// Whether `f` may fail back (go on failing back): a committed real failover.
pub fn can_fail_back(f: &Failover) -> Result<()> {
    let id = &f.id;
    ensure!(!f.test, "failover {id} is a test: nothing moved, nothing to fail back");
    ensure!(
        matches!(f.state, FailoverState::Committed | FailoverState::FailingBack),
        "failover {id} is {}: only a committed failover fails back (its new primaries archive, so the home can be rebuilt from them); \
         commit it first (lifeboat failover commit {id})",
        f.state.as_str()
    );
    Ok(())
}

/// Whether `only` (when given) is a cell `f` moved.
pub fn moved(f: &Failover, only: Option<&str>) -> Result<()> {
    if let Some(cell) = only {
        ensure!(
            f.assessment.cells.iter().any(|c| c.cell == cell),
            "failover {} moved no cell {cell} (failover status {} lists its cells)",
            f.id,
            f.id
        );
    }
    Ok(())
}

impl Engine<'_> {
    /// Fail every cell of the committed failover `id` (or only cell
    /// `only`) back home, as far as it goes.
    pub async fn failback(&self, id: &str, only: Option<&str>) -> Result<Failover> {
        let back = self.failback_cells(id, only).await;
        self.mirror(id).await;
        back
    }

    async fn failback_cells(&self, id: &str, only: Option<&str>) -> Result<Failover> {
        let f = self.journal().get(id)?;
        if f.state == FailoverState::FailedBack && !f.test {
            return Ok(f);
        }
        can_fail_back(&f)?;
        moved(&f, only)?;
        let cells: Vec<&CellAssessment> = f.assessment.cells.iter().filter(|c| only.is_none_or(|o| o == c.cell)).collect();
        self.journal().set_state(id, FailoverState::FailingBack, None)?;
        self.journal().reopen_failed_of(id, only)?;
        let ends = join_all(cells.iter().map(|c| self.failback_cell(&f, c))).await;
        let problems: Vec<String> =
            ends.iter().zip(&cells).filter_map(|(e, c)| e.as_ref().err().map(|e| format!("cell {}: {e:#}", c.cell))).collect();
        let again = match only {
            Some(cell) => format!("failover failback {id} --cell {cell}"),
            None => format!("failover failback {id}"),
        };
        let home = self.journal().home(id)?;
        let (state, error) = match (problems.is_empty(), f.assessment.cells.iter().all(|c| home.contains(&c.cell))) {
            (true, true) => (FailoverState::FailedBack, None),
            (true, false) => (FailoverState::FailingBack, None),
            (false, _) => (FailoverState::FailingBack, Some(format!("failback stopped: {}; run {again} again", problems.join("; ")))),
        };
        self.journal().set_state(id, state, error.as_deref())?;
        self.journal().get(id)
    }

    async fn failback_cell(&self, f: &Failover, c: &CellAssessment) -> Result<()> {
        for step in STEPS {
            self.once(f, &c.cell, step, |key| async move { self.failback_step(f, c, step, &key).await }).await?;
        }
        Ok(())
    }

    async fn failback_step(&self, f: &Failover, c: &CellAssessment, step: &str, key: &str) -> Result<Option<Value>> {
        let (cell, site) = self.placed(c)?;
        let spec = match step {
            "failback:rebuild" => JobSpec::Rebuild(self.rebuild_spec(f, c, cell, site)?),
            "failback:handback" => JobSpec::Handback(HandbackSpec {
                cell: cell.name.clone(),
                takeover: takeover_name(&f.id, &cell.name),
                port: self.takeover_port(f, c)?,
            }),
            "failback:fence" => {
                JobSpec::Fence { cell: None, reason: format!("failback of failover {} to the cell's home", f.id), epoch: None }
            }
            "failback:promote" => {
                let handed = self.journal().step(&f.id, &c.cell, "failback:handback")?.context("the handback is not journaled")?.detail;
                let after_lsn = handed["final_lsn"].as_str().context("the handback journaled no final_lsn")?.to_string();
                JobSpec::HomePromote(HomePromoteSpec { cell: cell.name.clone(), after_lsn })
            }
            "failback:backup" => JobSpec::PgBackup { incremental: false },
            hook => {
                let name = hook.replace(':', "-");
                return self.hook(f, &c.cell, &name, key, json!({ "home": { "agent": cell.agent_url } })).await;
            }
        };
        let job = match step {
            "failback:handback" => site_job(site, key, &spec).await?,
            _ => super::engine::agent_job(&crate::serve::cell_client(cell)?, &format!("cell {}", cell.name), key, &spec).await?,
        };
        let Some(result) = job.result else {
            anyhow::bail!("the {} job failed: {}", spec.kind(), job.error.unwrap_or_default());
        };
        if let JobResult::Fence(done) = &result {
            let from = self.plan.agent_location_name(c.location.as_deref().unwrap_or_default());
            ensure!(
                done.locations.iter().any(|l| l.location == from && l.outcome.is_some()),
                "location {from}, where the new primary archived, could not be fenced ({:?})",
                done.locations
            );
        }
        Ok(Some(serde_json::to_value(&result)?))
    }

    fn rebuild_spec(&self, f: &Failover, c: &CellAssessment, cell: &CellPlan, site: &SiteDef) -> Result<RebuildSpec> {
        let host = reqwest::Url::parse(&site.agent_url).ok().and_then(|u| u.host_str().map(str::to_string)).unwrap_or_default();
        let location = self.plan.agent_location_name(c.location.as_deref().context("the cell was restored from no location")?);
        let mut spec = RebuildSpec {
            cell: cell.name.clone(),
            location: location.to_string(),
            primary_conninfo: failback_conninfo(cell, &host, self.takeover_port(f, c)?),
            signature: None,
        };
        spec.signature = Some(self.signer.spec_signature(&spec.signed_message()));
        Ok(spec)
    }
}

/// How the home streams from the new primary: its host and port, as the
/// user of the cell's `primary_conninfo` (default `postgres`; the password
/// from a passfile on the home's host).
pub fn failback_conninfo(cell: &CellPlan, host: &str, port: u16) -> String {
    let user = cell
        .failover
        .primary_conninfo
        .as_deref()
        .and_then(|c| c.parse::<tokio_postgres::Config>().ok())
        .and_then(|c| c.get_user().map(str::to_string))
        .unwrap_or_else(|| "postgres".into());
    format!("host={host} port={port} user={user} application_name={}-home", cell.name)
}
