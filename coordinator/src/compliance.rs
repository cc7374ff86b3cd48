//! Compliance: for every cell and each of its plan locations, how far
//! Postgres and Kafka can be recovered from there, the RPO exposure that
//! leaves now (now minus the recoverable point), and a verdict against the
//! tier's target: `ok`, `at-risk` (over 80 % of the target, or the agent
//! has not answered lately), `breached` (over the target, or nothing
//! recoverable there). The points come from the agents' `/v1/recovery`
//! (read from the repositories themselves); when an agent stops answering,
//! the last points it gave keep ageing, so exposure grows on its own.
//!
//! Drills count too: a cell needs a passing drill within its drill
//! schedule's period (at risk past it, breached past twice it; a cell never
//! drilled gets one period from when the coordinator started watching).
//! The last drill's demonstrated RTO and RPO, and the rolling restore
//! success rate over the last 365 days (per cell and overall), are shown.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use lifeboat_api::recovery::{BackupPoint, LocationPoint, Recovery, PRIMARY};

use crate::clock::{self, seconds_between};
use crate::failover::standby::StandbyView;
use crate::plan::{CellPlan, Plan, Role};
use crate::report::Verdict as DrillVerdict;

/// Fraction of the target above which a point is "at risk".
const AT_RISK: f64 = 0.8;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    Ok,
    AtRisk,
    Breached,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Ok => "ok",
            Verdict::AtRisk => "at-risk",
            Verdict::Breached => "breached",
        }
    }

    /// `value` (an exposure or an age) against its thresholds; none at all is breached.
    fn grade(value: Option<f64>, at_risk_above: f64, breached_above: f64) -> Verdict {
        match value {
            None => Verdict::Breached,
            Some(v) if v > breached_above => Verdict::Breached,
            Some(v) if v > at_risk_above => Verdict::AtRisk,
            Some(_) => Verdict::Ok,
        }
    }

    /// An exposure against its target: at risk above 80 % of it, breached above it.
    pub fn of(exposure: Option<f64>, target: f64) -> Verdict {
        Verdict::grade(exposure, AT_RISK * target, target)
    }
}

