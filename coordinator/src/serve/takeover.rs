//! `lifeboat serve --takeover --from-location L`: a coordinator started on
//! a fresh host after the one that ran the plan was lost, usually with the
//! cloud it ran in (scenario 3). It needs nothing of the old coordinator's
//! state: at start it rebuilds what a failover needs from the repositories
//! in location `L`, read through the recovery sites that host each cell
//! there (the sites' agents survive; the cells' own agents and the plan's
//! other locations are presumed lost):
//!
//! - each cell's recoverable points in `L` (the site reads its repository
//!   and the copy marker of the last complete geo-copy pass), saved as the
//!   cell's recovery points and read again every poll while the cell's own
//!   agent does not answer;
//! - each cell's chain of signed reports in `L` (geo-copy carries it),
//!   copied under the reports directory and verified against the plan's
//!   published key;
//! - the failovers whose journals are mirrored in `L` and that this state
//!   does not know, imported with their steps, keys and approvals, so
//!   `failover resume` or `abort` carries an unfinished one on.
//!
//! `GET /v1/takeover` serves what it found. The plan's other locations are
//! shown lost in the status and count in no verdict; a cell's own agent is
//! shown lost while it does not answer. Nothing here changes a repository.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use futures::future::join_all;
use serde::Serialize;
use time::OffsetDateTime;

use lifeboat_api::Recovery;
use lifeboat_client::AgentClient;

use super::Coordinator;
use crate::clock;
use crate::failover::journal::Journal;
use crate::failover::mirror::Mirrored;
use crate::plan::{CellPlan, Plan};
use crate::report::keys::Verifier;

/// The location a coordinator took over from, and what it found there.
pub struct Takeover {
    pub from: String,
    /// The digest of the plan this coordinator runs (`plan store`).
    pub plan_sha256: Option<String>,
    /// Where the cells' report chains are copied and verified.
    pub reports: PathBuf,
    found: Mutex<Found>,
}

/// What the takeover found, as `GET /v1/takeover` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Found {
    pub from_location: String,
    /// The plan's other locations: presumed lost.
    pub lost_locations: Vec<String>,
    #[serde(with = "clock::ms::option")]
    pub rebuilt_at: Option<OffsetDateTime>,
    pub cells: Vec<CellFound>,
    /// The digest of the plan this coordinator runs, to compare with each cell's stored plan.
    pub plan_sha256: Option<String>,
    /// Failovers read back from their mirrored journals and imported.
    pub imported_failovers: Vec<String>,
}

/// One cell as found in the location taken over from.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CellFound {
    pub cell: String,
    /// The recovery site that read it.
    pub site: Option<String>,
    /// Its own agent did not answer.
    pub agent_lost: bool,
    #[serde(with = "clock::ms::option")]
    pub postgres_point: Option<OffsetDateTime>,
    #[serde(with = "clock::ms::option")]
    pub kafka_point: Option<OffsetDateTime>,
    /// When the last complete geo-copy pass into the location finished.
    #[serde(with = "clock::ms::option")]
    pub copied_through: Option<OffsetDateTime>,
    /// Reports in its chain there (JSON), and the newest one's sequence.
    pub reports: usize,
    pub newest_sequence: Option<u64>,
    /// Signatures and links checked, and nothing wrong.
    pub chain_verified: bool,
    pub chain_problems: Vec<String>,
    /// The newest plan stored with the cell's repository there.
    pub stored_plan: Option<PlanFound>,
    /// What could not be read.
    pub problems: Vec<String>,
}

/// The newest plan a cell's repository holds in the location taken over from.
#[derive(Debug, Clone, Serialize)]
pub struct PlanFound {
    pub plan: String,
    pub sha256: String,
    #[serde(with = "clock::ms")]
    pub signed_at: OffsetDateTime,
    /// Signed with the plan key, and its files have its digest.
    pub verified: bool,
    /// It is the plan this coordinator runs.
    pub running: bool,
}

