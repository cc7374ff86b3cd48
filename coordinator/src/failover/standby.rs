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
use lifeboat_api::{JobResult, JobSpec};

use crate::plan::failover::source_location;
use crate::plan::{CellPlan, Plan, Scope, SiteDef, Standby};
use crate::report::keys::Signer;

/// Where `cell`'s standby is kept and the signed spec the site's agent runs.
pub fn spec<'a>(plan: &'a Plan, cell: &CellPlan, signer: &Signer) -> Result<(&'a SiteDef, StandbySpec)> {
    let (site, mut spec) = wanted(plan, cell)?;
    spec.signature = Some(signer.spec_signature(&spec.signed_message()));
    Ok((site, spec))
}

/// Where `cell`'s standby is kept and how, as the plan says (unsigned).
pub fn wanted<'a>(plan: &'a Plan, cell: &CellPlan) -> Result<(&'a SiteDef, StandbySpec)> {
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
    let spec = StandbySpec {
        cell: cell.name.clone(),
        location: location.to_string(),
        port,
        mode,
        primary_conninfo: cell.failover.primary_conninfo.clone().filter(|_| mode == StandbyMode::Stream),
        signature: None,
    };
    Ok((site, spec))
}

/// Whether the standby a site reports is not the one the plan wants:
/// missing, stopped, or kept with another mode, location or port (a
/// changed `primary_conninfo` is not reported, so not seen: run `lifeboat
/// standby ensure` after changing it). A standby promoted by hand runs and
/// is left alone (its status says so).
pub fn needs_job(kept: Option<&StandbyStatus>, wanted: &StandbySpec) -> bool {
    kept.is_none_or(|k| !k.state.running || k.port != wanted.port || k.location != wanted.location || k.mode != wanted.mode)
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
/// wait for the job (submitted under a new key: each call is a new job).
pub async fn ensure(plan: &Plan, cell: &CellPlan, signer: &Signer) -> Kept {
    let mut kept = Kept { cell: cell.name.clone(), site: None, standby: None, error: None };
    let key = format!("{}-{}", lifeboat_process::stamped_id("lifeboat-standby", crate::clock::now(), rand::random()), cell.name);
    let done = async {
        let (site, spec) = spec(plan, cell, signer)?;
        kept.site = Some(site.name.clone());
        let job = super::engine::site_job(site, &key, &JobSpec::Standby(spec)).await?;
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

/// `cell` as its standby's recovery site sees it: its points there and
/// the standby (`standby`).
pub async fn reported(plan: &Plan, cell: &CellPlan) -> Result<lifeboat_api::Recovery> {
    let site =
        cell.failover.sites.first().and_then(|s| plan.site(s)).with_context(|| format!("cell {} lists no recovery site", cell.name))?;
    Ok(crate::serve::site_client(site)?.guest_recovery(&cell.name).await?)
}

/// A cell's standby in its status: ready (running, still a standby),
/// streaming, its lag, and a verdict: at risk when the plan keeps one and
/// none is ready (a failover would restore from the repository, slower
/// and losing more), when a hot one does not stream, or when its lag
/// nears the tier's RPO (breached past it).
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct StandbyView {
    pub mode: Standby,
    pub site: String,
    pub ready: bool,
    pub streaming: bool,
    pub replay_lag_seconds: Option<f64>,
    pub problem: Option<String>,
    pub verdict: crate::compliance::Verdict,
}

impl StandbyView {
    /// From the site's answer: the standby, none, or why it could not say.
    pub fn of(plan: &Plan, cell: &CellPlan, answer: std::result::Result<Option<StandbyStatus>, String>) -> StandbyView {
        use crate::compliance::Verdict;
        let rpo_seconds = plan.tier_of(cell).rpo.as_secs_f64();
        let site = cell.failover.sites.first().cloned().unwrap_or_default();
        let port = wanted(plan, cell).ok().map(|(_, w)| w.port);
        let mut view = StandbyView {
            mode: cell.failover.standby,
            site,
            ready: false,
            streaming: false,
            replay_lag_seconds: None,
            problem: None,
            verdict: Verdict::AtRisk,
        };
        let s = match answer {
            Err(e) => {
                view.problem = Some(format!("the recovery site did not say: {e}"));
                return view;
            }
            Ok(None) => {
                view.problem = Some("none is kept: a failover would restore from the repository (`lifeboat standby ensure`)".into());
                return view;
            }
            Ok(Some(s)) => s,
        };
        let (kept_port, s) = (s.port, s.state);
        view.ready = s.running && s.in_recovery;
        view.streaming = s.streaming;
        view.replay_lag_seconds = s.replay_lag_seconds;
        view.problem = match (s.running, s.in_recovery) {
            _ if port.is_some_and(|p| p != kept_port) => {
                Some(format!("kept on port {kept_port}, where the plan no longer puts it (it wants {})", port.unwrap_or_default()))
            }
            (false, _) => Some(format!("not running: {}", s.problem.unwrap_or_default())),
            (true, false) => Some("no longer a standby (promoted)".into()),
            (true, true) if view.mode == Standby::Stream && !s.streaming => {
                Some("does not stream from the primary: it lags by up to the archive's age".into())
            }
            _ => None,
        };
        view.verdict = match view.problem {
            Some(_) => Verdict::AtRisk,
            // An archive standby has no lag of its own: the archive's exposure counts.
            None => s.replay_lag_seconds.map_or(Verdict::Ok, |lag| Verdict::of(Some(lag), rpo_seconds)),
        };
        view
    }
}

#[cfg(test)]
mod tests {
    use lifeboat_api::standby::{StandbyMode, StandbyState, StandbyStatus};

    use super::StandbyView;
    use crate::compliance::Verdict;

    fn kept(running: bool, in_recovery: bool, streaming: bool, lag: Option<f64>) -> StandbyStatus {
        StandbyStatus {
            cell: "demo-a".into(),
            mode: StandbyMode::Stream,
            location: "a-primary".into(),
            port: 5510,
            directory: "/x".into(),
            backup: "b".into(),
            bootstrapped_at: time::OffsetDateTime::UNIX_EPOCH,
            action: "kept".into(),
            state: StandbyState {
                checked_at: time::OffsetDateTime::UNIX_EPOCH,
                running,
                in_recovery,
                streaming,
                receive_lsn: None,
                replay_lsn: None,
                last_replayed_transaction: None,
                replay_lag_seconds: lag,
                problem: None,
            },
        }
    }

    #[test]
    fn a_hot_standby_is_judged_by_its_stream_and_lag() {
        let plan = crate::plan::tests::demo_plan();
        let cell = plan.cells.iter().find(|c| c.name == "demo-a").unwrap();
        let view = |answer| StandbyView::of(&plan, cell, answer);
        let v = view(Ok(Some(kept(true, true, true, Some(1.0)))));
        assert_eq!((v.verdict, v.ready, v.problem.as_deref()), (Verdict::Ok, true, None));
        assert_eq!(view(Ok(Some(kept(true, true, true, Some(260.0))))).verdict, Verdict::AtRisk);
        assert_eq!(view(Ok(Some(kept(true, true, true, Some(400.0))))).verdict, Verdict::Breached);
        let not_streaming = view(Ok(Some(kept(true, true, false, None))));
        assert_eq!(not_streaming.verdict, Verdict::AtRisk);
        assert!(not_streaming.problem.unwrap().contains("does not stream"));
        assert!(view(Ok(Some(kept(true, false, false, None)))).problem.unwrap().contains("promoted"));
        assert!(view(Ok(None)).problem.unwrap().contains("lifeboat standby ensure"));
        assert!(view(Err("refused".into())).problem.unwrap().contains("did not say: refused"));
    }
}
