//! `lifeboat serve --plans DIR`: the coordinator as a service. It loads and
//! validates the plan, resolves every agent token, opens the state database,
//! and then loops: fire schedules, dispatch runs to agents, poll them, read
//! recovery points, compute compliance, send alerts; beside them it keeps
//! the plan's standbys (`standbys`) and runs the scenarios' scheduled
//! failover tests (`exercises`). Its HTTP API serves
//! the status (JSON, a web page, Prometheus metrics), run history, and
//! operator commands.

mod access;
mod alerts;
mod chaos;
mod exercises;
mod failovers;
mod http;
pub mod leader;
mod metrics;
mod page;
pub mod scheduler;
mod standbys;
pub mod takeover;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use lifeboat_client::AgentClient;

use crate::clock;
use crate::compliance::{self, Status};
use crate::plan::Plan;
use crate::store::Store;

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The plan directory.
    #[arg(long, env = "LIFEBOAT_PLANS")]
    pub plans: PathBuf,
    /// The state: a SQLite file (created when missing), or `postgres://...` shared by several
    /// coordinators, one of which leads through a lease (see --lease).
    #[arg(long, env = "LIFEBOAT_STATE", default_value = "lifeboat-state.db")]
    pub state: PathBuf,
    /// With a shared (Postgres) state: how long a leader's lease lasts unrenewed; it is renewed every
    /// third of it, and another coordinator leads within it after the leader is lost.
    #[arg(long, env = "LIFEBOAT_LEASE", default_value = "15s", value_parser = humantime::parse_duration)]
    pub lease: Duration,
    /// Address for the status page, API and metrics.
    #[arg(long, env = "LIFEBOAT_LISTEN", default_value = "127.0.0.1:7300")]
    pub listen: SocketAddr,
    /// File with the operator token: reads and runs (POST /v1/runs). Without it the API is read-only.
    #[arg(long, env = "LIFEBOAT_OPERATOR_TOKEN_FILE")]
    pub operator_token_file: Option<PathBuf>,
    /// File with the viewer token: status, runs, reports, metrics and the page, nothing that acts.
    #[arg(long, env = "LIFEBOAT_VIEWER_TOKEN_FILE")]
    pub viewer_token_file: Option<PathBuf>,
    /// Serve /metrics without a token (a Prometheus on a private network).
    #[arg(long)]
    pub open_metrics: bool,
    /// PEM certificate chain: serve HTTPS (with --tls-key).
    #[arg(long, env = "LIFEBOAT_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, env = "LIFEBOAT_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Alertmanager-compatible webhook for at-risk and breached cells (repeatable).
    #[arg(long = "alert-webhook")]
    pub webhooks: Vec<String>,
    /// How often a firing alert is sent again (each with `endsAt` 4 times this ahead, as Prometheus
    /// does), so Alertmanager never resolves an alert that still fires: keep it below its
    /// `resolve_timeout` (default 5m).
    #[arg(long, default_value = "1m", value_parser = humantime::parse_duration)]
    pub alert_repeat: Duration,
    /// How often schedules are checked and runs dispatched.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    pub tick: Duration,
    /// How often agents are polled for job state and recovery points.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub poll: Duration,
    /// First retry delay of a failed run (doubles per attempt, plus up to 20 % jitter).
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub retry_base: Duration,
    /// Attempts per run before it is reported failed.
    #[arg(long, default_value_t = 3)]
    pub max_attempts: u32,
    /// Runs in flight per cell.
    #[arg(long, default_value_t = 2)]
    pub cell_concurrency: usize,
    /// The key drill reports are signed with (report-signing.key from `report keygen`); without it no drill runs.
    #[arg(long, env = "LIFEBOAT_REPORT_SIGNING_KEY")]
    pub signing_key: Option<PathBuf>,
    /// Also keep every cell's chain of reports (JSON and HTML) under DIR/<cell>/.
    #[arg(long)]
    pub reports: Option<PathBuf>,
    /// How often the plan's standbys are checked at their recovery sites (missing or stopped ones are
    /// bootstrapped or started; needs --signing-key). 0: never.
    #[arg(long, default_value = "1m", value_parser = humantime::parse_duration)]
    pub standby_interval: Duration,
    /// Take over from a lost coordinator (usually with its cloud): rebuild cells' recoverable points,
    /// report chains and unfinished failovers from the repositories in --from-location, read through
    /// the cells' recovery sites; the plan's other locations are shown lost.
    #[arg(long, requires = "from_location")]
    pub takeover: bool,
    /// The plan location a takeover reads (e.g. the cross-cloud copy).
    #[arg(long, requires = "takeover")]
    pub from_location: Option<String>,
}

