//! `lifeboat-agent serve`: the agent as a long-running service for the
//! coordinator. One agent serves one cell. Its HTTP API (documented in
//! `docs/agent-api.json`, generated from `lifeboat-api`) starts jobs under caller-chosen idempotency keys
//! and reports their state and progress; every request carries the agent's
//! bearer token. Jobs run as child processes (`runner`), at most
//! `--max-jobs` at once and one per kind; the journal (`jobs`) keeps them
//! across restarts.

mod answer;
mod api;
mod auth;
pub(crate) mod config;
mod drill_auth;
mod epoch;
mod follow;
mod geocopy;
mod invocation;
mod jobs;
mod journals;
mod metrics;
mod plans;
mod recovery;
mod reports;
mod runner;
mod standbys;
mod walswitch;

use std::collections::HashMap;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex, MutexGuard};

use anyhow::{bail, Context, Result};

pub use config::ServeArgs;
use jobs::Journal;
use metrics::Metrics;

use crate::context::{open_repo, Global};

/// Everything the handlers and the runner share.
pub struct Agent {
    pub config: ServeArgs,
    /// The cluster backed up: its conninfo (no password in it) and the
    /// password from `--pg-password-file`, handed to jobs as `PGPASSWORD`.
    pub pg: Option<lifeboat_postgres::conninfo::Server>,
    pub key_file: Option<PathBuf>,
    token: lifeboat_secrets::Token,
    /// The plan key that must have signed SQL checks (`--plan-key`).
    pub plan_key: Option<lifeboat_secrets::signing::Verifier>,
    /// Set only for retention jobs (`--retention-env-file`).
    pub retention_env: Vec<(String, String)>,
    journal: Mutex<Journal>,
    pub slots: tokio::sync::Semaphore,
    kind_locks: Mutex<HashMap<jobs::JobKind, Arc<tokio::sync::Mutex<()>>>>,
    pub metrics: Metrics,
    /// The agent's repository (its primary location), opened once.
    pub repo: lifeboat_repository::Repository,
    pub geo_copy: geocopy::GeoCopy,
    pub standby_metrics: standbys::StandbyMetrics,
    pub follow_metrics: follow::FollowMetrics,
    /// This binary: jobs run as its subcommands.
    pub exe: PathBuf,
    /// The highest coordinator lease epoch seen (coordinators below it are refused).
    pub epochs: epoch::Epochs,
    /// Held open: the lock that keeps a second agent off the same state directory.
    _lock: std::fs::File,
}

impl Agent {
    pub fn journal(&self) -> MutexGuard<'_, Journal> {
        self.journal.lock().expect("job journal lock")
    }

    /// The lock that keeps two jobs of one kind from running at once.
    pub fn kind_lock(&self, kind: jobs::JobKind) -> Arc<tokio::sync::Mutex<()>> {
        self.kind_locks.lock().expect("kind locks").entry(kind).or_default().clone()
    }
}

/// Remove the scratch environments of drills that were cut off (see
/// `lifeboat_drill::scratch`), logging what could not be removed.
pub async fn sweep_drills(root: &std::path::Path) {
    for (id, problems) in lifeboat_drill::scratch::sweep(root).await {
        if problems.is_empty() {
            tracing::info!(drill = %id, "removed the scratch environment of an interrupted drill");
        } else {
            tracing::error!(drill = %id, problems = %problems.join("; "), "could not remove an interrupted drill's scratch environment");
        }
    }
}

/// How long running jobs get to end once the agent is asked to stop.
const STOP_GRACE: std::time::Duration = std::time::Duration::from_secs(30);

