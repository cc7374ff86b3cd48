//! Drills as the coordinator runs them: ask the cell's agent for a drill
//! job (restore into a scratch environment, smoke checks, cleanup; see
//! `lifeboat-drill`), judge its outcome against the tier's targets, sign
//! the report onto the cell's chain, and store it in the cell's repository
//! through the agent (geo-copy then carries it to every location), and, if
//! asked, mirror the cell's whole chain (JSON and HTML) into a directory.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::json;
use time::OffsetDateTime;

use lifeboat_api::{DrillOutcome, DrillSpec, DrillTarget, Job, JobResult, JobSpec, Outcome};
use lifeboat_client::{AgentClient, ReportStored, Submitted};

use crate::clock;
use crate::plan::{CellPlan, Plan, Role};
use crate::report::keys::Signer;
use crate::report::{chain, html, ChainLink, Demonstrated, Item, Report, Targets, Verdict, SCHEMA};

pub struct DrillRequest {
    pub target: DrillTarget,
    /// A location of the cell, by name or role (`primary`, `secondary`, `cross-cloud`).
    pub from_location: Option<String>,
    pub fallback_location: Option<String>,
    pub initiator: String,
}

impl DrillRequest {
    /// Scheduled (and coordinator-run) drills: a random instant of the last day, from the primary.
    pub fn scheduled(trigger: &str) -> DrillRequest {
        DrillRequest {
            target: DrillTarget::RandomRecent { within: Duration::from_secs(24 * 3600) },
            from_location: None,
            fallback_location: None,
            initiator: format!("coordinator ({trigger})"),
        }
    }
}

pub struct Drilled {
    pub report: Report,
    /// In the export directory, when one was given.
    pub json_path: Option<PathBuf>,
    pub html_path: Option<PathBuf>,
}

/// The plan location `wanted` names for `cell` (a name or a role).
fn location(plan: &Plan, cell: &CellPlan, wanted: &str) -> Result<String> {
    if cell.locations.iter().any(|l| l == wanted) {
        return Ok(wanted.to_string());
    }
    let role = match wanted {
        "primary" => Role::Primary,
        "secondary" | "secondary-region" => Role::SecondaryRegion,
        "cross-cloud" => Role::CrossCloud,
        _ => bail!(
            "cell {} has no location {wanted:?}; give one of {} or a role (primary, secondary, cross-cloud)",
            cell.name,
            cell.locations.join(", ")
        ),
    };
    cell.locations
        .iter()
        .find(|l| plan.locations.iter().any(|d| &d.name == *l && d.role == role))
        .cloned()
        .with_context(|| format!("cell {} has no {wanted} location", cell.name))
}

/// The drill job for the agent: plan location names (the agent knows its
/// copies by them), `None` for its primary; the checks signed with the plan
/// key, without which the agent runs no SQL.
fn spec(plan: &Plan, cell: &CellPlan, req: &DrillRequest, signer: &Signer) -> Result<DrillSpec> {
    let as_agent_name = |l: String| (plan.agent_location_name(&l) != crate::plan::AGENT_PRIMARY).then_some(l);
    let from = match &req.from_location {
        Some(l) => as_agent_name(location(plan, cell, l)?),
        None => None,
    };
    let fallback = match &req.fallback_location {
        Some(l) => Some(as_agent_name(location(plan, cell, l)?).context("the fallback must be another location than the primary")?),
        None => None,
    };
    if fallback.is_some() && fallback == from {
        bail!("the fallback location is the location the drill restores from");
    }
    let mut spec = signed_spec(cell, req.target.clone(), signer);
    spec.location = from;
    spec.fallback_location = fallback;
    Ok(spec)
}