pub struct Config {
    pub poll: Duration,
    pub retry_base: Duration,
    pub max_attempts: u32,
    pub cell_concurrency: usize,
    pub webhooks: Vec<String>,
    pub alert_repeat: Duration,
    pub public_url: String,
    /// Signs drill reports (None: drills are refused).
    pub signer: Option<crate::report::keys::Signer>,
    pub reports: Option<PathBuf>,
    /// The state (`--state`): beside a SQLite file, the per-failover locks.
    pub state: PathBuf,
}

pub struct Coordinator {
    pub plan: Plan,
    pub store: Store,
    pub agents: HashMap<String, AgentClient>,
    pub cfg: Config,
    pub metrics: metrics::Metrics,
    pub http: reqwest::Client,
    access: access::Access,
    /// Per cell: why the last read of its recovery points failed (None: it worked).
    pub agent_problems: Mutex<HashMap<String, Option<String>>>,
    /// Per cell whose plan keeps a standby: how its site reported it last.
    pub standbys: Mutex<HashMap<String, crate::failover::standby::StandbyView>>,
    /// Started with `--takeover`: the location taken over from and what was found there.
    pub takeover: Option<takeover::Takeover>,
    /// Whether this coordinator acts (always, with a SQLite state).
    pub leader: leader::Leadership,
    /// When each firing alert was last sent (by this process).
    pub alerts_sent: Mutex<alerts::Sent>,
    /// A monitoring pass finished since this coordinator began to lead:
    /// alerts are judged on points read while leading, never on stale ones.
    pub monitored: std::sync::atomic::AtomicBool,
}

/// Load a plan, or say everything wrong with it.
pub fn load_plan(dir: &std::path::Path) -> Result<Plan> {
    crate::plan::load(dir).map_err(|problems| {
        let list: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
        anyhow::anyhow!("the plan in {} is not valid:\n{}", dir.display(), list.join("\n"))
    })
}

/// How the coordinator talks to agents. Agents serving HTTPS with a
/// certificate from a private CA are trusted when `LIFEBOAT_AGENT_CA_FILE`
/// names that CA's certificate (PEM). Agents that require a client
/// certificate (`serve --tls-client-ca`) are shown the one in
/// `LIFEBOAT_AGENT_CLIENT_CERT`, with its key in `LIFEBOAT_AGENT_CLIENT_KEY`
/// (PEM, PKCS#8; refused when every user can read it).
pub fn agent_options() -> Result<lifeboat_client::Options> {
    let mut options = lifeboat_client::Options { epoch: Some(leader::epoch_cell()), ..Default::default() };
    if let Some(ca) = std::env::var_os("LIFEBOAT_AGENT_CA_FILE") {
        options = options.trusting(std::path::Path::new(&ca)).map_err(anyhow::Error::msg).context("LIFEBOAT_AGENT_CA_FILE")?;
    }
    let (cert, key) = (std::env::var_os("LIFEBOAT_AGENT_CLIENT_CERT"), std::env::var_os("LIFEBOAT_AGENT_CLIENT_KEY"));
    match (cert, key) {
        (None, None) => Ok(options),
        (Some(cert), Some(key)) => {
            let cert_pem =
                std::fs::read(&cert).with_context(|| format!("reading LIFEBOAT_AGENT_CLIENT_CERT {}", cert.to_string_lossy()))?;
            let key_pem = lifeboat_secrets::read_file(std::path::Path::new(&key), "agent client key (LIFEBOAT_AGENT_CLIENT_KEY)")?;
            options.presenting(&cert_pem, key_pem.as_bytes()).map_err(anyhow::Error::msg)
        }
        _ => anyhow::bail!("LIFEBOAT_AGENT_CLIENT_CERT and LIFEBOAT_AGENT_CLIENT_KEY go together: set both, or neither"),
    }
}

