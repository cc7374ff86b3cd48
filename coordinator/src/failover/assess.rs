//! `failover plan`: the assessment a failover starts from, computed from
//! the plan and the cells' status (the recovery points every location
//! reported, the last drills). It changes nothing; a real failover records
//! it as its first step.
//!
//! Per cell: the recovery site and the location ([`crate::plan::failover`]),
//! the newest Postgres and Kafka points that location holds, the projected
//! RPO (what would be lost if the primary is gone now: now minus each
//! point; for a cell whose standby streams, its replay lag), the estimated RTO (the last drill's demonstrated RTO; none
//! without a drill), and the wave it runs in (cells in the scenario's tier
//! order, `parallelism` at a time). Problems (a cell with no place, no
//! recovery point, a projected RPO over the tier's) are listed, not hidden.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::clock::{self, seconds_between};
use crate::compliance::{CellStatus, Status};
use crate::plan::failover::{affected, place, Placement};
use crate::plan::{Plan, ScenarioDef, Scope, Standby, Step};
use lifeboat_api::standby::StandbyStatus;

/// The standbys recovery sites keep, by cell.
pub type Standbys = BTreeMap<String, StandbyStatus>;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Assessment {
    pub scenario: String,
    pub scope: Scope,
    /// The cell, region or cloud that failed.
    pub failed: String,
    #[serde(with = "clock::ms")]
    pub computed_at: OffsetDateTime,
    pub steps: Vec<PlannedStep>,
    pub parallelism: u32,
    /// The scenario's target for all its cells.
    pub rto_target_seconds: f64,
    pub cells: Vec<CellAssessment>,
    /// What stands in the way, or will be lost beyond the targets.
    pub problems: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlannedStep {
    pub step: Step,
    /// Waits for `failover approve` before it starts.
    pub gated: bool,
    pub hook: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CellAssessment {
    pub cell: String,
    pub tier: String,
    /// Cells of the same wave fail over at once; waves go in order.
    pub wave: u32,
    pub standby: Standby,
    /// The standby kept at the site, as it reported (None: none kept there,
    /// or the site did not answer).
    #[serde(default)]
    pub standby_state: Option<StandbyStatus>,
    pub site: Option<String>,
    pub location: Option<String>,
    #[serde(with = "clock::ms::option")]
    pub postgres_point: Option<OffsetDateTime>,
    #[serde(with = "clock::ms::option")]
    pub kafka_point: Option<OffsetDateTime>,
    pub projected_rpo_seconds: Option<f64>,
    pub projected_kafka_rpo_seconds: Option<f64>,
    pub rpo_target_seconds: f64,
    pub kafka_rpo_target_seconds: f64,
    /// From the last drill's demonstrated RTO (None: never drilled here).
    pub estimated_rto_seconds: Option<f64>,
    pub rto_target_seconds: f64,
}

/// Assess `scenario` for the loss of `failed` (a cell, region or cloud
/// name, as the scenario's scope says).
pub fn assess(
    plan: &Plan,
    status: &Status,
    standbys: &Standbys,
    scenario: &str,
    failed: &str,
    now: OffsetDateTime,
) -> anyhow::Result<Assessment> {
    let s = plan.scenarios.iter().find(|s| s.name == scenario).ok_or_else(|| {
        let known: Vec<&str> = plan.scenarios.iter().map(|s| s.name.as_str()).collect();
        anyhow::anyhow!("no scenario {scenario:?} in plan {} (it has: {})", plan.name, known.join(", "))
    })?;
    let cells = affected(plan, s, failed);
    if cells.is_empty() {
        anyhow::bail!(
            "no cell is lost when {} {failed:?} fails (scenario {:?}); name a {} of the plan",
            s.scope.as_str(),
            s.name,
            s.scope.as_str()
        );
    }
    let (placements, mut problems) = place(plan, s.scope, &cells);
    let mut out = Vec::new();
    for (n, cell) in cells.iter().enumerate() {
        let placed = placements.iter().find(|p| p.cell == cell.name);
        let st = status.cells.iter().find(|c| c.cell == cell.name);
        let mut a = cell_assessment(cell, st, placed, n as u32 / s.parallelism.max(1), now);
        // A standby is kept at the cell's first site only: placed elsewhere, the cell is restored.
        if a.site.as_deref() != cell.failover.sites.first().map(String::as_str) {
            a.standby = Standby::None;
        }
        problems.extend(with_standby(&mut a, standbys.get(&cell.name), now));
        problems.extend(cell_problems(&a, cell.postgres, cell.kafka_brokers.is_some()));
        out.push(a);
    }
    Ok(Assessment {
        scenario: s.name.clone(),
        scope: s.scope,
        failed: failed.to_string(),
        computed_at: now,
        steps: steps(s),
        parallelism: s.parallelism,
        rto_target_seconds: s.rto.as_secs_f64(),
        cells: out,
        problems,
    })
}

/// The steps in order, with their gates and hooks.
fn steps(s: &ScenarioDef) -> Vec<PlannedStep> {
    let hooks: BTreeMap<&str, &String> = s.hooks.iter().map(|(k, v)| (k.as_str(), v)).collect();
    Step::ALL
        .into_iter()
        .map(|step| PlannedStep { step, gated: s.approve.contains(&step), hook: hooks.get(step.as_str()).map(|h| h.to_string()) })
        .collect()
}

fn cell_assessment(
    cell: &crate::plan::CellPlan,
    st: Option<&CellStatus>,
    placed: Option<&Placement>,
    wave: u32,
    now: OffsetDateTime,
) -> CellAssessment {
    let location = placed.map(|p| p.location.clone());
    let at = st.and_then(|st| st.locations.iter().find(|l| Some(&l.location) == location.as_ref()));
    let postgres_point = at.and_then(|l| l.postgres.as_ref()).and_then(|p| p.recoverable_to);
    let kafka_point = at.and_then(|l| l.kafka.as_ref()).and_then(|p| p.recoverable_to);
    let age = |t: Option<OffsetDateTime>| t.map(|t| seconds_between(t, now).max(0.0));
    CellAssessment {
        cell: cell.name.clone(),
        tier: cell.tier.clone(),
        wave,
        standby: cell.failover.standby,
        standby_state: None,
        site: placed.map(|p| p.site.clone()),
        location,
        postgres_point,
        kafka_point,
        projected_rpo_seconds: age(postgres_point),
        projected_kafka_rpo_seconds: age(kafka_point),
        rpo_target_seconds: st.map_or(0.0, |s| s.rpo_seconds),
        kafka_rpo_target_seconds: st.map_or(0.0, |s| s.kafka_rpo_seconds),
        estimated_rto_seconds: st.and_then(|s| s.drills.as_ref()).and_then(|d| d.rto_seconds),
        rto_target_seconds: st.map_or(0.0, |s| s.rto_seconds),
    }
}

/// A standby kept at the cell's site: promoted instead of a restore, and
/// what it lacks is the projected loss (its replay lag while it streams;
/// otherwise since the last transaction it replayed, when that is newer
/// than the archive's point). The problem, when the plan keeps one and the
/// site has none that runs.
fn with_standby(a: &mut CellAssessment, kept: Option<&StandbyStatus>, now: OffsetDateTime) -> Option<String> {
    if a.standby == Standby::None {
        return None;
    }
    let site = a.site.clone().unwrap_or_default();
    let Some(kept) = kept.filter(|k| k.state.running && k.state.in_recovery) else {
        return Some(format!(
            "cell {:?}: no {} standby runs at {site}; the failover restores from the repository instead (slower); `lifeboat standby ensure` keeps one",
            a.cell,
            a.standby.as_str()
        ));
    };
    let replayed = kept.state.last_replayed_transaction.as_deref().and_then(lifeboat_api::drill::pg_time);
    if let Some(lag) = kept.state.replay_lag_seconds.or_else(|| replayed.map(|t| seconds_between(t, now).max(0.0))) {
        a.projected_rpo_seconds = Some(a.projected_rpo_seconds.map_or(lag, |p| p.min(lag)));
    }
    a.standby_state = Some(kept.clone());
    None
}

/// What an operator must know before running it: no recovery point, or
/// more lost than the tier allows.
fn cell_problems(a: &CellAssessment, postgres: bool, kafka: bool) -> Vec<String> {
    let mut out = Vec::new();
    let Some(location) = &a.location else { return out };
    let over = |projected: Option<f64>, target: f64, what: &str| match projected {
        None => Some(format!("cell {:?}: {location} holds no {what} recovery point", a.cell)),
        Some(p) if p > target => Some(format!(
            "cell {:?}: restoring {what} from {location} loses about {} (tier {} allows {})",
            a.cell,
            crate::compliance::human(Some(p)),
            a.tier,
            crate::compliance::human(Some(target))
        )),
        Some(_) => None,
    };
    if postgres {
        out.extend(over(a.projected_rpo_seconds, a.rpo_target_seconds, "Postgres"));
    }
    if kafka {
        out.extend(over(a.projected_kafka_rpo_seconds, a.kafka_rpo_target_seconds, "Kafka"));
    }
    out
}

fn standby_column(c: &CellAssessment) -> String {
    match c.standby_state.as_ref().map(|s| &s.state) {
        Some(s) if s.streaming => format!("{} lag {}", c.standby.as_str(), crate::compliance::human(s.replay_lag_seconds)),
        Some(_) => format!("{} kept", c.standby.as_str()),
        None if c.standby == Standby::None => "none".into(),
        None => format!("{} MISSING", c.standby.as_str()),
    }
}

/// The assessment for people.
pub fn render(a: &Assessment) -> String {
    use std::fmt::Write as _;
    let h = crate::compliance::human;
    let mut out = format!(
        "failover plan: scenario {} ({} {} failed), {} cell(s), {} at a time, target {}\n",
        a.scenario,
        a.scope.as_str(),
        a.failed,
        a.cells.len(),
        a.parallelism,
        h(Some(a.rto_target_seconds))
    );
    let steps: Vec<String> = a
        .steps
        .iter()
        .map(|s| {
            let gate = if s.gated { " [approve]" } else { "" };
            let hook = s.hook.as_ref().map(|h| format!(" (hook {h})")).unwrap_or_default();
            format!("{}{gate}{hook}", s.step.as_str())
        })
        .collect();
    let _ = writeln!(out, "steps: {}", steps.join(" -> "));
    let _ = writeln!(
        out,
        "{:<5} {:<10} {:<8} {:<16} {:<14} {:<18} {:<16} {:<16} {:<10}",
        "WAVE", "CELL", "TIER", "STANDBY", "SITE", "FROM", "LOSES PG/RPO", "LOSES KAFKA/RPO", "RTO EST/TARGET"
    );
    for c in &a.cells {
        let _ = writeln!(
            out,
            "{:<5} {:<10} {:<8} {:<16} {:<14} {:<18} {:<16} {:<16} {:<10}",
            c.wave + 1,
            c.cell,
            c.tier,
            standby_column(c),
            c.site.as_deref().unwrap_or("-"),
            c.location.as_deref().unwrap_or("-"),
            format!("{}/{}", h(c.projected_rpo_seconds), h(Some(c.rpo_target_seconds))),
            format!("{}/{}", h(c.projected_kafka_rpo_seconds), h(Some(c.kafka_rpo_target_seconds))),
            format!("{}/{}", h(c.estimated_rto_seconds), h(Some(c.rto_target_seconds))),
        );
    }
    for p in &a.problems {
        let _ = writeln!(out, "problem: {p}");
    }
    out
}
