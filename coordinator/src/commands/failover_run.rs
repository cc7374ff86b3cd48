//! `lifeboat failover run | approve | resume | abort | status | list`: the
//! journaled failover (see `crate::failover::engine`), driven from this
//! process with the coordinator's state database (`--state`), the plan
//! (`--plans`) and the key that signs smoke checks (`--signing-key`).
//!
//! `run` assesses, journals and starts; each command then carries the
//! failover as far as it goes (a gate stops it: `approve` records the
//! approval and goes on; a crash or a failed step: `resume` goes on under
//! the same idempotency keys). One process drives a failover at a time (a
//! lock beside the state database).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;
use serde::Serialize;
use time::OffsetDateTime;

use super::Done;
use crate::clock;
use crate::failover::assess::{self, Assessment};
use crate::failover::engine::Engine;
use crate::failover::journal::{Approval, Failover, FailoverState, Journal, StepRecord, StepState};
use crate::serve::load_plan;
use crate::store::Store;

/// Where a failover is journaled and what drives it.
#[derive(Debug, Args)]
pub struct Driver {
    /// The coordinator's state database (the failover journal is in it).
    #[arg(long, env = "LIFEBOAT_STATE")]
    state: PathBuf,
    /// The plan directory.
    #[arg(long, env = "LIFEBOAT_PLANS")]
    plans: PathBuf,
    /// The report signing key: smoke checks sent to recovery sites and the failover reports are signed with it.
    #[arg(long, env = "LIFEBOAT_REPORT_SIGNING_KEY")]
    signing_key: PathBuf,
    /// Also keep each cell's chain of reports (JSON and HTML) under DIR/<cell>/.
    #[arg(long)]
    reports: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[arg(long)]
    scenario: String,
    /// What failed: a cell, a region or a cloud, as the scenario's scope says.
    #[arg(long)]
    failed: String,
    /// Show what would be done and stop: nothing is journaled or changed.
    #[arg(long)]
    dry_run: bool,
    /// The quarterly test: restore every cell at its site into throw-away
    /// names with its smoke checks, then remove it; no fence, no route.
    #[arg(long)]
    test: bool,
    /// Who runs it (default: $USER).
    #[arg(long)]
    by: Option<String>,
    /// When the failure happened (RFC 3339; default: now): the report's
    /// RPO is what was lost before it.
    #[arg(long)]
    failed_at: Option<String>,
    #[command(flatten)]
    driver: Driver,
}

/// A failover as `status` shows it.
#[derive(Debug, Serialize)]
pub struct View {
    pub failover: Failover,
    pub approvals: Vec<Approval>,
    pub steps: Vec<StepRecord>,
    pub cells: Vec<CellMeasure>,
    /// What to type next.
    pub next: Option<String>,
}

/// What the journal shows of one cell so far.
#[derive(Debug, Serialize)]
pub struct CellMeasure {
    pub cell: String,
    pub site: Option<String>,
    /// From the failover's start to the cell's last step (gates included).
    pub rto_seconds: Option<f64>,
    /// The Postgres server a takeover left running (`host:port` on the site).
    pub postgres_port: Option<u16>,
    /// The last transaction the new primary replayed: everything committed
    /// after it on the old primary is lost.
    pub last_transaction: Option<String>,
    pub kafka_records: Option<u64>,
}

/// The lock that keeps two processes from driving one failover.
fn lock(state: &Path, id: &str) -> Result<std::fs::File> {
    let path = PathBuf::from(format!("{}.failover-{id}.lock", state.display()));
    match lifeboat_process::try_lock_file(&path).with_context(|| format!("opening {}", path.display()))? {
        Some(file) => Ok(file),
        None => bail!(
            "failover {id} is being carried out by another lifeboat process (it holds {}); wait for it, or stop it first",
            path.display()
        ),
    }
}

fn initiator(by: Option<String>) -> String {
    by.unwrap_or_else(|| format!("operator {}", std::env::var("USER").unwrap_or_else(|_| "unknown".into())))
}

fn new_id(now: OffsetDateTime) -> String {
    lifeboat_process::stamped_id("fo", now, rand::random())
}