/// One client per cell, with its token resolved.
pub fn agent_clients(plan: &Plan) -> Result<HashMap<String, AgentClient>> {
    let options = agent_options()?;
    plan.cells.iter().map(|c| Ok((c.name.clone(), client_of(c, options.clone())?))).collect()
}

/// A client of cell `cell`'s own agent (the token resolved now).
pub fn cell_client(cell: &crate::plan::CellPlan) -> Result<AgentClient> {
    client_of(cell, agent_options()?)
}

fn client_of(c: &crate::plan::CellPlan, options: lifeboat_client::Options) -> Result<AgentClient> {
    let token = crate::secrets::resolve(&c.agent_token, &format!("agent token of cell {}", c.name))?;
    AgentClient::with_options(&c.name, &c.agent_url, token, options).map_err(anyhow::Error::msg)
}

/// A client of recovery site `site`'s agent (the token resolved now).
pub fn site_client(site: &crate::plan::SiteDef) -> Result<AgentClient> {
    let token = crate::secrets::resolve(&site.agent_token, &format!("agent token of recovery site {}", site.name))?;
    AgentClient::with_options(&site.name, &site.agent_url, token, agent_options()?).map_err(anyhow::Error::msg)
}

impl Coordinator {
    /// Run `work` on a blocking thread, never on the runtime's: the state
    /// database (SQLite) blocks. The one way the coordinator's async code
    /// calls its synchronous code.
    pub async fn blocking<T: Send + 'static>(self: &Arc<Self>, work: impl FnOnce(&Coordinator) -> T + Send + 'static) -> T {
        let c = self.clone();
        tokio::task::spawn_blocking(move || work(&c)).await.expect("the coordinator's blocking work does not panic")
    }

    /// The status of every cell now, from the stored recovery points.
    pub fn status(&self) -> Result<Status> {
        let problems = self.agent_problems.lock().expect("agent problems").clone();
        let standbys = self.standbys.lock().expect("standbys").clone();
        let since = self.store.created()?;
        let lost = self.takeover.as_ref().map(takeover::Takeover::lost_locations).unwrap_or_default();
        compliance::status(&self.plan, clock::now(), |cell| {
            Ok(compliance::CellInput {
                recovery: self.store.recovery(&cell.name)?,
                problem: problems.get(&cell.name).cloned().flatten(),
                drills: Some((self.store.drills(&cell.name)?, since)),
                verify: self.store.last_verify(&cell.name)?,
                standby: standbys.get(&cell.name).cloned(),
                lost: lost.clone(),
            })
        })
    }
}

