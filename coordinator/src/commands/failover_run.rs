//! `lifeboat failover run | approve | resume | commit | abort | status | list`: the
//! journaled failover (see `crate::failover::engine`), driven from this
//! process with the coordinator's state database (`--state`), the plan
//! (`--plans`) and the key that signs smoke checks (`--signing-key`).
//!
//! `run` assesses, journals and starts; each command then carries the
//! failover as far as it goes (a gate stops it: `approve` records the
//! approval and goes on; a crash or a failed step: `resume` goes on under
//! the same idempotency keys). One process drives a failover at a time (a
//! lock beside the state database). The served coordinator's API does the
//! same through the checks here (`crate::serve::failovers`).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;
use time::OffsetDateTime;

use super::Done;
use crate::clock;
use crate::failover::assess::{self, Assessment};
use crate::failover::engine::Engine;
use crate::failover::journal::{Failover, FailoverState, Journal};
use crate::failover::view::{waiting_for, View};
use crate::plan::Plan;
use crate::report::keys::Signer;
use crate::serve::load_plan;
use crate::store::Store;

/// Where a failover is journaled and what drives it.
#[derive(Debug, Args)]
pub struct Driver {
    /// The coordinator's state database (the failover journal is in it).
    #[arg(long, env = "LIFEBOAT_STATE")]
    pub state: PathBuf,
    /// The plan directory.
    #[arg(long, env = "LIFEBOAT_PLANS")]
    pub plans: PathBuf,
    /// The report signing key: smoke checks sent to recovery sites and the failover reports are signed with it.
    #[arg(long, env = "LIFEBOAT_REPORT_SIGNING_KEY")]
    pub signing_key: PathBuf,
    /// Also keep each cell's chain of reports (JSON and HTML) under DIR/<cell>/.
    #[arg(long)]
    pub reports: Option<PathBuf>,
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

/// The lock that keeps two processes from driving one failover.
/// Lock failover `id` for this process (see [`Store::lock_failover`]).
pub fn lock(store: &Store, state: &Path, id: &str) -> Result<crate::store::FailoverLock> {
    store.lock_failover(state, id)
}

pub fn initiator(by: Option<String>) -> String {
    by.unwrap_or_else(|| format!("operator {}", std::env::var("USER").unwrap_or_else(|_| "unknown".into())))
}

fn new_id(now: OffsetDateTime) -> String {
    lifeboat_process::stamped_id("fo", now, rand::random())
}

/// The assessment of `scenario` for the loss of `failed` now, and what
/// stops it from being carried out (empty: nothing). A loss over the
/// tier's RPO is shown and accepted (the primary is gone); a cell with
/// nowhere to go or nothing to restore stops it.
pub async fn assessed(plan: &Plan, scenario: &str, failed: &str, now: OffsetDateTime) -> Result<(Assessment, Vec<String>)> {
    let status = super::failover::status_for(plan, scenario, failed).await?;
    let standbys = super::failover::standbys_for(plan, scenario, failed).await;
    let assessment = assess::assess(plan, &status, &standbys, scenario, failed, now)?;
    let stuck =
        |c: &assess::CellAssessment| c.site.is_none() || c.location.is_none() || (c.postgres_point.is_none() && c.kafka_point.is_none());
    let blocking = if assessment.cells.iter().any(stuck) { assessment.problems.clone() } else { Vec::new() };
    Ok((assessment, blocking))
}

/// When the failure happened: `given` (RFC 3339, `what` names it in an
/// error), never in the future; default now.
pub fn failed_at(given: Option<&str>, what: &str, now: OffsetDateTime) -> Result<OffsetDateTime> {
    let at = match given {
        Some(t) => clock::parse(t).with_context(|| format!("{what} {t:?} is not an RFC 3339 instant"))?,
        None => now,
    };
    anyhow::ensure!(at <= now, "{what} is in the future");
    Ok(at)
}

/// A failover ready to journal: refused when the assessment says it
/// cannot be carried out, or (not a test) another one of a cell is unfinished.
pub fn admit(store: &Store, assessment: &Assessment, blocking: &[String], test: bool) -> Result<()> {
    if !blocking.is_empty() {
        bail!("this failover cannot be carried out: {}", blocking.join("; "));
    }
    if !test {
        refuse_overlap(store, assessment)?;
    }
    Ok(())
}

/// `failover run`: assess, journal, and carry out as far as it goes.
pub async fn run(args: RunArgs) -> Result<Done<View>> {
    let d = &args.driver;
    let plan = load_plan(&d.plans)?;
    let now = clock::now();
    let failed_at = failed_at(args.failed_at.as_deref(), "--failed-at", now)?;
    let (assessment, blocking) = assessed(&plan, &args.scenario, &args.failed, now).await?;
    if args.dry_run {
        let text = format!("{}dry run: nothing journaled, nothing changed", assess::render(&assessment));
        let f = draft(&args, assessment, (now, failed_at));
        return Ok(Done {
            ok: blocking.is_empty(),
            value: View { failover: f, approvals: vec![], steps: vec![], cells: vec![], next: None },
            text,
        });
    }
    let store = Store::open(&d.state)?;
    admit(&store, &assessment, &blocking, args.test)?;
    let f = draft(&args, assessment, (now, failed_at));
    let _lock = lock(&store, &d.state, &f.id)?;
    Journal(&store).create(&f)?;
    eprintln!("{}failover {} journaled; carrying it out", assess::render(&f.assessment), f.id);
    drive(d, &store, &f.id).await
}

/// Two failovers of one cell would fence twice and call its hooks twice:
/// an unfinished one (running, waiting or failed) must be resumed or aborted first.
fn refuse_overlap(store: &Store, assessment: &Assessment) -> Result<()> {
    for other in Journal(store).list()?.into_iter().filter(Failover::unfinished) {
        // A cell failed back on its own is home: it may fail over again.
        let away = Journal(store).away(&other)?;
        let shared: Vec<&str> = assessment.cells.iter().filter(|c| away.contains(&c.cell)).map(|c| c.cell.as_str()).collect();
        if !shared.is_empty() {
            bail!(
                "failover {} ({}) is unfinished for {}; resume it (lifeboat failover resume {}) or abort it first",
                other.id,
                other.state.as_str(),
                shared.join(", "),
                other.id
            );
        }
    }
    Ok(())
}

fn draft(args: &RunArgs, assessment: Assessment, (now, failed_at): (OffsetDateTime, OffsetDateTime)) -> Failover {
    let mut f = new_failover(assessment, args.test, initiator(args.by.clone()), now);
    f.failed_at = failed_at;
    f
}

/// A failover about to be journaled: running, failed now.
pub fn new_failover(assessment: Assessment, test: bool, initiator: String, now: OffsetDateTime) -> Failover {
    Failover {
        id: new_id(now),
        scenario: assessment.scenario.clone(),
        failed: assessment.failed.clone(),
        test,
        state: FailoverState::Running,
        created: now,
        failed_at: now,
        initiator,
        assessment,
        finished: None,
        error: None,
    }
}

async fn drive(d: &Driver, store: &Store, id: &str) -> Result<Done<View>> {
    let (plan, signer) = plan_and_key(d)?;
    engine(d, &plan, store, &signer).drive(id).await?;
    view(store, id)
}

/// The plan and the signing key `d` names, the key checked against the plan.
fn plan_and_key(d: &Driver) -> Result<(Plan, Signer)> {
    let plan = load_plan(&d.plans)?;
    let signer = Signer::from_file(&d.signing_key)?;
    crate::report::keys::check_published(plan.report_public_key.as_deref(), &plan.name, &signer)?;
    Ok((plan, signer))
}

fn engine<'a>(d: &'a Driver, plan: &'a Plan, store: &'a Store, signer: &'a Signer) -> Engine<'a> {
    Engine { plan, store, signer, http: crate::failover::hooks::client(), export: d.reports.as_deref() }
}

/// `failover approve ID`: record the approval of the step it waits for, and go on.
pub async fn approve(d: &Driver, id: &str, step: Option<String>, by: Option<String>) -> Result<Done<View>> {
    let store = Store::open(&d.state)?;
    let _lock = lock(&store, &d.state, id)?;
    record_approval(&store, id, step, &initiator(by))?;
    drive(d, &store, id).await
}

/// Record `by`'s approval of `step` (default: the one failover `id`
/// waits for), refused when it has no such gate or is over.
pub fn record_approval(store: &Store, id: &str, step: Option<String>, by: &str) -> Result<String> {
    let f = Journal(store).get(id)?;
    if f.state.is_final() {
        bail!("failover {id} is {}; there is nothing to approve", f.state.as_str());
    }
    let step = match step {
        Some(s) => s,
        None => waiting_for(store, &f)?.with_context(|| format!("failover {id} waits for no approval (it is {})", f.state.as_str()))?,
    };
    if !f.assessment.steps.iter().any(|s| s.gated && s.step.as_str() == step) {
        bail!("failover {id} has no gate before step {step:?}");
    }
    Journal(store).approve(id, &step, by)?;
    Ok(step)
}

/// `failover resume ID`: after a crash or a failed step, go on; failed steps are tried again under their keys.
pub async fn resume(d: &Driver, id: &str) -> Result<Done<View>> {
    let store = Store::open(&d.state)?;
    let _lock = lock(&store, &d.state, id)?;
    let again = reopen(&store, id)?;
    eprintln!("resuming failover {id} ({again} failed step(s) to try again)");
    drive(d, &store, id).await
}

/// Make failover `id` ready to go on: its failed steps open again under
/// their keys, a failed failover running. How many steps were reopened.
pub fn reopen(store: &Store, id: &str) -> Result<usize> {
    let f = Journal(store).get(id)?;
    resumable(&f)?;
    let again = Journal(store).reopen_failed(id)?;
    if f.state == FailoverState::Failed {
        Journal(store).set_state(id, FailoverState::Running, None)?;
    }
    Ok(again)
}

/// `failover commit ID`: re-protect every cell's new primary, then mark it committed.
pub async fn commit(d: &Driver, id: &str) -> Result<Done<View>> {
    let store = Store::open(&d.state)?;
    let _lock = lock(&store, &d.state, id)?;
    let (plan, signer) = plan_and_key(d)?;
    engine(d, &plan, &store, &signer).commit(id).await?;
    view(&store, id)
}

/// `failover failback ID [--cell C]`: move a committed failover's cells
/// (or one of them) back home (`--dry-run`: show the steps, change nothing).
pub async fn failback(d: &Driver, id: &str, cell: Option<&str>, dry_run: bool) -> Result<Done<View>> {
    let store = Store::open(&d.state)?;
    if dry_run {
        let mut done = view(&store, id)?;
        done.text = format!("{}{}", done.text, failback_plan(&done.value));
        return Ok(done);
    }
    let _lock = lock(&store, &d.state, id)?;
    let (plan, signer) = plan_and_key(d)?;
    engine(d, &plan, &store, &signer).failback(id, cell).await?;
    let mut done = view(&store, id)?;
    done.ok = done.value.failover.state == FailoverState::FailedBack || (cell.is_some() && done.value.failover.error.is_none());
    Ok(done)
}

/// What a failback would do, per cell.
fn failback_plan(v: &View) -> String {
    let mut out = String::from("failback (dry run: nothing journaled, nothing changed), per cell at once:\n");
    for c in &v.cells {
        let port = c.postgres_port.map_or("-".into(), |p| p.to_string());
        out.push_str(&format!(
            "  {}: rebuild the home as a standby of the new primary (site {}, port {port}) -> stop the new primary once its WAL is archived and streamed \
             -> fence its timeline -> promote the home past its last WAL -> route -> verify -> base backup\n",
            c.cell,
            c.site.as_deref().unwrap_or("-")
        ));
    }
    out
}

/// `failover abort ID`: no further step starts. What was done stays;
/// with `reporting`, each cell without a report gets one saying what.
pub async fn abort(state: &Path, id: &str, reporting: Option<&Driver>) -> Result<Done<View>> {
    let store = Store::open(state)?;
    mark_aborted(&store, id, reporting.is_some(), "an operator")?;
    if let Some(d) = reporting {
        let _lock = lock(&store, state, id)
            .context("aborted; its reports wait for the process driving it: run this abort again when it has stopped")?;
        let (plan, signer) = plan_and_key(d)?;
        engine(d, &plan, &store, &signer).report_unreported(id).await?;
    }
    view(&store, id)
}

/// Whether `f` can go on: not done, aborted, committed or failing back.
pub fn resumable(f: &Failover) -> Result<()> {
    let id = &f.id;
    if matches!(f.state, FailoverState::Done | FailoverState::Aborted | FailoverState::Committed) {
        bail!("failover {id} is {}; nothing to resume", f.state.as_str());
    }
    if matches!(f.state, FailoverState::FailingBack | FailoverState::FailedBack) {
        bail!("failover {id} is {}; a failback goes on with lifeboat failover failback {id}", f.state.as_str());
    }
    Ok(())
}

/// Abort failover `id` (`by` names who): no further step starts. Refused
/// once it is done, committed or failing back; an aborted one again only
/// `reporting` (to write the reports a first abort could not).
pub fn mark_aborted(store: &Store, id: &str, reporting: bool, by: &str) -> Result<()> {
    let f = Journal(store).get(id)?;
    let moved = matches!(f.state, FailoverState::Done | FailoverState::Committed | FailoverState::FailingBack | FailoverState::FailedBack);
    if moved || (f.state == FailoverState::Aborted && !reporting) {
        bail!("failover {id} is already {}", f.state.as_str());
    }
    if f.state != FailoverState::Aborted {
        Journal(store).set_state(id, FailoverState::Aborted, Some(&format!("aborted by {by}")))?;
    }
    Ok(())
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

fn view(store: &Store, id: &str) -> Result<Done<View>> {
    let v = crate::failover::view::view(store, id)?;
    let text = crate::failover::view::render(&v);
    let ok = !matches!(v.failover.state, FailoverState::Failed | FailoverState::Aborted);
    Ok(Done { value: v, text, ok })
}
