//! `drill run | sweep`: a restore drill of this cell into a scratch
//! environment (the work is in `lifeboat-drill`), and removing what
//! interrupted drills left behind. A drill handles SIGINT and SIGTERM
//! itself: it stops, removes its scratch environment, then exits.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};

use lifeboat_api::{DrillOutcome, DrillSpec};
use lifeboat_drill::run::{DrillEnv, Source};
use lifeboat_drill::scratch::{self, Scratch};
use lifeboat_kafka::client::Brokers;

use crate::commands::pg::{pg_bindir_or_default, restore_command};
use crate::context::{open_repo, Global, RepoArg};
use crate::output::emit;

/// Exit status of a drill that ran and failed (its outcome is printed).
pub const DRILL_FAILED: u8 = 3;

#[derive(Debug, Subcommand)]
pub enum DrillCommand {
    /// Restore the cell (Postgres to a point in time, Kafka up to the same
    /// instant) into a scratch environment, run the smoke checks, remove
    /// it. Exit 0: passed; 3: ran and failed (the outcome says why); 1: could not run.
    Run(RunArgs),
    /// Remove the scratch environments of interrupted drills under a restore root.
    Sweep {
        #[arg(long)]
        restore_root: PathBuf,
    },
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The repository to restore from.
    #[command(flatten)]
    repo: RepoArg,
    /// The name of that repository's location (as reports show it).
    #[arg(long, default_value = "primary")]
    source_name: String,
    /// Fall back to this repository when restoring from --repo fails: NAME=URL.
    #[arg(long, value_name = "NAME=URL")]
    fallback: Option<String>,
    #[arg(long, env = "LIFEBOAT_CELL")]
    cell: String,
    /// Scratch environments go under this directory.
    #[arg(long)]
    restore_root: PathBuf,
    /// The drill: target, checks (JSON, the agent API's drill spec).
    #[arg(long)]
    spec: String,
    /// Kafka brokers to restore into (scratch topics, prefixed).
    #[arg(long, env = "LIFEBOAT_KAFKA_BROKERS")]
    brokers: Option<String>,
    /// Postgres server binaries (default: `pg_config --bindir`).
    #[arg(long)]
    pg_bindir: Option<PathBuf>,
    /// Give up on WAL replay after this long.
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    replay_timeout: Duration,
}

pub async fn run(global: &Global, cmd: DrillCommand) -> Result<ExitCode> {
    match cmd {
        DrillCommand::Sweep { restore_root } => {
            let results = scratch::sweep(&restore_root).await;
            let failed = results.iter().any(|(_, p)| !p.is_empty());
            emit(global, &results, |r| {
                if r.is_empty() {
                    return "nothing to remove".into();
                }
                r.iter()
                    .map(|(id, p)| if p.is_empty() { format!("{id}: removed") } else { format!("{id}: {}", p.join("; ")) })
                    .collect::<Vec<_>>()
                    .join("\n")
            });
            Ok(if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS })
        }
        DrillCommand::Run(args) => drill(global, args).await,
    }
}