impl Takeover {
    pub fn new(plan: &Plan, dir: &Path, from: &str, reports: PathBuf) -> Result<Takeover> {
        anyhow::ensure!(
            plan.locations.iter().any(|l| l.name == from),
            "--from-location {from}: plan {} has no such location (it has: {})",
            plan.name,
            plan.locations.iter().map(|l| l.name.as_str()).collect::<Vec<_>>().join(", ")
        );
        let lost_locations = plan.locations.iter().filter(|l| l.name != from).map(|l| l.name.clone()).collect();
        let plan_sha256 = crate::plan::stored::digest(plan, dir).ok();
        let found = Found {
            from_location: from.to_string(),
            lost_locations,
            rebuilt_at: None,
            cells: vec![],
            plan_sha256: plan_sha256.clone(),
            imported_failovers: vec![],
        };
        Ok(Takeover { from: from.to_string(), plan_sha256, reports, found: Mutex::new(found) })
    }

    pub fn found(&self) -> Found {
        self.found.lock().expect("takeover findings").clone()
    }

    pub fn lost_locations(&self) -> Vec<String> {
        self.found.lock().expect("takeover findings").lost_locations.clone()
    }
}

/// The recovery site of `cell` that hosts it in location `from`, with the
/// points it read there (locations named as the plan names them).
async fn hosting_site<'p>(plan: &'p Plan, cell: &CellPlan, from: &str) -> Result<(&'p crate::plan::SiteDef, Recovery)> {
    let mut tried = Vec::new();
    for site in cell.failover.sites.iter().filter_map(|s| plan.site(s)) {
        let asked = async { anyhow::Ok(crate::serve::site_client(site)?.guest_recovery(&cell.name).await?) };
        match asked.await {
            Ok(mut r) if r.locations.iter().any(|l| l.location == from) => {
                plan.name_locations(&mut r);
                return Ok((site, r));
            }
            Ok(_) => tried.push(format!("{} does not host it in {from}", site.name)),
            Err(e) => tried.push(format!("{}: {e:#}", site.name)),
        }
    }
    anyhow::bail!("no recovery site of cell {} reads it in {from} ({})", cell.name, tried.join("; "))
}

/// Rebuild the coordinator's view from the location taken over from.
pub async fn rebuild(c: &Arc<Coordinator>) {
    let Some(t) = &c.takeover else { return };
    let key = c.plan.report_public_key.as_deref().map(Verifier::from_file).transpose();
    let key = match key {
        Ok(k) => k,
        Err(e) => {
            tracing::error!("the plan's report key: {e:#}; report chains are copied but not verified");
            None
        }
    };
    // Every cell at once (a lost agent's health check waits out its retries).
    let rebuilt = join_all(c.plan.cells.iter().map(|cell| rebuild_cell(c, t, cell, key.as_ref()))).await;
    let mut journals: BTreeMap<String, Mirrored> = BTreeMap::new();
    let mut cells = Vec::new();
    for (found, mirrored) in rebuilt {
        log_cell(&found);
        for m in mirrored {
            let newer = journals.get(&m.failover.id).is_none_or(|known| m.changed() > known.changed());
            if newer {
                journals.insert(m.failover.id.clone(), m);
            }
        }
        cells.push(found);
    }
    let imported = c
        .blocking(move |c| {
            let mut imported = Vec::new();
            for m in journals.into_values() {
                match Journal(&c.store).import(&m.failover, &m.steps, &m.approvals) {
                    Ok(true) => imported.push(m.failover.id.clone()),
                    Ok(false) => {}
                    Err(e) => tracing::error!(failover = %m.failover.id, "importing a mirrored journal: {e:#}"),
                }
            }
            imported
        })
        .await;
    for id in &imported {
        tracing::warn!(failover = %id, "imported from its mirrored journal: `lifeboat failover status {id}` shows it");
    }
    let mut found = t.found.lock().expect("takeover findings");
    found.cells = cells;
    found.imported_failovers = imported;
    found.rebuilt_at = Some(clock::now());
}

