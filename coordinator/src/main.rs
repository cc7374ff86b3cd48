//! `lifeboat`: the coordinator and operator CLI.
//!
//! - [`plan`]: DR plans (`plan validate`, `plan show`)
//! - [`serve`]: the coordinator service (scheduler, agent driver, alerts, HTTP)
//! - [`runs`]: runs (kinds, states, results) and the agent job each asks for
//! - [`store`]: the coordinator's state database (SQLite)
//! - [`compliance`]: recoverable points, RPO exposure and verdicts per cell
//! - [`drill`]: restore drills through the cell's agent, judged and reported
//! - [`report`]: signed, hash-chained reports for auditors (keys, HTML, verification)
//! - [`commands`]: the operator commands, one module each
//! - [`clock`], [`secrets`]: instants as the coordinator writes them; `env:` / `file:` references
//!
//! The agent is driven through `lifeboat-client` with the wire types of
//! `lifeboat-api`; the data-plane commands live in `lifeboat-agent`.

mod clock;
mod commands;
mod compliance;
mod drill;
mod failover;
mod plan;
mod report;
mod runs;
mod secrets;
mod serve;
mod store;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use commands::Output;
use runs::RunKind;

/// Lifeboat coordinator: runs tiered DR plans by driving one agent per cell.
#[derive(Debug, Parser)]
#[command(name = "lifeboat", version = VERSION, about)]
struct Cli {
    /// Output format for results (json for scripts).
    #[arg(long, global = true, value_enum, default_value_t = Output::Text, env = "LIFEBOAT_OUTPUT")]
    output: Output,
    /// Log format on stderr (json for log collectors).
    #[arg(long, global = true, value_enum, default_value_t = lifeboat_process::LogFormat::Plain, env = "LIFEBOAT_LOG_FORMAT")]
    log_format: lifeboat_process::LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell) to stdout.
    Completions { shell: lifeboat_process::cli::Shell },
    /// Write man pages (lifeboat.1 and one per command) into a directory.
    Man {
        #[arg(long)]
        out_dir: PathBuf,
    },
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
        target: commands::Target,
        /// Exit 3 when a cell is breached (and, with at-risk, 4 when one is at risk): for scripts and cron.
        #[arg(long, value_enum)]
        fail_on: Option<commands::status::FailOn>,
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
    /// Failover: what a scenario would do when a cell, a region or a cloud fails.
    #[command(subcommand)]
    Failover(FailoverCommand),
    /// Standbys recovery sites keep for the cells (hot: streaming; warm: replaying the archive).
    #[command(subcommand)]
    Standby(StandbyCommand),
}