async fn drill(global: &Global, args: RunArgs) -> Result<ExitCode> {
    let spec: DrillSpec = serde_json::from_str(&args.spec).context("--spec is not a drill spec (see docs/agent-api.json, DrillSpec)")?;
    let brokers = match &args.brokers {
        Some(b) => Some(Brokers::new(b, Duration::from_secs(30))?),
        None if spec.kafka || spec.checks.iter().any(|c| c.needs_kafka()) => {
            bail!("this drill restores Kafka; give --brokers (scratch topics are created there, prefixed)")
        }
        None => None,
    };
    let mut urls = vec![args.repo.url.as_str()];
    let mut sources = vec![Source {
        name: args.source_name.clone(),
        repo: open_repo(global, &args.repo.url).await?,
        restore_command: restore_command(global, &args.repo.url, &args.cell, None)?,
    }];
    if let Some(f) = &args.fallback {
        let Some((name, url)) = f.split_once('=') else { bail!("--fallback {f:?}: write NAME=URL") };
        urls.push(url);
        sources.push(Source {
            name: name.to_string(),
            repo: open_repo(global, url).await?,
            restore_command: restore_command(global, url, &args.cell, None)?,
        });
    }
    let env = DrillEnv {
        cell: args.cell.clone(),
        sources,
        brokers: brokers.clone(),
        restore_root: args.restore_root.clone(),
        pg_bindir: pg_bindir_or_default(args.pg_bindir)?,
        replay_timeout: args.replay_timeout,
        server_env: lifeboat_drill::confine::server_env(&urls, std::env::vars()),
    };
    // A takeover works where the cell's standby is kept: never beside a standby job.
    let _lock = match &spec.takeover {
        Some(t) => Some(lifeboat_drill::standby::lock(&env.restore_root, t.port).map_err(anyhow::Error::msg)?),
        None => None,
    };
    let scratch = match &spec.takeover {
        Some(t) => Scratch::keep(&env.restore_root, &env.cell, t, brokers.as_ref(), &env.pg_bindir),
        None => Scratch::create(&env.restore_root, brokers.as_ref(), &env.pg_bindir),
    }
    .with_context(|| format!("creating a scratch environment under {}", env.restore_root.display()))?;
    tracing::info!(drill = %scratch.id, port = scratch.port, prefix = %scratch.prefix, "drill started");
    let interrupted = tokio::select! {
        outcome = lifeboat_drill::run::run(&env, &spec, &scratch) => Ok(outcome),
        signal = lifeboat_process::shutdown_signal() => Err(signal),
    };
    match interrupted {
        Ok(mut outcome) => {
            let failed = outcome.steps.iter().chain(&outcome.checks).any(|s| s.failed());
            if !scratch.kept {
                lifeboat_drill::run::finish(&mut outcome, &scratch, &env.restore_root).await;
            } else if failed {
                // A takeover that failed must not serve a half-checked copy of production.
                if let Err(e) = scratch.stop_server() {
                    tracing::error!(takeover = %scratch.id, "stopping the failed takeover's server: {e}");
                }
            }
            let failed = outcome.steps.iter().chain(&outcome.checks).any(|s| s.failed());
            emit(global, &outcome, render);
            Ok(if failed { ExitCode::from(DRILL_FAILED) } else { ExitCode::SUCCESS })
        }
        Err(signal) if scratch.kept => {
            let stopped = match scratch.stop_server() {
                Ok(()) => "its server stopped".to_string(),
                Err(e) => format!("stopping its server failed: {e}"),
            };
            bail!("interrupted by {signal}; takeover {}: {stopped}, its directory kept (a rerun of it starts over)", scratch.id)
        }
        Err(signal) => {
            let problems = scratch.remove(&env.restore_root).await;
            if problems.is_empty() {
                bail!("interrupted by {signal}; drill {} stopped and its scratch environment was removed", scratch.id)
            }
            bail!("interrupted by {signal}; removing drill {}'s scratch environment failed: {}", scratch.id, problems.join("; "))
        }
    }
}

fn render(o: &DrillOutcome) -> String {
    let target = o.target.map_or_else(|| "(none chosen)".to_string(), |t| t.to_string());
    let mut out = format!("drill {} of target {target} from {}\n", o.drill_id, o.source_location);
    for s in o.steps.iter().chain(&o.checks) {
        out.push_str(&s.line());
    }
    let secs = |v: Option<f64>| v.map(|v| format!("{v:.1}s")).unwrap_or_else(|| "-".into());
    out.push_str(&format!(
        "restore time {:.1}s (WAL replay {:.1}s); Postgres RPO {}, Kafka RPO {}",
        o.rto_seconds,
        o.replay_seconds,
        secs(o.pg_rpo_seconds),
        secs(o.kafka_rpo_seconds)
    ));
    out
}
