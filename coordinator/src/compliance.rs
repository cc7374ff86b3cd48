//! Compliance: for every cell and each of its plan locations, how far
//! Postgres and Kafka can be recovered from there, the RPO exposure that
//! leaves now (now minus the recoverable point), and a verdict against the
//! tier's target: `ok`, `at-risk` (over 80 % of the target, or the agent
//! has not answered lately), `breached` (over the target, or nothing
//! recoverable there). The points come from the agents' `/v1/recovery`
//! (read from the repositories themselves); when an agent stops answering,
//! the last points it gave keep ageing, so exposure grows on its own.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::plan::{CellPlan, Plan, Role};

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

    fn of(exposure: Option<f64>, target: f64) -> Verdict {
        Verdict::grade(exposure, AT_RISK * target, target)
    }
}

/// One system (Postgres or Kafka) at one location.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Point {
    pub recoverable_to: Option<String>,
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
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Age {
    pub id: Option<String>,
    pub finished: Option<String>,
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
    pub agent_seen: Option<String>,
    pub agent_problem: Option<String>,
    pub locations: Vec<LocationStatus>,
    pub last_full: Option<Age>,
    pub last_incremental: Option<Age>,
    pub last_snapshot: Option<Age>,
    /// Drills arrive with the drill milestone.
    pub last_drill: Option<Age>,
    pub verdict: Verdict,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Status {
    pub plan: String,
    pub computed_at: String,
    pub cells: Vec<CellStatus>,
    pub verdict: Verdict,
}

fn time_of(v: &Value) -> Option<DateTime<Utc>> {
    v.as_str().and_then(|s| DateTime::parse_from_rfc3339(s).ok()).map(|t| t.with_timezone(&Utc))
}

fn seconds(d: chrono::Duration) -> f64 {
    d.num_milliseconds() as f64 / 1000.0
}

fn point(recoverable_to: &Value, target: Duration, now: DateTime<Utc>) -> Point {
    let t = time_of(recoverable_to);
    let exposure = t.map(|t| seconds(now - t).max(0.0));
    let target_seconds = target.as_secs_f64();
    Point { recoverable_to: t.map(crate::store::ts), exposure_seconds: exposure, target_seconds, verdict: Verdict::of(exposure, target_seconds) }
}

/// The age of a backup against the longest gap its schedule allows (twice
/// that gap is "at risk", three times "breached").
fn age(id: &Value, finished: &Value, schedule: &str, now: DateTime<Utc>) -> Age {
    let finished = time_of(finished);
    let age = finished.map(|f| seconds(now - f).max(0.0));
    let gap = crate::plan::schedule::parse(schedule)
        .ok()
        .and_then(|c| crate::plan::schedule::longest_gap(&c, now))
        .map(|g| g.as_secs_f64())
        .unwrap_or(86400.0);
    let verdict = Verdict::grade(age, 2.0 * gap, 3.0 * gap);
    Age { id: id.as_str().map(str::to_string), finished: finished.map(crate::store::ts), age_seconds: age, verdict }
}

/// The status of one cell from the agent's last recovery answer (`None`:
/// never reached), when it was read, and whether the latest attempt failed.
pub fn cell_status(
    plan: &Plan,
    cell: &CellPlan,
    recovery: Option<(DateTime<Utc>, &Value)>,
    agent_problem: Option<String>,
    now: DateTime<Utc>,
) -> CellStatus {
    let tier = plan.tiers.iter().find(|t| t.name == cell.tier).expect("validated plans name known tiers");
    let empty = Value::Null;
    let body = recovery.map(|(_, b)| b).unwrap_or(&empty);
    let reported = body["locations"].as_array().cloned().unwrap_or_default();
    let mut locations = Vec::new();
    for name in &cell.locations {
        let def = plan.locations.iter().find(|l| &l.name == name).expect("validated plans name known locations");
        // The agent calls its own repository "primary"; copies by plan name.
        let agent_name = if def.role == Role::Primary { "primary" } else { name.as_str() };
        let found = reported.iter().find(|l| l["location"] == agent_name);
        let mut status = LocationStatus {
            location: name.clone(),
            role: def.role,
            postgres: None,
            kafka: None,
            copy_lag_seconds: None,
            problem: None,
        };
        match found {
            None if recovery.is_none() => status.problem = Some("the agent has not answered yet".into()),
            None => status.problem = Some(format!("the agent does not copy to `{name}` (start it with --copy-to {name}=URL)")),
            Some(l) => {
                if cell.postgres {
                    status.postgres = Some(point(&l["postgres"]["recoverable_to"], tier.rpo, now));
                }
                if cell.kafka_topics.is_some() {
                    status.kafka = Some(point(&l["kafka"]["recoverable_to"], tier.kafka_rpo, now));
                }
                status.copy_lag_seconds = time_of(&l["copied_through"]).map(|t| seconds(now - t).max(0.0));
                status.problem = l["error"].as_str().map(str::to_string);
            }
        }
        if status.problem.is_some() || found.is_none() {
            // Nothing verified there that we can see: it counts as nothing recoverable.
            if cell.postgres && status.postgres.is_none() {
                status.postgres = Some(point(&Value::Null, tier.rpo, now));
            }
            if cell.kafka_topics.is_some() && status.kafka.is_none() {
                status.kafka = Some(point(&Value::Null, tier.kafka_rpo, now));
            }
        }
        locations.push(status);
    }
    let primary = reported.iter().find(|l| l["location"] == "primary").cloned().unwrap_or(Value::Null);
    let pg = &primary["postgres"];
    let (last_full, last_incremental) = if cell.postgres {
        (
            Some(age(&pg["last_full"]["id"], &pg["last_full"]["finished"], &cell.schedules.pg_full, now)),
            Some(age(&pg["last_incremental"]["id"], &pg["last_incremental"]["finished"], &cell.schedules.pg_incremental, now)),
        )
    } else {
        (None, None)
    };
    let last_snapshot = cell.kafka_topics.as_ref().map(|_| {
        let k = &primary["kafka"];
        age(&k["last_snapshot"], &k["recoverable_to"], &cell.schedules.kafka_snapshot, now)
    });
    let mut verdict = locations
        .iter()
        .flat_map(|l| [l.postgres.as_ref(), l.kafka.as_ref()])
        .flatten()
        .map(|p| p.verdict)
        .chain([&last_full, &last_snapshot].into_iter().flatten().map(|a| a.verdict))
        .max()
        .unwrap_or(Verdict::Ok);
    if agent_problem.is_some() {
        verdict = verdict.max(Verdict::AtRisk);
    }
    CellStatus {
        cell: cell.name.clone(),
        tier: tier.name.clone(),
        rpo_seconds: tier.rpo.as_secs_f64(),
        kafka_rpo_seconds: tier.kafka_rpo.as_secs_f64(),
        rto_seconds: tier.rto.as_secs_f64(),
        agent_seen: recovery.map(|(t, _)| crate::store::ts(t)),
        agent_problem,
        locations,
        last_full,
        last_incremental,
        last_snapshot,
        last_drill: None,
        verdict,
    }
}

/// The status of every cell of `plan` now. `read` gives, per cell, the
/// agent's last recovery answer with when it was read, and why the latest
/// attempt to read it failed (if it did).
pub fn status(
    plan: &Plan,
    now: DateTime<Utc>,
    mut read: impl FnMut(&CellPlan) -> anyhow::Result<(Option<(DateTime<Utc>, Value)>, Option<String>)>,
) -> anyhow::Result<Status> {
    let mut cells = Vec::new();
    for cell in &plan.cells {
        let (recovery, problem) = read(cell)?;
        cells.push(cell_status(plan, cell, recovery.as_ref().map(|(t, b)| (*t, b)), problem, now));
    }
    let verdict = cells.iter().map(|c| c.verdict).max().unwrap_or(Verdict::Ok);
    Ok(Status { plan: plan.name.clone(), computed_at: crate::store::ts(now), cells, verdict })
}

/// A duration for people: 42s, 17m, 3.5h, 2.0d ("-" for none).
pub fn human(seconds: Option<f64>) -> String {
    match seconds {
        None => "-".to_string(),
        Some(s) if s.is_infinite() => "never".to_string(),
        Some(s) if s < 120.0 => format!("{s:.0}s"),
        Some(s) if s < 7200.0 => format!("{:.0}m", s / 60.0),
        Some(s) if s < 172800.0 => format!("{:.1}h", s / 3600.0),
        Some(s) => format!("{:.1}d", s / 86400.0),
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
    let mut out = format!("plan {} at {}: {}\n", status.plan, status.computed_at, status.verdict.as_str());
    let _ = writeln!(out, "{:<12} {:<16} {:<17} {:<26} {:<26} {:<8}", "CELL", "LOCATION", "ROLE", "POSTGRES exposure/RPO", "KAFKA exposure/RPO", "COPY LAG");
    for c in &status.cells {
        for l in &c.locations {
            let role = l.role.as_str();
            let _ = writeln!(out, "{:<12} {:<16} {:<17} {:<26} {:<26} {:<8}", c.cell, l.location, role, p(&l.postgres), p(&l.kafka), d(l.copy_lag_seconds));
            if let Some(problem) = &l.problem {
                let _ = writeln!(out, "{:<12}   ! {problem}", "");
            }
        }
        let a = |x: &Option<Age>| match x {
            None => "-".to_string(),
            Some(Age { age_seconds: None, .. }) => "none".to_string(),
            Some(a) => format!("{} ago ({})", d(a.age_seconds), a.verdict.as_str()),
        };
        let _ = writeln!(
            out,
            "{:<12}   cell {}: last full {}, incremental {}, snapshot {}, last drill {}",
            "",
            c.verdict.as_str(),
            a(&c.last_full),
            a(&c.last_incremental),
            a(&c.last_snapshot),
            a(&c.last_drill)
        );
        if let Some(problem) = &c.agent_problem {
            let _ = writeln!(out, "{:<12}   ! agent: {problem}", "");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_by_exposure() {
        assert_eq!(Verdict::of(Some(100.0), 300.0), Verdict::Ok);
        assert_eq!(Verdict::of(Some(250.0), 300.0), Verdict::AtRisk);
        assert_eq!(Verdict::of(Some(301.0), 300.0), Verdict::Breached);
        assert_eq!(Verdict::of(None, 300.0), Verdict::Breached);
    }
}