#[derive(Debug, Subcommand)]
enum StandbyCommand {
    /// Have each cell's first recovery site keep its standby: bootstrap it from the repository when
    /// missing, start it when stopped; show every standby with its lag. Exit 1 if one could not be kept.
    Ensure {
        /// Only this cell.
        #[arg(long)]
        cell: Option<String>,
        #[arg(long, env = "LIFEBOAT_PLANS")]
        plans: PathBuf,
        /// The plan's signing key: sites keep only standbys it signed.
        #[arg(long, env = "LIFEBOAT_REPORT_SIGNING_KEY")]
        signing_key: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum FailoverCommand {
    /// Show the failover plan of a scenario for what failed: per cell the recovery site, the location
    /// and point it is recovered from, what would be lost, the estimated RTO, the steps and gates.
    /// Changes nothing. Exit 1 when it lists problems.
    Plan {
        /// The scenario (`[[scenario]]` name in the plan).
        #[arg(long)]
        scenario: String,
        /// What failed: a cell, a region or a cloud (`azure`, `aws`), as the scenario's scope says.
        #[arg(long)]
        failed: String,
        #[command(flatten)]
        target: commands::Target,
    },
    /// Call each hook of a scenario with step `check` (receivers answer it without acting): proves
    /// they are reachable, authorised and answer in time. Exit 1 unless all succeeded.
    CheckHooks {
        #[arg(long)]
        scenario: String,
        #[arg(long, env = "LIFEBOAT_PLANS")]
        plans: PathBuf,
    },
    /// Fail over: assess, journal, then fence, restore at the recovery sites, smoke-check, route,
    /// verify, stopping at approval gates. --dry-run shows the plan only; --test restores into
    /// throw-away names and neither fences nor routes. Exit 1 if it failed.
    Run(commands::failover_run::RunArgs),
    /// Approve the gate a failover waits at (default: the first one), and go on.
    Approve {
        id: String,
        /// The gated step (fence, promote, restore, smoke, route, verify).
        #[arg(long)]
        step: Option<String>,
        /// Who approves (default: $USER).
        #[arg(long)]
        by: Option<String>,
        #[command(flatten)]
        driver: commands::failover_run::Driver,
    },
    /// Go on with a failover after a crash or a failed step; no step done is repeated.
    Resume {
        id: String,
        #[command(flatten)]
        driver: commands::failover_run::Driver,
    },
    /// Commit a done failover once its new primaries are confirmed: each is re-protected (its WAL
    /// archived and a base backup taken into the location it was restored from, on its new
    /// timeline). Run again after a failure: what is done is not repeated.
    Commit {
        id: String,
        #[command(flatten)]
        driver: commands::failover_run::Driver,
    },
    /// Fail a committed failover's cells back home, planned and without loss: each home rebuilt as
    /// a standby of its new primary, the new primary stopped once its WAL is archived and streamed,
    /// its timeline fenced, the home promoted past its last WAL, route and verify hooks, a base
    /// backup. Run again after a failure: what is done is not repeated.
    Failback {
        id: String,
        /// Fail back only this cell (the others stay where they are; the failover is failing-back until all are home).
        #[arg(long)]
        cell: Option<String>,
        /// Show the steps and stop: nothing is journaled or changed.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        driver: commands::failover_run::Driver,
    },
    /// Stop a failover: no further step starts (what was done stays; status says what).
    Abort {
        id: String,
        #[arg(long, env = "LIFEBOAT_STATE")]
        state: PathBuf,
        /// With --signing-key: each cell without a report gets one (verdict failed: what was done and what was not),
        /// signed onto its chain.
        #[arg(long, env = "LIFEBOAT_PLANS", requires = "signing_key")]
        plans: Option<PathBuf>,
        #[arg(long, env = "LIFEBOAT_REPORT_SIGNING_KEY", requires = "plans")]
        signing_key: Option<PathBuf>,
        /// Also keep each cell's chain of reports under DIR/<cell>/.
        #[arg(long)]
        reports: Option<PathBuf>,
    },
    /// A failover's steps, approvals and measured RTO per cell.
    Status {
        id: String,
        #[arg(long, env = "LIFEBOAT_STATE")]
        state: PathBuf,
    },
    /// A failover's journal as the cell's recovery sites mirrored it (newest version per site and
    /// location of the cell): for when the coordinator's state database is lost.
    Mirrored {
        id: String,
        #[arg(long)]
        cell: String,
        #[arg(long, env = "LIFEBOAT_PLANS")]
        plans: PathBuf,
    },
    /// The failovers journaled, newest first.
    List {
        #[arg(long, env = "LIFEBOAT_STATE")]
        state: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum DrillCommand {
    /// Drill one cell now: Postgres to a point in time and Kafka to the same instant in a scratch
    /// environment, the plan's smoke checks, a signed report. Through a coordinator (--coordinator)
    /// or straight through the cell's agent (--plans, --signing-key). Exit 1 unless it passed.
    Run(commands::drill::DrillArgs),
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
    /// One report: a stored one (--cell, --plans) or a file; as text, JSON or HTML (--output html), or printed to PDF.
    Show {
        /// A report file, or a stored report's name or id (with --cell).
        report: String,
        #[arg(long, requires = "plans")]
        cell: Option<String>,
        #[arg(long, env = "LIFEBOAT_PLANS")]
        plans: Option<PathBuf>,
        /// Print the report's page to this PDF file (headless Chromium; LIFEBOAT_CHROMIUM names another binary).
        #[arg(long, value_name = "FILE")]
        pdf: Option<PathBuf>,
    },
    /// A static bundle for auditors: a cell's signed reports started in a period (with the chain
    /// before them), their pages, the plan's public key and an index page; verified before it is made.
    Export {
        /// The bundle's directory (must not exist).
        dir: PathBuf,
        #[arg(long)]
        cell: String,
        #[arg(long, env = "LIFEBOAT_PLANS")]
        plans: PathBuf,
        /// Reports started at or after this instant (RFC 3339).
        #[arg(long, value_parser = clock::parse)]
        since: Option<time::OffsetDateTime>,
        /// Reports started before this instant (RFC 3339).
        #[arg(long, value_parser = clock::parse)]
        until: Option<time::OffsetDateTime>,
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
        target: commands::Target,
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
        target: commands::Target,
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
        source: commands::HistorySource,
    },
    /// One run.
    Show {
        id: i64,
        #[command(flatten)]
        source: commands::HistorySource,
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
    /// Store the plan, signed, with every cell's repository through its agent (geo-copy carries it), so a
    /// coordinator that takes over elsewhere can tell which plan was in force; `serve` does it when it starts.
    Store {
        /// The plan directory.
        #[arg(long, env = "LIFEBOAT_PLANS")]
        plans: PathBuf,
        /// The plan key (report-signing.key from `report keygen`).
        #[arg(long, env = "LIFEBOAT_REPORT_SIGNING_KEY")]
        signing_key: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Version { .. } | Command::Plan(_) | Command::Completions { .. } | Command::Man { .. }) {
        lifeboat_process::init_logging(cli.log_format);
    }
    let output = cli.output;
    match cli.command {
        Command::Serve(args) => serve_until_stopped(args),
        Command::Backup(BackupCommand::Run { cell, kind, no_wait, target }) => {
            let kind = match kind {
                BackupKind::Full => RunKind::PgFull,
                BackupKind::Incremental => RunKind::PgIncremental,
            };
            commands::operate(output, async move { commands::runs::start(&target, &cell, kind, !no_wait).await })
        }
        Command::Snapshot(SnapshotCommand::Run { cell, no_wait, target }) => {
            commands::operate(output, async move { commands::runs::start(&target, &cell, RunKind::KafkaSnapshot, !no_wait).await })
        }
        Command::Status { target, fail_on } => commands::status::main(output, &target, fail_on),
        Command::Failover(FailoverCommand::Plan { scenario, failed, target }) => {
            commands::operate(output, async move { commands::failover::plan(&target, &scenario, &failed).await })
        }
        Command::Failover(FailoverCommand::CheckHooks { scenario, plans }) => {
            commands::operate(output, async move { commands::failover::check_hooks(&plans, &scenario).await })
        }
        Command::Failover(FailoverCommand::Run(args)) => commands::operate(output, commands::failover_run::run(args)),
        Command::Failover(FailoverCommand::Approve { id, step, by, driver }) => {
            commands::operate(output, async move { commands::failover_run::approve(&driver, &id, step, by).await })
        }
        Command::Failover(FailoverCommand::Resume { id, driver }) => {
            commands::operate(output, async move { commands::failover_run::resume(&driver, &id).await })
        }
        Command::Failover(FailoverCommand::Commit { id, driver }) => {
            commands::operate(output, async move { commands::failover_run::commit(&driver, &id).await })
        }
        Command::Failover(FailoverCommand::Failback { id, cell, dry_run, driver }) => {
            commands::operate(output, async move { commands::failover_run::failback(&driver, &id, cell.as_deref(), dry_run).await })
        }
        Command::Failover(FailoverCommand::Abort { id, state, plans, signing_key, reports }) => {
            let reporting = plans.zip(signing_key).map(|(plans, signing_key)| commands::failover_run::Driver {
                state: state.clone(),
                plans,
                signing_key,
                reports,
            });
            commands::operate(output, async move { commands::failover_run::abort(&state, &id, reporting.as_ref()).await })
        }
        Command::Failover(FailoverCommand::Status { id, state }) => commands::finish(output, commands::failover_run::status(&state, &id)),
        Command::Failover(FailoverCommand::Mirrored { id, cell, plans }) => {
            commands::operate(output, async move { commands::failover::mirrored(&plans, &cell, &id).await })
        }
        Command::Failover(FailoverCommand::List { state }) => commands::finish(output, commands::failover_run::list(&state)),
        Command::Standby(StandbyCommand::Ensure { cell, plans, signing_key }) => {
            commands::operate(output, async move { commands::standby::ensure(&plans, &signing_key, cell.as_deref()).await })
        }
        Command::Runs(RunsCommand::List { cell, limit, source }) => {
            commands::operate(output, async move { commands::runs::list(&source, cell.as_deref(), limit).await })
        }
        Command::Runs(RunsCommand::Show { id, source }) => {
            commands::operate(output, async move { commands::runs::show(&source, id).await })
        }
        Command::Report(ReportCommand::Keygen { out_dir }) => commands::report::keygen(&out_dir, output),
        Command::Report(ReportCommand::Verify { path, public_key, plans, expect_sequence }) => {
            commands::report::verify(&path, public_key, plans, expect_sequence, output)
        }
        Command::Report(ReportCommand::List { cell, plans }) => {
            commands::operate(output, async move { commands::report::list(&cell, &plans).await })
        }
        Command::Report(ReportCommand::Show { report, cell, plans, pdf }) => {
            commands::operate(output, async move { commands::report::show(&report, cell, plans, pdf, output).await })
        }
        Command::Report(ReportCommand::Export { dir, cell, plans, since, until }) => {
            commands::operate(output, async move { commands::report_export::export(&cell, &plans, &dir, since, until).await })
        }
        Command::Drill(DrillCommand::Run(args)) => commands::operate(output, commands::drill::run(args)),
        Command::Version { json } => version(json),
        Command::Completions { shell } => {
            lifeboat_process::cli::completions(<Cli as clap::CommandFactory>::command(), shell);
            ExitCode::SUCCESS
        }
        Command::Man { out_dir } => lifeboat_process::cli::man_command(<Cli as clap::CommandFactory>::command(), &out_dir),
        Command::Plan(PlanCommand::Validate { dir }) => commands::plan::validate(&dir, output),
        Command::Plan(PlanCommand::Show { dir }) => commands::plan::show(&dir, output),
        Command::Plan(PlanCommand::Store { plans, signing_key }) => commands::operate(output, commands::plan::store(plans, signing_key)),
    }
}

/// `lifeboat serve` until it fails or a signal stops it.
fn serve_until_stopped(args: serve::ServeArgs) -> ExitCode {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    let result = runtime.block_on(async {
        tokio::select! {
            r = serve::run(args) => r,
            signal = lifeboat_process::shutdown_signal() => {
                tracing::info!("stopping on {signal}");
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

/// The version and the git commit this build is of (`infra/build/commit.rs`).
const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("LIFEBOAT_GIT_COMMIT"), ")");

fn version(json: bool) -> ExitCode {
    let (version, commit) = (env!("CARGO_PKG_VERSION"), env!("LIFEBOAT_GIT_COMMIT"));
    if json {
        println!("{}", serde_json::json!({ "name": "lifeboat", "version": version, "commit": commit, "repository_format": 1 }));
    } else {
        println!("lifeboat {VERSION} (repository format 1)");
    }
    ExitCode::SUCCESS
}