pub async fn run(args: ServeArgs) -> Result<()> {
    let plan = load_plan(&args.plans)?;
    let agents = agent_clients(&plan)?;
    let store = Store::open(&args.state)?;
    if args.max_attempts == 0 || args.cell_concurrency == 0 {
        bail!("--max-attempts and --cell-concurrency must be at least 1");
    }
    if args.alert_repeat < Duration::from_secs(1) {
        bail!("--alert-repeat {:?} is too short: give at least 1s", args.alert_repeat);
    }
    if args.lease < Duration::from_secs(3) {
        bail!("--lease {:?} is too short to renew reliably: give at least 3s", args.lease);
    }
    let leadership = leader::Leadership::new(store.shared(), args.lease);
    store.fence(&leadership.holder, leader::epoch_cell());
    let takeover = match &args.from_location {
        Some(from) => {
            let reports = args.reports.clone().unwrap_or_else(|| args.state.with_file_name("takeover-reports"));
            Some(takeover::Takeover::new(&plan, &args.plans, from, reports)?)
        }
        None => None,
    };
    let access = access::Access::from_files(args.operator_token_file.as_deref(), args.viewer_token_file.as_deref(), args.open_metrics)?;
    let tls = lifeboat_https::tls_from(args.tls_cert.as_deref(), args.tls_key.as_deref(), None)?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let listener = tokio::net::TcpListener::bind(args.listen).await.with_context(|| format!("listening on {}", args.listen))?;
    let address = listener.local_addr()?;
    let c = Arc::new(Coordinator {
        cfg: Config {
            poll: args.poll,
            retry_base: args.retry_base,
            max_attempts: args.max_attempts,
            cell_concurrency: args.cell_concurrency,
            webhooks: args.webhooks.clone(),
            alert_repeat: args.alert_repeat,
            public_url: format!("{scheme}://{address}/"),
            signer: match &args.signing_key {
                Some(k) => {
                    let signer = crate::report::keys::Signer::from_file(k)?;
                    crate::report::keys::check_published(plan.report_public_key.as_deref(), &plan.name, &signer)?;
                    Some(signer)
                }
                None => {
                    tracing::warn!("no --signing-key: drills cannot sign their reports and will not run");
                    None
                }
            },
            reports: args.reports.clone(),
            state: args.state.clone(),
        },
        plan,
        store,
        agents,
        metrics: metrics::Metrics::new(),
        http: reqwest::Client::new(),
        access,
        agent_problems: Mutex::default(),
        standbys: Mutex::default(),
        takeover,
        leader: leadership,
        alerts_sent: Mutex::default(),
        monitored: std::sync::atomic::AtomicBool::new(false),
    });
    tokio::spawn(leader::keep(c.clone()));
    if c.takeover.is_some() && c.leader.shared {
        // What a takeover imports is written under the lease.
        tracing::info!("waiting for the lease before taking over");
        c.leader.wait_leading().await;
    }
    takeover::rebuild(&c).await;
    if c.takeover.is_none() {
        let c2 = c.clone();
        let plans = args.plans.clone();
        tokio::spawn(async move {
            c2.leader.wait_leading().await;
            store_plan(c2, plans).await
        });
    }
    // Last successes survive restarts in the database; so do their gauges.
    c.blocking(|c| -> Result<()> {
        for cell in &c.plan.cells {
            for (kind, _) in scheduler::duties(cell) {
                if let Some(t) = c.store.last_success(&cell.name, kind)?.and_then(|r| r.finished) {
                    c.metrics.last_success(&cell.name, kind, t);
                }
            }
        }
        Ok(())
    })
    .await?;
    println!("lifeboat coordinator for plan {} ({} cells) on {scheme}://{address}", c.plan.name, c.plan.cells.len());
    use std::io::Write as _;
    std::io::stdout().flush()?;
    tracing::info!(plan = %c.plan.name, cells = c.plan.cells.len(), %address, "coordinator serving");
    tokio::select! {
        r = lifeboat_https::serve(listener, tls, http::router(c.clone())) => r.context("the HTTP server stopped")?,
        r = control_loop(c.clone(), args.tick, args.poll) => r?,
        () = keep_standbys(c.clone(), args.standby_interval) => {}
        () = exercises::run(c.clone(), args.state.clone()) => {}
        () = chaos::run(c.clone(), args.state.clone()) => {}
        signal = lifeboat_process::shutdown_signal() => {
            tracing::info!(signal, "stopping");
            if c.leader.shared && c.leader.leading() {
                // Another coordinator leads at once rather than after the lease.
                c.leader.resign();
                if let Err(e) = c.blocking(|c| c.store.resign(&c.leader.holder)).await {
                    tracing::warn!("giving up the lease: {e:#}");
                }
            }
        }
    }
    Ok(())
}

/// Store the plan, signed, with every cell's repository (best effort: a
/// cell that does not take it is logged; `plan store` tries again).
async fn store_plan(c: Arc<Coordinator>, dir: PathBuf) {
    let Some(signer) = &c.cfg.signer else { return };
    let stored = match crate::plan::stored::signed(&c.plan, &dir, signer) {
        Ok(s) => s,
        Err(e) => return tracing::warn!("the plan is not stored with the repositories: {e:#}"),
    };
    let failed = crate::plan::stored::store(&stored, &c.agents).await;
    for f in &failed {
        tracing::warn!("the plan is not stored with cell {f}");
    }
    tracing::info!(sha256 = %stored.sha256, cells = c.plan.cells.len() - failed.len(), "plan stored with the cells' repositories");
}

