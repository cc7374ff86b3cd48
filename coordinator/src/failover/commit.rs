//! Committing a failover (`lifeboat failover commit ID`): once its new
//! primaries are confirmed, each cell's takeover is re-protected through
//! its recovery site's agent (job kind `reprotect`): it archives its WAL
//! into the location it was restored from, on its new timeline under the
//! fence the failover raised, and gets a base backup there. Until then a
//! new primary keeps its WAL in `pg_wal` and nothing of it is backed up.
//!
//! Each cell's `reprotect` step is journaled before its job, under its
//! idempotency key (a commit cut off is run again and finds the job the
//! site ran or runs); a failed one is tried again under a new key. When
//! every cell is re-protected the failover is `committed`. Re-protecting
//! is not part of the failover's RTO.

use anyhow::{ensure, Context, Result};
use futures::future::join_all;
use serde_json::Value;

use lifeboat_api::reprotect::ReprotectSpec;
use lifeboat_api::{JobResult, JobSpec};

use super::assess::CellAssessment;
use super::engine::{site_job, takeover_name, Engine};
use super::journal::{Failover, FailoverState, StepState};

/// The journal step of re-protecting a cell.
pub const STEP: &str = "reprotect";

/// Whether `f` may be committed (again): a done or committed real failover.
pub fn committable(f: &Failover) -> Result<()> {
    let id = &f.id;
    ensure!(!f.test, "failover {id} is a test: its restores were removed, there is nothing to commit");
    ensure!(
        matches!(f.state, FailoverState::Done | FailoverState::Committed),
        "failover {id} is {}: only a done failover is committed (failover status {id} says what it waits for)",
        f.state.as_str()
    );
    Ok(())
}

impl Engine<'_> {
    /// Re-protect every cell of the done failover `id` that is not yet, and
    /// mark it committed when all are. Returns it as journaled after.
    pub async fn commit(&self, id: &str) -> Result<Failover> {
        let committed = self.commit_cells(id).await;
        self.mirror(id).await;
        committed
    }

    async fn commit_cells(&self, id: &str) -> Result<Failover> {
        let f = self.journal().get(id)?;
        committable(&f)?;
        self.journal().reopen_failed(id)?;
        let ends = join_all(f.assessment.cells.iter().map(|c| self.reprotect_cell(&f, c))).await;
        let problems: Vec<String> =
            ends.iter().zip(&f.assessment.cells).filter_map(|(e, c)| e.as_ref().err().map(|e| format!("cell {}: {e:#}", c.cell))).collect();
        if problems.is_empty() {
            self.journal().commit(id)?;
        }
        let f = self.journal().get(id)?;
        ensure!(problems.is_empty(), "failover {id} is not committed: {}; run failover commit {id} again", problems.join("; "));
        Ok(f)
    }

    async fn reprotect_cell(&self, f: &Failover, c: &CellAssessment) -> Result<()> {
        self.once(f, &c.cell, STEP, |key| async move { self.reprotect(f, c, &key).await.map(Some) }).await
    }

    /// Step `step` of `cell` once: skipped when journaled done; otherwise
    /// journaled with its key (a retry's when reopened), `act` run with
    /// that key, and closed with what it returned.
    pub(super) async fn once<F>(&self, f: &Failover, cell: &str, step: &str, act: impl FnOnce(String) -> F) -> Result<()>
    where
        F: std::future::Future<Output = Result<Option<Value>>>,
    {
        if self.journal().step(&f.id, cell, step)?.is_some_and(|s| matches!(s.state, StepState::Done | StepState::Skipped)) {
            return Ok(());
        }
        match self.journaled(f, cell, step, act).await?.1 {
            Some(e) => anyhow::bail!("step {step}: {e}"),
            None => Ok(()),
        }
    }

    async fn reprotect(&self, f: &Failover, c: &CellAssessment, key: &str) -> Result<Value> {
        let (cell, site) = self.placed(c)?;
        let spec = ReprotectSpec {
            cell: cell.name.clone(),
            takeover: takeover_name(&f.id, &cell.name),
            port: self.takeover_port(f, c)?,
            location: c.location.clone().context("the cell was restored from no location")?,
        };
        let job = site_job(site, key, &JobSpec::Reprotect(spec)).await?;
        let Some(JobResult::Reprotect(done)) = job.result else {
            anyhow::bail!("re-protecting on {} failed: {}", site.name, job.error.unwrap_or_default());
        };
        Ok(serde_json::to_value(&*done)?)
    }
}
