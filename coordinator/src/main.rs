//! `lifeboat`: the coordinator and operator CLI.
//!
//! - [`plan`]: DR plans (`plan validate`, `plan show`)
//! - [`serve`]: the coordinator service (scheduler, agent driver, alerts, HTTP)
//! - [`store`]: its state database (SQLite)
//! - [`compliance`]: recoverable points, RPO exposure and verdicts per cell
//! - [`agent_client`]: the agent API, as the coordinator calls it
//! - [`ops`]: operator commands, against a coordinator or directly
//! - [`secrets`]: resolving `env:` / `file:` references
//! - [`report`]: signed, hash-chained reports for auditors (keys, HTML, verification)
//! - [`drill`]: restore drills through the cell's agent, judged and reported
//!
//! The data-plane commands live in `lifeboat-agent`.

mod agent_client;
mod compliance;
mod drill;
mod ops;
mod plan;
mod report;
mod secrets;
mod serve;
mod store;

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
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
    /// `report show`: the report's HTML page (elsewhere the same as text).
    Html,
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
    /// Run the coordinator: schedules, agent jobs, compliance, alerts, status page and metrics.
    Serve(serve::ServeArgs),
    /// Postgres base backups of a cell, now.
    #[command(subcommand)]
    Backup(BackupCommand),
    /// Kafka snapshots of a cell, now.
    #[command(subcommand)]
    Snapshot(SnapshotCommand),
    /// Every cell's recoverable points, RPO exposure and verdict per location.
    Status {
        #[command(flatten)]
        target: ops::Target,
    },
    /// The coordinator's run history.
    #[command(subcommand)]
    Runs(RunsCommand),
    /// Reports for auditors: the signing key pair, listing and showing, offline verification.
    #[command(subcommand)]
    Report(ReportCommand),
    /// Restore drills: restore a cell into a scratch environment, check it, report.
    #[command(subcommand)]
    Drill(DrillCommand),
}