/// One system (Postgres or Kafka) at one location.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Point {
    #[serde(with = "clock::ms::option")]
    pub recoverable_to: Option<OffsetDateTime>,
    pub exposure_seconds: Option<f64>,
    pub target_seconds: f64,
    pub verdict: Verdict,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LocationStatus {
    pub location: String,
    pub role: Role,
    pub postgres: Option<Point>,
    pub kafka: Option<Point>,
    /// Seconds since the newest complete copy pass reached this location.
    pub copy_lag_seconds: Option<f64>,
    pub problem: Option<String>,
    /// Declared lost (a coordinator that took over from another location):
    /// it counts in no verdict.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub lost: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Age {
    pub id: Option<String>,
    #[serde(with = "clock::ms::option")]
    pub finished: Option<OffsetDateTime>,
    pub age_seconds: Option<f64>,
    pub verdict: Verdict,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CellStatus {
    pub cell: String,
    pub tier: String,
    pub rpo_seconds: f64,
    pub kafka_rpo_seconds: f64,
    pub rto_seconds: f64,
    /// When the agent last answered, if ever.
    #[serde(with = "clock::ms::option")]
    pub agent_seen: Option<OffsetDateTime>,
    pub agent_problem: Option<String>,
    pub locations: Vec<LocationStatus>,
    pub last_full: Option<Age>,
    pub last_incremental: Option<Age>,
    pub last_snapshot: Option<Age>,
    /// None when drill history is not known here (status read straight from the agents).
    pub drills: Option<DrillStatus>,
    /// None when no verify has finished (or history is not known here).
    #[serde(default)]
    pub last_verify: Option<VerifyStatus>,
    /// The standby its recovery site keeps (cells whose plan keeps one, when asked).
    #[serde(default)]
    pub standby: Option<StandbyView>,
    pub verdict: Verdict,
}

/// A drill as the run history recorded it.
#[derive(Debug, Clone)]
pub struct DrillRecord {
    pub finished: OffsetDateTime,
    pub passed: bool,
    /// The signed report (None: the drill produced none).
    pub report: Option<crate::report::Report>,
}

/// What compliance needs of one cell.
pub struct CellInput {
    /// The agent's last recovery answer, with when it was read.
    pub recovery: Option<(OffsetDateTime, Recovery)>,
    /// Why the latest attempt to read it failed.
    pub problem: Option<String>,
    /// Finished drills, newest first, and since when they have been
    /// watched (None: no drill history here).
    pub drills: Option<(Vec<DrillRecord>, OffsetDateTime)>,
    /// The newest finished `repo verify` of the primary (None: none known here).
    pub verify: Option<VerifyStatus>,
    /// The standby its site keeps, for a cell whose plan keeps one (None: not asked here).
    pub standby: Option<StandbyView>,
    /// Plan locations declared lost (`serve --takeover`): shown, counted in no verdict.
    pub lost: Vec<String>,
}

/// The newest finished `repo verify` of a cell's primary location: one
/// that failed (problems found, or it could not read) makes the cell at-risk.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VerifyStatus {
    #[serde(with = "clock::ms")]
    pub finished: OffsetDateTime,
    pub passed: bool,
    /// The first line of what it reported, when it failed.
    pub problem: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DrillStatus {
    /// The newest drill: its report (file name), end, verdict and demonstrated figures.
    pub last_report: Option<String>,
    #[serde(with = "clock::ms::option")]
    pub last_finished: Option<OffsetDateTime>,
    pub last_verdict: Option<DrillVerdict>,
    pub rto_seconds: Option<f64>,
    pub rpo_seconds: Option<f64>,
    pub kafka_rpo_seconds: Option<f64>,
    /// The newest passing drill, and how long ago.
    #[serde(with = "clock::ms::option")]
    pub last_passed: Option<OffsetDateTime>,
    pub since_passed_seconds: Option<f64>,
    /// The drill schedule's longest gap.
    pub period_seconds: f64,
    /// Over the last 365 days.
    pub drills: u32,
    pub passed: u32,
    pub success_rate: Option<f64>,
    pub verdict: Verdict,
}

const YEAR_SECONDS: f64 = 365.0 * 86400.0;

fn drill_status(cell: &CellPlan, history: &[DrillRecord], watched_since: OffsetDateTime, now: OffsetDateTime) -> DrillStatus {
    let period = crate::plan::schedule::longest_gap_of(&cell.schedules.drill, now).map(|g| g.as_secs_f64()).unwrap_or(31.0 * 86400.0);
    let last = history.first();
    let report = last.and_then(|d| d.report.as_ref());
    let last_passed = history.iter().find(|d| d.passed).map(|d| d.finished);
    let reference = last_passed.unwrap_or(watched_since);
    let recent: Vec<&DrillRecord> = history.iter().filter(|d| seconds_between(d.finished, now) <= YEAR_SECONDS).collect();
    let passed = recent.iter().filter(|d| d.passed).count() as u32;
    DrillStatus {
        last_report: report.map(crate::report::Report::file_name),
        last_finished: last.map(|d| d.finished),
        last_verdict: last.map(|d| if d.passed { DrillVerdict::Passed } else { DrillVerdict::Failed }),
        rto_seconds: report.and_then(|r| r.demonstrated.rto_seconds),
        rpo_seconds: report.and_then(|r| r.demonstrated.rpo_seconds),
        kafka_rpo_seconds: report.and_then(|r| r.demonstrated.kafka_rpo_seconds),
        last_passed,
        since_passed_seconds: last_passed.map(|t| seconds_between(t, now).max(0.0)),
        period_seconds: period,
        drills: recent.len() as u32,
        passed,
        success_rate: (!recent.is_empty()).then(|| f64::from(passed) / recent.len() as f64),
        verdict: Verdict::grade(Some(seconds_between(reference, now).max(0.0)), period, 2.0 * period),
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Status {
    pub plan: String,
    #[serde(with = "clock::ms")]
    pub computed_at: OffsetDateTime,
    pub cells: Vec<CellStatus>,
    /// Passed over all drills of the last 365 days, every cell (None: no drills, or no history here).
    pub drill_success_rate: Option<f64>,
    pub verdict: Verdict,
}

fn point(recoverable_to: Option<OffsetDateTime>, target: Duration, now: OffsetDateTime) -> Point {
    let exposure = recoverable_to.map(|t| seconds_between(t, now).max(0.0));
    let target_seconds = target.as_secs_f64();
    Point { recoverable_to, exposure_seconds: exposure, target_seconds, verdict: Verdict::of(exposure, target_seconds) }
}

/// The age of a backup against the longest gap its schedule allows (twice
/// that gap is "at risk", three times "breached").
fn age(backup: Option<(&str, OffsetDateTime)>, schedule: &str, now: OffsetDateTime) -> Age {
    let finished = backup.map(|(_, t)| t);
    let age = finished.map(|f| seconds_between(f, now).max(0.0));
    let gap = crate::plan::schedule::longest_gap_of(schedule, now).map(|g| g.as_secs_f64()).unwrap_or(86400.0);
    let verdict = Verdict::grade(age, 2.0 * gap, 3.0 * gap);
    Age { id: backup.map(|(id, _)| id.to_string()), finished, age_seconds: age, verdict }
}

fn backup_age(backup: Option<&BackupPoint>, schedule: &str, now: OffsetDateTime) -> Age {
    age(backup.map(|b| (b.id.as_str(), b.finished)), schedule, now)
}

/// One plan location of a cell, from what its agent reported there
/// (`reported`: None when the agent has never answered).
fn location_status(plan: &Plan, cell: &CellPlan, name: &str, reported: Option<&Recovery>, now: OffsetDateTime) -> LocationStatus {
    let tier = plan.tier_of(cell);
    let role = plan.locations.iter().find(|l| l.name == name).expect("validated plans name known locations").role;
    let mut status = LocationStatus {
        location: name.to_string(),
        role,
        postgres: None,
        kafka: None,
        copy_lag_seconds: None,
        problem: None,
        lost: false,
    };
    let found = reported.and_then(|r| r.location(plan.agent_location_name(name)));
    match (reported, found) {
        (None, _) => status.problem = Some("the agent has not answered yet".into()),
        (Some(_), None) => status.problem = Some(format!("the agent does not copy to `{name}` (start it with --copy-to {name}=URL)")),
        (Some(_), Some(l)) => fill_location(&mut status, cell, l, tier, now),
    }
    if status.problem.is_some() {
        // Nothing verified there that we can see: it counts as nothing recoverable.
        if cell.postgres && status.postgres.is_none() {
            status.postgres = Some(point(None, tier.rpo, now));
        }
        if cell.kafka_topics.is_some() && status.kafka.is_none() {
            status.kafka = Some(point(None, tier.kafka_rpo, now));
        }
    }
    status
}

fn fill_location(status: &mut LocationStatus, cell: &CellPlan, l: &LocationPoint, tier: &crate::plan::TierTarget, now: OffsetDateTime) {
    if cell.postgres {
        status.postgres = Some(point(l.postgres.as_ref().and_then(|p| p.recoverable_to), tier.rpo, now));
    }
    if cell.kafka_topics.is_some() {
        status.kafka = Some(point(l.kafka.as_ref().and_then(|k| k.recoverable_to), tier.kafka_rpo, now));
    }
    status.copy_lag_seconds = l.copied_through.map(|t| seconds_between(t, now).max(0.0));
    status.problem = l.error.clone();
}

/// The status of one cell from the agent's last recovery answer (`None`:
/// never reached), when it was read, and whether the latest attempt failed.
pub fn cell_status(plan: &Plan, cell: &CellPlan, input: CellInput, now: OffsetDateTime) -> CellStatus {
    let CellInput { recovery, problem: agent_problem, drills, verify, standby, lost } = input;
    let tier = plan.tier_of(cell);
    let reported = recovery.as_ref().map(|(_, r)| r);
    let mut locations: Vec<LocationStatus> = cell.locations.iter().map(|name| location_status(plan, cell, name, reported, now)).collect();
    for l in locations.iter_mut().filter(|l| lost.contains(&l.location)) {
        // No point: nothing to alert on, export or judge there.
        (l.lost, l.postgres, l.kafka, l.copy_lag_seconds) = (true, None, None, None);
        l.problem = Some("lost: this coordinator took over from another location (serve --takeover)".into());
    }
    // The backups' ages are the primary's: not judged once it is lost.
    let primary_lost = locations.iter().any(|l| l.lost && l.role == Role::Primary);
    let primary = reported.and_then(|r| r.location(PRIMARY));
    let pg = primary.and_then(|p| p.postgres.as_ref());
    let s = &cell.schedules;
    let last_full = cell.postgres.then(|| backup_age(pg.and_then(|p| p.last_full.as_ref()), &s.pg_full, now));
    let last_incremental = cell.postgres.then(|| backup_age(pg.and_then(|p| p.last_incremental.as_ref()), &s.pg_incremental, now));
    let last_snapshot = cell.kafka_topics.as_ref().map(|_| {
        let k = primary.and_then(|p| p.kafka.as_ref());
        let newest = k.and_then(|k| Some((k.last_snapshot.as_deref()?, k.recoverable_to?)));
        age(newest, &s.kafka_snapshot, now)
    });
    let ages = [&last_full, &last_snapshot].into_iter().flatten().filter(|_| !primary_lost);
    let mut verdict = locations
        .iter()
        .flat_map(|l| [l.postgres.as_ref(), l.kafka.as_ref()])
        .flatten()
        .map(|p| p.verdict)
        .chain(ages.map(|a| a.verdict))
        .max()
        .unwrap_or(Verdict::Ok);
    if agent_problem.is_some() {
        verdict = verdict.max(Verdict::AtRisk);
    }
    let drills = drills.map(|(history, since)| drill_status(cell, &history, since, now));
    if let Some(d) = &drills {
        verdict = verdict.max(d.verdict);
    }
    if verify.as_ref().is_some_and(|v| !v.passed) {
        verdict = verdict.max(Verdict::AtRisk);
    }
    if let Some(s) = &standby {
        verdict = verdict.max(s.verdict);
    }
    CellStatus {
        cell: cell.name.clone(),
        tier: tier.name.clone(),
        rpo_seconds: tier.rpo.as_secs_f64(),
        kafka_rpo_seconds: tier.kafka_rpo.as_secs_f64(),
        rto_seconds: tier.rto.as_secs_f64(),
        agent_seen: recovery.as_ref().map(|(t, _)| *t),
        agent_problem,
        locations,
        last_full,
        last_incremental,
        last_snapshot,
        drills,
        last_verify: verify,
        standby,
        verdict,
    }
}

/// The status of every cell of `plan` now, from what `read` gives per cell.
pub fn status(plan: &Plan, now: OffsetDateTime, mut read: impl FnMut(&CellPlan) -> anyhow::Result<CellInput>) -> anyhow::Result<Status> {
    let mut cells = Vec::new();
    for cell in &plan.cells {
        cells.push(cell_status(plan, cell, read(cell)?, now));
    }
    let verdict = cells.iter().map(|c| c.verdict).max().unwrap_or(Verdict::Ok);
    let (drills, passed) = cells.iter().filter_map(|c| c.drills.as_ref()).fold((0, 0), |(n, p), d| (n + d.drills, p + d.passed));
    let drill_success_rate = (drills > 0).then(|| f64::from(passed) / f64::from(drills));
    Ok(Status { plan: plan.name.clone(), computed_at: now, cells, drill_success_rate, verdict })
}

/// A duration for people: 42s, 17m, 3.5h, 2.0d ("-" for none).
pub fn human(seconds: Option<f64>) -> String {
    match seconds {
        None => "-".to_string(),
        Some(s) if !s.is_finite() => "never".to_string(),
        Some(s) => lifeboat_api::duration::format_rounded(Duration::from_secs_f64(s.max(0.0).round())),
    }
}

/// A status table for people (the CLI's text output).
pub fn render(status: &Status) -> String {
    use std::fmt::Write as _;
    let d = human;
    let p = |x: &Option<Point>| match x {
        None => "-".to_string(),
        Some(p) => format!("{} / {} {}", d(p.exposure_seconds), d(Some(p.target_seconds)), p.verdict.as_str()),
    };
    let mut out = format!("plan {} at {}: {}\n", status.plan, clock::ts(status.computed_at), status.verdict.as_str());
    let _ = writeln!(
        out,
        "{:<12} {:<16} {:<17} {:<26} {:<26} {:<8}",
        "CELL", "LOCATION", "ROLE", "POSTGRES exposure/RPO", "KAFKA exposure/RPO", "COPY LAG"
    );
    for c in &status.cells {
        for l in &c.locations {
            let role = l.role.as_str();
            let point = |x: &Option<Point>| if l.lost { "lost".to_string() } else { p(x) };
            let _ = writeln!(
                out,
                "{:<12} {:<16} {:<17} {:<26} {:<26} {:<8}",
                c.cell,
                l.location,
                role,
                point(&l.postgres),
                point(&l.kafka),
                d(l.copy_lag_seconds)
            );
            if let Some(problem) = &l.problem {
                let _ = writeln!(out, "{:<12}   ! {problem}", "");
            }
        }
        let a = |x: &Option<Age>| match x {
            None => "-".to_string(),
            Some(Age { age_seconds: None, .. }) => "none".to_string(),
            Some(a) => format!("{} ago ({})", d(a.age_seconds), a.verdict.as_str()),
        };
        let drill = match &c.drills {
            None => "-".to_string(),
            Some(DrillStatus { last_finished: None, verdict, .. }) => format!("none ({})", verdict.as_str()),
            Some(dr) => format!(
                "{} {} ago, RTO {} RPO {}, {}/{} passed this year ({})",
                dr.last_verdict.map_or("?", |v| v.as_str()),
                d(dr.last_finished.map(|t| seconds_between(t, status.computed_at))),
                d(dr.rto_seconds),
                d(dr.rpo_seconds),
                dr.passed,
                dr.drills,
                dr.verdict.as_str()
            ),
        };
        let _ = writeln!(
            out,
            "{:<12}   cell {}: last full {}, incremental {}, snapshot {}, drill {}",
            "",
            c.verdict.as_str(),
            a(&c.last_full),
            a(&c.last_incremental),
            a(&c.last_snapshot),
            drill
        );
        if let Some(problem) = &c.agent_problem {
            let _ = writeln!(out, "{:<12}   ! agent: {problem}", "");
        }
        if let Some(s) = &c.standby {
            let lag = s.replay_lag_seconds.map(|l| format!(", lag {}", d(Some(l)))).unwrap_or_default();
            let state = match (&s.problem, s.streaming) {
                (Some(p), _) => format!("! {p}"),
                (None, true) => format!("streaming{lag}"),
                (None, false) => "replaying the archive".into(),
            };
            let _ = writeln!(out, "{:<12}   standby {} at {}: {state} ({})", "", s.mode.as_str(), s.site, s.verdict.as_str());
        }
        if let Some(v) = c.last_verify.as_ref().filter(|v| !v.passed) {
            let when = d(Some(seconds_between(v.finished, status.computed_at)));
            let _ = writeln!(out, "{:<12}   ! verify {when} ago failed: {}", "", v.problem.as_deref().unwrap_or("no reason given"));
        }
    }
    if let Some(rate) = status.drill_success_rate {
        let _ = writeln!(out, "restore success rate over the last 365 days: {:.1} %", rate * 100.0);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drills_are_due_within_their_period() {
        let plan = crate::plan::tests::demo_plan();
        let cell = &plan.cells[0];
        let at = |s: &str| clock::parse(s).unwrap();
        let now = at("2026-11-27T12:00:00Z");
        let period = 31.0 * 86400.0; // monthly on the 1st: the longest gap is 31 days
        let drill = |finished: &str, passed: bool| DrillRecord {
            finished: at(finished),
            passed,
            report: Some({
                let mut r = crate::report::chain::tests::report("c", 7);
                (r.report_id, r.chain.sequence) = ("r".into(), 7);
                r.demonstrated.rto_seconds = Some(42.0);
                r
            }),
        };
        // Never drilled: one period from when the coordinator started watching.
        let fresh = drill_status(cell, &[], at("2026-11-20T00:00:00Z"), now);
        assert_eq!((fresh.verdict, fresh.success_rate, fresh.period_seconds), (Verdict::Ok, None, period));
        assert_eq!(drill_status(cell, &[], at("2026-10-01T00:00:00Z"), now).verdict, Verdict::AtRisk);
        assert_eq!(drill_status(cell, &[], at("2026-08-01T00:00:00Z"), now).verdict, Verdict::Breached);
        // A newer failed drill does not hide the last passing one, and counts in the rate.
        let history = [drill("2026-11-26T03:00:00Z", false), drill("2026-11-01T03:00:00Z", true), drill("2025-01-01T03:00:00Z", true)];
        let d = drill_status(cell, &history, at("2024-01-01T00:00:00Z"), now);
        assert_eq!(d.verdict, Verdict::Ok);
        assert_eq!(d.last_verdict, Some(DrillVerdict::Failed));
        assert_eq!(d.last_passed, Some(at("2026-11-01T03:00:00Z")));
        assert_eq!((d.drills, d.passed, d.success_rate), (2, 1, Some(0.5)), "only the last 365 days count");
        assert_eq!((d.rto_seconds, d.last_report.as_deref()), (Some(42.0), Some("000007-r.json")));
        // Passing drills only long ago: at risk, then breached.
        assert_eq!(drill_status(cell, &history[1..2], at("2024-01-01T00:00:00Z"), at("2026-12-20T00:00:00Z")).verdict, Verdict::AtRisk);
        assert_eq!(drill_status(cell, &history[1..2], at("2024-01-01T00:00:00Z"), at("2027-01-20T00:00:00Z")).verdict, Verdict::Breached);
    }

    #[test]
    fn verdicts_by_exposure() {
        assert_eq!(Verdict::of(Some(100.0), 300.0), Verdict::Ok);
        assert_eq!(Verdict::of(Some(250.0), 300.0), Verdict::AtRisk);
        assert_eq!(Verdict::of(Some(301.0), 300.0), Verdict::Breached);
        assert_eq!(Verdict::of(None, 300.0), Verdict::Breached);
    }
}
