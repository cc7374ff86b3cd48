//! `lifeboat`: the coordinator and operator CLI.
//!
//! Today: DR plans (`plan validate`, `plan show`). The scheduler, agent
//! driver, compliance, drills and reports land in later milestones; nothing
//! here pretends to work before it does. The data-plane commands live in
//! `lifeboat-agent`.

mod plan;

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

/// Lifeboat coordinator: runs tiered DR plans by driving one agent per cell.
#[derive(Debug, Parser)]
#[command(name = "lifeboat", version, about)]
struct Cli {
    /// Output format for results (json for scripts).
    #[arg(long, global = true, value_enum, default_value_t = Output::Text, env = "LIFEBOAT_OUTPUT")]
    output: Output,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Output {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the version (and the repository format this build writes), as JSON with --json.
    Version {
        #[arg(long)]
        json: bool,
    },
    /// DR plans: check them, and show the effective schedule and targets per cell.
    #[command(subcommand)]
    Plan(PlanCommand),
}

#[derive(Debug, Subcommand)]
enum PlanCommand {
    /// Check a plan directory: exit 0, or print every problem as file:line: message and exit 1.
    Validate {
        /// The plan directory (its *.toml files).
        dir: PathBuf,
    },
    /// The effective plan: tier targets, and per cell its schedules (UTC), locations and retention.
    Show {
        dir: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Version { json } => {
            let version = env!("CARGO_PKG_VERSION");
            if json {
                println!("{}", serde_json::json!({ "name": "lifeboat", "version": version, "repository_format": 1 }));
            } else {
                println!("lifeboat {version} (repository format 1)");
            }
            ExitCode::SUCCESS
        }
        Command::Plan(PlanCommand::Validate { dir }) => match plan::load(&dir) {
            Ok(p) => {
                match cli.output {
                    Output::Json => println!("{}", serde_json::json!({ "ok": true, "plan": p.name, "cells": p.cells.len() })),
                    Output::Text => println!("plan {:?} in {} is valid: {} tiers, {} cells", p.name, dir.display(), p.tiers.len(), p.cells.len()),
                }
                ExitCode::SUCCESS
            }
            Err(problems) => {
                match cli.output {
                    Output::Json => println!("{}", serde_json::json!({ "ok": false, "problems": problems })),
                    Output::Text => {
                        for p in &problems {
                            eprintln!("{p}");
                        }
                        eprintln!("{} problem(s) in {}", problems.len(), dir.display());
                    }
                }
                ExitCode::FAILURE
            }
        },
        Command::Plan(PlanCommand::Show { dir }) => match plan::load(&dir) {
            Ok(p) => {
                match cli.output {
                    Output::Json => println!("{}", serde_json::to_string_pretty(&p).expect("plans serialise")),
                    Output::Text => print!("{}", show(&p)),
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
        },
    }
}

/// The effective plan for people.
fn show(p: &plan::Plan) -> String {
    let d = |x: std::time::Duration| {
        let s = x.as_secs();
        match s {
            _ if s >= 86400 && s.is_multiple_of(86400) => format!("{}d", s / 86400),
            _ if s >= 3600 && s.is_multiple_of(3600) => format!("{}h", s / 3600),
            _ if s >= 60 && s.is_multiple_of(60) => format!("{}m", s / 60),
            _ => format!("{s}s"),
        }
    };
    let mut out = format!("plan {}: {}\n\ntiers:\n", p.name, p.description);
    for t in &p.tiers {
        let _ = writeln!(out, "  {:<8} RPO {:<6} RTO {:<6} Kafka RPO {:<6} {:?}", t.name, d(t.rpo), d(t.rto), d(t.kafka_rpo), t.strategy);
    }
    let now = chrono::Utc::now();
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
        ] {
            if !enabled {
                continue;
            }
            let next = plan::schedule::parse(expr)
                .ok()
                .and_then(|cron| plan::schedule::next_after(&cron, now))
                .map(|t| t.format("%Y-%m-%d %H:%M").to_string())
                .unwrap_or_default();
            let _ = writeln!(out, "    {what:<21} {expr:<14} [{next}]");
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
