//! `report keygen | list | show | verify`: the signing key pair, a cell's
//! stored reports (read from its repository through its agent), one report
//! as text, JSON or HTML, and offline verification of signatures and the
//! per-cell hash chain.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use serde::Serialize;

use lifeboat_client::AgentClient;

use super::{finish, Done, Output};
use crate::plan::Plan;
use crate::report::{self, Report};
use crate::serve::{agent_clients, load_plan};

#[derive(Serialize)]
struct KeyPair {
    private_key: PathBuf,
    public_key: PathBuf,
    key_id: String,
}

pub fn keygen(out_dir: &Path, output: Output) -> ExitCode {
    let made = report::keys::generate(out_dir).map(|(private_key, public_key, key_id)| {
        let text = format!(
            "key {key_id}: signing key {} (keep it secret), public key {} (publish it with the plan)",
            private_key.display(),
            public_key.display()
        );
        Done::ok(KeyPair { private_key, public_key, key_id }, text)
    });
    finish(output, made)
}

#[derive(Serialize)]
struct Verified {
    reports: usize,
    ok: bool,
    problems: Vec<String>,
}

/// Check signatures and the chain of the reports under `path`, with the
/// public key from `public_key` or the plan at `plans`.
pub fn verify(path: &Path, public_key: Option<PathBuf>, plans: Option<PathBuf>, expect_sequence: Option<u64>, output: Output) -> ExitCode {
    let checked = published_key(public_key, plans).and_then(|f| report::keys::Verifier::from_file(&f)).and_then(|key| {
        let reports = report::chain::load(path)?;
        let mut problems = report::chain::verify(&reports, &key, expect_sequence);
        if reports.is_empty() {
            problems.push(format!("no reports in {}", path.display()));
        }
        Ok(Verified { reports: reports.len(), ok: problems.is_empty(), problems })
    });
    let done = checked.map(|v| {
        let text = if v.ok {
            format!("{} report(s) in {}: signatures and chain valid", v.reports, path.display())
        } else {
            // People read problems on stderr; the summary goes there too.
            for p in &v.problems {
                eprintln!("{p}");
            }
            eprintln!("{} problem(s) in {} report(s)", v.problems.len(), v.reports);
            String::new()
        };
        let ok = v.ok;
        Done { value: v, text, ok }
    });
    finish(output, done)
}

fn published_key(public_key: Option<PathBuf>, plans: Option<PathBuf>) -> Result<PathBuf> {
    match (public_key, plans) {
        (Some(k), _) => Ok(k),
        (None, Some(dir)) => {
            let p = load_plan(&dir)?;
            p.report_public_key.with_context(|| format!("plan {} publishes no report key ([plan] report_public_key)", p.name))
        }
        (None, None) => Err(anyhow::anyhow!("give --public-key or --plans")),
    }
}

/// The agent of `cell` in `plan`.
pub(super) fn cell_agent(plan: &Plan, cell: &str) -> Result<AgentClient> {
    agent_clients(plan)?.remove(cell).with_context(|| format!("no cell {cell} in plan {}", plan.name))
}

/// Every signed report the agent stores: its name, its bytes as stored, and
/// the report they hold, in the agent's order.
pub(super) async fn stored_reports(agent: &AgentClient) -> Result<Vec<(String, Vec<u8>, Report)>> {
    let mut stored = Vec::new();
    for name in agent.reports().await?.into_iter().filter(|n| n.ends_with(".json")) {
        let bytes = agent.report(&name).await?;
        let r: Report = serde_json::from_slice(&bytes).with_context(|| format!("{name} is not a report"))?;
        stored.push((name, bytes, r));
    }
    Ok(stored)
}

#[derive(Serialize)]
pub struct ListedReport {
    name: String,
    sequence: u64,
    report_id: String,
    operation: String,
    verdict: report::Verdict,
    started: String,
    rto_seconds: Option<f64>,
    rpo_seconds: Option<f64>,
}

#[derive(Serialize)]
pub struct ReportList {
    cell: String,
    reports: Vec<ListedReport>,
}

pub async fn list(cell: &str, plans: &Path) -> Result<Done<ReportList>> {
    let agent = cell_agent(&load_plan(plans)?, cell)?;
    let mut reports = Vec::new();
    for (name, _, r) in stored_reports(&agent).await? {
        reports.push(ListedReport {
            name,
            sequence: r.chain.sequence,
            report_id: r.report_id,
            operation: r.operation,
            verdict: r.verdict,
            started: r.started,
            rto_seconds: r.demonstrated.rto_seconds,
            rpo_seconds: r.demonstrated.rpo_seconds,
        });
    }
    let mut text = format!("reports of cell {cell} (oldest first):\n");
    for r in &reports {
        text.push_str(&format!("  {:>4}  {:7}  {:6}  {}  {}\n", r.sequence, r.verdict.as_str(), r.operation, r.started, r.report_id));
    }
    if reports.is_empty() {
        text.push_str("  (none)\n");
    }
    Ok(Done::ok(ReportList { cell: cell.to_string(), reports }, text))
}

/// What `report show` prints: the report, or its page.
#[derive(Serialize)]
#[serde(untagged)]
pub enum Shown {
    Report(Box<Report>),
    Page(String),
}

/// A stored report (by name, id or sequence, with `cell` and `plans`) or a file.
pub async fn show(which: &str, cell: Option<String>, plans: Option<PathBuf>, pdf: Option<PathBuf>, output: Output) -> Result<Done<Shown>> {
    let bytes = match (cell, plans) {
        (Some(cell), Some(plans)) => {
            let agent = cell_agent(&load_plan(&plans)?, &cell)?;
            let names = agent.reports().await?;
            let wanted = |n: &&String| {
                n.ends_with(".json")
                    && (n.as_str() == which || n.contains(&format!("-{which}.json")) || n.starts_with(&format!("{which:0>6}-")))
            };
            let name = names
                .iter()
                .find(wanted)
                .with_context(|| format!("cell {cell} has no stored report {which:?}; `lifeboat report list` shows them"))?;
            agent.report(name).await?
        }
        _ => std::fs::read(which).with_context(|| format!("reading {which} (give --cell and --plans for a stored report)"))?,
    };
    let r: Report = serde_json::from_slice(&bytes).context("not a report")?;
    if let Some(pdf) = pdf {
        super::report_export::print_pdf(&r, &pdf)?;
        let text = format!("report {} printed to {}", r.report_id, pdf.display());
        return Ok(Done::ok(Shown::Page(pdf.display().to_string()), text));
    }
    if output == Output::Html {
        let page = report::html::render(&r);
        return Ok(Done::ok(Shown::Page(page.clone()), page));
    }
    let text = text(&r);
    Ok(Done::ok(Shown::Report(Box::new(r)), text))
}

/// A report in a few lines.
fn text(r: &Report) -> String {
    let mut out = format!(
        "{} report {} of cell {} (plan {}), report {} of the chain\n{}: {} errors, {} warnings; started {}, took {:.1}s; source {}\n",
        r.operation,
        r.report_id,
        r.cell,
        r.plan,
        r.chain.sequence,
        r.verdict.as_str().to_uppercase(),
        r.errors,
        r.warnings,
        r.started,
        r.duration_seconds,
        r.source_location
    );
    for i in r.steps.iter().chain(&r.checks) {
        out.push_str(&i.line());
    }
    out
}
