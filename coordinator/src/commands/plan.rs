//! `plan validate` and `plan show`: every problem of a plan directory as
//! `file:line: message`, or the effective plan (tier targets, and per cell
//! its schedules in UTC with their next runs, retention and locations).

use std::fmt::Write as _;
use std::path::Path;
use std::process::ExitCode;

use serde::Serialize;

use super::Output;
use crate::plan::{self, Plan};

#[derive(Serialize)]
struct Validated<'a> {
    ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    plan: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cells: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    problems: Option<&'a [plan::Diagnostic]>,
}

pub fn validate(dir: &Path, output: Output) -> ExitCode {
    match plan::load(dir) {
        Ok(p) => {
            match output {
                Output::Json => print_json(&Validated { ok: true, plan: Some(&p.name), cells: Some(p.cells.len()), problems: None }),
                Output::Text | Output::Html => {
                    println!("plan {:?} in {} is valid: {} tiers, {} cells", p.name, dir.display(), p.tiers.len(), p.cells.len())
                }
            }
            ExitCode::SUCCESS
        }
        Err(problems) => {
            match output {
                Output::Json => print_json(&Validated { ok: false, plan: None, cells: None, problems: Some(&problems) }),
                Output::Text | Output::Html => {
                    for p in &problems {
                        eprintln!("{p}");
                    }
                    eprintln!("{} problem(s) in {}", problems.len(), dir.display());
                }
            }
            ExitCode::FAILURE
        }
    }
}

pub fn show(dir: &Path, output: Output) -> ExitCode {
    match plan::load(dir) {
        Ok(p) => {
            match output {
                Output::Json => print_json(&p),
                Output::Text | Output::Html => print!("{}", render(&p)),
            }
            ExitCode::SUCCESS
        }
        Err(problems) => {
            for p in &problems {
                eprintln!("{p}");
            }
            eprintln!("the plan is not valid; fix it first (`lifeboat plan validate {}`)", dir.display());
            ExitCode::FAILURE
        }
    }
}

fn print_json(v: &impl Serialize) {
    println!("{}", serde_json::to_string_pretty(v).expect("plans serialise"));
}

/// The effective plan for people.
fn render(p: &Plan) -> String {
    let d = lifeboat_api::duration::format;
    let mut out = format!("plan {}: {}\n\ntiers:\n", p.name, p.description);
    for t in &p.tiers {
        let _ = writeln!(
            out,
            "  {:<8} RPO {:<6} RTO {:<6} Kafka RPO {:<6} {}",
            t.name,
            d(t.rpo),
            d(t.rto),
            d(t.kafka_rpo),
            t.strategy.as_str()
        );
    }
    let now = crate::clock::now();
    out.push_str("\ncells (schedules in UTC; next run in brackets):\n");
    for c in &p.cells {
        let _ = writeln!(
            out,
            "  {} (tier {}, region {}, DR cell {}, {} tenants)",
            c.name,
            c.tier,
            c.region,
            c.dr_cell.as_deref().unwrap_or("none"),
            c.tenants.len()
        );
        let s = &c.schedules;
        for (what, expr, enabled) in [
            ("postgres full", &s.pg_full, c.postgres),
            ("postgres incremental", &s.pg_incremental, c.postgres),
            ("kafka snapshot", &s.kafka_snapshot, c.kafka_topics.is_some()),
            ("drill", &s.drill, true),
            ("retention", &s.retention, true),
            ("verify", &s.verify, true),
            ("verify (sampled)", &s.verify_sample, true),
        ] {
            if enabled {
                let _ = writeln!(out, "    {what:<21} {expr:<14} [{}]", next_run(expr, now));
            }
        }
        let _ = writeln!(
            out,
            "    keep: postgres full {}, incremental {}, kafka {}; locations: {}",
            d(c.retention.pg_full),
            d(c.retention.pg_incremental),
            d(c.retention.kafka),
            c.locations.join(", ")
        );
    }
    out
}

/// `2026-11-27 02:00`: the next run of a cron expression after `now`.
fn next_run(expr: &str, now: time::OffsetDateTime) -> String {
    let f = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]");
    plan::schedule::parse(expr)
        .ok()
        .and_then(|cron| plan::schedule::next_after(&cron, now))
        .and_then(|t| t.format(&f).ok())
        .unwrap_or_default()
}

/// What `plan store` did: the plan's digest, and the cells that did not take it.
#[derive(Serialize)]
pub struct Stored {
    plan: String,
    sha256: String,
    cells: usize,
    failed: Vec<String>,
}

/// `plan store --plans DIR --signing-key K`: the signed plan handed to every
/// cell's agent ([`crate::plan::stored`]); exit 1 when a cell did not take it.
pub async fn store(dir: std::path::PathBuf, signing_key: std::path::PathBuf) -> anyhow::Result<super::Done<Stored>> {
    let p = crate::serve::load_plan(&dir)?;
    let signer = crate::report::keys::Signer::from_file(&signing_key)?;
    crate::report::keys::check_published(p.report_public_key.as_deref(), &p.name, &signer)?;
    let stored = crate::plan::stored::signed(&p, &dir, &signer)?;
    let failed = crate::plan::stored::store(&stored, &crate::serve::agent_clients(&p)?).await;
    let mut text = format!("plan {} ({}) stored with {} of {} cells", p.name, stored.sha256, p.cells.len() - failed.len(), p.cells.len());
    for f in &failed {
        let _ = write!(text, "\n  not stored: {f}");
    }
    let ok = failed.is_empty();
    Ok(super::Done { value: Stored { plan: p.name, sha256: stored.sha256, cells: p.cells.len(), failed }, text, ok })
}
