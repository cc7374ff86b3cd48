//! The standbys the plan keeps: for each cell whose `[cell.failover]`
//! standby is `stream` or `archive`, one at its first recovery site, on the
//! port its takeover would use there ([`Plan::guest_port`]), so that a
//! failover promotes it in place. A `stream` standby bootstraps from the
//! cell's primary location and streams from the primary; an `archive`
//! standby bootstraps from and replays the location a region's loss leaves
//! (the secondary-region copy). The spec is signed with the plan key: the
//! site's agent keeps only what the plan asked for.

use anyhow::{Context, Result};
use serde::Serialize;

use lifeboat_api::standby::{StandbyMode, StandbySpec, StandbyStatus};
use lifeboat_api::{ChecksSignature, JobResult, JobSpec};

use crate::plan::failover::source_location;
use crate::plan::{CellPlan, Plan, Scope, SiteDef, Standby};
use crate::report::keys::Signer;

/// Where `cell`'s standby is kept and the signed spec the site's agent runs.
pub fn spec<'a>(plan: &'a Plan, cell: &CellPlan, signer: &Signer) -> Result<(&'a SiteDef, StandbySpec)> {
    let (mode, scope) = match cell.failover.standby {
        Standby::Stream => (StandbyMode::Stream, Scope::Cell),
        Standby::Archive => (StandbyMode::Archive, Scope::Region),
        Standby::None => anyhow::bail!("cell {} keeps no standby (its [cell.failover] standby is \"none\")", cell.name),
    };
    let site =
        cell.failover.sites.first().and_then(|s| plan.site(s)).with_context(|| format!("cell {} lists no recovery site", cell.name))?;
    let port = plan.guest_port(site, &cell.name).with_context(|| format!("cell {} has no port at site {}", cell.name, site.name))?;
    let location = source_location(plan, scope, cell)
        .with_context(|| format!("cell {} has no location a {} standby can replay from", cell.name, mode.as_str()))?;
    let mut spec = StandbySpec {
        cell: cell.name.clone(),
        location: location.to_string(),
        port,
        mode,
        primary_conninfo: cell.failover.primary_conninfo.clone().filter(|_| mode == StandbyMode::Stream),
        signature: None,
    };
    spec.signature = Some(ChecksSignature { key_id: signer.key_id.clone(), signature: signer.sign(&spec.signed_message()) });
    Ok((site, spec))
}

/// One cell's standby after [`ensure`].
#[derive(Debug, Serialize)]
pub struct Kept {
    pub cell: String,
    pub site: Option<String>,
    pub standby: Option<StandbyStatus>,
    pub error: Option<String>,
}

/// Have the site keep `cell`'s standby (bootstrap, start or find it), and
/// wait for the job.
pub async fn ensure(plan: &Plan, cell: &CellPlan, signer: &Signer, key: &str) -> Kept {
    let mut kept = Kept { cell: cell.name.clone(), site: None, standby: None, error: None };
    let done = async {
        let (site, spec) = spec(plan, cell, signer)?;
        kept.site = Some(site.name.clone());
        let job = super::engine::site_job(site, key, &JobSpec::Standby(spec)).await?;
        match job.result {
            Some(JobResult::Standby(status)) => Ok(*status),
            _ => anyhow::bail!("the standby job on {} failed: {}", site.name, job.error.unwrap_or_default()),
        }
    };
    match done.await {
        Ok(status) => kept.standby = Some(status),
        Err(e) => kept.error = Some(format!("{e:#}")),
    }
    kept
}