/// A drill of `cell`'s systems with its smoke checks, signed with the plan
/// key, restoring from the agent's own repository.
pub fn signed_spec(cell: &CellPlan, target: DrillTarget, signer: &Signer) -> DrillSpec {
    let mut spec = DrillSpec {
        target,
        location: None,
        fallback_location: None,
        database: cell.database.clone(),
        postgres: cell.postgres,
        kafka: cell.kafka_topics.is_some(),
        checks: cell.smoke_checks.clone(),
        checks_signature: None,
        cell: None,
        takeover: None,
    };
    sign(&mut spec, &cell.name, signer);
    spec
}

/// Sign `spec` for `cell` with the plan key (again after changing it).
pub fn sign(spec: &mut DrillSpec, cell: &str, signer: &Signer) {
    spec.checks_signature = Some(signer.spec_signature(&spec.signed_message(cell)));
}

/// The agent job of a drill.
pub fn job_spec(plan: &Plan, cell: &CellPlan, req: &DrillRequest, signer: &Signer) -> Result<JobSpec> {
    Ok(JobSpec::Drill(spec(plan, cell, req, signer)?))
}

/// Run a drill of `cell` now and return its signed, stored report.
pub async fn run(
    plan: &Plan,
    cell: &CellPlan,
    agent: &AgentClient,
    req: &DrillRequest,
    signer: &Signer,
    export: Option<&Path>,
) -> Result<Drilled> {
    let spec = spec(plan, cell, req, signer)?;
    let source = spec.location.clone();
    let started = clock::now();
    let key = format!("lifeboat-drill-{}-{}-{:04x}", cell.name, started.unix_timestamp(), rand::random::<u16>());
    let job = match agent.submit(&key, &JobSpec::Drill(spec)).await? {
        Submitted::Job(job) => job,
        Submitted::Refused(reason) => bail!("the agent of cell {} refused the drill: {reason}", cell.name),
    };
    tracing::info!(cell = %cell.name, job = %job.id, "drill started on the agent");
    let job = agent.wait(&job.id, Duration::from_secs(1)).await?;
    let done = Concluding { job: &job, started, source, initiator: req.initiator.clone() };
    conclude(plan, cell, agent, &done, signer, export).await
}

/// A finished drill job and what the report needs to know about its start.
pub struct Concluding<'a> {
    /// The agent's job record (state, result, error).
    pub job: &'a Job,
    /// When the drill was asked for.
    pub started: OffsetDateTime,
    /// The plan location restored from (None: the primary).
    pub source: Option<String>,
    pub initiator: String,
}

impl Concluding<'_> {
    /// What the drill reported, if it ran.
    pub fn outcome(&self) -> Option<&DrillOutcome> {
        match &self.job.result {
            Some(JobResult::Drill(o)) => Some(o),
            _ => None,
        }
    }
}

/// Judge a finished drill job, sign its report onto the cell's chain,
/// store it, and mirror the chain into `export`.
pub async fn conclude(
    plan: &Plan,
    cell: &CellPlan,
    agent: &AgentClient,
    done: &Concluding<'_>,
    signer: &Signer,
    export: Option<&Path>,
) -> Result<Drilled> {
    let mut report = new_report(plan, cell, agent, done);
    match done.outcome() {
        Some(o) => apply_outcome(&mut report, plan, cell, o),
        None => report.steps.push(Item::new(
            "run the drill on the agent",
            Outcome::Failed,
            report.duration_seconds,
            Some(done.job.error.clone().unwrap_or_else(|| "the drill job ended without an outcome".into())),
            json!({ "agent_job": done.job.id }),
        )),
    }
    judge(&mut report, cell.postgres);
    store(agent, &mut report, signer).await?;
    let (json_path, html_path) = match export {
        Some(dir) => {
            let (j, h) = mirror(agent, &report, &dir.join(&cell.name)).await?;
            (Some(j), Some(h))
        }
        None => (None, None),
    };
    Ok(Drilled { report, json_path, html_path })
}