/// Keep the plan's standbys every `interval` (never when it is zero).
async fn keep_standbys(c: Arc<Coordinator>, interval: Duration) {
    if interval.is_zero() {
        return std::future::pending().await;
    }
    let mut backoff = standbys::Backoff::default();
    loop {
        c.leader.wait_leading().await;
        standbys::keep(&c, &mut backoff, interval).await;
        tokio::time::sleep(interval).await;
    }
}

/// How long until just after the next multiple of `tick` since the epoch:
/// ticks land 5 ms after the whole seconds schedules name, whatever the
/// last pass cost, so a run waits for the work before it, not for a tick
/// that happens to fall late in the second.
fn until_next_tick(tick: Duration, now: time::OffsetDateTime) -> Duration {
    let tick_ns = tick.as_nanos().max(1);
    let now_ns = u128::try_from(now.unix_timestamp_nanos()).unwrap_or_default();
    let wait = u64::try_from(tick_ns - now_ns % tick_ns).unwrap_or(u64::MAX);
    Duration::from_nanos(wait) + Duration::from_millis(5)
}

/// Two loops: scheduling (fire schedules, dispatch runs) every tick, and
/// monitoring (poll jobs, read recovery points, compliance gauges) every
/// poll interval, and alerting (verdicts sent and re-sent) every quarter
/// `--alert-repeat` or poll interval, whichever is shorter, so a slow poll
/// of a lost agent never delays a page. None waits for another.
async fn control_loop(c: Arc<Coordinator>, tick: Duration, poll: Duration) -> Result<()> {
    let scheduling = async {
        loop {
            c.leader.wait_leading().await;
            if let Err(e) = c.blocking(|c| scheduler::fire(&c.plan, &c.store, clock::now())).await {
                tracing::error!("scheduling: {e:#}");
            }
            if let Err(e) = scheduler::dispatch(&c, clock::now()).await {
                tracing::error!("dispatching runs: {e:#}");
            }
            tokio::time::sleep(until_next_tick(tick, clock::now())).await;
        }
    };
    let monitoring = async {
        loop {
            // Followers keep their gauges from the shared state; only the leader acts.
            let now = clock::now();
            let leading = c.leader.leading();
            if leading {
                if let Err(e) = scheduler::poll(&c, now).await {
                    tracing::error!("polling agents: {e:#}");
                }
                scheduler::refresh_recovery(&c, now).await;
                takeover::refresh_points(&c).await;
            }
            // Set once a whole pass ran while leading; a follower's is cleared.
            c.monitored.store(leading && c.leader.leading(), std::sync::atomic::Ordering::SeqCst);
            c.metrics.leading(c.leader.leading());
            match c.blocking(|c| c.status()).await {
                Ok(status) => c.metrics.status(&status),
                Err(e) => tracing::error!("compliance: {e:#}"),
            }
            tokio::time::sleep(poll).await;
        }
    };
    let alerting = async {
        let every = poll.min(c.cfg.alert_repeat / 4);
        loop {
            if c.leader.leading() && c.monitored.load(std::sync::atomic::Ordering::SeqCst) {
                match c.blocking(|c| c.status()).await {
                    Ok(status) => {
                        if let Err(e) = alerts::evaluate(&c, status, clock::now()).await {
                            tracing::warn!("alerts: {e:#}");
                        }
                    }
                    Err(e) => tracing::error!("compliance for alerts: {e:#}"),
                }
            }
            tokio::time::sleep(every).await;
        }
    };
    tokio::join!(scheduling, monitoring, alerting);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_land_just_after_whole_ticks() {
        let at = |s: &str| crate::clock::parse(s).unwrap();
        let second = Duration::from_secs(1);
        assert_eq!(until_next_tick(second, at("2026-12-07T06:00:00.300Z")), Duration::from_millis(705));
        assert_eq!(until_next_tick(second, at("2026-12-07T06:00:00Z")), Duration::from_millis(1005));
        assert_eq!(until_next_tick(Duration::from_millis(250), at("2026-12-07T06:00:00.100Z")), Duration::from_millis(155));
    }
}