/// One cell: its points, its chain, the journals mirrored with it.
async fn rebuild_cell(c: &Arc<Coordinator>, t: &Takeover, cell: &CellPlan, key: Option<&Verifier>) -> (CellFound, Vec<Mirrored>) {
    let from = t.from.as_str();
    let mut found = CellFound { cell: cell.name.clone(), ..CellFound::default() };
    found.agent_lost = own_agent_lost(c, cell).await;
    let (site, recovery) = match hosting_site(&c.plan, cell, from).await {
        Ok(s) => s,
        Err(e) => {
            found.problems.push(format!("{e:#}"));
            return (found, vec![]);
        }
    };
    found.site = Some(site.name.clone());
    if let Some(l) = recovery.location(c.plan.agent_location_name(from)) {
        found.postgres_point = l.postgres.as_ref().and_then(|p| p.recoverable_to);
        found.kafka_point = l.kafka.as_ref().and_then(|k| k.recoverable_to);
        found.copied_through = l.copied_through;
    }
    if found.agent_lost {
        save_points(c, &cell.name, recovery).await;
    }
    let agent = match crate::serve::site_client(site) {
        Ok(a) => a.guest_reports(&cell.name, from),
        Err(e) => {
            found.problems.push(format!("{e:#}"));
            return (found, vec![]);
        }
    };
    if let Err(e) = check_chain(&agent, &t.reports.join(&cell.name), key, &mut found).await {
        found.problems.push(format!("reading the report chain: {e:#}"));
    }
    match newest_plan(&agent, key, t.plan_sha256.as_deref()).await {
        Ok(p) => found.stored_plan = p,
        Err(e) => found.problems.push(format!("reading the stored plans: {e:#}")),
    }
    let mirrored = mirrored_journals(&agent, &mut found.problems).await;
    (found, mirrored)
}

/// The cell's own agent does not answer.
async fn own_agent_lost(c: &Coordinator, cell: &CellPlan) -> bool {
    match c.agents.get(&cell.name) {
        Some(agent) => agent.health().await.is_err(),
        None => true,
    }
}

async fn save_points(c: &Arc<Coordinator>, cell: &str, recovery: Recovery) {
    let cell = cell.to_string();
    let saved = c.blocking(move |c| c.store.save_recovery(&cell, &recovery, clock::now())).await;
    if let Err(e) = saved {
        tracing::error!("saving recovery points read at a recovery site: {e:#}");
    }
}

/// Copy the chain into `dir` and verify it there.
async fn check_chain(agent: &AgentClient, dir: &Path, key: Option<&Verifier>, found: &mut CellFound) -> Result<()> {
    crate::drill::mirror_chain(agent, dir).await?;
    let loaded = crate::report::chain::load(dir)?;
    found.reports = loaded.len();
    found.newest_sequence = loaded.iter().filter_map(|(_, r)| r.as_ref().ok()).map(|r| r.chain.sequence).max();
    let Some(key) = key else {
        found.chain_problems.push("the plan publishes no report key ([plan] report_public_key): not verified".into());
        return Ok(());
    };
    found.chain_problems = crate::report::chain::verify(&loaded, key, None);
    found.chain_verified = found.chain_problems.is_empty();
    Ok(())
}

/// The newest plan stored in the scope `agent` reads, checked.
async fn newest_plan(agent: &AgentClient, key: Option<&Verifier>, running: Option<&str>) -> Result<Option<PlanFound>> {
    let Some(newest) = agent.plans().await?.into_iter().max_by_key(|p| p.signed_at) else { return Ok(None) };
    let Some(stored) = agent.plan(&newest.sha256).await? else { return Ok(None) };
    Ok(Some(PlanFound {
        verified: key.is_some_and(|k| crate::plan::stored::verifies(&stored, k)),
        running: running == Some(stored.sha256.as_str()),
        plan: stored.plan,
        sha256: stored.sha256,
        signed_at: stored.signed_at,
    }))
}