/// The report of a drill before its outcome is applied: who, what, when, targets.
fn new_report(plan: &Plan, cell: &CellPlan, agent: &AgentClient, done: &Concluding<'_>) -> Report {
    let tier = plan.tier_of(cell);
    let finished = clock::now();
    let kafka_target = cell.kafka_topics.as_ref().map(|_| tier.kafka_rpo.as_secs_f64());
    Report {
        schema: SCHEMA.into(),
        report_id: format!("drill-{}-{}-{:04x}", cell.name, compact(done.started), rand::random::<u16>()),
        tool_version: env!("CARGO_PKG_VERSION").into(),
        plan: plan.name.clone(),
        cell: cell.name.clone(),
        tenants: cell.tenants.clone(),
        operation: "drill".into(),
        initiator: done.initiator.clone(),
        source_location: done.source.clone().unwrap_or_else(|| plan.plan_location_name(cell, crate::plan::AGENT_PRIMARY)),
        target_environment: format!("scratch environment of the agent of cell {} ({})", cell.name, agent.url),
        started: clock::ts(done.started),
        finished: clock::ts(finished),
        duration_seconds: clock::seconds_between(done.started, finished),
        recovery_point: json!({}),
        targets: Targets { rpo_seconds: tier.rpo.as_secs_f64(), rto_seconds: tier.rto.as_secs_f64(), kafka_rpo_seconds: kafka_target },
        demonstrated: Demonstrated { rto_seconds: None, rpo_seconds: None, kafka_rpo_seconds: None },
        verdict: Verdict::Failed,
        errors: 0,
        warnings: 0,
        steps: Vec::new(),
        checks: Vec::new(),
        controls: plan.controls_for("drill"),
        chain: ChainLink { sequence: 0, previous: None },
        signature: None,
    }
}

/// `20261127t050000`: an instant in a report id.
pub(crate) fn compact(t: OffsetDateTime) -> String {
    let f = time::macros::format_description!("[year][month][day]t[hour][minute][second]");
    t.format(&f).expect("formatting an instant")
}

/// What the agent's drill showed: where it restored from and to, the
/// recovery point (in plan location names), the measured figures, every step.
fn apply_outcome(report: &mut Report, plan: &Plan, cell: &CellPlan, o: &DrillOutcome) {
    let name_of = |agent_name: &str| plan.plan_location_name(cell, agent_name);
    if let Some(f) = &o.fell_back_to {
        report.source_location = format!("{} (fell back from {})", name_of(f), name_of(&o.source_location));
    }
    report.target_environment = format!(
        "{}: Postgres on 127.0.0.1:{}, topics {}*, {}",
        report.target_environment,
        o.scratch.port,
        o.scratch.topic_prefix,
        if o.cleaned_up { "all removed after the drill" } else { "NOT all removed (see the last step)" }
    );
    let mut point = o.recovery_point.clone();
    point.location = name_of(&point.location);
    report.recovery_point = serde_json::to_value(&point).expect("recovery points serialise");
    report.recovery_point["phases"] =
        json!({ "wal_replay_seconds": o.replay_seconds, "lifeboat_seconds": o.rto_seconds - o.replay_seconds });
    report.demonstrated =
        Demonstrated { rto_seconds: Some(o.rto_seconds), rpo_seconds: o.pg_rpo_seconds, kafka_rpo_seconds: o.kafka_rpo_seconds };
    report.steps = o.steps.clone();
    report.checks = o.checks.clone();
}

/// Check the demonstrated figures against the targets, count, and decide.
pub(crate) fn judge(report: &mut Report, postgres: bool) {
    report.checks.extend(target_checks(&report.targets, &report.demonstrated, postgres));
    let all = report.steps.iter().chain(&report.checks);
    report.errors = all.clone().filter(|i| i.outcome == Outcome::Failed).count() as u32;
    report.warnings = all.filter(|i| i.outcome == Outcome::Warning).count() as u32;
    report.verdict = Verdict::of(report.errors);
}