/// `failover run`: assess, journal, and carry out as far as it goes.
pub async fn run(args: RunArgs) -> Result<Done<View>> {
    let d = &args.driver;
    let plan = load_plan(&d.plans)?;
    let status = super::failover::status_for(&plan, &args.scenario, &args.failed).await?;
    let now = clock::now();
    let failed_at = match &args.failed_at {
        Some(t) => clock::parse(t).with_context(|| format!("--failed-at {t:?} is not an RFC 3339 instant"))?,
        None => now,
    };
    anyhow::ensure!(failed_at <= now, "--failed-at is in the future");
    let assessment = assess::assess(&plan, &status, &args.scenario, &args.failed, now)?;
    // A loss over the tier's RPO is shown and accepted (the primary is
    // gone); a cell with nowhere to go or nothing to restore stops it.
    let stuck =
        |c: &assess::CellAssessment| c.site.is_none() || c.location.is_none() || (c.postgres_point.is_none() && c.kafka_point.is_none());
    let blocking = if assessment.cells.iter().any(stuck) { assessment.problems.clone() } else { Vec::new() };
    if args.dry_run {
        let text = format!("{}dry run: nothing journaled, nothing changed", assess::render(&assessment));
        let f = draft(&args, assessment, (now, failed_at));
        return Ok(Done {
            ok: blocking.is_empty(),
            value: View { failover: f, approvals: vec![], steps: vec![], cells: vec![], next: None },
            text,
        });
    }
    if !blocking.is_empty() {
        bail!("this failover cannot be carried out: {}", blocking.join("; "));
    }
    let store = Store::open(&d.state)?;
    let f = draft(&args, assessment, (now, failed_at));
    let _lock = lock(&d.state, &f.id)?;
    Journal(&store).create(&f)?;
    eprintln!("{}failover {} journaled; carrying it out", assess::render(&f.assessment), f.id);
    drive(d, &store, &f.id).await
}

fn draft(args: &RunArgs, assessment: Assessment, (now, failed_at): (OffsetDateTime, OffsetDateTime)) -> Failover {
    Failover {
        id: new_id(now),
        scenario: args.scenario.clone(),
        failed: args.failed.clone(),
        test: args.test,
        state: FailoverState::Running,
        created: now,
        failed_at,
        initiator: initiator(args.by.clone()),
        assessment,
        finished: None,
        error: None,
    }
}

async fn drive(d: &Driver, store: &Store, id: &str) -> Result<Done<View>> {
    let plan = load_plan(&d.plans)?;
    let signer = crate::report::keys::Signer::from_file(&d.signing_key)?;
    crate::report::keys::check_published(plan.report_public_key.as_deref(), &plan.name, &signer)?;
    let engine = Engine { plan: &plan, store, signer: &signer, http: crate::failover::hooks::client(), export: d.reports.as_deref() };
    engine.drive(id).await?;
    view(store, id)
}

/// `failover approve ID`: record the approval of the step it waits for, and go on.
pub async fn approve(d: &Driver, id: &str, step: Option<String>, by: Option<String>) -> Result<Done<View>> {
    let store = Store::open(&d.state)?;
    let _lock = lock(&d.state, id)?;
    let f = Journal(&store).get(id)?;
    if f.state.is_final() {
        bail!("failover {id} is {}; there is nothing to approve", f.state.as_str());
    }
    let step = match step {
        Some(s) => s,
        None => waiting_for(&store, &f)?.with_context(|| format!("failover {id} waits for no approval (it is {})", f.state.as_str()))?,
    };
    if !f.assessment.steps.iter().any(|s| s.gated && s.step.as_str() == step) {
        bail!("failover {id} has no gate before step {step:?}");
    }
    Journal(&store).approve(id, &step, &initiator(by))?;
    drive(d, &store, id).await
}

/// `failover resume ID`: after a crash or a failed step, go on; failed steps are tried again under their keys.
pub async fn resume(d: &Driver, id: &str) -> Result<Done<View>> {
    let store = Store::open(&d.state)?;
    let _lock = lock(&d.state, id)?;
    let f = Journal(&store).get(id)?;
    if matches!(f.state, FailoverState::Done | FailoverState::Aborted) {
        bail!("failover {id} is {}; nothing to resume", f.state.as_str());
    }
    let again = Journal(&store).reopen_failed(id)?;
    if f.state == FailoverState::Failed {
        Journal(&store).set_state(id, FailoverState::Running, None)?;
    }
    eprintln!("resuming failover {id} ({again} failed step(s) to try again)");
    drive(d, &store, id).await
}

/// `failover abort ID`: no further step starts. What was done stays (the report says what).
pub fn abort(state: &Path, id: &str) -> Result<Done<View>> {
    let store = Store::open(state)?;
    let f = Journal(&store).get(id)?;
    if f.state.is_final() {
        bail!("failover {id} is already {}", f.state.as_str());
    }
    Journal(&store).set_state(id, FailoverState::Aborted, Some("aborted by an operator"))?;
    view(&store, id)
}

pub fn status(state: &Path, id: &str) -> Result<Done<View>> {
    view(&Store::open(state)?, id)
}