#[derive(Debug, Subcommand)]
enum DrillCommand {
    /// Drill one cell now: Postgres to a point in time and Kafka to the same instant in a scratch
    /// environment, the plan's smoke checks, a signed report. Through a coordinator (--coordinator)
    /// or straight through the cell's agent (--plans, --signing-key). Exit 1 unless it passed.
    Run {
        #[arg(long)]
        cell: String,
        /// Recover to this instant (RFC 3339); default: a random recent instant.
        #[arg(long, conflicts_with = "random_recent")]
        target_time: Option<String>,
        /// Recover to a random instant within the last --within that Postgres and Kafka both cover (the default).
        #[arg(long)]
        random_recent: bool,
        #[arg(long, default_value = "24h")]
        within: String,
        /// Restore from this location of the cell: a name, or primary, secondary, cross-cloud.
        #[arg(long)]
        from_location: Option<String>,
        /// When restoring from the first location fails, restore from this one (the report says so).
        #[arg(long)]
        fallback_location: Option<String>,
        #[command(flatten)]
        target: ops::Target,
        /// Without a coordinator: the report signing key (report-signing.key from `report keygen`).
        #[arg(long, env = "LIFEBOAT_REPORT_SIGNING_KEY")]
        signing_key: Option<PathBuf>,
        /// Without a coordinator: also keep the cell's chain of reports (JSON and HTML) under DIR/<cell>/.
        #[arg(long)]
        reports: Option<PathBuf>,
        /// Who started the drill (default: operator $USER).
        #[arg(long)]
        initiator: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum ReportCommand {
    /// Make the Ed25519 key pair reports are signed with (publish the .pub with the plan).
    Keygen {
        /// Directory for report-signing.key (mode 0600) and report-signing.pub.
        #[arg(long)]
        out_dir: PathBuf,
    },
    /// The cell's stored reports, oldest first (from its repository, through its agent).
    List {
        #[arg(long)]
        cell: String,
        #[arg(long, env = "LIFEBOAT_PLANS")]
        plans: PathBuf,
    },
    /// One report: a stored one (--cell, --plans) or a file; as text, JSON or HTML (--output html).
    Show {
        /// A report file, or a stored report's name or id (with --cell).
        report: String,
        #[arg(long, requires = "plans")]
        cell: Option<String>,
        #[arg(long, env = "LIFEBOAT_PLANS")]
        plans: Option<PathBuf>,
    },
    /// Check signatures and the per-cell hash chain of a report or a directory of them; exit 1 naming each problem.
    Verify {
        /// A report file, or a directory of reports.
        path: PathBuf,
        /// The published public key (report-signing.pub).
        #[arg(long, required_unless_present = "plans", conflicts_with = "plans")]
        public_key: Option<PathBuf>,
        /// Or: the plan directory that publishes it ([plan] report_public_key).
        #[arg(long)]
        plans: Option<PathBuf>,
        /// The newest sequence number known to exist (catches removal of the newest reports).
        #[arg(long)]
        expect_sequence: Option<u64>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum BackupKind {
    Full,
    Incremental,
}

#[derive(Debug, Subcommand)]
enum BackupCommand {
    /// Take a base backup of the cell's Postgres now (and wait for it).
    Run {
        #[arg(long)]
        cell: String,
        #[arg(long, value_enum, default_value = "full")]
        kind: BackupKind,
        /// With --coordinator: return once the run is queued.
        #[arg(long)]
        no_wait: bool,
        #[command(flatten)]
        target: ops::Target,
    },
}

#[derive(Debug, Subcommand)]
enum SnapshotCommand {
    /// Snapshot the cell's Kafka topics now (and wait for it).
    Run {
        #[arg(long)]
        cell: String,
        #[arg(long)]
        no_wait: bool,
        #[command(flatten)]
        target: ops::Target,
    },
}

#[derive(Debug, Subcommand)]
enum RunsCommand {
    /// Runs, newest first.
    List {
        #[arg(long)]
        cell: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: usize,
        #[command(flatten)]
        source: ops::HistorySource,
    },
    /// One run.
    Show {
        id: i64,
        #[command(flatten)]
        source: ops::HistorySource,
    },
}

#[derive(Debug, Subcommand)]
enum PlanCommand {
    /// Check a plan directory: exit 0, or print every problem as file:line: message and exit 1.
    Validate {
        /// The plan directory (its *.toml files).
        dir: PathBuf,
    },
    /// The effective plan: tier targets, and per cell its schedules (UTC), locations and retention.
    Show { dir: PathBuf },
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

/// Run an async operator command: print its JSON or text, map failure to exit 1.
fn operate(output: Output, work: impl std::future::Future<Output = anyhow::Result<(serde_json::Value, String, bool)>>) -> ExitCode {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    match runtime.block_on(work) {
        Ok((value, text, ok)) => {
            match output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&value).expect("JSON")),
                Output::Text | Output::Html => print!("{}", if text.ends_with('\n') { text } else { format!("{text}\n") }),
            }
            if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Version { .. } | Command::Plan(_)) {
        init_logging();
    }
    let output = cli.output;
    match cli.command {
        Command::Serve(args) => {
            let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
            let result = runtime.block_on(async {
                tokio::select! {
                    r = serve::run(args) => r,
                    _ = shutdown_signal() => {
                        tracing::info!("stopping");
                        Ok(())
                    }
                }
            });
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Backup(BackupCommand::Run { cell, kind, no_wait, target }) => operate(output, async move {
            let kind = match kind {
                BackupKind::Full => "pg-full",
                BackupKind::Incremental => "pg-incremental",
            };
            let r = ops::run_now(&target, &cell, kind, !no_wait).await?;
            let ok = no_wait || ops::succeeded(&r);
            Ok((r.clone(), ops::render_run(&r), ok))
        }),
        Command::Snapshot(SnapshotCommand::Run { cell, no_wait, target }) => operate(output, async move {
            let r = ops::run_now(&target, &cell, "kafka-snapshot", !no_wait).await?;
            let ok = no_wait || ops::succeeded(&r);
            Ok((r.clone(), ops::render_run(&r), ok))
        }),
        Command::Status { target } => operate(output, async move {
            let s = ops::status(&target).await?;
            let text = ops::render_status(&s)?;
            Ok((s, text, true))
        }),
        Command::Runs(RunsCommand::List { cell, limit, source }) => operate(output, async move {
            let v = ops::runs(&source, cell.as_deref(), limit).await?;
            Ok((v.clone(), ops::render_runs(&v), true))
        }),
        Command::Report(ReportCommand::Keygen { out_dir }) => match report::keys::generate(&out_dir) {
            Ok((private, public, key_id)) => {
                match output {
                    Output::Json => println!("{}", serde_json::json!({ "private_key": private, "public_key": public, "key_id": key_id })),
                    Output::Text | Output::Html => println!(
                        "key {key_id}: signing key {} (keep it secret), public key {} (publish it with the plan)",
                        private.display(),
                        public.display()
                    ),
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        },
        Command::Report(ReportCommand::Verify { path, public_key, plans, expect_sequence }) => {
            let key_file = match (public_key, plans) {
                (Some(k), _) => Ok(k),
                (None, Some(dir)) => serve::load_plan(&dir).and_then(|p| {
                    p.report_public_key.with_context(|| format!("plan {} publishes no report key ([plan] report_public_key)", p.name))
                }),
                (None, None) => Err(anyhow::anyhow!("give --public-key or --plans")),
            };
            let checked = key_file.and_then(|f| report::keys::Verifier::from_file(&f)).and_then(|key| {
                let reports = report::chain::load(&path)?;
                let mut problems = report::chain::verify(&reports, &key, expect_sequence);
                if reports.is_empty() {
                    problems.push(format!("no reports in {}", path.display()));
                }
                Ok((reports.len(), problems))
            });
            match checked {
                Ok((n, problems)) => {
                    match output {
                        Output::Json => {
                            println!("{}", serde_json::json!({ "reports": n, "ok": problems.is_empty(), "problems": problems }))
                        }
                        Output::Text | Output::Html if problems.is_empty() => {
                            println!("{n} report(s) in {}: signatures and chain valid", path.display())
                        }
                        Output::Text | Output::Html => {
                            for p in &problems {
                                eprintln!("{p}");
                            }
                            eprintln!("{} problem(s) in {n} report(s)", problems.len());
                        }
                    }
                    if problems.is_empty() {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::FAILURE
                    }
                }
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Drill(DrillCommand::Run {
            cell,
            target_time,
            random_recent: _,
            within,
            from_location,
            fallback_location,
            target,
            signing_key,
            reports,
            initiator,
        }) => operate(output, async move {
            humantime::parse_duration(&within).with_context(|| format!("--within {within:?}"))?;
            if target.coordinator.is_some() {
                if target_time.is_some() || from_location.is_some() || fallback_location.is_some() || within != "24h" {
                    anyhow::bail!("through a coordinator a drill restores a random instant of the last 24h from the primary; for another target or location drill with --plans and --signing-key");
                }
                let run = ops::run_now(&target, &cell, "drill", true).await?;
                let report: report::Report = serde_json::from_value(run["result"]["report"].clone())
                    .with_context(|| format!("the drill produced no report: {}", run["error"].as_str().unwrap_or("no reason given")))?;
                let path = |k: &str| run["result"][k].as_str().map(PathBuf::from);
                let d = drill::Drilled { report, json_path: path("json"), html_path: path("html") };
                let ok = d.report.verdict == "passed";
                return Ok((run["result"].clone(), drill::render(&d), ok));
            }
            let plans = target
                .plans
                .as_ref()
                .context("give --coordinator URL, or --plans DIR and --signing-key to drill through the cell's agent")?;
            let signing_key = signing_key.context("--signing-key (or LIFEBOAT_REPORT_SIGNING_KEY) is needed to sign the report")?;
            let plan = serve::load_plan(plans)?;
            let cell_plan = plan.cells.iter().find(|c| c.name == cell).with_context(|| format!("no cell {cell} in plan {}", plan.name))?;
            let agents = serve::agent_clients(&plan)?;
            let signer = report::keys::Signer::from_file(&signing_key)?;
            report::keys::check_published(&plan, &signer)?;
            let target = match target_time {
                Some(t) => lifeboat_drill::spec::DrillTarget::Time(t),
                None => lifeboat_drill::spec::DrillTarget::RandomRecent { within },
            };
            let initiator =
                initiator.unwrap_or_else(|| format!("operator {}", std::env::var("USER").unwrap_or_else(|_| "(unknown)".into())));
            let req = drill::DrillRequest { target, from_location, fallback_location, initiator };
            let d = drill::run(&plan, cell_plan, &agents[&cell], &req, &signer, reports.as_deref()).await?;
            let value = serde_json::json!({ "report": d.report, "json": d.json_path, "html": d.html_path });
            let ok = d.report.verdict == "passed";
            Ok((value, drill::render(&d), ok))
        }),
        Command::Report(ReportCommand::List { cell, plans }) => operate(output, async move {
            let (agent, _) = report_agent(&plans, &cell)?;
            let mut rows = Vec::new();
            for name in agent.reports().await?.into_iter().filter(|n| n.ends_with(".json")) {
                let r: report::Report =
                    serde_json::from_slice(&agent.report(&name).await?).with_context(|| format!("{name} is not a report"))?;
                rows.push(serde_json::json!({ "name": name, "sequence": r.chain.sequence, "report_id": r.report_id, "operation": r.operation,
                    "verdict": r.verdict, "started": r.started, "rto_seconds": r.demonstrated.rto_seconds, "rpo_seconds": r.demonstrated.rpo_seconds }));
            }
            let mut text = format!("reports of cell {cell} (oldest first):\n");
            for r in &rows {
                text.push_str(&format!(
                    "  {:>4}  {:7}  {:6}  {}  {}\n",
                    r["sequence"],
                    r["verdict"].as_str().unwrap_or(""),
                    r["operation"].as_str().unwrap_or(""),
                    r["started"].as_str().unwrap_or(""),
                    r["report_id"].as_str().unwrap_or("")
                ));
            }
            if rows.is_empty() {
                text.push_str("  (none)\n");
            }
            Ok((serde_json::json!({ "cell": cell, "reports": rows }), text, true))
        }),
        Command::Report(ReportCommand::Show { report: which, cell, plans }) => operate(output, async move {
            let bytes = match (cell, plans) {
                (Some(cell), Some(plans)) => {
                    let (agent, _) = report_agent(&plans, &cell)?;
                    let names = agent.reports().await?;
                    let name = names
                        .iter()
                        .find(|n| {
                            n.ends_with(".json")
                                && (n.as_str() == which || n.contains(&format!("-{which}.json")) || n.starts_with(&format!("{which:0>6}-")))
                        })
                        .with_context(|| format!("cell {cell} has no stored report {which:?}; `lifeboat report list` shows them"))?;
                    agent.report(name).await?
                }
                _ => std::fs::read(&which).with_context(|| format!("reading {which} (give --cell and --plans for a stored report)"))?,
            };
            let r: report::Report = serde_json::from_slice(&bytes).context("not a report")?;
            if output == Output::Html {
                let page = report::html::render(&r);
                return Ok((serde_json::Value::String(page.clone()), page, true));
            }
            Ok((serde_json::to_value(&r)?, report_text(&r), true))
        }),
        Command::Runs(RunsCommand::Show { id, source }) => operate(output, async move {
            let v = ops::run_show(&source, id).await?;
            Ok((v.clone(), ops::render_run(&v), true))
        }),
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
                    Output::Text | Output::Html => {
                        println!("plan {:?} in {} is valid: {} tiers, {} cells", p.name, dir.display(), p.tiers.len(), p.cells.len())
                    }
                }
                ExitCode::SUCCESS
            }
            Err(problems) => {
                match cli.output {
                    Output::Json => println!("{}", serde_json::json!({ "ok": false, "problems": problems })),
                    Output::Text | Output::Html => {
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
                    Output::Text | Output::Html => print!("{}", show(&p)),
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

/// The agent of `cell` in the plan at `plans`.
fn report_agent(plans: &std::path::Path, cell: &str) -> anyhow::Result<(agent_client::AgentClient, plan::Plan)> {
    let plan = serve::load_plan(plans)?;
    let mut agents = serve::agent_clients(&plan)?;
    let agent = agents.remove(cell).with_context(|| format!("no cell {cell} in plan {}", plan.name))?;
    Ok((agent, plan))
}

/// A report in a few lines.
fn report_text(r: &report::Report) -> String {
    let mut out = format!(
        "{} report {} of cell {} (plan {}), report {} of the chain\n{}: {} errors, {} warnings; started {}, took {:.1}s; source {}\n",
        r.operation,
        r.report_id,
        r.cell,
        r.plan,
        r.chain.sequence,
        r.verdict.to_uppercase(),
        r.errors,
        r.warnings,
        r.started,
        r.duration_seconds,
        r.source_location
    );
    for i in r.steps.iter().chain(&r.checks) {
        out.push_str(&report::item_line(i));
    }
    out
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("installing a SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
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