/// The demonstrated RTO and RPOs against the tier's targets.
fn target_checks(t: &Targets, d: &Demonstrated, postgres: bool) -> Vec<Item> {
    let judge = |name: &str, target: f64, shown: Option<f64>| {
        let (outcome, message) = match shown {
            Some(v) if v <= target => (Outcome::Passed, None),
            Some(v) if v.is_finite() => (Outcome::Failed, Some(format!("{v:.1} s, over the target of {target:.0} s"))),
            _ => (Outcome::Failed, Some("not demonstrated: nothing was recovered".to_string())),
        };
        Item::new(name, outcome, 0.0, message, json!({ "target_seconds": target, "demonstrated_seconds": shown }))
    };
    let mut out = vec![judge("demonstrated RTO within the tier's target", t.rto_seconds, d.rto_seconds)];
    if postgres {
        out.push(judge("demonstrated Postgres RPO within the tier's target", t.rpo_seconds, d.rpo_seconds));
    }
    if let Some(k) = t.kafka_rpo_seconds {
        out.push(judge("demonstrated Kafka RPO within the tier's target", k, d.kafka_rpo_seconds));
    }
    out
}

/// Seal `report` after the newest stored report of its cell and store it
/// (JSON, then the HTML rendering). A concurrent drill that took the
/// sequence first makes the agent refuse; the chain is read again.
pub(crate) async fn store(agent: &AgentClient, report: &mut Report, signer: &Signer) -> Result<()> {
    let mut conflicts = Vec::new();
    for _ in 0..3 {
        let previous = newest(agent).await?;
        chain::seal(report, previous.as_ref(), signer);
        let json = serde_json::to_vec_pretty(report).expect("reports serialise");
        match agent.put_report(&report.file_name(), json).await? {
            ReportStored::Stored | ReportStored::AlreadyThere => {
                if let ReportStored::Conflict(why) = agent.put_report(&report.page_name(), html::render(report).into_bytes()).await? {
                    bail!("storing the page of report {}: {why}", report.file_name());
                }
                return Ok(());
            }
            ReportStored::Conflict(why) => conflicts.push(why),
        }
    }
    bail!("storing the report: other reports kept taking its place in the chain ({})", conflicts.join("; "))
}

/// The newest report stored for the agent's cell.
async fn newest(agent: &AgentClient) -> Result<Option<Report>> {
    let Some(name) = agent.reports().await?.into_iter().rfind(|n| n.ends_with(".json")) else { return Ok(None) };
    let bytes = agent.report(&name).await?;
    let report = serde_json::from_slice(&bytes).with_context(|| {
        format!(
            "the newest stored report of cell {}, {name}, is not a report; a new report cannot be chained to it (run `lifeboat report verify`)",
            agent.cell
        )
    })?;
    Ok(Some(report))
}

/// Make `dir` hold the cell's whole chain (JSON and HTML) as stored, so
/// that `lifeboat report verify DIR` checks it; returns this report's paths.
pub async fn mirror(agent: &AgentClient, report: &Report, dir: &Path) -> Result<(PathBuf, PathBuf)> {
    mirror_chain(agent, dir).await?;
    Ok((dir.join(report.file_name()), dir.join(report.page_name())))
}

/// Copy every report of the chain `agent` reads (JSON and HTML) that `dir`
/// lacks into it; returns how many the chain holds.
pub async fn mirror_chain(agent: &AgentClient, dir: &Path) -> Result<usize> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let names = agent.reports().await?;
    for name in &names {
        let path = dir.join(name);
        if !path.exists() {
            let bytes = agent.report(name).await?;
            let tmp = dir.join(format!(".{name}.tmp"));
            std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
            std::fs::rename(&tmp, &path)?;
        }
    }
    Ok(names.len())
}

