//! Keeping the plan's standbys while the coordinator runs: every
//! `--standby-interval`, each cell whose plan keeps a standby is looked up
//! at its first recovery site (a read: the guest's recovery points carry
//! it); only a standby that is missing, stopped or no longer a standby
//! gets a `standby` job (bootstrap or start), so the site's job history
//! holds repairs, not a job per pass. A cell that failed over (a failover
//! other than a test, not aborted) is left alone: its standby became its
//! primary, and a new one comes with re-protecting it.

use std::collections::BTreeSet;
use std::sync::Arc;

use lifeboat_api::standby::StandbyStatus;

use super::Coordinator;
use crate::failover::journal::{FailoverState, Journal};
use crate::failover::standby::ensure;
use crate::plan::{CellPlan, Standby};

/// The cells a failover moved: no standby is kept for them.
fn failed_over(c: &Coordinator) -> anyhow::Result<BTreeSet<String>> {
    let all = Journal(&c.store).list()?;
    let moved = all.into_iter().filter(|f| !f.test && f.state != FailoverState::Aborted);
    Ok(moved.flat_map(|f| f.assessment.cells.into_iter().map(|a| a.cell)).collect())
}

/// Whether a standby as its site reports it needs no job.
fn healthy(s: Option<&StandbyStatus>) -> bool {
    s.is_some_and(|s| s.state.running && s.state.in_recovery)
}

async fn reported(c: &Coordinator, cell: &CellPlan) -> anyhow::Result<Option<StandbyStatus>> {
    let site = cell.failover.sites.first().and_then(|s| c.plan.site(s)).ok_or_else(|| anyhow::anyhow!("no recovery site"))?;
    Ok(super::site_client(site)?.guest_recovery(&cell.name).await?.standby)
}

/// One pass over the plan's standbys.
pub async fn keep(c: &Arc<Coordinator>) {
    let Some(signer) = &c.cfg.signer else { return };
    let skip = match c.blocking(failed_over).await {
        Ok(s) => s,
        Err(e) => return tracing::error!("standbys: reading the failover journal: {e:#}"),
    };
    let cells = c.plan.cells.iter().filter(|cell| cell.failover.standby != Standby::None && !skip.contains(&cell.name));
    for cell in cells {
        match reported(c, cell).await {
            Ok(s) if healthy(s.as_ref()) => continue,
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(cell = %cell.name, "standbys: the recovery site did not report the standby: {e:#}");
                continue;
            }
        }
        let key = lifeboat_process::stamped_id("lifeboat-standby", crate::clock::now(), rand::random());
        let kept = ensure(&c.plan, cell, signer, &format!("{key}-{}", cell.name)).await;
        match (&kept.standby, &kept.error) {
            (Some(s), _) => tracing::info!(cell = %cell.name, port = s.port, action = %s.action, "standby kept"),
            (None, e) => tracing::error!(cell = %cell.name, error = e.as_deref().unwrap_or_default(), "standby could not be kept"),
        }
    }
}