pub fn list(state: &Path) -> Result<Done<Vec<Failover>>> {
    let all = Journal(&Store::open(state)?).list()?;
    let text = all
        .iter()
        .map(|f| {
            format!(
                "{}  {:<8} {}{} ({} failed) by {}",
                f.id,
                f.state.as_str(),
                f.scenario,
                if f.test { " [test]" } else { "" },
                f.failed,
                f.initiator
            )
        })
        .collect::<Vec<_>>()
        .join("\n");
    Ok(Done::ok(all, if text.is_empty() { "no failovers journaled".into() } else { text }))
}

/// The gate a waiting failover stops at: the first gated step not approved.
fn waiting_for(store: &Store, f: &Failover) -> Result<Option<String>> {
    if f.state != FailoverState::Waiting {
        return Ok(None);
    }
    let approved = Journal(store).approvals(&f.id)?;
    Ok(f.assessment
        .steps
        .iter()
        .find(|s| s.gated && !approved.iter().any(|a| a.step == s.step.as_str()))
        .map(|s| s.step.as_str().to_string()))
}

fn view(store: &Store, id: &str) -> Result<Done<View>> {
    let j = Journal(store);
    let f = j.get(id)?;
    let steps = j.steps(id)?;
    let cells = f.assessment.cells.iter().map(|c| measure(&f, c, &steps)).collect();
    let next = match f.state {
        FailoverState::Waiting => waiting_for(store, &f)?.map(|s| format!("lifeboat failover approve {id} --step {s}")),
        FailoverState::Failed | FailoverState::Running => Some(format!("lifeboat failover resume {id}")),
        _ => None,
    };
    let v = View { approvals: j.approvals(id)?, failover: f, steps, cells, next };
    let text = render(&v);
    let ok = !matches!(v.failover.state, FailoverState::Failed | FailoverState::Aborted);
    Ok(Done { value: v, text, ok })
}

fn measure(f: &Failover, c: &assess::CellAssessment, steps: &[StepRecord]) -> CellMeasure {
    let mine: Vec<&StepRecord> = steps.iter().filter(|s| s.cell == c.cell).collect();
    let all_done = !mine.is_empty() && mine.iter().all(|s| matches!(s.state, StepState::Done | StepState::Skipped));
    let last = mine.iter().filter_map(|s| s.finished).max();
    let restore = mine.iter().find(|s| s.step == "restore").map(|s| &s.detail);
    let point = restore.map(|r| &r["recovery_point"]);
    CellMeasure {
        cell: c.cell.clone(),
        site: c.site.clone(),
        rto_seconds: last.filter(|_| all_done).map(|t| clock::seconds_between(f.created, t)),
        postgres_port: restore
            .and_then(|r| r["scratch"]["kept"].as_bool().filter(|k| *k).and(r["scratch"]["port"].as_u64()))
            .map(|p| p as u16),
        last_transaction: point.and_then(|p| p["postgres"]["last_transaction"].as_str().map(str::to_string)),
        kafka_records: point.and_then(|p| p["kafka"]["records"].as_u64()),
    }
}

fn render(v: &View) -> String {
    use std::fmt::Write as _;
    let f = &v.failover;
    let mut out = format!(
        "failover {}: {} — scenario {}{} ({} {} failed), started {} by {}\n",
        f.id,
        f.state.as_str(),
        f.scenario,
        if f.test { " [test]" } else { "" },
        f.assessment.scope.as_str(),
        f.failed,
        clock::ts(f.created),
        f.initiator
    );
    for a in &v.approvals {
        let _ = writeln!(out, "approved {} by {} at {}", a.step, a.by, clock::ts(a.at));
    }
    for s in &v.steps {
        let took = s.finished.map(|e| format!("{:.1}s", clock::seconds_between(s.started, e))).unwrap_or_else(|| "...".into());
        let error = s.error.as_ref().map(|e| format!(": {e}")).unwrap_or_default();
        let cell = if s.cell.is_empty() { "-" } else { &s.cell };
        let _ = writeln!(out, "  {:<10} {:<12} {:<8} {took:>8}{error}", cell, s.step, format!("{:?}", s.state).to_lowercase());
    }
    for c in &v.cells {
        let rto = c.rto_seconds.map_or("-".into(), |r| format!("{r:.1}s"));
        let port = c.postgres_port.map_or("-".into(), |p| p.to_string());
        let _ = writeln!(
            out,
            "cell {}: site {} rto {rto} postgres port {port} last transaction {}",
            c.cell,
            c.site.as_deref().unwrap_or("-"),
            c.last_transaction.as_deref().unwrap_or("-")
        );
    }
    if let Some(e) = &f.error {
        let _ = writeln!(out, "error: {e}");
    }
    if let Some(n) = &v.next {
        let _ = writeln!(out, "next: {n}");
    }
    out
}