/// The report in words, for the terminal.
pub fn render(d: &Drilled) -> String {
    let r = &d.report;
    let secs =
        |v: Option<f64>| v.map(|v| if v.is_finite() { format!("{v:.1}s") } else { "unbounded".into() }).unwrap_or_else(|| "-".into());
    let mut out = format!(
        "drill of cell {} from {}: {} ({} errors, {} warnings)\n",
        r.cell,
        r.source_location,
        r.verdict.as_str().to_uppercase(),
        r.errors,
        r.warnings
    );
    for i in r.steps.iter().chain(&r.checks) {
        out.push_str(&i.line());
    }
    out.push_str(&format!(
        "demonstrated RTO {} (target {:.0}s); RPO Postgres {} (target {:.0}s)",
        secs(r.demonstrated.rto_seconds),
        r.targets.rto_seconds,
        secs(r.demonstrated.rpo_seconds),
        r.targets.rpo_seconds
    ));
    if let Some(k) = r.targets.kafka_rpo_seconds {
        out.push_str(&format!(", Kafka {} (target {k:.0}s)", secs(r.demonstrated.kafka_rpo_seconds)));
    }
    out.push_str(&format!(
        "\nreport {} (report {} of the cell's chain, signed by key {}), stored in the cell's repository",
        r.report_id,
        r.chain.sequence,
        r.signature.as_ref().map(|s| s.key_id.as_str()).unwrap_or("?")
    ));
    if let (Some(j), Some(h)) = (&d.json_path, &d.html_path) {
        out.push_str(&format!("\n  {}\n  {}", j.display(), h.display()));
    }
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_judge_what_was_demonstrated() {
        let t = Targets { rpo_seconds: 300.0, rto_seconds: 900.0, kafka_rpo_seconds: Some(5400.0) };
        let outcome = |d: Demonstrated| target_checks(&t, &d, true).into_iter().map(|i| (i.outcome, i.message)).collect::<Vec<_>>();
        let all = outcome(Demonstrated { rto_seconds: Some(42.0), rpo_seconds: Some(0.0), kafka_rpo_seconds: Some(10.0) });
        assert!(all.iter().all(|(o, _)| *o == Outcome::Passed), "{all:?}");
        // A missing WAL segment: the RPO demonstrated is worse than the tier's.
        let late = outcome(Demonstrated { rto_seconds: Some(42.0), rpo_seconds: Some(301.5), kafka_rpo_seconds: Some(10.0) });
        assert_eq!(late[1].0, Outcome::Failed);
        assert!(late[1].1.as_deref().unwrap().contains("301.5 s, over the target of 300 s"), "{late:?}");
        // Nothing recovered at all.
        let none = outcome(Demonstrated { rto_seconds: Some(42.0), rpo_seconds: Some(f64::INFINITY), kafka_rpo_seconds: None });
        assert_eq!((none[1].0, none[2].0), (Outcome::Failed, Outcome::Failed));
        // A cell without Postgres is not judged on a Postgres RPO.
        let kafka_only =
            target_checks(&t, &Demonstrated { rto_seconds: Some(1.0), rpo_seconds: None, kafka_rpo_seconds: Some(0.0) }, false);
        assert!(kafka_only.iter().all(|i| i.outcome == Outcome::Passed && !i.name.contains("Postgres")), "{kafka_only:?}");
    }

    #[test]
    fn a_warning_does_not_fail_a_drill_but_a_failure_does() {
        let plan = crate::plan::tests::demo_plan();
        let mut report = crate::report::chain::tests::report("c", 1);
        report.steps = vec![Item::new("fall back", Outcome::Warning, 0.0, None, json!(null))];
        report.demonstrated = Demonstrated { rto_seconds: Some(1.0), rpo_seconds: Some(0.0), kafka_rpo_seconds: None };
        judge(&mut report, plan.cells[0].postgres);
        assert_eq!((report.verdict, report.errors, report.warnings), (Verdict::Passed, 0, 1));
        report.steps.push(Item::new("restore", Outcome::Failed, 0.0, None, json!(null)));
        report.checks.clear();
        judge(&mut report, true);
        assert_eq!((report.verdict, report.errors), (Verdict::Failed, 1));
    }
}