/// Signal, then stop: every running job's process gets SIGTERM (a drill
/// removes its scratch environment and reports), the jobs get
/// [`STOP_GRACE`] to end and be recorded, then whatever a drill could not
/// remove is swept. A job still running after that is killed as the agent
/// exits (`PR_SET_PDEATHSIG`) and recorded as interrupted at the next start.
async fn stop(agent: &Agent, signal: &str) {
    let running: Vec<u32> = agent.journal().all().filter(|j| j.state == jobs::State::Running).filter_map(|j| j.pid).collect();
    tracing::info!(signal, jobs = running.len(), "stopping: ending the running jobs");
    for pid in running {
        // SAFETY: our own child, not yet waited for (its runner task awaits
        // it), so the pid cannot have been reused.
        unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    }
    let deadline = tokio::time::Instant::now() + STOP_GRACE;
    while tokio::time::Instant::now() < deadline && agent.journal().all().any(|j| j.state == jobs::State::Running) {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    if let Some(root) = &agent.config.restore_root {
        sweep_drills(root).await;
    }
}

fn lock_state_dir(state_dir: &std::path::Path) -> Result<std::fs::File> {
    std::fs::create_dir_all(state_dir).with_context(|| format!("creating the state directory {}", state_dir.display()))?;
    let path = state_dir.join("agent.lock");
    match lifeboat_process::try_lock_file(&path).with_context(|| format!("opening {}", path.display()))? {
        Some(file) => Ok(file),
        None => bail!("another agent is running on the state directory {} (it holds {})", state_dir.display(), path.display()),
    }
}

/// Serve until `shutdown` resolves (naming the signal), then [`stop`].
pub async fn run(global: &Global, config: ServeArgs, shutdown: impl std::future::Future<Output = &'static str>) -> Result<ExitCode> {
    let token = config.token()?;
    let plan_key = config.plan_key.as_deref().map(lifeboat_secrets::signing::Verifier::from_file).transpose()?;
    let pg = config.pg_server()?;
    let retention_env = config.retention_env()?;
    let repo = open_repo(global, &config.repo.url).await.context("opening the agent's repository (create it with `repo init`)")?;
    if config.max_jobs == 0 {
        bail!("--max-jobs must be at least 1");
    }
    let lock = lock_state_dir(&config.state_dir)?;
    let journal = Journal::open(&config.state_dir)?;
    let tls = lifeboat_https::tls_from(config.tls_cert.as_deref(), config.tls_key.as_deref(), config.tls_client_ca.as_deref())?;
    let listener = tokio::net::TcpListener::bind(config.listen).await.with_context(|| format!("listening on {}", config.listen))?;
    let address = listener.local_addr()?;
    let metrics = Metrics::new(&config.cell);
    let geo_copy = geocopy::GeoCopy::new(&metrics);
    let standby_metrics = standbys::StandbyMetrics::new(&metrics);
    let follow_metrics = follow::FollowMetrics::new(&metrics);
    let agent = Arc::new(Agent {
        pg,
        retention_env,
        key_file: global.key_file.clone(),
        token,
        plan_key,
        journal: Mutex::new(journal),
        slots: tokio::sync::Semaphore::new(config.max_jobs),
        kind_locks: Mutex::default(),
        metrics,
        repo,
        geo_copy,
        standby_metrics,
        follow_metrics,
        exe: std::env::current_exe().context("finding this binary")?,
        epochs: epoch::Epochs::open(&config.state_dir)?,
        _lock: lock,
        config,
    });
    if let Some(root) = &agent.config.restore_root {
        sweep_drills(root).await;
    }
    for id in runner::recover(&agent)? {
        tokio::spawn(runner::run(agent.clone(), id));
    }
    if !agent.config.copy_to.is_empty() && !agent.config.copy_interval.is_zero() {
        tokio::spawn(geocopy::run(agent.clone(), agent.config.copy_interval));
    }
    if !agent.config.guests.is_empty() && agent.config.restore_root.is_some() {
        tokio::spawn(standbys::run(agent.clone()));
    }
    if !agent.config.kafka_follow.is_zero() {
        tokio::spawn(follow::run(agent.clone(), follow::request(&agent)?, agent.config.kafka_follow));
    }
    if !agent.config.pg_switch_after.is_zero() {
        tokio::spawn(walswitch::run(agent.clone(), agent.config.pg_switch_after));
    }
    let scheme = if tls.is_some() { "https" } else { "http" };
    println!("lifeboat-agent serving cell {} on {scheme}://{address}", agent.config.cell);
    std::io::stdout().flush()?;
    tracing::info!(cell = %agent.config.cell, %address, tls = tls.is_some(), "agent serving");
    tokio::select! {
        served = lifeboat_https::serve(listener, tls, api::router(agent.clone())) => served?,
        signal = shutdown => stop(&agent, signal).await,
    }
    Ok(ExitCode::SUCCESS)
}