/// Every failover journal mirrored in the scope `agent` reads.
/// Each one that cannot be read is a problem of its own: the others are still imported.
async fn mirrored_journals(agent: &AgentClient, problems: &mut Vec<String>) -> Vec<Mirrored> {
    let ids = match agent.failover_journals().await {
        Ok(ids) => ids,
        Err(e) => {
            problems.push(format!("listing mirrored failover journals: {e}"));
            return vec![];
        }
    };
    let mut out = Vec::new();
    for id in ids {
        let read = async {
            let bytes = agent.failover_journal(&id).await?.context("listed, then gone")?;
            serde_json::from_slice::<Mirrored>(&bytes).context("not a journal this build reads")
        };
        match read.await {
            Ok(m) => out.push(m),
            Err(e) => problems.push(format!("the mirrored journal of failover {id}: {e:#}")),
        }
    }
    out
}

fn log_cell(f: &CellFound) {
    let point = |t: Option<OffsetDateTime>| t.map_or("none".to_string(), clock::ts);
    if f.problems.is_empty() {
        tracing::info!(
            cell = %f.cell,
            site = f.site.as_deref().unwrap_or("-"),
            agent_lost = f.agent_lost,
            postgres = %point(f.postgres_point),
            kafka = %point(f.kafka_point),
            reports = f.reports,
            chain_verified = f.chain_verified,
            "takeover: cell found"
        );
    } else {
        tracing::error!(cell = %f.cell, problems = %f.problems.join("; "), "takeover: cell not fully found");
    }
    for p in &f.chain_problems {
        tracing::error!(cell = %f.cell, "takeover: report chain: {p}");
    }
    match &f.stored_plan {
        Some(p) if !p.verified => {
            tracing::error!(cell = %f.cell, sha256 = %p.sha256, "takeover: the stored plan is not signed with the plan key")
        }
        Some(p) if !p.running => tracing::warn!(
            cell = %f.cell,
            stored = %p.sha256,
            signed_at = %clock::ts(p.signed_at),
            "takeover: the newest plan stored with the cell is not the plan this coordinator runs: check which one was in force"
        ),
        _ => {}
    }
}

/// Why a run of `cell` waits: after a takeover, its own agent does not
/// answer (None: it does, or this coordinator did not take over).
pub fn lost_agent(c: &Coordinator, cell: &str) -> Option<String> {
    let t = c.takeover.as_ref()?;
    let problems = c.agent_problems.lock().expect("agent problems");
    problems
        .get(cell)
        .cloned()
        .flatten()
        .map(|e| format!("the cell's agent is lost (takeover from {}): waits until it answers ({e})", t.from))
}

/// Every poll: read again the points of the cells whose own agent does not
/// answer, at the site that hosts them in the location taken over from.
/// Only the site that read it at the takeover is asked, every cell at once.
pub async fn refresh_points(c: &Arc<Coordinator>) {
    let Some(t) = &c.takeover else { return };
    let sites: Vec<(String, String)> = {
        let problems = c.agent_problems.lock().expect("agent problems");
        let found = t.found.lock().expect("takeover findings");
        let lost = |cell: &str| problems.get(cell).is_some_and(Option::is_some);
        found.cells.iter().filter(|f| lost(&f.cell)).filter_map(|f| Some((f.cell.clone(), f.site.clone()?))).collect()
    };
    join_all(sites.iter().map(|(cell, site)| async move {
        let asked = async {
            let site = c.plan.site(site).context("no longer in the plan")?;
            let mut r = crate::serve::site_client(site)?.guest_recovery(cell).await?;
            c.plan.name_locations(&mut r);
            anyhow::Ok(r)
        };
        match asked.await {
            Ok(recovery) => save_points(c, cell, recovery).await,
            Err(e) => tracing::warn!(%cell, %site, "takeover: reading the cell's points at its site: {e:#}"),
        }
    }))
    .await;
}
